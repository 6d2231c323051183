"""H-Net: the router, chunking, EMA de-chunking and ratio loss against per-sequence loops and hand-computed
values, Mamba-2's chunked scan against its recurrence, causality, cached generation against full
recomputation, weights, mixed precision, training, resume and evaluation."""

import io
import json
import signal
import subprocess
import sys
import time

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten
from rich.console import Console

from mlx_megabyte import PRESETS, checkpoint, kernels, load, loss_fn, save
from mlx_megabyte.errors import UserError
from mlx_megabyte.evaluate import evaluate
from mlx_megabyte.generation import generate_step
from mlx_megabyte.models import hnet, summed_training_loss
from mlx_megabyte.models.hnet import HNet, HNetConfig, chunking, ssd
from mlx_megabyte.models.hnet.mamba2 import Mamba2, MambaState
from mlx_megabyte.sampling import make_sampler
from mlx_megabyte.train import build_parser, model_config, run
from mlx_megabyte.weights import read_config

from .helpers import ROOT

# Small enough to test quickly, with every mechanism in play: scan blocks shorter than the context (and
# than the patches), fewer main-network slots than a full window's boundaries, a window shorter than the
# context for the attention encoder. At random init about half the bytes begin a patch.
CONFIG = HNetConfig(
    context_length=48,
    dim=16,
    main_dim=32,
    encoder_depth=2,
    decoder_depth=2,
    main_depth=2,
    state_size=8,
    mamba_head=8,
    dim_head=8,
    scan_block=8,
    max_patches=12,
    window=6,
)
CONFIGS = {"attention": CONFIG, "mamba": CONFIG.replace(mamba=True)}
TEXT = "The cat sat. A dog ran far, then rested!  Supercalifragilistic words: ok 中文字 fin"


def text_ids(text, length=None):
    data = text.encode()
    return mx.array([list(data[:length] if length else data)], dtype=mx.int32)


def model_for(config=CONFIG, seed=0):
    mx.random.seed(seed)
    model = HNet(config)
    model.eval()
    return model


def two_rows(length=48):
    """A row of prose and one of a repeated word: their patches begin at different bytes."""
    rows = [TEXT.encode()[:length], (b"abcdefghij" * 5)[:length]]
    return mx.array([list(r) for r in rows], dtype=mx.int32)


# --- the router, chunking, de-chunking and the ratio loss -----------------------------------------------


def test_router_equals_the_formula_at_every_position():
    rng = np.random.default_rng(0)
    router = chunking.Router(6)
    router.query.weight = mx.array(rng.standard_normal((6, 6)).astype(np.float32))
    router.key.weight = mx.array(rng.standard_normal((6, 6)).astype(np.float32))
    h = rng.standard_normal((2, 9, 6)).astype(np.float32)
    p = np.array(router(mx.array(h)))
    wq, wk = np.array(router.query.weight), np.array(router.key.weight)
    for b in range(2):
        assert p[b, 0] == 1.0
        for t in range(1, 9):
            q, k = wq @ h[b, t - 1], wk @ h[b, t]
            want = (1 - q @ k / np.linalg.norm(q) / np.linalg.norm(k)) / 2
            assert abs(p[b, t] - want) < 1e-6
    assert np.array_equal(np.array(chunking.boundaries(mx.array(p))), p > 0.5)
    # At init (W_q = W_k = I) a repeated state is no boundary, an opposite one surely is.
    plain = chunking.Router(3)
    same = plain(mx.array([[[1.0, 2, 3], [1, 2, 3], [-1, -2, -3]]]))
    assert np.allclose(np.array(same), [[1, 0, 1]], atol=1e-6)


def naive_chunking(h, boundary, p, slots):
    """Per sequence: the first `slots` boundary positions, the EMA over them, each position's value."""
    positions = np.flatnonzero(boundary)[:slots]
    P = np.clip(p[positions], chunking.EMA_CLIP, 1 - chunking.EMA_CLIP)
    return positions, P


