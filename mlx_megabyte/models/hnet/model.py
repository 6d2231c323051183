"""H-Net (Hwang, Wang & Gu 2025, arXiv 2507.07955) in MLX, one stage: a byte encoder, patches whose
boundaries the model learns, a main network over the patches, a byte decoder.

How bytes flow (B sequences of L bytes; d = dim, D = main_dim, G = max_patches):

    [start, byte_0, ..., byte_{L-1}] -> embedded (B, L + 1, d) -> encoder (windowed-attention blocks, or
    Mamba-2 layers with `mamba`) -> h (B, L + 1, d)
    router: p_t = (1 - cos(W_q h_{t-1}, W_k h_t)) / 2, p_0 = 1; a patch begins where p_t > 1/2
    chunking: the h of each patch's first position, gathered into (B, G, d), extended to D with learned
    features -> main network (causal transformer, rotary positions over the patches) -> first d features
    de-chunking: an EMA over the patches weighted by their boundary probability, zbar_k = P_k z_k +
    (1 - P_k) zbar_{k-1}, each byte taking its patch's zbar, times the straight-through confidence
    (1 forward) -> plus a linear residual of h (zero at init) -> decoder -> norm -> logits (B, L + 1, V)

Position p holds byte p - 1 (position 0 the start), so its output predicts byte p: `logits[:, t]` of
`model(ids)` predicts byte t + 1, and with include_start the first position predicts byte 0. Causal: p_t
looks at positions t - 1 and t, a patch's main-network output at patches begun at or before it, and a
position takes the patch begun at or before it.

Training adds the ratio loss (chunking.ratio_loss, weighted by ratio_loss_weight) to the cross-entropy:
`forward_with_stats` returns it with the mean patch length, `auxiliary_loss` weights it (base.py).

A sequence has at most G patches, the start's included; boundaries after the G-th get no main-network
position, and their bytes keep the G-th patch's smoothed output (the EMA does not move past the last
slot). They are still predicted and counted, and still count for the ratio loss, which pushes back.

Differences from the reference code: lucidrains' RMSNorm and GELU feed-forward (as the other
architectures here) instead of SwiGLU; no MLP in the Mamba-2 layers, as the paper's encoders; the main
network's extra features start at zero as there, the default MLX init elsewhere; no per-stage learning
rates; a learned start vector instead of a BOS byte.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..base import Model, checkpointed, weight_bytes
from ..layers import Attention, FeedForward, RMSNorm, embed, normal_embedding
from . import chunking
from .cache import HNetCache
from .config import HNetConfig
from .mamba2 import Mamba2

# --- modules ------------------------------------------------------------------------------------------


class Block(nn.Module):
    """A pre-norm transformer block: rotary causal attention (windowed for bytes), GELU feed-forward."""

    def __init__(self, config: HNetConfig, dims: int, window: int | None):
        super().__init__()
        self.attention = Attention(
            dims, dims // config.dim_head, config.dim_head, config.attn_dropout, rotary=True, window=window
        )
        self.feed_forward = FeedForward(dims, config.ff_mult, config.ff_dropout)

    def __call__(self, x, cache=None, mask=None):
        x = x + self.attention(x, cache, mask)
        return x + self.feed_forward(x)


class MambaBlock(nn.Module):
    """A Mamba-2 layer on the residual stream (mamba2.py; it norms its own input)."""

    def __init__(self, config: HNetConfig):
        super().__init__()
        self.mixer = Mamba2(
            config.dim, config.state_size, config.expand, config.mamba_head, config.conv_width, config.scan_block
        )

    def __call__(self, x, cache=None, mask=None):
        return x + self.mixer(x, cache)


class Stack(nn.Module):
    """Layers then a norm (the reference's "isotropic" networks all end in one)."""

    def __init__(self, layers: list[nn.Module], dims: int):
        super().__init__()
        self.layers = layers
        self.norm = RMSNorm(dims)
        self.grad_checkpoint = False

    def __call__(self, x, caches=None, mask=None):
        for i, layer in enumerate(self.layers):
            if caches is not None:
                x = layer(x, caches[i], mask)
            else:
                x = checkpointed(layer, x) if self.grad_checkpoint else layer(x)
        return self.norm(x)


class HNet(Model):
    def __init__(self, config: HNetConfig):
        super().__init__()
        self.config = config
        d, D = config.dim, config.main_dim
        self.embedding = normal_embedding(config.num_tokens, d)
        self.start_token = mx.random.normal((d,))
        self.encoder = Stack(self.byte_layers(config.encoder_depth), d)
        self.router = chunking.Router(d)
        self.main_features = mx.zeros((D - d,))  # what extends a patch's d features to the main width
        self.main = Stack([Block(config, D, None) for _ in range(config.main_depth)], D)
        self.residual = nn.Linear(d, d, bias=False)  # the encoder's path around the patches (zero at init)
        self.residual.weight = mx.zeros((d, d))
        self.decoder = Stack(self.byte_layers(config.decoder_depth), d)
        self.to_logits = nn.Linear(d, config.num_tokens)

    def byte_layers(self, depth: int) -> list[nn.Module]:
        config = self.config
        if config.mamba:
            return [MambaBlock(config) for _ in range(depth)]
        return [Block(config, config.dim, config.window) for _ in range(depth)]

    def __call__(self, ids: mx.array, include_start: bool = False) -> mx.array:
        """ids (B, L) -> logits (B, L, num_tokens); logits[:, t] predicts byte t + 1. With include_start
        (B, L + 1, num_tokens), [:, t] predicting byte t (position 0: the start's prediction of byte 0)."""
        logits = self.logits(self.forward(ids).outputs)
        return logits if include_start else logits[:, 1:]

    def forward_with_stats(self, ids: mx.array) -> tuple[mx.array, dict[str, mx.array]]:
        """Logits with the start (as include_start) and, summed over the sequences (base.py), their ratio
        loss and mean patch length (bytes per byte that begins a patch)."""
        result = self.forward(ids)
        stats = {}
        if ids.shape[1]:
            started = mx.sum(result.boundary[:, 1:], axis=1)  # (B,)
            stats = {
                "ratio_loss": mx.sum(chunking.ratio_loss(result.p, result.boundary, self.config.target_patch)),
                "patch_length": mx.sum(ids.shape[1] / mx.maximum(started, 1)),
            }
        return self.logits(result.outputs), stats

    def auxiliary_loss(self, stats: dict[str, mx.array]) -> mx.array | None:
        """The weighted ratio loss (the paper's alpha, ratio_loss_weight)."""
        return self.config.ratio_loss_weight * stats["ratio_loss"] if "ratio_loss" in stats else None

    def forward(self, ids: mx.array, cache: HNetCache | None = None) -> Pass:
        """The decoder's outputs (B, L + 1, d) for [start, ids] and what happened on the way (Pass); fills
        `cache`'s layers if given."""
        self.check(ids)
        config = self.config
        h = self.encode(ids, None if cache is None else cache.encoder)  # (B, L + 1, d)
        p = self.router(h)  # (B, L + 1), float32
        boundary = chunking.boundaries(p)
        patches, order, slot = chunking.chunk(h, boundary, config.max_patches)  # (B, G, d), (B, G), (B, L + 1)
        z = self.main_network(patches, None if cache is None else cache.main)  # (B, G, d)
        zbar = chunking.smooth(z, mx.take_along_axis(p, order, axis=1), config.scan_block)
        smoothed = chunking.dechunk(zbar, slot)  # (B, L + 1, d)
        y = smoothed * chunking.confidence(p, boundary)[..., None].astype(h.dtype) + self.residual(h)
        outputs = self.decoder(y, None if cache is None else cache.decoder)
        return Pass(outputs, h, p, boundary, smoothed)

    def check(self, ids: mx.array) -> None:
        if ids.ndim != 2:
            raise ValueError(f"expected ids of shape (batch, length), got shape {tuple(ids.shape)}")
        if ids.shape[1] > self.config.context_length:
            raise ValueError(
                f"{ids.shape[1]} bytes do not fit the model's context of {self.config.context_length} bytes"
            )

    # Pieces shared with decoding (HNetCache).

    def encode(self, ids: mx.array, caches=None, start: bool = True) -> mx.array:
        """Encoder states (B, T, d) of [start, ids] (of ids alone without `start`: decoding steps)."""
        x = embed(self.embedding, ids)
        if start:
            x = mx.concatenate(
                [mx.broadcast_to(self.start_token, (ids.shape[0], 1, x.shape[-1])).astype(x.dtype), x], axis=1
            )
        return self.encoder(x, caches)

    def main_network(self, patches: mx.array, caches=None, mask=None) -> mx.array:
        """Patch vectors (B, G, d) -> the main network's outputs, cut back to (B, G, d)."""
        extra = mx.broadcast_to(self.main_features, (*patches.shape[:-1], self.main_features.shape[0]))
        x = self.main(mx.concatenate([patches, extra.astype(patches.dtype)], axis=-1), caches, mask)
        return x[..., : self.config.dim]

    def logits(self, outputs: mx.array) -> mx.array:
        return self.to_logits(outputs)

    def set_grad_checkpoint(self, enabled: bool = True) -> None:
        for stack in (self.encoder, self.main, self.decoder):
            stack.grad_checkpoint = enabled

    def weight_bytes_per_byte(self) -> float:
        """The byte layers, router, residual and logits once per byte; the main network once per patch,
        at the mean length the ratio loss aims at (target_patch)."""
        per_byte = weight_bytes(self.embedding, self.encoder, self.router, self.residual, self.decoder, self.to_logits)
        return per_byte + weight_bytes(self.main) / self.config.target_patch

    def make_cache(self, batch_size: int = 1) -> HNetCache:
        return HNetCache(self, batch_size)

    def patch_starts(self, ids: mx.array) -> mx.array:
        """Byte t begins a patch when the router puts a boundary at position t + 1 (whether or not the
        patch gets a main-network slot)."""
        self.check(ids)
        return chunking.boundaries(self.router(self.encode(ids)))[:, 1:]


class Pass:
    """What one forward pass computed, for the loss's statistics and for prefilling a decoding state:
    outputs (B, T, d) the decoder's, h (B, T, d) the encoder's, p (B, T) the boundary probabilities,
    boundary (B, T) the decisions, smoothed (B, T, d) each position's de-chunked patch."""

    def __init__(self, outputs, h, p, boundary, smoothed):
        self.outputs, self.h, self.p, self.boundary, self.smoothed = outputs, h, p, boundary, smoothed
