"""The linear recurrence inside Mamba-2 (Dao & Gu 2024, arXiv 2405.21060, "state space duality"), in plain
MLX. Per head, with a scalar decay a_t <= 0 (a log) at each position:

    h_t = exp(a_t) h_{t-1} + x_t b_t^T        h: (P, S), x_t: (P,), b_t: (S,)
    y_t = h_t c_t                             y_t: (P,)

`scan` computes it for a whole sequence in blocks of `block` positions (the paper's chunked form, here
called blocks so as not to clash with H-Net's chunks): inside a block as masked matmuls, like causal
attention with decays in place of a softmax; across blocks by a short scan of the block-end states.
`step` is the recurrence itself, one position at a time, for decoding. H-Net's de-chunking EMA is the
same recurrence with one state (chunking.py), so both run on this code.
"""

from __future__ import annotations

import mlx.core as mx

from ...kernels import exp_nonpositive


def scan(
    x: mx.array, a: mx.array, b: mx.array, c: mx.array, block: int, state: mx.array | None = None
) -> tuple[mx.array, mx.array]:
    """x (B, T, H, P), a (B, T, H), b and c (B, T, S) (shared by the heads: one group), the state before
    position 0 (B, H, P, S) or None (zeros) -> (y (B, T, H, P), the state after the last position).

    The decays are float32 whatever x's dtype (mixed precision): they are products of many factors."""
    N, T, H, P = x.shape
    S = b.shape[-1]
    pad = -T % block  # positions added at the end: a = 0 (no decay), x = 0 (nothing added), state kept
    if pad:
        x, a, b, c = (mx.pad(t, [(0, 0), (0, pad)] + [(0, 0)] * (t.ndim - 2)) for t in (x, a, b, c))
    n = (T + pad) // block
    x = x.reshape(N, n, block, H, P).transpose(0, 3, 1, 2, 4)  # (N, H, n, Q, P), Q = block
    a = a.astype(mx.float32).reshape(N, n, block, H).transpose(0, 3, 1, 2)  # (N, H, n, Q)
    b = b.reshape(N, 1, n, block, S)  # (N, 1, n, Q, S): broadcast over the heads
    c = c.reshape(N, 1, n, block, S)

    cum = mx.cumsum(a, axis=-1)  # (N, H, n, Q): log decay from the block's start through each position
    i = mx.arange(block)
    # decay[..., i, j] = exp(a_{j+1} + ... + a_i) for j <= i, 0 for j > i (a future position). The
    # exponent is capped at 0 (it is positive only above the diagonal), so nothing overflows.
    lower = (i[:, None] >= i[None]).astype(mx.float32)  # (Q, Q)
    decay = exp_nonpositive(mx.minimum(cum[..., :, None] - cum[..., None, :], 0.0)) * lower

    # Within each block: y_i = sum_{j <= i} (c_i . b_j) decay[i, j] x_j.
    scores = (c @ b.swapaxes(-1, -2)) * decay.astype(x.dtype)  # (N, H, n, Q, Q)
    y = scores @ x  # (N, H, n, Q, P)

    # What each block adds to the state by its end: sum_j decay[last, j] x_j b_j^T.
    ends = (x * decay[..., -1, :, None].astype(x.dtype)).swapaxes(-1, -2) @ b  # (N, H, n, P, S)

    # Across blocks, the short scan: the state entering block k, decayed through the whole block.
    through = exp_nonpositive(cum[..., -1])[..., None, None]  # (N, H, n, 1, 1)
    h = mx.zeros((N, H, P, S), x.dtype) if state is None else state.astype(x.dtype)
    entering = []
    for k in range(n):
        entering.append(h)
        h = (through[:, :, k] * h + ends[:, :, k]).astype(x.dtype)
    entering = mx.stack(entering, axis=2)  # (N, H, n, P, S)

    # What the state entering the block gives each position: exp(cum_i) (c_i . h).
    y = y + (c @ entering.swapaxes(-1, -2)) * exp_nonpositive(cum)[..., None].astype(x.dtype)  # (N, H, n, Q, P)
    y = y.transpose(0, 2, 3, 1, 4).reshape(N, n * block, H, P)[:, :T]
    return y, h


def step(x: mx.array, a: mx.array, b: mx.array, c: mx.array, state: mx.array) -> tuple[mx.array, mx.array]:
    """One position of the recurrence: x (B, H, P), a (B, H), b and c (B, S), state (B, H, P, S) ->
    (y (B, H, P), the new state)."""
    decay = exp_nonpositive(a.astype(mx.float32))[..., None, None].astype(x.dtype)
    state = decay * state + x[..., None] * b[:, None, None, :]
    return (state @ c[:, None, :, None])[..., 0], state