def test_chunk_smooth_and_dechunk_equal_a_per_sequence_loop():
    rng = np.random.default_rng(1)
    B, T, d, slots = 3, 30, 5, 7
    p = rng.uniform(0, 1, (B, T)).astype(np.float32)
    p[:, 0] = 1
    p[2, 1:] = 0.1  # one row with a single patch
    boundary = p > 0.5
    assert boundary[0].sum() > slots  # a row with boundaries past the last slot
    h = rng.standard_normal((B, T, d)).astype(np.float32)
    z = rng.standard_normal((B, min(slots, T), d)).astype(np.float32)  # what the main network returns
    gathered, order, slot = chunking.chunk(mx.array(h), mx.array(boundary), slots)
    zbar = chunking.smooth(mx.array(z), mx.take_along_axis(mx.array(p), order, axis=1), block=3)
    out = np.array(chunking.dechunk(zbar, slot))
    for b in range(B):
        positions, P = naive_chunking(h[b], boundary[b], p[b], slots)
        assert np.array_equal(np.array(gathered[b, : len(positions)]), h[b, positions])
        smoothed, previous = [], np.zeros(d, np.float32)
        for k in range(len(positions)):
            previous = P[k] * z[b, k] + (1 - P[k]) * previous
            smoothed.append(previous)
        want = np.zeros((T, d), np.float32)
        current = -1
        for t in range(T):
            if boundary[b, t] and current + 1 < len(positions):  # later boundaries: no slot, the EMA holds
                current += 1
            want[t] = smoothed[current]
        assert np.abs(out[b] - want).max() < 1e-5, b


def test_smooth_step_continues_the_ema():
    rng = np.random.default_rng(2)
    z = mx.array(rng.standard_normal((2, 9, 4)).astype(np.float32))
    P = mx.array(rng.uniform(0, 1, (2, 9)).astype(np.float32))
    full = chunking.smooth(z, P, block=4)
    previous = mx.zeros((2, 1, 4))
    for k in range(9):
        previous = chunking.smooth_step(z[:, k : k + 1], P[:, k : k + 1], previous)
        assert mx.abs(previous[:, 0] - full[:, k]).max().item() < 1e-6


def test_ratio_loss_equals_the_hand_computed_value():
    # Row 0: bytes' p = .2 .7 .4 .9 -> F = 2/4, G = 2.2/4; row 1: p = .6 .6 .6 .6 -> F = 1, G = .6.
    p = mx.array([[1.0, 0.2, 0.7, 0.4, 0.9], [1.0, 0.6, 0.6, 0.6, 0.6]])
    N = 3.0
    row0 = N / (N - 1) * ((N - 1) * 0.5 * 0.55 + 0.5 * 0.45)  # 1.1625
    row1 = N / (N - 1) * ((N - 1) * 1.0 * 0.6 + 0.0)  # 1.8
    got = chunking.ratio_loss(p, chunking.boundaries(p), N).tolist()
    assert np.allclose(got, [row0, row1], atol=1e-6)
    # At F = G = 1/N it is 1; its gradient lowers G when patches are too short (F > 1/N).
    assert (
        abs(
            chunking.ratio_loss(
                mx.array([[1.0, 0.75, 0.25, 0.25, 0.25]]), mx.array([[True, True, False, False, False]]), 4.0
            ).item()
            - 1.0
        )
        < 1e-6
    )
    grad = mx.grad(lambda q: chunking.ratio_loss(q, chunking.boundaries(q), N).sum())(p)
    assert (np.array(grad)[:, 1:] > 0).all()


def test_straight_through_confidence_is_one_forward_with_the_gradient_of_c():
    p = mx.array([[1.0, 0.8, 0.3]])
    boundary = chunking.boundaries(p)
    assert chunking.confidence(p, boundary).tolist() == [[1.0, 1.0, 1.0]]
    grad = mx.grad(lambda q: (chunking.confidence(q, boundary) * mx.array([[1.0, 2.0, 3.0]])).sum())(p)
    assert np.allclose(np.array(grad), [[1.0, 2.0, -3.0]])  # c = p at a boundary, 1 - p elsewhere


# --- Mamba-2: the chunked scan against the recurrence ----------------------------------------------------


def scan_inputs(seed, N=2, T=37, H=3, P=4, S=5):
    rng = np.random.default_rng(seed)
    return (
        mx.array(rng.standard_normal((N, T, H, P)).astype(np.float32)),
        mx.array(-rng.uniform(0, 2, (N, T, H)).astype(np.float32)),
        mx.array(rng.standard_normal((N, T, S)).astype(np.float32)),
        mx.array(rng.standard_normal((N, T, S)).astype(np.float32)),
        mx.array(rng.standard_normal((N, H, P, S)).astype(np.float32)),
    )


