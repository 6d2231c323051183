"""Lossless conversion between megabyte-pytorch 0.3.6 state dicts and mlx-megabyte weights.

`torch_key_map(config)` is the one place that knows lucidrains' parameter names: every torch key of a
model with that config, mapped to our name. Tensors need no transposing (both store Linear weights as
(out, in)). The rotary `inv_freq` buffers carry no learned information: they are checked on the way in
and recomputed on the way out. Safetensors files are read and written through MLX, so torch is needed
only for `.pt`/`.bin` files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from ...errors import UserError
from ...files import atomic_path, read_safetensors, write_safetensors, write_text
from ...tokens import BYTES
from ...weights import check_names_and_shapes
from .config import ModelConfig
from .model import MEGABYTE

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_INV_FREQ = "transformers.{}.rotary_emb.inv_freq"


def torch_key_map(config: ModelConfig) -> dict[str, str]:
    """megabyte-pytorch parameter name -> mlx-megabyte parameter name, for every parameter of `config`."""
    names = {"to_logits.weight": "to_logits.weight", "to_logits.bias": "to_logits.bias"}
    last = config.stages - 1
    for s in range(config.stages):
        ours = f"stages.{s}"
        names[f"start_tokens.{s}"] = f"{ours}.start_token"
        if config.pos_emb:
            names[f"pos_embs.{s}.weight"] = f"{ours}.position_embedding.weight"
        # token_embs are listed finest stage first; entries > 0 are nn.Sequential(Embedding, Rearrange,
        # LayerNorm, Linear, LayerNorm).
        embedding = f"token_embs.{last - s}"
        if s == last:
            names[f"{embedding}.weight"] = f"{ours}.embedding.weight"
        else:
            names[f"{embedding}.0.weight"] = f"{ours}.embedding.embedding.weight"
            for index, part in ((2, "norm_in"), (3, "proj"), (4, "norm_out")):
                for p in ("weight", "bias"):
                    names[f"{embedding}.{index}.{p}"] = f"{ours}.embedding.{part}.{p}"
        transformer = f"transformers.{s}"
        for layer in range(config.depth[s]):
            theirs, mine = f"{transformer}.layers.{layer}", f"{ours}.transformer.layers.{layer}"
            names[f"{theirs}.0.norm.g"] = f"{mine}.attention.norm.weight"
            names[f"{theirs}.0.to_q.weight"] = f"{mine}.attention.query.weight"
            names[f"{theirs}.0.to_kv.weight"] = f"{mine}.attention.key_value.weight"
            names[f"{theirs}.0.to_out.weight"] = f"{mine}.attention.out.weight"
            # FeedForward is nn.Sequential(RMSNorm, Linear, GELU, Dropout, Linear).
            names[f"{theirs}.1.0.g"] = f"{mine}.feed_forward.norm.weight"
            for index, part in ((1, "up"), (4, "down")):
                for p in ("weight", "bias"):
                    names[f"{theirs}.1.{index}.{p}"] = f"{mine}.feed_forward.{part}.{p}"
        names[f"{transformer}.norm.g"] = f"{ours}.transformer.norm.weight"
        if s < last:
            # nn.Sequential(Rearrange, Linear, Rearrange)
            for p in ("weight", "bias"):
                names[f"to_next_transformer_projections.{s}.1.{p}"] = f"{ours}.to_next.{p}"
    return names


def rotary_inv_freq(dim_head: int) -> np.ndarray:
    """The `inv_freq` buffer megabyte-pytorch's RotaryEmbedding holds, bit for bit where torch is present.

    torch's float32 pow differs from numpy's in the last bit for many sizes, and a state dict carries the
    buffer, so torch's own formula is used when it is importable; otherwise a correctly rounded value.
    """
    try:
        import torch
    except ImportError:
        exponent = np.arange(0, dim_head, 2, dtype=np.float64) / dim_head
        return (1.0 / (10000.0**exponent)).astype(np.float32)
    return (1.0 / (10000 ** (torch.arange(0, dim_head, 2).float() / dim_head))).numpy()


def infer_config(shapes: dict[str, tuple], given: dict | None = None) -> tuple[ModelConfig, list[str]]:
    """A ModelConfig from a megabyte-pytorch state dict's shapes, completed by `given`; and notes on
    what was assumed. Raises UserError if the shapes contradict `given` or do not describe MEGABYTE."""
    given = _as_megabyte_pytorch_takes_it(given or {})

    stages = len([k for k in shapes if re.fullmatch(r"start_tokens\.\d+", k)])
    if stages == 0 or "to_logits.weight" not in shapes:
        raise UserError("not a megabyte-pytorch state dict (no start_tokens.* or to_logits.weight)")
    dim = [shapes[f"start_tokens.{s}"][0] for s in range(stages)]
    depth = [
        len([k for k in shapes if re.fullmatch(rf"transformers\.{s}\.layers\.\d+\.0\.to_q\.weight", k)])
        for s in range(stages)
    ]
    inferred = {"num_tokens": shapes["to_logits.weight"][0], "dim": dim, "depth": depth}
    inferred["pos_emb"] = "pos_embs.0.weight" in shapes
    inferred["rel_pos"] = _INV_FREQ.format(0) in shapes
    notes = []

    max_seq_len = [None] * stages
    if inferred["pos_emb"]:
        max_seq_len[0] = shapes["pos_embs.0.weight"][0]
    for s in range(1, stages):
        max_seq_len[s] = shapes[f"to_next_transformer_projections.{s - 1}.1.weight"][0] // dim[s]
    if max_seq_len[0] is None:
        given_len = given.get("max_seq_len")
        if not given_len:
            raise UserError(
                "the global context (max_seq_len[0]) is not stored in weights without pos_emb: pass "
                "--config with max_seq_len, e.g. '{\"max_seq_len\": [%s]}'"
                % ", ".join(["N"] + [str(n) for n in max_seq_len[1:]])
            )
        max_seq_len[0] = list(given_len)[0]
    inferred["max_seq_len"] = max_seq_len

    layer = next(((s, 0) for s in range(stages) if depth[s] > 0), None)
    if layer is not None:
        prefix = f"transformers.{layer[0]}.layers.0"
        inner = shapes[f"{prefix}.0.to_q.weight"][0]
        inferred["ff_mult"] = shapes[f"{prefix}.1.1.weight"][0] // dim[layer[0]]
        if inferred["rel_pos"]:
            inferred["dim_head"] = 2 * shapes[_INV_FREQ.format(layer[0])][0]
            inferred["heads"] = inner // inferred["dim_head"]
        else:
            # Attention weights store heads * dim_head only: the split must come from --config.
            heads = given.get("heads", 8)
            dim_head = given.get("dim_head", 64)
            if heads * dim_head != inner:
                raise UserError(
                    f"attention width {inner} = heads x dim_head cannot be split from the weights and "
                    f'{heads} x {dim_head} does not fit: pass --config \'{{"heads": H, "dim_head": D}}\''
                )
            if "heads" not in given or "dim_head" not in given:
                notes.append(f"assumed heads={heads}, dim_head={dim_head} (not stored in the weights)")
    elif inferred["rel_pos"]:
        inferred["dim_head"] = 2 * shapes[_INV_FREQ.format(0)][0]

    if "shift_bytes" not in given and inferred["num_tokens"] == BYTES.num_tokens:
        # megabyte-pytorch has no such argument: 258 tokens is how the bytes layout travels (tokens.py)
        given["shift_bytes"] = True
        notes.append(
            "num_tokens 258: read as every byte value learned (token = byte + 1, 257 ends a document); "
            "pass --config '{\"shift_bytes\": false}' if its ids are something else"
        )
    conflicts = [
        f"{k}: weights say {inferred[k]}, config says {given[k]}"
        for k in inferred
        if k in given and _normal(given[k]) != _normal(inferred[k])
    ]
    if conflicts:
        raise UserError("--config contradicts the weights: " + "; ".join(conflicts))
    try:
        return ModelConfig.from_dict({**given, **inferred}), notes
    except (TypeError, ValueError) as error:
        raise UserError(f"invalid config: {error}") from None


def _normal(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _as_megabyte_pytorch_takes_it(given: dict) -> dict:
    """The keyword arguments someone passed to megabyte-pytorch's `MEGABYTE(...)` (from JSON: lists for
    tuples), in our form. It takes `dim` as one int for every stage or one per stage, and `flash_attn`,
    which chooses a kernel and leaves the function and the weights as they are."""
    given = dict(given)
    given.pop("flash_attn", None)
    unknown = set(given) - set(ModelConfig.__dataclass_fields__)
    if unknown:
        raise UserError(
            f"unknown config keys: {', '.join(sorted(unknown))} (not megabyte-pytorch's MEGABYTE arguments)"
        )
    stages = next((len(given[k]) for k in ("depth", "max_seq_len") if isinstance(given.get(k), (list, tuple))), None)
    if isinstance(given.get("dim"), int) and not isinstance(given["dim"], bool) and stages:
        given["dim"] = [given["dim"]] * stages  # megabyte-pytorch's cast_tuple(dim, stages)
    return {k: _normal(v) for k, v in given.items()}


def from_torch_state(state: dict[str, mx.array], given: dict | None = None):
    """(config, our weights, notes) from a megabyte-pytorch state dict; rejects anything else whole."""
    config, notes = infer_config({k: tuple(v.shape) for k, v in state.items()}, given)
    names = torch_key_map(config)
    buffers = {_INV_FREQ.format(s) for s in range(config.stages)} if config.rel_pos else set()
    expected = _our_shapes(config, names)
    expected.update({b: (config.dim_head // 2,) for b in buffers})
    check_names_and_shapes({k: _Shape(v) for k, v in expected.items()}, state, "the state dict")
    for buffer in buffers:
        found = state[buffer]
        tolerance = 1e-6 if found.dtype == mx.float32 else 1e-2  # a model moved to bf16 moves its buffers too
        if not np.allclose(
            np.array(found.astype(mx.float32)), rotary_inv_freq(config.dim_head), rtol=tolerance, atol=0
        ):
            raise UserError(f"{buffer} is not megabyte-pytorch's rotary frequency table")
    return config, {ours: state[theirs] for theirs, ours in names.items()}, notes


def refuse_other_architectures(config) -> None:
    """megabyte-pytorch has only MEGABYTE: say so, in one line, for any other architecture."""
    if config.model_type != "megabyte":
        raise UserError(
            f"megabyte-pytorch has no {config.model_type} architecture: only MEGABYTE models convert to and from it"
        )


def to_torch_state(model: MEGABYTE) -> dict[str, mx.array]:
    """A state dict (torch names) that megabyte-pytorch's MEGABYTE(**config) loads with strict=True."""
    refuse_other_architectures(model.config)
    ours = dict(tree_flatten(model.parameters()))
    state = {theirs: ours[mine] for theirs, mine in torch_key_map(model.config).items()}
    if model.config.rel_pos:
        inv_freq = mx.array(rotary_inv_freq(model.config.dim_head))
        for s in range(model.config.stages):
            state[_INV_FREQ.format(s)] = inv_freq
    return state


