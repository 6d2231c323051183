"""The native CPU kernels (mlx_megabyte._native) compute the same functions as plain MLX ops and a
float64 numpy reference, gradients included; kernels.py chooses them only where they apply.

Where the extension is not built these tests cannot run; CI builds it and sets
MLX_MEGABYTE_REQUIRE_NATIVE=1, so that its absence fails instead of skipping.
"""

import math
import os
import subprocess
import sys

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

from mlx_megabyte import kernels

from .helpers import ROOT

if kernels._native is None:
    if os.environ.get("MLX_MEGABYTE_REQUIRE_NATIVE"):
        raise RuntimeError(
            f"MLX_MEGABYTE_REQUIRE_NATIVE is set but the native kernels are absent: {kernels.native_status}"
        )
    pytest.skip(f"the native kernels are not built: {kernels.native_status}", allow_module_level=True)

native = kernels._native


def close(a, b, tolerance):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.abs(a - b).max() <= tolerance * max(1.0, np.abs(b).max())


def test_the_native_variant_is_chosen_on_the_cpu():
    assert kernels.variant() == "native"
    assert "native" in kernels.available_variants()
    assert native.mlx_version() == mx.__version__
    assert native.isa() in ("avx512", "avx2", "baseline")


def test_gelu_and_its_gradient_against_the_exact_erf():
    xs = np.linspace(-12, 12, 20001)
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in xs])
    slope = np.array(
        [0.5 * (1 + math.erf(v / math.sqrt(2))) + v * math.exp(-v * v / 2) / math.sqrt(2 * math.pi) for v in xs]
    )
    x = mx.array(xs.astype(np.float32))
    # within 3e-7, or a float32 rounding of a large value: erf's own error is 1.5e-7
    assert (np.abs(np.array(native.gelu(x)) - exact) <= 3e-7 + 1e-7 * np.abs(xs)).all()
    assert np.abs(np.array(native.gelu_grad(x, mx.ones_like(x))) - slope).max() < 3e-7
    # the far tails: exactly x, and 0 (not a NaN from an overflowing exponent)
    tails = np.array(native.gelu(mx.array([1e30, -1e30, 40.0, -40.0])))
    assert tails.tolist() == np.array([1e30, 0.0, 40.0, 0.0], dtype=np.float32).tolist()
    # kernels.gelu's gradient under value_and_grad and compile, as in training
    weights = mx.array(np.random.default_rng(0).normal(size=xs.shape).astype(np.float32))
    grad = mx.compile(mx.grad(lambda v: (kernels.gelu(v) * weights).sum()))(x)
    assert close(np.array(grad), slope * np.array(weights), 1e-6)


