#!/usr/bin/env python
"""Where a training step's time goes, by operation, for any architecture and preset.

    python tools/profile_step.py --arch megabyte --preset small
    python tools/profile_step.py --arch spacebyte --preset 40m --batch 4 --variant cpu

One forward pass records every call of the step's building blocks with its shapes: the matmuls of each
Linear layer (and of kernels.projection, several layers' weights side by side), the attention, RMSNorm, GELU, LayerNorm and embedding calls and the loss. Each distinct
call is then timed on its own, forward and backward (compiled, on random inputs of the same shapes),
and counted as often as the step makes it; the optimizer update is timed on the model's parameters.
The table compares their sum with the whole compiled step: the rest ("other") is the elementwise glue
(residual adds, concatenations, slices, reshapes) that no building block owns. Timings are medians, on
whatever the CPU is doing meanwhile: compare shares, not absolute figures across runs.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# isort: off
import mlx_megabyte  # noqa: E402, F401  (before mlx.core: the BLAS preload)

# isort: on
import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten, tree_map, tree_unflatten  # noqa: E402

from mlx_megabyte import kernels  # noqa: E402
from mlx_megabyte.cli import cli, number  # noqa: E402
from mlx_megabyte.cli import parser as parser_for  # noqa: E402
from mlx_megabyte.models import architecture, build  # noqa: E402
from mlx_megabyte.optim import training_step  # noqa: E402
from mlx_megabyte.trainer import TrainingConfig  # noqa: E402

# The kernels.py functions whose calls are recorded (their non-array arguments are part of the call).
KERNEL_FUNCTIONS = ("projection", "self_attention", "attention", "rms_norm", "gelu", "cross_entropy")


def timed(function, *args, repeats: int = 7) -> float:
    """Median seconds of evaluating function(*args), after one warm-up call."""
    mx.eval(function(*args))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(function(*args))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


class Recorder:
    """Replaces the recorded functions (in kernels.py and wherever a module imported them) and the
    building blocks' __call__ with versions that count (name, shapes, settings)."""

    def __init__(self):
        self.calls: Counter = Counter()
        self.modules: dict[int, nn.Module] = {}  # modules are dicts: calls name them by id
        self.restore = []

    def __enter__(self):
        for name in KERNEL_FUNCTIONS:
            original = getattr(kernels, name)
            wrapper = self._function(name, original)
            for module in [m for key, m in sys.modules.items() if key.startswith("mlx_megabyte")]:
                for attribute, value in list(vars(module).items()):
                    if value is original:
                        setattr(module, attribute, wrapper)
                        self.restore.append((module, attribute, original))
        for cls, name in ((nn.Linear, "linear"), (nn.Embedding, "embedding"), (nn.LayerNorm, "layer_norm")):
            original = cls.__call__
            cls.__call__ = self._method(name, original)
            self.restore.append((cls, "__call__", original))
        return self

    def __exit__(self, *exc):
        for owner, attribute, original in reversed(self.restore):
            setattr(owner, attribute, original)

    def _function(self, name, original):
        def record(*args, **kwargs):
            key = tuple((tuple(a.shape), str(a.dtype)) if isinstance(a, mx.array) else a for a in args)
            self.calls[(name, key, tuple(sorted(kwargs.items())))] += 1
            return original(*args, **kwargs)

        return record

    def _method(self, name, original):
        def record(module, x):
            if name == "linear":  # the GEMM's shapes and whether a bias is added
                key = ((tuple(x.shape), tuple(module.weight.shape), "bias" in module),)
            elif name == "embedding":
                key = ((tuple(x.shape), tuple(module.weight.shape)),)
            else:
                key = ((tuple(x.shape), module.dims, module.eps),)
            self.modules[id(module)] = module
            self.calls[(name, key, (("module", id(module)),))] += 1
            return original(module, x)

        return record


def forward_backward_time(name: str, key: tuple, settings: tuple, modules: dict) -> float:
    """Seconds of one call's forward and backward pass on random inputs of its shapes."""
    rng = np.random.default_rng(0)

    def array(shape, dtype="mlx.core.float32"):
        if "int" in dtype:
            return mx.array(rng.integers(0, 256, size=shape).astype(np.int32))
        return mx.array(rng.normal(size=shape).astype(np.float32))

    kwargs = {k: v for k, v in settings if k != "module"}
    if name in KERNEL_FUNCTIONS:
        inputs = [array(*a) if isinstance(a, tuple) and len(a) == 2 and isinstance(a[0], tuple) else a for a in key]
        arrays = [i for i, a in enumerate(inputs) if isinstance(a, mx.array) and mx.issubdtype(a.dtype, mx.floating)]
        function = getattr(kernels, name)

        def run(*values):
            full = list(inputs)
            for i, v in zip(arrays, values):
                full[i] = v
            return function(*full, **kwargs)

        primals = [inputs[i] for i in arrays]
    else:  # a layer: the gradient of its parameters (and of its input, unless that is byte ids)
        module = modules[dict(settings)["module"]]
        x = array(key[0][0], "int" if name == "embedding" else "float")
        saved = module.trainable_parameters()
        names, values = zip(*tree_flatten(saved))

        def run(*primals):
            module.update(tree_unflatten(list(zip(names, primals[: len(names)]))))
            out = module(x if name == "embedding" else primals[-1])
            module.update(saved)
            return out

        primals = list(values) + ([] if name == "embedding" else [x])
    cotangent = mx.random.normal(run(*primals).shape)
    # Every array an input: arrays a compiled function captures are constants, copied at each call.
    step = mx.compile(lambda cotangent, *p: mx.vjp(run, list(p), [cotangent]))
    return timed(step, cotangent, *primals)


