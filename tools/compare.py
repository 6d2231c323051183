#!/usr/bin/env python
"""Compare training configurations at equal wall-clock (or equal bytes) on the same data.

    python tools/compare.py --data builtin --time-budget 1200 --out runs/compare \\
        --config "megabyte: --arch megabyte --preset small" \\
        --config "spacebyte: --arch spacebyte --preset small" \\
        --train-args "--batch-size 8 --iters 4000 --steps-per-eval 100"
    python tools/compare.py --configs configs.json --data corpus.txt --bytes 50000000 --out runs/equal-bytes

A configuration is a name and `python -m mlx_megabyte.train` flags ("NAME: FLAGS" with --config, or a
JSON file {"NAME": "FLAGS", ...} with --configs); --train-args go to every run, before its own flags.
The runs train one after another, each in its own process, into OUT/NAME, for --time-budget seconds of
training steps each (train's --time-budget: validation and checkpoints are not counted) or for --bytes
bytes each (the --iters that sees them). The learning-rate schedule follows each run's --iters: for
equal-time runs, pick --iters near what the budget allows. Each run's final weights are then scored with
`python -m mlx_megabyte.evaluate --json` on the same held-out bytes (--eval-data, default --data, its
validation split; --eval-max-bytes to score fewer).

Writes OUT/results.md and OUT/results.json (config, parameters, training FLOPs per byte, steps, bytes
seen, training seconds, bytes/s, held-out bits per byte) and OUT/bpb-vs-time.png: each run's validation
bits per byte against its training time, its final held-out score marked (needs matplotlib: the `plot`
extra). Resumable: a run with a result (OUT/NAME/compare.json) is not trained or scored again, and a
run that was cut off continues from its newest checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from mlx_megabyte import cli
from mlx_megabyte.errors import UserError

RESULT_FILE = "compare.json"


def parse_args(argv=None):
    parser = cli.parser("tools/compare.py", __doc__)
    parser.add_argument("--config", action="append", default=[], metavar="'NAME: FLAGS'",
                        help="a configuration: a name, a colon and train flags (repeat for several)")
    parser.add_argument("--configs", help="a JSON file of configurations: {\"NAME\": \"FLAGS\", ...}")
    parser.add_argument("--data", required=True, help="training data for every run (train's --data)")
    parser.add_argument("--out", required=True, help="where the runs, the table and the plot go")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--time-budget", type=cli.number(float, 0, low_open=True), metavar="SECONDS",
                        help="seconds of training steps per run")
    budget.add_argument("--bytes", type=cli.number(int, 1),
                        help="training bytes per run instead (equal data, not equal time)")
    parser.add_argument("--train-args", default="", help="train flags for every run (e.g. '--batch-size 8 --iters 4000')")
    parser.add_argument("--eval-data", help="held-out data (default: --data)")
    parser.add_argument("--eval-split", default="validation", choices=("validation", "train", "all"),
                        help="the part of --eval-data to score")
    parser.add_argument("--eval-max-bytes", type=cli.number(int, 1), help="score only the first N held-out bytes")
    parser.add_argument("--cache-dir", help="where encoded data is kept (train's and evaluate's --cache-dir)")
    return parser.parse_args(argv)


def configurations(args) -> dict[str, list[str]]:
    """Name -> train flags, in the order given (file first). A name given twice is refused: one of the
    two would silently not run."""
    found: dict[str, object] = {}

    def add(name: str, flags, where: str):
        if name in found:
            raise UserError(f"the configuration name {name!r} is given twice ({where}): give each its own name")
        found[name] = flags

    if args.configs:
        for name, flags in read_configs(args.configs):
            add(name, flags, f"in {args.configs}")
    for spec in args.config:
        name, colon, flags = spec.partition(":")
        if not colon or not name.strip():
            raise UserError(f"--config {spec!r}: expected 'NAME: FLAGS'")
        add(name.strip(), flags, "by --config")
    if not found:
        raise UserError("give at least one --config or --configs")
    runs = {}
    for name, flags in found.items():
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise UserError(f"configuration name {name!r}: use letters, digits, '-', '_' and '.' "
                            "(it names a directory)")
        runs[name] = split_flags(flags, f"configuration {name!r}")
    return runs


def read_configs(path: str) -> list[tuple[str, object]]:
    """The (name, flags) pairs of a --configs file; a name given twice is refused (json.loads would keep
    the last one silently)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--configs: cannot read {path} ({getattr(error, 'strerror', None) or error})") from None

    def unique(pairs):
        names = [name for name, _ in pairs]
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice is not None:
            raise UserError(f"the configuration name {twice!r} is given twice (in {path}): give each its own name")
        return dict(pairs)

    try:
        found = json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as error:
        raise UserError(f"--configs: {path} is not valid JSON ({error})") from None
    if not isinstance(found, dict):
        raise UserError(f'--configs: {path} must hold a JSON object of configurations, {{"NAME": "FLAGS", ...}}, '
                        f"not a {type(found).__name__}")
    return list(found.items())


