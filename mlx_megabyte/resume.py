"""What a checkpoint records about a run besides its weights (trainer_state.json), and how a run resumes:
the newest usable checkpoint is loaded, damaged ones are passed over, and a run whose settings differ
from the checkpoint's is refused in one line. Also the start from other weights (--init-from)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

from . import checkpoint
from .errors import UserError
from .optim import LossScale
from .weights import load_weights, locate, read_config, read_weights

# The settings --reschedule may change from the resumed step on (the others must match).
SCHEDULE = ("iters", "learning_rate", "warmup_steps", "weight_decay", "grad_clip")


class ModelMismatch(UserError):
    """--resume with model flags that are not the checkpoint's: a user error, not a damaged checkpoint."""


def settings(trainer) -> dict:
    """The settings a resumed run must share with the run it continues (the losses would differ
    otherwise); the SCHEDULE ones only without --reschedule."""
    config = trainer.config
    return {
        "data": trainer.corpus.source,
        "data_key": trainer.corpus.key,
        "seed": config.seed,
        "world_size": trainer.world,
        "batch_size": config.batch_size,
        "grad_accumulation_steps": config.grad_accumulation_steps,
        "dtype": config.dtype,
        "mask_prompt": config.mask_prompt,
        "words_weight": config.words_weight,
        "windows": trainer.windows,  # as resolved: what "auto" chose
        **{key: getattr(config, key) for key in SCHEDULE},
    }


def record(trainer) -> dict:
    """What trainer_state.json holds besides the step: the batch sampler, the best score so far, the
    time trained, the loss scale, and the settings."""
    return {
        "batches": trainer.data_state,
        "best_val_bpb": trainer.best_bpb if math.isfinite(trainer.best_bpb) else None,
        "train_seconds": trainer.train_seconds,
        "instruct": trainer.instruct,
        **trainer.corpus.record(),
        "init_from": trainer.config.init_from,  # for the message when --resume forgets it
        **({"loss_scale": trainer.loss_scale.state} if trainer.loss_scale else {}),
        **settings(trainer),
    }


def initialise_from(trainer, spec: str) -> Path:
    """Start from the weights `spec` names (their model is the run's), as float32 master weights."""
    source = locate(spec)
    load_weights(trainer.model, read_weights(source), source=source)
    # Master weights are float32, whatever the weights were stored in: a float16 model (like the demo)
    # trained in float16 diverged in one step.
    trainer.model.set_dtype(mx.float32)
    mx.eval(trainer.model.parameters())
    return source


@dataclass
class Saved:
    """What `resume` found for the trainer to continue from (Trainer.restore): the checkpoint, the damaged
    ones passed over, and the run's state as `record` wrote it."""

    path: Path
    skipped: list[str]
    step: int
    batches: dict  # the batch sampler's state before the batch of the next step
    loss_scale: LossScale | None  # None when the run did not scale (or did not record it)
    best_bpb: float
    train_seconds: float


def resume(trainer) -> Saved:
    """Load the newest usable checkpoint's weights and optimizer state into the trainer's model and
    optimizer, and return the rest for the trainer to restore; damaged checkpoints (a garbled file,
    non-finite values) are passed over and listed in `skipped`."""
    checkpoint.recover(trainer.run_dir)
    found = checkpoint.checkpoints(trainer.run_dir)
    if not found:
        raise UserError(f"--resume: no checkpoint in {trainer.run_dir / checkpoint.CHECKPOINTS}")
    skipped = []
    for path in reversed(found):
        try:
            check_model(path, trainer.config.model, None if trainer.config.init_from else _init_from(path))
            state = checkpoint.load_checkpoint(path, trainer.model, trainer.optimizer)
            break
        except ModelMismatch:
            raise
        except UserError as error:
            skipped.append(f"{path.name} ({error})")
    else:
        raise UserError(f"--resume: no usable checkpoint in {trainer.run_dir}: {'; '.join(skipped)}")
    check_settings(trainer, state)
    return Saved(
        path,
        skipped,
        state["step"],
        state["batches"],
        LossScale(**state["loss_scale"]) if isinstance(state.get("loss_scale"), dict) else None,
        state["best_val_bpb"] if state.get("best_val_bpb") is not None else math.inf,
        float(state.get("train_seconds", 0.0)),
    )


def check_model(path: Path, mine, init_from: str | None = None) -> None:
    """The checkpoint's model must be the one the flags describe (its architecture, every setting);
    `init_from`: the weights the run started from, when this resume did not name them."""
    saved, _ = read_config(path)
    if saved != mine and init_from:
        raise ModelMismatch(f"--resume: the run started from --init-from {init_from}: pass it again")
    if saved.model_type != mine.model_type:
        raise ModelMismatch(
            f"--resume: the checkpoint holds a {saved.model_type} model, not {mine.model_type}; use the same --arch"
        )
    if saved != mine:
        ours = mine.to_dict()
        changed = [k for k, v in saved.to_dict().items() if v != ours.get(k)]
        raise ModelMismatch(
            f"--resume: the checkpoint's model differs in {', '.join(changed)}; use the same model flags"
        )


def _init_from(path: Path) -> str | None:
    """The --init-from the checkpoint's run started with (None if none, or not recorded)."""
    try:
        found = json.loads((path / checkpoint.STATE_FILE).read_text()).get("init_from")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def check_settings(trainer, state: dict) -> None:
    """Refuse, in one line naming the flag, a resumed run whose settings differ from the checkpoint's."""
    # runs saved before windows could start at records drew them anywhere, and before --words-weight
    # weighed every counted byte once
    state = {"windows": "uniform", "words_weight": 1, **state}
    for key, mine in settings(trainer).items():
        if key not in state or state[key] == mine or (key in SCHEDULE and trainer.config.reschedule):
            continue
        if key == "data_key":
            raise UserError(
                f"--resume: the data of {trainer.corpus.source} changed since the run started "
                f"(its encoding {state[key]} is now {mine}: the files changed, or this version of "
                "mlx-megabyte encodes them differently); resume on the same data or start a new run"
            )
        flag = "--" + key.replace("_", "-")
        if isinstance(mine, bool):
            raise UserError(
                f"--resume: the run {'used' if state[key] else 'did not use'} {flag}: "
                f"{'pass it' if state[key] else 'drop it'} to continue it"
            )
        hint = f", or add --reschedule to use {flag} {mine} from here on" if key in SCHEDULE else ""
        raise UserError(f"--resume: the run used {flag} {state[key]}, not {mine}: pass the same value{hint}")
