"""A model size chosen for the time you have: the logic behind `train --preset auto --time-budget S`.

The rule. In a fixed training time a larger model sees fewer bytes (it trains slower), and a model
trains best for its compute when it sees about a fixed number of bytes per parameter (Hoffmann et al.
2022, "Chinchilla", found about 20 tokens per parameter for token LMs). So, for a budget of S seconds,
each candidate size i would see

    bytes_i = S x (its measured training bytes/s on this machine)

bytes, `bytes_i / parameters_i` bytes per parameter, and the rule picks the candidate whose bytes per
parameter is nearest the target R in ratio (the smallest |ln(bytes_i / parameters_i / R)|; a tie goes
to the smaller model, which is cheaper to run). Near the optimum, loss depends about evenly on log
size either side, and bytes per parameter falls about as the square of size at a fixed time (bytes/s
about as 1 / size), so the nearest ratio is the nearest size.

R is a parameter (`bytes_per_parameter=`). DEFAULT_BYTES_PER_PARAMETER started as Chinchilla's 20 taken
one token per byte and stays 20 by measurement: over the size sweeps in docs/parameters.md, "Model size
against the time you have" (seven of them: widths 3x apart, 300 and 1,200 s, two corpora, two
architectures, two CPUs), targets of 20 and 50 lost the least against each sweep's best, 10 next
(`tools/plot_sizes.py --targets`). No single target is right at every budget there: the winners saw from 0.35 to 30 bytes
per parameter, more at longer budgets.

Measuring and choosing are apart: `measure` times a candidate's real training step for a few seconds
(MLX, the compiled TrainStep); `choose` is arithmetic on a speed table, testable on made-up speeds.
`measure_sizes` measures candidates smallest first and stops at the first one below the target: a larger
model trains no faster and has more parameters, so it would be further below, and is not worth timing
(a 40M-parameter model takes ~13 s a step on two CPU cores).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

DEFAULT_BYTES_PER_PARAMETER = 20.0  # the rule's target R: docs/parameters.md, Model size against the time you have
# How long `measure` times a candidate: steps until both the seconds and the steps have passed, first
# untimed (the first call compiles the step; the next few still grow MLX's buffer cache), then timed.
# Both bounds, because a count alone misread a slow model: on the AMD VM `small` was timed for two
# steps after two (4.3 s) and read 3,843 bytes/s where it trained at 4,927. How close the reading comes
# to the speed a whole run keeps up: docs/parameters.md, "The rule at a budget the study did not use".
DEFAULT_WARMUP_SECONDS = 1.0
DEFAULT_WARMUP_STEPS = 2
DEFAULT_MEASURE_SECONDS = 3.0
DEFAULT_MEASURE_STEPS = 3


@dataclass(frozen=True)
class Candidate:
    """A model size that could be trained: its name (a preset), its parameters, and how fast it trains
    here (bytes of training steps per second). `bytes_per_step` (optional) gives the steps a budget
    allows, for --iters; `measured_steps` and `measured_seconds` say what the speed rests on."""

    name: str
    parameters: int
    bytes_per_second: float
    bytes_per_step: int | None = None
    measured_steps: int | None = None
    measured_seconds: float | None = None

    def bytes_seen(self, seconds: float) -> float:
        return seconds * self.bytes_per_second

    def bytes_per_parameter(self, seconds: float) -> float:
        return self.bytes_seen(seconds) / self.parameters


@dataclass(frozen=True)
class Reason:
    """What the rule saw of one candidate at the budget."""

    name: str
    parameters: int
    bytes_per_second: float
    bytes_seen: float
    bytes_per_parameter: float
    distance: float  # |ln(bytes per parameter / the target)|: 0 is exactly on target
    steps: int | None  # training steps the budget allows, where the candidate's bytes per step is known
    chosen: bool


@dataclass(frozen=True)
class Choice:
    """The chosen size, and why: the budget, the rule's target and what each candidate would see."""

    chosen: Candidate
    time_budget: float
    bytes_per_parameter: float
    reasons: tuple[Reason, ...]
    unmeasured: tuple[str, ...] = ()  # larger candidates not timed (measure_sizes): they cannot be nearer

    @property
    def rule(self) -> str:
        return (
            f"the size whose bytes seen per parameter (time budget x measured training bytes/s / parameters) "
            f"is nearest {self.bytes_per_parameter:g} in ratio (a tie: the smaller)"
        )

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen.name,
            "time_budget": self.time_budget,
            "bytes_per_parameter": self.bytes_per_parameter,
            "rule": self.rule,
            "candidates": [asdict(reason) for reason in self.reasons],
            "unmeasured": list(self.unmeasured),
        }

    def explain(self) -> str:
        """What `--preset auto` prints before training: the choice, the rule, and the table behind it."""
        r = next(reason for reason in self.reasons if reason.chosen)
        lines = [
            f"--preset auto: {r.name} ({r.parameters:,} parameters) for {self.time_budget:,.0f} s of training",
            f"  it trains at {r.bytes_per_second:,.0f} bytes/s here: {r.bytes_seen:,.0f} bytes in the budget, "
            f"{_ratio(r.bytes_per_parameter)} per parameter",
            f"  rule: {self.rule}",
            f"    {'size':<8} {'parameters':>12} {'bytes/s':>10} {'bytes seen':>14} {'bytes/param':>11} {'steps':>8}",
        ]
        for r in self.reasons:
            steps = f"{r.steps:,}" if r.steps is not None else "-"
            lines.append(
                f"  {'*' if r.chosen else ' '} {r.name:<8} {r.parameters:>12,} {r.bytes_per_second:>10,.0f} "
                f"{r.bytes_seen:>14,.0f} {_ratio(r.bytes_per_parameter):>11} {steps:>8}"
            )
        if self.unmeasured:
            lines.append(
                f"  not timed: {', '.join(self.unmeasured)} (larger than one already below the target: "
                "they would see fewer bytes per parameter still)"
            )
        return "\n".join(lines)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _ratio(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def choose(
    candidates: Sequence[Candidate], time_budget: float, bytes_per_parameter: float = DEFAULT_BYTES_PER_PARAMETER
) -> Choice:
    """The candidate the rule (module docstring) picks for `time_budget` seconds of training."""
    if not candidates:
        raise ValueError("choose a size from at least one candidate")
    for value, what in ((time_budget, "the time budget"), (bytes_per_parameter, "bytes_per_parameter")):
        if not _positive(value):
            raise ValueError(f"{what} must be a positive number of seconds or bytes, got {value!r}")
    for candidate in candidates:
        if not (candidate.parameters > 0 and _positive(candidate.bytes_per_second)):
            raise ValueError(
                f"candidate {candidate.name!r} needs positive parameters and bytes/s, got "
                f"{candidate.parameters!r} and {candidate.bytes_per_second!r}"
            )

    def distance(candidate: Candidate) -> float:
        return abs(math.log(candidate.bytes_per_parameter(time_budget) / bytes_per_parameter))

    # Rounded, so that two candidates equally far either side are a tie, not a float's last bit.
    best = min(range(len(candidates)), key=lambda i: (round(distance(candidates[i]), 9), candidates[i].parameters))

    def reason(i: int, c: Candidate) -> Reason:
        seen = c.bytes_seen(time_budget)
        steps = int(seen // c.bytes_per_step) if c.bytes_per_step else None
        return Reason(
            c.name, c.parameters, c.bytes_per_second, seen, seen / c.parameters, distance(c), steps, i == best
        )

    reasons = tuple(reason(i, c) for i, c in enumerate(candidates))
    return Choice(candidates[best], time_budget, bytes_per_parameter, reasons)


def measure(
    name: str,
    config,
    seconds: float = DEFAULT_MEASURE_SECONDS,
    warmup_steps: int = DEFAULT_WARMUP_STEPS,
    clock: Callable[[], float] = time.perf_counter,
    *,
    warmup_seconds: float = DEFAULT_WARMUP_SECONDS,
    min_steps: int = DEFAULT_MEASURE_STEPS,
) -> Candidate:
    """Time `config`'s (a trainer.TrainingConfig) training step on random bytes: the trainer's own
    optimizer and compiled step, its batch size, accumulation, dtype and checkpointing, as train would
    run it. Untimed warm-up steps run until `warmup_steps` steps and `warmup_seconds` have both passed;
    then timed steps until `min_steps` steps and `seconds` have (the speed is their mean, as train's
    --time-budget adds up its step times). Data loading, validation and checkpoints are left out, as
    --time-budget leaves them out."""
    if not _positive(seconds) or warmup_steps < 0 or warmup_seconds < 0 or min_steps < 1:
        raise ValueError(
            f"measure for a positive number of seconds and steps after a warm-up of zero or more, got "
            f"{seconds!r} s and {min_steps!r} steps after {warmup_seconds!r} s and {warmup_steps!r} steps"
        )
    import mlx.core as mx
    import numpy as np

    from .models import build
    from .optim import LossScale, training_step

    mx.clear_cache()  # what an earlier candidate left: this one may be larger
    mx.random.seed(config.seed)
    model = build(config.model)
    model.train()
    model.set_grad_checkpoint(config.grad_checkpoint)
    step, optimizer = training_step(model, config)
    scaled = config.dtype == "float16"
    rows = config.batch_size * config.grad_accumulation_steps
    batch = np.random.default_rng(config.seed).integers(0, 256, (rows, config.model.context_length), dtype=np.uint8)

    def steps_for(least_seconds: float, least_steps: int) -> tuple[int, float]:
        start, steps = clock(), 0
        while True:
            mx.random.seed(config.seed + steps)  # the trainer reseeds every step (dropout), so time it too
            loss, norm = step(batch, LossScale.INITIAL if scaled else 1.0)
            mx.eval(loss, norm, model.parameters(), optimizer.state)
            steps += 1
            elapsed = clock() - start
            if steps >= least_steps and elapsed >= least_seconds:
                return steps, elapsed

    if warmup_steps or warmup_seconds:
        steps_for(warmup_seconds, warmup_steps)
    steps, elapsed = steps_for(seconds, min_steps)
    return Candidate(
        name,
        model.num_parameters(),
        steps * config.bytes_per_rank_step / elapsed,
        config.bytes_per_rank_step,
        steps,
        elapsed,
    )


def measure_sizes(
    configs: Mapping[str, object],
    time_budget: float,
    bytes_per_parameter: float = DEFAULT_BYTES_PER_PARAMETER,
    measure: Callable[[str, object], Candidate] = measure,
    progress=None,
) -> Choice:
    """The choice among `configs` (TrainingConfigs by name, smallest model first) for `time_budget`,
    timing them one at a time (`measure(name, config)`) until one falls below the target bytes per
    parameter; the larger ones are left untimed (module docstring) and named in the choice.
    `progress(name)` is called before each measurement."""
    names = list(configs)
    measured: list[Candidate] = []
    for name in names:
        if progress:
            progress(name)
        measured.append(measure(name, configs[name]))
        if measured[-1].bytes_per_parameter(time_budget) < bytes_per_parameter:
            break
    choice = choose(measured, time_budget, bytes_per_parameter)
    return Choice(
        choice.chosen, choice.time_budget, choice.bytes_per_parameter, choice.reasons, tuple(names[len(measured) :])
    )