def recurrence(x, a, b, c, state):
    """The recurrence one position at a time (ssd.step)."""
    ys = []
    for t in range(x.shape[1]):
        y, state = ssd.step(x[:, t], a[:, t], b[:, t], c[:, t], state)
        ys.append(y)
    return mx.stack(ys, axis=1), state


def test_step_is_the_recurrence_written_out():
    x, a, b, c, state = (np.array(t) for t in scan_inputs(3, T=5))
    y, final = recurrence(*(mx.array(t) for t in (x, a, b, c, state)))
    h = state.astype(np.float64)
    for t in range(5):
        h = np.exp(a[:, t])[..., None, None] * h + x[:, t, :, :, None] * b[:, t, None, None, :]
        assert np.abs(np.array(y[:, t]) - np.einsum("nhps,ns->nhp", h, c[:, t])).max() < 1e-5
    assert np.abs(np.array(final) - h).max() < 1e-5


@pytest.mark.parametrize("block", [1, 4, 8, 64])
def test_chunked_scan_equals_the_recurrence_outputs_and_gradients(block):
    """Blocks that divide T or not, one position each, one block longer than T; a given initial state."""
    x, a, b, c, state = scan_inputs(4)
    y, final = ssd.scan(x, a, b, c, block, state)
    want_y, want_final = recurrence(x, a, b, c, state)
    assert mx.abs(y - want_y).max().item() < 1e-4
    assert mx.abs(final - want_final).max().item() < 1e-4
    weights = mx.array(np.random.default_rng(5).standard_normal(y.shape).astype(np.float32))

    def objective(run):
        return lambda *args: (run(*args)[0] * weights).sum() + run(*args)[1].sum()

    ours = mx.grad(objective(lambda *z: ssd.scan(*z[:4], block, z[4])), argnums=(0, 1, 2, 3, 4))(x, a, b, c, state)
    theirs = mx.grad(objective(recurrence), argnums=(0, 1, 2, 3, 4))(x, a, b, c, state)
    for name, g, w in zip("x a b c state".split(), ours, theirs):
        assert mx.abs(g - w).max().item() <= 1e-4 * max(1.0, mx.abs(w).max().item()), name


def test_mamba_layer_steps_equal_the_whole_sequence():
    """Prefill a prefix (shorter than the convolution, then longer), then step: the fixed-size state."""
    mx.random.seed(6)
    layer = Mamba2(16, 8, 2, 8, 4, 8)
    x = mx.random.normal((2, 21, 16))
    full = layer(x)
    for prefix in (0, 2, 13):
        state = MambaState()
        parts = [layer(x[:, :prefix], state)] if prefix else []
        for t in range(prefix, 21):
            parts.append(layer(x[:, t : t + 1], state))
        assert mx.abs(mx.concatenate(parts, axis=1) - full).max().item() < 1e-5, prefix
        assert state.ssm.shape == (2, 4, 8, 8) and state.conv.shape == (2, 3, 32 + 16)


# --- the model -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CONFIGS)
def test_model_equals_a_per_sequence_loop_without_padding(kind):
    """Each sequence alone, the main network run on exactly its first max_patches boundary rows and the
    EMA written out: the padded, batched pass must agree, so padding never leaks into real positions."""
    config = CONFIGS[kind]
    model = model_for(config)
    rng = np.random.default_rng(7)
    rows = [TEXT.encode()[:40], b"x" * 40, bytes(rng.integers(0, 256, 40).astype(np.uint8))]
    ids = mx.array([list(r) for r in rows], dtype=mx.int32)
    batched = model(ids, include_start=True)
    for b in range(3):
        h = model.encode(ids[b : b + 1])  # (1, 41, d)
        p = np.array(model.router(h))[0]
        positions = np.flatnonzero(p > 0.5)[: config.max_patches]
        z = model.main_network(h[:, mx.array(positions)])[0]  # (patches, d)
        zbar, previous, smoothed = [], mx.zeros((config.dim,)), []
        for k, position in enumerate(positions):
            P = float(np.clip(p[position], chunking.EMA_CLIP, 1 - chunking.EMA_CLIP))
            previous = P * z[k] + (1 - P) * previous
            zbar.append(previous)
        current = -1
        for t in range(41):
            current += t in positions[current + 1 : current + 2]
            smoothed.append(zbar[current])
        y = mx.stack(smoothed)[None] + model.residual(h)
        logits = model.logits(model.decoder(y))
        assert mx.abs(logits[0] - batched[b]).max().item() < 1e-4, b
    assert (np.array(model.patch_starts(ids)).sum(axis=1) + 1 > config.max_patches).any()  # past the slots


