"""MEGABYTE (Yu et al. 2023, arXiv 2305.07185) in MLX, computing exactly the function of lucidrains'
megabyte-pytorch 0.3.6, for any number of stages.

How bytes flow (shapes for 2 stages, B sequences of L bytes, patches of P bytes):

    ids (B, L) -> padded with pad_id to a whole number of patches (B, n*P)
    stage 0 (global): each patch of P bytes is embedded and projected to one vector
        [start, patch_0, ..., patch_{n-1}] -> transformer -> outputs 0..n-1 (the last output is dropped:
        it would describe patch n, which does not exist) -> to_next -> P vectors per patch
    stage 1 (local), one sequence per patch:
        [start, byte_0 + ctx_0, ..., byte_{P-1} + ctx_{P-1}] -> transformer -> logits over P + 1 positions

The local start position never sees the global context (lucidrains pads the context with a zero row in
front, where the paper adds it to the start token), so its output is the same for every patch and is only
used to predict byte 0 of the whole sequence. Position i + 1 of patch j predicts byte i + 1 of the patch;
its last position predicts the first byte of patch j + 1. Hence `logits[:, t]` predicts byte `t + 1`, like
megabyte-pytorch's `forward(ids)`.

Parameter names are our own; `convert.py` maps them to and from lucidrains' names.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ...kernels import token_shift
from ..base import Model, checkpointed, weight_bytes
from ..layers import Attention, FeedForward, LayerNorm, RMSNorm, normal_embedding
from .cache import MegabyteCache, ShiftKVCache
from .config import ModelConfig


class Block(nn.Module):
    def __init__(self, config: ModelConfig, dims: int):
        super().__init__()
        self.attention = Attention(dims, config.heads, config.dim_head, config.attn_dropout, rotary=config.rel_pos)
        self.feed_forward = FeedForward(dims, config.ff_mult, config.ff_dropout)

    def __call__(self, x, cache=None):
        # Each sublayer sees the token-shifted input; the residual adds the unshifted one. A whole
        # sequence is shifted inside the sublayer's norm (one pass); a cached one needs the row before.
        if cache is None:
            x = x + self.attention(x, shift=True)
            return x + self.feed_forward(x, shift=True)
        x = x + self.attention(token_shift(x, cache.previous_row("attention", x)), cache)
        return x + self.feed_forward(token_shift(x, cache.previous_row("feed_forward", x)))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig, dims: int, depth: int):
        super().__init__()
        self.layers = [Block(config, dims) for _ in range(depth)]
        self.norm = RMSNorm(dims)
        self.grad_checkpoint = False  # recompute each block in the backward pass instead of storing it

    def __call__(self, x, cache=None):
        for i, layer in enumerate(self.layers):
            if self.grad_checkpoint and cache is None:
                x = checkpointed(layer, x)
            else:
                x = layer(x, None if cache is None else cache[i])
        return self.norm(x)


class PatchEmbedding(nn.Module):
    """Embeds every byte of a patch, concatenates them and projects to the stage's width
    (lucidrains' token_embs[i > 0]: Embedding -> LayerNorm -> Linear -> LayerNorm)."""

    def __init__(self, num_tokens: int, byte_dims: int, patch_size: int, dims: int):
        super().__init__()
        self.embedding = normal_embedding(num_tokens, byte_dims)
        self.norm_in = LayerNorm(patch_size * byte_dims)
        self.proj = nn.Linear(patch_size * byte_dims, dims)
        self.norm_out = LayerNorm(dims)

    def __call__(self, ids):  # (..., patch_size) -> (..., dims)
        x = self.embedding(ids)
        x = x.reshape(*ids.shape[:-1], -1)
        return self.norm_out(self.proj(self.norm_in(x)))


class Stage(nn.Module):
    """Everything one level of the hierarchy owns: its start token, its input embedding, optional learned
    positions, its transformer, and (except for the last stage) the projection that gives each element
    the vectors that seed the next stage's sequence."""

    def __init__(self, config: ModelConfig, stage: int):
        super().__init__()
        dims, byte_dims = config.dim[stage], config.dim[-1]
        last = stage == config.stages - 1
        self.start_token = mx.random.normal((dims,))
        if last:
            self.embedding = normal_embedding(config.num_tokens, byte_dims)
        else:
            self.embedding = PatchEmbedding(config.num_tokens, byte_dims, config.patch_size(stage), dims)
        if config.pos_emb:
            self.position_embedding = normal_embedding(config.max_seq_len[stage], dims)
        self.transformer = Transformer(config, dims, config.depth[stage])
        self.patch_size = config.patch_size(stage)  # bytes per element
        self.sequence_length = config.max_seq_len[stage]  # elements per sequence (of the global stage: at most)
        if not last:
            self.next_shape = (config.max_seq_len[stage + 1], config.dim[stage + 1])
            self.to_next = nn.Linear(dims, self.next_shape[0] * self.next_shape[1])

    # The stage's pieces, used alike by the full forward pass (MEGABYTE.__call__) and by incremental
    # decoding (cache.py), which calls them a few elements at a time.

    def start(self, n: int) -> mx.array:
        """The start token of n sequences: (n, 1, D)."""
        return mx.broadcast_to(self.start_token, (n, 1, self.start_token.shape[0]))

    def inputs(self, ids: mx.array, context: mx.array | None = None, first: int = 0) -> mx.array:
        """The input rows of elements first, first + 1, ... of n sequences: (n, k, D) from their bytes
        (n, k * patch_size). Each is its bytes embedded, plus its learned position (pos_emb), plus what the
        coarser stage's output says about it (`context`, (n, sequence_length, D); None for stage 0)."""
        n, length = ids.shape
        if isinstance(self.embedding, PatchEmbedding):
            x = self.embedding(ids.reshape(n, length // self.patch_size, self.patch_size))
        else:
            x = self.embedding(ids)
        positions = slice(first, first + x.shape[1])
        if "position_embedding" in self:
            # through the layer, not its .weight: a quantized embedding's weight is packed (--quantize)
            x = x + self.position_embedding(mx.arange(first, first + x.shape[1]))
        if context is not None:
            x = x + context[:, positions]
        return x

    def __call__(self, x: mx.array, cache: list | None = None) -> mx.array:
        """The stage's transformer over input rows (n, T, D) (continuing `cache`, one per layer)."""
        return self.transformer(x, cache)

    def context_for_next(self, outputs: mx.array) -> mx.array:
        """What each output (..., D) tells the next stage's sequence it seeds: (-1, next_len, next_D).
        Output i has seen elements < i, so it describes element i (the output at the last position is
        dropped by the caller: it would describe an element that does not exist)."""
        return self.to_next(outputs).reshape(-1, *self.next_shape)

    def make_cache(self, max_length: int | None = None) -> list:
        """Empty per-layer caches for one sequence of this stage (its start token + elements)."""
        length = max_length or self.sequence_length + 1
        return [ShiftKVCache(length) for _ in self.transformer.layers]


class MEGABYTE(Model):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.stages = [Stage(config, s) for s in range(config.stages)]
        self.to_logits = nn.Linear(config.dim[-1], config.num_tokens)

    def __call__(self, ids: mx.array, include_start: bool = False) -> mx.array:
        """ids (B, L) -> logits (B, L, num_tokens); logits[:, t] predicts byte t + 1.

        With include_start=True the result is (B, L + 1, num_tokens) and [:, t] predicts byte t: position 0
        is the start token's prediction of the first byte, which the loss and empty-prompt generation use.
        """
        config = self.config
        if ids.ndim != 2:
            raise ValueError(f"expected ids of shape (batch, length), got shape {tuple(ids.shape)}")
        B, L = ids.shape
        if L == 0:
            # Nothing to see: the first byte's prediction depends on the start tokens alone, so take it
            # from any one-byte input.
            start = self(mx.full((B, 1), config.pad_id, dtype=mx.int32), include_start=True)[:, :1]
            return start if include_start else start[:, :0]
        if L > config.context_length:
            raise ValueError(f"{L} bytes do not fit the model's context of {config.context_length} bytes")

        # Pad to whole global patches, as megabyte-pytorch does; padded positions are never predicted
        # from (causality) and are ignored by the loss.
        patch = config.patch_size(0)
        padding = -L % patch
        if padding:
            ids = mx.pad(ids, [(0, 0), (0, padding)], constant_values=config.pad_id)
        padded = L + padding

        context = None  # (N, T, D): what the coarser stage says about each element of this stage
        for s, stage in enumerate(self.stages):
            T = padded // patch if s == 0 else stage.sequence_length  # elements per sequence
            rows = ids.reshape(-1, T * stage.patch_size)  # (N, T * patch): one row per sequence of this stage
            x = mx.concatenate([stage.start(rows.shape[0]), stage.inputs(rows, context)], axis=1)
            x = stage(x)  # (N, T + 1, D)
            if s + 1 < config.stages:
                context = stage.context_for_next(x[:, :-1])  # (N * T, next_len, next_D)

        # x: (B * patches, P + 1, D) for the last stage, patch P = its max_seq_len.
        x = x.reshape(B, -1, x.shape[-2], x.shape[-1])
        body = x[:, :, 1:].reshape(B, padded, -1)[:, :L]
        if include_start:
            body = mx.concatenate([x[:, 0, :1], body], axis=1)
        return self.logits(body)

    def logits(self, outputs: mx.array) -> mx.array:
        """Byte logits from the last stage's outputs (..., D) -> (..., num_tokens)."""
        return self.to_logits(outputs)

    def set_grad_checkpoint(self, enabled: bool = True) -> None:
        """Trade compute for memory in training: activations inside each block are recomputed."""
        for stage in self.stages:
            stage.transformer.grad_checkpoint = enabled

    def weight_bytes_per_byte(self) -> float:
        """Every stage once per element of it (its patch of bytes), the logits once per byte."""
        per_stage = sum(weight_bytes(stage) / self.config.patch_size(s) for s, stage in enumerate(self.stages))
        return per_stage + weight_bytes(self.to_logits)

    def make_cache(self, batch_size: int = 1):
        """A decoding state for incremental generation (see cache.py)."""
        return MegabyteCache(self, batch_size)

    def patch_starts(self, ids: mx.array) -> mx.array:
        """Fixed patches: byte t begins one when t is a multiple of the global patch."""
        return mx.broadcast_to(mx.arange(ids.shape[1]) % self.config.patch_size(0) == 0, ids.shape)
