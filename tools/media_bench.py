#!/usr/bin/env python
"""Byte models against the compressors people use, on the same held-out pictures or sounds.

    python tools/media_bench.py --data digits/ --model megabyte=weights/digits/best --out digits.json

The held-out files are those training held out (data.prepare with the run's --val-fraction: the last
files in name order), in the layout the first model was trained in (its training record). For each, in
bits per byte of the files' own bytes (pixels, or mu-law samples):

- each model: the code length an arithmetic coder driven by the model would need, file by file. Every
  file is scored alone, from a fresh context after the end token (as generation starts one), in
  consecutive windows of the model's context, and its closing end token is paid for too: what it would
  take to store the files one by one and know where each ends.
- gzip -9 and xz -9 (Python's gzip and lzma, the same codecs): over all the held-out files joined, their
  best case (one stream, patterns shared across files); and over each file alone, as a compressor
  storing the files one by one pays.
- PNG (images): each file as Pillow writes it at maximum compression (optimize, level 9), header and all.
- FLAC (sound): each clip's mu-law samples as 16-bit linear PCM (the same samples, losslessly) through
  `flac -8 --no-padding --no-seektable` (Debian's flac), the file size.
"""

from __future__ import annotations

import gzip
import json
import lzma
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from mlx_megabyte import data, media  # noqa: E402
from mlx_megabyte.cli import cli  # noqa: E402
from mlx_megabyte.cli import parser as parser_for  # noqa: E402
from mlx_megabyte.errors import UserError  # noqa: E402
from mlx_megabyte.evaluate import named_models, trained_layout  # noqa: E402
from mlx_megabyte.files import write_text  # noqa: E402
from mlx_megabyte.models import summed_loss  # noqa: E402
from mlx_megabyte.tokens import BYTES  # noqa: E402
from mlx_megabyte.weights import load_for_inference, locate  # noqa: E402


def held_out_files(stream: np.ndarray) -> list[bytes]:
    """The documents of an encoded bytes-layout split, as the bytes they were."""
    ends = np.flatnonzero(stream == BYTES.end)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [BYTES.decode(stream[a:b]) for a, b in zip(starts, ends)]


def model_bits(model, files: list[bytes], batch_size: int = 8) -> float:
    """Bits to code every file alone with the model: the end token first (not paid for: it only says a
    file begins), then the file's bytes and its closing end token, in consecutive context windows."""
    import mlx.core as mx  # after mlx_megabyte, which sets up MLX's BLAS first

    context = model.config.context_length
    score = mx.compile(lambda ids, mask: summed_loss(model, ids, mask)[0])
    rows, masks, total = [], [], 0.0

    def flush():
        nonlocal total
        for length in sorted({len(r) for r in rows}):  # one shape a batch
            same = [i for i, r in enumerate(rows) if len(r) == length]
            for i in range(0, len(same), batch_size):
                part = same[i : i + batch_size]
                ids = mx.array(np.stack([rows[j] for j in part]).astype(np.int32))
                mask = mx.array(np.stack([masks[j] for j in part]))
                total += score(ids, mask).item()
        rows.clear(), masks.clear()

    for file in files:
        tokens = np.concatenate([BYTES.prompt(file), [BYTES.end]]).astype(np.int32)
        counted = np.ones(len(tokens), bool)
        counted[0] = False
        for start in range(0, len(tokens), context):
            rows.append(tokens[start : start + context])
            masks.append(counted[start : start + context])
        if len(rows) >= 256:
            flush()
    flush()
    return total / math.log(2)


def flac_bytes(clip: bytes, layout) -> int:
    if shutil.which("flac") is None:
        raise UserError("FLAC needs Debian's flac: sudo apt-get install flac")
    with tempfile.TemporaryDirectory() as folder:
        wav, out = Path(folder) / "clip.wav", Path(folder) / "clip.flac"
        wav.write_bytes(media.wav_from_bytes(clip, layout))
        subprocess.run(["flac", "-8", "--no-padding", "--no-seektable", "--silent", "-f", "-o", str(out), str(wav)],
                       check=True)  # fmt: skip
        return out.stat().st_size


def codec_bits(files: list[bytes], kind: str, layout) -> dict[str, float]:
    joined = b"".join(files)
    bits = {
        "gzip -9 (files joined)": 8 * len(gzip.compress(joined, 9, mtime=0)),
        "xz -9 (files joined)": 8 * len(lzma.compress(joined, preset=9)),
        "gzip -9 (file by file)": 8 * sum(len(gzip.compress(f, 9, mtime=0)) for f in files),
        "xz -9 (file by file)": 8 * sum(len(lzma.compress(f, preset=9)) for f in files),
    }
    if kind == "image":
        bits["PNG (optimize, level 9)"] = 8 * sum(media.png_size(f, layout) for f in files)
    if kind == "audio":
        bits["FLAC -8 (16-bit PCM of the same samples)"] = 8 * sum(flac_bytes(f, layout) for f in files)
    return bits


def parse_args(argv=None):
    parser = parser_for("tools/media_bench.py", __doc__)
    parser.add_argument("--data", required=True, help="the folder (or glob) of files the models were trained on")
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH (repeatable)")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="as the training run held out")
    parser.add_argument("--cache-dir", help="where encoded data is kept")
    parser.add_argument("--out", help="write the table as JSON here")
    return parser.parse_args(argv)


@cli
def main(argv=None):
    args = parse_args(argv)
    models = {name: locate(path) for name, path in named_models(args.model).items()}
    first = load_for_inference(str(next(iter(models.values()))))
    trained = trained_layout(first, next(iter(models.values())))
    if trained["layout"] != BYTES:
        raise UserError("the models must learn every byte value (trained with --shift-bytes or on media files)")
    corpus = data.prepare(args.data, val_fraction=args.val_fraction, cache_dir=args.cache_dir, **trained)
    files = held_out_files(np.asarray(corpus.val))
    size = sum(len(f) for f in files)
    layout = data.media_layout(corpus.kind, corpus.media) if corpus.kind in ("image", "audio") else None
    bits = {}
    for name, path in models.items():
        model = first if path == next(iter(models.values())) else load_for_inference(str(path))
        bits[f"{name} ({model.num_parameters():,} parameters)"] = model_bits(model, files)
    bits.update(codec_bits(files, corpus.kind, layout))
    rows = {name: value / size for name, value in bits.items()}
    result = {"data": args.data, "kind": corpus.kind, "media": corpus.media, "files": len(files), "bytes": size,
              "bits_per_byte": rows, "models": {name: str(path) for name, path in models.items()}}  # fmt: skip
    print(f"held-out: {len(files):,} files, {size:,} bytes ({corpus.describe().split(';')[0]})")
    for name, value in sorted(rows.items(), key=lambda item: item[1]):
        print(f"  {value:7.4f} bits per byte  {name}")
    if args.out:
        write_text(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
