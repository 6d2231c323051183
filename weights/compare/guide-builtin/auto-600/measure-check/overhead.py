"""Where the trainer's step is slower than sizing.measure's: the same compiled step on MEGABYTE small,
batch 8, timed (median of 10 after 4 warm-up) with the trainer's per-step extras added one at a time."""

# ruff: noqa: I001 (mlx_megabyte first: importing it loads the BLAS that MLX must find)
import json, statistics, time, tempfile
from mlx_megabyte import train, data
import mlx.core as mx, numpy as np
from mlx_megabyte.models import build
from mlx_megabyte.optim import TrainStep, make_optimizer

args = train.build_parser().parse_args(
    ["--preset", "small", "--data", "builtin", "--batch-size", "8", "--time-budget", "300"]
)
config = train.training_config(args)
model = build(config.model)
model.train()
opt = make_optimizer(config)
opt.init(model.trainable_parameters())
step = TrainStep(model, opt, config.grad_clip, 1)
rng = np.random.default_rng(0)
fixed = rng.integers(0, 256, (8, 1024), dtype=np.uint8)
corpus = rng.integers(0, 256, 16_000_000, dtype=np.uint8)
batches = data.Batches(corpus, 1024, 8, 0)
log = open(tempfile.mktemp(), "w")


def run(name, real_batch, async_items, write):
    times = []
    batch = next(batches) if real_batch else fixed
    for i in range(14):
        t = time.perf_counter()
        mx.random.seed(i)
        loss, norm = step(batch)
        if async_items:
            mx.async_eval(loss, norm, model.parameters(), opt.state)
            if real_batch:
                batch = next(batches)
            loss.item(), norm.item()
            opt.learning_rate.item(), mx.get_peak_memory()
        else:
            mx.eval(loss, norm, model.parameters(), opt.state)
            if real_batch:
                batch = next(batches)
        if write:
            log.write(json.dumps({"step": i, "loss": float(loss.item()), "lr": 1e-3}) + "\n")
            log.flush()
        times.append(time.perf_counter() - t)
    med = statistics.median(times[4:])
    print(f"{name:40s} {med * 1000:7.1f} ms  {8192 / med:8,.0f} B/s", flush=True)


run("measure (fixed batch, mx.eval)", False, False, False)
run("+ a fresh batch drawn after eval", True, False, False)
run("async_eval, batch drawn meanwhile, items", True, True, False)
run("+ metrics line", True, True, True)
run("measure again", False, False, False)
run("async_eval, fixed batch, items", False, True, False)
