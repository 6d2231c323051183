"""SpaceByte: the boundary rule, gather/scatter and the global blocks against per-sequence loops, causality,
cached generation against full recomputation, weights, training, evaluation and the converters' refusal."""

import io

import mlx.core as mx
import numpy as np
import pytest
from rich.console import Console

from mlx_megabyte import (
    PRESETS,
    SpaceByte,
    SpaceByteConfig,
    kernels,
    load,
    loss_fn,
)
from mlx_megabyte.errors import UserError
from mlx_megabyte.evaluate import evaluate
from mlx_megabyte.models import spacebyte as sb
from mlx_megabyte.models.spacebyte import boundaries as spacebyte_boundaries
from mlx_megabyte.train import build_parser, model_config, run

from .helpers import one_line_error
from .helpers import run as run_command

# Small enough to test quickly, with every mechanism in play: a window shorter than the context, fewer
# global positions than boundaries in a full window, a fallback short enough to fire.
CONFIG = SpaceByteConfig(
    context_length=48,
    local_dim=16,
    global_dim=32,
    local_depth=3,
    global_depth=2,
    global_length=8,
    window=6,
    max_patch=5,
    dim_head=8,
)
TEXT = "The cat sat. A dog ran far, then rested!  Supercalifragilistic words: ok 中文字 fin"


def text_ids(text, length=None):
    data = text.encode()
    return mx.array([list(data[:length] if length else data)], dtype=mx.int32)


def model_for(config=CONFIG, seed=0):
    mx.random.seed(seed)
    model = SpaceByte(config)
    model.eval()
    return model


def naive_boundaries(data: bytes, max_patch: int) -> list[int]:
    """The rule, byte by byte: positions (0 = the start, p = byte p - 1) that get a global block."""
    table = spacebyte_boundaries.spacelike_table()
    positions, previous, since = [0], True, 0  # the start counts as spacelike
    for p, byte in enumerate(data, start=1):
        natural = table[byte] and not previous
        previous = table[byte]
        since = 0 if natural else since + 1
        if since % max_patch == 0:
            positions.append(p)
    return positions


# --- the boundary rule --------------------------------------------------------------------------------


def test_spacelike_bytes_are_all_but_letters_digits_and_utf8_continuations():
    table = spacebyte_boundaries.spacelike_table()
    assert not table[[*b"azAZ09", 0x80, 0xBF]].any()
    assert table[[*b" .,\n\t!-_", 0x00, 0x03, 0x7F, 0xC3, 0xE4, 0xFF]].all()
    assert table.sum() == 256 - 62 - 64


def test_boundaries_at_words_utf8_and_the_fallback():
    def rule(data, max_patch=16):
        return np.flatnonzero(np.array(spacebyte_boundaries.boundaries(mx.array([list(data)]), max_patch))[0]).tolist()

    # A space, comma or full stop after a word; not the space after punctuation (spacelike after spacelike).
    assert rule(b"the cat, ok. ") == [0, 4, 8, 12]
    # UTF-8: a leading byte is spacelike, continuation bytes are not: Chinese gets one per character after
    # the first (E4 B8 AD | E6 96 87 | E5 AD 97), an accented letter splits a word at its leading byte.
    assert rule("中文字".encode()) == [0, 4, 7]
    assert rule("héllo wörld".encode()) == [0, 2, 7, 9]
    # Without spaces the fallback adds one every max_patch bytes, counted from the last boundary.
    assert rule(b"a" * 40) == [0, 16, 32]
    assert rule(b"x" * 20 + b" " + b"y" * 20) == [0, 16, 21, 37]
    assert rule(b"0123456789ABCDEF" * 3, max_patch=8) == [0, 8, 16, 24, 32, 40, 48]  # hex, code, DNA...
    assert rule(b"") == [0]


