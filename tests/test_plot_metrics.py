"""tools/plot_metrics.py: the smoothing it draws, and the PNG from a run's metrics.jsonl."""
import importlib.util
import json

import pytest

from .helpers import ROOT, run


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


def test_plot_writes_a_png_from_a_run(tmp_path):
    pytest.importorskip("matplotlib")
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for step in range(1, 41):
            f.write(json.dumps({"step": step, "loss": 5 / step, "bpb": 7 / step, "learning_rate": 1e-3,
                                "bytes_per_second": 1000.0, "peak_memory_gb": 0.1, "seconds": 1.0}) + "\n")
        f.write(json.dumps({"step": 40, "val_loss": 0.2, "val_bpb": 0.3}) + "\n")
    result = run("tools/plot_metrics.py", str(tmp_path), "--out", str(tmp_path / "curves.png"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = run("tools/plot_metrics.py", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png"))
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1
