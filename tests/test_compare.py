"""tools/compare.py: two tiny configurations trained for the same few seconds, scored, tabled, plotted;
run again, nothing is trained twice. Sweeps: how --vary and --sweep expand into runs (names, flags,
values), what they refuse, and a tiny sweep trained, cut off and resumed."""

import importlib.util
import json
import shutil
import sys

import pytest

from .helpers import ROOT, one_line_error, run

TEXT = "The cat sat on the mat. The dog ran to the park, and then it rested under a tree!\n"


def test_two_tiny_configs_at_equal_wall_clock_then_nothing_twice(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(TEXT * 500)
    out = tmp_path / "compare"
    command = [
        "tools/compare.py",
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--time-budget",
        "2",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--config",
        "megabyte: --arch megabyte --preset tiny",
        "--config",
        "spacebyte: --arch spacebyte --preset tiny",
        "--train-args",
        "--batch-size 2 --eval-batches 1 --steps-per-eval 4 --iters 100000",
    ]
    first = run(*command, timeout=240)
    assert first.returncode == 0, first.stderr
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results] == ["megabyte", "spacebyte"]
    assert [r["arch"] for r in results] == ["megabyte", "spacebyte"]
    for r in results:
        # Stopped by the time budget (2 s of steps, the last step may pass it), far short of --iters.
        assert 2 <= r["train_seconds"] < 60 and 0 < r["steps"] < 100000
        assert r["bytes_seen"] == r["steps"] * 2 * 256
        assert 0 < r["heldout_bpb"] < 9 and r["heldout_bytes"] > 0 and r["parameters"] > 0
        assert r["mflops_per_byte"] > 0.3
        assert (out / r["checkpoint"] / "model.safetensors").is_file()  # relative to --out
    table = (out / "results.md").read_text()
    assert "| megabyte | megabyte |" in table and "| spacebyte | spacebyte |" in table
    assert (out / "bpb-vs-time.png").stat().st_size > 1000

    trained = {r["name"]: (out / r["name"] / "metrics.jsonl").read_text() for r in results}
    again = run(*command, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("done before, skipped") == 2
    assert {r["name"]: (out / r["name"] / "metrics.jsonl").read_text() for r in results} == trained
    assert json.loads((out / "results.json").read_text()) == results


def compare_line(tmp_path, *flags):
    return run("tools/compare.py", "--data", "builtin", "--time-budget", "1", *flags, timeout=60)


def test_a_configuration_name_given_twice_is_refused_not_dropped(tmp_path):
    """Once, one of two configurations of the same name silently did not run."""
    one_line_error(
        compare_line(
            tmp_path, "--out", str(tmp_path / "o"), "--config", "a: --preset tiny", "--config", "a: --preset small"
        ),
        "'a' is given twice",
    )
    (tmp_path / "c.json").write_text('{"a": "--preset tiny", "b": "--preset tiny", "a": "--preset small"}')
    one_line_error(
        compare_line(tmp_path, "--out", str(tmp_path / "o"), "--configs", str(tmp_path / "c.json")),
        "'a' is given twice",
        "c.json",
    )
    (tmp_path / "d.json").write_text('{"a": "--preset tiny"}')
    one_line_error(
        compare_line(
            tmp_path,
            "--out",
            str(tmp_path / "o"),
            "--configs",
            str(tmp_path / "d.json"),
            "--config",
            "a: --preset small",
        ),
        "'a' is given twice",
    )
    assert not (tmp_path / "o").exists()  # refused before anything is written


@pytest.mark.parametrize(
    "contents,fragments",
    [
        ("{not json", ["is not valid JSON"]),
        ('["--preset tiny"]', ["must hold a JSON object", "not a list"]),
        ('{"a": 5}', ["configuration 'a'", "must be a string"]),
        ('{"a": "--preset \\"tiny"}', ["configuration 'a'", "No closing quotation"]),
        ('{"a": "--no-such-flag"}', ["configuration 'a'", "unrecognized arguments: --no-such-flag"]),
        ('{"a": "--data \\ud800"}', ["configuration 'a'", "lone UTF-16 surrogate"]),
        (None, ["--configs", "No such file"]),
    ],
)
def test_bad_configs_files_are_one_line(tmp_path, contents, fragments):
    path = tmp_path / "configs.json"
    if contents is not None:
        path.write_text(contents)
    one_line_error(compare_line(tmp_path, "--out", str(tmp_path / "o"), "--configs", str(path)), *fragments)


def test_bad_config_flags_and_out_are_one_line(tmp_path):
    out = ["--out", str(tmp_path / "o")]
    one_line_error(
        compare_line(tmp_path, *out, "--config", "a: --preset 'tiny"), "configuration 'a'", "No closing quotation"
    )
    one_line_error(compare_line(tmp_path, *out, "--config", "no colon"), "expected 'NAME: FLAGS'")
    one_line_error(
        compare_line(tmp_path, *out, "--config", "a: --preset tiny", "--train-args", "--iters 'x"), "--train-args"
    )
    (tmp_path / "file").write_text("")
    one_line_error(compare_line(tmp_path, "--out", str(tmp_path / "file"), "--config", "a: --preset tiny"), "is a file")
    one_line_error(
        compare_line(tmp_path, *out, "--config", "a: --preset tiny", "--eval-max-bytes", "0"),
        "--eval-max-bytes",
        "at least 1",
    )


# --- sweeps ---------------------------------------------------------------------------------------------


def compare_module():
    """tools/compare.py as a module (registered, as its dataclass needs)."""
    if "compare_tool" not in sys.modules:
        spec = importlib.util.spec_from_file_location("compare_tool", ROOT / "tools" / "compare.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["compare_tool"] = module
        spec.loader.exec_module(module)
    return sys.modules["compare_tool"]


def planned(*flags):
    """The runs a compare command line would train (nothing is trained)."""
    compare = compare_module()
    return compare.plan(compare.parse_args(["--data", "builtin", "--out", "unused", "--time-budget", "1", *flags]))


SMALL = ["--config", "small: --arch megabyte --preset small"]


def test_one_at_a_time_is_the_default_and_runs_the_base_then_each_axis_alone():
    runs = planned(*SMALL, "--vary", "patch=4,8,16", "--vary", "learning-rate=4e-4,1e-3")
    # patch 8 and learning rate 4e-4 are the small preset's own (trainer.PRESET_DEFAULTS): the base run.
    assert [r.name for r in runs] == ["small", "small-patch=4", "small-patch=16", "small-learning_rate=1e-3"]
    assert runs[0].flags == ["--arch", "megabyte", "--preset", "small"] and runs[0].point == {}
    assert runs[3].flags == ["--arch", "megabyte", "--preset", "small", "--learning-rate", "1e-3"]
    assert [r.values for r in runs] == [
        {"patch": "8", "learning_rate": "0.0004"},
        {"patch": "4", "learning_rate": "0.0004"},
        {"patch": "16", "learning_rate": "0.0004"},
        {"patch": "8", "learning_rate": "0.001"},
    ]


def test_the_product_runs_every_combination_named_by_all_its_values():
    runs = planned(*SMALL, "--vary", "patch=4,8", "--vary", "learning_rate=4e-4,1e-3", "--sweep", "product")
    assert [r.name for r in runs] == [
        "small-patch=4-learning_rate=4e-4",
        "small-patch=4-learning_rate=1e-3",
        "small-patch=8-learning_rate=4e-4",
        "small-patch=8-learning_rate=1e-3",
    ]
    assert runs[1].flags[:-1] == [
        "--arch",
        "megabyte",
        "--preset",
        "small",
        "--learning-rate",
        "1e-3",
        "--max-seq-len",
        "256,4",
        "--dim",
    ]
    assert runs[1].flags[-1].endswith(",128")  # the global width: the patch test below
    assert runs[2].values == {"patch": "8", "learning_rate": "0.0004"}
    assert planned(*SMALL, "--vary", "patch=4,8", "--sweep", "product")[0].name == "small-patch=4"  # no base run


def test_the_patch_axis_keeps_the_context_and_the_training_flops_per_byte():
    compare = compare_module()
    args = compare.parse_args(["--data", "builtin", "--out", "o", "--time-budget", "1", *SMALL, "--vary", "patch=4,16"])
    base, *others = compare.plan(args)
    models = {run.name: compare.train_command(args, run.name, run.flags)[1].model for run in [base, *others]}
    small = models["small"]
    for name, patch in (("small-patch=4", 4), ("small-patch=16", 16)):
        model = models[name]
        assert model.max_seq_len == (1024 // patch, patch) and model.context_length == small.context_length == 1024
        assert model.dim[1] == small.dim[1] and model.depth == small.depth and model.dim[0] % 8 == 0
        assert model.flops_per_byte() == pytest.approx(small.flops_per_byte(), rel=0.01)
    # A smaller patch runs the global model more often per byte: narrower to cost the same; a larger, wider.
    assert models["small-patch=4"].dim[0] < small.dim[0] == 256 < models["small-patch=16"].dim[0]


def test_per_stage_values_join_the_stages_with_x_and_one_number_means_every_stage():
    compare = compare_module()
    args = compare.parse_args(
        [
            "--data",
            "builtin",
            "--out",
            "o",
            "--time-budget",
            "1",
            "--config",
            "t: --preset tiny",
            "--vary",
            "max_seq_len=64x4,16x16",
            "--vary",
            "dim=48,96x32",
        ]
    )
    runs = compare.plan(args)
    assert [r.name for r in runs] == ["t", "t-max_seq_len=64x4", "t-max_seq_len=16x16", "t-dim=48", "t-dim=96x32"]
    assert runs[1].flags == ["--preset", "tiny", "--max-seq-len", "64,4"]
    models = [compare.train_command(args, r.name, r.flags)[1].model for r in runs]
    assert [m.max_seq_len for m in models] == [(32, 8), (64, 4), (16, 16), (32, 8), (32, 8)]
    assert [m.dim for m in models] == [(64, 32), (64, 32), (64, 32), (48, 48), (96, 32)]
    assert [r.values["max_seq_len"] for r in runs] == ["32x8", "64x4", "16x16", "32x8", "32x8"]


def test_a_setting_the_base_gives_is_replaced_not_repeated_and_switches_turn_off():
    runs = planned(
        "--config",
        "b: --preset tiny --learning-rate=1e-3 --grad-checkpoint --seed 3",
        "--vary",
        "learning_rate=2e-3",
        "--vary",
        "grad_checkpoint=false",
        "--vary",
        "rel_pos=true",
    )
    assert {r.name: r.flags for r in runs} == {
        "b": ["--preset", "tiny", "--learning-rate=1e-3", "--grad-checkpoint", "--seed", "3"],
        "b-learning_rate=2e-3": ["--preset", "tiny", "--grad-checkpoint", "--seed", "3", "--learning-rate", "2e-3"],
        "b-grad_checkpoint=false": ["--preset", "tiny", "--learning-rate=1e-3", "--seed", "3"],
        "b-rel_pos=true": ["--preset", "tiny", "--learning-rate=1e-3", "--grad-checkpoint", "--seed", "3", "--rel-pos"],
    }
    runs = planned("--config", "b: --preset tiny --rel-pos", "--vary", "rel_pos=false", "--vary", "preset=small")
    assert [r.flags for r in runs[1:]] == [["--preset", "tiny", "--no-rel-pos"], ["--rel-pos", "--preset", "small"]]
    assert [r.values for r in runs] == [
        {"rel_pos": "true", "preset": "tiny"},
        {"rel_pos": "false", "preset": "tiny"},
        {"rel_pos": "true", "preset": "small"},
    ]


def test_spacebyte_axes_are_its_own_fields():
    runs = planned("--config", "sb: --arch spacebyte --preset tiny", "--vary", "window=16,32", "--vary", "max-patch=8")
    assert [r.name for r in runs] == ["sb", "sb-window=16", "sb-max_patch=8"]  # window 32 = local_dim: the base's
    assert runs[0].values == {"window": "32", "max_patch": "16"}


def sweep_line(tmp_path, *flags):
    return run(
        "tools/compare.py",
        "--data",
        "builtin",
        "--time-budget",
        "1",
        "--out",
        str(tmp_path / "o"),
        "--config",
        "b: --preset tiny",
        *flags,
        timeout=60,
    )


@pytest.mark.parametrize(
    "flags,fragments",
    [
        (
            ["--vary", "lr=1e-3"],
            [
                "--vary lr: not a setting of --arch megabyte; did you mean learning_rate?",
                "training: ",
                "batch_size",
                "derived: patch",
            ],
        ),
        (["--vary", "learning_rat=1e-3"], ["did you mean learning_rate?"]),
        (
            ["--vary", "local_dim=64"],
            ["--vary local_dim: not a setting of --arch megabyte", "model: preset, num_tokens, dim"],
        ),
        (["--vary", "data=x"], ["--vary data: compare.py sets data itself"]),
        (["--vary", "learning_rate=abc"], ["--vary learning_rate=abc: argument --learning-rate: expected a number"]),
        (["--vary", "heads=0"], ["--vary heads=0: argument --heads: must be at least 1"]),
        (["--vary", "dim=64x"], ["--vary dim=64x: expected integers joined by x"]),
        (["--vary", "grad_checkpoint=yes"], ["--vary grad_checkpoint=yes: a switch takes true or false"]),
        (["--vary", "max_seq_len=8x8x4"], ["--vary max_seq_len=8x8x4: invalid model: depth has 2 stages"]),
        (["--vary", "patch=3"], ["--vary patch=3: the context of 256 bytes is not a whole number"]),
        (["--vary", "patch=0"], ["--vary patch=0: expected a positive integer"]),
        (["--vary", "patch=4", "--vary", "dim=64"], ["--vary patch sets max_seq_len, dim", "--vary dim"]),
        (["--vary", "seed=1", "--vary", "seed=2"], ["--vary seed is given twice"]),
        (["--vary", "seed=1,1"], ["--vary seed: the value 1 is given twice"]),
        (["--vary", "learning_rate=1e-3,0.001"], ["make the same run"]),
        (["--vary", "seed=1", "--config", "c: --preset tiny"], ["give exactly one --config", "not 2"]),
        (["--vary", "seed=1", "--bytes", "1000"], ["not allowed with argument --time-budget"]),
    ],
)
def test_bad_sweeps_are_refused_in_one_line_before_anything_runs(tmp_path, flags, fragments):
    one_line_error(sweep_line(tmp_path, *flags), *fragments)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text", ["learning_rate", "learning_rate=", "=1e-3", "seed=1,,2"])
def test_a_malformed_vary_is_a_flag_error(tmp_path, text):
    result = sweep_line(tmp_path, "--vary", text)
    assert result.returncode == 2
    one_line_error(result, "argument --vary: expected NAME=VALUE,VALUE,...")


def test_spacebyte_has_no_patch_axis_and_is_pointed_to_its_own(tmp_path):
    result = run(
        "tools/compare.py",
        "--data",
        "builtin",
        "--time-budget",
        "1",
        "--out",
        str(tmp_path / "o"),
        "--config",
        "s: --arch spacebyte --preset tiny",
        "--vary",
        "patch=4",
        timeout=60,
    )
    line = one_line_error(result, "--vary patch: not a setting of --arch spacebyte; did you mean max_patch?")
    assert "derived" not in line and "local_dim" in line


def test_dry_run_prints_the_runs_as_configs_and_writes_nothing(tmp_path):
    result = sweep_line(tmp_path, "--vary", "learning-rate=4e-4,2e-3", "--vary", "patch=4", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "b: --preset tiny",
        "b-learning_rate=2e-3: --preset tiny --learning-rate 2e-3",
        "b-patch=4: --preset tiny --max-seq-len 64,4 --dim 32,32",
    ]
    assert lines[-1] == "3 run(s) of 1 s of training each; nothing trained (--dry-run)"
    assert "191,168" in result.stdout  # the tiny preset's parameters, in the size table
    assert not (tmp_path / "o").exists()


def test_a_sweeps_configs_json_reads_back_with_its_own_run_names(tmp_path):
    """Once, --configs refused the '=' that every sweep puts in its run names, so the configs.json a
    sweep wrote could not rerun it, as compare.py's --help says it does."""
    written = sweep_line(tmp_path, "--vary", "learning-rate=4e-4,2e-3", "--vary", "patch=4", "--dry-run")
    configs = dict(line.split(": ", 1) for line in written.stdout.splitlines()[:3])
    (tmp_path / "configs.json").write_text(json.dumps(configs))
    again = compare_line(
        tmp_path, "--out", str(tmp_path / "o"), "--configs", str(tmp_path / "configs.json"), "--dry-run"
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[:3] == written.stdout.splitlines()[:3]
    for bad in ("a/b", "..", "a b"):
        (tmp_path / "bad.json").write_text(json.dumps({bad: "--preset tiny"}))
        one_line_error(
            compare_line(tmp_path, "--out", str(tmp_path / "o"), "--configs", str(tmp_path / "bad.json")),
            f"configuration name {bad!r}",
        )


def test_the_plot_draws_each_axis_around_the_base_or_over_the_others():
    compare = compare_module()
    Run = compare.Run
    runs = [
        Run("b", [], {"lr": "1", "p": "8"}, {}),
        Run("b-lr=2", [], {"lr": "2", "p": "8"}, {"lr": "2"}),
        Run("b-p=4", [], {"lr": "1", "p": "4"}, {"p": "4"}),
    ]
    scores = {"b": 3.0, "b-lr=2": 2.5, "b-p=4": 3.5}
    assert compare.axis_lines("lr", runs, scores, "one-at-a-time") == {"lr alone": [("1", 3.0), ("2", 2.5)]}
    assert compare.axis_lines("p", runs, scores, "one-at-a-time") == {"p alone": [("8", 3.0), ("4", 3.5)]}
    product = [Run(f"r{lr}{p}", [], {"lr": lr, "p": p}, {"lr": lr, "p": p}) for lr in "12" for p in "48"]
    scores = {run.name: float(i) for i, run in enumerate(product)}
    assert compare.axis_lines("lr", product, scores, "product") == {
        "p=4": [("1", 0.0), ("2", 2.0)],
        "p=8": [("1", 1.0), ("2", 3.0)],
    }


def test_a_damaged_result_counts_as_none(tmp_path):
    compare = compare_module()
    (tmp_path / "compare.json").write_text('{"name": "b", "heldout')
    assert compare.earlier_result(tmp_path) is None
    (tmp_path / "compare.json").write_text('{"name": "b", "heldout_bpb": 3.5}')
    assert compare.earlier_result(tmp_path) == {"name": "b", "heldout_bpb": 3.5}
    assert compare.earlier_result(tmp_path / "none") is None


def test_a_tiny_sweep_trains_tables_plots_and_resumes_what_was_cut_off(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(TEXT * 500)
    out = tmp_path / "sweep"

    def sweep(values, *extra):
        return run(
            "tools/compare.py",
            "--data",
            str(corpus),
            "--out",
            str(out),
            "--time-budget",
            "2",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config",
            "base: --preset tiny",
            "--vary",
            f"learning_rate={values}",
            *extra,
            "--train-args",
            "--batch-size 2 --eval-batches 1 --steps-per-eval 4 --iters 100000",
            timeout=240,
        )

    first = sweep("4e-4,2e-3")  # 4e-4 is the tiny preset's own rate: the base run
    assert first.returncode == 0, first.stderr
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results] == ["base", "base-learning_rate=2e-3"]
    assert [r["values"] for r in results] == [{"learning_rate": "0.0004"}, {"learning_rate": "0.002"}]
    for r in results:
        assert 2 <= r["train_seconds"] < 60 and r["steps"] > 0 and 0 < r["heldout_bpb"] < 9
    assert json.loads((out / "configs.json").read_text()) == {
        "base": "--preset tiny",
        "base-learning_rate=2e-3": "--preset tiny --learning-rate 2e-3",
    }
    table = (out / "results.md").read_text()
    assert table.splitlines()[0].startswith("| config | learning_rate | arch |")
    assert "| base-learning_rate=2e-3 | 0.002 | megabyte |" in table
    assert (out / "bpb-vs-time.png").stat().st_size > 1000
    assert (out / "bpb-vs-parameters.png").stat().st_size > 1000

    # Cut off: the 2e-3 run has its checkpoint but no result (as when scoring was interrupted), and a third
    # value's directory holds only a stray file (as when training died before its first checkpoint).
    base_metrics = (out / "base" / "metrics.jsonl").read_text()
    cut_metrics = (out / "base-learning_rate=2e-3" / "metrics.jsonl").read_text()
    cut_steps = results[1]["steps"]
    (out / "base-learning_rate=2e-3" / "compare.json").unlink()
    (out / "base-learning_rate=1e-3").mkdir()
    (out / "base-learning_rate=1e-3" / "stray").write_text("")
    again = sweep("4e-4,2e-3,1e-3")
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert any(line.startswith("base: done before, skipped") for line in lines)
    assert any(line.startswith("base-learning_rate=2e-3: training") and line.endswith("--resume)") for line in lines)
    assert any(line.startswith("base-learning_rate=1e-3: training") and line.endswith("--overwrite)") for line in lines)
    assert (out / "base" / "metrics.jsonl").read_text() == base_metrics  # finished: not trained again
    assert (out / "base-learning_rate=2e-3" / "metrics.jsonl").read_text().startswith(cut_metrics)  # continued
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results] == ["base", "base-learning_rate=2e-3", "base-learning_rate=1e-3"]
    assert results[1]["steps"] >= cut_steps and results[2]["steps"] > 0
    assert len(json.loads((out / "configs.json").read_text())) == 3

    # The same names with another base would reuse results of other runs: refused before anything runs.
    shutil.rmtree(out / "base-learning_rate=1e-3")
    changed = run(
        "tools/compare.py",
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--time-budget",
        "2",
        "--config",
        "base: --preset tiny --seed 1",
        "--vary",
        "learning_rate=4e-4,2e-3",
        timeout=60,
    )
    one_line_error(
        changed, f"{out / 'base'} holds the result of other flags ('--preset tiny', now '--preset tiny --seed 1')"
    )
    assert not (out / "base-learning_rate=1e-3").exists()
