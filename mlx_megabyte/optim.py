"""The optimisation step: AdamW (1-D parameters undecayed; clipping and the update in one native pass on
CPUs), its learning-rate schedule, dynamic loss scaling for float16, and the compiled `TrainStep` that
does a whole step, and `training_step`, which builds the optimizer and step a TrainingConfig asks for.
No data, console or run directory: tools/benchmark.py times the step alone."""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from . import kernels
from .checkpoint import assign_leaves
from .models import summed_training_loss
from .runtime import DTYPES


class AdamW(optim.AdamW):
    """AdamW that leaves 1-D parameters (norm gains, biases, start tokens) undecayed, as nanoGPT does:
    decaying a norm's gain only fights the normalisation."""

    def apply_single(self, gradient, parameter, state):
        if parameter.ndim < 2:
            return optim.Adam.apply_single(self, gradient, parameter, state)
        return super().apply_single(gradient, parameter, state)

    def clip_and_update(self, model, gradients, max_norm: float) -> mx.array:
        """`optim.clip_grad_norm(gradients, max_norm)` (0: unclipped) and `update(model, ...)` in one;
        returns the gradients' global norm. Where kernels.fused_adamw allows, both are one native pass
        over every parameter instead of a dozen elementwise passes each (the 40m preset's update took
        500 ms of a ~3 s step on a 2-core CPU); otherwise MLX's own functions."""
        flat = tree_flatten(gradients)
        parameters = dict(tree_flatten(model.trainable_parameters()))
        if not kernels.fused_adamw([parameters[k] for k, _ in flat] + [g for _, g in flat]):
            if max_norm > 0:
                gradients, norm = optim.clip_grad_norm(gradients, max_norm)
            else:
                norm = mx.sqrt(sum(mx.sum(g.astype(mx.float32) ** 2) for _, g in flat))
            self.update(model, gradients)
            return norm
        if not self._initialized:
            self.init(gradients)
        for name, scheduler in self._schedulers.items():  # as Optimizer.apply_gradients does
            self.state[name] = scheduler(self.step)
        self.state["step"] = self.step + 1
        states = [_leaf(self.state, name) for name, _ in flat]  # each parameter's {"m", "v"}
        params = [parameters[name] for name, _ in flat]
        norm, new, first, second = kernels.adamw(
            self.learning_rate.astype(mx.float32),
            [g for _, g in flat],
            params,
            [s["m"] for s in states],
            [s["v"] for s in states],
            [self.weight_decay if p.ndim >= 2 else 0.0 for p in params],
            self.betas,
            self.eps,
            max_norm,
        )
        for state, m, v in zip(states, first, second):
            state["m"], state["v"] = m, v
        model.update(tree_unflatten(list(zip([name for name, _ in flat], new))))
        return norm


def _leaf(tree, dotted: str):
    for part in dotted.split("."):
        tree = tree[int(part)] if isinstance(tree, list) else tree[part]
    return tree


def learning_rate_schedule(config):
    """Linear warm-up to the peak, then cosine decay to a tenth of it at the last step."""
    peak, warmup = config.learning_rate, min(config.warmup_steps, config.iters - 1)
    decay = optim.cosine_decay(peak, max(config.iters - warmup, 1), end=peak / 10)
    if warmup == 0:
        return decay
    return optim.join_schedules([optim.linear_schedule(peak / warmup, peak, warmup), decay], [warmup])


def make_optimizer(config) -> AdamW:
    return AdamW(learning_rate=learning_rate_schedule(config), weight_decay=config.weight_decay)


class LossScale:
    """Dynamic loss scaling for float16, which overflows above 65,504: the loss is multiplied by `scale`
    before the backward pass and the gradients divided by it after. A step whose gradients overflow is
    skipped and the scale halves; after `growth_interval` good steps in a row it doubles."""

    INITIAL = 2.0**15
    GROWTH_INTERVAL = 2000
    SMALLEST = 1.0  # below this, float16 cannot hold the run's activations even unscaled

    def __init__(self, scale: float | None = None, good_steps: int = 0):
        self.scale = self.INITIAL if scale is None else scale
        self.good_steps = good_steps

    def update(self, applied: bool) -> None:
        if not applied:
            self.scale, self.good_steps = self.scale / 2, 0
            return
        self.good_steps += 1
        if self.good_steps == self.GROWTH_INTERVAL:
            self.scale, self.good_steps = self.scale * 2, 0

    @property
    def state(self) -> dict:
        return {"scale": self.scale, "good_steps": self.good_steps}