@pytest.mark.parametrize("kind", CONFIGS)
def test_changing_a_byte_changes_no_earlier_prediction_or_boundary(kind):
    model = model_for(CONFIGS[kind])
    base = np.array(text_ids(TEXT, 48))
    full = model(mx.array(base), include_start=True)  # [:, p] predicts byte p from bytes < p
    starts = np.array(model.patch_starts(mx.array(base)))
    for t in (0, 3, 10, 30, 47):
        for new in (ord(" "), ord("x"), 0xE4):
            changed = base.copy()
            changed[0, t] = new
            other = model(mx.array(changed), include_start=True)
            assert mx.array_equal(other[:, : t + 1], full[:, : t + 1]), (t, new)
            assert np.array_equal(np.array(model.patch_starts(mx.array(changed)))[:, :t], starts[:, :t])


def test_logit_contract_loss_and_stats():
    model = model_for()
    ids = two_rows(20)
    assert model(ids).shape == (2, 20, 256)
    assert mx.array_equal(model(ids, include_start=True)[:, 1:], model(ids))
    assert model(ids[:, :0], include_start=True).shape == (2, 1, 256)
    with pytest.raises(ValueError, match="do not fit"):
        model(mx.zeros((1, 49), dtype=mx.int32))
    # loss_fn is the cross-entropy alone (bits per byte); training adds the weighted ratio loss per sequence
    total, counted, extra, stats = summed_training_loss(model, ids)
    assert abs(total.item() / counted.item() - loss_fn(model, ids).item()) < 1e-6 and counted.item() == 40
    starts = np.array(model.patch_starts(ids)).sum(axis=1)
    assert abs(stats["patch_length"].item() - (20 / starts).sum()) < 1e-5
    p = model.router(model.encode(ids))
    ratio = chunking.ratio_loss(p, chunking.boundaries(p), CONFIG.target_patch)
    assert abs(stats["ratio_loss"].item() - ratio.sum().item()) < 1e-6
    assert abs(extra.item() - CONFIG.ratio_loss_weight * ratio.sum().item()) < 1e-6


def test_gradients_reach_the_router_and_checkpointing_leaves_them_unchanged():
    model = model_for()
    ids = text_ids(TEXT, 48)
    model.train()
    plain = dict(tree_flatten(nn.value_and_grad(model, loss_fn)(model, ids)[1]))
    assert mx.abs(plain["router.query.weight"]).max().item() > 0  # through the EMA, the confidence, the ratio loss
    assert mx.abs(plain["residual.weight"]).max().item() > 0
    model.set_grad_checkpoint(True)
    checkpointed = dict(tree_flatten(nn.value_and_grad(model, loss_fn)(model, ids)[1]))
    for name, a in plain.items():
        assert mx.allclose(a, checkpointed[name], atol=1e-5), name


# --- cached generation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CONFIGS)
@pytest.mark.parametrize("variant", kernels.available_variants())
def test_cached_logits_equal_full_recomputation_at_every_position(kind, variant):
    """Two rows whose patches begin at different bytes (the main network steps for one row, not the
    other), past max_patches, with scan blocks and a window shorter than the context."""
    with kernels.forced(variant):
        model = model_for(CONFIGS[kind])
        ids = two_rows()
        full = model(ids, include_start=True)
        cache = model.make_cache(2)
        worst = mx.abs(cache.prefill(ids[:, :0]) - full[:, 0]).max().item()
        starts = []
        for t in range(48):
            worst = max(worst, mx.abs(cache.step(ids[:, t]) - full[:, t + 1]).max().item())
            starts.append(cache.patch_started())
        assert worst <= 1e-4
        assert np.array_equal(np.array(starts).T, np.array(model.patch_starts(ids)))
        assert cache.used.tolist() == [12, 12]  # both rows ran out of main-network slots
        different = np.array(starts)[:, 0] != np.array(starts)[:, 1]
        assert different.any()


