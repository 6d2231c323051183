"""tools/plot_words_curve.py: the words-gain-against-training-time table and plot, from evaluate --instruct
files; points are the models named ARM@STEPS, the base and guided columns left out; bad files one line."""

import json

from .helpers import one_line_error, run


def model(words_used, gain=None, standard_error=None, prompts=100):
    entry = {"settings": {}, "aggregate": {"words_used": words_used}}
    if gain is not None:
        entry["words_gain"] = {"gain": gain, "standard_error": standard_error, "prompts": prompts}
    return entry


def test_the_table_has_a_row_per_checkpoint_by_steps_and_a_png_is_written(tmp_path):
    early = tmp_path / "early.json"
    early.write_text(
        json.dumps(
            {
                "models": {
                    "base": model(0.11),
                    "a2@1250": model(0.11, 0.0, 0.022),
                    "a2@1250+guide 4": model(0.95, 0.84, 0.03),  # the sampler's work: not a point
                }
            }
        )
    )
    late = tmp_path / "late.json"
    late.write_text(
        json.dumps(
            {"models": {"base": model(0.11), "a2@4600": model(0.26, 0.15, 0.03), "a0@3000": model(0.127, 0.017, 0.026)}}
        )
    )
    out = tmp_path / "curve.png"
    done = run("tools/plot_words_curve.py", str(late), str(early), "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()[2:-1]  # after the header, before "wrote ..."
    # a2's points in step order whatever the files' order; 15 points over 3.0 is 5.0 standard errors
    assert rows == [
        "| a2 | 1,250 | 100 | 11.0% | +0.0 ± 2.2 | +0.0 |",
        "| a2 | 4,600 | 100 | 26.0% | +15.0 ± 3.0 | +5.0 |",
        "| a0 | 3,000 | 100 | 12.7% | +1.7 ± 2.6 | +0.7 |",
    ]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_bad_files_are_refused_in_one_line(tmp_path):
    one_line_error(run("tools/plot_words_curve.py", str(tmp_path / "gone.json")), "cannot read")
    (tmp_path / "bad.json").write_bytes(b"\xff not json")
    one_line_error(run("tools/plot_words_curve.py", str(tmp_path / "bad.json")), "is not JSON")
    (tmp_path / "other.json").write_text(json.dumps([1, 2]))
    one_line_error(run("tools/plot_words_curve.py", str(tmp_path / "other.json")), "holds no models")
    (tmp_path / "unnamed.json").write_text(json.dumps({"models": {"base": model(0.1), "tuned": model(0.2, 0.1, 0.02)}}))
    one_line_error(run("tools/plot_words_curve.py", str(tmp_path / "unnamed.json")), "ARM@STEPS")
