"""tools/compare.py: two tiny configurations trained for the same few seconds, scored, tabled, plotted;
run again, nothing is trained twice."""

import json

import pytest

from .helpers import one_line_error, run

TEXT = "The cat sat on the mat. The dog ran to the park, and then it rested under a tree!\n"


def test_two_tiny_configs_at_equal_wall_clock_then_nothing_twice(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(TEXT * 500)
    out = tmp_path / "compare"
    command = ["tools/compare.py", "--data", str(corpus), "--out", str(out), "--time-budget", "2",
               "--cache-dir", str(tmp_path / "cache"),
               "--config", "megabyte: --arch megabyte --preset tiny",
               "--config", "spacebyte: --arch spacebyte --preset tiny",
               "--train-args", "--batch-size 2 --eval-batches 1 --steps-per-eval 4 --iters 100000"]
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
    one_line_error(compare_line(tmp_path, "--out", str(tmp_path / "o"), "--config", "a: --preset tiny",
                                "--config", "a: --preset small"), "'a' is given twice")
    (tmp_path / "c.json").write_text('{"a": "--preset tiny", "b": "--preset tiny", "a": "--preset small"}')
    one_line_error(compare_line(tmp_path, "--out", str(tmp_path / "o"), "--configs", str(tmp_path / "c.json")),
                   "'a' is given twice", "c.json")
    (tmp_path / "d.json").write_text('{"a": "--preset tiny"}')
    one_line_error(compare_line(tmp_path, "--out", str(tmp_path / "o"), "--configs", str(tmp_path / "d.json"),
                                "--config", "a: --preset small"), "'a' is given twice")
    assert not (tmp_path / "o").exists()  # refused before anything is written


@pytest.mark.parametrize("contents,fragments", [
    ("{not json", ["is not valid JSON"]),
    ('["--preset tiny"]', ["must hold a JSON object", "not a list"]),
    ('{"a": 5}', ["configuration 'a'", "must be a string"]),
    ('{"a": "--preset \\"tiny"}', ["configuration 'a'", "No closing quotation"]),
    ('{"a": "--no-such-flag"}', ["configuration 'a'", "unrecognized arguments: --no-such-flag"]),
    ('{"a": "--data \\ud800"}', ["configuration 'a'", "lone UTF-16 surrogate"]),
    (None, ["--configs", "No such file"]),
])
def test_bad_configs_files_are_one_line(tmp_path, contents, fragments):
    path = tmp_path / "configs.json"
    if contents is not None:
        path.write_text(contents)
    one_line_error(compare_line(tmp_path, "--out", str(tmp_path / "o"), "--configs", str(path)), *fragments)


def test_bad_config_flags_and_out_are_one_line(tmp_path):
    out = ["--out", str(tmp_path / "o")]
    one_line_error(compare_line(tmp_path, *out, "--config", "a: --preset 'tiny"), "configuration 'a'", "No closing quotation")
    one_line_error(compare_line(tmp_path, *out, "--config", "no colon"), "expected 'NAME: FLAGS'")
    one_line_error(compare_line(tmp_path, *out, "--config", "a: --preset tiny", "--train-args", "--iters 'x"), "--train-args")
    (tmp_path / "file").write_text("")
    one_line_error(compare_line(tmp_path, "--out", str(tmp_path / "file"), "--config", "a: --preset tiny"), "is a file")
    one_line_error(compare_line(tmp_path, *out, "--config", "a: --preset tiny", "--eval-max-bytes", "0"),
                   "--eval-max-bytes", "at least 1")