def apply_gradients(model, optimizer, grads, grad_clip: float, loss_scaling: bool) -> tuple[mx.array, mx.array]:
    """Clip and apply `grads` (traced inside TrainStep's compiled functions): (gradient norm, whether the
    step was applied). With loss scaling, a step whose gradients are not finite is computed and thrown
    away: weights and optimizer state keep their values."""
    if not loss_scaling:
        return optimizer.clip_and_update(model, grads, grad_clip), mx.array(True)
    if grad_clip > 0:
        clipped, norm = optim.clip_grad_norm(grads, grad_clip)
    else:
        clipped, norm = grads, mx.sqrt(sum(mx.sum(g.astype(mx.float32) ** 2) for _, g in tree_flatten(grads)))
    finite = mx.all(mx.stack([mx.all(mx.isfinite(g)) for _, g in tree_flatten(grads)]))
    weights, moments = model.parameters(), dict(tree_flatten(optimizer.state))
    optimizer.update(model, clipped)

    def keep(now, before):
        return mx.where(finite, now, before)

    model.update(tree_map(keep, model.parameters(), weights))
    assign_leaves(optimizer.state, {k: keep(v, moments[k]) for k, v in tree_flatten(optimizer.state)}, "optimizer")
    return norm, finite


class TrainStep:
    """One optimizer step, compiled: forward, backward, gradient averaging over ranks, clipping, AdamW.

    It needs no data, console or run directory (tools/benchmark.py times it alone). Model, optimizer
    and random state are compile inputs and outputs, so a call updates them in place (mlx-lm's
    pattern). With accumulation, micro-batches are summed one at a time (less memory) and applied once.

    A batch is the bytes (N, L), or (bytes, mask) where the loss counts only the bytes the mask marks
    (`train --mask-prompt`: the stories of instruct records). The loss is the mean over every counted
    byte of the global batch (all micro-batches, all ranks), not a mean of per-part means, which would
    weigh a byte by how many bytes its part happens to count: each part's summed loss is divided by the
    global count, known before the step (one all_sum of a number).

    Mixed precision (`compute_dtype` bfloat16 or float16): the model's parameters and AdamW's state stay
    float32 (the master weights); each step casts the parameters to `compute_dtype` for the forward and
    backward passes, whose gradients arrive back in float32. With `loss_scaling` (float16) a step whose
    gradients are not finite changes nothing; `applied` says whether the last one did.

    The loss it returns is the mean next-byte cross-entropy; what it minimises adds the model's auxiliary
    loss per sequence, if it has one (models.summed_training_loss; H-Net's ratio loss). `stats` holds
    the last step's model statistics per sequence (H-Net's ratio loss and patch length; empty for most
    models), averaged over micro-batches and ranks like the loss.
    """

    def __init__(
        self,
        model,
        optimizer,
        grad_clip: float,
        accumulation: int = 1,
        world: int = 1,
        compute_dtype=mx.float32,
        loss_scaling: bool = False,
    ):
        self.model, self.optimizer, self.accumulation = model, optimizer, accumulation
        self.loss_scaling = loss_scaling
        self.applied = mx.array(True)
        self.stats: dict[str, mx.array] = {}
        state = [model.state, optimizer.state, mx.random.state]

        # objective(model, share, rows, *batch) -> (what this part adds to the minimised loss, (its share of
        # the cross-entropy, its share of the stats)): the summed cross-entropy over the global count /
        # world (share), the auxiliary loss and stats summed over sequences over this rank's rows (every
        # rank holds as many), so that the parts add up to global means.
        def objective(model, share, rows, *batch):
            total, _, extra, stats = summed_training_loss(model, *batch)
            loss = total / share
            return (loss if extra is None else loss + extra / rows), (loss, {k: v / rows for k, v in stats.items()})

        # loss_and_grad(batch, share, rows, scale) -> (this part's cross-entropy, stats, gradients)
        if compute_dtype == mx.float32:
            plain = nn.value_and_grad(model, objective)

            def loss_and_grad(batch, share, rows, scale):
                (_, (loss, stats)), grads = plain(model, share, rows, *batch)
                return loss, stats, grads
        else:

            def loss_and_grad(batch, share, rows, scale):
                masters = model.trainable_parameters()

                def scaled_loss(params):
                    model.update(
                        tree_map(
                            lambda p: p.astype(compute_dtype) if mx.issubdtype(p.dtype, mx.floating) else p, params
                        )
                    )
                    minimised, reported = objective(model, share, rows, *batch)
                    return minimised * scale, reported

                (_, (loss, stats)), grads = mx.value_and_grad(scaled_loss)(masters)
                model.update(masters)  # the float32 masters again, for the optimizer
                return loss, stats, tree_map(lambda g: g / scale, grads)

        def average(loss, stats, grads):  # each rank's share is divided by count / world: the mean is the global one
            if world > 1:
                loss = mx.distributed.all_sum(loss) / world
                stats = {k: mx.distributed.all_sum(v) / world for k, v in stats.items()}
                grads = nn.average_gradients(grads)
            return loss, stats, grads

        def update(grads):
            return apply_gradients(model, optimizer, grads, grad_clip, loss_scaling)

        @partial(mx.compile, inputs=state, outputs=state)
        def step(batch, share, rows, scale):
            loss, stats, grads = average(*loss_and_grad(batch, share, rows, scale))
            return (loss, stats, *update(grads))

        @partial(mx.compile, inputs=state, outputs=state)
        def gradients(batch, share, rows, scale):
            return loss_and_grad(batch, share, rows, scale)

        @partial(mx.compile, inputs=state, outputs=state)
        def apply(loss, stats, grads):
            loss, stats, grads = average(loss, stats, grads)
            return (loss, stats, *update(grads))

        self._step, self._gradients, self._apply = step, gradients, apply
        self.world, self.pad_id = world, model.config.pad_id

    def __call__(self, batch, loss_scale: float = 1.0) -> tuple[mx.array, mx.array]:
        """(loss, gradient norm), lazy, for a (batch_size * accumulation, length) batch of bytes (or bytes
        and mask)."""
        scale = mx.array(loss_scale, dtype=mx.float32)
        parts = tuple(np.asarray(p) for p in (batch if isinstance(batch, tuple) else (batch,)))
        share = self._share(parts)
        rows = mx.array(parts[0].shape[0], dtype=mx.float32)
        if self.accumulation == 1:
            loss, self.stats, norm, self.applied = self._step(tuple(map(mx.array, parts)), share, rows, scale)
            return loss, norm
        total_loss, total_stats, total_grads = 0.0, {}, None
        for micro in zip(*(np.split(p, self.accumulation) for p in parts)):
            loss, stats, grads = self._gradients(tuple(map(mx.array, micro)), share, rows, scale)
            total_loss = total_loss + loss
            total_stats = {k: total_stats.get(k, 0.0) + v for k, v in stats.items()}
            total_grads = grads if total_grads is None else tree_map(lambda a, b: a + b, total_grads, grads)
            mx.eval(total_loss, total_stats, total_grads)  # one micro-batch's activations alive at a time
        loss, self.stats, norm, self.applied = self._apply(total_loss, total_stats, total_grads)
        return loss, norm

    def _share(self, parts) -> mx.array:
        """The bytes the loss counts in the global batch (!= pad_id, and marked by the mask, as many times as
        its value), over the number of ranks: what each rank divides its summed loss by."""
        counted = (parts[0] != self.pad_id).astype(np.int64)
        if len(parts) > 1:
            counted *= parts[1]  # a byte counts as many times as its mask value (train --words-weight)
        total = mx.array(counted.sum(), dtype=mx.float32)
        if self.world > 1:
            total = mx.distributed.all_sum(total)
        return mx.maximum(total, 1) / self.world


def training_step(model, config, world: int = 1) -> tuple[TrainStep, AdamW]:
    """The compiled step and its optimizer as a TrainingConfig asks for them (the trainer, sizing and the
    benchmark and profiling tools all train alike): AdamW on the config's schedule, its state made
    before the first step, the config's clipping, accumulation and compute dtype over `world` ranks, and
    loss scaling for float16 (the caller keeps the LossScale: its scale goes with each call)."""
    optimizer = make_optimizer(config)
    optimizer.init(model.trainable_parameters())
    step = TrainStep(
        model,
        optimizer,
        config.grad_clip,
        config.grad_accumulation_steps,
        world,
        DTYPES[config.dtype],
        loss_scaling=config.dtype == "float16",
    )
    return step, optimizer
