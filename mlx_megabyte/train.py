"""`python -m mlx_megabyte.train`: train a byte-level model of any registered architecture, resumably, with
live progress.

    python -m mlx_megabyte.train                                   # 40m preset on TinyStories
    python -m mlx_megabyte.train --preset tiny --data builtin --iters 300   # offline, in a minute
    python -m mlx_megabyte.train --arch spacebyte --preset small --data builtin --time-budget 600
    python -m mlx_megabyte.train --preset auto --time-budget 1200 --data notes.txt   # a size for 20 minutes
    python -m mlx_megabyte.train --resume                          # continue the run in --save-path
    python -m mlx_megabyte.train --preset small --data digits/ --image-size 8 --image-mode L   # pictures

Several processes train data-parallel when started by `mlx.launch` (docs/distributed.md): every rank reads its
slice of each global batch, gradients are averaged, and only rank 0 writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rich.console import Console

from . import checkpoint, cli, distributed, mixture, sizing
from .errors import UserError
from .models import ARCHITECTURES, DEFAULT_ARCHITECTURE, Config, build
from .models.base import STAGES
from .runtime import default_dtype, use_device
from .settings import settings_of
from .tokens import BYTES, layout_of
from .trainer import Trainer, TrainingConfig, describe
from .weights import locate, read_config

DEFAULT_PRESET = "40m"
AUTO = "auto"  # --preset auto: the size for --time-budget (sizing.py)
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainingConfig) if f.default is not dataclasses.MISSING}
FIELDS = settings_of(TrainingConfig)  # each has its flag
PRESET_NAMES = sorted({name for a in ARCHITECTURES.values() for name in a.presets})


def model_fields() -> dict[str, list]:
    """Every model setting of every architecture, by name: [(architecture, field), ...] (the flags)."""
    found: dict[str, list] = {}
    for arch in ARCHITECTURES.values():
        for f in dataclasses.fields(arch.config):
            if "kind" in f.metadata:
                found.setdefault(f.name, []).append((arch, f))
    return found


MODEL_FIELDS = model_fields()


def preset_table() -> str:
    """Every preset of every architecture: parameters and training FLOPs per byte, computed."""
    lines = ["presets (training FLOPs per byte: forward + backward, attention included):"]
    for arch in ARCHITECTURES.values():
        for name, config in arch.presets.items():
            parameters = build(config).num_parameters()  # lazy arrays: nothing is computed
            lines.append(
                f"  --arch {arch.name:<9} --preset {name:<5}  {parameters / 1e6:6.2f}M parameters  "
                f"{config.flops_per_byte() / 1e6:6.2f} MFLOP/byte  {config.context_length:,}-byte context"
            )
    return "\n".join(lines)


def swept(name: str) -> str:
    """A setting's default in --help: the measured one of some presets, TrainingConfig's otherwise."""
    chosen = ", ".join(
        f"{values[name]:g} for --arch {arch.name} --preset {preset}"
        for arch in ARCHITECTURES.values()
        for preset, values in arch.training_defaults.items()
        if name in values
    )
    return f"{chosen}, else {DEFAULTS[name]:g}; docs/training.md: Defaults chosen by measurement"


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("python -m mlx_megabyte.train", __doc__)
    parser.epilog = preset_table()
    add_model_flags(parser.add_argument_group("model (an architecture and a preset, then any field overridden)"))
    add_training_flags(parser)
    return parser


# The --help sections of the TrainingConfig flags: each holds the fields from its first one to the next's.
SECTIONS = {
    "data": "data",
    "batch_size": "optimisation",
    "steps_per_eval": "evaluation, samples and checkpoints",
    "distributed_timeout": "several ranks (mlx.launch)",
}


def flag_options() -> dict[str, dict]:
    """Where a TrainingConfig field's flag differs from the field: a default this command works out
    (None on the flag, said in words in its help), a metavar."""
    chosen = {
        "batch_size": swept("batch_size"),
        "learning_rate": swept("learning_rate"),
        "iters": f"{DEFAULTS['iters']:,}; with --preset auto, the steps the time budget allows at the measured "
        "speed, so the schedule ends with the budget",
        "dtype": "float32 on CPUs, where half-precision matmuls skip BLAS; bfloat16 on GPUs",
        "save_path": "weights/<preset>-<data>",
    }
    options = {
        name: {"default": None, "help": f"{FIELDS[name].metadata['help']} (default: {text})".replace("%", "%%")}
        for name, text in chosen.items()
    }
    options["time_budget"] = {"metavar": "SECONDS"}
    return options


def add_training_flags(parser) -> None:
    """A flag for every TrainingConfig setting, made from the field (its help, kind, range and default),
    in SECTIONS; and --device, which is no setting of the run."""
    options, group = flag_options(), parser
    for name, field in FIELDS.items():
        if name in SECTIONS:
            group = parser.add_argument_group(SECTIONS[name])
        cli.setting_flag(group, field, **options.get(name, {}))
        if name == "time_budget":
            group.add_argument(
                "--device", choices=("cpu", "gpu"), help="where to train (default: the GPU when MLX has one)"
            )


def add_model_flags(group) -> None:
    """--arch, --preset, and a flag for every setting of every architecture's config (its help, kind and
    range from the field; a setting only some architectures have names them)."""
    group.add_argument(
        "--arch",
        choices=tuple(ARCHITECTURES),
        help=" or ".join(f"{a.name} ({a.summary})" for a in ARCHITECTURES.values())
        + f" (default: {DEFAULT_ARCHITECTURE}, or that of --init-from)",
    )
    group.add_argument(
        "--preset",
        choices=[*PRESET_NAMES, AUTO],  # None: DEFAULT_PRESET, unless --init-from decides
        help=f"model size, in the architecture's presets (below), or {AUTO}: with --time-budget, time "
        "each preset here for a few seconds and take the one that would see nearest "
        f"{sizing.DEFAULT_BYTES_PER_PARAMETER:g} bytes per parameter in the budget (docs/training.md: A size for the time you have) "
        f"(default: {DEFAULT_PRESET}; with --init-from, the weights' own model)",
    )
    for name, owners in MODEL_FIELDS.items():
        spec = owners[0][1].metadata
        helps = dict.fromkeys(f.metadata["help"] for _, f in owners)
        text = "; ".join(helps) if len(helps) == 1 else "; ".join(f"{a.name}: {f.metadata['help']}" for a, f in owners)
        if len(owners) < len(ARCHITECTURES):
            text = f"{'/'.join(a.name for a, _ in owners)}: {text}" if len(helps) == 1 else text
        if spec["kind"] is bool:
            group.add_argument(_flag(name), action=argparse.BooleanOptionalAction, help=text)
        elif spec["kind"] == STAGES:
            group.add_argument(_flag(name), type=_ints, help=text)
        else:
            low = max((f.metadata["low"] for _, f in owners if f.metadata["low"] is not None), default=None)
            group.add_argument(_flag(name), type=cli.setting_type({**spec, "low": low}), help=text)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def model_config(args) -> Config:
    """The model: a preset of the architecture with any field overridden, or (--init-from) the weights'
    own config."""
    overrides = {name: getattr(args, name) for name in MODEL_FIELDS if getattr(args, name, None) is not None}
    if args.init_from:
        return _init_from_config(args, overrides)
    overrides = _token_layout(args, overrides)
    arch = ARCHITECTURES[getattr(args, "arch", None) or DEFAULT_ARCHITECTURE]
    preset = getattr(args, "preset", None) or DEFAULT_PRESET
    foreign = [name for name in overrides if name not in {f.name for f in dataclasses.fields(arch.config)}]
    if foreign:
        what = "is not a" if len(foreign) == 1 else "are not"
        raise UserError(
            f"{', '.join(map(_flag, foreign))} {what} {arch.title} setting{'s' * (len(foreign) > 1)} "
            f"(--arch {arch.name})"
        )
    if preset not in arch.presets:
        raise UserError(f"--arch {arch.name} has no preset {preset!r} (choose from {', '.join(arch.presets)})")
    try:
        return arch.presets[preset].replace(**overrides)
    except (TypeError, ValueError) as error:
        raise UserError(f"invalid model: {error}") from None


def _token_layout(args, overrides: dict) -> dict:
    """Pictures, sound and other binary files train a model that learns every byte value unless
    --no-shift-bytes says otherwise; --shift-bytes brings the vocabulary it needs unless --num-tokens is
    given."""
    if "shift_bytes" not in overrides and getattr(args, "data", None) is not None:
        kind = getattr(args, "data_kind", None) or mixture.detect_kind(args.data)
        if kind != "text":
            overrides = {**overrides, "shift_bytes": True}
    if overrides.get("shift_bytes") and "num_tokens" not in overrides:
        overrides = {**overrides, "num_tokens": BYTES.num_tokens}
    return overrides


def _init_from_config(args, overrides: dict) -> Config:
    """--init-from: the weights' own model; flags may change only settings that change no weight's shape,
    and an --arch or --preset that is not the weights' is refused (it would be silently ignored)."""
    config, _ = read_config(locate(args.init_from))
    chosen, preset = getattr(args, "arch", None), getattr(args, "preset", None)
    if chosen is not None and chosen != config.model_type:
        raise UserError(f"--init-from {args.init_from} holds a {config.model_type} model; drop --arch {chosen}")
    named = chosen or DEFAULT_ARCHITECTURE  # a preset alone names one of the default architecture
    if preset is not None and not _same_shape(ARCHITECTURES[named].presets.get(preset), config):
        raise UserError(
            f"--init-from {args.init_from} holds a {config.model_type} model that is not --arch "
            f"{named} --preset {preset}; drop --preset (the model is taken from the weights)"
        )
    fixed = sorted(name for name in overrides if not _tunable(config, name))
    if fixed:
        raise UserError(f"--init-from takes the model from its weights; drop {', '.join(map(_flag, fixed))}")
    return config.replace(**overrides)