CATEGORIES = {
    "linear": "matmuls (Linear layers, forward + backward)",
    "projection": "matmuls (Linear layers, forward + backward)",
    "self_attention": "attention",
    "attention": "attention",
    "rms_norm": "RMSNorm (+ token shift)",
    "gelu": "GELU",
    "cross_entropy": "cross-entropy",
    "embedding": "embeddings",
    "layer_norm": "LayerNorm",
}


def profile(arch: str, preset: str, batch: int, repeats: int, verbose: bool = False) -> list[tuple[str, int, float]]:
    config = architecture(arch).presets[preset]
    model = build(config)
    model.train()
    ids = mx.array(np.random.default_rng(0).integers(0, 256, (batch, config.context_length)))
    step, optimizer = training_step(model, TrainingConfig(model=config, iters=100, warmup_steps=0, grad_clip=1.0))
    whole = timed(lambda: step(ids) + (model.parameters(), optimizer.state), repeats=repeats)

    with Recorder() as recorder:
        from mlx_megabyte.models import loss_fn

        mx.eval(loss_fn(model, ids))
    rows: dict[str, list] = {}
    for (name, key, settings), count in recorder.calls.items():
        seconds = forward_backward_time(name, key, settings, recorder.modules) * count
        if verbose:
            shapes = ", ".join(str(k[0] if isinstance(k, tuple) and k and isinstance(k[0], tuple) else k) for k in key)
            print(f"    {name:<15} x{count:<3} {seconds * 1e3:8.2f} ms  {shapes}")
        row = rows.setdefault(CATEGORIES[name], [0, 0.0])
        row[0] += count
        row[1] += seconds
    gradients = tree_map(lambda p: mx.random.normal(p.shape) * 1e-3, model.trainable_parameters())
    state = [model.state, optimizer.state]
    update = mx.compile(lambda g: optimizer.clip_and_update(model, g, 1.0), inputs=state, outputs=state)
    rows["optimizer (clip + AdamW)"] = [1, timed(lambda: (update(gradients), model.parameters(), optimizer.state))]
    listed = sorted(((k, v[0], v[1]) for k, v in rows.items()), key=lambda r: -r[2])
    counted = sum(r[2] for r in listed)
    listed.append(("other (residuals, concatenations, slices, ...)", 0, max(whole - counted, 0.0)))
    listed.append(("whole compiled step", 0, whole))
    return listed


@cli
def main(argv=None):
    parser = parser_for("tools/profile_step.py", __doc__)
    parser.add_argument(
        "--arch", default="megabyte", help="an architecture (python -m mlx_megabyte.train --help lists them)"
    )
    parser.add_argument("--preset", default="small", help="one of the architecture's presets")
    parser.add_argument("--batch", type=number(int, 1), default=4, help="sequences per step")
    parser.add_argument("--variant", choices=kernels.VARIANTS, help="force a kernel variant (default: the device's)")
    parser.add_argument("--repeats", type=number(int, 1), default=7, help="timed repetitions of each piece")
    parser.add_argument("--verbose", action="store_true", help="also list every distinct call with its shapes")
    args = parser.parse_args(argv)
    try:
        config = architecture(args.arch).presets[args.preset]
    except (KeyError, ValueError):
        parser.error(f"unknown architecture or preset: --arch {args.arch} --preset {args.preset}")
    with kernels.forced(args.variant) if args.variant else _nothing():
        rows = profile(args.arch, args.preset, args.batch, args.repeats, args.verbose)
    whole = rows[-1][2]
    print(
        f"{args.arch} {args.preset}, batch {args.batch} x {config.context_length} bytes, kernels: "
        f"{args.variant or kernels.variant()} ({kernels.native_status})"
    )
    for name, calls, seconds in rows:
        share = f"{100 * seconds / whole:5.1f}%" if name != "whole compiled step" else ""
        print(f"  {name:<48} {calls:>5}  {seconds * 1e3:9.1f} ms  {share}")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
