"""tools/media_bench.py: the held-out files come back from the encoded split as they were, a model's code
length is what a naive file-by-file recomputation gives, and every codec's row is its own compressor's
output size (FLAC's losslessly)."""

import gzip
import importlib.util
import json
import math
import shutil
import subprocess
import wave

import mlx.core as mx
import numpy as np
import pytest

from mlx_megabyte import media, save
from mlx_megabyte.models import ARCHITECTURES, build
from mlx_megabyte.tokens import BYTES

from .helpers import ROOT, run


def load_tool():
    spec = importlib.util.spec_from_file_location("media_bench", ROOT / "tools" / "media_bench.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def tiny_model(context=(8, 4)):
    mx.random.seed(1)
    config = ARCHITECTURES["megabyte"].presets["tiny"].replace(shift_bytes=True, num_tokens=258, max_seq_len=context)
    model = build(config)
    model.eval()
    return model


def test_held_out_files_are_the_documents_of_the_split():
    tool = load_tool()
    files = [b"\x00\x03ab", b"", bytes(range(256))]
    stream = np.concatenate([np.concatenate([BYTES.encode(f), [BYTES.end]]) for f in files]).astype(np.uint16)
    assert tool.held_out_files(stream) == files


def test_model_bits_are_each_files_code_length_recomputed_naively():
    tool = load_tool()
    model = tiny_model()  # a 32-token context: the third file needs three windows
    files = [b"\x00" * 5, bytes(range(7)), bytes(range(200, 256)) + b"\x00" * 10]
    want = 0.0
    for file in files:
        tokens = [BYTES.end, *[b + 1 for b in file], BYTES.end]
        for start in range(0, len(tokens), 32):
            window = mx.array([tokens[start : start + 32]])
            logits = model(window, include_start=True)[0, :-1]  # [t] predicts token t of the window
            logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            for t, token in enumerate(tokens[start : start + 32]):
                if start + t > 0:  # the leading end token only says a file begins
                    want -= logp[t, token].item() / math.log(2)
    assert abs(tool.model_bits(model, files, batch_size=2) - want) < 1e-3 * want


def test_codec_rows_are_the_compressors_sizes(tmp_path):
    tool = load_tool()
    layout = media.ImageLayout(4, 3, "L")
    files = [bytes(range(12)), bytes(12), bytes([255] * 12)]
    bits = tool.codec_bits(files, "image", layout)
    assert bits["gzip -9 (files joined)"] == 8 * len(gzip.compress(b"".join(files), 9, mtime=0))
    assert bits["gzip -9 (file by file)"] == 8 * sum(len(gzip.compress(f, 9, mtime=0)) for f in files)
    assert bits["PNG (optimize, level 9)"] == 8 * sum(media.png_size(f, layout) for f in files)


def test_flac_is_lossless_on_the_same_samples(tmp_path):
    if shutil.which("flac") is None:
        pytest.fail("Debian's flac is needed for the FLAC baseline (apt-get install flac)")
    tool = load_tool()
    layout = media.AudioLayout()
    clip = bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8))
    size = tool.flac_bytes(clip, layout)
    assert tool.codec_bits([clip], "audio", layout)["FLAC -8 (16-bit PCM of the same samples)"] == 8 * size
    wav = tmp_path / "clip.wav"
    media.write_wav(wav, clip, layout)
    subprocess.run(["flac", "-8", "--silent", "-f", "-o", str(tmp_path / "c.flac"), str(wav)], check=True)
    subprocess.run(["flac", "-d", "--silent", "-f", "-o", str(tmp_path / "back.wav"), str(tmp_path / "c.flac")],
                   check=True)  # fmt: skip
    with wave.open(str(tmp_path / "back.wav")) as back, wave.open(str(wav)) as original:
        assert back.readframes(back.getnframes()) == original.readframes(original.getnframes())


def test_the_command_prints_and_writes_the_table(tmp_path):
    from PIL import Image

    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(20):
        Image.fromarray(np.full((4, 3), i * 12, np.uint8), "L").save(folder / f"{i:02d}.png")
    weights = tmp_path / "model"
    save(tiny_model(), weights)
    (weights / "trainer_state.json").write_text(
        json.dumps({"data": str(folder), "data_kind": "image", "image": {"width": 3, "height": 4, "mode": "L"}})
    )
    out = tmp_path / "table.json"
    result = run("tools/media_bench.py", "--data", str(folder), "--model", f"tiny={weights}", "--val-fraction",
                 "0.2", "--cache-dir", str(tmp_path / "cache"), "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    table = json.loads(out.read_text())
    # 20 files of 13 tokens: the last fifth starts at a file's first token, and the split cuts at the next
    # end token, so 3 files are held out (data.split_tail), the last 3 in name order
    assert table["files"] == 3 and table["bytes"] == 3 * 12 and table["kind"] == "image"
    assert set(table["bits_per_byte"]) >= {"PNG (optimize, level 9)", "xz -9 (files joined)"}
    assert "bits per byte  PNG" in result.stdout