def greedy_by_recompute(model, prompt, steps):
    ids = prompt
    for _ in range(steps):
        logits = model(ids, include_start=True)[:, -1]
        ids = mx.concatenate([ids, mx.argmax(logits, axis=-1)[:, None].astype(ids.dtype)], axis=1)
    return ids[:, prompt.shape[1] :]


@pytest.mark.parametrize("kind", CONFIGS)
@pytest.mark.parametrize("prompt", [b"", b"T", b"The cat", b"The cat sat on the mat, and"])
def test_greedy_bytes_equal_full_recomputation(kind, prompt):
    model = model_for(CONFIGS[kind], seed=3)
    ids = mx.array([list(prompt)], dtype=mx.int32)
    steps = 48 - len(prompt)
    want = greedy_by_recompute(model, ids, steps)
    got = [y for _, y in zip(range(steps), generate_step(model, ids, make_sampler(0.0)))]
    assert mx.array_equal(mx.stack(got, axis=1), want), prompt


@pytest.mark.parametrize("kind", CONFIGS)
def test_prefill_of_every_length_gives_the_same_logits_as_the_full_model(kind):
    model = model_for(CONFIGS[kind])
    ids = two_rows()
    full = model(ids, include_start=True)
    for length in range(49):
        assert mx.abs(model.make_cache(2).prefill(ids[:, :length]) - full[:, length]).max().item() <= 1e-4, length


def test_generation_past_the_context_slides_the_window():
    model = model_for()
    ids = text_ids(TEXT * 2, 53)
    cache = model.make_cache(1)
    cache.prefill(ids[:, :48])
    for t in range(48, 53):
        logits = cache.step(ids[:, t])
    assert cache.slid == 1 and cache.length == 24 + 5
    assert mx.abs(logits - model(ids[:, 53 - cache.length :], include_start=True)[:, -1]).max().item() <= 1e-4


@pytest.mark.parametrize("kind", CONFIGS)
def test_select_and_merge_rows(kind):
    """Rows with different numbers of patches merge (each keeps its slots); then all step together."""
    model = model_for(CONFIGS[kind])
    rows = mx.array([list(TEXT.encode()[:10]), list(b"x" * 10), list(b"a b c d e ")], dtype=mx.int32)
    cache = model.make_cache(3)
    cache.prefill(rows)
    other = model.make_cache(1)
    other.prefill(rows[2:])
    assert cache.can_merge(other) and not cache.can_merge(model.make_cache(1))
    cache.select([1, 0])
    cache.merge(other)
    assert cache.batch_size == 3 and len(set(cache.used.tolist())) > 1
    extra = mx.array([[ord(" "), ord("y"), ord("f")], [ord("z"), ord("!"), ord("g")]])
    order = rows[mx.array([1, 0, 2])]
    for k in range(2):
        logits = cache.step(extra[k])
        full = model(mx.concatenate([order, extra[: k + 1].T], axis=1), include_start=True)[:, -1]
        assert mx.abs(logits - full).max().item() <= 1e-4, k


# --- sizes, weights, precision, training, evaluation ----------------------------------------------------


def test_presets_cost_about_megabytes_training_flops_per_byte():
    for name, config in hnet.PRESETS.items():
        ratio = config.flops_per_byte() / PRESETS[name].flops_per_byte()
        assert 0.9 <= ratio <= 1.1, (name, ratio)
        assert config.context_length == PRESETS[name].context_length


def test_config_validation_derived_fields_and_unknown_keys():
    assert HNetConfig.from_dict({**CONFIG.to_dict(), "model_type": "hnet", "extra": 1}) == CONFIG
    assert HNetConfig(context_length=1200, target_patch=6.0).max_patches == 250  # 1.25 x 1200 / 6
    assert HNetConfig(context_length=1200).replace(target_patch=4.0).max_patches == 375
    assert CONFIG.replace(context_length=40).max_patches == 9  # derived again
    assert CONFIG.replace(context_length=40, max_patches=12).max_patches == 12
    with pytest.raises(ValueError, match="main_dim"):
        HNetConfig(dim=64, main_dim=32)
    with pytest.raises(ValueError, match="target_patch must be a number above 1"):
        HNetConfig(target_patch=1.0)
    with pytest.raises(ValueError, match="multiple of mamba_head"):
        HNetConfig(dim=48, mamba_head=64, mamba=True)
    with pytest.raises(ValueError, match=r"dim \(48\) must be a multiple of dim_head"):
        HNetConfig(dim=48)


