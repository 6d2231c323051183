"""tools/plot_sizes.py: the size-against-budget table (bytes per parameter, the best run per line) and its
plot, from compare.py results files; bad lines and files refused in one line."""

import importlib.util
import json

import pytest

from .helpers import ROOT, one_line_error, run


def sizes_module():
    spec = importlib.util.spec_from_file_location("plot_sizes", ROOT / "tools" / "plot_sizes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(name, parameters, bytes_seen, bpb):
    return {"name": name, "parameters": parameters, "bytes_seen": bytes_seen, "heldout_bpb": bpb, "arch": "megabyte"}


@pytest.fixture
def files(tmp_path):
    size = tmp_path / "size.json"
    size.write_text(json.dumps([result("big", 8_000_000, 4_000_000, 3.1), result("tiny", 1_000_000, 8_000_000, 3.0)]))
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps([result("base", 4_000_000, 6_000_000, 2.9), result("patch=4", 2_000_000, 1, 9.9)]))
    return size, sweep


def two_lines(module, size, sweep):
    """Line A: the size file and the sweep's base run; line B: the size file alone."""
    return [module.parse_line(f"A: {size} {sweep}#base"), module.parse_line(f"B: {size}")]


def test_a_line_takes_whole_files_and_named_runs_smallest_first(files):
    size, sweep = files
    label, runs = sizes_module().parse_line(f"MEGABYTE 300 s: {size} {sweep}#base")
    assert label == "MEGABYTE 300 s"
    assert [r["name"] for r in runs] == ["tiny", "base", "big"]  # patch=4 left out: only #base was asked for


def test_the_table_gives_bytes_per_parameter_and_marks_each_lines_best(files):
    module = sizes_module()
    size, sweep = files
    lines = two_lines(module, size, sweep)
    rows = module.table(lines).splitlines()[2:]
    # A: tiny 8 B/param 3.0, base 1.5 B/param 2.9 (best), big 0.5 B/param 3.1; B: tiny best of its two
    assert rows[0] == "| A | tiny | 1,000,000 | 8,000,000 | 8.00 | 3.0000 |"
    assert rows[1] == "| A | base | 4,000,000 | 6,000,000 | 1.50 | **2.9000** |"
    assert rows[2] == "| A | big | 8,000,000 | 4,000,000 | 0.50 | 3.1000 |"
    assert rows[3] == "| B | tiny | 1,000,000 | 8,000,000 | 8.00 | **3.0000** |"
    assert rows[4] == "| B | big | 8,000,000 | 4,000,000 | 0.50 | 3.1000 |"


def test_the_command_prints_the_table_and_writes_a_png(files, tmp_path):
    size, sweep = files
    out = tmp_path / "sizes.png"
    done = run("tools/plot_sizes.py", "--line", f"A: {size} {sweep}#base", "--line", f"B: {size}", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "| A | base | 4,000,000 | 6,000,000 | 1.50 | **2.9000** |" in done.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_lines_and_files_are_refused_in_one_line(files, tmp_path):
    size, sweep = files
    out = str(tmp_path / "x.png")
    one_line_error(run("tools/plot_sizes.py", "--line", f"{size}", "--out", out), "expected 'LABEL:")
    one_line_error(
        run("tools/plot_sizes.py", "--line", f"A: {sweep}#nope", "--out", out), "no run named 'nope'", "base"
    )
    one_line_error(run("tools/plot_sizes.py", "--line", f"A: {tmp_path / 'gone.json'}", "--out", out), "cannot read")
    (tmp_path / "other.json").write_text(json.dumps({"step": 1}))
    one_line_error(
        run("tools/plot_sizes.py", "--line", f"A: {tmp_path / 'other.json'}", "--out", out), "not a tools/compare.py"
    )
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe not json")
    one_line_error(run("tools/plot_sizes.py", "--line", f"A: {tmp_path / 'bad.json'}", "--out", out), "is not JSON")
    one_line_error(
        run("tools/plot_sizes.py", "--line", f"A: {size}", "--out", str(tmp_path / "no" / "x.png")), "cannot write"
    )


def test_the_rule_table_picks_as_sizing_does_and_sums_the_loss_against_each_lines_best(files):
    module = sizes_module()
    size, sweep = files
    # A: tiny 8 B/param (3.0), base 1.5 (2.9, best), big 0.5 (3.1). B: tiny 8 (3.0, best), big 0.5 (3.1).
    lines = two_lines(module, size, sweep)
    rows = module.rule_table(lines, [1.0, 2.0, 20.0]).splitlines()
    assert rows[0] == "| line | best run | its bytes/parameter | R=1 | R=2 | R=20 |"
    # R=1: A picks base (|ln 1.5| < |ln 0.5|), B picks big (|ln 0.5| < |ln 8|); R=2: A base, B tiny
    # (|ln 4| = |ln 0.25|: a tie, the smaller model, tiny); R=20: tiny on both.
    assert rows[2] == "| A | base | 1.50 | best | best | +0.100 |"
    assert rows[3] == "| B | tiny | 8.00 | +0.100 | best | best |"
    assert rows[4] == "| total | | | +0.100 | +0.000 | +0.100 |"


def test_targets_must_be_positive_numbers(files, tmp_path):
    size, _ = files
    out = str(tmp_path / "x.png")
    done = run("tools/plot_sizes.py", "--line", f"A: {size}", "--out", out, "--targets", "5,20")
    assert done.returncode == 0 and "| A | tiny | 8.00 | best | best |" in done.stdout, done.stderr
    one_line_error(run("tools/plot_sizes.py", "--line", f"A: {size}", "--out", out, "--targets", "0,5"), "above 0")
    one_line_error(run("tools/plot_sizes.py", "--line", f"A: {size}", "--out", out, "--targets", "x"), "a number")
