#!/usr/bin/env python
"""Side-by-side benchmark of mlx-megabyte against megabyte-pytorch 0.3.6 on this machine.

    python tools/benchmark.py                          # every task on the seed-sized config
    python tools/benchmark.py --configs small,3stage --tasks train,forward --rounds 3
    python tools/benchmark.py --tasks generate

Each measurement runs in its own process (mlx-megabyte preloads a BLAS, which slowed torch ~5x in a
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

Beside each generate row's MLX rate stands its floor: the bytes per second that reading once the weights
a decoded byte touches (the model's weight_bytes_per_byte) allows at this machine's memory bandwidth,
measured once as numpy copying a 256 MiB float32 array on one core (read and write counted: what a
decoding step's single-row products get; CPUs only), and the measured rate as a fraction of it.

- generate-spec: plain cached greedy decoding against speculative decoding (speculative.py) with a
            corpus n-gram draft of the built-in stories (by default; `--draft-model` and `--num-draft`
            take what generate's flags of those names take), alternating on the same story prompts,
            the bytes checked identical. It needs trained weights
            (a draft's acceptance on random weights means nothing): the repository's weights/demo for
            `small`; other configs get a row saying there are none. MLX only.
- train-bf16: training in bfloat16 mixed precision (float32 master weights and optimizer state): torch
            under autocast(bfloat16), mlx-megabyte with its --dtype bfloat16 step

It also reports model FLOPs utilisation against the measured 2048^3 matmul ceiling in the task's dtype.

Every registered architecture's presets are configs named ARCH-PRESET (`spacebyte-small`, ...; `small` and
`seed` are MEGABYTE's `small` and `40m`, `3stage` a three-stage MEGABYTE); architectures megabyte-pytorch
does not have get MLX rows only.

`--device gpu` measures on the GPU: megabyte-pytorch on CUDA (also `torch.compile`d with
`--torch-compile`, where it works), mlx-megabyte on MLX's GPU backend (CUDA or Metal), peak GPU memory
instead of the process's RSS, and the ceiling as the faster of the two frameworks' matmuls (the GPU's).
tools/gpu_benchmark.sh runs it on a bare NVIDIA machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

TASKS = (
    "train",
    "train-bf16",
    "train-checkpointed",
    "forward",
    "generate",
    "generate-q8",
    "generate-q4",
    "generate-spec",
)
# generate-spec: trained weights per config (random weights make a draft's acceptance meaningless), the
# draft, and story openings as prompts
TRAINED = {"small": os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "weights", "demo")}
SPEC_DRAFT, SPEC_NUM_DRAFT = "corpus:builtin", 4
SPEC_PROMPTS = ("Once upon a time", "One day, a little girl named Mia went to the park.", "The old dog")
# Named configurations: every registered architecture's presets as ARCH-PRESET, plus the names the tables
# have always used for MEGABYTE (`small`, `seed` = the 40m preset) and one three-stage MEGABYTE shape.
ALIASES = {"small": ("megabyte", "small"), "seed": ("megabyte", "40m")}
THREE_STAGE = dict(num_tokens=256, dim=(384, 256, 128), depth=(6, 3, 2), max_seq_len=(64, 4, 8), dim_head=32, heads=8)


def configurations() -> dict[str, dict]:
    """Name -> the model's config as a dict (model_type included), from the registry's presets (imports
    mlx_megabyte: the orchestrating process calls it, and hands each worker its dict)."""
    from mlx_megabyte.models import ARCHITECTURES

    found = {name: ARCHITECTURES[arch].presets[preset] for name, (arch, preset) in ALIASES.items()}
    found["3stage"] = ARCHITECTURES["megabyte"].presets["small"].replace(**THREE_STAGE)
    for arch in ARCHITECTURES.values():
        for preset, config in arch.presets.items():
            found.setdefault(f"{arch.name}-{preset}", config)
    return {name: {"model_type": config.model_type, **config.to_dict()} for name, config in found.items()}


def model_config(config: dict):
    """The mlx-megabyte config object of a configuration's dict (in the orchestrator or an MLX worker)."""
    from mlx_megabyte.models import config_from_dict

    return config_from_dict(config)


def has_torch(config: dict) -> bool:
    """Whether megabyte-pytorch can run this config: its architecture converts to that reference."""
    from mlx_megabyte.models import architecture

    return architecture(config["model_type"]).reference == "megabyte-pytorch 0.3.6"


