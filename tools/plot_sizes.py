#!/usr/bin/env python
"""Model size against time budget: held-out bits per byte against parameters, a line per budget.

    python tools/plot_sizes.py --out sizes.png \\
        --line "MEGABYTE 300 s: size-300/results.json sweep/results.json#megabyte-small" \\
        --line "MEGABYTE 1200 s: size-1200/results.json"

Each --line is a label, a colon and one or more `tools/compare.py` results.json files; `#NAME,NAME`
after a file keeps only those runs of it (a sweep's base run, say). Prints a Markdown table (each run's
parameters, bytes seen, bytes seen per parameter, held-out bpb; the best of each line marked) and draws
the plot: a log scale of parameters, each point labelled with its bytes per parameter, the best of each
line ringed. The bytes per parameter at each line's best run is what `train --preset auto`'s rule
(mlx_megabyte/sizing.py) aims at; `--targets 1,5,20` also prints, for each target R, the run the rule
would have picked on each line and how many bits per byte worse than the line's best it scored (summed
over the lines: the target that loses least is the one these runs support). Needs matplotlib (pip
install 'mlx-megabyte[plot]').
"""

import json
import sys
from pathlib import Path

from mlx_megabyte import sizing
from mlx_megabyte.cli import cli, listed, pyplot
from mlx_megabyte.cli import parser as parser_for
from mlx_megabyte.errors import UserError

FIELDS = ("name", "parameters", "bytes_seen", "heldout_bpb")  # what a run needs to be drawn


def read_runs(spec: str) -> list[dict]:
    """The runs one `FILE[#NAME,NAME]` names, each a results.json record."""
    path, _, names = spec.partition("#")
    try:
        records = json.loads(Path(path).read_bytes())
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    except ValueError:
        raise UserError(f"{path} is not JSON: give a results.json that tools/compare.py wrote") from None
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and all(field in r for field in FIELDS) for r in records
    ):
        raise UserError(f"{path} is not a tools/compare.py results.json (a list of runs with {', '.join(FIELDS)})")
    if not names:
        return records
    by_name = {r["name"]: r for r in records}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    missing = [name for name in wanted if name not in by_name]
    if missing:
        raise UserError(f"{path} has no run named {missing[0]!r} (it has: {', '.join(by_name)})")
    return [by_name[name] for name in wanted]


def parse_line(text: str) -> tuple[str, list[dict]]:
    """'LABEL: FILE[#NAMES] FILE...' -> (label, its runs, smallest first)."""
    label, colon, files = text.partition(":")
    if not colon or not label.strip() or not files.split():
        raise UserError(f"--line {text!r}: expected 'LABEL: results.json [results.json#NAME,NAME ...]'")
    runs = [run for spec in files.split() for run in read_runs(spec)]
    return label.strip(), sorted(runs, key=lambda r: r["parameters"])


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["heldout_bpb"])


def table(lines: list[tuple[str, list[dict]]]) -> str:
    rows = [
        "| line | run | parameters | bytes seen | bytes/parameter | held-out bpb |",
        "|---|---|---|---|---|---|",
    ]
    for label, runs in lines:
        winner = best(runs)
        for r in runs:
            score = f"**{r['heldout_bpb']:.4f}**" if r is winner else f"{r['heldout_bpb']:.4f}"
            rows.append(
                f"| {label} | {r['name']} | {r['parameters']:,} | {r['bytes_seen']:,} | "
                f"{r['bytes_seen'] / r['parameters']:.2f} | {score} |"
            )
    return "\n".join(rows) + "\n"


def rule_table(lines: list[tuple[str, list[dict]]], targets: list[float]) -> str:
    """For each target R: the rule's pick on each line (sizing.choose, the code --preset auto runs, on
    the bytes each run saw) and its held-out bpb above the line's best; the last row sums them."""
    rows = [
        "| line | best run | its bytes/parameter | " + " | ".join(f"R={t:g}" for t in targets) + " |",
        "|---|---|---|" + "---|" * len(targets),
    ]
    totals = [0.0] * len(targets)
    for label, runs in lines:
        winner = best(runs)
        # One "second" of budget at a speed of the bytes the run saw: each run's own bytes per parameter.
        candidates = [sizing.Candidate(r["name"], r["parameters"], float(r["bytes_seen"])) for r in runs]
        cells = []
        for i, target in enumerate(targets):
            picked = sizing.choose(candidates, 1.0, target).chosen.name
            excess = next(r for r in runs if r["name"] == picked)["heldout_bpb"] - winner["heldout_bpb"]
            totals[i] += excess
            cells.append("best" if excess == 0 else f"+{excess:.3f}")
        rows.append(
            f"| {label} | {winner['name']} | {winner['bytes_seen'] / winner['parameters']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    rows.append("| total | | | " + " | ".join(f"+{total:.3f}" for total in totals) + " |")
    return "\n".join(rows) + "\n"


def plot(lines: list[tuple[str, list[dict]]], out: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 5))
    for label, runs in lines:
        xs = [r["parameters"] for r in runs]
        ys = [r["heldout_bpb"] for r in runs]
        (drawn,) = axes.plot(xs, ys, marker="o", label=label)
        for r in runs:
            axes.annotate(
                f"{r['bytes_seen'] / r['parameters']:.1f} B/param",
                (r["parameters"], r["heldout_bpb"]),
                textcoords="offset points",
                xytext=(4, 6),
                fontsize=8,
                color=drawn.get_color(),
            )
        winner = best(runs)
        axes.scatter(
            [winner["parameters"]], [winner["heldout_bpb"]], s=220, facecolors="none", edgecolors=drawn.get_color()
        )
    axes.set_xscale("log")
    axes.set_xlabel("parameters")
    axes.set_ylabel("held-out bits per byte")
    axes.set_title("model size against time budget (ringed: the best of each budget)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(out, dpi=120)
    except OSError as error:
        raise UserError(f"cannot write {out}: {error.strerror}") from None
    finally:
        plt.close(figure)


def build_parser():
    parser = parser_for("tools/plot_sizes.py", __doc__)
    parser.add_argument(
        "--line", action="append", required=True, metavar="'LABEL: FILE ...'", help="a line of the plot (repeat)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the image to write (PNG unless its suffix says)")
    parser.add_argument(
        "--targets",
        type=listed(float, 0, low_open=True),
        metavar="R,R,...",
        help="also print what the rule picks at these bytes per parameter",
    )
    return parser


@cli
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    lines = [parse_line(text) for text in args.line]
    sys.stdout.write(table(lines))
    if args.targets:
        sys.stdout.write("\n" + rule_table(lines, args.targets))
    plot(lines, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
