"""The model's GELU, RMSNorm, attention and loss, and the one place that chooses their kernels by device.

Three variants compute the same function:
- `gpu` (Metal or CUDA): MLX's exact ops. `mx.compile` fuses `nn.gelu` into one kernel, and
  `mx.fast.scaled_dot_product_attention` is a fused attention.
- `native` (a CPU, with the optional C++ extension `mlx_megabyte._native` built): fused, vectorised,
  threaded kernels for the hot spots of a training step (GELU, the token-shifted RMSNorm, causal and
  windowed self-attention, the cross-entropy, AdamW). On x86 Linux, MLX's CPU elementwise kernels run
  scalar on one core (its SIMD layer has vector code for Apple only) and batched matmuls of small heads
  are one BLAS call per head: a `small` training step spent ~85% of its time outside its matmuls.
- `cpu` (a CPU without the extension): GELU and softmax as polynomials of multiplies, adds and one
  division in small compiled kernels, each with a hand-written gradient, and attention as plain
  matmuls (MLX's fused attention falls back to a slow path on CPUs).
The polynomials are within ~1e-6 of the exact functions, far inside the 1e-4 logit parity with
megabyte-pytorch that the tests check. Model code calls the functions below and never asks which
device it runs on.

Two lessons behind the shapes of the `cpu` code, measured on MLX 0.32:
- A compiled function fuses into loops of limited depth (11 ops, scalar broadcasts included); a deep
  expression is split into several worse kernels, so these are kept shallow (Estrin, not Horner).
- `shapeless=True` compiles generic strided loops, several times slower than shape-specialised ones.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from functools import lru_cache

import mlx.core as mx
import mlx.nn as nn

VARIANTS = ("gpu", "native", "cpu")
NATIVE_OPT_OUT = "MLX_MEGABYTE_NO_NATIVE"
# The native extension holds one build per instruction set and runs the best the CPU has; this variable
# names a lower one instead (the tests run each build a machine can run; users never need it).
ISA_CAP = "MLX_MEGABYTE_ISA"
ISAS = ("avx512", "avx2", "baseline")
_forced: str | None = None
_one_position = False  # set while a decoding step of one position per row is traced (one_position)


def _load_native():
    """The extension module and a line saying what was loaded, or None and why not."""
    if os.environ.get(NATIVE_OPT_OUT, "") not in ("", "0"):
        return None, f"disabled by {NATIVE_OPT_OUT}"
    cap = os.environ.get(ISA_CAP, "")
    if cap not in ("", *ISAS):
        return None, f"{ISA_CAP}={cap!r} is not one of {', '.join(ISAS)}"
    try:
        _native = importlib.import_module(f"{__package__}._native")
    except ImportError as error:
        return None, f"not built ({error}); reinstall with a C++ compiler present: pip install -e ."
    if _native.mlx_version() != mx.__version__:
        return None, (
            f"built for MLX {_native.mlx_version()}, running {mx.__version__}: rebuild it with "
            "pip install -e . (the pure-MLX kernels are used meanwhile)"
        )
    capped = f" ({ISA_CAP}={cap})" if cap else ""
    return _native, f"{_native.isa()} kernels{capped} on {_native.threads()} threads"


_native, native_status = _load_native()


def available_variants() -> tuple[str, ...]:
    """The variants this installation can run (`native` needs the extension; `gpu` can be forced on a CPU)."""
    return tuple(v for v in VARIANTS if v != "native" or _native is not None)


def variant() -> str:
    """'gpu' when the default device is a GPU, else 'native' when the extension is loaded, else 'cpu',
    unless `forced`. Read when a function is traced, so a compiled step keeps the kernels of the device
    it was compiled for."""
    if _forced is not None:
        return _forced
    if mx.default_device().type == mx.DeviceType.gpu:
        return "gpu"
    return "native" if _native is not None else "cpu"


NATIVE_MIN_SIZE = 1 << 14  # elements: below, a primitive's fixed cost outweighs the MLX ops it replaces


def _native_for(*arrays) -> bool:
    """Whether the native kernels take these inputs: float32 (mixed precision keeps the MLX ops), and
    large enough to gain from them (a decoding step's single rows are not), unless `forced` (tests
    compare the variants on small inputs)."""
    large = _forced == "native" or arrays[0].size >= NATIVE_MIN_SIZE
    return variant() == "native" and all(a.dtype == mx.float32 for a in arrays) and large


@contextlib.contextmanager
def forced(name: str):
    """Use one variant whatever the device (tests run every variant on a CPU to compare them)."""
    global _forced
    if name not in available_variants():
        raise ValueError(f"variant must be one of {available_variants()}, got {name!r}")
    previous, _forced = _forced, name
    try:
        yield
    finally:
        _forced = previous


@contextlib.contextmanager
def one_position():
    """Trace a cached decoding step of one position per row (SpaceByte's and H-Net's compiled steps):
    GELU, softmax and rotary positions then take MLX's plain ops, which `mx.compile` fuses into one or
    two kernels each, instead of the polynomial kernels (7-10 operations behind a custom-function
    boundary that nothing fuses across) and mx.fast.rope's CPU fallback (12 operations a call). Built for
    rows of a few hundred values, where a step's cost is its number of operations (~8 us each on a
    CPU), not their arithmetic. Training never runs under it. Read at trace time, as `variant`."""
    global _one_position
    previous, _one_position = _one_position, True
    try:
        yield
    finally:
        _one_position = previous


def gelu(x: mx.array) -> mx.array:
    """torch's nn.GELU(): x * Phi(x) with the exact erf."""
    if variant() == "gpu" or _one_position:
        return nn.gelu(x)
    return _native_gelu(x) if _native_for(x) else gelu_polynomial(x)