def _tunable(config: Config, name: str) -> bool:
    """Does changing this setting leave every weight's shape alone (dropout, pad_id)?"""
    return any(f.name == name and f.metadata.get("tunable") for f in dataclasses.fields(config))


def _same_shape(preset: Config | None, config: Config) -> bool:
    """Does a preset describe these weights' model (the settings --init-from may change aside)? Then
    naming it with --init-from is harmless; any other preset would be silently ignored, so it is refused."""

    def shape(c: Config) -> dict:
        return {"model_type": c.model_type, **{k: v for k, v in c.to_dict().items() if not _tunable(c, k)}}

    return preset is not None and type(preset) is type(config) and shape(preset) == shape(config)


def training_config(args) -> TrainingConfig:
    """The command line as a TrainingConfig (validated there)."""
    model = model_config(args)
    save_path = args.save_path
    if save_path is None:
        name = Path(args.init_from).name if args.init_from else args.preset or DEFAULT_PRESET
        if model.model_type != DEFAULT_ARCHITECTURE and not args.init_from:
            name = f"{model.model_type}-{name}"
        save_path = str(Path("weights") / f"{name}-{mixture.slug(args.data)}")
    settings = {name: getattr(args, name) for name in DEFAULTS if name != "model" and hasattr(args, name)}
    arch = ARCHITECTURES[model.model_type]
    measured = {} if args.init_from else arch.training_defaults.get(args.preset or DEFAULT_PRESET, {})
    for name in ("batch_size", "learning_rate", "iters"):
        if settings.get(name) is None:
            settings[name] = measured.get(name, DEFAULTS[name])
    dtype = args.dtype or default_dtype(training=True)
    return TrainingConfig(model=model, **{**settings, "save_path": save_path, "dtype": dtype})


