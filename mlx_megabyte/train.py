"""`python -m mlx_megabyte.train`: train a byte-level MEGABYTE, resumably, with live progress.

    python -m mlx_megabyte.train                                   # 40m preset on TinyStories
    python -m mlx_megabyte.train --preset tiny --data builtin --iters 300   # offline, in a minute
    python -m mlx_megabyte.train --resume                          # continue the run in --save-path

Several processes train data-parallel when started by `mlx.launch` (see README): every rank reads its
slice of each global batch, gradients are averaged, and only rank 0 writes.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from . import checkpoint, cli, data, distributed
from .errors import UserError
from .config import PRESETS, ModelConfig
from .model import MEGABYTE, loss_fn, summed_loss
from .weights import non_finite, read_config

# Defaults for the 40m preset on an M-series laptop: 16 x 2048 = 32 KiB per step; 10k steps see ~330 MB
# of TinyStories (a sixth of it), which is where a 40M byte model's validation loss flattens out.
DEFAULT_PRESET = "40m"
DEFAULT_DATA = "tinystories"
DEFAULT_BATCH_SIZE = 16
DEFAULT_ITERS = 10_000
DEFAULT_LEARNING_RATE = 4e-4  # AdamW; warmed up linearly, then cosine-decayed to a tenth
DEFAULT_WARMUP_STEPS = 200
DEFAULT_WEIGHT_DECAY = 0.1  # on matrices and embeddings only, as nanoGPT
DEFAULT_GRAD_CLIP = 1.0
DEFAULT_STEPS_PER_EVAL = 250
DEFAULT_EVAL_BATCHES = 16
DEFAULT_STEPS_PER_SAMPLE = 500
DEFAULT_SAMPLE_BYTES = 256
DEFAULT_KEEP_CHECKPOINTS = 3
LN2 = math.log(2)


class AdamW(optim.AdamW):
    """AdamW that leaves 1-D parameters (norm gains, biases, start tokens) undecayed, as nanoGPT does:
    decaying a norm's gain only fights the normalisation."""

    def apply_single(self, gradient, parameter, state):
        if parameter.ndim < 2:
            return optim.Adam.apply_single(self, gradient, parameter, state)
        return super().apply_single(gradient, parameter, state)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m mlx_megabyte.train", __doc__)
    model = parser.add_argument_group("model (a preset, then any field overridden)")
    model.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET, help="model size (README: Presets)")
    model.add_argument("--dim", type=_ints, help="width per stage, e.g. 512,256 (one int: every stage)")
    model.add_argument("--depth", type=_ints, help="layers per stage, e.g. 12,4 (one int: every stage)")
    model.add_argument("--max-seq-len", type=_ints, help="sequence length per stage, e.g. 256,8 (one int: every stage)")
    model.add_argument("--num-tokens", type=cli.number(int, 256), help="vocabulary (at least 256 for bytes)")
    model.add_argument("--dim-head", type=cli.number(int, 1), help="width of one attention head")
    model.add_argument("--heads", type=cli.number(int, 1), help="attention heads (every stage)")
    model.add_argument("--ff-mult", type=cli.number(int, 1), help="feed-forward width as a multiple of dim")
    model.add_argument("--attn-dropout", type=cli.number(float, 0, 1, high_open=True), help="dropout on attention probabilities")
    model.add_argument("--ff-dropout", type=cli.number(float, 0, 1, high_open=True), help="dropout after the feed-forward GELU")
    model.add_argument("--pad-id", type=cli.number(int, 0), help="byte ignored by the loss")
    model.add_argument("--rel-pos", action=argparse.BooleanOptionalAction, help="rotary embeddings")
    model.add_argument("--pos-emb", action=argparse.BooleanOptionalAction, help="learned absolute positions")

    source = parser.add_argument_group("data")
    source.add_argument(
        "--data", default=DEFAULT_DATA,
        help="tinystories, tinystories-instruct (Hugging Face hub), builtin, builtin-instruct (offline corpus), "
        "or a local .txt/.jsonl/.parquet file, directory or glob",
    )
    source.add_argument("--val-data", help="local validation data (default: the source's validation split or the held-out tail)")
    source.add_argument("--val-fraction", type=cli.number(float, 0, 1, low_open=True, high_open=True), default=0.05, help="held out when a local source has no --val-data")
    source.add_argument("--builtin-mb", type=cli.number(float, 0.01, 100_000), default=16, help="size of the built-in corpus in MB")
    source.add_argument("--cache-dir", help=f"where encoded data is kept (default: {data.DEFAULT_CACHE})")

    train = parser.add_argument_group("optimisation")
    train.add_argument("--batch-size", type=cli.number(int, 1), default=DEFAULT_BATCH_SIZE, help="windows per step (per rank)")
    train.add_argument("--grad-accumulation-steps", type=cli.number(int, 1), default=1, help="micro-batches per step (less memory)")
    train.add_argument("--iters", type=cli.number(int, 1), default=DEFAULT_ITERS, help="optimizer steps in total")
    train.add_argument("--learning-rate", type=cli.number(float, 0, 1, low_open=True), default=DEFAULT_LEARNING_RATE,
                       help="AdamW peak rate, after warm-up; cosine-decayed to a tenth")
    train.add_argument("--warmup-steps", type=cli.number(int, 0),
                       help=f"linear warm-up (default {DEFAULT_WARMUP_STEPS}, or a tenth of --iters if smaller)")
    train.add_argument("--weight-decay", type=cli.number(float, 0, 10), default=DEFAULT_WEIGHT_DECAY,
                       help="AdamW decay of matrices and embeddings (1-D parameters are not decayed)")
    train.add_argument("--grad-clip", type=cli.number(float, 0), default=DEFAULT_GRAD_CLIP, help="max gradient norm (0 = off)")
    train.add_argument("--seed", type=cli.seed, default=0, help="initialisation, batches and dropout")
    train.add_argument("--grad-checkpoint", action="store_true",
                       help="recompute activations in the backward pass: less memory (27%% less peak for the 40m preset), 14-20%% slower")
    train.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                       help="parameter dtype (use float32 on CPUs: bfloat16 matmuls skip BLAS there)")

    report = parser.add_argument_group("evaluation, samples and checkpoints")
    report.add_argument("--steps-per-eval", type=cli.number(int, 1), default=DEFAULT_STEPS_PER_EVAL,
                        help="validation loss and bits per byte every so many steps")
    report.add_argument("--eval-batches", type=cli.number(int, 1), default=DEFAULT_EVAL_BATCHES, help="validation batches (fixed windows)")
    report.add_argument("--steps-per-sample", type=cli.number(int, 0), default=DEFAULT_STEPS_PER_SAMPLE,
                        help="print a short story every so many steps (0 = never)")
    report.add_argument("--sample-bytes", type=cli.number(int, 1), default=DEFAULT_SAMPLE_BYTES, help="length of each sample")
    report.add_argument("--steps-per-save", type=cli.number(int, 1), help="checkpoint every so many steps (default: --steps-per-eval)")
    report.add_argument("--keep-checkpoints", type=cli.number(int, 1), default=DEFAULT_KEEP_CHECKPOINTS, help="newest checkpoints kept")
    report.add_argument("--save-path", help="run directory (default: weights/<preset>-<data>)")
    report.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --save-path")
    report.add_argument("--reschedule", action="store_true",
                        help="with --resume: accept a new --iters, --learning-rate, --warmup-steps, --weight-decay or "
                        "--grad-clip from the next step on (the losses then differ from an unbroken run)")
    report.add_argument("--overwrite", action="store_true",
                        help="start afresh in a --save-path that holds a run, moving the old run aside (nothing is deleted)")
    report.add_argument("--init-from", help="start from these weights (a weights or run directory; e.g. to "
                        "instruct-tune a pretrained model); the model flags are taken from them")
    report.add_argument("--quiet", action="store_true", help="no progress bar; one line per evaluation")
    parser.add_argument("--distributed-timeout", type=cli.number(float, 1, low_open=False), default=distributed.DEFAULT_TIMEOUT,
                        help="with several ranks: seconds without progress after which a rank gives up "
                        "(another rank died or cannot connect)")
    return parser


