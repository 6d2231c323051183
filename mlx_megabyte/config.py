"""The model configuration: megabyte-pytorch's constructor arguments, validated, plus named presets.

A *stage* is one level of the hierarchy; stage 0 is the global model, the last stage predicts bytes.
`max_seq_len[s]` is how many elements one sequence of stage `s` holds, so a stage-`s` element spans
`prod(max_seq_len[s + 1:])` bytes (its *patch*) and the whole context is `prod(max_seq_len)` bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True)
class ModelConfig:
    """megabyte-pytorch 0.3.6's `MEGABYTE(...)` arguments, same names and defaults (`flash_attn` aside:
    it selects a kernel, not a function). An int `dim` is broadcast to every stage."""

    model_type: ClassVar[str] = "megabyte"  # what config.json records (spacebyte.py: the other architecture)

    num_tokens: int
    dim: tuple[int, ...]
    depth: tuple[int, ...]
    max_seq_len: tuple[int, ...]
    dim_head: int = 64
    heads: int = 8
    attn_dropout: float = 0.0
    ff_mult: int = 4
    ff_dropout: float = 0.0
    pad_id: int = 0
    rel_pos: bool = False
    pos_emb: bool = False

    def __post_init__(self):
        # Accept JSON lists and a single int dim; store tuples so configs compare and hash.
        depth = _int_tuple("depth", self.depth)
        max_seq_len = _int_tuple("max_seq_len", self.max_seq_len)
        if len(depth) != len(max_seq_len):
            raise ValueError(
                f"depth has {len(depth)} stages but max_seq_len has {len(max_seq_len)}: give one entry per stage"
            )
        if len(depth) == 0:
            raise ValueError("depth and max_seq_len need at least one stage")
        dim = self.dim
        if isinstance(dim, int) and not isinstance(dim, bool):
            dim = (dim,) * len(depth)
        dim = _int_tuple("dim", dim)
        if len(dim) != len(depth):
            raise ValueError(f"dim has {len(dim)} entries but there are {len(depth)} stages")
        object.__setattr__(self, "dim", dim)
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "max_seq_len", max_seq_len)

        if any(d < 2 for d in dim):
            raise ValueError(f"every dim must be at least 2 (token shift splits it in halves), got {dim}")
        if any(d < 0 for d in depth):
            raise ValueError(f"depth must not be negative, got {depth}")
        if any(n < 1 for n in max_seq_len):
            raise ValueError(f"max_seq_len entries must be positive, got {max_seq_len}")
        for name in ("num_tokens", "dim_head", "heads", "ff_mult"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("rel_pos", "pos_emb"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.pad_id, int) or isinstance(self.pad_id, bool):
            raise ValueError(f"pad_id must be an integer, got {self.pad_id!r}")
        for name in ("attn_dropout", "ff_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if self.rel_pos and self.dim_head % 2:
            raise ValueError(f"rel_pos (rotary embeddings) needs an even dim_head, got {self.dim_head}")
        if not 0 <= self.pad_id < self.num_tokens:
            raise ValueError(f"pad_id must be a token id in [0, {self.num_tokens}), got {self.pad_id}")
        for name in ("attn_dropout", "ff_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def stages(self) -> int:
        return len(self.depth)

    @property
    def context_length(self) -> int:
        """Bytes in one full sequence: the product of max_seq_len."""
        return math.prod(self.max_seq_len)

    def patch_size(self, stage: int) -> int:
        """Bytes covered by one element of `stage` (1 for the last stage)."""
        return math.prod(self.max_seq_len[stage + 1 :])

    def describe(self) -> str:
        return f"MEGABYTE, {self.stages} stages, dim {self.dim}, depth {self.depth}, max_seq_len {self.max_seq_len}"

    def flops_per_byte(self, training: bool = True) -> float:
        """Matmul FLOPs per byte of one forward (x3 with backward), attention included, counted from the
        architecture: every stage runs its sequences with a start token, and causal attention does half the
        score matrix."""
        inner = self.heads * self.dim_head
        total = 0.0
        for s in range(self.stages):
            d, length, patch = self.dim[s], self.max_seq_len[s], self.patch_size(s)
            positions_per_byte = (length + 1) / length / patch  # elements per byte, start token included
            per_position = self.depth[s] * (2 * 4 * d * inner + 2 * 2 * d * self.ff_mult * d
                                            + 2 * 2 * inner * (length + 1) / 2)
            total += per_position * positions_per_byte
            if s + 1 < self.stages:
                total += 2 * d * self.max_seq_len[s + 1] * self.dim[s + 1] / patch  # to_next, once per element
                total += 2 * patch * self.dim[-1] * d / patch  # patch embedding projection
        total += 2 * self.dim[-1] * self.num_tokens  # logits
        return total * (3 if training else 1)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Build from a dict, ignoring keys that are not constructor fields (e.g. `flash_attn`, `model_type`)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        return cls.from_json(Path(path).read_text())


def _int_tuple(name, value) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"{name} must be a list of integers (one per stage), got {value!r}")
    return tuple(value)


# Named sizes. `40m` is the seed-sized laptop model (44.3M parameters, 2048-byte context) that the
# benchmarks also use; `small` trains usefully in minutes on two CPU cores; `tiny` is for tests.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        num_tokens=256, dim=(64, 32), depth=(2, 2), max_seq_len=(32, 8), dim_head=16, heads=4
    ),
    "small": ModelConfig(
        num_tokens=256, dim=(256, 128), depth=(4, 2), max_seq_len=(128, 8), dim_head=32, heads=8
    ),
    "40m": ModelConfig(num_tokens=256, dim=(512, 256), depth=(12, 4), max_seq_len=(256, 8)),
}