def auto_preset(args, console) -> str:
    """--preset auto: the preset sizing.measure_sizes picks for --time-budget on this machine, said with
    its reasons before any training."""
    if args.time_budget is None:
        raise UserError("--preset auto picks a model size for a time budget: give --time-budget SECONDS")
    for given, why in (
        (args.init_from, "--init-from takes the model from its weights"),
        (args.resume, "--resume continues the run's own model"),
    ):
        if given:
            raise UserError(f"{why}: drop --preset auto")
    fixed = [name for name in MODEL_FIELDS if getattr(args, name, None) is not None and not _tunable_anywhere(name)]
    if fixed:
        raise UserError(
            f"--preset auto chooses the model's size; drop {', '.join(map(_flag, fixed))} (or name a preset)"
        )
    arch = ARCHITECTURES[getattr(args, "arch", None) or DEFAULT_ARCHITECTURE]
    names = sorted(arch.presets, key=lambda name: build(arch.presets[name]).num_parameters())
    configs = {name: training_config(argparse.Namespace(**{**vars(args), "preset": name})) for name in names}
    choice = sizing.measure_sizes(
        configs,
        args.time_budget,
        progress=lambda name: console.print(f"--preset auto: timing {name} ...", highlight=False),
    )
    for line in choice.explain().splitlines():
        console.print(line, highlight=False, soft_wrap=True)
    if args.iters is None:
        args.iters = max(1, int(args.time_budget * choice.chosen.bytes_per_second // choice.chosen.bytes_per_step))
        console.print(
            f"  --iters {args.iters:,}: the steps {args.time_budget:g} s allow at the measured speed (the "
            "learning-rate schedule ends with the budget)",
            highlight=False,
            soft_wrap=True,
        )
    return choice.chosen.name


def _tunable_anywhere(name: str) -> bool:
    """A model setting that changes no weight's shape (dropout, pad_id): kept with --preset auto."""
    return all(f.metadata.get("tunable") for _, f in MODEL_FIELDS[name])


def run(args, console) -> dict:
    """Train as the command line says; return the summary of `Trainer.fit`."""
    use_device(getattr(args, "device", None))
    if getattr(args, "preset", None) == AUTO:
        if distributed.launched():
            raise UserError("--preset auto times one machine; with several ranks name the preset")
        args.preset = auto_preset(args, console)
    config = training_config(args)
    group, watchdog = distributed.init(config.distributed_timeout)
    chief = group.rank() == 0
    lock = None
    try:
        if chief:  # before any work: a second run into the same directory is refused at once
            lock, moved_to = checkpoint.claim(Path(config.save_path), resume=config.resume, overwrite=config.overwrite)
            if moved_to:
                console.print(f"moved the run that was in {config.save_path} to {moved_to}")
        # Local work, which cannot hang on another rank: the watchdog waits until the barrier after it.
        if watchdog:
            watchdog.beat("preparing the data", timeout=float("inf"))
        corpus = mixture.prepare(
            config.data,
            config.val_data,
            config.val_fraction,
            config.cache_dir,
            config.builtin_mb,
            console=console if chief else None,
            layout=layout_of(config.model),
            kind=config.data_kind,
            media=config.media(),
        )
        if config.mask_prompt:  # computed (once per machine) and kept before the ranks meet
            for one in corpus.corpora if isinstance(corpus, mixture.Mixture) else [corpus]:
                if one.instruct or one is corpus:
                    one.story_mask("train"), one.story_mask("val")
                    if config.words_weight > 1:
                        one.first_use_mask("train")
        if watchdog:
            watchdog.beat("waiting for the other ranks to prepare the data")
            distributed.barrier(group)
        trainer = Trainer(config, corpus, group, console, beat=watchdog.beat if watchdog else None)
        for skipped in trainer.skipped:
            trainer.say(f"skipped the damaged checkpoint {skipped}")
        for line in describe(trainer):
            trainer.say(line)
        return trainer.fit()
    finally:
        if lock:
            lock.close()
        if watchdog:
            watchdog.stop()


@cli.cli
def main(argv=None):
    args = build_parser().parse_args(argv)
    summary = run(args, Console(stderr=True))
    if summary.get("interrupted"):
        sys.exit(130)


if __name__ == "__main__":
    main()
