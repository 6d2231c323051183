"""H-Net's settings (see model.py for what they build) and its named sizes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from ..base import BlockConfig, check_fields, check_token_layout, setting

# Default max_patches: this many times the patches a sequence has at the target length. The ratio loss
# holds the *mean* near the target; single sequences vary (a list of numbers, a run of spaces), and the
# main network runs over every slot, padding included: headroom costs main-network FLOPs.
PATCH_HEADROOM = 1.25


@dataclass(frozen=True)
class HNetConfig(BlockConfig):
    """A 1-stage H-Net: byte encoder, learned patches, main network over the patches, byte decoder."""

    model_type: ClassVar[str] = "hnet"

    dim: int = setting(128, help="width of the byte layers (encoder and decoder)", low=2)
    main_dim: int = setting(
        256,
        help="width of the main network over the patches (>= --dim): encoder vectors "
        "are extended with learned features into it and cut back",
        low=2,
    )
    encoder_depth: int = setting(2, help="byte layers before the patches", low=0)
    decoder_depth: int = setting(2, help="byte layers after the patches", low=0)
    main_depth: int = setting(4, help="transformer blocks of the main network", low=0)
    mamba: bool = setting(
        False,
        help="encoder and decoder of Mamba-2 layers (the paper's) instead of windowed-attention "
        "blocks (SpaceByte's local blocks; faster on CPUs, and better at equal time there)",
        kind=bool,
    )
    window: int | None = setting(
        None,
        help="positions a byte-layer attention query sees, its own included (default: --dim)",
        low=1,
        optional=True,
    )
    state_size: int = setting(32, help="Mamba-2 state per head (d_state)", low=1)
    expand: int = setting(2, help="Mamba-2 inner width as a multiple of --dim", low=1)
    mamba_head: int = setting(32, help="width of one Mamba-2 head", low=1)
    conv_width: int = setting(4, help="Mamba-2 causal convolution width", low=1)
    scan_block: int = setting(
        64, help="positions per block of the chunked Mamba-2 scan (speed, not the function)", low=1, tunable=True
    )
    target_patch: float = setting(
        6.0, help="mean bytes per patch that the ratio loss aims at", kind=float, low=1, low_open=True
    )
    ratio_loss_weight: float = setting(
        0.03, help="weight of the ratio loss in the training loss", kind=float, low=0, tunable=True
    )
    max_patches: int | None = setting(
        None,
        help="main-network positions per sequence, the start's included; "
        "later boundaries get none (default: 1.25 x context / --target-patch)",
        low=1,
        optional=True,
    )

    def __post_init__(self):
        check_fields(self)
        if self.max_patches is None:
            patches = math.ceil(PATCH_HEADROOM * self.context_length / self.target_patch)
            object.__setattr__(self, "max_patches", min(patches, self.context_length + 1))
        if self.window is None:
            object.__setattr__(self, "window", self.dim)
        if self.main_dim < self.dim:
            raise ValueError(f"main_dim ({self.main_dim}) must be at least dim ({self.dim})")
        if self.main_dim % self.dim_head or (not self.mamba and self.dim % self.dim_head):
            which = "main_dim" if self.main_dim % self.dim_head else "dim"
            raise ValueError(f"{which} ({getattr(self, which)}) must be a multiple of dim_head ({self.dim_head})")
        if self.dim_head % 2:
            raise ValueError(f"dim_head must be even (rotary embeddings), got {self.dim_head}")
        if self.mamba and (self.expand * self.dim) % self.mamba_head:
            raise ValueError(
                f"the Mamba-2 inner width, expand x dim = {self.expand * self.dim}, must be a multiple "
                f"of mamba_head ({self.mamba_head})"
            )
        check_token_layout(self)

    def replace(self, **changes) -> HNetConfig:
        """A changed context or target length derives max_patches again, unless that is given too."""
        values = self.to_dict()
        if ("context_length" in changes or "target_patch" in changes) and "max_patches" not in changes:
            values.pop("max_patches")
        if "dim" in changes and "window" not in changes:
            values.pop("window")
        return type(self).from_dict({**values, **changes})

    def describe(self) -> str:
        kind = "Mamba-2" if self.mamba else f"windowed attention (window {self.window})"
        return (
            f"H-Net, encoder {self.encoder_depth} + decoder {self.decoder_depth} x {self.dim} {kind}, main "
            f"{self.main_depth} x {self.main_dim} over {self.max_patches} patches, target {self.target_patch:g} "
            f"bytes per patch, {self.context_length}-byte context"
        )

    def patching(self) -> str:
        return f"learned patches (about {self.target_patch:g} bytes on average)"

    def flops_per_byte(self, training: bool = True) -> float:
        """Matmul FLOPs per byte of one forward (x3 with backward), counted from the architecture: the
        byte layers, router and residual projection over the L + 1 positions (start included), the main
        network over all max_patches slots (padding included: it is computed), the EMA over them, the
        logits. Causal products count their useful half, as SpaceByte's and MEGABYTE's counts do."""
        L, d, D, G, V = self.context_length, self.dim, self.main_dim, self.max_patches, self.num_tokens
        positions = L + 1
        layers = (self.encoder_depth + self.decoder_depth) * positions * self.byte_layer_flops()
        router = positions * (2 * 2 * d * d + 2 * d * d)  # W_q and W_k, then the residual projection
        ff = self.ff_mult
        main = self.main_depth * G * (2 * 4 * D * D + 2 * 2 * ff * D * D + 2 * 2 * D * (G + 1) / 2)
        block = min(self.scan_block, G)
        ema = G * 2 * d * (block + 1) / 2
        logits = positions * 2 * d * V
        return (layers + router + main + ema + logits) / L * (3 if training else 1)

    def byte_layer_flops(self) -> float:
        """One encoder or decoder layer's matmul FLOPs at one position (averaged over a full context)."""
        d, L = self.dim, self.context_length
        if not self.mamba:
            keys = sum(min(p + 1, self.window) for p in range(L + 1)) / (L + 1)
            return 2 * 4 * d * d + 2 * 2 * self.ff_mult * d * d + 2 * 2 * d * keys
        inner, S, heads = self.expand * d, self.state_size, self.expand * d // self.mamba_head
        Q = min(self.scan_block, L + 1)
        projections = 2 * d * (2 * inner + 2 * S + heads) + 2 * inner * d
        conv = 2 * self.conv_width * (inner + 2 * S)
        within = 2 * S * (Q + 1) / 2 + 2 * inner * (Q + 1) / 2  # c.b scores, then their product with x
        across = 2 * inner * S * 2  # each block's end state, and the entering state's contribution
        return projections + conv + within + across


# Sizes chosen to cost about the training FLOPs per byte of MEGABYTE's presets of the same names
# (docs/hnet.md's table of presets; `train --help` lists all nine), over the same contexts.
PRESETS: dict[str, HNetConfig] = {
    "tiny": HNetConfig(
        context_length=256,
        dim=32,
        main_dim=64,
        encoder_depth=1,
        decoder_depth=1,
        main_depth=2,
        dim_head=16,
        state_size=16,
        mamba_head=16,
    ),
    "small": HNetConfig(context_length=1024, dim=96, main_dim=224, encoder_depth=2, decoder_depth=2, main_depth=4),
    "40m": HNetConfig(
        context_length=2048,
        dim=192,
        main_dim=448,
        encoder_depth=4,
        decoder_depth=4,
        main_depth=11,
        dim_head=64,
        state_size=64,
        mamba_head=64,
    ),
}
