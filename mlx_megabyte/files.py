"""Files written so that a crash, a full disk or Ctrl-C mid-write leaves the previous version intact:
each goes to a temporary name beside its target, is flushed to disk and renamed over it. Also the
safetensors reader, which turns a damaged file into one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import mlx.core as mx

from .errors import UserError


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = ""):
    """Yield a temporary path beside `target`; on success fsync it and rename it over `target`.

    `suffix` keeps an extension some writers insist on (mx.save_safetensors appends `.safetensors`).
    On any error the temporary file is removed and `target` is untouched; a failed write (a full disk,
    a read-only folder) becomes a one-line UserError that names the file.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    except OSError as error:
        raise UserError(f"cannot write {target}: {error.strerror or error}") from None
    os.close(fd)
    try:
        yield temporary
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the permissions open() would
        os.replace(temporary, target)
    except OSError as error:  # a full disk (ENOSPC, EFBIG), a read-only or vanished folder
        raise UserError(f"cannot write {target}: {error.strerror or error}") from None
    except RuntimeError as error:  # MLX's writers report the same as "[write] Unable to write ..."
        raise UserError(f"cannot write {target}: {str(error).splitlines()[0]} (is the disk full?)") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        Path(temporary).write_text(text)


def write_safetensors(path: str | Path, arrays: dict[str, mx.array], metadata: dict | None = None) -> None:
    with atomic_path(path, suffix=".safetensors") as temporary:
        mx.save_safetensors(temporary, arrays, metadata=metadata or {})


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def read_safetensors(path: str | Path) -> dict[str, mx.array]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no weights file at {path}")
    try:
        return mx.load(str(path), format="safetensors")
    except Exception as error:  # MLX raises plain exceptions for corrupt files
        raise UserError(f"{path} is not a readable safetensors file ({error})") from None