def test_save_load_round_trip(tmp_path):
    model = model_for(CONFIGS["mamba"])
    save(model, tmp_path / "w")
    assert json.loads((tmp_path / "w" / "config.json").read_text())["model_type"] == "hnet"
    config, _ = read_config(tmp_path / "w")
    assert config == CONFIGS["mamba"]
    loaded = load(tmp_path / "w")
    assert isinstance(loaded, HNet)
    ids = text_ids(TEXT, 48)
    assert mx.array_equal(loaded(ids), model(ids))


@pytest.mark.parametrize("kind", CONFIGS)
def test_bfloat16_forward_tracks_float32(kind):
    model = model_for(CONFIGS[kind])
    ids = two_rows()
    want = loss_fn(model, ids).item()
    model.set_dtype(mx.bfloat16)
    assert model(ids).dtype == mx.bfloat16
    assert abs(loss_fn(model, ids).item() - want) < 0.02 * want


TRAIN = [
    "--arch",
    "hnet",
    "--preset",
    "tiny",
    "--batch-size",
    "2",
    "--eval-batches",
    "1",
    "--steps-per-sample",
    "0",
    "--quiet",
    "--dtype",
    "float32",
    "--attn-dropout",
    "0.1",
    "--ff-dropout",
    "0.1",
]


def test_train_logs_ratio_loss_and_patch_length_evaluate_reports_it(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text((TEXT + "\n") * 400)
    args = [
        *TRAIN,
        "--data",
        str(corpus),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--steps-per-eval",
        "3",
        "--save-path",
        str(tmp_path / "run"),
        "--iters",
        "6",
        "--mamba",
    ]  # the other byte layers in training
    console = Console(file=io.StringIO(), width=200)
    summary = run(build_parser().parse_args(args), console)
    assert summary["step"] == 6 and "H-Net" in console.file.getvalue()
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    trained = [s for s in steps if "loss" in s]
    assert all(s["ratio_loss"] > 0 and 1 <= s["patch_length"] <= 256 for s in trained)
    model = load(tmp_path / "run" / "best")
    assert isinstance(model, HNet) and model.config == hnet.PRESETS["tiny"].replace(
        attn_dropout=0.1, ff_dropout=0.1, mamba=True
    )
    data = np.frombuffer(((TEXT + "\n") * 10).encode(), dtype=np.uint8)
    result = evaluate(model, [data])
    assert result["bytes"] == result["counted_bytes"] == len(data) and 0 < result["bpb"] < 8.5
    windows = [data[s : s + 256] for s in range(0, len(data), 256)]
    starts = sum(int(np.array(model.patch_starts(mx.array(w[None]))).sum()) for w in windows)
    assert abs(result["patch_length"] - len(data) / starts) < 1e-9


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("".join(f"{TEXT} {i}\n" for i in range(600)))
    flags = [
        *TRAIN,
        "--data",
        str(corpus),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--iters",
        "24",
        "--steps-per-eval",
        "6",
    ]
    run(build_parser().parse_args([*flags, "--save-path", str(tmp_path / "straight")]), Console(file=io.StringIO()))

    def metrics(name):
        lines = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: (r["loss"], r["ratio_loss"], r["patch_length"]) for r in lines if "loss" in r}

    # Ctrl-C a real process part-way, then --resume it.
    command = [sys.executable, "-m", "mlx_megabyte.train", *flags, "--save-path", str(tmp_path / "broken")]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "broken" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 9):
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    stopped = json.loads((checkpoint.latest_checkpoint(tmp_path / "broken") / "trainer_state.json").read_text())["step"]
    assert 6 < stopped < 24
    run(
        build_parser().parse_args([*flags, "--save-path", str(tmp_path / "broken"), "--resume"]),
        Console(file=io.StringIO()),
    )
    assert metrics("broken") == metrics("straight")


def test_flags_of_other_architectures_are_refused_and_derived_fields_follow():
    with pytest.raises(UserError, match="--max-patch is not a H-Net setting"):
        model_config(build_parser().parse_args(["--arch", "hnet", "--max-patch", "8"]))
    config = model_config(build_parser().parse_args(["--arch", "hnet", "--preset", "small", "--context-length", "512"]))
    assert config.max_patches == 107 and config.dim == hnet.PRESETS["small"].dim
    assert model_config(build_parser().parse_args(["--arch", "hnet", "--mamba"])).mamba