def torch_arguments(config: dict) -> dict:
    """megabyte-pytorch's MEGABYTE(...) arguments of a MEGABYTE config's dict (no mlx_megabyte import:
    a torch worker must not preload its BLAS). shift_bytes is ours: the torch model is the same function
    either way (convert.torch_arguments)."""
    ours = ("model_type", "shift_bytes")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k not in ours}


# --- FLOPs --------------------------------------------------------------------------------------------


def flops_per_byte(config: dict, training: bool) -> float:
    """Matmul FLOPs per byte of one forward (x3 with backward), attention included: the architecture's
    own count (its config's flops_per_byte)."""
    return model_config(config).flops_per_byte(training)


# --- workers (one measurement, own process) -----------------------------------------------------------


def torch_worker(task, config, batch, steps, warmup, weights, prompt_bytes, new_bytes, device="cpu", compiled=False):
    import torch
    from MEGABYTE_pytorch import MEGABYTE

    cuda = device == "gpu" and torch.cuda.is_available()  # elsewhere (a Mac) torch runs on the CPU
    target = "cuda" if cuda else "cpu"

    def clock():
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    torch.manual_seed(0)
    model = MEGABYTE(**torch_arguments(config), flash_attn=True)
    if weights:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(weights), strict=True)
    model = model.to(target)
    run = torch.compile(model) if compiled else model
    length = math.prod(config["max_seq_len"])
    ids = torch.randint(0, 256, (batch, length), device=target)
    rates = []
    if task.startswith("train"):  # megabyte-pytorch has no checkpointing: both rows compare with its plain step
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        mixed = torch.autocast(target, dtype=torch.bfloat16) if task == "train-bf16" else contextlib.nullcontext()
        for i in range(warmup + steps):
            tic = clock()
            with mixed:
                loss = run(ids, return_loss=True)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if i >= warmup:
                rates.append(batch * length / (clock() - tic))
    elif task == "forward":
        model.eval()
        with torch.no_grad():
            for i in range(warmup + steps):
                tic = clock()
                run(ids)
                if i >= warmup:
                    rates.append(batch * length / (clock() - tic))
    else:  # generate, exactly the loop of MEGABYTE.generate (top-k + Gumbel), timed as a whole
        from MEGABYTE_pytorch.megabyte import gumbel_sample, top_k

        model.eval()
        seq = torch.randint(0, 256, (1, prompt_bytes), device=target)
        with torch.no_grad():
            tic = clock()
            for _ in range(new_bytes):
                logits = top_k(model(seq)[:, -1], thres=0.9)
                seq = torch.cat((seq, gumbel_sample(logits, temperature=1.0)[:, None]), dim=-1)
            rates.append(new_bytes / (clock() - tic))
    result = {"rates": rates}
    if cuda:
        result["gpu_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
    if task.startswith("train") and cuda:
        result["matmul_gflops"] = torch_matmul_gflops(torch.bfloat16 if task == "train-bf16" else torch.float32)
    return result


def torch_matmul_gflops(dtype, n: int = 4096, repeats: int = 5) -> float:
    import torch

    a, b = (torch.randn(n, n, device="cuda", dtype=dtype) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        tic = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - tic)
    return 2 * n**3 / best / 1e9


def mlx_worker(
    task,
    config,
    batch,
    steps,
    warmup,
    weights,
    prompt_bytes,
    new_bytes,
    device="cpu",
    compiled=False,
    draft=SPEC_DRAFT,
    num_draft=SPEC_NUM_DRAFT,
):
    import mlx.core as mx  # after worker_main's check that mlx_megabyte was imported first
    import numpy as np

    from mlx_megabyte.info import matmul_gflops
    from mlx_megabyte.models import build
    from mlx_megabyte.runtime import use_device

    use_device(device)
    if task == "generate-spec":
        return speculative_worker(weights, steps, warmup, new_bytes, draft, num_draft)

    model = build(model_config(config))
    if weights:
        from mlx_megabyte.models.megabyte.convert import (
            from_torch_state,
            read_torch_state,
        )
        from mlx_megabyte.weights import load_weights

        _, arrays, _ = from_torch_state(read_torch_state(weights), torch_arguments(config))
        load_weights(model, arrays)
    if task.startswith("generate-q"):
        from mlx_megabyte.weights import quantize

        quantize(model, int(task[len("generate-q") :]))
    length = model_config(config).context_length
    ids = mx.array(np.random.default_rng(0).integers(0, 256, (batch, length)))
    rates = []
    if task.startswith("train"):
        from mlx_megabyte.optim import training_step
        from mlx_megabyte.trainer import TrainingConfig

        # The trainer's own optimizer and compiled step, without its data, console or run directory.
        model.train()
        model.set_grad_checkpoint(task == "train-checkpointed")
        dtype = "bfloat16" if task == "train-bf16" else "float32"
        training = TrainingConfig(model=model.config, iters=warmup + steps, warmup_steps=0, grad_clip=1.0, dtype=dtype)
        step, optimizer = training_step(model, training)
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
        from mlx_megabyte.generation import generate_step
        from mlx_megabyte.sampling import make_sampler

        model.eval()
        prompt = ids[:1, :prompt_bytes]
        weight_bytes = model.weight_bytes_per_byte()
        for i in range(warmup + steps):
            tic = time.perf_counter()
            for _, y in zip(range(new_bytes), generate_step(model, prompt, make_sampler(0.0))):
                y.item()
            if i >= warmup:
                rates.append(new_bytes / (time.perf_counter() - tic))
    result = {"rates": rates, "mlx_peak_gb": mx.get_peak_memory() / 1e9}
    if task.startswith("generate"):
        result["weight_bytes"] = weight_bytes
    if device == "gpu":
        result["gpu_peak_gb"] = result["mlx_peak_gb"]
    if task.startswith("train"):
        result["matmul_gflops"] = matmul_gflops(2048, dtype=mx.bfloat16 if task == "train-bf16" else mx.float32)
    return result


def speculative_worker(weights, steps, warmup, new_bytes, draft_spec=SPEC_DRAFT, num_draft=SPEC_NUM_DRAFT):
    """generate-spec: rates of plain and speculative greedy decoding of the trained `weights`, alternating
    prompt by prompt, and the draft's acceptance; the two outputs must be the same bytes."""
    import mlx.core as mx

    from mlx_megabyte.generation import generate_step, story_tokens
    from mlx_megabyte.sampling import make_distribution, make_sampler
    from mlx_megabyte.speculative import SpeculationStats, load_draft, speculative_generate_step
    from mlx_megabyte.weights import load_for_inference

    model = load_for_inference(weights)
    draft = load_draft(draft_spec, model)
    stats, rates = SpeculationStats(), {"plain": [], "spec": []}
    for i in range(warmup + steps):
        for prompt in SPEC_PROMPTS:
            ids = mx.array(story_tokens(model.config, prompt)[0][None])
            out = {}
            for kind in ("plain", "spec"):
                if kind == "plain":
                    steps_ = generate_step(model, ids, make_sampler(0.0))
                else:
                    steps_ = speculative_generate_step(
                        model, draft, ids, make_distribution(0.0), num_draft, stats=stats if i >= warmup else None
                    )
                first = [next(steps_).item()]  # the prompt's prefill is not decoding: timed from here
                tic = time.perf_counter()
                out[kind] = first + [y.item() for _, y in zip(range(new_bytes - 1), steps_)]
                steps_.close()
                if i >= warmup:
                    rates[kind].append((new_bytes - 1) / (time.perf_counter() - tic))
            if out["plain"] != out["spec"]:
                raise SystemExit(f"error: speculative greedy bytes differ from plain ones after {prompt!r}")
    return {
        "rates": rates["spec"],
        "plain_rates": rates["plain"],
        "acceptance": stats.acceptance_rate,
        "bytes_per_check": (stats.accepted + stats.rounds) / max(stats.rounds, 1),
        "mlx_peak_gb": mx.get_peak_memory() / 1e9,
    }


def memory_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per second that one core moves through memory: numpy copying a large float32 array (read
    and write counted, as STREAM's copy does), the best of a few. numpy, not MLX, whose CPU copies and
    reductions run scalar (a sum read 0.5-0.7 GB/s here: the reduction, not the memory; numpy's sum
    ~1 GB/s). In a process of its own: Linux carries a process's peak RSS across the fork and exec of
    the workers, whose memory figures would count the arrays."""
    code = (
        "import numpy as np, time; a = np.ones(%d, dtype=np.float32); b = np.empty_like(a); best = 1e9\n"
        "for _ in range(%d):\n    t = time.perf_counter(); np.copyto(b, a); best = min(best, time.perf_counter() - t)\n"
        "print(2 * a.nbytes / best)" % (megabytes * 2**20 // 4, repeats)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def worker_main(args):
    config = json.loads(args.config)
    if args.worker == "mlx":
        # Before anything imports mlx.core (an import sorter once moved it above this and the numbers
        # silently came from the reference BLAS, 30x slower): mlx_megabyte preloads its BLAS.
        from mlx_megabyte import cpu

        if sys.platform.startswith("linux") and (cpu.blas is None or cpu.sgemm_provider() is None):
            sys.exit(
                f"error: MLX's matmuls are served by the reference BLAS bundled with mlx ({cpu.status}): "
                "no valid numbers"
            )
    function = torch_worker if args.worker.startswith("torch") else mlx_worker
    if args.worker.startswith("torch"):
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    result = function(
        args.task,
        config,
        args.batch,
        args.steps,
        args.warmup,
        args.weights,
        args.prompt_bytes,
        args.new_bytes,
        args.device,
        compiled=args.worker == "torch-compiled",
        **({"draft": args.draft, "num_draft": args.num_draft} if args.task == "generate-spec" else {}),
    )
    scale = 1024 if sys.platform.startswith("linux") else 1024 * 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    result["max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9
    # What a process used at its peak: GPU memory where it ran on a GPU, else its resident set.
    result["memory_gb"] = result.get("gpu_peak_gb", result["max_rss_gb"])
    result["memory_kind"] = "GPU" if "gpu_peak_gb" in result else "RSS"
    print("RESULT " + json.dumps(result))


# --- orchestration ------------------------------------------------------------------------------------


def prompt_length(config: dict, args):
    """The prompt for generate rows: --prompt-bytes, shortened so that it and the new bytes fit the context
    (megabyte-pytorch refuses longer sequences)."""
    context = model_config(config).context_length
    return max(1, min(args.prompt_bytes, context - args.new_bytes))


def measure(worker, task, config, args, weights=None, steps=None, warmup=None):
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        worker,
        "--task",
        task,
        "--config",
        json.dumps(args.models[config]),
        "--batch",
        str(args.batch),
        "--steps",
        str(steps or args.steps),
        "--warmup",
        str(args.warmup if warmup is None else warmup),
        "--prompt-bytes",
        str(prompt_length(args.models[config], args)),
        "--new-bytes",
        str(args.new_bytes),
        "--device",
        args.device,
    ]
    if weights:
        command += ["--weights", weights]
    if task == "generate-spec":
        command += ["--draft", args.draft_model, "--num-draft", str(args.num_draft)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if worker == "torch-compiled" and (done.returncode != 0 or not lines):
        return None  # torch.compile is optional: where it fails, the row says so
    if done.returncode != 0 or not lines:
        sys.exit(f"error: the {worker} {task} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def save_torch_weights(config: dict, path):
    """Random megabyte-pytorch weights as safetensors (made in a torch-only process)."""
    code = (
        "import json, sys, torch; sys.path.insert(0, %r); from benchmark import torch_arguments; "
        "from MEGABYTE_pytorch import MEGABYTE; from safetensors.torch import save_file; torch.manual_seed(0); "
        "save_file(MEGABYTE(**torch_arguments(json.loads(%r))).state_dict(), %r)"
        % (os.path.dirname(os.path.abspath(__file__)), json.dumps(config), path)
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def orchestrate(args):
    rows = []
    for config in args.configs:
        weights, torch_generate = None, []
        torch_too = has_torch(args.models[config])  # an architecture megabyte-pytorch lacks has MLX rows only
        for task in args.tasks:
            if task == "generate-spec":
                rows.append(speculative_row(config, args))
                continue
            generating = task.startswith("generate")
            results = {"torch": list(torch_generate) if generating else [], "mlx": [], "torch-compiled": []}
            compiled = torch_too and args.torch_compile and task in ("train", "train-bf16", "forward")
            if generating and weights is None and torch_too:
                weights = os.path.join(tempfile.mkdtemp(), "weights.safetensors")
                save_torch_weights(args.models[config], weights)
            for round_ in range(args.rounds):
                order = ("torch", "mlx") if round_ % 2 == 0 else ("mlx", "torch")
                order = order if torch_too else ("mlx",)
                for worker in order + (("torch-compiled",) if compiled else ()):
                    if generating and worker == "torch" and len(results["torch"]) >= args.torch_generate_rounds:
                        continue  # a full-recompute round costs minutes; one or two are enough
                    steps = 1 if generating and worker == "torch" else None
                    warmup = 0 if generating and worker == "torch" else None
                    result = measure(worker, task, config, args, weights if generating else None, steps, warmup)
                    if result is None:
                        print(f"  {config} {task}: torch.compile failed; no compiled row", file=sys.stderr, flush=True)
                        compiled = False
                        continue
                    results[worker].append(result)
                    if generating and worker == "torch":
                        torch_generate.append(result)
                    print(
                        f"  {config} {task} round {round_ + 1} {worker}: "
                        f"{statistics.median(result['rates']):,.1f} bytes/s, "
                        f"peak memory ({result['memory_kind']}) {result['memory_gb']:.2f} GB",
                        file=sys.stderr,
                        flush=True,
                    )
            row = summarise(config, task, results, args.device, args.models[config], args.bandwidth)
            row["batch"] = args.batch
            if generating:
                row["prompt_bytes"], row["new_bytes"] = prompt_length(args.models[config], args), args.new_bytes
            rows.append(row)
            print_row(row)
            if args.json:  # after every row: a failure later keeps what was measured
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=2)
    return rows


def speculative_row(config, args) -> dict:
    """The generate-spec row of a config: plain against speculative decoding of its trained weights."""
    row = {"config": config, "task": "generate-spec", "device": args.device, "draft": args.draft_model}
    weights = TRAINED.get(config)
    if weights is None or not os.path.isfile(os.path.join(weights, "model.safetensors")):
        row["note"] = (
            "no trained weights in the repository for this config: a draft's acceptance on random ones means nothing"
        )
        print(f"{config:>7} {'generate-spec':>18}: skipped: {row['note']}", flush=True)
        return row
    results = [measure("mlx", "generate-spec", config, args, os.path.abspath(weights)) for _ in range(args.rounds)]
    plain = statistics.median(r for result in results for r in result["plain_rates"])
    spec = statistics.median(r for result in results for r in result["rates"])
    row.update(
        weights=os.path.relpath(weights),
        num_draft=args.num_draft,
        plain_bytes_per_s=plain,
        mlx_bytes_per_s=spec,
        speed_ratio=spec / plain,
        acceptance=statistics.median(r["acceptance"] for r in results),
        bytes_per_check=statistics.median(r["bytes_per_check"] for r in results),
        new_bytes=args.new_bytes,
    )
    print(
        f"{config:>7} {'generate-spec':>18}: plain {plain:,.1f} B/s  speculative {spec:,.1f} B/s  x{spec / plain:.2f}   "
        f"draft {args.draft_model} (num_draft {args.num_draft}): {100 * row['acceptance']:.0f}% of proposals accepted, "
        f"{row['bytes_per_check']:.1f} bytes per check   ({row['weights']}, greedy, {args.new_bytes} bytes after each "
        f"of {len(SPEC_PROMPTS)} story openings; the same bytes)",
        flush=True,
    )
    return row


def summarise(config, task, results, device, model: dict, bandwidth: float | None = None):
    def median(worker, key):
        values = [v for r in results[worker] for v in (r[key] if isinstance(r[key], list) else [r[key]])]
        return statistics.median(values) if values else None

    row = {
        "config": config,
        "task": task,
        "device": device,
        "batch": None,
        "torch_bytes_per_s": median("torch", "rates"),
        "mlx_bytes_per_s": median("mlx", "rates"),
        "torch_memory_gb": median("torch", "memory_gb"),
        "mlx_memory_gb": median("mlx", "memory_gb"),
        "torch_memory_kind": results["torch"][0]["memory_kind"] if results["torch"] else None,
        "mlx_memory_kind": results["mlx"][0]["memory_kind"],
        "mlx_peak_gb": median("mlx", "mlx_peak_gb"),
    }
    if results.get("torch-compiled"):
        row["torch_compiled_bytes_per_s"] = median("torch-compiled", "rates")
    torch_rate = max(row["torch_bytes_per_s"] or 0, row.get("torch_compiled_bytes_per_s", 0))
    row["speed_ratio"] = row["mlx_bytes_per_s"] / torch_rate if torch_rate else None
    row["memory_ratio"] = row["mlx_memory_gb"] / row["torch_memory_gb"] if row["torch_memory_gb"] else None
    if task.startswith("generate") and bandwidth:
        row["weight_mb_per_byte"] = median("mlx", "weight_bytes") / 1e6
        row["bandwidth_gb_per_s"] = bandwidth / 1e9
        row["floor_bytes_per_s"] = bandwidth / median("mlx", "weight_bytes")
    if task.startswith("train"):
        ceilings = [median("mlx", "matmul_gflops")]
        if results["torch"] and all(
            "matmul_gflops" in r for r in results["torch"]
        ):  # on CUDA: the faster framework's matmul
            ceilings.append(median("torch", "matmul_gflops"))
        ceiling = max(ceilings)
        flops = flops_per_byte(model, training=True)
        row.update(
            matmul_gflops=ceiling,
            mflops_per_byte=flops / 1e6,
            torch_mfu=(row["torch_bytes_per_s"] or 0) * flops / (ceiling * 1e9),
            mlx_mfu=row["mlx_bytes_per_s"] * flops / (ceiling * 1e9),
        )
    return row


def floor_text(row) -> str:
    """A generate row's floor: what one read of the weights per byte allows, and the measured rate's share."""
    if "floor_bytes_per_s" not in row:
        return ""
    return (
        f"   floor {row['floor_bytes_per_s']:,.0f} B/s ({row['weight_mb_per_byte']:.2f} MB of weights per byte at "
        f"{row['bandwidth_gb_per_s']:.1f} GB/s), measured x{row['mlx_bytes_per_s'] / row['floor_bytes_per_s']:.2f} of it"
    )


def print_row(row):
    if row["torch_bytes_per_s"] is None:  # MLX only (no megabyte-pytorch counterpart)
        line = (
            f"{row['config']:>7} {row['task']:>18}: mlx {row['mlx_bytes_per_s']:>10,.1f} B/s   "
            f"peak memory {row['mlx_memory_gb']:.2f} GB ({row['mlx_memory_kind']}) (MLX peak {row['mlx_peak_gb']:.2f} GB)"
        )
        if "mlx_mfu" in row:
            line += f"   MFU {100 * row['mlx_mfu']:.0f}% of {row['matmul_gflops']:.0f} GFLOP/s ({row['mflops_per_byte']:.1f} MFLOP/byte)"
        print(line + floor_text(row), flush=True)
        return
    compiled = f" (compiled {row['torch_compiled_bytes_per_s']:,.1f})" if "torch_compiled_bytes_per_s" in row else ""
    line = (
        f"{row['config']:>7} {row['task']:>18}: torch {row['torch_bytes_per_s']:>10,.1f} B/s{compiled}  "
        f"mlx {row['mlx_bytes_per_s']:>10,.1f} B/s  speed x{row['speed_ratio']:.2f}   "
        f"peak memory torch {row['torch_memory_gb']:.2f} GB ({row['torch_memory_kind']})  "
        f"mlx {row['mlx_memory_gb']:.2f} GB ({row['mlx_memory_kind']}) "
        f"(MLX peak {row['mlx_peak_gb']:.2f} GB)  memory x{row['memory_ratio']:.2f}"
    )
    if "prompt_bytes" in row:
        line += f"   ({row['new_bytes']} bytes after a {row['prompt_bytes']}-byte prompt)"
    if "mlx_mfu" in row:
        line += (
            f"   MFU torch {100 * row['torch_mfu']:.0f}% mlx {100 * row['mlx_mfu']:.0f}% of "
            f"{row['matmul_gflops']:.0f} GFLOP/s ({row['mflops_per_byte']:.1f} MFLOP/byte)"
        )
    print(line + floor_text(row), flush=True)


def default_device() -> str:
    """gpu when MLX has one here (MLX's own default), else cpu."""
    code = "import mlx_megabyte, mlx.core as mx; print('gpu' if mx.is_available(mx.gpu) else 'cpu')"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return found.stdout.strip() or "cpu"


def build_parser():
    """The command line people use; every flag checked as it is read, as in the package's commands."""
    from mlx_megabyte import cli  # here, not at the top: see worker_parser

    parser = cli.parser("tools/benchmark.py", __doc__)
    parser.add_argument(
        "--configs",
        type=cli.listed(choices=tuple(configurations())),
        default="seed",
        help=f"comma-separated: {', '.join(configurations())}",
    )
    parser.add_argument(
        "--tasks",
        type=cli.listed(choices=TASKS),
        default="train,forward,generate",
        help=f"comma-separated: {', '.join(TASKS)}",
    )
    parser.add_argument("--device", choices=("cpu", "gpu"), help="where both run (default: the GPU when MLX has one)")
    parser.add_argument(
        "--batch", type=cli.number(int, 1), help="sequences per step (train, forward); default 4 on CPUs, 32 on GPUs"
    )
    parser.add_argument("--torch-compile", action="store_true", help="also time megabyte-pytorch under torch.compile")
    parser.add_argument("--steps", type=cli.number(int, 1), default=3, help="measured steps per process")
    parser.add_argument(
        "--warmup",
        type=cli.number(int, 0),
        default=3,
        help="unmeasured steps per process (compilation, and the allocator settling)",
    )
    parser.add_argument(
        "--rounds", type=cli.number(int, 1), default=2, help="processes per implementation, alternating"
    )
    parser.add_argument(
        "--prompt-bytes",
        type=cli.number(int, 1),
        default=1024,
        help="generate: prompt length (shortened to fit the context with the new bytes)",
    )
    parser.add_argument("--new-bytes", type=cli.number(int, 1), default=512, help="generate: bytes to generate")
    parser.add_argument(
        "--torch-generate-rounds",
        type=cli.number(int, 0),
        default=1,
        help="full-recompute rounds (slow; 0: MLX rows only)",
    )
    parser.add_argument(
        "--draft-model",
        default=SPEC_DRAFT,
        help=f"generate-spec: the draft, as generate's --draft-model takes it (default {SPEC_DRAFT})",
    )
    parser.add_argument(
        "--num-draft",
        type=cli.number(int, 1),
        default=SPEC_NUM_DRAFT,
        help=f"generate-spec: bytes proposed per check (default {SPEC_NUM_DRAFT})",
    )
    parser.add_argument("--json", help="also write the results here")
    return parser


def worker_parser():
    """The command line of one measurement process, which `measure` writes (not people): parsed without
    mlx_megabyte, whose BLAS preload would slow a torch worker ~5x."""
    parser = argparse.ArgumentParser(prog="tools/benchmark.py --worker")
    parser.add_argument("--worker", choices=("torch", "torch-compiled", "mlx"), required=True)
    for name in ("--task", "--config", "--weights", "--draft"):
        parser.add_argument(name)
    parser.add_argument("--device", default="cpu")
    for name in ("--batch", "--steps", "--warmup", "--prompt-bytes", "--new-bytes", "--num-draft"):
        parser.add_argument(name, type=int)
    return parser


def main():
    if "--worker" in sys.argv[1:]:
        return worker_main(worker_parser().parse_args())
    from mlx_megabyte import cli

    cli.cli(run_benchmark)()  # one-line errors and exit codes, as the package's commands give them


def run_benchmark(argv=None):
    from mlx_megabyte.errors import UserError

    args = build_parser().parse_args(argv)
    if args.json and os.path.isdir(args.json):  # found out only after the first row otherwise
        raise UserError(f"--json {args.json} is a directory; give the file to write the results to")
    found = default_device()
    if args.device == "gpu" and found != "gpu":  # before any worker: each would fail in turn, after the torch ones
        raise UserError("--device gpu: this MLX has no GPU backend (docs/performance.md: NVIDIA GPUs)")
    args.device = args.device or found
    args.batch = args.batch or (32 if args.device == "gpu" else 4)
    args.models = configurations()
    # The floor beside generate rows: this CPU's read bandwidth (a GPU's would need measuring on it).
    generating = args.device == "cpu" and any(t.startswith("generate") for t in args.tasks)
    args.bandwidth = memory_bandwidth() if generating else None
    orchestrate(args)


if __name__ == "__main__":
    main()
