"""Training checkpoints: a weights directory plus what resuming needs, written so that a crash, a full
disk or Ctrl-C at any moment leaves the previous checkpoint loadable.

A run directory holds:

    checkpoints/step-00001000/   config.json, model.safetensors (what `load` and `generate` read),
                                 optimizer.safetensors, trainer_state.json (step, data sampler, ...)
    best/                        the weights with the lowest validation bits per byte so far
    metrics.jsonl                one JSON line per step and per evaluation

A checkpoint is assembled in a hidden temporary directory and renamed into place, so a `step-*`
directory is always complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from .cli import UserError
from .weights import WEIGHTS_FILE, load_weights, read_safetensors, save, write_safetensors, write_text

CHECKPOINTS = "checkpoints"
BEST = "best"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
_STEP = re.compile(r"step-(\d+)")


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
    """Restore model weights and optimizer state from `path`; return the trainer state."""
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path} is not a readable checkpoint ({error})") from None
    load_weights(model, read_safetensors(path / WEIGHTS_FILE), source=path / WEIGHTS_FILE)
    if optimizer is not None:
        _assign_leaves(optimizer.state, read_safetensors(path / OPTIMIZER_FILE), path / OPTIMIZER_FILE)
    mx.eval(model.parameters(), optimizer.state if optimizer is not None else [])
    return state


def _assign_leaves(tree, arrays: dict, source) -> None:
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
    save(model, temporary)
    if optimizer is not None:
        write_safetensors(temporary / OPTIMIZER_FILE, dict(tree_flatten(optimizer.state)))
    write_text(temporary / STATE_FILE, json.dumps(state, indent=2) + "\n")
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
