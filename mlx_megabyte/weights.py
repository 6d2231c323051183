"""A weights directory: `config.json` (the model config, its `model_type` naming the architecture) +
`model.safetensors` (every parameter).

`save` and `load` write and read one; `locate` finds the one a `--model` flag names (a directory, a
training run, a Hugging Face repo id); `quantize` turns a loaded model's matrices into 4 or 8 bits.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from .data import INSTRUCT_SOURCES
from .errors import UserError
from .files import file_sha256, read_safetensors, write_safetensors, write_text
from .hub import download_model, looks_like_repo_id
from .models import ARCHITECTURES, DEFAULT_ARCHITECTURE, Config, Model, build
from .runtime import DTYPES, default_dtype

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKSUM = "weights_sha256"
TRAINING_FILE = "trainer_state.json"  # what training writes beside the weights (checkpoint.STATE_FILE)


def save(model: nn.Module, path: str | Path, extra_config: dict | None = None) -> None:
    """Write `model` as a weights directory that `load` (and the converters) read."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is not a directory")
    arrays = dict(tree_flatten(model.parameters()))
    damaged = non_finite(arrays)
    if damaged:  # nothing that cannot be used again is written
        raise UserError(f"refusing to save non-finite weights (NaN or infinity in {_short_list(damaged, 3)}) to {path}")
    write_safetensors(path / WEIGHTS_FILE, arrays, {"format": "mlx"})
    # The weights file's hash, checked by read_weights: silent damage to a tensor (a flipped bit, a copy
    # cut short) is found on load, not as a model that quietly writes worse stories.
    config = {
        "model_type": model.config.model_type,
        **model.config.to_dict(),
        **(extra_config or {}),
        CHECKSUM: file_sha256(path / WEIGHTS_FILE),
    }
    write_text(path / CONFIG_FILE, json.dumps(config, indent=2) + "\n")