def split_flags(flags, what: str) -> list[str]:
    """Train flags as a list: a string split as a shell would, or a list of strings as it is."""
    if isinstance(flags, list) and all(isinstance(flag, str) for flag in flags):
        split = list(flags)
    elif not isinstance(flags, str):
        raise UserError(f"{what}: the flags must be a string (or a list of strings), got {json.dumps(flags)[:60]}")
    else:
        try:
            split = shlex.split(flags)
        except ValueError as error:  # an unbalanced quote
            raise UserError(f"{what}: cannot split {flags.strip()!r} into flags ({error})") from None
    for flag in split:  # JSON can escape a lone UTF-16 surrogate, which no command line can carry
        try:
            os.fsencode(flag)
        except UnicodeEncodeError:
            raise UserError(f"{what}: the flag {flag!r} holds a lone UTF-16 surrogate, which is not text") from None
    return split


def train_command(args, name: str, flags: list[str]) -> tuple[list[str], object]:
    """The train command line of one run, and its TrainingConfig (what the flags mean)."""
    from mlx_megabyte.train import build_parser, training_config

    run_dir = Path(args.out) / name
    full = ["--quiet", "--steps-per-sample", "0", *split_flags(args.train_args, "--train-args"), *flags,
            "--data", args.data, "--save-path", str(run_dir)]
    if args.cache_dir:
        full += ["--cache-dir", args.cache_dir]
    parser = build_parser()

    def refuse(message):  # train's own flag errors, as one line that names the configuration (below)
        raise UserError(f"{message} (see python -m mlx_megabyte.train --help)")

    parser.error = refuse
    try:
        config = training_config(parser.parse_args(full))
        if args.bytes is not None:
            full += ["--iters", str(max(1, math.ceil(args.bytes / config.bytes_per_rank_step)))]
            config = training_config(parser.parse_args(full))
        else:
            full += ["--time-budget", repr(args.time_budget)]
    except UserError as error:
        raise UserError(f"configuration {name!r}: {error}") from None
    return [sys.executable, "-m", "mlx_megabyte.train", *full], config


