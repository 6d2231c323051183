"""`python -m mlx_megabyte.train` on the tiny preset and a small built-in corpus."""

import io
import json
import math
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console

from mlx_megabyte import checkpoint, load
from mlx_megabyte.cli import UserError
from mlx_megabyte.train import build_parser, run

from .helpers import ROOT, one_line_error
from .helpers import run as run_command

BASE = ["--preset", "tiny", "--data", "builtin", "--builtin-mb", "0.4", "--batch-size", "4", "--eval-batches", "2",
        "--steps-per-sample", "0", "--quiet"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data-cache"))


def train(tmp_path, cache, *extra, name="run"):
    args = build_parser().parse_args([*BASE, "--cache-dir", cache, "--save-path", str(tmp_path / name), *extra])
    console = Console(file=io.StringIO(), width=200)
    summary = run(args, console)
    return summary, console.file.getvalue()


def losses(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in lines if "loss" in r}


def test_loss_falls_well_below_its_start(tmp_path, cache):
    summary, output = train(tmp_path, cache, "--iters", "80", "--steps-per-eval", "40", "--learning-rate", "2e-3")
    curve = losses(tmp_path / "run")
    assert abs(curve[1] - math.log(256)) < 0.7  # starts near uniform over bytes
    assert summary["val_loss"] < 0.55 * curve[1], (curve[1], summary["val_loss"])
    assert sorted(curve) == list(range(1, 81))
    assert "validation loss" in output
    model = load(tmp_path / "run" / "best")  # best weights load as a weights directory
    assert model.config.max_seq_len == (32, 8)


def test_resumed_run_matches_an_uninterrupted_one(tmp_path, cache):
    flags = ["--iters", "40", "--steps-per-eval", "10", "--attn-dropout", "0.1", "--ff-dropout", "0.1"]
    train(tmp_path, cache, *flags, name="straight")
    want = losses(tmp_path / "straight")

    # Ctrl-C a real process part-way, then --resume it.
    command = [sys.executable, "-m", "mlx_megabyte.train", *BASE, "--cache-dir", cache,
               "--save-path", str(tmp_path / "broken"), *flags]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "broken" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 13):
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "continue with --resume" in stderr
    stopped = checkpoint.latest_checkpoint(tmp_path / "broken")
    stopped_at = json.loads((stopped / "trainer_state.json").read_text())["step"]
    assert 10 < stopped_at < 40

    train(tmp_path, cache, *flags, "--resume", name="broken")
    got = losses(tmp_path / "broken")
    assert sorted(got) == list(range(1, 41))
    assert [got[s] for s in range(1, 41)] == [want[s] for s in range(1, 41)]


def test_a_checkpoint_write_that_dies_leaves_the_previous_one(tmp_path, cache, monkeypatch):
    train(tmp_path, cache, "--iters", "4", "--steps-per-eval", "2")
    run_dir = tmp_path / "run"
    before = checkpoint.latest_checkpoint(run_dir)
    assert before.name == "step-00000004"

    import mlx.core as mx

    real = mx.save_safetensors

    def dies_half_way(path, arrays, metadata=None):
        real(path, dict(list(arrays.items())[:3]), metadata=metadata)  # a partial file on disk
        raise KeyboardInterrupt  # the process is stopped mid-write

    monkeypatch.setattr(mx, "save_safetensors", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, cache, "--iters", "6", "--steps-per-eval", "2", "--resume")
    monkeypatch.setattr(mx, "save_safetensors", real)
    assert checkpoint.latest_checkpoint(run_dir) == before
    load(before)
    summary, _ = train(tmp_path, cache, "--iters", "6", "--steps-per-eval", "2", "--resume")
    assert summary["start_step"] == 4 and summary["step"] == 6
    assert not list((run_dir / "checkpoints").glob(".*"))  # leftovers cleaned up


def test_sigkill_during_training_never_leaves_a_broken_checkpoint(tmp_path, cache):
    command = [sys.executable, "-m", "mlx_megabyte.train", *BASE, "--cache-dir", cache, "--save-path",
               str(tmp_path / "run"), "--iters", "400", "--steps-per-eval", "1000", "--steps-per-save", "1",
               "--keep-checkpoints", "2"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and len(checkpoint.checkpoints(tmp_path / "run")) < 1:
        time.sleep(0.01)
    time.sleep(0.3)
    process.kill()
    process.wait()
    complete = checkpoint.checkpoints(tmp_path / "run")
    assert complete, list(folder.iterdir())
    for path in complete:
        load(path)
    summary, _ = train(tmp_path, cache, "--iters", "400", "--steps-per-eval", "1000", "--steps-per-save", "1",
                       "--keep-checkpoints", "2", "--resume")
    assert summary["start_step"] >= int(complete[-1].name.split("-")[1])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, cache, monkeypatch):
    import mlx.core as mx

    from mlx_megabyte.train import Trainer

    real = Trainer.train_step

    def diverges_at_step_3(self, batch):
        loss, norm = real(self, batch)
        return (loss * mx.array(float("nan")) if self.step >= 2 else loss), norm

    monkeypatch.setattr(Trainer, "train_step", diverges_at_step_3)
    with pytest.raises(UserError, match="loss became nan at step 3.*last good checkpoint is .*step-00000002"):
        train(tmp_path, cache, "--iters", "10", "--steps-per-eval", "2")
    assert checkpoint.latest_checkpoint(tmp_path / "run").name == "step-00000002"
    assert not list((tmp_path / "run" / "checkpoints").glob("*3"))


def test_gradient_accumulation_matches_one_big_batch(tmp_path, cache):
    train(tmp_path, cache, "--iters", "3", "--steps-per-eval", "3", "--batch-size", "4", name="big")
    train(tmp_path, cache, "--iters", "3", "--steps-per-eval", "3", "--batch-size", "2",
          "--grad-accumulation-steps", "2", name="accumulated")
    big, accumulated = losses(tmp_path / "big"), losses(tmp_path / "accumulated")
    assert all(abs(big[s] - accumulated[s]) < 1e-4 for s in (1, 2, 3)), (big, accumulated)


def test_bad_flags_give_one_line(tmp_path, cache):
    common = ["-m", "mlx_megabyte.train", "--cache-dir", cache, "--save-path", str(tmp_path / "r")]
    one_line_error(run_command(*common, "--data", str(tmp_path / "nothing.txt")), "no such file")
    one_line_error(run_command(*common, "--preset", "tiny", "--depth", "2,2,2"), "depth has 3 stages but max_seq_len has 2")
    one_line_error(run_command(*common, "--preset", "tiny", "--data", "builtin", "--builtin-mb", "0.4", "--resume"),
                   "no checkpoint")


def test_init_from_starts_instruct_tuning_from_pretrained_weights(tmp_path, cache):
    train(tmp_path, cache, "--iters", "60", "--steps-per-eval", "60", "--learning-rate", "2e-3", name="base")
    summary, output = train(tmp_path, cache, "--data", "builtin-instruct", "--init-from", str(tmp_path / "base"),
                            "--iters", "2", "--steps-per-eval", "2", name="instruct")
    first = losses(tmp_path / "instruct")[1]
    fresh = losses(tmp_path / "base")[1]
    assert first < fresh - 1.0, (first, fresh)  # the pretrained model already knows stories
    assert "initialised from" in output
    assert load(tmp_path / "instruct" / "best").config == load(tmp_path / "base" / "best").config