def read_config(path: str | Path) -> tuple[Config, dict]:
    """The model config of a weights directory (of the architecture its `model_type` names; the default
    when absent) and the raw JSON (which may hold more, e.g. quantization)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a weights directory (expected {CONFIG_FILE} and {WEIGHTS_FILE})")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise UserError(f"{path} has no {CONFIG_FILE}: not an mlx-megabyte weights directory")
    try:
        raw = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{config_path} is not valid JSON ({error})") from None
    if not isinstance(raw, dict) or raw.get("model_type", DEFAULT_ARCHITECTURE) not in ARCHITECTURES:
        kind = f" (model_type {raw.get('model_type')!r})" if isinstance(raw, dict) else ""
        raise UserError(
            f"{config_path} does not describe a model of an architecture this package has{kind}; "
            f"known: {', '.join(ARCHITECTURES)}"
        )
    try:
        return ARCHITECTURES[raw.get("model_type", DEFAULT_ARCHITECTURE)].config.from_dict(raw), raw
    except (TypeError, ValueError) as error:
        raise UserError(f"{config_path}: {error}") from None


# The weights directories this repository ships (weights/README.md): what a fresh clone uses until the
# user has weights of their own. A user's directory always wins; the instruct one serves instruct prompts.
SHIPPED_DEMO = "demo"
SHIPPED_INSTRUCT = "demo-instruct"


def locate(spec: str | None, root: str | Path = "weights", instruct: bool = False) -> Path:
    """The weights directory that `spec` names: a weights directory; a training run (its newest
    checkpoint); a Hugging Face repo id (downloaded, or taken from the hub cache offline).

    For None, the newest weights directory under `root` that is not a shipped demo; with none, the shipped
    one. With `instruct` (the caller will send instruct prompts: `generate --instruct`, the server's chat
    endpoint), the newest one trained on instruct records (or with no training record) comes first, then
    `weights/demo-instruct`; a fresh clone's checkout leaves the two demos' mtimes in no useful order, so
    the choice between them must not rest on mtimes."""
    if spec is None:
        return _newest(Path(root), instruct)
    path = Path(spec).expanduser()
    if path.is_dir():
        return path if (path / CONFIG_FILE).is_file() else _newest(path, instruct)
    if looks_like_repo_id(spec):
        return download_model(spec, [CONFIG_FILE, WEIGHTS_FILE])
    raise UserError(f"no weights directory at {spec}")


def _newest(root: Path, instruct: bool) -> Path:
    found = [
        p.parent
        for p in root.rglob(CONFIG_FILE)
        if (p.parent / WEIGHTS_FILE).is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)  # half-written
    ]
    if not found:
        where = "weights/" if str(root) == "weights" else str(root)
        raise UserError(
            f"no weights under {where}: pass --model DIR, or train a model with python -m mlx_megabyte.train"
        )
    demo, tuned_demo = ([root / name] if root / name in found else [] for name in (SHIPPED_DEMO, SHIPPED_INSTRUCT))
    own = [p for p in found if p not in demo + tuned_demo]
    if instruct:  # the first group with a member wins; within one, the newest
        groups = [[p for p in own if _reads_instruct(p)], tuned_demo, own, demo]
    else:
        groups = [own, demo, tuned_demo]
    return max(next(group for group in groups if group), key=lambda p: (p / WEIGHTS_FILE).stat().st_mtime)


def _reads_instruct(path: Path) -> bool:
    """Whether `check_instruct_tuned` lets instruct prompts through for these weights."""
    record = trained_on(path)
    return record is None or bool(record.get("instruct", record["data"] in INSTRUCT_SOURCES))  # older: data only


def load(path: str | Path, dtype: mx.Dtype | None = None) -> Model:
    """Read a weights directory written by `save` (or `tools/convert_from_torch.py`), in eval mode.

    The stored dtype is kept unless `dtype` is given (half-precision weights run faster as float32 on
    CPUs, where half-precision matmuls bypass BLAS).
    """
    config, _ = read_config(path)
    model = build(config)
    load_weights(model, read_weights(path), source=Path(path) / WEIGHTS_FILE)
    if dtype is not None:
        model.set_dtype(dtype)
    model.eval()
    return model


def load_weights(model: nn.Module, arrays: dict[str, mx.array], source="weights") -> None:
    """Set every parameter of `model` from `arrays`, or fail, changing nothing, listing what does not fit
    (names, shapes, or values that are NaN or infinite)."""
    expected = dict(tree_flatten(model.parameters()))
    check_names_and_shapes(expected, arrays, source)
    damaged = non_finite({k: arrays[k] for k in expected})
    if damaged:
        raise UserError(f"{source} holds non-finite weights (NaN or infinity) in {_short_list(damaged, 3)}")
    model.update(tree_unflatten([(k, arrays[k]) for k in expected]))  # stored dtype kept
    mx.eval(model.parameters())


def non_finite(arrays: dict[str, mx.array]) -> list[str]:
    """Names of the floating-point arrays holding a NaN or an infinity (one evaluation for all)."""
    names = [k for k, v in arrays.items() if mx.issubdtype(v.dtype, mx.floating)]
    if not names:
        return []
    finite = mx.stack([mx.all(mx.isfinite(arrays[k])) for k in names]).tolist()
    return [k for k, ok in zip(names, finite) if not ok]


def check_names_and_shapes(expected: dict, found: dict, source) -> None:
    """Raise one UserError naming missing and unexpected keys and mismatched shapes."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [
        f"{k} {tuple(found[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(found))
        if tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected {_short_list(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch {_short_list(mismatched)}")
    if problems:
        raise UserError(f"{source} does not fit the model: " + "; ".join(problems))


def _short_list(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def quantize(model: nn.Module, bits: int, group_size: int = 64) -> nn.Module:
    """Quantize every Linear and Embedding whose width the group size divides (others stay float)."""

    def fits(_, module):
        return hasattr(module, "to_quantized") and module.weight.shape[-1] % group_size == 0

    nn.quantize(model, group_size=group_size, bits=bits, class_predicate=fits)
    return model


def read_weights(path: str | Path) -> dict[str, mx.array]:
    """The arrays of a weights directory, after checking them against the hash its config.json records
    (directories written before hashes were recorded, or by hand, have none and are read as they are)."""
    path = Path(path)
    try:
        recorded = json.loads((path / CONFIG_FILE).read_text()).get(CHECKSUM)
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded is not None and (path / WEIGHTS_FILE).is_file() and file_sha256(path / WEIGHTS_FILE) != recorded:
        raise UserError(
            f"{path / WEIGHTS_FILE} does not match the checksum in its {CONFIG_FILE}: the file is damaged "
            "or was replaced (restore it, or delete the checksum line to load it anyway)"
        )
    return read_safetensors(path / WEIGHTS_FILE)


def trained_on(path: str | Path) -> dict | None:
    """What trained the weights in `path`, as training recorded it beside them ({"data": ..., "instruct":
    ...}), or None where nothing does (converted weights, weights saved by hand, an unreadable record)."""
    try:
        record = json.loads((Path(path) / TRAINING_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("data"), str) else None


def check_instruct_tuned(path: str | Path, flag: str = "--instruct") -> None:
    """Refuse, in one line, instruct prompts for weights whose record says no instruct records trained
    them (a base model does not know the layout: it would write the prompt's fields back, not a story).
    Weights with no record are let through: nothing says what they know."""
    if not _reads_instruct(Path(path)):
        record = trained_on(path)
        raise UserError(
            f"{flag}: {path} was trained on {record['data']}, never on instruct records ({TRAINING_FILE} "
            f"says so); tune it first: python -m mlx_megabyte.train --init-from {path} --data "
            "builtin-instruct --mask-prompt"
        )


def load_for_inference(spec: str | None, bits: int | None = None, dtype: mx.Dtype | None = None) -> Model:
    """The model `--model spec` names, ready to generate or score: in `dtype` (default: runtime's rule,
    float32 on CPUs and the stored dtype on GPUs), quantized to `bits` if given."""
    if dtype is None and (default := default_dtype(training=False)):
        dtype = DTYPES[default]
    model = load(locate(spec), dtype=dtype)
    if bits:
        quantize(model, bits)
    return model
