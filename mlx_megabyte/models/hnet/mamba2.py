"""A Mamba-2 layer (Dao & Gu 2024, arXiv 2405.21060, section 7: the "parallel" block), as H-Net's encoder
and decoder use it: pre-norm, no MLP after it (the paper's lowercase `m` layers).

    x (B, T, d) -> norm -> in_proj -> z (B, T, I) | xbc (B, T, I + 2S) | dt (B, T, H)
    xbc -> causal depthwise convolution (width K) -> SiLU -> x (I = H heads of P) | b (S) | c (S)
    dt -> softplus(dt + dt_bias);  a = dt * A, A = -exp(A_log) < 0 per head
    y = scan(x * dt, a, b, c) + D * x      (ssd.py: h_t = exp(a_t) h_{t-1} + dt_t x_t b_t^T, y_t = h_t c_t)
    y -> norm(y * SiLU(z)) -> out_proj -> (B, T, d), added to the residual stream

I = expand * d. One group: b and c are shared by all heads. While decoding, a layer keeps a fixed-size
state (MambaState): the last K - 1 convolution inputs and the (H, P, S) recurrence state.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from ...kernels import silu
from ..layers import RMSNorm
from . import ssd


class MambaState:
    """One layer's decoding state: `conv` (N, K - 1, I + 2S), the inputs the convolution looks back at,
    and `ssm` (N, H, P, S), the recurrence state; both None before the first pass."""

    def __init__(self):
        self.conv = self.ssm = None

    def map_rows(self, on_device) -> None:
        """Replace each per-row array by on_device(array) (as the KV caches do, for HNetCache)."""
        self.conv, self.ssm = on_device(self.conv), on_device(self.ssm)


def causal_conv(x: mx.array, weight: mx.array, bias: mx.array, previous: mx.array | None) -> tuple[mx.array, mx.array]:
    """Depthwise causal convolution: out_t = bias + sum_k weight[k] * x_{t - K + 1 + k}, x (B, T, C),
    weight (K, C), `previous` the K - 1 rows before x[:, 0] (zeros at a sequence start). Returns the
    output and the K - 1 rows before the next position (a decoding state's look-back)."""
    K, T = weight.shape[0], x.shape[1]
    if previous is None:
        previous = mx.zeros((x.shape[0], K - 1, x.shape[2]), x.dtype)
    padded = mx.concatenate([previous.astype(x.dtype), x], axis=1)  # (B, T + K - 1, C)
    out = bias.astype(x.dtype)
    for k in range(K):  # K shifted multiply-adds (K = 4): cheaper on CPUs than a grouped mx.conv1d
        out = out + weight[k].astype(x.dtype) * padded[:, k : k + T]
    return out, padded[:, T:]


class Mamba2(nn.Module):
    def __init__(self, dims: int, state: int, expand: int, head: int, conv: int, block: int):
        super().__init__()
        inner = expand * dims  # (the state width is `state_size`: nn.Module has a `state` already)
        self.inner, self.state_size, self.head, self.heads, self.block = inner, state, head, inner // head, block
        channels = inner + 2 * state  # what the convolution sees: x, b and c
        self.norm = RMSNorm(dims)
        self.in_proj = nn.Linear(dims, inner + channels + self.heads, bias=False)
        bound = 1 / math.sqrt(conv)  # torch's Conv1d init for a depthwise convolution (fan-in = width)
        self.conv_weight = mx.random.uniform(-bound, bound, (conv, channels))
        self.conv_bias = mx.random.uniform(-bound, bound, (channels,))
        # Mamba's init: dt log-uniform in [0.001, 0.1] after the softplus; A uniform in [1, 16]; D = 1.
        dt = mx.exp(mx.random.uniform(math.log(1e-3), math.log(1e-1), (self.heads,)))
        self.dt_bias = dt + mx.log(-mx.expm1(-dt))  # the softplus inverse of dt
        self.A_log = mx.log(mx.random.uniform(1, 16, (self.heads,)))
        self.D = mx.ones((self.heads,))
        self.gate_norm = RMSNorm(inner)
        self.out_proj = nn.Linear(inner, dims, bias=False)

    def __call__(self, x: mx.array, cache: MambaState | None = None) -> mx.array:
        """x (B, T, d) -> the layer's output (B, T, d) (the residual branch). With `cache`, continue from
        its state (a one-position step if it has one) and leave the new state there."""
        B, T, _ = x.shape
        inner, S, H, P = self.inner, self.state_size, self.heads, self.head
        z, xbc, dt = mx.split(self.in_proj(self.norm(x)), [inner, 2 * inner + 2 * S], axis=-1)
        xbc, look_back = causal_conv(xbc, self.conv_weight, self.conv_bias, None if cache is None else cache.conv)
        if cache is not None:
            cache.conv = look_back
        xbc = silu(xbc)
        xs, b, c = mx.split(xbc, [inner, inner + S], axis=-1)
        dt = nn.softplus(dt + self.dt_bias.astype(dt.dtype))  # (B, T, H)
        a = dt.astype(mx.float32) * -mx.exp(self.A_log)  # (B, T, H), log decays
        xs = xs.reshape(B, T, H, P)
        inputs = xs * dt[..., None]
        if cache is not None and cache.ssm is not None and T == 1:
            y, cache.ssm = ssd.step(inputs[:, 0], a[:, 0], b[:, 0], c[:, 0], cache.ssm)
            y = y[:, None]
        else:
            y, final = ssd.scan(inputs, a, b, c, self.block, None if cache is None else cache.ssm)
            if cache is not None:
                cache.ssm = final
        y = y + xs * self.D.astype(xs.dtype)[:, None]
        y = self.gate_norm(y.reshape(B, T, inner) * silu(z))
        return self.out_proj(y)
