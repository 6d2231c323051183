"""tools/plot_metrics.py: the smoothing it draws, and the PNG from a run's metrics.jsonl."""

import importlib.util
import json

import pytest

from .helpers import ROOT, one_line_error, run


def plot_module():
    spec = importlib.util.spec_from_file_location("plot_metrics", ROOT / "tools" / "plot_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoothing_is_centred_so_a_falling_curve_is_not_drawn_late():
    smooth = plot_module().smooth
    ramp = [10.0 - 0.01 * i for i in range(1000)]  # a centred mean of a straight line is the line itself
    assert smooth(ramp) == pytest.approx(ramp, abs=1e-9)
    noisy = [1.0 + (-1) ** i for i in range(1000)]
    assert smooth(noisy)[500] == pytest.approx(1.0, abs=0.1)  # window of 21: the alternation averages out
    assert smooth(noisy)[0] == noisy[0] and smooth(noisy)[-1] == noisy[-1]  # the ends are not invented


def write_run(folder, steps=40, tail=""):
    with open(folder / "metrics.jsonl", "w") as f:
        for step in range(1, steps + 1):
            f.write(
                json.dumps(
                    {
                        "step": step,
                        "loss": 5 / step,
                        "bpb": 7 / step,
                        "learning_rate": 1e-3,
                        "bytes_per_second": 1000.0,
                        "peak_memory_gb": 0.1,
                        "seconds": 1.0,
                    }
                )
                + "\n"
            )
        f.write(json.dumps({"step": steps, "val_loss": 0.2, "val_bpb": 0.3}) + "\n")
        f.write(tail)


def test_plot_writes_a_png_from_a_run(tmp_path):
    pytest.importorskip("matplotlib")
    write_run(tmp_path)
    result = run("tools/plot_metrics.py", str(tmp_path), "--out", str(tmp_path / "curves.png"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = run("tools/plot_metrics.py", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png"))
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1


def test_a_run_being_written_is_plotted_leaving_out_what_resume_leaves_out(tmp_path):
    """Its half-written last line (and other lines that are not JSON, invalid UTF-8 among them) once
    refused the whole plot, though train --resume leaves exactly such lines out."""
    pytest.importorskip("matplotlib")
    write_run(tmp_path, tail='{"step": 41, "skipped": true, "loss_scale": 1024.0}\n{"step": 42, "loss": 0.1, "bp')
    with open(tmp_path / "metrics.jsonl", "rb+") as f:  # an undecodable line in the middle
        lines = f.read().split(b"\n")
        f.seek(0)
        f.write(b"\n".join(lines[:10] + [b"\xff\xfe\x00garbage"] + lines[10:]))
    result = run("tools/plot_metrics.py", str(tmp_path), "--out", str(tmp_path / "live.png"))
    assert result.returncode == 0, result.stderr
    assert "left out 2 line(s)" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "live.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lines_without_the_plotted_fields_are_left_out_and_said(tmp_path):
    pytest.importorskip("matplotlib")
    write_run(tmp_path, tail=json.dumps({"step": 41, "loss": 0.1}) + "\n")  # no bpb: once a KeyError
    result = run("tools/plot_metrics.py", str(tmp_path), "--out", str(tmp_path / "c.png"))
    assert result.returncode == 0 and "no number 'bpb'" in result.stderr, result.stderr
    (tmp_path / "only.jsonl").write_text(json.dumps({"step": 1, "loss": 0.1}) + "\n")
    one_line_error(
        run("tools/plot_metrics.py", str(tmp_path / "only.jsonl"), "--out", str(tmp_path / "x.png")),
        "holds no training steps",
        "no number 'bpb'",
    )


def test_out_is_a_file_type_matplotlib_writes_or_a_directory_to_write_into(tmp_path):
    pytest.importorskip("matplotlib")
    write_run(tmp_path)
    one_line_error(
        run("tools/plot_metrics.py", str(tmp_path), "--out", str(tmp_path / "curves.xyz")),
        "cannot write .xyz files",
        ".png",
    )
    (tmp_path / "plots").mkdir()
    result = run("tools/plot_metrics.py", str(tmp_path), "--out", str(tmp_path / "plots"))
    assert result.returncode == 0, result.stderr
    inside = tmp_path / "plots" / "curves.png"
    assert result.stdout.strip() == f"wrote {inside}" and inside.read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "plots.png").exists()  # once written beside the directory, while naming it
