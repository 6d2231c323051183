"""SpaceByte (Slagle 2024, arXiv 2404.14408) in MLX: a byte-level transformer whose larger global blocks
run only at word boundaries.

How bytes flow (B sequences of L bytes; d = local_dim, D = global_dim, G = global_length):

    [start, byte_0, ..., byte_{L-1}] -> embedded (B, L + 1, d) -> the first half of the local blocks
    (windowed causal attention: each position sees the last `window` positions)
    boundary positions (the start, and each spacelike byte that follows a non-spacelike one, plus the
    fallback below) -> gathered in order into (B, G, d), zero-padded to D, plus a learned global position
    -> global blocks (causal) -> their first d features added back at the positions they came from
    -> the rest of the local blocks -> norm -> logits (B, L + 1, num_tokens)

Position p holds byte p - 1 (position 0 the start), so its output predicts byte p: `logits[:, t]` of
`model(ids)` predicts byte t + 1, and with include_start the first position predicts byte 0, as MEGABYTE's.

The boundary rule (the paper's): a byte is *spacelike* unless it is an ASCII letter or digit or a UTF-8
continuation byte (0x80-0xBF); ids that are no byte are spacelike (with shift_bytes the rule reads
token - 1, the byte it stands for; on pictures and sound it sees byte values, not words). A byte starts a global position when it is
spacelike and the byte before it is not (the start counts as spacelike). Fallback (ours): text without
spaces (a long identifier, base64, DNA) would leave the global model idle, so a position whose last
boundary is `max_patch` positions back is a boundary too: no patch is longer than `max_patch` bytes.
(Multi-byte UTF-8 characters need no fallback: their leading bytes 0xC0-0xFF are spacelike, so
Chinese or Thai text gets a boundary at every character after the first of a run.)

A sequence has at most G global positions, the start included; boundaries after the G-th get no global
block (the paper stops the loss there; here those bytes are still predicted, by the local blocks with
the global outputs earlier in their window, and counted, so that bits per byte cover every byte).

Differences from the paper's code: rotary positions in the local blocks (the global ones keep learned
positions, which lets each row of a decoding batch sit at its own global position), RMSNorm and GELU
as in model.py, no query/key norms, a learned start vector instead of a BOS byte.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ...tokens import layout_of
from ..base import Model, checkpointed, weight_bytes
from ..layers import Attention, FeedForward, RMSNorm, embed, normal_embedding
from .boundaries import boundaries, gather_boundaries, scatter_back
from .cache import SpaceByteCache
from .config import SpaceByteConfig

# --- modules ------------------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, config: SpaceByteConfig, dims: int, window: int | None):
        super().__init__()
        # heads = width / dim_head; local blocks: windowed, rotary; global ones: learned positions
        self.attention = Attention(
            dims,
            dims // config.dim_head,
            config.dim_head,
            config.attn_dropout,
            rotary=window is not None,
            window=window,
        )
        self.feed_forward = FeedForward(dims, config.ff_mult, config.ff_dropout)

    def __call__(self, x, cache=None, mask=None):
        x = x + self.attention(x, cache, mask)
        return x + self.feed_forward(x)


class SpaceByte(Model):
    def __init__(self, config: SpaceByteConfig):
        super().__init__()
        self.config = config
        d, D = config.local_dim, config.global_dim
        self.embedding = normal_embedding(config.num_tokens, d)
        self.start_token = mx.random.normal((d,))
        self.initial_blocks = [Block(config, d, config.window) for _ in range(config.initial_depth)]
        self.global_position = mx.random.normal((config.global_length, D))
        self.global_blocks = [Block(config, D, None) for _ in range(config.global_depth)]
        self.final_blocks = [Block(config, d, config.window) for _ in range(config.local_depth - config.initial_depth)]
        self.norm = RMSNorm(d)
        self.to_logits = nn.Linear(d, config.num_tokens)
        self.grad_checkpoint = False

    def __call__(self, ids: mx.array, include_start: bool = False) -> mx.array:
        """ids (B, L) -> logits (B, L, num_tokens); logits[:, t] predicts byte t + 1. With include_start
        (B, L + 1, num_tokens), [:, t] predicting byte t (position 0: the start's prediction of byte 0)."""
        if ids.ndim != 2:
            raise ValueError(f"expected ids of shape (batch, length), got shape {tuple(ids.shape)}")
        if ids.shape[1] > self.config.context_length:
            raise ValueError(
                f"{ids.shape[1]} bytes do not fit the model's context of {self.config.context_length} bytes"
            )
        logits = self.logits(self.forward(ids))
        return logits if include_start else logits[:, 1:]

    def forward(self, ids: mx.array, cache: SpaceByteCache | None = None) -> mx.array:
        """The last local block's outputs (B, L + 1, d) for [start, ids]; fills `cache`'s layers if given."""
        config = self.config
        x = mx.concatenate([self.start(ids.shape[0]), embed(self.embedding, ids)], axis=1)  # (B, L + 1, d)
        x = self.run_blocks(self.initial_blocks, x, None if cache is None else cache.initial)
        boundary = boundaries(ids, config.max_patch, config.num_tokens, layout_of(config).offset)
        y, slot = gather_boundaries(x, boundary, config.global_length)  # (B, G', d)
        y = self.to_global(y, self.global_position[: y.shape[1]])
        y = self.run_blocks(self.global_blocks, y, None if cache is None else cache.globals)
        x = scatter_back(x, y[..., : config.local_dim], slot)
        return self.run_blocks(self.final_blocks, x, None if cache is None else cache.final)

    # Pieces shared with decoding (SpaceByteCache).

    def run_blocks(self, blocks, x, caches=None, mask=None):
        """x through `blocks` in turn, continuing `caches` (one per block) if given; a caller's `mask`
        says which keys each row sees (the global blocks' slots while decoding)."""
        for i, block in enumerate(blocks):
            if caches is not None:
                x = block(x, caches[i], mask)
            else:
                x = checkpointed(block, x) if self.grad_checkpoint else block(x)
        return x

    def start(self, n: int) -> mx.array:
        return mx.broadcast_to(self.start_token, (n, 1, self.start_token.shape[0]))

    def to_global(self, x: mx.array, positions: mx.array) -> mx.array:
        """Local vectors (B, T, d) in the global width: zero-padded, plus their learned positions."""
        padding = mx.zeros((*x.shape[:-1], self.config.global_dim - self.config.local_dim), x.dtype)
        return mx.concatenate([x, padding], axis=-1) + positions.astype(x.dtype)

    def logits(self, outputs: mx.array) -> mx.array:
        return self.to_logits(self.norm(outputs))

    def set_grad_checkpoint(self, enabled: bool = True) -> None:
        self.grad_checkpoint = enabled

    def weight_bytes_per_byte(self) -> float:
        """The local blocks and the logits once per byte; the global blocks once per boundary, counted at
        the rate their positions are sized for (global_length per context: 1 in 4 bytes by default)."""
        config = self.config
        local = weight_bytes(self.embedding, *self.initial_blocks, *self.final_blocks, self.norm, self.to_logits)
        return local + weight_bytes(*self.global_blocks) * config.global_length / config.context_length

    def make_cache(self, batch_size: int = 1) -> SpaceByteCache:
        return SpaceByteCache(self, batch_size)

    def patch_starts(self, ids: mx.array) -> mx.array:
        """Byte t begins a patch when position t + 1 (position 0 is the start) is a boundary."""
        config = self.config
        return boundaries(ids, config.max_patch, config.num_tokens, layout_of(config).offset)[:, 1:]