class _Shape:
    """Something with a .shape, to check names and shapes without allocating arrays."""

    def __init__(self, shape):
        self.shape = tuple(shape)


def _our_shapes(config: ModelConfig, names: dict[str, str]) -> dict[str, tuple]:
    ours = dict(tree_flatten(MEGABYTE(config).parameters()))  # lazy: nothing is computed
    return {theirs: tuple(ours[mine].shape) for theirs, mine in names.items()}


# --- files -------------------------------------------------------------------------------------------


def torch_config_path(torch_path: str | Path) -> Path:
    """Where the constructor config of a torch weights file lives: `model.pt` -> `model.config.json`."""
    torch_path = Path(torch_path)
    return torch_path.with_name(torch_path.stem + ".config.json")


def read_torch_state(path: str | Path) -> dict[str, mx.array]:
    """A state dict from `.safetensors` (no torch needed) or `.pt`/`.bin` (torch, weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix not in TORCH_SUFFIXES:
        raise UserError(f"{path}: expected a .safetensors, .pt, .pth, .bin or .ckpt file")
    try:
        import torch
    except ImportError:
        raise UserError(
            f"reading {path.suffix} files needs torch: pip install 'mlx-megabyte[torch]' (or use .safetensors)"
        ) from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary code
    except Exception as error:
        raise UserError(f"{path} is not a torch state dict that loads safely ({str(error).splitlines()[0]})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    return {k: _from_torch_tensor(v) for k, v in loaded.items()}


def write_torch_state(path: str | Path, state: dict[str, mx.array], config: ModelConfig) -> Path:
    """Write `state` as safetensors or (by suffix) a torch .pt/.bin, plus the constructor config beside it.
    Returns the config's path."""
    path = Path(path)
    if path.suffix == ".safetensors":
        write_safetensors(path, state, {"format": "pt"})
    elif path.suffix in TORCH_SUFFIXES:
        try:
            import torch
        except ImportError:
            raise UserError(f"writing {path.suffix} files needs torch: pip install 'mlx-megabyte[torch]'") from None
        tensors = {k: _to_torch_tensor(v) for k, v in state.items()}
        with atomic_path(path) as temporary:
            torch.save(tensors, temporary)
    else:
        raise UserError(f"{path}: the output must end in .safetensors, .pt, .pth, .bin or .ckpt")
    config_path = torch_config_path(path)
    write_text(config_path, json.dumps(torch_arguments(config), indent=2) + "\n")
    return config_path


def torch_arguments(config: ModelConfig) -> dict:
    """The config as megabyte-pytorch's `MEGABYTE(**arguments)` takes it: `shift_bytes` is ours (the
    torch model computes the same function; num_tokens 258 carries the layout back, see infer_config)."""
    return {k: v for k, v in config.to_dict().items() if k != "shift_bytes"}


def _from_torch_tensor(tensor) -> mx.array:
    import torch

    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: move the bits
        return mx.array(tensor.view(torch.int16).numpy()).view(mx.bfloat16)
    return mx.array(tensor.numpy())


def _to_torch_tensor(array: mx.array):
    import torch

    if array.dtype == mx.bfloat16:
        return torch.from_numpy(np.array(array.view(mx.int16))).view(torch.bfloat16)
    return torch.from_numpy(np.array(array))