def test_vectorised_rule_equals_the_byte_by_byte_rule():
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b"abcXYZ019 .,\n" + "é中".encode(), dtype=np.uint8)
    for max_patch in (1, 3, 16):
        rows = [rng.choice(alphabet, 64) for _ in range(3)] + [
            np.full(64, ord("q"), dtype=np.uint8),
            rng.integers(0, 256, 64).astype(np.uint8),
        ]
        got = np.array(spacebyte_boundaries.boundaries(mx.array(np.stack(rows)), max_patch))
        for row, mask in zip(rows, got):
            assert np.flatnonzero(mask).tolist() == naive_boundaries(row.tobytes(), max_patch)


# --- gather / scatter and the global blocks against per-sequence loops -------------------------------


def test_gather_and_scatter_equal_a_per_sequence_loop():
    rng = np.random.default_rng(1)
    ids = mx.array(rng.choice(np.frombuffer(b"ab c.", dtype=np.uint8), (3, 30)))
    boundary = spacebyte_boundaries.boundaries(ids, 4)
    x = mx.array(rng.standard_normal((3, 31, 5)).astype(np.float32))
    y = mx.array(rng.standard_normal((3, 6, 5)).astype(np.float32))
    gathered, slot = spacebyte_boundaries.gather_boundaries(x, boundary, 6)
    added = np.array(spacebyte_boundaries.scatter_back(x, y, slot))
    for b in range(3):
        positions = np.flatnonzero(np.array(boundary[b]))[:6]  # boundaries past the 6th get nothing
        assert np.array_equal(np.array(gathered[b, : len(positions)]), np.array(x[b])[positions])
        want = np.array(x[b]).copy()
        for g, p in enumerate(positions):
            want[p] += np.array(y[b, g])
        assert np.allclose(added[b], want)


def test_model_equals_a_per_sequence_loop_without_padding():
    """Every sequence alone, its global blocks run on exactly its boundary rows: the padded, batched
    forward pass must agree, so padding never leaks into real positions."""
    model = model_for()
    rng = np.random.default_rng(2)
    rows = [TEXT.encode()[:40], b"x" * 40, bytes(rng.integers(0, 256, 40).astype(np.uint8))]
    ids = mx.array([list(r) for r in rows], dtype=mx.int32)
    batched = model(ids, include_start=True)
    d = CONFIG.local_dim
    for b, row in enumerate(rows):
        x = mx.concatenate([model.start(1), model.embedding(ids[b : b + 1])], axis=1)
        for block in model.initial_blocks:
            x = block(x)
        positions = naive_boundaries(row, CONFIG.max_patch)[: CONFIG.global_length]
        y = model.to_global(x[:, mx.array(positions)], model.global_position[: len(positions)])
        for block in model.global_blocks:
            y = block(y)
        onehot = np.zeros((x.shape[1], len(positions)), dtype=np.float32)
        onehot[positions, np.arange(len(positions))] = 1
        x = x + mx.array(onehot) @ y[0, :, :d]
        for block in model.final_blocks:
            x = block(x)
        assert mx.abs(model.logits(x)[0] - batched[b]).max().item() < 1e-4, b


def test_logit_contract_and_loss():
    model = model_for()
    ids = text_ids(TEXT, 20)
    assert model(ids).shape == (1, 20, 256)
    assert mx.array_equal(model(ids, include_start=True)[:, 1:], model(ids))
    assert model(ids[:, :0], include_start=True).shape == (1, 1, 256)
    assert abs(loss_fn(model, ids).item() - np.log(256)) < 3
    with pytest.raises(ValueError, match="do not fit"):
        model(mx.zeros((1, 49), dtype=mx.int32))


# --- cached generation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", kernels.available_variants())
def test_cached_logits_equal_full_recomputation_at_every_position(variant):
    """Two rows whose boundaries fall at different bytes (the global blocks step for one row, not the
    other), past the global length, with a window shorter than the context."""
    with kernels.forced(variant):
        model = model_for()
        rows = [TEXT.encode()[:48], (b"abcdefghij" * 5)[:48]]
        ids = mx.array([list(r) for r in rows], dtype=mx.int32)
        full = model(ids, include_start=True)
        cache = model.make_cache(2)
        worst = mx.abs(cache.prefill(ids[:, :0]) - full[:, 0]).max().item()
        for t in range(48):
            worst = max(worst, mx.abs(cache.step(ids[:, t]) - full[:, t + 1]).max().item())
        assert worst <= 1e-4
        assert cache.used.tolist() == [8, 8]  # both rows ran out of global positions


