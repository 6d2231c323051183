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

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

RESULT_FILE = "compare.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="tools/compare.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], metavar="'NAME: FLAGS'",
                        help="a configuration: a name, a colon and train flags (repeat for several)")
    parser.add_argument("--configs", help="a JSON file of configurations: {\"NAME\": \"FLAGS\", ...}")
    parser.add_argument("--data", required=True, help="training data for every run (train's --data)")
    parser.add_argument("--out", required=True, help="where the runs, the table and the plot go")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--time-budget", type=float, metavar="SECONDS", help="seconds of training steps per run")
    budget.add_argument("--bytes", type=int, help="training bytes per run instead (equal data, not equal time)")
    parser.add_argument("--train-args", default="", help="train flags for every run (e.g. '--batch-size 8 --iters 4000')")
    parser.add_argument("--eval-data", help="held-out data (default: --data)")
    parser.add_argument("--eval-split", default="validation", choices=("validation", "train", "all"),
                        help="the part of --eval-data to score")
    parser.add_argument("--eval-max-bytes", type=int, help="score only the first N held-out bytes")
    parser.add_argument("--cache-dir", help="where encoded data is kept (train's and evaluate's --cache-dir)")
    args = parser.parse_args(argv)
    if args.time_budget is not None and not (math.isfinite(args.time_budget) and args.time_budget > 0):
        parser.error("--time-budget must be a positive number of seconds")
    if args.bytes is not None and args.bytes < 1:
        parser.error("--bytes must be positive")
    return args


def configurations(args) -> dict[str, list[str]]:
    """Name -> train flags, in the order given (file first)."""
    found: dict[str, str] = {}
    if args.configs:
        found.update(json.loads(Path(args.configs).read_text()))
    for spec in args.config:
        name, colon, flags = spec.partition(":")
        if not colon or not name.strip():
            sys.exit(f"error: --config {spec!r}: expected 'NAME: FLAGS'")
        found[name.strip()] = flags
    if not found:
        sys.exit("error: give at least one --config or --configs")
    for name in found:
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            sys.exit(f"error: configuration name {name!r}: use letters, digits, '-', '_' and '.' (it names a directory)")
    return {name: shlex.split(flags) if isinstance(flags, str) else list(flags) for name, flags in found.items()}


def train_command(args, name: str, flags: list[str]) -> tuple[list[str], object]:
    """The train command line of one run, and its TrainingConfig (what the flags mean)."""
    from mlx_megabyte.train import build_parser, training_config

    run_dir = Path(args.out) / name
    full = ["--quiet", "--steps-per-sample", "0", *shlex.split(args.train_args), *flags,
            "--data", args.data, "--save-path", str(run_dir)]
    if args.cache_dir:
        full += ["--cache-dir", args.cache_dir]
    config = training_config(build_parser().parse_args(full))
    if args.bytes is not None:
        full += ["--iters", str(max(1, math.ceil(args.bytes / config.bytes_per_rank_step)))]
        config = training_config(build_parser().parse_args(full))
    else:
        full += ["--time-budget", repr(args.time_budget)]
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
        sys.exit(f"error: the training of {name} failed (exit code {done.returncode}); run again to resume it")
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
        sys.exit(f"error: evaluating {name} failed: {scored.stderr.strip()[-500:]}")
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
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "val_bpb" in record and "train_seconds" in record:
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


def main(argv=None):
    args = parse_args(argv)
    runs = configurations(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [run_one(args, name, flags) for name, flags in runs.items()]
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table(results))
    drawn = plot(results, out, out / "bpb-vs-time.png")
    print(table(results), end="")
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}" + (f" and {out / 'bpb-vs-time.png'}" if drawn else ""))


if __name__ == "__main__":
    main()