@pytest.mark.parametrize("shift", [False, True])
def test_rms_norm_with_and_without_token_shift(shift):
    rng = np.random.default_rng(1)
    D = 37  # odd: the token shift splits at ceil(D / 2)
    x = rng.normal(size=(3, 9, D)).astype(np.float32)
    x[0, 2] *= 1e-9  # a row below eps: the denominator is eps, no gradient through the norm
    weight = rng.normal(size=D).astype(np.float32)
    cotangent = rng.normal(size=x.shape).astype(np.float32)

    def reference(x, weight):  # the pure-MLX path
        with kernels.forced("cpu"):
            return kernels.rms_norm(x, weight, 1e-8, shift)

    args = [mx.array(x), mx.array(weight)]
    want, (want_dx, want_dw) = mx.vjp(reference, args, [mx.array(cotangent)])
    with kernels.forced("native"):
        got, (dx, dw) = mx.vjp(lambda x, w: kernels.rms_norm(x, w, 1e-8, shift), args, [mx.array(cotangent)])
    assert close(got[0], want[0], 1e-6)
    assert close(dx, want_dx, 1e-5) and close(dw, want_dw, 1e-5)
    # the shift itself: row t's second half is row t - 1's
    if shift:
        z = np.concatenate([x[..., : (D + 1) // 2], np.pad(x[:, :-1, (D + 1) // 2 :], ((0, 0), (1, 0), (0, 0)))], -1)
        norm = np.maximum(np.sqrt((z.astype(np.float64) ** 2).sum(-1, keepdims=True) / D), 1e-8)
        assert close(got[0], z / norm * weight, 1e-5)


def test_layer_norm_and_its_gradient_against_float64():
    rng = np.random.default_rng(4)
    D = 1029  # not a multiple of the vector width
    x = (rng.normal(size=(5, 7, D)) + 30.0).astype(np.float32)  # far from zero mean: a two-pass variance
    weight, bias = (rng.normal(size=D).astype(np.float32) for _ in range(2))
    cotangent = rng.normal(size=x.shape).astype(np.float32)
    args = [mx.array(a) for a in (x, weight, bias)]
    with kernels.forced("native"):
        got, (dx, dw, db) = mx.vjp(lambda *a: kernels.layer_norm(*a, 1e-5), args, [mx.array(cotangent)])
    with kernels.forced("cpu"):  # mx.fast.layer_norm, the pure-MLX path
        want, want_grads = mx.vjp(lambda *a: kernels.layer_norm(*a, 1e-5), args, [mx.array(cotangent)])
    # float64 by hand: xhat = (x - mean) / sqrt(var + eps); dx = rstd (g - mean(g) - xhat mean(g xhat))
    x64, g64 = x.astype(np.float64), cotangent.astype(np.float64)
    rstd = 1 / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    xhat = (x64 - x64.mean(-1, keepdims=True)) * rstd
    g = g64 * weight
    exact_dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    assert close(got[0], xhat * weight + bias, 2e-6)
    assert close(dx, exact_dx, 2e-5)
    assert close(dw, (g64 * xhat).sum((0, 1)), 1e-5) and close(db, g64.sum((0, 1)), 2e-6)  # MLX: 1.6e-5
    for mine, theirs in zip((got[0], dx, dw, db), (want[0], *want_grads)):
        assert close(mine, theirs, 1e-4)


def test_cross_entropy_and_its_gradient():
    rng = np.random.default_rng(2)
    logits = (rng.normal(size=(2, 50, 256)) * 6).astype(np.float32)
    targets = rng.integers(0, 256, size=(2, 50))
    cotangent = rng.normal(size=(2, 50)).astype(np.float32)
    shifted = logits - logits.max(-1, keepdims=True)
    lse = np.log(np.exp(shifted.astype(np.float64)).sum(-1)) + logits.max(-1)
    want = lse - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    with kernels.forced("native"):
        got, (grad,) = mx.vjp(
            lambda l: kernels.cross_entropy(l, mx.array(targets)), [mx.array(logits)], [mx.array(cotangent)]
        )
    assert close(got[0], want, 1e-6)
    softmax = np.exp(logits.astype(np.float64) - lse[..., None])
    want_grad = cotangent[..., None] * (softmax - np.eye(256)[targets])
    assert close(grad, want_grad, 2e-6)  # float32: the softmax of logits up to ~25 carries ~1e-6


def naive_attention(qkv, heads, scale, window, rotary):
    """float64 numpy: per head, masked softmax of the scores, rotary positions as mx.fast.rope."""
    N, T, width = qkv.shape
    inner = width // 3
    D = inner // heads
    q, k, v = qkv[..., :inner], qkv[..., inner : 2 * inner], qkv[..., 2 * inner :]
    q, k, v = (t.reshape(N, T, heads, D).astype(np.float64) for t in (q, k, v))
    if rotary:
        half = D // 2
        angle = np.arange(T)[:, None] * 10000.0 ** (-2 * np.arange(half) / D)
        cos, sin = np.cos(angle)[None, :, None], np.sin(angle)[None, :, None]

        def rotate(t):
            a, b = t[..., :half], t[..., half:]
            return np.concatenate([a * cos - b * sin, a * sin + b * cos], -1)

        q, k = rotate(q), rotate(k)
    scores = np.einsum("nthd,nshd->nhts", q, k) * scale
    i, j = np.arange(T)[:, None], np.arange(T)[None]
    visible = (j <= i) & ((j > i - window) if window else True)
    scores = np.where(visible, scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("nhts,nshd->nthd", probs, v).reshape(N, T, inner)


SHAPES = [  # (N, T, heads, head width, window, rotary)
    (2, 9, 8, 16, 0, False),  # MEGABYTE's local stage: a patch and its start
    (2, 129, 4, 32, 0, False),  # its global stage
    (1, 300, 2, 64, 40, True),  # SpaceByte's local blocks: windowed, rotary
    (3, 17, 3, 10, 0, True),  # a head width that is no multiple of the vector width
    (2, 1, 1, 8, 0, False),  # one position
    (1, 40, 2, 16, 5, False),  # a window shorter than a query block
]


@pytest.mark.parametrize("shape", SHAPES)
def test_attention_against_a_float64_reference(shape):
    N, T, H, D, window, rotary = shape
    rng = np.random.default_rng(3)
    qkv = rng.normal(size=(N, T, 3 * H * D)).astype(np.float32)
    scale = D**-0.5
    with kernels.forced("native"):
        out = kernels.self_attention(mx.array(qkv), H, scale, window=window or None, rotary=rotary)
    assert close(out, naive_attention(qkv, H, scale, window, rotary), 2e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_attention_gradients_equal_the_pure_mlx_ones(shape):
    N, T, H, D, window, rotary = shape
    rng = np.random.default_rng(4)
    args = [mx.array(rng.normal(size=(N, T, 3 * H * D)).astype(np.float32))]
    cotangent = [mx.array(rng.normal(size=(N, T, H * D)).astype(np.float32))]
    results = {}
    for variant in ("native", "cpu"):
        with kernels.forced(variant):
            results[variant] = mx.vjp(
                lambda qkv: kernels.self_attention(qkv, H, D**-0.5, window=window or None, rotary=rotary),
                args,
                cotangent,
            )[1]
    for ours, theirs in zip(results["native"], results["cpu"]):
        assert close(ours, theirs, 1e-5)


def test_attention_reads_strided_projections():
    """qkv may be a view (a slice of a wider projection): the kernel reads it where it lies."""
    rng = np.random.default_rng(5)
    wide = mx.array(rng.normal(size=(2, 20, 4 * 48)).astype(np.float32))
    view, copy = wide[..., 48:], mx.array(np.array(wide)[..., 48:])
    strided, _ = native.attention(view, 2, 0.25, 0, False)
    contiguous, _ = native.attention(copy, 2, 0.25, 0, False)
    assert mx.array_equal(strided, contiguous).item()


def test_fused_adamw_equals_mlx_clip_grad_norm_and_adamw():
    """Three steps of clip + AdamW over a model's parameters (1-D ones undecayed, as the trainer does)."""
    from mlx_megabyte.optim import AdamW

    model = nn.Sequential(nn.Linear(13, 29), nn.LayerNorm(29), nn.Linear(29, 3))
    reference = nn.Sequential(nn.Linear(13, 29), nn.LayerNorm(29), nn.Linear(29, 3))
    reference.update(model.parameters())
    fused, plain = (AdamW(learning_rate=optim.cosine_decay(1e-2, 10), weight_decay=0.1) for _ in range(2))
    rng = np.random.default_rng(6)
    for step in range(3):
        grads = tree_map(
            lambda p: mx.array(rng.normal(size=p.shape).astype(np.float32) * (1 + step)), model.trainable_parameters()
        )
        with kernels.forced("native"):
            norm = fused.clip_and_update(model, grads, 1.0)
        clipped, want_norm = optim.clip_grad_norm(grads, 1.0)
        plain.update(reference, clipped)
        assert abs(norm.item() - want_norm.item()) <= 1e-5 * want_norm.item()
        for (name, ours), (_, theirs) in zip(tree_flatten(model.parameters()), tree_flatten(reference.parameters())):
            assert close(ours, theirs, 1e-6), (step, name)
    for (name, ours), (_, theirs) in zip(tree_flatten(fused.state), tree_flatten(plain.state)):
        assert close(ours, theirs, 1e-6), name


def test_one_thread_and_all_threads_agree():
    """The thread count changes how work is split, not the result (beyond float summation order)."""
    code = (
        "import mlx_megabyte, mlx.core as mx, numpy as np; from mlx_megabyte import kernels; "
        "qkv = mx.array(np.random.default_rng(0).normal(size=(8, 33, 192)).astype(np.float32)); "
        "g = mx.grad(lambda qkv: (kernels.self_attention(qkv, 4, 0.25) ** 2).sum())(qkv); "
        "print(kernels._native.threads()); np.save(__import__('sys').argv[1], np.array(g))"
    )
    results = []
    for threads, path in (
        ("1", ROOT / "tests" / "artifacts" / "one.npy"),
        ("", ROOT / "tests" / "artifacts" / "all.npy"),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "MLX_MEGABYTE_THREADS": threads},
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        results.append((int(done.stdout.strip()), np.load(path)))
    assert results[0][0] == 1 and results[1][0] == (
        os.cpu_count() if len(os.sched_getaffinity(0)) == os.cpu_count() else len(os.sched_getaffinity(0))
    )
    assert close(results[0][1], results[1][1], 1e-6)


def test_a_native_build_for_another_mlx_is_not_used(monkeypatch):
    class Stale:
        @staticmethod
        def mlx_version():
            return "0.0.1"

    monkeypatch.setitem(sys.modules, "mlx_megabyte._native", Stale)
    module, status = kernels._load_native()
    assert module is None and "built for MLX 0.0.1" in status and "pip install -e ." in status
    monkeypatch.setenv(kernels.NATIVE_OPT_OUT, "1")
    assert kernels._load_native() == (None, f"disabled by {kernels.NATIVE_OPT_OUT}")


def test_an_unknown_instruction_set_cap_keeps_the_pure_mlx_path(monkeypatch):
    monkeypatch.setenv(kernels.ISA_CAP, "sse9")
    module, status = kernels._load_native()
    assert module is None and status == "MLX_MEGABYTE_ISA='sse9' is not one of avx512, avx2, baseline"


# The tests each build of the kernels must pass: their own numerics, megabyte-pytorch parity, exact
# resume and mixed precision. A process runs one build (chosen at import), so each lower build the CPU
# can run gets its own pytest process, capped by MLX_MEGABYTE_ISA; this process covers the best one.
EVERY_BUILD = [
    "tests/test_native.py",
    "tests/test_kernels.py",
    "tests/test_parity.py",
    "tests/test_train.py::test_resumed_run_matches_an_uninterrupted_one",
    "tests/test_train.py::test_bfloat16_mixed_precision_tracks_float32_and_keeps_float32_masters",
    "tests/test_train.py::test_float16_overflow_skips_the_step_halves_the_scale_and_resume_restores_it",
]


def test_every_lower_build_passes_the_kernel_parity_resume_and_precision_tests():
    # below the build running now (a cap set by hand lowers where this starts; baseline has none below)
    lower = kernels.ISAS[kernels.ISAS.index(native.isa()) + 1 :]
    for isa in lower:
        code = f"import mlx_megabyte.kernels as k; assert k._native.isa() == {isa!r}, k.native_status"
        env = {**os.environ, kernels.ISA_CAP: isa}
        check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
        assert check.returncode == 0, check.stderr
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-k",
                "not every_lower_build",
                *EVERY_BUILD,
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=900,
        )
        assert done.returncode == 0, f"the {isa} build:\n{done.stdout[-4000:]}"
