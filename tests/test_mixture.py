"""`train --data SOURCE:WEIGHT,...`: a mixture of sources, each window drawn from a source with its weight."""

import json
import math
import shutil

import mlx.core as mx
import numpy as np
import pytest

from mlx_megabyte import mixture
from mlx_megabyte.data import Batches
from mlx_megabyte.errors import UserError
from mlx_megabyte.train import build_parser, main, run

from .helpers import one_line_error, train_in_process
from .helpers import run as run_command


def test_a_value_that_names_one_source_is_one_source_and_a_mixture_is_normalised(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes:v2,final.txt").write_text("a story")  # a real file whose name looks like a mixture
    for spec in ("builtin", "tinystories-instruct", "notes:v2,final.txt", "notes*", str(tmp_path), "missing.txt"):
        assert mixture.parse(spec) is None, spec
    parts = mixture.parse(" builtin : 4 , notes* : 1")  # a part's weight is after its last colon
    assert parts == (mixture.Part("builtin", 0.8), mixture.Part("notes*", 0.2))
    assert mixture.name(parts) == "builtin:0.8,notes*:0.2"
    assert mixture.parse(mixture.name(parts)) == parts
    assert mixture.slug("builtin:0.8,builtin-instruct:0.2") == "builtin80-builtin-instruct20"
    assert mixture.slug("builtin") == "builtin"


def two_sources(masks=False):
    """Two streams told apart by their bytes: A counts through A..Z, B through a..z; B's windows start
    only at 0, 10 and 20 (as record windows do)."""
    a = (65 + np.arange(3000) % 26).astype(np.uint8)
    b = (97 + np.arange(3000) % 26).astype(np.uint8)
    mask_a = np.ones(len(a), np.uint8) if masks else None
    mask_b = (np.arange(len(b)) % 2).astype(np.uint8) if masks else None

    def make(batch_size, rank=0, world=1):
        sources = [
            Batches(a, 12, batch_size, 0, rank, world, mask=mask_a),
            Batches(b, 12, batch_size, 0, rank, world, mask=mask_b, starts=np.array([0, 10, 20])),
        ]
        return mixture.MixedBatches(sources, [3, 1], batch_size, seed=5, rank=rank, world=world)

    return make


def test_each_window_draws_its_source_with_the_weights_and_keeps_the_sources_rules():
    batches, size, steps = two_sources()(16), 16, 400
    counts = []
    for _ in range(steps):
        ids = next(batches)
        from_a = ids[:, 0] < 97
        counts.append(int(from_a.sum()))
        for window, is_a in zip(ids, from_a):
            first = int(window[0]) - (65 if is_a else 97)
            assert np.array_equal(window, (65 if is_a else 97) + (first + np.arange(12)) % 26)  # a real window
            assert is_a or first in (0, 10, 20)  # B's own rule: its starts only
    # Weights 3:1 are shares 0.75 and 0.25. Over 6,400 windows the share drawn from A has standard error
    # sqrt(0.75 * 0.25 / 6400) = 0.00541: within four of them, 0.0217.
    share = sum(counts) / (size * steps)
    assert abs(share - 0.75) < 0.0217, share
    # Drawn per window, a batch's count from A is binomial(16, 0.75): variance 16 * 0.75 * 0.25 = 3 (per
    # batch it would be 0 or 16: variance 48). The sample variance of 400 such counts has standard error
    # about 3 * sqrt(2 / 399) = 0.21: within four of them.
    assert abs(np.var(counts, ddof=1) - 3.0) < 0.85, np.var(counts, ddof=1)


def test_every_rank_keeps_its_slice_of_the_same_global_batch_and_the_state_resumes_it():
    make = two_sources(masks=True)
    one, ranks = make(8), [make(4, rank, 2) for rank in range(2)]
    for _ in range(5):
        ids, marks = next(one)
        parts = [next(r) for r in ranks]
        assert np.array_equal(ids, np.concatenate([p[0] for p in parts]))
        assert np.array_equal(marks, np.concatenate([p[1] for p in parts]))
        from_a = ids[:, 0] < 97  # masks are the same windows of each source's mask: A all ones, B odd places
        assert (marks[from_a] == 1).all()
        assert np.array_equal(marks[~from_a], (ids[~from_a] - 97) % 2)
    state = json.loads(json.dumps(one.state))  # as a checkpoint keeps it
    expected = next(one)
    one.state = state
    again = next(one)
    assert all(np.array_equal(x, y) for x, y in zip(again, expected))


BASE = [
    "--preset",
    "tiny",
    "--builtin-mb",
    "0.2",
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


def train(tmp_path, cache, mix, *extra, name="run"):
    flags = [*BASE, "--data", mix, "--cache-dir", cache, "--save-path", str(tmp_path / name), *extra]
    return train_in_process(flags, width=400)


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_resumed_mixture_matches_an_unbroken_run_and_records_the_mixture(tmp_path, cache):
    flags = ["--iters", "8", "--steps-per-eval", "4", "--keep-checkpoints", "2"]
    _, output = train(tmp_path, cache, "builtin:0.7,builtin-instruct:0.3", *flags, name="straight")
    assert "builtin, 70%" in output and "builtin-instruct, 30%" in output and "loss over every byte" in output
    assert "windows at" in output.split("builtin-instruct, 30%")[1]  # instruct records: record windows
    shutil.copytree(tmp_path / "straight", tmp_path / "broken")
    shutil.rmtree(tmp_path / "broken" / "checkpoints" / "step-00000008")  # as if it stopped after step 4
    # the same mixture written with other ratios of the same shares is the same run
    _, output = train(tmp_path, cache, "builtin:7,builtin-instruct:3", *flags, "--resume", name="broken")
    assert "resumed from" in output

    def losses(run_dir):  # every step's loss and every validation number, exactly
        return [tuple(r.get(k) for k in ("step", "loss", "val_loss", "val_bpb_by_source")) for r in records(run_dir)]

    assert losses(tmp_path / "broken") == losses(tmp_path / "straight")
    assert len(losses(tmp_path / "straight")) == 8 + 2
    weights = [
        mx.load(str(tmp_path / run / "checkpoints" / "step-00000008" / "model.safetensors"))
        for run in ("straight", "broken")
    ]
    assert all(np.array_equal(np.array(weights[0][k]), np.array(weights[1][k])) for k in weights[0])
    # validation: each source on its own split, the whole their weighted mean
    last = [r for r in records(tmp_path / "straight") if "val_bpb" in r][-1]
    each = last["val_bpb_by_source"]
    assert last["val_bpb"] == pytest.approx(0.7 * each["builtin"] + 0.3 * each["builtin-instruct"], rel=1e-12)
    assert last["val_loss"] == pytest.approx(last["val_bpb"] * math.log(2), rel=1e-12)
    best = json.loads((tmp_path / "straight" / "best" / "trainer_state.json").read_text())
    assert best["data"] == "builtin:0.7,builtin-instruct:0.3" and best["instruct"] is True
    assert best["mixture"] == [
        {"data": "builtin", "weight": 0.7, "instruct": False},
        {"data": "builtin-instruct", "weight": 0.3, "instruct": True},
    ]
    with pytest.raises(UserError, match=r"the run used --data builtin:0.7,builtin-instruct:0.3, not builtin:0.5,"):
        train(tmp_path, cache, "builtin:1,builtin-instruct:1", *flags, "--resume", name="broken")


@pytest.mark.parametrize(
    "mix, fragment",
    [
        ("builtin:-1,builtin-instruct:1", "the weight of builtin is -1; weights must be positive"),
        ("builtin:0,builtin-instruct:0", "the weight of builtin is 0; weights must be positive"),
        ("builtin:half,builtin-instruct:1", "the weight of builtin is 'half', not a number"),
        ("builtin:1,builtin-instruct:inf", "the weight of builtin-instruct is inf; weights must be positive"),
        ("bultin:1,builtin-instruct:1", "no source bultin (builtin, builtin-instruct"),
        ("builtin:1,builtin:2", "builtin is given twice; give each source once"),
        ("builtin:1", "a mixture needs two sources or more; for one, --data builtin"),
        ("notes:v2.txt", "no file, directory or glob is named so, and as a mixture"),
    ],
)
def test_a_bad_mixture_is_one_line_before_any_work(tmp_path, capsys, mix, fragment):
    with pytest.raises(SystemExit) as stopped:
        main(["--preset", "tiny", "--data", mix, "--save-path", str(tmp_path / "r")])
    assert stopped.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --data {mix}: ") and fragment in lines[0], lines
    assert not (tmp_path / "r").exists()


def test_the_train_command_refuses_a_bad_mixture_in_one_line_and_evaluate_a_mixture(tmp_path):
    common = ["--preset", "tiny", "--save-path", str(tmp_path / "r")]
    one_line_error(
        run_command("-m", "mlx_megabyte.train", *common, "--data", "builtin:0.8,builtin-instruct:x"),
        "the weight of builtin-instruct is 'x', not a number",
    )
    with pytest.raises(UserError, match="--val-data gives one source's validation data; each source of a mixture"):
        run(build_parser().parse_args([*common, "--data", "builtin:1,builtin-instruct:1", "--val-data", "v"]), None)
    from mlx_megabyte.evaluate import one_source

    with pytest.raises(UserError, match="is a mixture; evaluate scores one source at a time: --data builtin, --data"):
        one_source("builtin:0.8,builtin-instruct:0.2")