MODEL_FIELDS = ("dim", "depth", "max_seq_len", "num_tokens", "dim_head", "heads", "ff_mult",
                "attn_dropout", "ff_dropout", "pad_id", "rel_pos", "pos_emb")
TUNABLE_FIELDS = ("attn_dropout", "ff_dropout", "pad_id")  # change no weight shape: fine with --init-from


def model_config(args) -> ModelConfig:
    overrides = {field: getattr(args, field) for field in MODEL_FIELDS if getattr(args, field) is not None}
    if args.init_from:
        from .weights import locate, read_config

        config, _ = read_config(locate(args.init_from))
        fixed = sorted(set(overrides) - set(TUNABLE_FIELDS))
        if fixed:
            raise UserError(f"--init-from takes the model from its weights; drop {', '.join('--' + f.replace('_', '-') for f in fixed)}")
        return ModelConfig.from_dict({**config.to_dict(), **overrides})
    base = PRESETS[args.preset]
    overrides.update(_per_stage(base, {k: overrides[k] for k in PER_STAGE_FIELDS if k in overrides}))
    try:
        config = ModelConfig.from_dict({**base.to_dict(), **overrides})
    except (TypeError, ValueError) as error:
        raise UserError(f"invalid model: {error}") from None
    if config.num_tokens < 256:
        raise UserError(f"num_tokens must be at least 256 to hold every byte, got {config.num_tokens}")
    return config


