"""--preset auto's speed reading (sizing.measure) against the speed train then keeps up (bytes seen /
train_seconds of a real run), on this machine: the old defaults (2 untimed steps, then steps until 3 s,
at least one) and the new (untimed until 1 s and 2 steps, timed until 3 s and 3 steps), twice each,
for the configs of this session's study runs (their in-loop speeds are in the sweeps' results.json) and
for `tiny` (a 90-s train run here). --data builtin, batch 8."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

from mlx_megabyte import sizing, train

R = Path("/work/runs")
OUT = R / "auto-check"
CONFIGS = {
    "megabyte-dim128x64": "--arch megabyte --preset small --dim 128,64",
    "megabyte-small": "--arch megabyte --preset small",
    "megabyte-dim384x192": "--arch megabyte --preset small --dim 384,192",
    "spacebyte-dim64x128": "--arch spacebyte --preset small --local-dim 64 --global-dim 128",
    "spacebyte-small": "--arch spacebyte --preset small",
    "spacebyte-dim128x256": "--arch spacebyte --preset small --local-dim 128 --global-dim 256",
    "tiny": "--arch megabyte --preset tiny",
}
parser = train.build_parser()
rows = {}
for name, flags in CONFIGS.items():
    args = parser.parse_args(shlex.split(flags) + ["--data", "builtin", "--batch-size", "8", "--time-budget", "300"])
    config = train.training_config(args)
    for label, kw in (("old", dict(seconds=3, warmup_steps=2, warmup_seconds=0, min_steps=1)), ("new", {})):
        for rep in range(2):
            c = sizing.measure(name, config, **kw)
            rows.setdefault(name, {}).setdefault(label, []).append(
                [c.bytes_per_second, c.measured_steps, c.measured_seconds]
            )
            print(
                name,
                label,
                rep,
                f"{c.bytes_per_second:,.0f} B/s",
                c.measured_steps,
                f"{c.measured_seconds:.2f}",
                flush=True,
            )
run = OUT / "train-tiny"
TINY_RUN = "--preset tiny --data builtin --batch-size 8 --time-budget 90 --iters 100000 --steps-per-sample 0"
TINY_RUN += " --steps-per-eval 100000 --quiet --overwrite --save-path"
subprocess.run([sys.executable, "-m", "mlx_megabyte.train", *shlex.split(TINY_RUN), str(run)], check=True)
steps = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"bytes_per_second"' in l]
rows["tiny"]["train"] = {
    "source": str(run),
    "steps": steps[-1]["step"],
    "train_seconds": steps[-1]["train_seconds"],
    "bytes_per_second": steps[-1]["step"] * 8 * 256 / steps[-1]["train_seconds"],
}
for sweep in ("intel-dec03-megabyte-size-1200", "intel-dec03-megabyte-size-300", "intel-dec03-spacebyte-size-300"):
    path = R / sweep / "results.json"
    if not path.exists():
        continue
    for r in json.loads(path.read_text()):
        if r["name"] in rows:
            rows[r["name"]].setdefault("runs", []).append(
                {
                    "source": sweep,
                    "steps": r["steps"],
                    "train_seconds": r["train_seconds"],
                    "bytes_per_second": r["bytes_per_second"],
                }
            )
print("| config | in-loop B/s (runs) | old reading | new reading |")
for name, r in rows.items():
    loops = [x["bytes_per_second"] for x in r.get("runs", [])] + (
        [r["train"]["bytes_per_second"]] if "train" in r else []
    )
    if not loops:
        continue
    ref = sum(loops) / len(loops)
    cell = lambda label: ", ".join(f"{b:,.0f} ({b / ref:.2f}x)" for b, _, _ in r[label])
    print(f"| {name} | {', '.join(f'{x:,.0f}' for x in loops)} | {cell('old')} | {cell('new')} |")
(OUT / "check.json").write_text(json.dumps(rows, indent=2) + "\n")
