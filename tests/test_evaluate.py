"""`python -m mlx_megabyte.evaluate` scores every byte exactly as megabyte-pytorch's loss does."""

import json
import math

import numpy as np
import pytest

from mlx_megabyte import data, save

from .helpers import one_line_error, run, torch_and_mlx

torch = pytest.importorskip("torch")
KWARGS = dict(num_tokens=256, dim=(32, 16), depth=(1, 2), max_seq_len=(6, 4), dim_head=8, heads=2, rel_pos=True)


def torch_bits_per_byte(reference, stream, length):
    total, counted = 0.0, 0
    for start in range(0, len(stream), length):
        window = torch.from_numpy(stream[start : start + length].astype(np.int64))[None]
        count = int((window != 0).sum())
        with torch.no_grad():
            total += reference(window, return_loss=True).item() * count
        counted += count
    return total / counted / math.log(2)


def test_bits_per_byte_equal_megabyte_pytorch_on_converted_weights(tmp_path):
    reference, model = torch_and_mlx(seed=3, **KWARGS)
    save(model, tmp_path / "converted")
    text = "".join(f"Story {i}: the cat sat on the mat and sang {i * 7} songs.<|endoftext|>" for i in range(40))
    (tmp_path / "held_out.txt").write_text(text)
    results = []
    for batch in ("1", "5"):
        done = run(
            "-m",
            "mlx_megabyte.evaluate",
            "--model",
            str(tmp_path / "converted"),
            "--data",
            str(tmp_path / "held_out.txt"),
            "--json",
            "--batch-size",
            batch,
            "--cache-dir",
            str(tmp_path / "c"),
        )
        assert done.returncode == 0, done.stderr
        results.append(json.loads(done.stdout))
    corpus = data.prepare(str(tmp_path / "held_out.txt"), cache_dir=tmp_path / "c")
    stream = np.concatenate([corpus.train, corpus.val])
    assert results[0]["bytes"] == len(stream) and len(stream) % 24 != 0  # a ragged last window too
    want = torch_bits_per_byte(reference, stream, 24)
    assert abs(results[0]["bpb"] - want) <= 1e-4, (results[0]["bpb"], want)
    assert abs(results[0]["bpb"] - results[1]["bpb"]) <= 1e-6  # the batch size changes nothing
    human = run(
        "-m",
        "mlx_megabyte.evaluate",
        "--model",
        str(tmp_path / "converted"),
        "--data",
        str(tmp_path / "held_out.txt"),
        "--cache-dir",
        str(tmp_path / "c"),
    )
    assert f"{results[0]['bpb']:.4f} bits per byte" in human.stdout
    head = run(
        "-m",
        "mlx_megabyte.evaluate",
        "--model",
        str(tmp_path / "converted"),
        "--data",
        str(tmp_path / "held_out.txt"),
        "--cache-dir",
        str(tmp_path / "c"),
        "--json",
        "--max-bytes",
        "100",
    )
    assert head.returncode == 0, head.stderr
    head = json.loads(head.stdout)
    assert head["bytes"] == 100  # four full windows and a ragged one of 4
    assert abs(head["bpb"] - torch_bits_per_byte(reference, stream[:100], 24)) <= 1e-4


def test_evaluate_errors_are_one_line(tmp_path):
    one_line_error(run("-m", "mlx_megabyte.evaluate", "--model", str(tmp_path), "--data", "builtin"), "no weights")


def test_no_model_names_the_one_locate_picks(tmp_path, monkeypatch):
    from mlx_megabyte import MEGABYTE, PRESETS, save
    from mlx_megabyte.evaluate import named_models

    save(MEGABYTE(PRESETS["tiny"]), tmp_path / "weights" / "demo")
    monkeypatch.chdir(tmp_path)
    assert named_models(None) == named_models(None, instruct=True) == {"weights/demo": "weights/demo"}
    assert named_models(["a=weights/demo", "weights/demo"]) == {"a": "weights/demo", "weights/demo": "weights/demo"}
