#!/usr/bin/env python
"""Plot training curves from one or more runs' metrics.jsonl to a PNG.

    python tools/plot_metrics.py weights/40m-tinystories/metrics.jsonl --out curves.png
    python tools/plot_metrics.py runA/metrics.jsonl runB/metrics.jsonl   # overlaid

Top: bits per byte (training, smoothed, faint raw; validation as markers). Bottom: learning rate and
throughput. Needs matplotlib (pip install 'mlx-megabyte[plot]').
"""

import json
from pathlib import Path

from mlx_megabyte.cli import cli
from mlx_megabyte.cli import parser as parser_for
from mlx_megabyte.errors import UserError


def read_metrics(path: Path):
    steps, validation = {}, {}
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{number} is not a JSON line") from None
        # a resumed run may repeat steps: the last record wins
        (validation if "val_bpb" in record else steps)[record["step"]] = record
    if not steps:
        raise UserError(f"{path} holds no training steps")
    return [steps[k] for k in sorted(steps)], [validation[k] for k in sorted(validation)]


def smooth(values):
    """A centred moving average over about a fiftieth of the run, narrowing towards both ends.

    Centred rather than trailing, so that the steep start of training is not drawn late and high.
    """
    half = max(0, len(values) // 100)
    prefix = [0.0]
    for value in values:
        prefix.append(prefix[-1] + value)
    out = []
    for i in range(len(values)):
        h = min(half, i, len(values) - 1 - i)
        out.append((prefix[i + h + 1] - prefix[i - h]) / (2 * h + 1))
    return out


@cli
def main(argv=None):
    parser = parser_for("tools/plot_metrics.py", __doc__)
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics.jsonl files (or run directories)")
    parser.add_argument("--out", type=Path, default=Path("curves.png"), help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("plotting needs matplotlib: pip install 'mlx-megabyte[plot]'") from None

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    rate_axis = bottom.twinx()
    for index, path in enumerate(args.metrics):
        path = path / "metrics.jsonl" if path.is_dir() else path
        steps, validation = read_metrics(path)
        color = f"C{index}"
        name = path.parent.name or str(path)
        x = [r["step"] for r in steps]
        bpb = [r["bpb"] for r in steps]
        top.plot(x, bpb, color=color, alpha=0.2, linewidth=0.8)
        top.plot(x, smooth(bpb), color=color, label=f"{name} train")
        if validation:
            top.plot([r["step"] for r in validation], [r["val_bpb"] for r in validation], "o", color=color,
                     markersize=4, linestyle="--", label=f"{name} validation ({validation[-1]['val_bpb']:.3f})")
        bottom.plot(x, [r["learning_rate"] for r in steps], color=color)
        rate_axis.plot(x, smooth([r["bytes_per_second"] for r in steps]), color=color, linestyle=":")
    top.set_ylabel("bits per byte")
    top.grid(alpha=0.3)
    top.legend()
    top.set_title("mlx-megabyte training")
    bottom.set_ylabel("learning rate (solid)")
    rate_axis.set_ylabel("bytes/s (dotted)")
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
