"""Every tool under tools/ keeps the package's one-line promise: its flags are read by the shared parser of
mlx_megabyte/cli.py (checked as they are read, one line and exit 2), its other errors are one line and
exit 1, never a traceback."""

import pytest

from .helpers import ROOT, one_line_error, run

TOOLS = sorted(path.name for path in (ROOT / "tools").glob("*.py"))


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_reads_its_flags_through_the_shared_parser(tool):
    result = run(f"tools/{tool}", "--no-such-flag", timeout=60)
    assert result.returncode == 2
    one_line_error(result, "error: ", f"(see tools/{tool} --help)")  # (or a required flag is named first)


BAD_FLAGS = [
    ("benchmark.py", ["--rounds", "0"], "--rounds: must be at least 1"),  # once a traceback
    ("benchmark.py", ["--rounds", "-2"], "--rounds: must be at least 1"),
    ("benchmark.py", ["--steps", "0"], "--steps: must be at least 1"),
    ("benchmark.py", ["--warmup", "-1"], "--warmup: must be at least 0"),
    ("benchmark.py", ["--batch", "1.5"], "--batch: expected an integer"),
    ("benchmark.py", ["--new-bytes", "nan"], "--new-bytes: expected an integer"),
    ("benchmark.py", ["--tasks", "train,nope"], "--tasks: unknown 'nope'"),
    ("benchmark.py", ["--configs", "seed,,small"], "--configs: expected comma-separated values"),
    ("load_test.py", ["--clients", "1,0"], "--clients: must be at least 1"),
    ("load_test.py", ["--clients", "four"], "--clients: expected an integer"),
    ("load_test.py", ["--max-tokens", "0"], "--max-tokens: must be at least 1"),
    ("load_test.py", ["--temp", "inf"], "--temp: expected a finite number"),
    ("load_test.py", ["--rounds", "0"], "--rounds: must be at least 1"),
    ("load_test.py", ["--url", "localhost:8080"], "--url: expected http://HOST[:PORT]"),
    (
        "compare.py",
        ["--data", "builtin", "--out", "o", "--config", "a: --preset tiny", "--time-budget", "nan"],
        "--time-budget: expected a finite number",
    ),
    (
        "compare.py",
        ["--data", "builtin", "--out", "o", "--config", "a: --preset tiny", "--bytes", "0"],
        "--bytes: must be at least 1",
    ),
    ("push_to_hub.py", ["--model", "m", "--repo", "a/b", "--bpb", "-1"], "--bpb: must be at least 0"),
    ("convert_from_torch.py", ["--mlx-path", "out"], "the following arguments are required: --torch-path"),
]


@pytest.mark.parametrize("tool,flags,fragment", BAD_FLAGS, ids=[f"{t}{' '.join(f)}" for t, f, _ in BAD_FLAGS])
def test_bad_flag_values_are_one_line_when_read(tool, flags, fragment):
    result = run(f"tools/{tool}", *flags, timeout=60)
    assert result.returncode == 2
    one_line_error(result, fragment)


def test_the_other_errors_of_the_tools_are_one_line(tmp_path):
    one_line_error(run("tools/benchmark.py", "--json", str(tmp_path), timeout=60), "--json", "is a directory")
    refused = run("tools/load_test.py", "--url", "http://127.0.0.1:9", "--clients", "1", "--rounds", "1", timeout=60)
    assert refused.returncode == 1
    one_line_error(refused, "did not answer", "is it running?")  # once tracebacks from the client threads
    one_line_error(
        run(
            "tools/convert_to_torch.py",
            "--mlx-path",
            str(tmp_path / "none"),
            "--torch-path",
            str(tmp_path / "x.safetensors"),
            timeout=60,
        ),
        "is not a weights directory",
    )


def test_corpora_splits_fortunes_and_removes_colour_codes_even_nested(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("corpora", ROOT / "tools" / "corpora.py")
    corpora = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpora)
    path = tmp_path / "f"
    path.write_bytes(
        "First one,\n  kept as it is.\n%\n\x1b[32m《标题》\x1b[m\n\x1b[;\x1b[34;1mm诗句\n%\n\n%\nLast\n".encode()
    )
    assert corpora.fortunes(path) == ["First one,\n  kept as it is.", "《标题》\n诗句", "Last"]
    one_line_error(
        run(
            str(ROOT / "tools" / "corpora.py"),
            "fortunes",
            "--out",
            str(tmp_path / "x.txt"),
            env={"PATH": str(tmp_path)},
        ),
        "dpkg is not here",
    )


def test_profile_step_decode_mode_times_the_cached_step_of_a_tiny_model():
    done = run("tools/profile_step.py", "--arch", "spacebyte", "--preset", "tiny", "--mode", "decode", "--steps", "4")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("spacebyte tiny, decoding at batch 1")
    # SpaceByte's boundary rule reads the byte: building a step waits for it, and the check says so.
    assert any("host sync inside the step" in line and "yes" in line for line in lines)
    parts = {line.split("(")[0].strip(): line for line in lines if " calls)" in line}
    assert {"initial_blocks", "final_blocks", "to_logits"} <= set(parts)


def test_the_benchmarks_speculative_task_checks_bytes_and_skips_untrained_configs(tmp_path, monkeypatch):
    import importlib.util

    from mlx_megabyte import MEGABYTE, PRESETS, save

    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "tools" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    save(MEGABYTE(PRESETS["tiny"]), tmp_path / "tiny")
    monkeypatch.setattr(benchmark, "SPEC_PROMPTS", ("Once upon a time",))
    result = benchmark.speculative_worker(str(tmp_path / "tiny"), steps=2, warmup=1, new_bytes=24)
    # two timed rounds of one prompt each, both ways; a check keeps at least the byte it computes
    assert len(result["rates"]) == len(result["plain_rates"]) == 2
    assert 0 <= result["acceptance"] <= 1 and result["bytes_per_check"] >= 1
    # --draft-model and --num-draft reach the worker: prompt lookup, 2 bytes a check at most
    result = benchmark.speculative_worker(str(tmp_path / "tiny"), 1, 0, 24, draft_spec="lookup", num_draft=2)
    assert 1 <= result["bytes_per_check"] <= 3
    args = type("Args", (), {"device": "cpu", "draft_model": "lookup", "num_draft": 2})()
    row = benchmark.speculative_row("seed", args)  # no trained 40m weights in the repository
    assert "mlx_bytes_per_s" not in row and "no trained weights" in row["note"] and row["draft"] == "lookup"
