"""The Hugging Face hub, download side: a fast reachability check and model downloads that fail in one
line offline. (Uploads and model cards: publish.py.)"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from .errors import UserError


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the hub? (`datasets` and `huggingface_hub` retry for ~25 s before
    giving up, so we ask first.) Always False in offline mode (HF_HUB_OFFLINE=1)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def looks_like_repo_id(spec: str) -> bool:
    """`user/repo`, unless it names something local: an existing path, or a path inside an existing
    folder (`weights/typo` is a mistyped directory, not a repo of a user called weights)."""
    parts = spec.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not spec.startswith((".", "~"))
        and not Path(spec).exists()
        and not Path(parts[0]).is_dir()
    )


def download_model(repo_id: str, files: list[str]) -> Path:
    """A local snapshot of `files` from a model repo, from the hub or, offline, from its cache."""
    from huggingface_hub import snapshot_download

    online = hub_reachable()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=files, local_files_only=not online))
    except Exception as error:
        if not online:
            raise UserError(
                f"cannot reach the Hugging Face hub and {repo_id} is not in its local cache "
                "(pass a local weights directory with --model DIR)"
            ) from None
        raise UserError(f"could not download {repo_id}: {str(error).splitlines()[0]}") from None