@mx.custom_function
def _native_gelu(x):
    return _native.gelu(x)


@_native_gelu.vjp
def _native_gelu_vjp(x, cotangent, output):
    return _native.gelu_grad(x, cotangent)


# GELU. torch's nn.GELU() is x * Phi(x) with the exact erf; MLX's erf was half of the 40m model's
# forward time on this CPU. So erf(x / sqrt 2) comes from
# Abramowitz & Stegun 7.1.28, erf(z) = 1 - P(z)^-16 for z >= 0 with P a degree-6 polynomial, max error
# 1.7e-6 in float32 (GELU: 1e-6), far inside the 1e-4 logit parity with megabyte-pytorch. It needs only
# multiplies, adds and one division. Written as three small compiled kernels, each a memory-bound loop
# (~4 ms per 9.4M elements here): one deep fused graph was four times slower, as MLX splits it badly,
# and a Horner polynomial's dependency chain was four times slower than this Estrin form. The gradient
# is written out rather than traced through the polynomial.
_SQRT_HALF = 0.7071067811865476
# A&S coefficients a_k times (1 / sqrt 2)^k, so that P takes |x| directly.
_B = tuple(
    a * _SQRT_HALF**k
    for k, a in enumerate((0.0705230784, 0.0422820123, 0.0092705272, 0.0001520143, 0.0002765672, 0.0000430638), 1)
)


@mx.compile
def _erf_polynomial(x):  # P(|x|)
    b1, b2, b3, b4, b5, b6 = _B
    u = mx.abs(x)
    u2 = u * u
    return (1 + b1 * u) + u2 * ((b2 + b3 * u) + u2 * ((b4 + b5 * u) + u2 * b6))


@mx.compile
def _erf_polynomial_slope(x):  # P'(|x|)
    b1, b2, b3, b4, b5, b6 = _B
    u = mx.abs(x)
    u2 = u * u
    return (b1 + 2 * b2 * u) + u2 * ((3 * b3 + 4 * b4 * u) + u2 * (5 * b5 + 6 * b6 * u))


@mx.compile
def _inverse_16th_power(p):  # p >= 1; p^16 overflowing to inf gives 0, i.e. erf = +-1 exactly
    p2 = p * p
    p4 = p2 * p2
    p8 = p4 * p4
    return 1 / (p8 * p8)


@mx.compile
def _gelu_from(x, inverse):  # x * (1 + erf) / 2 = (x + |x| (1 - P^-16)) / 2
    return 0.5 * (x + mx.abs(x) * (1 - inverse))


@mx.compile
def _gelu_slope_from(x, inverse, p, slope, cotangent):  # Phi(x) + x phi(x), from P, P' and P^-16
    sign = mx.sign(
        x
    )  # keeps x's dtype (a where over two Python floats would be float32); 0 at x = 0, where 1 - P^-16 is 0 too
    return cotangent * (0.5 + 0.5 * sign * (1 - inverse) + 8 * x * slope * inverse / p)


@mx.custom_function
def gelu_polynomial(x):
    return _gelu_from(x, _inverse_16th_power(_erf_polynomial(x)))


