"""The layers the architectures share: torch's LayerNorm, lucidrains' RMSNorm, a pre-norm GELU
feed-forward and a pre-norm multi-head attention (causal; rotary positions, a window or a caller's mask
where an architecture asks).

Their arithmetic goes through kernels.py, which picks each operation's kernel by device: this file never
asks where it runs. Parameter names are the checkpoints' (query, key_value, out, up, down, norm.weight):
renaming one would orphan every saved model.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..kernels import attention, gelu, layer_norm, projection, rms_norm, rope, self_attention


def embed(embedding: nn.Module, ids: mx.array) -> mx.array:
    """embedding(ids) (..., dims), also for no ids at all when the embedding is quantized (--quantize):
    MLX's QuantizedEmbedding cannot reshape an empty array, and a decoding state starts from zero bytes."""
    if ids.size:
        return embedding(ids)
    row = embedding(mx.zeros((1,), dtype=mx.int32))
    return mx.zeros((*ids.shape, row.shape[-1]), row.dtype)


def normal_embedding(num_tokens: int, dims: int) -> nn.Embedding:
    """An embedding drawn from N(0, 1), torch's nn.Embedding init, which every architecture here keeps."""
    embedding = nn.Embedding(num_tokens, dims)
    embedding.weight = mx.random.normal(embedding.weight.shape)
    return embedding


class RMSNorm(nn.Module):
    """lucidrains' RMSNorm: x / max(||x|| / sqrt(D), eps) * g (kernels.rms_norm); of the token-shifted
    x with `shift`."""

    def __init__(self, dims: int, eps: float = 1e-8):
        super().__init__()
        self.weight = mx.ones((dims,))
        self.eps = eps

    def __call__(self, x, shift: bool = False):
        return rms_norm(x, self.weight, self.eps, shift)


class LayerNorm(nn.LayerNorm):
    """torch's nn.LayerNorm (weight and bias, as MLX names them), through kernels.layer_norm."""

    def __call__(self, x):
        return layer_norm(x, self.weight, self.bias, self.eps)


class FeedForward(nn.Module):
    """Pre-norm GELU MLP (torch's erf-based nn.GELU(), see kernels.gelu)."""

    def __init__(self, dims: int, mult: int, dropout: float):
        super().__init__()
        self.norm = RMSNorm(dims)
        self.up = nn.Linear(dims, dims * mult)
        self.dropout = nn.Dropout(dropout)
        self.down = nn.Linear(dims * mult, dims)

    def __call__(self, x, shift: bool = False):
        return self.down(self.dropout(gelu(self.up(self.norm(x, shift)))))


class Attention(nn.Module):
    """Pre-norm multi-head causal attention, lucidrains' to_q / to_kv / to_out.

    rotary: rotary positions (rotate-half, theta 10000, as lucidrains' apply_rotary_pos_emb), counted
    from the cache's offset when decoding. window: each query sees only the last `window` positions,
    its own included. A whole sequence (no cache, no mask) takes kernels.self_attention: one projection
    for queries, keys and values, and the device's fastest kernel; with `shift` its input is
    token-shifted in the norm's pass. A cached sequence, or rows that sit at different positions (the
    caller's boolean `mask`, True where a key is visible), take the general path."""

    def __init__(
        self, dims: int, heads: int, dim_head: int, dropout: float, rotary: bool = False, window: int | None = None
    ):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head, self.dropout = heads, dim_head, dropout
        self.rotary, self.window, self.scale = rotary, window, dim_head**-0.5
        self.norm = RMSNorm(dims)
        self.query = nn.Linear(dims, inner, bias=False)
        self.key_value = nn.Linear(dims, 2 * inner, bias=False)  # keys then values, as lucidrains' to_kv
        self.out = nn.Linear(inner, dims, bias=False)

    def __call__(self, x, cache=None, mask=None, shift: bool = False):
        N, T, _ = x.shape
        x = self.norm(x, shift)
        dropout = self.dropout if self.training else 0.0
        if cache is None and mask is None:
            if isinstance(self.query, nn.QuantizedLinear):  # --quantize: packed weights cannot be joined
                qkv = mx.concatenate([self.query(x), self.key_value(x)], axis=-1)
            else:
                qkv = projection(x, self.query.weight, self.key_value.weight)
            return self.out(
                self_attention(qkv, self.heads, self.scale, dropout, window=self.window, rotary=self.rotary)
            )
        q = self.query(x)
        k, v = mx.split(self.key_value(x), 2, axis=-1)
        if T == 1:  # the same layout without a transpose (a decoding step's one position)
            q, k, v = (t.reshape(N, self.heads, 1, self.dim_head) for t in (q, k, v))
        else:
            q, k, v = (t.reshape(N, T, self.heads, self.dim_head).transpose(0, 2, 1, 3) for t in (q, k, v))
        if self.rotary:
            offset = 0 if cache is None else cache.offset
            q, k = rope(q, offset), rope(k, offset)
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)
            if self.window is not None and k.shape[2] > self.window + T - 1:  # older keys are out of sight
                k, v = k[..., -(self.window + T - 1) :, :], v[..., -(self.window + T - 1) :, :]
        out = attention(q, k, v, self.scale, dropout, window=self.window, mask=mask)
        out = out.reshape(N, T, -1) if T == 1 else out.transpose(0, 2, 1, 3).reshape(N, T, -1)
        return self.out(out)