def greedy_by_recompute(model, prompt, steps):
    ids = prompt
    for _ in range(steps):
        logits = model(ids, include_start=True)[:, -1]
        ids = mx.concatenate([ids, mx.argmax(logits, axis=-1)[:, None].astype(ids.dtype)], axis=1)
    return ids[:, prompt.shape[1] :]


# --- sizes, weights, training, evaluation, converters ----------------------------------------------


def test_presets_cost_about_megabytes_training_flops_per_byte():
    for name, config in sb.PRESETS.items():
        ratio = config.flops_per_byte() / PRESETS[name].flops_per_byte()
        assert 0.9 <= ratio <= 1.1, (name, ratio)
        assert config.context_length == PRESETS[name].context_length


def test_config_validation_and_unknown_keys():
    assert SpaceByteConfig.from_dict({**CONFIG.to_dict(), "model_type": "spacebyte", "extra": 1}) == CONFIG
    assert SpaceByteConfig(context_length=1024).global_length == 256
    with pytest.raises(ValueError, match="global_dim"):
        SpaceByteConfig(local_dim=64, global_dim=32, dim_head=16)
    with pytest.raises(ValueError, match="multiple of dim_head"):
        SpaceByteConfig(local_dim=48, global_dim=64, dim_head=32)


def test_train_resume_evaluate_and_refuse_conversion(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text((TEXT + "\n") * 400)
    base = [
        "--arch",
        "spacebyte",
        "--preset",
        "tiny",
        "--data",
        str(corpus),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--batch-size",
        "2",
        "--eval-batches",
        "1",
        "--steps-per-sample",
        "0",
        "--quiet",
        "--steps-per-eval",
        "3",
        "--save-path",
        str(tmp_path / "run"),
        "--dtype",
        "float32",
    ]

    def train(*extra):
        console = Console(file=io.StringIO(), width=200)
        return run(build_parser().parse_args([*base, *extra]), console), console.file.getvalue()

    summary, output = train("--iters", "6", "--time-budget", "1e9")
    assert summary["step"] == 6 and "SpaceByte" in output and "MFLOP per byte" in output
    summary, _ = train("--iters", "9", "--resume", "--reschedule")
    assert summary["start_step"] == 6 and summary["step"] == 9
    model = load(tmp_path / "run" / "best")
    assert isinstance(model, SpaceByte) and model.config == sb.PRESETS["tiny"]
    assert model.config.model_type == "spacebyte"

    data = np.frombuffer(((TEXT + "\n") * 10).encode(), dtype=np.uint8)
    result = evaluate(model, [data])
    assert result["bytes"] == result["counted_bytes"] == len(data) and 0 < result["bpb"] < 8.5

    out = tmp_path / "torch.safetensors"
    refused = run_command(
        "tools/convert_to_torch.py", "--mlx-path", str(tmp_path / "run" / "best"), "--torch-path", str(out)
    )
    one_line_error(refused, "megabyte-pytorch has no spacebyte architecture")
    assert not out.exists()


def test_flags_of_the_other_architecture_are_refused():
    with pytest.raises(UserError, match="--max-seq-len is not a SpaceByte setting"):
        model_config(build_parser().parse_args(["--arch", "spacebyte", "--max-seq-len", "8,8"]))
    with pytest.raises(UserError, match="--window is not a MEGABYTE setting"):
        model_config(build_parser().parse_args(["--window", "8"]))
    config = model_config(
        build_parser().parse_args(["--arch", "spacebyte", "--preset", "small", "--context-length", "512"])
    )
    assert config.global_length == 128 and config.local_dim == sb.PRESETS["small"].local_dim
