"""`train --mask-prompt`: the loss counts only the story bytes of instruct records, exactly, everywhere a
loss is computed (a step, accumulation, ranks, validation, resume)."""

import json
import shutil

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_megabyte import data, stories
from mlx_megabyte.errors import UserError
from mlx_megabyte.instruct import first_use_mask, story_mask
from mlx_megabyte.models import ARCHITECTURES, build, loss_fn, summed_loss
from mlx_megabyte.optim import TrainStep, make_optimizer
from mlx_megabyte.text import EOT
from mlx_megabyte.train import build_parser, training_config

from .helpers import train_in_process

BASE = [
    "--preset",
    "tiny",
    "--data",
    "builtin-instruct",
    "--builtin-mb",
    "0.4",
    "--batch-size",
    "4",
    "--eval-batches",
    "2",
    "--steps-per-sample",
    "0",
    "--quiet",
    "--mask-prompt",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data-cache"))


@pytest.fixture(scope="module")
def records():
    """A stream of built-in instruct records, as data.prepare encodes them."""
    text = b"".join(doc.encode() + bytes([EOT]) for doc in stories.documents(0, 20_000, instruct=True))
    return np.frombuffer(text, np.uint8)


def windows(stream, length, count, seed=0, mask=None):
    """`count` random windows of the stream and the same windows of `mask` (default: its story mask)."""
    starts = np.random.default_rng(seed).integers(0, len(stream) - length, size=count)
    ids = np.stack([stream[s : s + length] for s in starts])
    mask = story_mask(stream) if mask is None else mask
    return ids, np.stack([mask[s : s + length] for s in starts])


def naive_story_loss(model, ids, mask):
    """Mean cross-entropy over the story bytes, by hand: float64 log-softmax, one byte at a time."""
    logits = np.array(model(mx.array(ids), include_start=True)[:, :-1].astype(mx.float32), dtype=np.float64)
    total, counted = 0.0, 0
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            if mask[b, t] and ids[b, t] != model.config.pad_id:
                row = logits[b, t]
                top = row.max()
                total += top + np.log(np.exp(row - top).sum()) - row[ids[b, t]]
                counted += 1
    return total / counted, counted


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_masked_loss_is_the_naive_mean_over_story_bytes(arch, records):
    mx.random.seed(0)
    model = build(ARCHITECTURES[arch].presets["tiny"])
    ids, mask = windows(records, model.config.context_length, 3)
    want, counted = naive_story_loss(model, ids, mask)
    assert 0 < counted < ids.size  # some prompt bytes are left out, some story bytes counted
    got = loss_fn(model, mx.array(ids), mx.array(mask)).item()
    assert got == pytest.approx(want, rel=1e-5)
    total, count = summed_loss(model, mx.array(ids), mx.array(mask))
    assert count.item() == counted and total.item() == pytest.approx(want * counted, rel=1e-5)
    # without the mask every byte counts, and the loss differs
    assert loss_fn(model, mx.array(ids)).item() != pytest.approx(want, rel=1e-3)


def test_a_step_is_the_global_mean_over_story_bytes_with_or_without_accumulation(records):
    """The micro-batches count different numbers of story bytes: a step's loss is the mean over all of
    them (naively recomputed), and accumulating gives the same loss and the same updated weights."""
    config = training_config(build_parser().parse_args(BASE + ["--learning-rate", "1e-2"]))
    ids, mask = windows(records, config.model.context_length, 4, seed=1)
    assert mask[:2].sum() != mask[2:].sum()  # the two halves count different numbers of bytes
    results = []
    for accumulation in (1, 2):
        mx.random.seed(0)
        model = build(config.model)
        want, _ = naive_story_loss(model, ids, mask)
        optimizer = make_optimizer(config)
        step = TrainStep(model, optimizer, grad_clip=1.0, accumulation=accumulation)
        loss, _ = step((ids, mask))
        assert loss.item() == pytest.approx(want, rel=1e-5)
        results.append(dict(tree_flatten(model.parameters())))
    worst = max(mx.abs(results[0][k] - results[1][k]).max().item() for k in results[0])
    assert worst < 1e-6, worst


def test_masked_batches_are_the_same_windows_of_bytes_and_mask():
    stream = (np.arange(5000) % 251).astype(np.uint8)
    mask = (stream % 3 == 0).astype(np.uint8)
    plain = data.Batches(stream, 16, 4, seed=3)
    masked = data.Batches(stream, 16, 4, seed=3, mask=mask, rank=0, world=1)
    for _ in range(3):
        ids, marks = next(masked)
        assert np.array_equal(ids, next(plain))  # the mask changes no window
        assert np.array_equal(marks, (ids % 3 == 0).astype(np.uint8))


def test_the_story_mask_is_kept_beside_the_split(tmp_path):
    corpus = data.prepare("builtin-instruct", cache_dir=tmp_path, builtin_mb=0.2)
    first = corpus.story_mask("val")
    assert np.array_equal(first, story_mask(corpus.val))
    saved = corpus.directory / "val.mask"
    assert saved.stat().st_size == len(corpus.val)
    before = saved.stat().st_mtime_ns
    assert np.array_equal(corpus.story_mask("val"), first) and saved.stat().st_mtime_ns == before  # reused
    assert corpus.instruct and not data.prepare("builtin", cache_dir=tmp_path, builtin_mb=0.2).instruct


def train(tmp_path, cache, *extra, name="run", base=BASE):
    return train_in_process([*base, "--cache-dir", cache, "--save-path", str(tmp_path / name), *extra], width=300)


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_resumed_masked_run_matches_an_unbroken_one(tmp_path, cache):
    flags = ["--iters", "12", "--steps-per-eval", "6", "--keep-checkpoints", "2"]
    _, output = train(tmp_path, cache, *flags, name="straight")
    assert "bits per story byte" in output and "--mask-prompt" in output
    shutil.copytree(tmp_path / "straight", tmp_path / "broken")
    shutil.rmtree(tmp_path / "broken" / "checkpoints" / "step-00000012")  # as if it stopped after step 6
    _, output = train(tmp_path, cache, *flags, "--resume", name="broken")
    assert "resumed from" in output

    def losses(run_dir):  # every step's loss and every validation loss, exactly
        return [(r["step"], r.get("loss"), r.get("val_loss")) for r in metrics(run_dir)]

    assert losses(tmp_path / "broken") == losses(tmp_path / "straight")
    assert {r.get("counted") for r in metrics(tmp_path / "straight") if "val_loss" in r} == {"story bytes"}
    best = json.loads((tmp_path / "straight" / "best" / "trainer_state.json").read_text())
    assert best["instruct"] is True and best["counted"] == "story bytes"
    # the mask is a setting of the run: resuming without it is refused in one line
    with pytest.raises(UserError, match="the run used --mask-prompt: pass it"):
        train(tmp_path, cache, *flags, "--resume", name="broken", base=[b for b in BASE if b != "--mask-prompt"])


def test_mask_prompt_on_data_without_records_is_refused(tmp_path, cache):
    plain = [b if b != "builtin-instruct" else "builtin" for b in BASE]
    with pytest.raises(UserError, match="--data builtin holds none"):
        train(tmp_path, cache, "--iters", "1", base=plain)


def test_bfloat16_masked_training_tracks_float32(tmp_path, cache):
    flags = ["--iters", "30", "--steps-per-eval", "30", "--learning-rate", "2e-3"]
    train(tmp_path, cache, *flags, name="f32")
    train(tmp_path, cache, *flags, "--dtype", "bfloat16", name="bf16")
    full = {r["step"]: r["loss"] for r in metrics(tmp_path / "f32") if "loss" in r}
    mixed = {r["step"]: r["loss"] for r in metrics(tmp_path / "bf16") if "loss" in r}
    assert max(abs(full[s] - mixed[s]) / full[s] for s in full) < 0.01
    assert mixed[30] < 0.7 * mixed[1]


def naive_record_starts(stream: bytes, length: int) -> list[int]:
    """Per document, by hand: where its window starts (the end-of-text byte before it, 0 for the first),
    and where the window ending with its own end-of-text byte starts when it does not fit from there."""
    starts, head = set(), 0
    for end, byte in enumerate(stream):
        if byte != EOT:
            continue
        starts.add(head)
        if end - head + 1 > length:
            starts.add(end - length + 1)
        head = end
    return sorted(s for s in starts if s + length <= len(stream))


def test_record_starts_equal_a_loop_over_the_documents():
    rng = np.random.default_rng(0)
    for length in (4, 16, 64):
        docs = [bytes(rng.integers(65, 90, size=int(rng.integers(1, 3 * length)))) for _ in range(40)]
        stream = b"".join(d + bytes([EOT]) for d in docs)
        got = data.record_starts(np.frombuffer(stream, np.uint8), length).tolist()
        assert got == naive_record_starts(stream, length)


def test_record_windows_start_where_a_prompt_does_and_resume_exactly(tmp_path):
    corpus = data.prepare("builtin-instruct", cache_dir=tmp_path, builtin_mb=0.2)
    length = 256
    starts = data.record_starts(corpus.train, length)
    batches = data.Batches(corpus.train, length, 8, seed=1, starts=starts)
    heads = {0, *np.flatnonzero(np.asarray(corpus.train) == EOT).tolist()}
    for ids in (next(batches) for _ in range(4)):
        for window in ids:  # a record's head (its prompt follows), or the end of a long one
            at = int(np.flatnonzero((batches.windows == window).all(axis=1))[0])
            assert at in heads or window[-1] == EOT
            if at in heads and at > 0:
                assert bytes(window[1:]).startswith((b"Features:", b"Words:", b"Summary:", b"Story:"))
    state = batches.state
    expected = next(batches)
    batches.state = state
    assert np.array_equal(next(batches), expected)


def test_instruct_data_trains_on_record_windows_unless_told(tmp_path, cache):
    _, output = train(tmp_path, cache, "--iters", "2", "--steps-per-eval", "2", name="auto")
    assert "windows: " in output and "at the documents' starts" in output
    saved = json.loads((tmp_path / "auto" / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())
    assert saved["windows"] == "records"
    _, output = train(tmp_path, cache, "--iters", "2", "--windows", "uniform", name="uniform")
    assert "windows: " not in output
    plain = [b if b != "builtin-instruct" else "builtin" for b in BASE if b != "--mask-prompt"]
    _, output = train(tmp_path, cache, "--iters", "2", "--steps-per-eval", "2", name="plain", base=plain)
    assert "windows: " not in output
    saved = json.loads((tmp_path / "plain" / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())
    assert saved["windows"] == "uniform"
    # a run saved before windows were a setting drew them anywhere: resuming it on records is refused
    flags = ["--iters", "4", "--steps-per-eval", "2", "--resume", "--reschedule"]
    for state_file in (tmp_path / "auto" / "checkpoints").glob("*/trainer_state.json"):
        record = json.loads(state_file.read_text())
        del record["windows"]
        state_file.write_text(json.dumps(record))
    with pytest.raises(UserError, match="the run used --windows uniform, not records: pass the same value"):
        train(tmp_path, cache, *flags, name="auto")
    _, output = train(tmp_path, cache, *flags, "--windows", "uniform", name="auto")
    assert "resumed from" in output


# --- --words-weight: the required words' first uses count more -------------------------------------------


def weighted_windows(stream, length, count, weight, seed=0):
    """Windows of the stream and their --words-weight masks: 1 on story bytes, `weight` on first uses."""
    weights = story_mask(stream).astype(np.uint8) + (weight - 1) * first_use_mask(stream).astype(np.uint8)
    return windows(stream, length, count, seed, mask=weights)


def naive_weighted_loss(model, ids, weights):
    """The mean cross-entropy with each byte counted `weights` times, by hand (float64, byte by byte)."""
    logits = np.array(model(mx.array(ids), include_start=True)[:, :-1].astype(mx.float32), dtype=np.float64)
    total, counted = 0.0, 0
    for b, t in zip(*np.nonzero(weights)):
        row = logits[b, t]
        top = row.max()
        total += weights[b, t] * (top + np.log(np.exp(row - top).sum()) - row[ids[b, t]])
        counted += int(weights[b, t])
    return total / counted, counted


def test_a_weighted_mask_counts_each_byte_its_weight_in_the_loss_and_the_step(records):
    config = training_config(build_parser().parse_args(BASE + ["--learning-rate", "1e-2"]))
    ids, weights = weighted_windows(records, config.model.context_length, 4, weight=5, seed=2)
    assert set(np.unique(weights)) == {0, 1, 5}  # prompt, story, first uses
    mx.random.seed(0)
    model = build(config.model)
    want, counted = naive_weighted_loss(model, ids, weights)
    total, count = summed_loss(model, mx.array(ids), mx.array(weights))
    assert count.item() == counted and total.item() == pytest.approx(want * counted, rel=1e-5)
    assert loss_fn(model, mx.array(ids), mx.array(weights)).item() == pytest.approx(want, rel=1e-5)
    for accumulation in (1, 2):  # the step's loss is the weighted mean over the global batch
        mx.random.seed(0)
        model = build(config.model)
        step = TrainStep(model, make_optimizer(config), grad_clip=1.0, accumulation=accumulation)
        assert step((ids, weights))[0].item() == pytest.approx(want, rel=1e-5)


def test_words_weight_weighs_training_masks_only_and_is_a_setting_of_the_run(tmp_path, cache):
    from mlx_megabyte.trainer import Trainer

    flags = ["--iters", "2", "--steps-per-eval", "2", "--words-weight", "6"]
    _, output = train(tmp_path, cache, *flags)
    config = training_config(build_parser().parse_args([*BASE, "--cache-dir", cache, "--words-weight", "6"]))
    corpus = data.prepare("builtin-instruct", cache_dir=cache, builtin_mb=0.4)
    trainer = Trainer(config, corpus, None, None)
    source = trainer.sources[0]
    _, marks = next(source.batches)
    uses = first_use_mask(corpus.train)
    assert set(np.unique(marks)) == {0, 1, 6}  # prompt bytes, story bytes, first uses
    assert np.array_equal(source.eval_masks.max(), 1)  # validation counts every story byte once
    assert uses.sum() and (np.asarray(corpus.story_mask("train"))[uses] == 1).all()  # first uses are story bytes
    with pytest.raises(UserError, match="the run used --words-weight 6, not 1"):
        train(tmp_path, cache, "--iters", "4", "--resume")
    with pytest.raises(UserError, match="add --mask-prompt"):
        train(tmp_path, cache, *flags, name="plain", base=[b for b in BASE if b != "--mask-prompt"])
