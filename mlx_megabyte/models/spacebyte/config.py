"""SpaceByte's settings (see model.py for what they build) and its named sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..base import BlockConfig, check_fields, check_token_layout, setting

BYTES_PER_GLOBAL = 4  # default global_length = context_length / this (the paper uses 6 for its corpora)


@dataclass(frozen=True)
class SpaceByteConfig(BlockConfig):
    """A SpaceByte model. Local blocks run over every byte, global blocks over the boundary positions."""

    model_type: ClassVar[str] = "spacebyte"

    local_dim: int = setting(128, help="width of the local (byte) blocks", low=2)
    global_dim: int = setting(
        256, help="width of the global blocks (>= --local-dim): local vectors are zero-padded into it and back", low=2
    )
    local_depth: int = setting(2, help="local blocks in all: half before the global ones, the rest after", low=0)
    global_depth: int = setting(4, help="global blocks", low=0)
    global_length: int | None = setting(
        None, help="global positions per sequence, start included (default: context / 4)", low=1, optional=True
    )
    window: int | None = setting(
        None, help="positions a local query sees, its own included (default: --local-dim)", low=1, optional=True
    )
    max_patch: int = setting(
        16, help="a boundary after at most this many bytes without one (text without spaces)", low=1
    )

    def __post_init__(self):
        check_fields(self)
        if self.global_length is None:
            object.__setattr__(self, "global_length", -(-self.context_length // BYTES_PER_GLOBAL))
        if self.window is None:
            object.__setattr__(self, "window", self.local_dim)
        if self.global_dim < self.local_dim:
            raise ValueError(f"global_dim ({self.global_dim}) must be at least local_dim ({self.local_dim})")
        for name in ("local_dim", "global_dim"):
            if getattr(self, name) % self.dim_head:
                raise ValueError(f"{name} ({getattr(self, name)}) must be a multiple of dim_head ({self.dim_head})")
        if self.dim_head % 2:
            raise ValueError(f"dim_head must be even (rotary embeddings), got {self.dim_head}")
        check_token_layout(self)

    @property
    def initial_depth(self) -> int:
        return self.local_depth // 2

    def replace(self, **changes) -> SpaceByteConfig:
        """A changed context derives its global length again, unless that is given too."""
        values = self.to_dict()
        if "context_length" in changes and "global_length" not in changes:
            values.pop("global_length")
        return type(self).from_dict({**values, **changes})

    def describe(self) -> str:
        return (
            f"SpaceByte, local {self.local_depth} x {self.local_dim} (window {self.window}), global "
            f"{self.global_depth} x {self.global_dim} over {self.global_length} positions, "
            f"{self.context_length}-byte context"
        )

    def patching(self) -> str:
        return f"patches at word boundaries (at most {self.max_patch} bytes)"

    def flops_per_byte(self, training: bool = True) -> float:
        """Matmul FLOPs per byte of one forward (x3 with backward), attention included: every local block
        runs over the L + 1 positions (start included) and sees min(p + 1, window) keys at position p (the
        useful work: kernels.attention computes about twice as many scores, in blocks); every global
        block runs over all global_length positions, padding included, with causal attention."""
        L, d, D, G = self.context_length, self.local_dim, self.global_dim, self.global_length
        ff = self.ff_mult
        keys = sum(min(p + 1, self.window) for p in range(L + 1))  # summed over positions
        local = self.local_depth * ((L + 1) * (2 * 4 * d * d + 2 * 2 * ff * d * d) + 2 * 2 * d * keys)
        glob = self.global_depth * (G * (2 * 4 * D * D + 2 * 2 * ff * D * D) + 2 * 2 * D * G * (G + 1) / 2)
        logits = (L + 1) * 2 * d * self.num_tokens
        return (local + glob + logits) / L * (3 if training else 1)


# Sizes chosen to cost about the training FLOPs per byte of MEGABYTE's presets of the same names
# (config.PRESETS; docs/spacebyte.md's table of presets lists both), over the same contexts, with the
# paper's shape: the global width twice the local one, local window = local width, as many global blocks
# as local ones or more. They have fewer parameters than MEGABYTE's: its global model runs once per 8 bytes.
PRESETS: dict[str, SpaceByteConfig] = {
    "tiny": SpaceByteConfig(
        context_length=256, local_dim=32, global_dim=64, local_depth=2, global_depth=2, dim_head=16
    ),
    "small": SpaceByteConfig(
        context_length=1024, local_dim=96, global_dim=192, local_depth=4, global_depth=5, dim_head=32
    ),
    "40m": SpaceByteConfig(
        context_length=2048, local_dim=192, global_dim=384, local_depth=8, global_depth=12, dim_head=64
    ),
}
