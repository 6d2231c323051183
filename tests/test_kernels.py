"""The fast CPU kernels equal the exact functions within ~1e-6, gradients included."""

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_megabyte import kernels
from mlx_megabyte.kernels import _exp_nonpositive, attention, softmax
from mlx_megabyte.kernels import gelu_polynomial as gelu

XS = np.linspace(-12, 12, 20001)


def exact_gelu(x):
    return np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])


def exact_gelu_slope(x):
    return np.array(
        [0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi) for v in x]
    )


def test_gelu_and_its_gradient_match_the_exact_erf_form():
    x = mx.array(XS.astype(np.float32))
    assert np.abs(np.array(gelu(x)) - exact_gelu(XS)).max() < 2e-6
    weights = np.random.default_rng(0).normal(size=XS.shape).astype(np.float32)
    grad = mx.grad(lambda v: (gelu(v) * mx.array(weights)).sum())(x)
    assert np.abs(np.array(grad) / weights - exact_gelu_slope(XS)).max() < 1e-5
    # inside a compiled function and under value_and_grad, as in training
    f = mx.compile(mx.value_and_grad(lambda v: (gelu(v) * v).sum()))
    value, g = f(x)
    assert abs(value.item() - float((exact_gelu(XS) * XS).sum())) / abs(value.item()) < 1e-5
    assert np.abs(np.array(g) - (exact_gelu_slope(XS) * XS + exact_gelu(XS))).max() < 1e-4
    # saturation: far tails are exactly x and 0
    big = np.array(gelu(mx.array([1e30, -1e30, 40.0, -40.0])))
    assert big.tolist() == np.array([1e30, 0.0, 40.0, 0.0], dtype=np.float32).tolist()


def test_exp_for_softmax():
    x = np.linspace(-80, 0, 100001).astype(np.float32)
    relative = np.abs(np.array(_exp_nonpositive(mx.array(x))) / np.exp(x.astype(np.float64)) - 1)
    assert relative.max() < 1e-6
    assert np.array(_exp_nonpositive(mx.array([-1e30, -3e38])))[0] < 1e-37


def test_silu_and_exp_nonpositive_match_mlx_with_their_gradients():
    """H-Net's Mamba-2 layers: SiLU and the recurrence's decays, from the polynomial exp on CPUs."""
    x = mx.array(XS.astype(np.float32))
    assert mx.abs(kernels.silu_polynomial(x) - nn.silu(x)).max().item() < 2e-6
    ours, theirs = (mx.grad(lambda v, f=f: (f(v) * v).sum())(x) for f in (kernels.silu_polynomial, nn.silu))
    assert mx.abs(ours - theirs).max().item() < 1e-5
    assert kernels.silu_polynomial(mx.array([1e30, -1e30, 0.0])).tolist() == np.array([1e30, 0, 0], np.float32).tolist()
    negative = np.linspace(-80, 0, 10001).astype(np.float32)
    exact = np.exp(negative.astype(np.float64))
    exp = kernels._exp_nonpositive_polynomial
    assert np.abs(np.array(exp(mx.array(negative))) / exact - 1).max() < 1e-6
    assert np.abs(np.array(mx.grad(lambda v: exp(v).sum())(mx.array(negative))) / exact - 1).max() < 1e-6


def test_softmax_and_its_gradient():
    scores = mx.random.normal((3, 5, 17), key=mx.random.key(0)) * 8
    assert mx.abs(softmax(scores) - mx.softmax(scores, axis=-1, precise=True)).max().item() < 1e-6
    cotangent = mx.random.normal(scores.shape, key=mx.random.key(1))
    ours = mx.vjp(softmax, [scores], [cotangent])[1][0]
    theirs = mx.vjp(lambda s: mx.softmax(s, axis=-1, precise=True), [scores], [cotangent])[1][0]
    assert mx.abs(ours - theirs).max().item() < 1e-5


