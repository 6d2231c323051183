#!/usr/bin/env python
"""Side-by-side benchmark of mlx-megabyte against megabyte-pytorch 0.3.6 on this machine.

    python tools/benchmark.py                          # every task on the seed-sized config
    python tools/benchmark.py --configs small,3stage --tasks train,forward --rounds 3
    python tools/benchmark.py --tasks generate

Each measurement runs in its own process (mlx-megabyte preloads OpenBLAS, which slows torch ~5x in a
shared process), torch and MLX alternating round by round after warm-up steps; the table shows medians
and the MLX/torch ratio (above 1 = MLX faster / uses more memory). Tasks:

- train:    bytes/s of forward + backward + AdamW (mlx-megabyte's own compiled training step; torch with
            flash_attn=True), and the process's peak memory (max RSS; MLX's own peak too)
- train-checkpointed: the same with mlx-megabyte's --grad-checkpoint (torch runs its plain step)
- forward:  bytes/s of logits for a batch, no gradients
- generate: bytes/s for N new bytes after a P-byte prompt, batch 1, greedy; mlx-megabyte with its KV
            caches, megabyte-pytorch the way its `generate` works (the whole model on the whole sequence
            for every byte), both on the same weights
- generate-q8, generate-q4: mlx-megabyte's generation with --quantize 8 / 4 (torch: the same float32
            full recompute, measured once per config and shared by the generate rows)

It also reports model FLOPs utilisation against MLX's measured fp32 2048^3 matmul throughput.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

TASKS = ("train", "train-checkpointed", "forward", "generate", "generate-q8", "generate-q4")
CONFIGS = {
    "seed": dict(num_tokens=256, dim=(512, 256), depth=(12, 4), max_seq_len=(256, 8)),
    "small": dict(num_tokens=256, dim=(256, 128), depth=(4, 2), max_seq_len=(128, 8), dim_head=32, heads=8),
    "3stage": dict(num_tokens=256, dim=(384, 256, 128), depth=(6, 3, 2), max_seq_len=(64, 4, 8), dim_head=32, heads=8),
}


# --- FLOPs --------------------------------------------------------------------------------------------


def flops_per_byte(config: dict, training: bool) -> float:
    """Matmul FLOPs per byte of one forward (x3 with backward), attention included, counted from the
    architecture: every stage runs its sequences with a start token, and causal attention does half the
    score matrix."""
    dims = config["dim"]
    stages = len(config["depth"])
    dims = dims if isinstance(dims, tuple) else (dims,) * stages
    inner = config.get("heads", 8) * config.get("dim_head", 64)
    ff = config.get("ff_mult", 4)
    lengths = config["max_seq_len"]
    vocab = config["num_tokens"]
    total = 0.0
    for s in range(stages):
        d, length = dims[s], lengths[s]
        patch = math.prod(lengths[s + 1 :])
        positions_per_byte = (length + 1) / length / patch  # elements per byte, start token included
        per_position = config["depth"][s] * (2 * 4 * d * inner + 2 * 2 * d * ff * d + 2 * 2 * inner * (length + 1) / 2)
        total += per_position * positions_per_byte
        if s + 1 < stages:
            total += 2 * d * lengths[s + 1] * dims[s + 1] / patch  # to_next, once per element
            total += 2 * patch * dims[-1] * d / patch  # patch embedding projection
    total += 2 * dims[-1] * vocab  # logits
    return total * (3 if training else 1)


# --- workers (one measurement, own process) -----------------------------------------------------------


def torch_worker(task, config, batch, steps, warmup, weights, prompt_bytes, new_bytes):
    import torch
    from MEGABYTE_pytorch import MEGABYTE

    torch.manual_seed(0)
    model = MEGABYTE(**config, flash_attn=True)
    if weights:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(weights), strict=True)
    length = math.prod(config["max_seq_len"])
    ids = torch.randint(0, 256, (batch, length))
    rates = []
    if task.startswith("train"):  # megabyte-pytorch has no checkpointing: both rows compare with its plain step
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for i in range(warmup + steps):
            tic = time.perf_counter()
            loss = model(ids, return_loss=True)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if i >= warmup:
                rates.append(batch * length / (time.perf_counter() - tic))
    elif task == "forward":
        model.eval()
        with torch.no_grad():
            for i in range(warmup + steps):
                tic = time.perf_counter()
                model(ids)
                if i >= warmup:
                    rates.append(batch * length / (time.perf_counter() - tic))
    else:  # generate, exactly the loop of MEGABYTE.generate (top-k + Gumbel), timed as a whole
        from MEGABYTE_pytorch.megabyte import gumbel_sample, top_k

        model.eval()
        seq = torch.randint(0, 256, (1, prompt_bytes))
        with torch.no_grad():
            tic = time.perf_counter()
            for _ in range(new_bytes):
                logits = top_k(model(seq)[:, -1], thres=0.9)
                seq = torch.cat((seq, gumbel_sample(logits, temperature=1.0)[:, None]), dim=-1)
            rates.append(new_bytes / (time.perf_counter() - tic))
    return {"rates": rates}


def mlx_worker(task, config, batch, steps, warmup, weights, prompt_bytes, new_bytes):
    import mlx.core as mx  # after worker_main's check that mlx_megabyte was imported first
    import numpy as np

    from mlx_megabyte import MEGABYTE, ModelConfig
    from mlx_megabyte.info import matmul_gflops

    model = MEGABYTE(ModelConfig(**config))
    if weights:
        from mlx_megabyte.convert import from_torch_state, read_torch_state
        from mlx_megabyte.weights import load_weights

        _, arrays, _ = from_torch_state(read_torch_state(weights), config)
        load_weights(model, arrays)
    if task.startswith("generate-q"):
        from mlx_megabyte.weights import quantize

        quantize(model, int(task[len("generate-q"):]))
    length = math.prod(config["max_seq_len"])
    ids = mx.array(np.random.default_rng(0).integers(0, 256, (batch, length)))
    rates = []
    if task in ("train", "train-checkpointed"):
        from mlx_megabyte.trainer import TrainingConfig, TrainStep, make_optimizer

        # The trainer's own optimizer and compiled step, without its data, console or run directory.
        model.train()
        model.set_grad_checkpoint(task == "train-checkpointed")
        optimizer = make_optimizer(TrainingConfig(model=model.config, iters=warmup + steps, warmup_steps=0))
        optimizer.init(model.trainable_parameters())
        step = TrainStep(model, optimizer, grad_clip=1.0)
        for i in range(warmup + steps):
            tic = time.perf_counter()
            loss, norm = step(ids)
            mx.eval(loss, norm, model.parameters(), optimizer.state)
            if i >= warmup:
                rates.append(batch * length / (time.perf_counter() - tic))
    elif task == "forward":
        model.eval()
        for i in range(warmup + steps):
            tic = time.perf_counter()
            mx.eval(model(ids))
            if i >= warmup:
                rates.append(batch * length / (time.perf_counter() - tic))
    else:
        from mlx_megabyte.generate import generate_step
        from mlx_megabyte.sampling import make_sampler

        model.eval()
        prompt = ids[:1, :prompt_bytes]
        for i in range(warmup + steps):
            tic = time.perf_counter()
            for _, y in zip(range(new_bytes), generate_step(model, prompt, make_sampler(0.0))):
                y.item()
            if i >= warmup:
                rates.append(new_bytes / (time.perf_counter() - tic))
    result = {"rates": rates, "mlx_peak_gb": mx.get_peak_memory() / 1e9}
    if task.startswith("train"):
        result["matmul_gflops"] = matmul_gflops(2048)
    return result


def worker_main(args):
    config = CONFIGS[args.config]
    if args.worker == "mlx":
        # Before anything imports mlx.core (an import sorter once moved it above this and the numbers
        # silently came from the reference BLAS, 30x slower): mlx_megabyte preloads OpenBLAS.
        from mlx_megabyte import cpu

        if sys.platform.startswith("linux") and "openblas" not in (cpu.sgemm_provider() or ""):
            sys.exit(f"error: MLX's matmuls are served by {cpu.sgemm_provider()}, not OpenBLAS: no valid numbers")
    function = torch_worker if args.worker == "torch" else mlx_worker
    if args.worker == "torch":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    result = function(args.task, config, args.batch, args.steps, args.warmup, args.weights, args.prompt_bytes, args.new_bytes)
    scale = 1024 if sys.platform.startswith("linux") else 1024 * 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    result["max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9
    print("RESULT " + json.dumps(result))


# --- orchestration ------------------------------------------------------------------------------------


def prompt_length(config_name, args):
    """The prompt for generate rows: --prompt-bytes, shortened so that it and the new bytes fit the context
    (megabyte-pytorch refuses longer sequences)."""
    context = math.prod(CONFIGS[config_name]["max_seq_len"])
    return max(1, min(args.prompt_bytes, context - args.new_bytes))


def measure(worker, task, config, args, weights=None, steps=None, warmup=None):
    command = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--task", task, "--config", config,
               "--batch", str(args.batch), "--steps", str(steps or args.steps), "--warmup", str(args.warmup if warmup is None else warmup),
               "--prompt-bytes", str(prompt_length(config, args)), "--new-bytes", str(args.new_bytes)]
    if weights:
        command += ["--weights", weights]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"error: the {worker} {task} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def save_torch_weights(config_name, path):
    """Random megabyte-pytorch weights as safetensors (made in a torch-only process)."""
    code = (
        "import sys, torch; sys.path.insert(0, %r); from benchmark import CONFIGS; "
        "from MEGABYTE_pytorch import MEGABYTE; from safetensors.torch import save_file; torch.manual_seed(0); "
        "save_file(MEGABYTE(**CONFIGS[%r]).state_dict(), %r)" % (os.path.dirname(os.path.abspath(__file__)), config_name, path)
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def orchestrate(args):
    rows = []
    for config in args.configs.split(","):
        if config not in CONFIGS:
            sys.exit(f"error: unknown config {config!r} (choose from {', '.join(CONFIGS)})")
    for task in args.tasks.split(","):
        if task not in TASKS:
            sys.exit(f"error: unknown task {task!r} (choose from {', '.join(TASKS)})")
    for config in args.configs.split(","):
        weights, torch_generate = None, []
        for task in args.tasks.split(","):
            generating = task.startswith("generate")
            results = {"torch": list(torch_generate) if generating else [], "mlx": []}
            if generating and weights is None:
                weights = os.path.join(tempfile.mkdtemp(), "weights.safetensors")
                save_torch_weights(config, weights)
            for round_ in range(args.rounds):
                order = ("torch", "mlx") if round_ % 2 == 0 else ("mlx", "torch")
                for worker in order:
                    if generating and worker == "torch" and len(results["torch"]) >= args.torch_generate_rounds:
                        continue  # a full-recompute round costs minutes; one or two are enough
                    steps = 1 if generating and worker == "torch" else None
                    warmup = 0 if generating and worker == "torch" else None
                    result = measure(worker, task, config, args, weights if generating else None, steps, warmup)
                    results[worker].append(result)
                    if generating and worker == "torch":
                        torch_generate.append(result)
                    print(f"  {config} {task} round {round_ + 1} {worker}: "
                          f"{statistics.median(result['rates']):,.1f} bytes/s, max RSS {result['max_rss_gb']:.2f} GB",
                          file=sys.stderr, flush=True)
            row = summarise(config, task, results)
            if generating:
                row["prompt_bytes"], row["new_bytes"] = prompt_length(config, args), args.new_bytes
            rows.append(row)
            print_row(row)
            if args.json:  # after every row: a failure later keeps what was measured
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=2)
    return rows


def summarise(config, task, results):
    def median(worker, key):
        values = [v for r in results[worker] for v in (r[key] if isinstance(r[key], list) else [r[key]])]
        return statistics.median(values)

    row = {"config": config, "task": task, "torch_bytes_per_s": median("torch", "rates"),
           "mlx_bytes_per_s": median("mlx", "rates"), "torch_max_rss_gb": median("torch", "max_rss_gb"),
           "mlx_max_rss_gb": median("mlx", "max_rss_gb"), "mlx_peak_gb": median("mlx", "mlx_peak_gb")}
    row["speed_ratio"] = row["mlx_bytes_per_s"] / row["torch_bytes_per_s"]
    row["memory_ratio"] = row["mlx_max_rss_gb"] / row["torch_max_rss_gb"]
    if task.startswith("train"):
        ceiling = median("mlx", "matmul_gflops")
        flops = flops_per_byte(CONFIGS[config], training=True)
        row.update(matmul_gflops=ceiling, mflops_per_byte=flops / 1e6,
                   torch_mfu=row["torch_bytes_per_s"] * flops / (ceiling * 1e9),
                   mlx_mfu=row["mlx_bytes_per_s"] * flops / (ceiling * 1e9))
    return row


def print_row(row):
    line = (f"{row['config']:>7} {row['task']:>18}: torch {row['torch_bytes_per_s']:>10,.1f} B/s  "
            f"mlx {row['mlx_bytes_per_s']:>10,.1f} B/s  speed x{row['speed_ratio']:.2f}   "
            f"max RSS torch {row['torch_max_rss_gb']:.2f} GB  mlx {row['mlx_max_rss_gb']:.2f} GB "
            f"(MLX peak {row['mlx_peak_gb']:.2f} GB)  memory x{row['memory_ratio']:.2f}")
    if "prompt_bytes" in row:
        line += f"   ({row['new_bytes']} bytes after a {row['prompt_bytes']}-byte prompt)"
    if "mlx_mfu" in row:
        line += (f"   MFU torch {100 * row['torch_mfu']:.0f}% mlx {100 * row['mlx_mfu']:.0f}% of "
                 f"{row['matmul_gflops']:.0f} GFLOP/s ({row['mflops_per_byte']:.1f} MFLOP/byte)")
    print(line, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="seed", help=f"comma-separated: {', '.join(CONFIGS)}")
    parser.add_argument("--tasks", default="train,forward,generate", help=f"comma-separated: {', '.join(TASKS)}")
    parser.add_argument("--batch", type=int, default=4, help="sequences per step (train, forward)")
    parser.add_argument("--steps", type=int, default=3, help="measured steps per process")
    parser.add_argument("--warmup", type=int, default=3,
                        help="unmeasured steps per process (compilation, and the allocator settling)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per implementation, alternating")
    parser.add_argument("--prompt-bytes", type=int, default=1024, help="generate: prompt length (shortened to fit the context with the new bytes)")
    parser.add_argument("--new-bytes", type=int, default=512, help="generate: bytes to generate")
    parser.add_argument("--torch-generate-rounds", type=int, default=1, help="full-recompute rounds (slow)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", choices=("torch", "mlx"), help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
