"""H-Net's dynamic chunking (Hwang, Wang & Gu 2025, arXiv 2507.07955, section 2.2): where patches begin
(the router), how their first positions are gathered for the main network (chunking), how its outputs
are smoothed and spread back over the bytes (de-chunking), and the ratio loss that sets their length.
The paper calls them chunks; here, as in the rest of the package, they are patches.

Positions are those of the model: 0 is the start, p holds byte p - 1. A patch begins at position p
when the router's boundary probability p_p exceeds 1/2; the start always begins one.

The router reads encoder states, never byte values: on pictures or sound (`shift_bytes`) it learns
where patches begin from the data as it does on text, with the ratio loss holding their mean length
near `target_patch`; no byte value means "word boundary" to it.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from . import ssd

EMA_CLIP = 1e-4  # the EMA's weights P lie in [1e-4, 1 - 1e-4], as the reference code's: no factor is 0 or 1


class Router(nn.Module):
    """p_t = (1 - cos(W_q h_{t-1}, W_k h_t)) / 2: a patch begins where adjacent encoder states differ.
    W_q and W_k start as the identity (the reference code's init): at first p is the plain cosine's."""

    def __init__(self, dims: int):
        super().__init__()
        self.query = nn.Linear(dims, dims, bias=False)
        self.key = nn.Linear(dims, dims, bias=False)
        self.query.weight = mx.eye(dims)
        self.key.weight = mx.eye(dims)

    def __call__(self, h: mx.array) -> mx.array:
        """Encoder states h (B, T, d) -> boundary probabilities (B, T), 1 at position 0."""
        first = mx.ones((h.shape[0], 1), mx.float32)
        if h.shape[1] == 1:  # the start alone (a decoding state's beginning): no pairs, and a quantized
            return first  # matmul of zero rows crashed MLX 0.32's CPU backend (SIGFPE)
        return mx.concatenate([first, self.probability(h[:, :-1], h[:, 1:])], axis=1)

    def probability(self, before: mx.array, now: mx.array) -> mx.array:
        """(B, T, d) states and the states one position earlier -> (B, T) boundary probabilities."""
        q, k = _unit(self.query(before)), _unit(self.key(now))
        return mx.clip((1 - mx.sum(q * k, axis=-1)) / 2, 0.0, 1.0).astype(mx.float32)


def _unit(x: mx.array) -> mx.array:
    x = x.astype(mx.float32)
    return x / mx.maximum(mx.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def boundaries(p: mx.array) -> mx.array:
    """(B, T) probabilities -> (B, T) bool: where a patch begins (position 0 always: p_0 = 1). A hard
    decision: no gradient flows through it (the patches' positions are indices)."""
    return mx.stop_gradient(p) > 0.5


def chunk(h: mx.array, boundary: mx.array, slots: int) -> tuple[mx.array, mx.array, mx.array]:
    """The rows of h (B, T, d) where patches begin, in order, in a static (B, G, d) layout, G = min(slots,
    T), the rest of each row filled with other positions (padding, after every real patch: the causal
    main network never lets a real patch see it); the positions gathered (B, G); and for every position
    its patch's slot (B, T): the latest boundary at or before it, or the last slot G - 1 for positions
    past the G-th boundary (those boundaries get no slot: their bytes keep the last slot's output)."""
    T = boundary.shape[1]
    width = min(slots, T)
    positions = mx.arange(T)
    order = mx.argsort(mx.where(boundary, positions, positions + T), axis=1)[:, :width]  # boundaries first
    gathered = mx.take_along_axis(h, order[..., None], axis=1)
    slot = mx.minimum(mx.cumsum(boundary.astype(mx.int32), axis=1) - 1, width - 1)
    return gathered, order, slot


def smooth(z: mx.array, P: mx.array, block: int) -> mx.array:
    """The de-chunking EMA over patches: zbar_k = P_k z_k + (1 - P_k) zbar_{k-1} (zbar_{-1} = 0), z (B, G, d),
    P (B, G) the boundary probabilities of the patches' first positions (clipped). A confident boundary
    (P near 1) starts afresh; a doubtful one mostly keeps the patch before: the gradient reaches P, and
    through it the router. It is Mamba-2's recurrence with one state: ssd.scan with b = c = 1."""
    B, G, d = z.shape
    P = mx.clip(P, EMA_CLIP, 1 - EMA_CLIP)
    ones = mx.ones((B, G, 1), z.dtype)
    y, _ = ssd.scan((z * P[..., None].astype(z.dtype))[:, :, None], mx.log1p(-P)[..., None], ones, ones, block)
    return y[:, :, 0]  # (B, G, d)


def smooth_step(z: mx.array, P: mx.array, previous: mx.array) -> mx.array:
    """One EMA step while decoding: z and previous (N, 1, d), P (N, 1)."""
    P = mx.clip(P, EMA_CLIP, 1 - EMA_CLIP)[..., None].astype(z.dtype)
    return P * z + (1 - P) * previous


def dechunk(zbar: mx.array, slot: mx.array) -> mx.array:
    """Spread the smoothed patches (B, G, d) back over the positions (B, T): each takes its patch's row
    (a gather, so the gradient is a scatter-add). Causal: a position's patch began at or before it."""
    return mx.take_along_axis(zbar, slot[..., None], axis=1)


def confidence(p: mx.array, boundary: mx.array) -> mx.array:
    """The straight-through confidence (section 2.2.3): c_t = p_t at a boundary, 1 - p_t elsewhere, used
    as 1 in the forward pass (the outputs are unchanged) while its gradient reaches the router."""
    c = mx.where(boundary, p, 1 - p)
    return (c - mx.stop_gradient(c)) + 1  # exactly 1: c - c is 0


def ratio_loss(p: mx.array, boundary: mx.array, target: float) -> mx.array:
    """The paper's ratio loss (section 2.3.3) of each sequence (B,): with F the fraction of its bytes that
    begin a patch and G their mean boundary probability, N/(N-1) ((N-1) F G + (1-F)(1-G)), which is 1
    when F = G = 1/N and grows as the patches get shorter than N bytes; F comes from hard decisions, so
    the gradient reaches the router through G. p and boundary (B, L + 1): the start (position 0, always
    a boundary) is not a byte and is left out. Per sequence, where the reference takes the whole batch:
    then sums over sequences add up across micro-batches and ranks, and data-parallel training equals
    one process."""
    N = target
    F = mx.mean(boundary[:, 1:].astype(mx.float32), axis=1)  # (B,)
    G = mx.mean(p[:, 1:], axis=1)
    return N / (N - 1) * ((N - 1) * F * G + (1 - F) * (1 - G))
