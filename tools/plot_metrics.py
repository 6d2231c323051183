#!/usr/bin/env python
"""Plot training curves from one or more runs' metrics.jsonl to an image (a PNG unless --out says otherwise).

    python tools/plot_metrics.py weights/40m-tinystories/metrics.jsonl --out curves.png
    python tools/plot_metrics.py runA/metrics.jsonl runB/metrics.jsonl   # overlaid

Top: bits per byte (training, smoothed, faint raw; validation as markers). Bottom: learning rate and
throughput. A run that is being written can be plotted: lines that are not JSON (its half-written last
line) are left out and counted, as `train --resume` leaves them out. Needs matplotlib (pip install
'mlx-megabyte[plot]').
"""

import json
import math
import sys
from pathlib import Path

from mlx_megabyte.cli import cli, pyplot
from mlx_megabyte.cli import parser as parser_for
from mlx_megabyte.errors import UserError

STEP_FIELDS = ("bpb", "learning_rate", "bytes_per_second")  # what a training step needs to be drawn


def read_metrics(path: Path):
    """The training steps and validations of a metrics.jsonl, and notes on the lines left out.

    A run being written right now may end in a half-written line, and a full disk may have cut one short:
    lines that are not JSON objects are left out and counted, as `train --resume` does. Steps whose update
    was skipped (float16 overflow) have no loss to draw; other records without the fields drawn are left
    out too, and said."""
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    steps, validation = {}, {}
    damaged, incomplete = 0, []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            damaged += 1
            continue
        if record.get("skipped"):
            continue
        needs = ("step", "val_bpb") if "val_bpb" in record else ("step", *STEP_FIELDS)
        missing = [name for name in needs if not _number(record.get(name))]
        if missing:
            incomplete.append(f"line {number} has no number '{missing[0]}'")
            continue
        # a resumed run may repeat steps: the last record wins
        (validation if "val_bpb" in record else steps)[record["step"]] = record
    notes = []
    if damaged:
        notes.append(
            f"left out {damaged} line(s) of {path} that are not JSON objects, as train --resume does "
            "(a run being written ends in a half-written one)"
        )
    if incomplete:
        notes.append(f"left out {len(incomplete)} line(s) of {path} without what is drawn ({incomplete[0]})")
    if not steps:
        raise UserError(f"{path} holds no training steps" + (f" ({'; '.join(notes)})" if notes else ""))
    return [steps[k] for k in sorted(steps)], [validation[k] for k in sorted(validation)], notes


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def output_path(out: Path, supported: dict) -> Path:
    """Where --out says to write: a directory gets curves.png inside it, a name without an extension gets
    .png (matplotlib would add it unasked and the message would name the wrong file), and an extension
    matplotlib cannot write is refused before anything is drawn."""
    if out.is_dir():
        out = out / "curves.png"
    elif not out.suffix:
        out = out.with_name(out.name + ".png")
    if out.suffix[1:].lower() not in supported:
        raise UserError(
            f"--out {out}: cannot write {out.suffix} files (choose from "
            f"{', '.join('.' + kind for kind in sorted(supported))})"
        )
    return out


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
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("curves.png"),
        help="the image to write: .png, .svg, .pdf, ... (a directory: curves.png in it)",
    )
    args = parser.parse_args(argv)
    plt = pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    out = output_path(args.out, FigureCanvasBase.get_supported_filetypes())
    runs = []
    for path in args.metrics:
        path = path / "metrics.jsonl" if path.is_dir() else path
        steps, validation, notes = read_metrics(path)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        runs.append((path, steps, validation))

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    rate_axis = bottom.twinx()
    for index, (path, steps, validation) in enumerate(runs):
        color = f"C{index}"
        name = path.parent.name or str(path)
        x = [r["step"] for r in steps]
        bpb = [r["bpb"] for r in steps]
        top.plot(x, bpb, color=color, alpha=0.2, linewidth=0.8)
        top.plot(x, smooth(bpb), color=color, label=f"{name} train")
        if validation:
            top.plot(
                [r["step"] for r in validation],
                [r["val_bpb"] for r in validation],
                "o",
                color=color,
                markersize=4,
                linestyle="--",
                label=f"{name} validation ({validation[-1]['val_bpb']:.3f})",
            )
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
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