@gelu_polynomial.vjp
def _gelu_vjp(x, cotangent, output):  # with one input, MLX passes the array itself, not a tuple
    # Recompute from x only once the cotangent exists: otherwise MLX may schedule every layer's
    # recomputation as soon as the forward pass ends, all alive at once (+0.8 GB for the 40m model).
    x = mx.depends(x, cotangent)
    p = _erf_polynomial(x)
    return _gelu_slope_from(x, _inverse_16th_power(p), p, _erf_polynomial_slope(x), cotangent)


# exp(x) = 2^k * exp(r), k = round(x / ln 2), |r| <= ln(2) / 2: a degree-6 Taylor polynomial there has a
# relative error below 3e-7; 2^k is built from the float's exponent bits. Softmax only needs x <= 0.
_LOG2E = 1.4426950408889634
_LN2_HIGH, _LN2_LOW = 0.693359375, -2.12194440e-4  # ln 2 in two parts (Cody & Waite): k * high is exact
_INV_FACTORIALS = (1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720)


@mx.compile
def _exp_nonpositive(x):
    c2, c3, c4, c5, c6 = _INV_FACTORIALS
    x = mx.maximum(x, -87.0)  # below, 2^k leaves the normal float range (and exp < 1.7e-38 anyway)
    # k = -floor(1/2 - x / ln 2), a nearest integer to x / ln 2: the int conversion truncates, which is
    # floor for the non-negative 1/2 - x / ln 2, and costs a fifth of mx.floor on this CPU
    whole = -((0.5 - x * _LOG2E).astype(mx.int32))
    k = whole.astype(mx.float32)
    r = (x - k * _LN2_HIGH) - k * _LN2_LOW
    r2 = r * r
    p = (1 + r) + r2 * ((c2 + c3 * r) + r2 * ((c4 + c5 * r) + r2 * c6))
    return p * mx.left_shift(whole + 127, 23).view(mx.float32)


def exp_nonpositive(x: mx.array) -> mx.array:
    """exp(x) for x <= 0 (float32), e.g. the decays of a linear recurrence: the polynomial above on CPUs,
    where MLX's exp costs ~13 ns per element (1e-38 below -87, where exp is smaller still)."""
    return mx.exp(x) if variant() == "gpu" else _exp_nonpositive_polynomial(x)


@mx.custom_function
def _exp_nonpositive_polynomial(x):
    return _exp_nonpositive(x)


@_exp_nonpositive_polynomial.vjp
def _exp_nonpositive_vjp(x, cotangent, output):
    return cotangent * output


@mx.custom_function
def softmax(scores):
    """Softmax over the last axis (float32)."""
    e = _exp_nonpositive(scores - mx.max(scores, axis=-1, keepdims=True))
    return e / mx.sum(e, axis=-1, keepdims=True)


@softmax.vjp
def _softmax_vjp(scores, cotangent, probs):
    return probs * (cotangent - mx.sum(cotangent * probs, axis=-1, keepdims=True))


_MASKED = -3.0e38  # what torch's masked_fill(-finfo.max) does, without inf - inf = nan


def attention(q, k, v, scale: float, dropout: float = 0.0, window: int | None = None, mask: mx.array | None = None):
    """Causal attention of q (N, H, T, D) over k, v (N, H, S, D), S >= T, the queries being the last T
    positions. Scores and their softmax are float32 whatever the inputs' dtype (mixed precision).

    `window`: each query also sees only the last `window` positions up to its own (banded causal
    attention). `mask`: a boolean array broadcastable to (N, H, T, S), True where a key is visible,
    replacing the causal rule."""
    gpu = variant() == "gpu"
    T, S = q.shape[-2], k.shape[-2]
    if mask is None and window is not None and T == S and T > 2 * window:
        return _banded(q, k, v, scale, dropout, window)
    if mask is None and window is not None and S > 1:
        mask = _visible(mx.arange(T)[:, None] + (S - T), mx.arange(S)[None], window)
    if gpu and dropout == 0.0:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask="causal" if mask is None else mask)
    if mask is None and T > 1:
        mask = _visible(mx.arange(T)[:, None] + (S - T), mx.arange(S)[None])
    return _matmul_attention(q, k, v, scale, dropout, mask)


def _visible(query, key, window=None):
    """Which keys each query sees, from their positions: its own and earlier ones, at most `window`."""
    seen = key <= query
    return seen if window is None else seen & (key > query - window)


