#!/usr/bin/env python
"""Where a training step's time goes, by operation, for any architecture and preset; or, with
`--mode decode`, where a cached decoding step's time goes.

    python tools/profile_step.py --arch megabyte --preset small
    python tools/profile_step.py --arch spacebyte --preset 40m --batch 4 --variant cpu
    python tools/profile_step.py --arch hnet --preset small --mode decode

One forward pass records every call of the step's building blocks with its shapes: the matmuls of each
Linear layer (and of kernels.projection, several layers' weights side by side), the attention, RMSNorm, GELU, LayerNorm and embedding calls and the loss. Each distinct
call is then timed on its own, forward and backward (compiled, on random inputs of the same shapes),
and counted as often as the step makes it; the optimizer update is timed on the model's parameters.
The table compares their sum with the whole compiled step: the rest ("other") is the elementwise glue
(residual adds, concatenations, slices, reshapes) that no building block owns. Timings are medians, on
whatever the CPU is doing meanwhile: compare shares, not absolute figures across runs.

`--mode decode` prefills a prompt (`--prompt-bytes` random bytes) and feeds `--steps` bytes through
`DecodingState.step` (the model's own greedy choices, at batch `--batch`), as generation does, and
reports per step: building the step's graph in Python (any host synchronisation inside the step shows
up here: the step waits for its input), evaluating it, and the two pipelined as generation runs them
(the next step built while this one computes); how often a step began a patch and what such steps
cost against the others; and, each part of the model timed on its own by evaluating its inputs before
and its output after it (the model's top-level layers: a stage, a group of blocks, the router ...),
where the time of an unpipelined step goes. The host-synchronisation check feeds a byte that is still
being computed (behind a slow product) and sees whether building the step waited for it.
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


# --- decoding -------------------------------------------------------------------------------------------


def _median_ms(values) -> float:
    return statistics.median(values) * 1e3 if values else 0.0


def decode_profile(arch: str, preset: str, batch: int, steps: int, prompt_bytes: int) -> list[tuple[str, str]]:
    """(label, value) rows for `--mode decode` (see the module docstring)."""
    from mlx_megabyte import cpu

    config = architecture(arch).presets[preset]
    model = build(config)
    model.eval()
    mx.eval(model.parameters())
    length = max(1, min(prompt_bytes, config.context_length - steps - 1))
    ids = mx.array(np.random.default_rng(0).integers(0, 256, (batch, length)))
    rows = []
    with cpu.single_threaded_blas():  # as generate_step decodes
        state = model.make_cache(batch)
        y = mx.argmax(state.prefill(ids), axis=-1)
        mx.eval(y)
        fed = []
        building, evaluating, patch, other = [], [], [], []
        for i in range(steps + 3):  # 3 warm-up steps: traces of compiled steps
            tic = time.perf_counter()
            logits = state.step(y)
            built = time.perf_counter()
            y = mx.argmax(logits, axis=-1)
            mx.eval(y)
            done = time.perf_counter()
            if i >= 3:
                building.append(built - tic)
                evaluating.append(done - built)
                (patch if any(state.patch_started()) else other).append(done - tic)
            fed.append(y)
        rows.append(("step: building the graph (Python, host syncs included)", f"{_median_ms(building):.3f} ms"))
        rows.append(("step: evaluating it", f"{_median_ms(evaluating):.3f} ms"))
        rows.append(("step, unpipelined (mean)", f"{1e3 * (sum(building) + sum(evaluating)) / steps:.3f} ms"))
        rows.append(
            (
                f"steps that began a patch: {len(patch)} of {steps}",
                f"{_median_ms(patch):.3f} ms against {_median_ms(other):.3f} ms (medians)",
            )
        )
        rows.append(("pipelined as generate_step runs it", f"{pipelined(model, ids, steps):,.1f} bytes/s"))
        rows.append(("host sync inside the step", host_sync(state, y)))
        rows += part_times(model, state, fed[-1], steps)
    return rows


def pipelined(model, ids, steps: int) -> float:
    """Bytes per second of generate_step at greedy, the graph of each step built while the last computes."""
    from mlx_megabyte.generation import generate_step
    from mlx_megabyte.sampling import make_sampler

    tic = None
    for i, y in zip(range(steps + 3), generate_step(model, ids, make_sampler(0.0))):
        y.tolist()
        if i == 2:
            tic = time.perf_counter()
    return steps / (time.perf_counter() - tic)


def host_sync(state, y) -> str:
    """Whether building a step waits for its input byte: fed a byte that a slow product still computes."""
    a = mx.random.normal((1024, 1024))
    mx.eval(a)

    def slow():  # 8 products of 1024^2 matrices, left lazy
        out = a
        for _ in range(8):
            out = out @ a
        return mx.sum(out)

    tic = time.perf_counter()
    mx.eval(slow())
    compute = time.perf_counter() - tic
    pending = y + (slow() * 0).astype(y.dtype)  # y itself, once the products are done
    tic = time.perf_counter()
    logits = state.step(pending)
    building = time.perf_counter() - tic
    mx.eval(logits)
    waited = building > compute / 2
    verdict = "yes: the step waited for its input byte" if waited else "none: the step was built before its input"
    return f"{verdict} (built in {building * 1e3:.1f} ms behind {compute * 1e3:.1f} ms of pending work)"


def part_times(model, state, byte, steps: int) -> list[tuple[str, str]]:
    """Each top-level layer of the model timed on its own during `steps` steps: its inputs evaluated before
    the call, the call (building), its output evaluated after; compiled steps are run uncompiled here
    (mx.disable_compile), so the parts add up to an unpipelined, uncompiled step."""
    names = {}
    for name, child in model.children().items():
        for i, module in enumerate(child if isinstance(child, list) else [child]):
            if isinstance(module, nn.Module):
                names[id(module)] = name if not isinstance(child, list) else f"{name}[{i}]"
    # A group of blocks (SpaceByte's global_blocks) is one part; stages stay apart.
    group = {k: v.split("[")[0] if "blocks" in v or "layers" in v else v for k, v in names.items()}
    spent: dict[str, list[float]] = {}
    originals = {}

    def timed_call(original):
        def call(module, *args, **kwargs):
            label = group.get(id(module))
            if label is None:
                return original(module, *args, **kwargs)
            mx.eval([a for a in args if isinstance(a, mx.array)])
            tic = time.perf_counter()
            out = original(module, *args, **kwargs)
            mx.eval(out)
            spent.setdefault(label, []).append(time.perf_counter() - tic)
            return out

        return call

    classes = {type(m) for m in _modules(model) if id(m) in group}
    for cls in classes:
        originals[cls] = cls.__call__
        cls.__call__ = timed_call(cls.__call__)
    total = 0.0
    try:
        mx.disable_compile()
        y = byte
        for _ in range(steps):
            tic = time.perf_counter()
            y = mx.argmax(state.step(y), axis=-1)
            mx.eval(y)
            total += time.perf_counter() - tic
    finally:
        mx.enable_compile()
        for cls, original in originals.items():
            cls.__call__ = original
    rows = [("parts, uncompiled, each evaluated on its own (per step, mean):", "")]
    for label, values in sorted(spent.items(), key=lambda kv: -sum(kv[1])):
        rows.append((f"  {label} ({len(values)} calls)", f"{1e3 * sum(values) / steps:.3f} ms"))
    rest = total - sum(sum(v) for v in spent.values())
    rows.append(("  the rest (boundary decisions, cache appends, glue, host syncs)", f"{1e3 * rest / steps:.3f} ms"))
    rows.append(("  whole step, so run", f"{1e3 * total / steps:.3f} ms"))
    return rows


def _modules(model):
    for child in model.children().values():
        yield from (child if isinstance(child, list) else [child])


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
    parser.add_argument(
        "--mode", choices=("train", "decode"), default="train", help="profile a training step or a cached decoding step"
    )
    parser.add_argument("--steps", type=number(int, 1), default=64, help="decode: bytes fed through the cached step")
    parser.add_argument("--prompt-bytes", type=number(int, 1), default=512, help="decode: prompt prefilled first")
    args = parser.parse_args(argv)
    try:
        config = architecture(args.arch).presets[args.preset]
    except (KeyError, ValueError):
        parser.error(f"unknown architecture or preset: --arch {args.arch} --preset {args.preset}")
    if args.mode == "decode":
        batch = args.batch if "--batch" in (argv if argv is not None else sys.argv) else 1
        with kernels.forced(args.variant) if args.variant else _nothing():
            rows = decode_profile(args.arch, args.preset, batch, args.steps, args.prompt_bytes)
        print(f"{args.arch} {args.preset}, decoding at batch {batch}, kernels: {args.variant or kernels.variant()}")
        for label, value in rows:
            print(f"  {label:<66} {value}")
        return
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