PER_STAGE_FIELDS = ("dim", "depth", "max_seq_len")


def _per_stage(base: ModelConfig, given: dict) -> dict:
    """Per-stage flags as tuples of one length. One value means "every stage"; the number of stages is
    the longest list given (else the preset's); a preset's width fills in for another number of stages."""
    stages = max((len(v) for v in given.values()), default=base.stages)
    stages = stages if stages > 1 else base.stages
    out = {k: v * stages if len(v) == 1 else v for k, v in given.items()}
    if "dim" not in out and stages != base.stages:
        out["dim"] = (base.dim[0],) * stages
    return out


def check_args(args):
    # Each flag's range is checked as it is read (cli.number); what remains are combinations.
    if args.reschedule and not args.resume:
        raise UserError("--reschedule changes a resumed run's schedule: use it with --resume")
    if args.overwrite and args.resume:
        raise UserError("--overwrite starts afresh and --resume continues: choose one")
    args.steps_per_save = args.steps_per_save or args.steps_per_eval
    if args.warmup_steps is None:
        args.warmup_steps = min(DEFAULT_WARMUP_STEPS, args.iters // 10)


def learning_rate_schedule(args):
    warmup = min(args.warmup_steps, args.iters - 1)
    decay = optim.cosine_decay(args.learning_rate, max(args.iters - warmup, 1), end=args.learning_rate / 10)
    if warmup == 0:
        return decay
    return optim.join_schedules([optim.linear_schedule(args.learning_rate / warmup, args.learning_rate, warmup), decay], [warmup])


def make_step_functions(model, optimizer, grad_clip: float, world: int = 1):
    """The compiled training functions: `step(batch) -> (loss, grad_norm)` for one optimizer step, and
    for gradient accumulation `gradients(batch) -> (loss, grads)` and `apply(loss, grads) -> (loss, norm)`.

    Model, optimizer and random state are compile inputs and outputs, so one call updates them in place
    (mlx-lm's pattern). With several ranks, loss and gradients are averaged across them.
    """
    state = [model.state, optimizer.state, mx.random.state]
    loss_and_grad = nn.value_and_grad(model, loss_fn)

    def average(loss, grads):
        if world > 1:
            loss = mx.distributed.all_sum(loss) / world
            grads = nn.average_gradients(grads)
        return loss, grads

    def update(grads):
        if grad_clip > 0:
            grads, norm = optim.clip_grad_norm(grads, grad_clip)
        else:
            norm = mx.sqrt(sum(mx.sum(g.astype(mx.float32) ** 2) for g in _leaves(grads)))
        optimizer.update(model, grads)
        return norm

    @partial(mx.compile, inputs=state, outputs=state)
    def step(batch):
        loss, grads = average(*loss_and_grad(model, batch))
        return loss, update(grads)

    @partial(mx.compile, inputs=state, outputs=state)
    def gradients(batch):
        return loss_and_grad(model, batch)

    @partial(mx.compile, inputs=state, outputs=state)
    def apply(loss, grads):
        loss, grads = average(loss, grads)
        return loss, update(grads)

    return step, gradients, apply


class Trainer:
    """Model, optimizer, the compiled step, and the bookkeeping of one run."""

    def __init__(self, args, config: ModelConfig, corpus: data.Corpus, group, console):
        self.args, self.config, self.corpus, self.console = args, config, corpus, console
        self.group, self.rank, self.world = group, group.rank(), group.size()
        self.run_dir = Path(args.save_path)
        mx.random.seed(args.seed)
        self.model = MEGABYTE(config)
        if args.dtype == "bfloat16":
            self.model.set_dtype(mx.bfloat16)
        self.model.set_grad_checkpoint(args.grad_checkpoint)
        self.optimizer = AdamW(learning_rate=learning_rate_schedule(args), weight_decay=args.weight_decay)
        self.optimizer.init(self.model.trainable_parameters())
        length = config.context_length
        self.batches = data.Batches(corpus.train, length, args.batch_size * args.grad_accumulation_steps,
                                    args.seed, self.rank, self.world)
        self.data_state = self.batches.state
        self.eval_windows = data.evaluation_windows(corpus.val, length, args.eval_batches * args.batch_size)
        self.step = 0
        self.best_bpb = math.inf
        self.bytes_per_step = args.batch_size * args.grad_accumulation_steps * length * self.world
        self._compile()

    # --- the compiled functions ---

    def _compile(self):
        self._step, self._gradients, self._apply_accumulated = make_step_functions(
            self.model, self.optimizer, self.args.grad_clip, self.world
        )
        self._evaluate = mx.compile(partial(summed_loss, self.model), inputs=[self.model.state])

    def next_batch(self) -> np.ndarray:
        """This rank's next batch. The sampler state *before* drawing it is what a checkpoint stores:
        the loop prefetches a batch while a step runs, and a resumed run must draw that batch again."""
        self.data_state = self.batches.state
        return next(self.batches)

    def train_step(self, batch: np.ndarray):
        """One optimizer step on this rank's (batch_size * accumulation, length) bytes; lazy results."""
        # Dropout draws from mx.random: seeding by step makes a resumed run draw what an unbroken one does.
        mx.random.seed(self.args.seed * 1_000_003 + self.step)
        accumulation = self.args.grad_accumulation_steps
        if accumulation == 1:
            return self._step(mx.array(batch))
        total_loss, total_grads = 0.0, None
        for micro in np.split(batch, accumulation):
            loss, grads = self._gradients(mx.array(micro))
            total_loss = total_loss + loss
            total_grads = grads if total_grads is None else _tree_add(total_grads, grads)
            mx.eval(total_loss, total_grads)  # one micro-batch's activations alive at a time
        scale = 1.0 / accumulation
        return self._apply_accumulated(total_loss * scale, _tree_scale(total_grads, scale))

    def validation_loss(self) -> float:
        """Mean loss (nats per counted byte) over the fixed validation windows of this run."""
        self.model.eval()
        total, counted = mx.array(0.0), mx.array(0)
        windows = self.eval_windows[self.rank :: self.world]  # each rank its share
        batch = self.args.batch_size
        for start in range(0, len(windows), batch):
            loss, count = self._evaluate(mx.array(windows[start : start + batch]))
            total, counted = total + loss, counted + count
            mx.eval(total, counted)
        total, counted = distributed.total([total, counted.astype(mx.float32)], self.group)
        self.model.train()
        return (total / mx.maximum(counted, 1)).item()

    def sample(self) -> str:
        from .generate import generate
        from .sampling import make_sampler

        self.model.eval()
        text = generate(self.model, "", max_tokens=self.args.sample_bytes, sampler=make_sampler(0.8, min_p=0.05))[0]
        self.model.train()
        return text

    # --- checkpoints ---

    # Flags a resumed run must share with the run it continues (the losses would differ otherwise), and
    # the schedule, which --reschedule may change from the resumed step on.
    FIXED = ("data", "data_key", "seed", "world_size", "batch_size", "grad_accumulation_steps", "dtype")
    SCHEDULE = ("iters", "learning_rate", "warmup_steps", "weight_decay", "grad_clip")

    def settings(self) -> dict:
        args = self.args
        return {"data": self.corpus.source, "data_key": self.corpus.directory.name, "seed": args.seed,
                "world_size": self.world, "batch_size": args.batch_size,
                "grad_accumulation_steps": args.grad_accumulation_steps, "dtype": args.dtype,
                **{key: getattr(args, key) for key in self.SCHEDULE}}

    def trainer_state(self) -> dict:
        return {
            "batches": self.data_state,
            "best_val_bpb": self.best_bpb if math.isfinite(self.best_bpb) else None,
            **self.settings(),
        }

    def save(self) -> Path | None:
        if self.rank != 0:
            return None
        self.check_finite("writing a checkpoint")
        return checkpoint.save_checkpoint(self.run_dir, self.step, self.model, self.optimizer,
                                          self.trainer_state(), self.args.keep_checkpoints)

    def save_best(self, val_bpb: float) -> None:
        if self.rank == 0:
            self.check_finite("saving the best weights")
            checkpoint.save_best(self.run_dir, self.model,
                                 {"step": self.step, "val_bpb": val_bpb, "data": self.corpus.source})

    def check_finite(self, doing: str) -> None:
        """Refuse to write weights that hold a NaN or an infinity: an update can poison them one step
        before the loss shows it."""
        damaged = non_finite(dict(tree_flatten(self.model.parameters())))
        if damaged:
            last = checkpoint.latest_checkpoint(self.run_dir)
            raise UserError(
                f"the weights became non-finite at step {self.step} ({damaged[0]}, ...); stopped before {doing} "
                + (f"(the last good checkpoint is {last})" if last else "(no checkpoint was written)")
                + "; try a lower --learning-rate"
            )

    def resume(self) -> Path:
        """Load the newest usable checkpoint; damaged ones (a garbled file, non-finite values) are skipped
        and listed in `self.skipped`."""
        checkpoint.recover(self.run_dir)
        found = checkpoint.checkpoints(self.run_dir)
        if not found:
            raise UserError(f"--resume: no checkpoint in {self.run_dir / checkpoint.CHECKPOINTS}")
        self.skipped = []
        for path in reversed(found):
            try:
                saved, _ = read_config(path)
                if saved != self.config:
                    changed = [k for k, v in saved.to_dict().items() if v != self.config.to_dict()[k]]
                    raise ModelMismatch(f"--resume: the checkpoint's model differs in {', '.join(changed)}; "
                                        "use the same model flags")
                state = checkpoint.load_checkpoint(path, self.model, self.optimizer)
                break
            except ModelMismatch:
                raise
            except UserError as error:
                self.skipped.append(f"{path.name} ({error})")
        else:
            raise UserError(f"--resume: no usable checkpoint in {self.run_dir}: {'; '.join(self.skipped)}")
        for key, mine in self.settings().items():
            if key not in state or state[key] == mine or (key in self.SCHEDULE and self.args.reschedule):
                continue
            if key == "data_key":
                raise UserError(f"--resume: the data of {self.corpus.source} changed since the run started "
                                f"(its encoding {state[key]} is now {mine}); resume on the same data or start a new run")
            flag = "--" + key.replace("_", "-")
            hint = f", or add --reschedule to use {flag} {mine} from here on" if key in self.SCHEDULE else ""
            raise UserError(f"--resume: the run used {flag} {state[key]}, not {mine}: pass the same value{hint}")
        self.step = state["step"]
        self.batches.state = self.data_state = state["batches"]
        self.best_bpb = state["best_val_bpb"] if state.get("best_val_bpb") is not None else math.inf
        return path


class ModelMismatch(UserError):
    """--resume with model flags that are not the checkpoint's: a user error, not a damaged checkpoint."""


def _leaves(tree):
    from mlx.utils import tree_flatten

    return [v for _, v in tree_flatten(tree)]


def _tree_add(a, b):
    from mlx.utils import tree_map

    return tree_map(lambda x, y: x + y, a, b)


def _tree_scale(a, scale):
    from mlx.utils import tree_map

    return tree_map(lambda x: x * scale, a)


class Metrics:
    """metrics.jsonl in the run directory (rank 0 only): one line per step and per evaluation."""

    def __init__(self, path: Path, enabled: bool, resumed_step: int):
        self.path, self.enabled = path, enabled
        self.dropped = 0  # damaged lines left out (a full disk can cut the last one short)
        if enabled and path.is_file():
            # Lines written after the checkpoint we resume from describe steps that will be redone.
            kept = []
            for line in path.read_text(errors="replace").splitlines():
                record = _json_object(line)
                if record is None:
                    self.dropped += bool(line.strip())
                elif record.get("step", 0) <= resumed_step:
                    kept.append(line)
            checkpoint.write_text(path, "".join(line + "\n" for line in kept))
        try:
            self.file = open(path, "a") if enabled else None
        except OSError as error:
            raise UserError(f"cannot write {path}: {error.strerror or error}") from None

    def write(self, record: dict):
        if self.file:
            try:
                self.file.write(json.dumps(record) + "\n")
                self.file.flush()
            except OSError as error:
                raise UserError(f"cannot write {self.path}: {error.strerror or error}; "
                                "checkpoints written so far are intact") from None

    def close(self):
        if self.file:
            try:
                self.file.close()
            except OSError:
                pass  # the write that failed has said so already


def _json_object(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class StopRequested:
    """First Ctrl-C: finish the step, save, exit. Second: stop at once (the last checkpoint is safe)."""

    def __init__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            signal.signal(signal.SIGINT, self.previous)
            raise KeyboardInterrupt
        self.requested = True

    def restore(self):
        signal.signal(signal.SIGINT, self.previous)


def run(args, console) -> dict:
    """Train as `args` say; return a summary (final step, losses, paths)."""
    check_args(args)
    config = model_config(args)
    group, watchdog = distributed.init(args.distributed_timeout)
    if args.save_path is None:
        args.save_path = str(Path("weights") / f"{args.preset}-{data._slug(args.data)}")
    lock = moved_to = None
    try:
        if group.rank() == 0:  # before any work: a second run into the same directory is refused at once
            lock, moved_to = checkpoint.claim(Path(args.save_path), resume=args.resume, overwrite=args.overwrite)
        return _run(args, config, group, watchdog, console, moved_to)
    finally:
        if lock:
            lock.close()
        if watchdog:
            watchdog.stop()


def _run(args, config, group, watchdog, console, moved_to) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    beat = watchdog.beat if watchdog else (lambda activity: None)
    chief = group.rank() == 0
    say = console.print if chief else (lambda *a, **k: None)
    if moved_to:
        say(f"moved the run that was in {args.save_path} to {moved_to}")

    # Local work, which cannot hang on another rank: the watchdog waits until the barrier after it.
    if watchdog:
        watchdog.beat("preparing the data", timeout=float("inf"))
    corpus = data.prepare(args.data, args.val_data, args.val_fraction, args.cache_dir, args.builtin_mb,
                          console=console if chief else None)
    if watchdog:
        beat("waiting for the other ranks to prepare the data")
        distributed.barrier(group)
    trainer = Trainer(args, config, corpus, group, console)
    resumed_from = trainer.resume() if args.resume else None
    for skipped in getattr(trainer, "skipped", []):
        say(f"skipped the damaged checkpoint {skipped}")
    if args.init_from and not resumed_from:
        from .weights import WEIGHTS_FILE, load_weights, locate, read_safetensors

        source = locate(args.init_from)
        load_weights(trainer.model, read_safetensors(source / WEIGHTS_FILE), source=source)
        # Weights take the training dtype, whatever they were stored in: a float16 model (like the demo)
        # fine-tuned in float16 diverges in one step.
        trainer.model.set_dtype(mx.bfloat16 if args.dtype == "bfloat16" else mx.float32)
        mx.eval(trainer.model.parameters())
        say(f"initialised from {source}")
    if chief:
        Path(args.save_path).mkdir(parents=True, exist_ok=True)
        say(f"model: {trainer.model.num_parameters():,} parameters, {config.stages} stages, dim {config.dim}, "
            f"depth {config.depth}, max_seq_len {config.max_seq_len}")
        say(f"data: {args.data}: {len(corpus.train) / 1e6:.1f} MB train, {len(corpus.val) / 1e6:.2f} MB validation"
            f" ({corpus.directory})")
        say(f"training: {trainer.bytes_per_step:,} bytes per step"
            + (f" over {trainer.world} ranks" if trainer.world > 1 else "")
            + (f", resumed from {resumed_from}" if resumed_from else "") + f"; run directory {args.save_path}")
    metrics = Metrics(Path(args.save_path) / checkpoint.METRICS_FILE, chief, trainer.step)
    if metrics.dropped:
        say(f"left out {metrics.dropped} damaged line(s) of {metrics.path}")
    stop = StopRequested()

    columns = (TextColumn("step"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[stats]}"), TimeRemainingColumn())
    progress = Progress(*columns, console=console, disable=args.quiet or not chief)
    task = progress.add_task("train", total=args.iters, completed=trainer.step, stats="")
    summary = {"start_step": trainer.step}
    last_saved = trainer.step
    smoothed = None
    start_time = time.perf_counter()
    try:
        with progress:
            batch = trainer.next_batch()
            while trainer.step < args.iters:
                tic = time.perf_counter()
                beat(f"training step {trainer.step + 1}")
                loss, grad_norm = trainer.train_step(batch)
                mx.async_eval(loss, grad_norm, trainer.model.parameters(), trainer.optimizer.state)
                batch = trainer.next_batch()  # prepared while the step runs
                loss_value, norm_value = loss.item(), grad_norm.item()
                if not math.isfinite(loss_value) or not math.isfinite(norm_value):
                    # A non-finite gradient has already been applied: the weights are poisoned too.
                    what = f"loss became {loss_value}" if not math.isfinite(loss_value) else f"gradient norm became {norm_value}"
                    last = checkpoint.latest_checkpoint(trainer.run_dir)
                    raise UserError(
                        f"the {what} at step {trainer.step + 1}; stopped without saving "
                        + (f"(the last good checkpoint is {last})" if last else "(no checkpoint was written)")
                        + "; try a lower --learning-rate"
                    )
                trainer.step += 1
                seconds = time.perf_counter() - tic
                rate = trainer.bytes_per_step / seconds
                smoothed = rate if smoothed is None else 0.9 * smoothed + 0.1 * rate
                learning_rate = trainer.optimizer.learning_rate.item()
                peak = mx.get_peak_memory() / 1e9
                metrics.write({"step": trainer.step, "loss": loss_value, "bpb": loss_value / LN2,
                               "learning_rate": learning_rate, "grad_norm": norm_value,
                               "bytes_per_second": rate, "peak_memory_gb": peak, "seconds": seconds})
                progress.update(task, completed=trainer.step, stats=(
                    f"loss {loss_value:.3f}  bpb {loss_value / LN2:.3f}  {smoothed:,.0f} B/s  "
                    f"lr {learning_rate:.2e}  mem {peak:.2f} GB"))
                summary.update(loss=loss_value, bytes_per_second=smoothed, peak_memory_gb=peak)

                final = trainer.step == args.iters
                if trainer.step % args.steps_per_eval == 0 or final:
                    beat(f"evaluating at step {trainer.step}")
                    val_loss = trainer.validation_loss()
                    val_bpb = val_loss / LN2
                    improved = val_bpb < trainer.best_bpb
                    trainer.best_bpb = min(trainer.best_bpb, val_bpb)
                    metrics.write({"step": trainer.step, "val_loss": val_loss, "val_bpb": val_bpb})
                    summary.update(val_loss=val_loss, val_bpb=val_bpb)
                    say(f"step {trainer.step}: train loss {loss_value:.4f}, validation loss {val_loss:.4f} "
                        f"({val_bpb:.4f} bits per byte){' *' if improved else ''}")
                    if improved:
                        trainer.save_best(val_bpb)
                if args.steps_per_sample and (trainer.step % args.steps_per_sample == 0 or final) and chief:
                    say(f"[dim]sample at step {trainer.step}:[/dim] {trainer.sample()!r}", markup=True, highlight=False)
                if trainer.step % args.steps_per_save == 0 or final:
                    trainer.save()
                    last_saved = trainer.step
                if stop.requested:
                    break
    except RuntimeError as error:
        if trainer.world == 1:
            raise
        # A collective failed because a peer went away (the ring backend reports a broken connection).
        raise UserError(f"rank {trainer.rank}: lost contact with another rank ({str(error).splitlines()[0]}); "
                        "checkpoints written so far are intact") from None
    finally:
        stop.restore()
        metrics.close()
        if watchdog:
            watchdog.stop()
    summary.update(step=trainer.step, seconds=time.perf_counter() - start_time, run_dir=str(trainer.run_dir))
    if stop.requested:
        if trainer.step != last_saved:
            trainer.save()
        path = checkpoint.latest_checkpoint(trainer.run_dir) if chief else None
        say(f"interrupted at step {trainer.step}; checkpoint {path}; continue with --resume")
        summary["interrupted"] = True
    else:
        say(f"done: {trainer.step} steps; best validation {trainer.best_bpb:.4f} bits per byte; weights in "
            f"{trainer.run_dir / checkpoint.BEST} (best) and {checkpoint.latest_checkpoint(trainer.run_dir) if chief else ''}")
    return summary


@cli.cli
def main(argv=None):
    from rich.console import Console

    args = build_parser().parse_args(argv)
    summary = run(args, Console(stderr=True))
    if summary.get("interrupted"):
        sys.exit(130)


if __name__ == "__main__":
    main()