def _matmul_attention(q, k, v, scale, dropout, mask):
    scores = ((q * scale) @ k.swapaxes(-1, -2)).astype(mx.float32)
    if mask is not None:
        scores = mx.where(mask, scores, _MASKED)
    plain = variant() == "gpu" or _one_position
    probs = (mx.softmax(scores, axis=-1, precise=True) if plain else softmax(scores)).astype(q.dtype)
    if dropout > 0.0:
        # lucidrains drops attention probabilities (Attend's dropout)
        probs = probs * mx.random.bernoulli(1 - dropout, probs.shape) / (1 - dropout)
    return probs @ v


def _banded(q, k, v, scale, dropout, window, block=None):
    """Windowed causal self-attention (T queries over their own T keys) in blocks of `block` queries
    (default `window`), each over its own block's keys and those of the blocks before it that the window
    reaches: window + block scores per query instead of T. SpaceByte's local blocks (window 96 over
    1,025 positions in the small preset) spent most of their time on the full T x T scores and their
    softmax, masked away but computed all the same; blocked, the step ran 1.8x faster on a CPU (smaller
    blocks, 24 to 48, made no measurable difference). The same blocking on GPUs: a fused kernel given a
    mask still does T x T work."""
    block = block or window
    N, H, T, D = q.shape
    blocks, before = -(-T // block), -(-(window - 1) // block)  # blocks of queries; earlier blocks in sight
    padding = [(0, 0), (0, 0), (0, blocks * block - T), (0, 0)]  # at the end: no real query sees it
    q, k, v = (mx.pad(t, padding).reshape(N, H, blocks, block, D) for t in (q, k, v))

    def shifted(t, s):  # block b holds block b - s (zeros before the first, masked)
        return mx.pad(t[:, :, : blocks - s], [(0, 0), (0, 0), (s, 0), (0, 0), (0, 0)]) if s else t

    k, v = (mx.concatenate([shifted(t, s) for s in range(before, -1, -1)], axis=3) for t in (k, v))
    query = mx.arange(blocks)[:, None, None] * block + mx.arange(block)[:, None]  # (blocks, block, 1)
    key = (mx.arange(blocks)[:, None, None] - before) * block + mx.arange((before + 1) * block)  # (blocks, 1, keys)
    mask = _visible(query, key, window) & (key >= 0)
    if variant() == "gpu" and dropout == 0.0:  # the fused kernel takes 4-D inputs: blocks join the heads
        q, k, v = (t.reshape(N, H * blocks, *t.shape[3:]) for t in (q, k, v))
        mask = mx.broadcast_to(mask, (H, *mask.shape)).reshape(H * blocks, *mask.shape[1:])
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    else:
        out = _matmul_attention(q, k, v, scale, dropout, mask)  # (N, H, blocks, block, D)
    return out.reshape(N, H, blocks * block, D)[:, :, :T]


def rope(x: mx.array, offset) -> mx.array:
    """Rotary positions on x (N, H, T, D) from position `offset` (an int, a scalar array or one per row
    (N,)): rotate-half, base 10000, as mx.fast.rope with traditional=False. Under `one_position` on a
    CPU, for T = 1: cos and sin of the position's angles (shared by every layer of the step: `mx.compile`
    merges the same operations on the same inputs) and one fused multiply-add per tensor."""
    D = x.shape[-1]
    if not (_one_position and x.shape[2] == 1 and variant() != "gpu"):
        return mx.fast.rope(x, D, traditional=False, base=10000.0, scale=1.0, offset=offset)
    frequencies = _rotary_frequencies(D)  # (D / 2,)
    position = offset if isinstance(offset, mx.array) else mx.array(offset)
    angles = position.astype(mx.float32).reshape(-1, 1, 1, 1) * frequencies  # (N or 1, 1, 1, D / 2)
    cos, sin = mx.cos(angles), mx.sin(angles)
    cos, sin = mx.concatenate([cos, cos], axis=-1), mx.concatenate([-sin, sin], axis=-1)
    half = mx.concatenate([x[..., D // 2 :], x[..., : D // 2]], axis=-1)  # (x2, x1): sin's sign does the rest
    return (x * cos + half * sin).astype(x.dtype)


@lru_cache(maxsize=None)
def _rotary_frequencies(dims: int) -> mx.array:
    """10000^(-2i / dims) for i < dims / 2: a constant of the compiled steps (an arange in each would be
    one more operation per call: MLX's compile does not merge them)."""
    frequencies = 10000.0 ** (-mx.arange(0, dims, 2, dtype=mx.float32) / dims)
    mx.eval(frequencies)
    return frequencies


# --- SiLU (Mamba-2's activation) --------------------------------------------------------------------------


def silu(x: mx.array) -> mx.array:
    """x * sigmoid(x). On CPUs MLX's exp costs ~13 ns per element here (a Mamba-2 layer's two SiLUs were a
    fifth of its step), so the sigmoid comes from the polynomial exp above, within 2e-7 of the exact one."""
    if variant() == "gpu":
        return nn.silu(x)
    return silu_polynomial(x)


@mx.compile
def _sigmoid_from(x, e):  # e = exp(-|x|): sigmoid(x) = 1/2 + sign(x) (1 - e) / (2 (1 + e))
    return 0.5 + (0.5 * mx.sign(x)) * (1 - e) / (1 + e)


def _sigmoid(x):
    return _sigmoid_from(x, _exp_nonpositive(-mx.abs(x)).astype(x.dtype))


@mx.custom_function
def silu_polynomial(x):
    return x * _sigmoid(x)


@silu_polynomial.vjp
def _silu_vjp(x, cotangent, output):
    x = mx.depends(x, cotangent)  # recompute only once the cotangent exists (see _gelu_vjp)
    s = _sigmoid(x)
    return cotangent * (s + output * (1 - s))  # d/dx x s(x) = s + x s (1 - s)


# --- token shift and RMSNorm ----------------------------------------------------------------------------


def token_shift(x: mx.array, previous: mx.array | None = None) -> mx.array:
    """RWKV's token shift, as lucidrains applies it before every attention and feed-forward:
    the second half of the features comes from the previous position (zeros before the first).

    x: (N, T, D). `previous` is the row before x[:, 0] (N, 1, D) when x continues a cached sequence.
    torch.chunk(2) gives the first half the odd feature, so the split is at ceil(D / 2).
    """
    split = (x.shape[-1] + 1) // 2
    kept, shifted = x[..., :split], x[..., split:]
    before = mx.zeros_like(shifted[:, :1]) if previous is None else previous[..., split:]
    shifted = mx.concatenate([before, shifted[:, :-1]], axis=1)
    return mx.concatenate([kept, shifted], axis=-1)


def rms_norm(x: mx.array, weight: mx.array, eps: float, shift: bool = False) -> mx.array:
    """lucidrains' RMSNorm of x (..., D), x / max(|x| / sqrt(D), eps) * weight; of `token_shift(x)`
    with `shift` (x is then (N, T, D)), which the native kernel does in the same pass. Not
    `mx.fast.rms_norm`, which adds eps under the square root: the two differ for small norms. In mixed
    precision the statistics are float32 and the result has x's dtype."""
    if _native_for(x, weight):
        return _native_rms_norm(x.shape[-2] if shift else 1, shift, x.shape[-1] ** -0.5, eps)(x, weight)
    if shift:
        x = token_shift(x)
    dtype = x.dtype
    x = x.astype(mx.float32)
    norm = mx.sqrt(mx.sum(mx.square(x), axis=-1, keepdims=True)) * x.shape[-1] ** -0.5
    return (x / mx.maximum(norm, eps) * weight).astype(dtype)


@lru_cache(maxsize=None)
def _native_rms_norm(sequence: int, shift: bool, scale: float, eps: float):
    @mx.custom_function
    def norm(x, weight):
        return _native.rms_norm(x, weight, sequence, shift, scale, eps)

    @norm.vjp
    def norm_vjp(primals, cotangents, outputs):
        x, weight = primals
        return _native.rms_norm_grad(x, weight, outputs[1], cotangents[0], sequence, shift, scale, eps)

    return lambda x, weight: norm(x, weight)[0]


def layer_norm(x: mx.array, weight: mx.array, bias: mx.array, eps: float) -> mx.array:
    """torch's LayerNorm of x (..., D) (biased variance, eps under the square root), as
    `mx.fast.layer_norm`, whose CPU path (and its gradient) is scalar MLX ops."""
    if _native_for(x, weight, bias):
        return _native_layer_norm(eps)(x, weight, bias)
    return mx.fast.layer_norm(x, weight, bias, eps)


@lru_cache(maxsize=None)
def _native_layer_norm(eps: float):
    @mx.custom_function
    def norm(x, weight, bias):
        return _native.layer_norm(x, weight, bias, eps)

    @norm.vjp
    def norm_vjp(primals, cotangents, outputs):
        x, weight, _ = primals
        return _native.layer_norm_grad(x, weight, outputs[1], outputs[2], cotangents[0])

    return lambda x, weight, bias: norm(x, weight, bias)[0]


# --- self-attention from projections ----------------------------------------------------------------


def projection(x: mx.array, *weights: mx.array) -> mx.array:
    """x (..., D) times several bias-free Linear layers' weights (out, D) side by side: one matmul, whose
    output holds each layer's in turn, for one pass over x forward and one for its gradient backward."""
    return x @ mx.concatenate(weights).T


def self_attention(
    qkv: mx.array, heads: int, scale: float, dropout: float = 0.0, window: int | None = None, rotary: bool = False
) -> mx.array:
    """Causal self-attention of T positions from their projections qkv (N, T, 3 * H * D): the queries,
    then keys and values (lucidrains' to_q and to_kv, as one matmul); -> (N, T, H * D), ready for the
    output projection.

    `window`: each query sees only the last `window` positions up to its own. `rotary`: rotary
    positions 0 .. T - 1 on queries and keys (base 10000, rotate-half, as mx.fast.rope with
    traditional=False). The native kernel reads the heads where the projection put them and writes the
    result (and the gradient) in the same layout: no split, no transposes, no T x T scores in memory."""
    N, T, width = qkv.shape
    if dropout == 0.0 and _native_for(qkv):
        return _native_attention(heads, scale, window or 0, rotary)(qkv)
    inner = width // 3
    dim_head = inner // heads
    q, k, v = (
        qkv[..., i * inner : (i + 1) * inner].reshape(N, T, heads, dim_head).transpose(0, 2, 1, 3) for i in range(3)
    )
    if rotary:
        q = mx.fast.rope(q, dim_head, traditional=False, base=10000.0, scale=1.0, offset=0)
        k = mx.fast.rope(k, dim_head, traditional=False, base=10000.0, scale=1.0, offset=0)
    out = attention(q, k, v, scale, dropout, window=window)
    return out.transpose(0, 2, 1, 3).reshape(N, T, inner)


@lru_cache(maxsize=None)
def _native_attention(heads: int, scale: float, window: int, rotary: bool):
    @mx.custom_function
    def attend(qkv):
        return _native.attention(qkv, heads, scale, window, rotary)

    @attend.vjp
    def attend_vjp(qkv, cotangents, outputs):
        out, lse = outputs
        return _native.attention_grad(qkv, out, lse, cotangents[0], heads, scale, window, rotary)

    return lambda qkv: attend(qkv)[0]


# --- the loss and the optimizer -------------------------------------------------------------------------


def cross_entropy(logits: mx.array, targets: mx.array) -> mx.array:
    """Per-position cross-entropy (nats, float32) of logits (..., V) against integer targets (...)."""
    if _native_for(logits):
        return _native_cross_entropy(logits, targets.astype(mx.int32))[0]
    return nn.losses.cross_entropy(logits.astype(mx.float32), targets.astype(mx.int32), reduction="none")


@mx.custom_function
def _native_cross_entropy(logits, targets):
    return _native.cross_entropy(logits, targets)


@_native_cross_entropy.vjp
def _native_cross_entropy_vjp(primals, cotangents, outputs):
    logits, targets = primals
    return _native.cross_entropy_grad(logits, targets, outputs[1], cotangents[0]), mx.zeros_like(targets)


def fused_adamw(parameters: list[mx.array]) -> bool:
    """Whether `adamw` runs these parameters in the native kernel (float32, the native variant)."""
    return _native_for(*parameters)


def adamw(learning_rate, gradients, parameters, first, second, decay, betas, eps, max_norm):
    """One AdamW step of MLX's formula (no bias correction) over lists of arrays, in one native pass:
    the gradients' global norm first, then, with the gradients scaled as `optim.clip_grad_norm` scales
    them (max_norm 0: unclipped), the new moments and parameters. Returns (norm, parameters, first
    moments, second moments). Only where `fused_adamw` says so."""
    return _native.adamw(learning_rate, gradients, parameters, first, second, decay, betas[0], betas[1], eps, max_norm)