def run_one(args, name: str, flags: list[str]) -> dict:
    from mlx_megabyte import checkpoint
    from mlx_megabyte.models import build
    from mlx_megabyte.weights import read_config

    run_dir = Path(args.out) / name
    result_path = run_dir / RESULT_FILE
    if result_path.is_file():
        print(f"{name}: done before, skipped ({result_path})", flush=True)
        return json.loads(result_path.read_text())

    command, config = train_command(args, name, flags)
    if checkpoint.latest_checkpoint(run_dir) is not None:
        command.append("--resume")  # cut off before: continue (the time budget counts on)
    elif run_dir.exists() and any(run_dir.iterdir()):
        command.append("--overwrite")  # nothing usable: start afresh (the old directory is moved aside)
    print(f"{name}: training ({shlex.join(command[1:])})", flush=True)
    tic = time.perf_counter()
    done = subprocess.run(command)
    if done.returncode != 0:
        raise UserError(f"the training of {name} failed (exit code {done.returncode}); run again to resume it")
    wall = time.perf_counter() - tic

    latest = checkpoint.latest_checkpoint(run_dir)
    state = json.loads((latest / checkpoint.STATE_FILE).read_text())
    evaluation = [sys.executable, "-m", "mlx_megabyte.evaluate", "--model", str(latest), "--data",
                  args.eval_data or args.data, "--split", args.eval_split, "--json"]
    if args.eval_max_bytes:
        evaluation += ["--max-bytes", str(args.eval_max_bytes)]
    if args.cache_dir:
        evaluation += ["--cache-dir", args.cache_dir]
    print(f"{name}: scoring {latest}", flush=True)
    scored = subprocess.run(evaluation, capture_output=True, text=True)
    if scored.returncode != 0:
        raise UserError(f"evaluating {name} failed: {scored.stderr.strip()[-500:]}")
    score = json.loads(scored.stdout.strip().splitlines()[-1])

    model_config, _ = read_config(latest)
    steps, seconds = state["step"], state.get("train_seconds") or math.nan
    seen = steps * config.bytes_per_rank_step
    result = {
        "name": name, "flags": shlex.join(flags), "arch": model_config.model_type,
        "parameters": build(model_config).num_parameters(),
        "mflops_per_byte": model_config.flops_per_byte() / 1e6,
        "steps": steps, "bytes_seen": seen, "train_seconds": seconds, "bytes_per_second": seen / seconds,
        "heldout_bpb": score["bpb"], "heldout_bytes": score["bytes"], "wall_seconds": wall,
        "checkpoint": str(latest.relative_to(run_dir.parent)),  # relative to OUT: results travel with it
    }
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{name}: {score['bpb']:.4f} bits per byte held out after {steps} steps", flush=True)
    return result


def table(results: list[dict]) -> str:
    lines = ["| config | arch | parameters | MFLOP/byte | steps | bytes seen | training s | bytes/s | held-out bpb |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['arch']} | {r['parameters']:,} | {r['mflops_per_byte']:.2f} | {r['steps']:,} | "
                     f"{r['bytes_seen']:,} | {r['train_seconds']:.1f} | {r['bytes_per_second']:,.0f} | "
                     f"{r['heldout_bpb']:.4f} |")
    return "\n".join(lines) + "\n"


def validation_curve(run_dir: Path) -> list[tuple[float, float]]:
    """(training seconds, validation bits per byte) at each validation in metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    points = []
    text = path.read_bytes().decode("utf-8", errors="replace") if path.is_file() else ""  # as plot_metrics reads it
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "val_bpb" in record and "train_seconds" in record:
            points.append((record["train_seconds"], record["val_bpb"]))
    return points


def plot(results: list[dict], out: Path, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[plot]'): no plot", file=sys.stderr)
        return False
    figure, axes = plt.subplots(figsize=(8, 5))
    for r in results:
        points = validation_curve(out / r["name"])
        line = axes.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=f"{r['name']} (validation)")
        axes.scatter([r["train_seconds"]], [r["heldout_bpb"]], marker="*", s=120, color=line[0].get_color(),
                     label=f"{r['name']} held out: {r['heldout_bpb']:.3f}")
    axes.set_xlabel("training time (s)")
    axes.set_ylabel("bits per byte")
    axes.set_title("held-out bits per byte against wall-clock training time")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


@cli.cli
def main(argv=None):
    args = parse_args(argv)
    runs = configurations(args)
    for name, flags in runs.items():  # every configuration's flags are checked before the first run starts
        train_command(args, name, flags)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory for the runs, the table and the plot")
    out.mkdir(parents=True, exist_ok=True)
    results = [run_one(args, name, flags) for name, flags in runs.items()]
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table(results))
    drawn = plot(results, out, out / "bpb-vs-time.png")
    print(table(results), end="")
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}" + (f" and {out / 'bpb-vs-time.png'}" if drawn else ""))


if __name__ == "__main__":
    main()
