"""The model configuration: megabyte-pytorch's constructor arguments, validated, plus named presets.

A *stage* is one level of the hierarchy; stage 0 is the global model, the last stage predicts bytes.
`max_seq_len[s]` is how many elements one sequence of stage `s` holds, so a stage-`s` element spans
`prod(max_seq_len[s + 1:])` bytes (its *patch*) and the whole context is `prod(max_seq_len)` bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..base import STAGES, Config, check_fields, check_token_layout, ints, setting, shift_bytes_setting


@dataclass(frozen=True)
class ModelConfig(Config):
    """megabyte-pytorch 0.3.6's `MEGABYTE(...)` arguments, same names and defaults (`flash_attn` aside:
    it selects a kernel, not a function), and our `shift_bytes`. An int `dim` is broadcast to every stage."""

    model_type: ClassVar[str] = "megabyte"

    num_tokens: int = setting(help="vocabulary (at least 256 for bytes)", low=1)
    dim: tuple[int, ...] = setting(help="width per stage, e.g. 512,256 (one int: every stage)", kind=STAGES, low=2)
    depth: tuple[int, ...] = setting(help="layers per stage, e.g. 12,4 (one int: every stage)", kind=STAGES, low=0)
    max_seq_len: tuple[int, ...] = setting(
        help="elements per sequence of each stage, e.g. 256,8: the last is the patch of bytes (one int: every stage)",
        kind=STAGES,
        low=1,
    )
    dim_head: int = setting(64, help="width of one attention head", low=1)
    heads: int = setting(8, help="attention heads (every stage)", low=1)
    attn_dropout: float = setting(
        0.0, help="dropout on attention probabilities", kind=float, low=0, high=1, high_open=True, tunable=True
    )
    ff_mult: int = setting(4, help="feed-forward width as a multiple of the width", low=1)
    ff_dropout: float = setting(
        0.0, help="dropout after the feed-forward GELU", kind=float, low=0, high=1, high_open=True, tunable=True
    )
    pad_id: int = setting(0, help="token ignored by the loss", low=0, tunable=True)
    # Ours, not megabyte-pytorch's: which byte each token id is (tokens.py). The torch model is the same
    # function either way; the converters carry it as num_tokens 258 (convert.py).
    shift_bytes: bool = shift_bytes_setting()
    rel_pos: bool = setting(False, help="rotary embeddings", kind=bool)
    pos_emb: bool = setting(False, help="learned absolute positions", kind=bool)

    def __post_init__(self):
        # Accept JSON lists and a single int dim; store tuples so configs compare and hash.
        depth = ints("depth", self.depth)
        max_seq_len = ints("max_seq_len", self.max_seq_len)
        if len(depth) != len(max_seq_len):
            raise ValueError(
                f"depth has {len(depth)} stages but max_seq_len has {len(max_seq_len)}: give one entry per stage"
            )
        if len(depth) == 0:
            raise ValueError("depth and max_seq_len need at least one stage")
        dim = self.dim
        if isinstance(dim, int) and not isinstance(dim, bool):
            dim = (dim,) * len(depth)
        dim = ints("dim", dim)
        if len(dim) != len(depth):
            raise ValueError(f"dim has {len(dim)} entries but there are {len(depth)} stages")
        object.__setattr__(self, "dim", dim)
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "max_seq_len", max_seq_len)
        if any(d < 2 for d in dim):  # checked before the rest: the message says why
            raise ValueError(f"every dim must be at least 2 (token shift splits it in halves), got {dim}")
        check_fields(self)
        if self.rel_pos and self.dim_head % 2:
            raise ValueError(f"rel_pos (rotary embeddings) needs an even dim_head, got {self.dim_head}")
        check_token_layout(self)

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

    def patching(self) -> str:
        return f"fixed patches of {self.patch_size(0)} bytes"

    def replace(self, **changes) -> ModelConfig:
        """Per-stage changes as tuples of one length. One value means "every stage"; the number of
        stages is the longest list given (else this config's); this config's width fills in for
        another number of stages."""
        per_stage = {
            k: tuple(v) if isinstance(v, (list, tuple)) else (v,)
            for k, v in changes.items()
            if k in ("dim", "depth", "max_seq_len")
        }
        stages = max((len(v) for v in per_stage.values()), default=self.stages)
        stages = stages if stages > 1 else self.stages
        per_stage = {k: v * stages if len(v) == 1 else v for k, v in per_stage.items()}
        if "dim" not in per_stage and stages != self.stages:
            per_stage["dim"] = (self.dim[0],) * stages
        return type(self).from_dict({**self.to_dict(), **changes, **per_stage})

    def flops_per_byte(self, training: bool = True) -> float:
        """Matmul FLOPs per byte of one forward (x3 with backward), attention included, counted from the
        architecture: every stage runs its sequences with a start token, and causal attention does half the
        score matrix."""
        inner = self.heads * self.dim_head
        total = 0.0
        for s in range(self.stages):
            d, length, patch = self.dim[s], self.max_seq_len[s], self.patch_size(s)
            positions_per_byte = (length + 1) / length / patch  # elements per byte, start token included
            per_position = self.depth[s] * (
                2 * 4 * d * inner + 2 * 2 * d * self.ff_mult * d + 2 * 2 * inner * (length + 1) / 2
            )
            total += per_position * positions_per_byte
            if s + 1 < self.stages:
                total += 2 * d * self.max_seq_len[s + 1] * self.dim[s + 1] / patch  # to_next, once per element
                total += 2 * patch * self.dim[-1] * d / patch  # patch embedding projection
        total += 2 * self.dim[-1] * self.num_tokens  # logits
        return total * (3 if training else 1)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        return cls.from_json(Path(path).read_text())


# Named sizes. `40m` is the seed-sized laptop model (44.3M parameters, 2048-byte context) that the
# benchmarks also use; `small` trains usefully in minutes on two CPU cores; `tiny` is for tests.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(num_tokens=256, dim=(64, 32), depth=(2, 2), max_seq_len=(32, 8), dim_head=16, heads=4),
    "small": ModelConfig(num_tokens=256, dim=(256, 128), depth=(4, 2), max_seq_len=(128, 8), dim_head=32, heads=8),
    "40m": ModelConfig(num_tokens=256, dim=(512, 256), depth=(12, 4), max_seq_len=(256, 8)),
}
