#!/usr/bin/env python
"""Spectrograms of WAV files, one panel each, for looking at what a model of sound wrote beside what it
was trained on.

    python tools/plot_spectrogram.py held-out.wav sample.wav --labels "held out" "generated" --out spectra.png

Each file is read as the data pipeline reads it (media.audio_bytes: mono, mu-law at --rate) and decoded
back to linear samples, so every panel shows what the model sees. A short-time Fourier transform
(Hann windows of 32 ms, half overlapping), in decibels below the loudest bin.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from mlx_megabyte import media  # noqa: E402
from mlx_megabyte.cli import cli, pyplot  # noqa: E402
from mlx_megabyte.cli import parser as parser_for  # noqa: E402
from mlx_megabyte.errors import UserError  # noqa: E402
from mlx_megabyte.files import atomic_path  # noqa: E402

FLOOR_DB = -80


def spectrogram(samples: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """(frequencies, frames) power in dB, and seconds per frame."""
    window = int(0.032 * rate)
    hop = window // 2
    if len(samples) < window:
        samples = np.pad(samples, (0, window - len(samples)))
    frames = np.lib.stride_tricks.sliding_window_view(samples, window)[::hop] * np.hanning(window)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-12
    db = 10 * np.log10(power / power.max())
    return np.maximum(db, FLOOR_DB).T, hop / rate


@cli
def main(argv=None):
    parser = parser_for("tools/plot_spectrogram.py", __doc__)
    parser.add_argument("wavs", nargs="+", help="WAV files")
    parser.add_argument("--labels", nargs="+", help="a title per file (default: the file names)")
    parser.add_argument("--rate", type=int, default=8000, help="samples a second the files are read at")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    labels = args.labels or [Path(w).name for w in args.wavs]
    if len(labels) != len(args.wavs):
        raise UserError(f"--labels gives {len(labels)} titles for {len(args.wavs)} files")
    layout = media.AudioLayout(rate=args.rate)
    plt = pyplot()
    figure, axes = plt.subplots(len(args.wavs), 1, figsize=(8, 2.2 * len(args.wavs)), squeeze=False)
    for axis, path, label in zip(axes[:, 0], args.wavs, labels):
        codes = np.frombuffer(media.audio_bytes(path, layout), np.uint8)
        db, step = spectrogram(media.mulaw_decode(codes).astype(np.float64), layout.rate)
        axis.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=FLOOR_DB, vmax=0,
                    extent=(0, db.shape[1] * step, 0, layout.rate / 2))  # fmt: skip
        axis.set_title(f"{label} ({len(codes) / layout.rate:.1f} s)", fontsize=9)
        axis.set_ylabel("Hz")
    axes[-1, 0].set_xlabel("seconds")
    figure.tight_layout()
    with atomic_path(args.out, suffix=".png") as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
