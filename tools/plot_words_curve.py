#!/usr/bin/env python
"""Words gain against training time: how much more of a prompt's required words each arm's checkpoints
use than the base model, per prompt, against the steps they trained.

    python -m mlx_megabyte.evaluate --instruct --model base=weights/demo \\
        --model a2@1250=runs/a2/checkpoints/step-00001250 --model a2@4600=runs/a2/best --out a2.json
    python tools/plot_words_curve.py a2.json --out curve.png

Reads `evaluate --instruct --out` files. A model named `ARM@STEPS` is a point of arm ARM after STEPS
training steps; its gain is the file's paired words gain over the file's first model (`words_gain`: the
mean per-prompt difference, with its standard error), so every file's first model should be the same
base. Models not named so (the base) are left out; guided columns (`NAME+guide S`) too, as they are the
sampler's work as much as the model's. Prints a Markdown table (arm, steps, words used, the gain and its
standard error, how many standard errors that is) and draws each arm as a line with error bars, beside
the +10 points and zero lines. Needs matplotlib (pip install 'mlx-megabyte[plot]').
"""

import json
import re
import sys
from pathlib import Path

from mlx_megabyte.cli import cli, pyplot
from mlx_megabyte.cli import parser as parser_for
from mlx_megabyte.errors import UserError
from mlx_megabyte.files import atomic_path

POINT = re.compile(r"^(?P<arm>[^@+]+)@(?P<steps>\d+)$")
TARGET = 10.0  # points: the gain issue 36 asks a shipped model for


def read_points(paths: list[Path]) -> dict[str, list[dict]]:
    """arm -> its points, by steps: each {steps, words_used, gain, standard_error, prompts} (percent points)."""
    arms: dict[str, list[dict]] = {}
    for path in paths:
        try:
            report = json.loads(path.read_bytes())
        except OSError as error:
            raise UserError(f"cannot read {path}: {error.strerror}") from None
        except ValueError:
            raise UserError(f"{path} is not JSON: give a file that evaluate --instruct --out wrote") from None
        models = report.get("models") if isinstance(report, dict) else None
        if not isinstance(models, dict):
            raise UserError(f"{path} holds no models: give a file that evaluate --instruct --out wrote")
        for name, model in models.items():
            match = POINT.match(name)
            if not match or "words_gain" not in model:
                continue
            gain = model["words_gain"]
            arms.setdefault(match["arm"], []).append(
                {
                    "steps": int(match["steps"]),
                    "words_used": 100 * model["aggregate"]["words_used"],
                    "gain": 100 * gain["gain"],
                    "standard_error": 100 * gain["standard_error"],
                    "prompts": gain["prompts"],
                }
            )
    if not arms:
        raise UserError("no model named ARM@STEPS in these files: name the checkpoints so with evaluate --model")
    return {arm: sorted(points, key=lambda p: p["steps"]) for arm, points in arms.items()}


def table(arms: dict[str, list[dict]]) -> str:
    rows = [
        "| arm | steps | prompts | words used | gain over base (points) | standard errors |",
        "|---|---|---|---|---|---|",
    ]
    for arm, points in arms.items():
        for p in points:
            ratio = p["gain"] / p["standard_error"] if p["standard_error"] else float("inf")
            rows.append(
                f"| {arm} | {p['steps']:,} | {p['prompts']} | {p['words_used']:.1f}% | "
                f"{p['gain']:+.1f} ± {p['standard_error']:.1f} | {ratio:+.1f} |"
            )
    return "\n".join(rows) + "\n"


def plot(arms: dict[str, list[dict]], out: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 5))
    for arm, points in arms.items():
        axes.errorbar(
            [p["steps"] for p in points],
            [p["gain"] for p in points],
            yerr=[p["standard_error"] for p in points],
            marker="o",
            capsize=4,
            label=arm,
        )
    axes.axhline(0, color="grey", linewidth=1)
    axes.axhline(TARGET, color="grey", linestyle="--", linewidth=1, label=f"+{TARGET:g} points")
    axes.set_xlabel("training steps (16 x 1,024 bytes each)")
    axes.set_ylabel("words used over the base, per prompt (points)")
    axes.set_title("required words used on its own, against training time (bars: one standard error)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    with atomic_path(out, suffix=out.suffix) as temporary:
        figure.savefig(temporary, dpi=120, format=(out.suffix.lstrip(".") or "png"))
    plt.close(figure)


def build_parser():
    parser = parser_for("tools/plot_words_curve.py", __doc__)
    parser.add_argument("files", nargs="+", type=Path, help="evaluate --instruct --out files")
    parser.add_argument("--out", type=Path, help="the image to write (PNG unless its suffix says); else only the table")
    return parser


@cli
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    arms = read_points(args.files)
    sys.stdout.write(table(arms))
    if args.out:
        plot(arms, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
