"""Training as a library: a typed `TrainingConfig` and the `Trainer` that owns one run (data sampling, the
loop, validation, samples, checkpoints). The optimisation step is optim.py, the resume bookkeeping
resume.py, metrics.jsonl metrics.py; `train.py` is only the command line, as mlx-lm's `lora.py` is for
its `tuner/trainer.py`.

Several processes train data-parallel when started by `mlx.launch`: every rank reads its slice of each
global batch, gradients are averaged inside the compiled step, and only rank 0 writes.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from . import checkpoint, data, distributed, mixture, resume
from .errors import UserError
from .generation import generate
from .metrics import Metrics
from .models import Config, build, summed_loss
from .optim import LossScale, training_step
from .runtime import DTYPES, SEEDS
from .sampling import DEFAULT_MIN_P, DEFAULT_TEMP, make_sampler
from .settings import check_fields, setting
from .tokens import TEXT, layout_of
from .weights import non_finite

WINDOWS = ("auto", "uniform", "records")  # TrainingConfig.windows

LN2 = math.log(2)

DATA_KINDS, DEFAULT_CACHE = data.KINDS, data.DEFAULT_CACHE  # (inside the class, `data` is a field)


@dataclass(frozen=True)
class TrainingConfig:
    """Everything a run is: the model, the data, the optimisation and the reporting cadence. Validated
    when it is made, and never changed afterwards. Defaults: the 40m preset on an M-series laptop,
    16 x 2048 = 32 KiB per step; 10k steps see ~330 MB of TinyStories (a sixth of it), where a 40M byte
    model's validation loss flattens out.

    Every field but the model is a `setting` (settings.py): its help text, kind and range, checked here
    and by train's flag for it, which train.py makes from the field."""

    model: Config  # the model: a config of one of the architectures in models/
    # data
    data: str = setting(
        "tinystories",
        kind=str,
        help="tinystories, tinystories-instruct (Hugging Face hub), builtin, builtin-instruct (offline corpus), "
        "or a local .txt/.jsonl/.parquet file, directory or glob; or a folder or glob of pictures, sounds or "
        "any files (--data-kind); or a mixture of them, SOURCE:WEIGHT,SOURCE:WEIGHT,... (each window drawn from a "
        "source with its weight's share; docs/training.md: Mixtures)",
    )
    data_kind: str | None = setting(  # None: detected from the suffixes
        None,
        kind=str,
        choices=DATA_KINDS,
        optional=True,
        help="what the files of --data are: text (.txt/.jsonl/.parquet), bytes (any file, one document as it "
        "is), image (pixels in --image-size and --image-mode, row by row), audio (.wav as 8-bit mu-law at "
        "--audio-rate) (default: detected from the suffixes, and printed); every kind but text trains a model "
        "with --shift-bytes",
    )
    image_size: str | None = setting(
        None,
        kind=str,
        optional=True,
        help="images: WxH or N (square), e.g. 32x32, 8 (default: the first image's size up to 64x64, else 32x32)",
    )
    image_mode: str | None = setting(
        None, kind=str, choices=("RGB", "L"), optional=True, help="images: RGB or L (grey) (default: the first image's)"
    )
    audio_rate: int | None = setting(  # None: media.AudioLayout's
        None, low=1000, high=48000, optional=True, help="sound: samples a second (default: 8000)"
    )
    val_data: str | None = setting(
        None,
        kind=str,
        optional=True,
        help="local validation data (default: the source's validation split or the held-out tail)",
    )
    val_fraction: float = setting(
        0.05,
        kind=float,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        help="held out when a local source has no --val-data",
    )
    builtin_mb: float = setting(16, kind=float, low=0.01, high=100_000, help="size of the built-in corpus in MB")
    cache_dir: str | None = setting(
        None, kind=str, optional=True, help=f"where encoded data is kept (default: {DEFAULT_CACHE})"
    )
    mask_prompt: bool = setting(
        False,
        kind=bool,
        help="instruct records: the loss (and validation bits per byte) counts only the story bytes, "
        "after 'Story:' with the end-of-text byte that closes each, not the prompt",
    )
    words_weight: int = setting(
        1,
        low=1,
        high=255,
        help="instruct records, with --mask-prompt: the bytes of each required word's first use in a story "
        "count this many times in the training loss (where the story needs its Words line: a stronger signal to "
        "copy words from the prompt); validation counts every story byte once (default: 1, off)",
    )
    windows: str = setting(  # data.record_starts
        "auto",
        kind=str,
        choices=WINDOWS,
        help="where training windows start: uniform (anywhere), records (where a document starts, and "
        "where a window ending a longer one starts, so stories are trained with their prompt in view); "
        "auto: records for instruct data, else uniform (default: auto)",
    )
    # optimisation
    batch_size: int = setting(16, low=1, help="windows per step (per rank)")
    grad_accumulation_steps: int = setting(1, low=1, help="micro-batches per step (less memory)")
    iters: int = setting(10_000, low=1, help="optimizer steps in total")
    learning_rate: float = setting(
        4e-4, kind=float, low=0, high=1, low_open=True, help="AdamW peak rate, after warm-up; cosine-decayed to a tenth"
    )
    warmup_steps: int | None = setting(
        None, low=0, optional=True, help="linear warm-up (default 200, or a tenth of --iters if smaller)"
    )
    weight_decay: float = setting(  # as nanoGPT
        0.1,
        kind=float,
        low=0,
        high=10,
        help="AdamW decay of matrices and embeddings (1-D parameters are not decayed)",
    )
    grad_clip: float = setting(1.0, kind=float, low=0, help="max gradient norm (0 = off)")
    seed: int = setting(0, help="initialisation, batches and dropout", **SEEDS)
    grad_checkpoint: bool = setting(
        False,
        kind=bool,
        help="recompute activations in the backward pass: less memory (27% less peak for the 40m preset), "
        "14-20% slower",
    )
    dtype: str = setting(
        "float32",
        kind=str,
        choices=tuple(DTYPES),
        help="compute dtype: bfloat16 and float16 are mixed precision: float32 master weights and AdamW state, "
        "forward and backward in the half type; float16 with dynamic loss scaling",
    )
    time_budget: float | None = setting(
        None,
        kind=float,
        low=0,
        low_open=True,
        optional=True,
        help="stop after this many seconds of training steps (validation, samples and checkpoints "
        "not counted; a resumed run continues the count), validate, save and exit 0; the "
        "schedule still follows --iters",
    )
    # evaluation, samples, checkpoints
    steps_per_eval: int = setting(250, low=1, help="validation loss and bits per byte every so many steps")
    eval_batches: int = setting(16, low=1, help="validation batches (fixed windows)")
    steps_per_sample: int = setting(500, low=0, help="print a short story every so many steps (0 = never)")
    sample_bytes: int = setting(256, low=1, help="length of each sample")
    steps_per_save: int | None = setting(
        None, low=1, optional=True, help="checkpoint every so many steps (default: --steps-per-eval)"
    )
    keep_checkpoints: int = setting(3, low=1, help="newest checkpoints kept")
    save_path: str = setting("weights/run", kind=str, help="run directory")
    resume: bool = setting(False, kind=bool, help="continue from the newest checkpoint in --save-path")
    reschedule: bool = setting(  # the SCHEDULE settings
        False,
        kind=bool,
        help="with --resume: accept a new --iters, --learning-rate, --warmup-steps, --weight-decay or "
        "--grad-clip from the next step on (the losses then differ from an unbroken run)",
    )
    overwrite: bool = setting(
        False,
        kind=bool,
        help="start afresh in a --save-path that holds a run, moving the old run aside (nothing is deleted)",
    )
    init_from: str | None = setting(  # the model must be theirs
        None,
        kind=str,
        optional=True,
        help="start from these weights (a weights or run directory; e.g. to "
        "instruct-tune a pretrained model); the model flags are taken from them",
    )
    quiet: bool = setting(False, kind=bool, help="no progress bar; one line per evaluation")
    distributed_timeout: float = setting(
        distributed.DEFAULT_TIMEOUT,
        kind=float,
        low=1,
        help="with several ranks: seconds without progress after which a rank gives up "
        "(another rank died or cannot connect)",
    )

    def __post_init__(self):
        if self.warmup_steps is None:
            object.__setattr__(self, "warmup_steps", min(200, self.iters // 10))
        if self.steps_per_save is None:
            object.__setattr__(self, "steps_per_save", self.steps_per_eval)
        try:
            check_fields(self)
        except ValueError as error:
            raise UserError(str(error)) from None
        if mixture.parse(self.data) is not None and self.val_data is not None:  # parse: bad mixtures, one line
            raise UserError(
                "--val-data gives one source's validation data; each source of a mixture is validated "
                "on its own split: drop --val-data"
            )
        if self.reschedule and not self.resume:
            raise UserError("--reschedule changes a resumed run's schedule: use it with --resume")
        if self.overwrite and self.resume:
            raise UserError("--overwrite starts afresh and --resume continues: choose one")
        if self.words_weight > 1 and not self.mask_prompt:
            raise UserError("--words-weight weighs bytes of the stories --mask-prompt counts: add --mask-prompt")
        if self.mask_prompt and layout_of(self.model) != TEXT:
            raise UserError("--mask-prompt reads instruct records, which are text: drop it or --shift-bytes")
        if self.model.num_tokens < 256:
            raise UserError(f"num_tokens must be at least 256 to hold every byte, got {self.model.num_tokens}")

    def media(self) -> dict | None:
        """The image or audio layout the flags give (None: data.prepare's defaults), as a dict."""
        from . import media

        if self.image_size is not None or self.image_mode is not None:
            try:
                layout = media.ImageLayout.parse(self.image_size or "32x32", self.image_mode or "RGB")
            except ValueError as error:
                raise UserError(f"--image-size/--image-mode: {error}") from None
            return layout.to_dict()
        if self.audio_rate is not None:
            return media.AudioLayout(rate=self.audio_rate).to_dict()
        return None

    @property
    def bytes_per_rank_step(self) -> int:
        return self.batch_size * self.grad_accumulation_steps * self.model.context_length


class Trainer:
    """One run: the model, its optimizer and step, the batches, and the bookkeeping around them.

    `fit()` is the loop. Each step: train, log; every `steps_per_eval`: validate and keep the best
    weights; every `steps_per_sample`: print a story; every `steps_per_save`: checkpoint. Construction
    restores the run (`resume`) or the starting weights (`init_from`).
    """

    def __init__(
        self,
        config: TrainingConfig,
        corpus: data.Corpus,
        group=None,
        console=None,
        beat: Callable[[str], None] | None = None,
    ):
        self.config, self.corpus, self.console = config, corpus, console
        self.group = group if group is not None else mx.distributed.init()
        self.rank, self.world = self.group.rank(), self.group.size()
        self.chief = self.rank == 0
        self.beat = beat or (lambda activity: None)
        self.run_dir = Path(config.save_path)
        mx.random.seed(config.seed)
        self.model = build(config.model)  # float32: the master weights, whatever the compute dtype
        self.model.set_grad_checkpoint(config.grad_checkpoint)
        self.train_step_fn, self.optimizer = training_step(self.model, config, self.world)
        self.loss_scale = LossScale() if config.dtype == "float16" else None
        self._evaluate = mx.compile(partial(summed_loss, self.model), inputs=[self.model.state])
        self.instruct = corpus.instruct  # recorded with the weights: may `generate --instruct` use them?
        self.sources = data_sources(config, corpus, self.rank, self.world)
        self.windows = ",".join(source.windows for source in self.sources)  # one per source, as resolved
        self.batches = (
            self.sources[0].batches
            if len(self.sources) == 1
            else mixture.MixedBatches(
                [source.batches for source in self.sources],
                [source.weight for source in self.sources],
                config.batch_size * config.grad_accumulation_steps,
                config.seed,
                self.rank,
                self.world,
            )
        )
        self.data_state = self.batches.state
        # what the losses are per; a mixture under --mask-prompt counts every byte of its plain sources
        self.counted = (
            "bytes" if not config.mask_prompt else "story bytes" if len(self.sources) == 1 else "counted bytes"
        )
        self.step = 0
        self.best_bpb = math.inf
        self.train_seconds = 0.0  # wall-clock of the training steps so far (resumed runs continue it)
        self.bytes_per_step = config.bytes_per_rank_step * self.world
        self.skipped: list[str] = []  # damaged checkpoints passed over by resume()
        self.restored_from: Path | None = None
        if config.resume:
            self.restore(resume.resume(self))
        elif config.init_from:
            self.restored_from = resume.initialise_from(self, config.init_from)

    def restore(self, saved: resume.Saved) -> None:
        """Continue the run `saved` describes (resume.resume found it and loaded its weights and
        optimizer state): its step, batch sampler, loss scale, best score and time trained."""
        self.restored_from, self.skipped = saved.path, saved.skipped
        self.step = saved.step
        self.batches.state = self.data_state = saved.batches
        if self.loss_scale is not None and saved.loss_scale is not None:
            self.loss_scale = saved.loss_scale
        self.best_bpb, self.train_seconds = saved.best_bpb, saved.train_seconds

    def say(self, *args, **kwargs) -> None:
        if self.chief and self.console is not None:
            self.console.print(*args, **kwargs)

    # --- one step ---

    def next_batch(self):
        """This rank's next batch (bytes, or bytes and story mask). The sampler state *before* drawing it is what a checkpoint stores:
        the loop prefetches a batch while a step runs, and a resumed run must draw that batch again."""
        self.data_state = self.batches.state
        return next(self.batches)

    def train_step(self, batch):
        """One optimizer step on this rank's bytes; lazy (loss, gradient norm)."""
        # Dropout draws from mx.random: seeding by step makes a resumed run draw what an unbroken one does.
        mx.random.seed(self.config.seed * 1_000_003 + self.step)
        return self.train_step_fn(batch, self.loss_scale.scale if self.loss_scale else 1.0)

    def validation_loss(self) -> float:
        """Mean loss (nats per counted byte) over the fixed validation windows of this run; of a mixture,
        the sources' losses weighted as their windows are drawn (what the training loss estimates where every
        window counts as many bytes; under --mask-prompt a plain window counts more than a record's)."""
        return self.combined(self.validation_losses())

    def combined(self, losses: list[float]) -> float:
        """The sources' losses as one: a mixture's weighted by its weights, one source's as it is."""
        if len(losses) == 1:
            return losses[0]
        return sum(source.weight * loss for source, loss in zip(self.sources, losses))

    def validation_losses(self) -> list[float]:
        """Each source's mean loss (nats per counted byte) over its own fixed validation windows."""
        self.model.eval()
        losses = [self._source_loss(source.eval_windows, source.eval_masks) for source in self.sources]
        self.model.train()
        return losses

    def _source_loss(self, windows: np.ndarray, masks: np.ndarray | None) -> float:
        total, counted = mx.array(0.0), mx.array(0)
        windows = windows[self.rank :: self.world]  # each rank its share
        masks = None if masks is None else masks[self.rank :: self.world]
        batch = self.config.batch_size
        for start in range(0, len(windows), batch):
            parts = [windows[start : start + batch]] + ([] if masks is None else [masks[start : start + batch]])
            loss, count = self._evaluate(*map(mx.array, parts))
            total, counted = total + loss, counted + count
            mx.eval(total, counted)
        total, counted = distributed.total([total, counted.astype(mx.float32)], self.group)
        return (total / mx.maximum(counted, 1)).item()

    def sample(self) -> str:
        self.model.eval()
        sampler = make_sampler(DEFAULT_TEMP, min_p=DEFAULT_MIN_P)
        text = generate(self.model, "", max_tokens=self.config.sample_bytes, sampler=sampler)[0]
        self.model.train()
        return text

    # --- the loop ---

    def fit(self) -> dict:
        """Train until `iters` steps (or Ctrl-C); return a summary (steps, losses, speed, paths)."""
        config = self.config
        metrics = Metrics(self.run_dir / checkpoint.METRICS_FILE, self.chief, self.step)
        if metrics.dropped:
            self.say(f"left out {metrics.dropped} damaged line(s) of {metrics.path}")
        stop = StopRequested()
        columns = (
            TextColumn("step"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
        )
        progress = Progress(
            *columns, console=self.console, disable=config.quiet or not self.chief or self.console is None
        )
        task = progress.add_task("train", total=config.iters, completed=self.step, stats="")
        self.summary = {"start_step": self.step}
        self.last_saved, self.smoothed = self.step, None
        start_time = time.perf_counter()
        try:
            with progress:
                batch = self.next_batch()
                while self.step < config.iters:
                    batch = self._one_step(
                        batch, metrics, lambda stats: progress.update(task, completed=self.step, stats=stats)
                    )
                    out_of_time = config.time_budget is not None and self.train_seconds >= config.time_budget
                    if out_of_time:
                        self.summary["time_budget_reached"] = True
                    final = self.step == config.iters or out_of_time
                    if self.step % config.steps_per_eval == 0 or final:
                        self._validate(metrics)
                    sampled = config.steps_per_sample and self.corpus.kind == "text"  # pictures: generate --image
                    if sampled and (self.step % config.steps_per_sample == 0 or final):
                        self._print_sample()
                    if self.step % config.steps_per_save == 0 or final:
                        self.save()
                    if stop.requested or out_of_time:
                        break
        except RuntimeError as error:
            if self.world == 1:
                raise
            # A collective failed because a peer went away (the ring backend reports a broken connection).
            raise UserError(
                f"rank {self.rank}: lost contact with another rank ({str(error).splitlines()[0]}); "
                "checkpoints written so far are intact"
            ) from None
        finally:
            stop.restore()
            metrics.close()
        self.summary.update(
            step=self.step,
            seconds=time.perf_counter() - start_time,
            run_dir=str(self.run_dir),
            train_seconds=self.train_seconds,
        )
        if stop.requested:
            self._save_on_interrupt()
        else:
            latest = checkpoint.latest_checkpoint(self.run_dir) if self.chief else ""
            budget = (
                f" (the time budget of {config.time_budget:g} s is spent)"
                if self.summary.get("time_budget_reached")
                else ""
            )
            self.say(
                f"done: {self.step} steps{budget}; best validation {self.best_bpb:.4f} bits per "
                f"{self.counted.removesuffix('s')}; weights in "
                f"{self.run_dir / checkpoint.BEST} (best) and {latest}"
            )
        return self.summary

    def _one_step(self, batch, metrics, show) -> np.ndarray:
        """Train on `batch`, prepare the next one while the step runs, stop on a non-finite loss or
        gradient, and log the step. Returns the next batch."""
        tic = time.perf_counter()
        self.beat(f"training step {self.step + 1}")
        loss, grad_norm = self.train_step(batch)
        stats = self.train_step_fn.stats  # the model's statistics of this step (e.g. H-Net's ratio loss)
        mx.async_eval(loss, grad_norm, stats, self.model.parameters(), self.optimizer.state)
        batch = self.next_batch()  # prepared while the step runs
        loss_value, norm_value = loss.item(), grad_norm.item()
        stats = {name: value.item() for name, value in stats.items()}
        if self.loss_scale is not None and not self.train_step_fn.applied.item():
            return self._skipped_step(batch, metrics, show, time.perf_counter() - tic)
        if self.loss_scale is not None:
            self.loss_scale.update(applied=True)
        if not math.isfinite(loss_value) or not math.isfinite(norm_value):
            # A non-finite gradient has already been applied: the weights are poisoned too.
            what = (
                f"loss became {loss_value}" if not math.isfinite(loss_value) else f"gradient norm became {norm_value}"
            )
            raise UserError(
                f"the {what} at step {self.step + 1}; stopped without saving {self._last_good()}; "
                "try a lower --learning-rate"
            )
        self.step += 1
        seconds = time.perf_counter() - tic
        self.train_seconds += seconds
        rate = self.bytes_per_step / seconds
        self.smoothed = rate if self.smoothed is None else 0.9 * self.smoothed + 0.1 * rate
        learning_rate = self.optimizer.learning_rate.item()
        peak = mx.get_peak_memory() / 1e9
        scale = {"loss_scale": self.loss_scale.scale} if self.loss_scale else {}
        metrics.write(
            {
                "step": self.step,
                "loss": loss_value,
                "bpb": loss_value / LN2,
                "learning_rate": learning_rate,
                "grad_norm": norm_value,
                "bytes_per_second": rate,
                "peak_memory_gb": peak,
                "seconds": seconds,
                "train_seconds": self.train_seconds,
                **scale,
                **stats,
            }
        )
        shown = "".join(f"  {name.replace('_', ' ')} {value:.3f}" for name, value in stats.items())
        show(
            f"loss {loss_value:.3f}  bpb {loss_value / LN2:.3f}{shown}  {self.smoothed:,.0f} B/s  "
            f"lr {learning_rate:.2e}  mem {peak:.2f} GB" + (f"  scale {self.loss_scale.scale:g}" if scale else "")
        )
        self.summary.update(loss=loss_value, bytes_per_second=self.smoothed, peak_memory_gb=peak, **stats)
        return batch

    def _skipped_step(self, batch, metrics, show, seconds) -> np.ndarray:
        """A float16 step whose gradients overflowed: nothing was changed; halve the loss scale, say so."""
        self.loss_scale.update(applied=False)
        self.step += 1
        self.train_seconds += seconds
        if self.loss_scale.scale < LossScale.SMALLEST:
            raise UserError(
                f"float16 overflows at step {self.step} even without loss scaling; stopped without "
                f"saving {self._last_good()}; use --dtype bfloat16 (or float32)"
            )
        metrics.write({"step": self.step, "skipped": True, "loss_scale": self.loss_scale.scale, "seconds": seconds})
        show(f"step skipped: float16 gradients overflowed; loss scale now {self.loss_scale.scale:g}")
        self.summary["skipped_steps"] = self.summary.get("skipped_steps", 0) + 1
        return batch

    def _validate(self, metrics) -> None:
        self.beat(f"evaluating at step {self.step}")
        losses = self.validation_losses()
        val_loss = self.combined(losses)
        val_bpb = val_loss / LN2
        improved = val_bpb < self.best_bpb
        self.best_bpb = min(self.best_bpb, val_bpb)
        counted = {"counted": self.counted} if self.config.mask_prompt else {}
        # a mixture's sources one by one (each per its own counted bytes), beside the weighted whole
        by_source = {source.name: loss / LN2 for source, loss in zip(self.sources, losses)} if len(losses) > 1 else {}
        metrics.write(
            {
                "step": self.step,
                "val_loss": val_loss,
                "val_bpb": val_bpb,
                "train_seconds": self.train_seconds,
                **counted,
                **({"val_bpb_by_source": by_source} if by_source else {}),
            }
        )
        self.summary.update(
            val_loss=val_loss, val_bpb=val_bpb, **({"val_bpb_by_source": by_source} if by_source else {})
        )
        per = self.counted.removesuffix("s")
        each = "".join(f"; {name} {bpb:.4f}" for name, bpb in by_source.items())
        self.say(
            f"step {self.step}: train loss {self.summary.get('loss', math.nan):.4f}, validation loss {val_loss:.4f} "
            f"({val_bpb:.4f} bits per {per}{each}){' *' if improved else ''}"
        )
        if improved:
            self.save_best(val_bpb)

    def _print_sample(self) -> None:
        if self.chief:
            self.say(f"[dim]sample at step {self.step}:[/dim] {self.sample()!r}", markup=True, highlight=False)

    def _save_on_interrupt(self) -> None:
        if self.step != self.last_saved:
            self.save()
        path = checkpoint.latest_checkpoint(self.run_dir) if self.chief else None
        self.say(f"interrupted at step {self.step}; checkpoint {path}; continue with --resume")
        self.summary["interrupted"] = True

    def save(self) -> Path | None:
        self.last_saved = self.step
        if not self.chief:
            return None
        self.check_finite("writing a checkpoint")
        return checkpoint.save_checkpoint(
            self.run_dir, self.step, self.model, self.optimizer, resume.record(self), self.config.keep_checkpoints
        )

    def save_best(self, val_bpb: float) -> None:
        if self.chief:
            self.check_finite("saving the best weights")
            checkpoint.save_best(
                self.run_dir,
                self.model,
                {
                    "step": self.step,
                    "val_bpb": val_bpb,
                    "data": self.corpus.source,
                    "instruct": self.instruct,
                    **self.corpus.record(),
                    "counted": self.counted,
                },
            )

    def check_finite(self, doing: str) -> None:
        """Refuse to write weights that hold a NaN or an infinity: an update can poison them one step
        before the loss shows it."""
        damaged = non_finite(dict(tree_flatten(self.model.parameters())))
        if damaged:
            raise UserError(
                f"the weights became non-finite at step {self.step} ({damaged[0]}, ...); stopped before "
                f"{doing} {self._last_good()}; try a lower --learning-rate"
            )

    def _last_good(self) -> str:
        last = checkpoint.latest_checkpoint(self.run_dir)
        return f"(the last good checkpoint is {last})" if last else "(no checkpoint was written)"


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


@dataclass
class Source:
    """One source of a run's data as the trainer reads it: one source gives one, a mixture one each."""

    name: str  # as --data names it alone
    weight: float  # the share of windows drawn from it (1 for one source)
    corpus: data.Corpus
    windows: str  # where its training windows start, as resolved: "records" or "uniform"
    batches: data.Batches
    eval_windows: np.ndarray  # its fixed validation windows
    eval_masks: np.ndarray | None  # their masks under --mask-prompt


def data_sources(config: TrainingConfig, corpus, rank: int, world: int) -> list[Source]:
    """Every source of the run with its sampler and fixed validation windows, each by its own rules:
    under --windows auto instruct sources train on record windows; under --mask-prompt instruct sources
    count their story bytes and, in a mixture, plain ones every byte (pretraining text has no prompt)."""
    mixed = isinstance(corpus, mixture.Mixture)
    pairs = list(zip(corpus.corpora, corpus.parts)) if mixed else [(corpus, mixture.Part(config.data, 1.0))]
    if mixed and config.mask_prompt and not corpus.instruct:
        raise UserError(
            f"--mask-prompt counts only the stories of instruct records, and no source of --data {config.data} "
            "holds any (no line starting with 'Story:'): mix in builtin-instruct or tinystories-instruct, or drop "
            "--mask-prompt"
        )
    length = config.model.context_length
    count = config.eval_batches * config.batch_size * world  # per rank: a share of the same windows
    found = []
    for one, part in pairs:
        check_sizes(config, one, length, part.source)
        masks = None, None
        if config.mask_prompt:
            masks = story_masks(config, one, part.source) if one.instruct or not mixed else every_byte(one)
        # "auto": instruct records train from their starts, so that a story sees its prompt as it will
        # when generated on command; anything else trains on windows anywhere.
        records = config.windows == "records" or (config.windows == "auto" and one.instruct)
        batches = data.Batches(
            one.train,
            length,
            config.batch_size * config.grad_accumulation_steps,
            config.seed,
            rank,
            world,
            mask=masks[0],
            starts=data.record_starts(one.train, length, one.layout.end) if records else None,
        )
        evaluated = data.evaluation_windows(one.val, length, count)
        masked = None if masks[1] is None else data.evaluation_windows(masks[1], length, count)
        found.append(
            Source(part.source, part.weight, one, "records" if records else "uniform", batches, evaluated, masked)
        )
    return found


def every_byte(corpus: data.Corpus) -> tuple[np.ndarray, np.ndarray]:
    """Masks that count every byte of both splits (read-only views: no memory per byte)."""
    return tuple(np.broadcast_to(np.uint8(1), (len(getattr(corpus, split)),)) for split in ("train", "val"))


def story_masks(config: TrainingConfig, corpus: data.Corpus, source: str) -> tuple[np.ndarray, np.ndarray]:
    """--mask-prompt: which bytes of each split the loss counts (the stories of instruct records); a
    split with no story bytes is refused (every loss would be 0 / 0)."""
    masks = corpus.story_mask("train"), corpus.story_mask("val")
    val_source = f"--val-data {config.val_data}" if config.val_data else f"the validation split of {source}"
    for where, mask in zip((f"--data {source}", val_source), masks):
        if not mask.any():
            raise UserError(
                f"--mask-prompt counts only the stories of instruct records, and {where} holds none "
                "(no line starting with 'Story:'): use builtin-instruct, tinystories-instruct or records "
                "in their layout, or drop --mask-prompt"
            )
    if config.words_weight > 1:  # training counts the words' first uses more; validation as it was
        weighted = masks[0] + (config.words_weight - 1) * corpus.first_use_mask("train")  # uint8: weight <= 255
        masks = weighted, masks[1]
    return masks


def check_sizes(config: TrainingConfig, corpus: data.Corpus, length: int, source: str) -> None:
    """Both splits of a source must hold one window of the model's context; if one does not, say which
    flag gives it more."""
    local = source not in data.HUB_DATASETS and source not in data.BUILTIN
    more = "a larger --builtin-mb" if source in data.BUILTIN else "more data"
    if len(corpus.train) < length:
        raise UserError(
            f"the training data ({source}) holds {len(corpus.train):,} bytes, fewer than one window "
            f"of {length:,} (the model's context): give {more}, or a model with a shorter context"
        )
    if len(corpus.val) >= length:
        return
    if config.val_data is not None:
        where, hint = f"--val-data {config.val_data}", "give more validation data"
    elif local:
        where = f"the last {config.val_fraction:g} of the documents of {source}, cut at a document boundary"
        hint = "hold out more with --val-fraction, or give validation data with --val-data PATH"
    else:
        where, hint = f"the validation split of {source}", "give validation data with --val-data PATH"
        if source in data.BUILTIN:
            hint = "raise --builtin-mb (a 33rd of it is held out), or give validation data with --val-data PATH"
    raise UserError(
        f"the validation data ({where}) holds {len(corpus.val):,} bytes, fewer than one window of "
        f"{length:,} (the model's context): {hint}"
    )


def describe(trainer: Trainer) -> list[str]:
    """What a run is about to do, in a few lines (model, data, batch, where it writes)."""
    config, model = trainer.config, trainer.config.model
    corpus = trainer.corpus
    restored = ""
    if trainer.restored_from is not None:
        restored = (
            f", resumed from {trainer.restored_from}"
            if config.resume
            else f", initialised from {trainer.restored_from}"
        )
    training = (
        f"training: {trainer.bytes_per_step:,} bytes per step"
        + (f" over {trainer.world} ranks" if trainer.world > 1 else "")
        + f"{restored}; run directory {config.save_path}"
    )
    model_line = (
        f"model: {trainer.model.num_parameters():,} parameters, {model.describe()}, "
        f"{model.flops_per_byte() / 1e6:.2f} MFLOP per byte trained"
    )
    if len(trainer.sources) > 1:
        return [model_line, *_mixture_lines(trainer), training]
    return (
        [
            model_line,
            f"data: {config.data}: {len(corpus.train) / 1e6:.1f} MB train, {len(corpus.val) / 1e6:.2f} MB validation"
            f" ({corpus.directory}); {corpus.describe()}",
            training,
        ]
        + ([_masked_line(trainer)] if config.mask_prompt else [])
        + ([_records_line(trainer)] if trainer.windows == "records" else [])
    )


def _mixture_lines(trainer: Trainer) -> list[str]:
    """A mixture's data line, then a line per source: its share, its bytes, its windows and what its loss counts."""
    lines = [
        f"data: a mixture ({trainer.corpus.source}): each window of a batch is drawn from a source with its weight; "
        "each source validated on its own split, the validation loss their weighted mean"
    ]
    for source in trainer.sources:
        corpus = source.corpus
        where = (
            f"windows at {len(source.batches.starts):,} starts (records' starts and long ones' ends)"
            if source.windows == "records"
            else "windows anywhere"
        )
        counted = ""
        if trainer.config.mask_prompt:
            counted = (
                f"; loss over its story bytes ({corpus.story_mask('train').mean():.0%} of its bytes)"
                if corpus.instruct  # data_sources: the story masks of instruct sources, every byte of others
                else "; loss over every byte"
            )
        lines.append(
            f"  {source.name}, {source.weight:.0%}: {len(corpus.train) / 1e6:.1f} MB train, "
            f"{len(corpus.val) / 1e6:.2f} MB validation ({corpus.directory}); {corpus.describe()}; {where}{counted}"
        )
    return lines


def _records_line(trainer: Trainer) -> str:
    why = "" if trainer.config.windows == "records" else ", as for all instruct data (--windows uniform: anywhere)"
    return f"windows: {len(trainer.batches.starts):,} starts, at the documents' starts and long ones' ends{why}"


def _masked_line(trainer: Trainer) -> str:
    share = trainer.corpus.story_mask("train").mean()
    return (
        f"loss: over the story bytes of instruct records only (--mask-prompt), {share:.0%} of the training bytes; "
        "validation bits per byte are per story byte"
    )
