"""Training checkpoints: a weights directory plus what resuming needs, written so that a crash, a full
disk or Ctrl-C at any moment leaves the previous checkpoint loadable.

A run directory holds:

    checkpoints/step-00001000/   config.json, model.safetensors (what `load` and `generate` read),
                                 optimizer.safetensors, trainer_state.json (step, data sampler, ...)
    best/                        the weights with the lowest validation bits per byte so far
    metrics.jsonl                one JSON line per step and per evaluation

A checkpoint is assembled in a hidden temporary directory and renamed into place, so a `step-*`
directory is always complete. A run directory belongs to one training process at a time (`claim`: an
OS-level lock, released by the OS when that process dies, however it dies).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from .errors import UserError
from .files import read_safetensors, write_safetensors, write_text
from .weights import WEIGHTS_FILE, load_weights, non_finite, read_weights, save

CHECKPOINTS = "checkpoints"
BEST = "best"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"
_STEP = re.compile(r"step-(\d+)")


def claim(run_dir: Path, resume: bool, overwrite: bool = False):
    """Make this process the run directory's only writer; return the lock's open file (closing it, or
    the process ending, releases the directory) and where an old run was moved, if it was.

    A fresh run (no --resume) in a directory that already holds a run is refused: it would rewrite the
    metrics, replace `best/` with a worse model and see its own checkpoints rotated away by the old
    run's later ones. `overwrite` moves the old run aside into a sibling directory instead.
    """
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK_FILE, "a+")
    except OSError as error:
        raise UserError(f"cannot use {run_dir} as the run directory ({error.strerror or error})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise UserError(
            f"{run_dir} is in use by another training (process {owner}); wait for it to end, "
            "or choose another --save-path"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    if not resume and holds_run(run_dir):
        if not overwrite:
            handle.close()
            raise UserError(
                f"{run_dir} holds a run already: continue it with --resume, choose another "
                "--save-path, or pass --overwrite to move the old run aside"
            )
        return handle, _move_aside(run_dir)
    return handle, None


def holds_run(run_dir: Path) -> bool:
    run_dir = Path(run_dir)
    metrics = run_dir / METRICS_FILE
    return (
        (run_dir / CHECKPOINTS).is_dir()
        or (run_dir / BEST).is_dir()
        or (metrics.is_file() and metrics.stat().st_size > 0)
    )


def _move_aside(run_dir: Path) -> Path:
    """Move everything of an old run (not the lock) into `<run_dir>.replaced-<time>`; delete nothing."""
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    while aside.exists():
        aside = aside.with_name(aside.name + "-1")
    aside.mkdir()
    for entry in run_dir.iterdir():
        if entry.name != LOCK_FILE:
            os.replace(entry, aside / entry.name)
    return aside


def save_checkpoint(run_dir: Path, step: int, model, optimizer, state: dict, keep: int) -> Path:
    """Write checkpoint `step`, then delete all but the newest `keep` checkpoints."""
    final = Path(run_dir) / CHECKPOINTS / f"step-{step:08d}"
    _write_directory(final, model, optimizer, {**state, "step": step})
    for old in checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_best(run_dir: Path, model, state: dict) -> Path:
    final = Path(run_dir) / BEST
    _write_directory(final, model, None, state)
    return final


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _STEP.fullmatch(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_STEP.fullmatch(p.name).group(1)))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(path: Path, model, optimizer) -> dict:
    """Restore model weights and optimizer state from `path`; return the trainer state.

    Raises UserError, before changing anything, if a file is unreadable or damaged or the weights are
    not finite (so the caller can fall back to an older checkpoint)."""
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text())
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError("no step number")
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable checkpoint ({error})") from None
    arrays = read_weights(path)
    optimizer_arrays = read_safetensors(path / OPTIMIZER_FILE) if optimizer is not None else {}
    damaged = non_finite(optimizer_arrays)  # the weights are checked by load_weights
    if damaged:
        raise UserError(f"{path / OPTIMIZER_FILE} holds non-finite values (in {', '.join(damaged[:3])})")
    load_weights(model, arrays, source=path / WEIGHTS_FILE)
    if optimizer is not None:
        assign_leaves(optimizer.state, optimizer_arrays, path / OPTIMIZER_FILE)
    mx.eval(model.parameters(), optimizer.state if optimizer is not None else [])
    return state


def assign_leaves(tree, arrays: dict, source) -> None:
    """Put saved arrays into the leaves of an initialised tree, in place.

    In place because a compiled training step holds on to this very tree (mx.compile inputs/outputs);
    leaf by leaf because a flattened tree loses its empty branches (a Dropout's `{}`), which the
    optimizer's tree_map over the gradients still expects.
    """
    expected = dict(tree_flatten(tree))
    if set(expected) != set(arrays):
        different = sorted(set(expected) ^ set(arrays))
        raise UserError(f"{source} does not match this model's optimizer ({', '.join(different[:5])} ...)")
    for key, value in arrays.items():
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value


def _write_directory(final: Path, model, optimizer, state: dict) -> None:
    temporary = final.with_name(f".{final.name}.tmp")
    if temporary.exists():
        shutil.rmtree(temporary)
    try:
        save(model, temporary)
        if optimizer is not None:
            write_safetensors(temporary / OPTIMIZER_FILE, dict(tree_flatten(optimizer.state)))
        write_text(temporary / STATE_FILE, json.dumps(state, indent=2) + "\n")
    except UserError as error:  # a full disk, a read-only folder: free what was written, keep the old one
        shutil.rmtree(temporary, ignore_errors=True)
        kept = "the previous best/ is intact" if final.name == BEST else "earlier checkpoints are intact"
        raise UserError(f"{error}; {final.name} was not written, {kept}") from None
    _fsync_directory(temporary)
    if final.exists():
        # Swap: a crash between the two renames leaves `.NAME.old`, which recover() puts back.
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(temporary, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temporary, final)
    _fsync_directory(final.parent)


def recover(run_dir: Path) -> None:
    """Undo what an interrupted write left: restore a swapped-out directory, drop temporary ones."""
    for folder in (Path(run_dir), Path(run_dir) / CHECKPOINTS):
        if not folder.is_dir():
            continue
        for leftover in folder.glob(".*.old"):
            original = leftover.with_name(leftover.name[1:-4])
            if not original.exists():
                os.replace(leftover, original)
            else:
                shutil.rmtree(leftover, ignore_errors=True)
        for leftover in folder.glob(".*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)


def _fsync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