def naive_attention(q, k, v, scale, window=None):
    T, S = q.shape[2], k.shape[2]
    scores = np.einsum("nhtd,nhsd->nhts", q, k) * scale
    query = np.arange(T)[:, None] + (S - T)
    mask = np.arange(S)[None] <= query
    if window is not None:
        mask &= np.arange(S)[None] > query - window
    scores = np.where(mask, scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("nhts,nhsd->nhtd", probs, v)


def test_attention_is_causal_and_aligned_for_cached_queries():
    rng = np.random.default_rng(2)
    for T, S in ((9, 9), (1, 9), (3, 7), (257, 257)):
        q = rng.normal(size=(2, 3, T, 8)).astype(np.float32)
        k = rng.normal(size=(2, 3, S, 8)).astype(np.float32)
        v = rng.normal(size=(2, 3, S, 8)).astype(np.float32)
        got = np.array(attention(mx.array(q), mx.array(k), mx.array(v), 0.35))
        assert np.abs(got - naive_attention(q, k, v, 0.35)).max() < 1e-5, (T, S)
        fused = mx.fast.scaled_dot_product_attention(mx.array(q), mx.array(k), mx.array(v), scale=0.35, mask="causal")
        assert np.abs(got - np.array(fused)).max() < 1e-5


def test_windowed_attention_in_blocks_equals_the_masked_full_one_gradients_included():
    """Long sequences take the blocked path (each block of queries over its own keys and the blocks
    before it in the window); it must equal the full attention with the band masked, for windows that
    divide the length or not, blocks smaller than the window, on both kernel variants."""
    rng = np.random.default_rng(3)
    for T, window, block in ((1025, 96, None), (50, 7, None), (100, 10, 3), (64, 16, 16), (37, 5, 1)):
        q, k, v = (rng.normal(size=(2, 3, T, 8)).astype(np.float32) for _ in range(3))
        expected = naive_attention(q, k, v, 0.35, window)
        cotangent = mx.array(rng.normal(size=q.shape).astype(np.float32))

        def masked_full(q, k, v):
            visible = mx.array(np.arange(T)[None] <= np.arange(T)[:, None]) & mx.array(
                np.arange(T)[None] > np.arange(T)[:, None] - window
            )
            return kernels._matmul_attention(q, k, v, 0.35, 0.0, visible)

        inputs = [mx.array(t) for t in (q, k, v)]
        reference_grads = mx.vjp(masked_full, inputs, [cotangent])[1]
        for name in kernels.available_variants():
            with kernels.forced(name):

                def blocked(q, k, v):
                    if block is None:
                        assert T > 2 * window  # attention() takes the blocked path
                        return attention(q, k, v, 0.35, window=window)
                    return kernels._banded(q, k, v, 0.35, 0.0, window, block)

                out, grads = mx.vjp(blocked, inputs, [cotangent])
                assert np.abs(np.array(out[0]) - expected).max() < 1e-5, (T, window, block, name)
                for ours, theirs in zip(grads, reference_grads):
                    assert mx.abs(ours - theirs).max().item() < 1e-5, (T, window, block, name)


def test_attention_dropout_keeps_the_expectation():
    q = mx.zeros((1, 1, 4, 2))  # uniform attention over the visible keys
    v = mx.ones((1, 1, 4, 2))
    mx.random.seed(0)
    samples = mx.stack([attention(q, q, v, 1.0, dropout=0.5) for _ in range(400)])
    assert abs(mx.mean(samples).item() - 1.0) < 0.05
    assert nn.Dropout  # dropout is only applied when asked for:
    assert mx.array_equal(attention(q, q, v, 1.0), v)


def test_one_position_kernels_equal_the_training_ones():
    """A decoding step traced under one_position (plain GELU, softmax and rotary ops) computes what the
    training kernels do: rotary positions from a shared offset or one per row, attention over a mask."""
    rng = np.random.default_rng(3)
    x = mx.array(rng.standard_normal((3, 2, 1, 16)).astype(np.float32))
    offsets = mx.array([0, 7, 1000], dtype=mx.int32)
    reference = mx.concatenate(
        [
            mx.fast.rope(x[i : i + 1], 16, traditional=False, base=10000.0, scale=1.0, offset=int(o))
            for i, o in enumerate(offsets.tolist())
        ]
    )
    k = mx.array(rng.standard_normal((3, 2, 5, 16)).astype(np.float32))
    mask = mx.array(rng.random((3, 1, 1, 5)) > 0.3) | (mx.arange(5) == 4)
    h = mx.array(rng.standard_normal((4, 64)).astype(np.float32) * 3)
    plain = (kernels.rope(x, 0), attention(x, k, k, 0.25, mask=mask), kernels.gelu(h))
    with kernels.one_position():
        rotated = (kernels.rope(x, 0), kernels.rope(x, offsets), kernels.rope(x, mx.array(7)))
        fused = (rotated[0], attention(x, k, k, 0.25, mask=mask), kernels.gelu(h))
    np.testing.assert_allclose(np.array(rotated[1]), np.array(reference), atol=2e-5)
    np.testing.assert_allclose(np.array(rotated[2][1]), np.array(reference[1]), atol=1e-6)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)
