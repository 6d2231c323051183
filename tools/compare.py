#!/usr/bin/env python
"""Compare training configurations at equal wall-clock (or equal bytes) on the same data, or sweep the
parameters of one configuration.

    python tools/compare.py --data builtin --time-budget 1200 --out runs/compare \\
        --config "megabyte: --arch megabyte --preset small" \\
        --config "spacebyte: --arch spacebyte --preset small" \\
        --train-args "--batch-size 8 --iters 4000 --steps-per-eval 100"
    python tools/compare.py --configs configs.json --data corpus.txt --bytes 50000000 --out runs/equal-bytes
    python tools/compare.py --data builtin --time-budget 300 --out runs/sweep \\
        --config "small: --arch megabyte --preset small" --vary patch=4,8,16 --vary learning-rate=4e-4,1e-3

A configuration is a name and `python -m mlx_megabyte.train` flags ("NAME: FLAGS" with --config, or a
JSON file {"NAME": "FLAGS", ...} with --configs); --train-args go to every run, before its own flags.
The runs train one after another, each in its own process, into OUT/NAME, for --time-budget seconds of
training steps each (train's --time-budget: validation and checkpoints are not counted) or for --bytes
bytes each (the --iters that sees them). The learning-rate schedule follows each run's --iters: for
equal-time runs, pick --iters near what the budget allows. Each run's final weights are then scored with
`python -m mlx_megabyte.evaluate --json` on the same held-out bytes (--eval-data, default --data, its
validation split; --eval-max-bytes to score fewer).

Sweeps: with --vary NAME=VALUE,VALUE,... (repeatable) the one configuration given is the base, and the
runs are the base with those settings changed. NAME is a field of the base architecture's config (the
model: dim, depth, heads, ... for megabyte; local_dim, window, max_patch, ... for spacebyte), `preset`,
or a field of the trainer's TrainingConfig (batch_size, learning_rate, warmup_steps, ...); `-` and `_`
are the same (learning-rate = learning_rate). Not the settings compare.py sets itself (data, cache_dir,
save_path, time_budget, resume, reschedule, overwrite, quiet; iters with --bytes). An unknown NAME is
refused, naming the valid ones. VALUE is spelled as the train flag takes it, except:
  - per-stage MEGABYTE fields (dim, depth, max_seq_len) join the stages with x: max_seq_len=128x8,256x4
    is --max-seq-len 128,8 then --max-seq-len 256,4; one number (dim=256) means every stage;
  - switches (grad_checkpoint, rel_pos, pos_emb) take true or false;
  - patch (MEGABYTE, derived): P bytes per global position at the base's context length and training
    FLOPs per byte: max_seq_len's last stage becomes P and its first stage the context / (the other
    stages' product), and the global width dim[0] becomes the multiple of 8 whose training FLOPs per
    byte are nearest the base's (refused if none is within 5%; the table's MFLOP/byte column shows them).
    Plain patch sizes without that adjustment: vary max_seq_len.
--sweep one-at-a-time (the default) runs the base and then each axis alone, the others at the base's
values (a value equal to the base's is the base run): the runs add up over the axes (3 + 3 values: at
most 7 runs, not 9) and each parameter's effect is seen around one known configuration. --sweep product
runs every combination, for interactions. A run's name is the base's and its values, NAME=VALUE, joined
by '-' (small-patch=4-learning_rate=1e-3), so running the same sweep again finds the same runs.
--dry-run prints the runs ("NAME: FLAGS", as --config takes them) and their sizes, and trains nothing.

Writes OUT/results.md and OUT/results.json (config, the varied settings' values, parameters, training
FLOPs per byte, steps, bytes seen, training seconds, bytes/s, held-out bits per byte), OUT/configs.json
(every run's flags, as --configs reads them: with the same --data, budget and --train-args they rerun
the runs; keep one entry to rerun one), OUT/bpb-vs-time.png: each run's validation bits per byte
against its training time, its final held-out score marked, and for a sweep OUT/bpb-vs-parameters.png:
held-out bits per byte against each varied setting, one panel per axis (a log scale for the learning
rate and for positive values spanning 10x or more) (plots need matplotlib: the `plot` extra).
Resumable: a run with a result (OUT/NAME/compare.json) is not trained or scored again (a result left by
other flags is refused before anything runs), and a run that was cut off continues from its newest
checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from mlx_megabyte import cli
from mlx_megabyte.errors import UserError

RESULT_FILE = "compare.json"
SWEEPS = ("one-at-a-time", "product")
DEFAULT_SWEEP = "one-at-a-time"
# Train settings compare.py sets itself, after each run's own flags: a sweep cannot vary them.
OWN_SETTINGS = ("data", "cache_dir", "save_path", "time_budget", "resume", "reschedule", "overwrite", "quiet")
STAGES = "x"  # joins the stages of a per-stage value in --vary: dim=256x128
WIDTH_STEP = 8  # the patch axis picks global widths in multiples of this (SIMD-friendly)
FLOPS_TOLERANCE = 0.05  # ... and refuses a patch whose nearest width misses the base's FLOPs by more
NAME_LIMIT = 200  # characters of a run's name (a directory name; file systems allow 255 bytes)


def parse_args(argv=None):
    parser = cli.parser("tools/compare.py", __doc__)
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="'NAME: FLAGS'",
        help="a configuration: a name, a colon and train flags (repeat for several)",
    )
    parser.add_argument("--configs", help='a JSON file of configurations: {"NAME": "FLAGS", ...}')
    parser.add_argument("--data", required=True, help="training data for every run (train's --data)")
    parser.add_argument("--out", required=True, help="where the runs, the tables and the plots go")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument(
        "--time-budget",
        type=cli.number(float, 0, low_open=True),
        metavar="SECONDS",
        help="seconds of training steps per run",
    )
    budget.add_argument(
        "--bytes", type=cli.number(int, 1), help="training bytes per run instead (equal data, not equal time)"
    )
    parser.add_argument(
        "--train-args", default="", help="train flags for every run (e.g. '--batch-size 8 --iters 4000')"
    )
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        type=vary,
        metavar="NAME=VALUE,VALUE,...",
        help="sweep a setting of the one configuration given (repeat for several axes; see above)",
    )
    parser.add_argument(
        "--sweep",
        choices=SWEEPS,
        default=DEFAULT_SWEEP,
        help="with --vary: each axis alone around the base, or every combination",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the runs (NAME: FLAGS), their parameters and FLOPs per byte, and train nothing",
    )
    parser.add_argument("--eval-data", help="held-out data (default: --data)")
    parser.add_argument(
        "--eval-split",
        default="validation",
        choices=("validation", "train", "all"),
        help="the part of --eval-data to score",
    )
    parser.add_argument("--eval-max-bytes", type=cli.number(int, 1), help="score only the first N held-out bytes")
    parser.add_argument("--cache-dir", help="where encoded data is kept (train's and evaluate's --cache-dir)")
    return parser.parse_args(argv)


def vary(text: str) -> tuple[str, tuple[str, ...]]:
    """An argparse type for --vary NAME=VALUE,VALUE,...: the name in field spelling (`-` read as `_`)
    and the values as typed. Whether NAME exists depends on the architecture: checked later."""
    name, equals, values = text.partition("=")
    name = name.strip().replace("-", "_")
    listed = tuple(value.strip() for value in values.split(","))
    if not equals or not name or not all(listed):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE,VALUE,... (e.g. learning-rate=4e-4,1e-3), got {text!r}")
    return name, listed


# What a run's directory name may hold besides the '=' of NAME=VALUE (a regex character class: keep '-'
# last, where it is literal, not a range).
NAME_CHARACTERS = "A-Za-z0-9._+-"


def configurations(args) -> dict[str, list[str]]:
    """Name -> train flags, in the order given (file first). A name given twice is refused: one of the
    two would silently not run."""
    found: dict[str, object] = {}

    def add(name: str, flags, where: str):
        if name in found:
            raise UserError(f"the configuration name {name!r} is given twice ({where}): give each its own name")
        found[name] = flags

    if args.configs:
        for name, flags in read_configs(args.configs):
            add(name, flags, f"in {args.configs}")
    for spec in args.config:
        name, colon, flags = spec.partition(":")
        if not colon or not name.strip():
            raise UserError(f"--config {spec!r}: expected 'NAME: FLAGS'")
        add(name.strip(), flags, "by --config")
    if not found:
        raise UserError("give at least one --config or --configs")
    runs = {}
    for name, flags in found.items():
        # run_name's alphabet and its '=': a sweep's own names (small-patch=4) read back from its configs.json.
        if not re.fullmatch(f"[={NAME_CHARACTERS}]+", name) or set(name) == {"."}:
            raise UserError(
                f"configuration name {name!r}: use letters, digits, '-', '_', '.', '+' and '=' (it names a directory)"
            )
        runs[name] = split_flags(flags, f"configuration {name!r}")
    return runs


def read_configs(path: str) -> list[tuple[str, object]]:
    """The (name, flags) pairs of a --configs file; a name given twice is refused (json.loads would keep
    the last one silently)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--configs: cannot read {path} ({getattr(error, 'strerror', None) or error})") from None

    def unique(pairs):
        names = [name for name, _ in pairs]
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice is not None:
            raise UserError(f"the configuration name {twice!r} is given twice (in {path}): give each its own name")
        return dict(pairs)

    try:
        found = json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as error:
        raise UserError(f"--configs: {path} is not valid JSON ({error})") from None
    if not isinstance(found, dict):
        raise UserError(
            f'--configs: {path} must hold a JSON object of configurations, {{"NAME": "FLAGS", ...}}, '
            f"not a {type(found).__name__}"
        )
    return list(found.items())


def split_flags(flags, what: str) -> list[str]:
    """Train flags as a list: a string split as a shell would, or a list of strings as it is."""
    if isinstance(flags, list) and all(isinstance(flag, str) for flag in flags):
        split = list(flags)
    elif not isinstance(flags, str):
        raise UserError(f"{what}: the flags must be a string (or a list of strings), got {json.dumps(flags)[:60]}")
    else:
        try:
            split = shlex.split(flags)
        except ValueError as error:  # an unbalanced quote
            raise UserError(f"{what}: cannot split {flags.strip()!r} into flags ({error})") from None
    for flag in split:  # JSON can escape a lone UTF-16 surrogate, which no command line can carry
        try:
            os.fsencode(flag)
        except UnicodeEncodeError:
            raise UserError(f"{what}: the flag {flag!r} holds a lone UTF-16 surrogate, which is not text") from None
    return split


# --- train's flags --------------------------------------------------------------------------------------


def train_parser() -> argparse.ArgumentParser:
    """train's own parser, its flag errors raised as one-line UserErrors (callers say which run or axis)."""
    from mlx_megabyte.train import build_parser

    parser = build_parser()

    def refuse(message):
        raise UserError(f"{message} (see python -m mlx_megabyte.train --help)")

    parser.error = refuse
    return parser


def parse_train(parser, flags: list[str]):
    """(the parsed flags, their TrainingConfig): what a train command line means."""
    from mlx_megabyte.train import training_config

    parsed = parser.parse_args(flags)
    return parsed, training_config(parsed)


def train_flags(args, name: str, flags: list[str]) -> list[str]:
    """Every train flag of one run but the budget: compare's own first (a configuration may override
    them), then --train-args, the run's flags, and the data and run directory, which no run overrides."""
    full = [
        "--quiet",
        "--steps-per-sample",
        "0",
        *split_flags(args.train_args, "--train-args"),
        *flags,
        "--data",
        args.data,
        "--save-path",
        str(Path(args.out) / name),
    ]
    if args.cache_dir:
        full += ["--cache-dir", args.cache_dir]
    return full


def train_command(args, name: str, flags: list[str]) -> tuple[list[str], object]:
    """The train command line of one run, and its TrainingConfig (what the flags mean)."""
    parser = train_parser()
    full = train_flags(args, name, flags)
    try:
        _, config = parse_train(parser, full)
        if args.bytes is not None:
            full += ["--iters", str(max(1, math.ceil(args.bytes / config.bytes_per_rank_step)))]
            _, config = parse_train(parser, full)
        else:
            full += ["--time-budget", repr(args.time_budget)]
    except UserError as error:
        raise UserError(f"configuration {name!r}: {error}") from None
    return [sys.executable, "-m", "mlx_megabyte.train", *full], config


# --- sweeps ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a sweep: its name, its train flags, and its values of every axis (as the tables show
    them; the base's own where the run does not vary an axis). `point` holds the values it was given."""

    name: str
    flags: list[str]
    values: dict[str, str]
    point: dict[str, str]


def patch_at_fixed_flops(model, text: str) -> dict:
    """The derived `patch` axis (MEGABYTE): P bytes per global position, at the context length and the
    training FLOPs per byte of `model`. A larger patch makes the global model run less often per byte,
    so holding FLOPs fixed buys it width: max_seq_len becomes (context / (P * the middle stages), the
    middle stages, P), and dim[0] the multiple of WIDTH_STEP whose FLOPs are nearest the model's."""
    patch = positive_integer(text)
    if model.stages < 2:
        raise UserError("patch needs a model of at least two stages")
    if patch == model.max_seq_len[-1]:
        return {}  # the model's own patch: nothing changes
    inner = math.prod(model.max_seq_len[1:-1]) * patch
    if model.context_length % inner:
        raise UserError(
            f"the context of {model.context_length} bytes is not a whole number of {inner}-byte global positions"
        )
    lengths = (model.context_length // inner, *model.max_seq_len[1:-1], patch)
    target = model.flops_per_byte()

    def with_width(width: int):
        return dataclasses.replace(model, max_seq_len=lengths, dim=(width, *model.dim[1:]))

    widths = range(WIDTH_STEP, 8 * model.dim[0] + 1, WIDTH_STEP)
    width = min(widths, key=lambda w: abs(with_width(w).flops_per_byte() - target))
    missed = with_width(width).flops_per_byte() / target - 1
    if abs(missed) > FLOPS_TOLERANCE:
        raise UserError(
            f"no global width holds the base's {target / 1e6:.2f} MFLOP/byte "
            f"(the nearest, {width}, is {missed:+.0%} off); vary max_seq_len instead"
        )
    return {"max_seq_len": lengths, "dim": (width, *model.dim[1:])}


# Axes that are not one field: name -> (what computes the fields from the model, the fields it sets).
DERIVED_AXES = {"megabyte": {"patch": (patch_at_fixed_flops, ("max_seq_len", "dim"))}}


def positive_integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"expected a positive integer, got {text!r}")
    return value


def options(parser) -> list:
    """The parser's flags (argparse actions with option strings). argparse lists them only in its private
    `_actions`, so this is the one place that reads it."""
    return [action for action in parser._actions if action.option_strings]


def axis_names(parser, arch: str, by_bytes: bool) -> dict[str, str]:
    """Every name --vary takes for this architecture -> its group (model, training, derived): the fields
    of the architecture's config and of TrainingConfig that train has a flag for, and `preset`; not
    what compare.py sets itself."""
    from mlx_megabyte.models import architecture
    from mlx_megabyte.trainer import TrainingConfig

    flags = {action.dest for action in options(parser)}
    own = set(OWN_SETTINGS) | ({"iters"} if by_bytes else set())
    names = {"preset": "model"}
    names.update({f.name: "model" for f in dataclasses.fields(architecture(arch).config) if f.name in flags})
    names.update(
        {
            f.name: "training"
            for f in dataclasses.fields(TrainingConfig)
            if f.name in flags and f.name not in own and f.name not in names
        }
    )
    names.update({name: "derived" for name in DERIVED_AXES.get(arch, {})})
    return names


def unknown_axis(name: str, arch: str, names: dict[str, str]) -> UserError:
    """One line: the unknown name, a close match (by spelling, or by initials: lr -> learning_rate),
    and every valid name by group."""
    initials = [valid for valid in names if "_" in valid and "".join(p[0] for p in valid.split("_")) == name]
    close = initials or difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    groups = "; ".join(
        f"{group}: {', '.join(n for n, g in names.items() if g == group)}"
        for group in ("model", "training", "derived")
        if group in names.values()
    )
    return UserError(f"--vary {name}: not a setting of --arch {arch}{hint} ({groups})")


def check_axes(axes: list[tuple[str, tuple[str, ...]]], names: dict[str, str], arch: str, by_bytes: bool) -> None:
    """Refuse an unknown axis, an axis given twice, a value given twice, and a derived axis together with
    a field it sets (one of the two would be lost)."""
    seen = []
    for name, values in axes:
        if by_bytes and name == "iters":
            raise UserError("--vary iters: with --bytes, compare.py sets iters itself (the steps that see them)")
        if name in OWN_SETTINGS:
            raise UserError(f"--vary {name}: compare.py sets {name} itself, alike for every run")
        if name not in names:
            raise unknown_axis(name, arch, names)
        if name in seen:
            raise UserError(f"--vary {name} is given twice: give all its values in one --vary")
        twice = next((value for value in values if values.count(value) > 1), None)
        if twice is not None:
            raise UserError(f"--vary {name}: the value {twice} is given twice")
        seen.append(name)
    for name in seen:
        touched = DERIVED_AXES.get(arch, {}).get(name, (None, ()))[1]
        clash = next((other for other in seen if other in touched), None)
        if clash:
            raise UserError(f"--vary {name} sets {', '.join(touched)}: it cannot be varied with --vary {clash}")


def switch(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise UserError(f"a switch takes true or false, got {text!r}")
    return text.lower() == "true"


def stage_values(name: str, text: str) -> str:
    """A per-stage value of --vary (256x128) as train's flag takes it (256,128)."""
    parts = text.split(STAGES)
    if not all(part.isdigit() for part in parts):
        raise UserError(
            f"expected integers joined by {STAGES}, one per stage (e.g. {name}=256{STAGES}128), "
            f"or one integer for every stage, got {text!r}"
        )
    return ",".join(parts)


def set_setting(parser, flags: list[str], name: str, text: str, per_stage: bool = False) -> list[str]:
    """`flags` with setting `name` set to `text` (as --vary spells it; `per_stage`: stages joined by x):
    every occurrence of its flag (any spelling, with its value) dropped and the new one appended, so
    that a run's flags say each setting once (and a switch set in the base can be turned off, which
    appending cannot do)."""
    action = next(action for action in options(parser) if action.dest == name)
    option = action.option_strings[0]
    if action.nargs == 0:  # a switch: --x, or --no-x where train has it, else leaving --x out
        negative = next((spelling for spelling in action.option_strings if spelling != option), None)
        new = [option] if switch(text) else [negative] if negative else []
    else:
        new = [option, stage_values(name, text) if per_stage else text]
    kept, skip = [], False
    for flag in flags:
        if skip:
            skip = False
        elif flag.split("=", 1)[0] in action.option_strings:
            skip = action.nargs != 0 and "=" not in flag  # its value follows
        else:
            kept.append(flag)
    return kept + new


def resolve(args, parser, flags: list[str]):
    """(parsed flags, TrainingConfig) of a run with these flags, --train-args and compare's own."""
    return parse_train(parser, train_flags(args, "sweep", flags))


def apply_point(args, parser, base_flags: list[str], point: dict[str, str], arch: str, staged: set[str]):
    """(flags, parsed flags, TrainingConfig) of the base with the point's values (`staged`: the per-stage
    fields): the fields first, then derived axes, computed from the model the rest of the point gives."""
    derived = DERIVED_AXES.get(arch, {})
    flags = list(base_flags)
    for name, text in point.items():
        if name not in derived:
            flags = set_setting(parser, flags, name, text, name in staged)
    parsed, config = resolve(args, parser, flags)
    for name, text in point.items():
        if name in derived:
            for field, value in derived[name][0](config.model, text).items():
                flags = set_setting(parser, flags, field, STAGES.join(map(str, value)), per_stage=True)
            parsed, config = resolve(args, parser, flags)
    for name, text in point.items():  # every field took its value (a base flag spelt otherwise would not)
        if name in derived:
            continue
        alone = parser.parse_args(set_setting(parser, [], name, text, name in staged))
        if getattr(parsed, name) != getattr(alone, name):
            raise UserError(
                f"the base's flags set {name} in a spelling the sweep cannot replace (an abbreviation?): "
                "spell the flag in full there"
            )
    return flags, parsed, config


def value_text(value) -> str:
    """A setting's value as the tables and plots show it: per-stage values joined by x, numbers short."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return STAGES.join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def values_of(axes: list[str], groups: dict[str, str], parsed, config) -> dict[str, str]:
    """Every axis' value in a run, as train resolves it (preset defaults, derived values included)."""
    from mlx_megabyte.train import DEFAULT_PRESET

    def value(name):
        if name == "preset":
            return parsed.preset or (None if parsed.init_from else DEFAULT_PRESET)
        if name == "patch":
            return config.model.max_seq_len[-1]
        return getattr(config.model if groups[name] == "model" else config, name)

    return {name: value_text(value(name)) for name in axes}


def run_name(base: str, point: dict[str, str]) -> str:
    """The base's name and the point's values, NAME=VALUE joined by '-'; a character a file name should
    not hold becomes '_'."""
    parts = [base] + [f"{name}={re.sub(f'[^{NAME_CHARACTERS}]', '_', text)}" for name, text in point.items()]
    return "-".join(parts)


def describe_point(point: dict[str, str]) -> str:
    return ", ".join(f"{name}={text}" for name, text in point.items())


def sweep_points(axes: dict[str, tuple[str, ...]], mode: str) -> list[dict[str, str]]:
    """one-at-a-time: each value of each axis alone (the base is added by the caller); product: every
    combination, the first axis slowest."""
    if mode == "one-at-a-time":
        return [{name: value} for name, values in axes.items() for value in values]
    return [dict(zip(axes, combination)) for combination in itertools.product(*axes.values())]


def expand(args, base_name: str, base_flags: list[str]) -> list[Run]:
    """The runs of a sweep around one base configuration, each checked as train would check it. A value
    that makes the base's own run is that run (one-at-a-time); two points that make the same run are
    refused (one would be trained twice under two names)."""
    parser = train_parser()
    try:
        parsed, base = resolve(args, parser, base_flags)
    except UserError as error:
        raise UserError(f"configuration {base_name!r}: {error}") from None
    arch = base.model.model_type
    groups = axis_names(parser, arch, args.bytes is not None)
    check_axes(args.vary, groups, arch, args.bytes is not None)
    axes = dict(args.vary)
    # Per-stage fields are those the model holds one value per stage of (MEGABYTE's dim, depth, max_seq_len).
    staged = {
        name
        for name, group in groups.items()
        if group == "model" and isinstance(getattr(base.model, name, None), tuple)
    }

    def key(config):  # what a run is, its directory aside
        return dataclasses.replace(config, save_path="")

    def point_run(point):
        try:
            return apply_point(args, parser, base_flags, point, arch, staged)
        except UserError as error:
            raise UserError(f"--vary {describe_point(point)}: {error}") from None

    for name, values in axes.items():  # a value train's flag refuses is named alone, not in a combination
        for text in values:
            try:
                if name in DERIVED_AXES.get(arch, {}):
                    positive_integer(text)
                else:
                    parser.parse_args(set_setting(parser, [], name, text, name in staged))
            except UserError as error:
                raise UserError(f"--vary {name}={text}: {error}") from None
    runs, seen = [], {}
    if args.sweep == "one-at-a-time":
        runs.append(Run(base_name, list(base_flags), values_of(list(axes), groups, parsed, base), {}))
        seen[key(base)] = None
    for point in sweep_points(axes, args.sweep):
        flags, parsed_point, config = point_run(point)
        if key(config) in seen:
            if seen[key(config)] is None:
                continue  # the base's own value: the base run
            raise UserError(f"--vary {describe_point(point)} and {seen[key(config)]} make the same run")
        seen[key(config)] = describe_point(point)
        runs.append(Run(run_name(base_name, point), flags, values_of(list(axes), groups, parsed_point, config), point))
    check_names(runs)
    return runs


def check_names(runs: list[Run]) -> None:
    names = [run.name for run in runs]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise UserError(f"--vary: two runs would both be named {twice!r}; give values that differ in letters or digits")
    long = next((name for name in names if len(name) > NAME_LIMIT), None)
    if long is not None:
        raise UserError(
            f"--vary: the run name {long[:40]}... is {len(long)} characters long (at most {NAME_LIMIT}); "
            "give the base a shorter name or vary fewer axes at once"
        )


def plan(args) -> list[Run]:
    """The runs: the configurations as given, or (--vary) the sweep around the one given."""
    configs = configurations(args)
    if not args.vary:
        return [Run(name, flags, {}, {}) for name, flags in configs.items()]
    if len(configs) != 1:
        raise UserError(
            f"--vary sweeps one base configuration: give exactly one --config (or a --configs file "
            f"of one), not {len(configs)}"
        )
    ((name, flags),) = configs.items()
    return expand(args, name, flags)


# --- running and scoring --------------------------------------------------------------------------------


def earlier_result(run_dir: Path) -> dict | None:
    """The result a run was scored with before, or None: none yet, or a damaged file (scored again)."""
    try:
        result = json.loads((run_dir / RESULT_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return result if isinstance(result, dict) and "heldout_bpb" in result else None


def check_earlier_results(out: Path, runs: list[Run]) -> None:
    """Refuse, before anything runs, a result left in OUT/NAME by other flags: reused, it would stand in
    the table for a run that never happened (a sweep's names stay the same when its base changes)."""
    for run in runs:
        result = earlier_result(out / run.name)
        if result is not None and result.get("flags") != shlex.join(run.flags):
            raise UserError(
                f"{out / run.name} holds the result of other flags ({result.get('flags')!r}, now "
                f"{shlex.join(run.flags)!r}): remove it, or give another --out"
            )


def run_one(args, name: str, flags: list[str]) -> dict:
    from mlx_megabyte import checkpoint
    from mlx_megabyte.models import build
    from mlx_megabyte.weights import read_config

    run_dir = Path(args.out) / name
    result_path = run_dir / RESULT_FILE
    done_before = earlier_result(run_dir)
    if done_before is not None:
        print(f"{name}: done before, skipped ({result_path})", flush=True)
        return done_before

    command, config = train_command(args, name, flags)
    if checkpoint.latest_checkpoint(run_dir) is not None:
        command.append("--resume")  # cut off before: continue (the time budget counts on)
    elif run_dir.exists() and any(run_dir.iterdir()):
        command.append("--overwrite")  # nothing usable: start afresh (the old directory is moved aside)
    print(f"{name}: training ({shlex.join(command[1:])})", flush=True)
    tic = time.perf_counter()
    done = subprocess.run(command)
    if done.returncode != 0:
        raise UserError(f"the training of {name} failed (exit code {done.returncode}); run again to resume it")
    wall = time.perf_counter() - tic

    latest = checkpoint.latest_checkpoint(run_dir)
    state = json.loads((latest / checkpoint.STATE_FILE).read_text())
    evaluation = [
        sys.executable,
        "-m",
        "mlx_megabyte.evaluate",
        "--model",
        str(latest),
        "--data",
        args.eval_data or args.data,
        "--split",
        args.eval_split,
        "--json",
    ]
    if args.eval_max_bytes:
        evaluation += ["--max-bytes", str(args.eval_max_bytes)]
    if args.cache_dir:
        evaluation += ["--cache-dir", args.cache_dir]
    print(f"{name}: scoring {latest}", flush=True)
    scored = subprocess.run(evaluation, capture_output=True, text=True)
    if scored.returncode != 0:
        raise UserError(f"evaluating {name} failed: {scored.stderr.strip()[-500:]}")
    score = json.loads(scored.stdout.strip().splitlines()[-1])

    model_config, _ = read_config(latest)
    steps, seconds = state["step"], state.get("train_seconds") or math.nan
    seen = steps * config.bytes_per_rank_step
    result = {
        "name": name,
        "flags": shlex.join(flags),
        "arch": model_config.model_type,
        "parameters": build(model_config).num_parameters(),
        "mflops_per_byte": model_config.flops_per_byte() / 1e6,
        "steps": steps,
        "bytes_seen": seen,
        "train_seconds": seconds,
        "bytes_per_second": seen / seconds,
        "heldout_bpb": score["bpb"],
        "heldout_bytes": score["bytes"],
        "wall_seconds": wall,
        "checkpoint": str(latest.relative_to(run_dir.parent)),  # relative to OUT: results travel with it
    }
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{name}: {score['bpb']:.4f} bits per byte held out after {steps} steps", flush=True)
    return result


# --- tables and plots -----------------------------------------------------------------------------------


def table(results: list[dict], axes: list[str] = ()) -> str:
    """The results as Markdown; a sweep's varied settings get a column each, after the name."""
    lines = [
        "| config | "
        + "".join(f"{axis} | " for axis in axes)
        + "arch | parameters | MFLOP/byte | steps | bytes seen | training s | bytes/s | held-out bpb |",
        "|---|" + "---|" * len(axes) + "---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        values = "".join(f"{r['values'][axis]} | " for axis in axes)
        lines.append(
            f"| {r['name']} | {values}{r['arch']} | {r['parameters']:,} | {r['mflops_per_byte']:.2f} | "
            f"{r['steps']:,} | {r['bytes_seen']:,} | {r['train_seconds']:.1f} | {r['bytes_per_second']:,.0f} | "
            f"{r['heldout_bpb']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def validation_curve(run_dir: Path) -> list[tuple[float, float]]:
    """(training seconds, validation bits per byte) at each validation in metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    points = []
    text = path.read_bytes().decode("utf-8", errors="replace") if path.is_file() else ""  # as plot_metrics reads it
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "val_bpb" in record and "train_seconds" in record:
            points.append((record["train_seconds"], record["val_bpb"]))
    return points


def pyplot():
    """cli.pyplot, or None (said once per plot) where matplotlib is not installed: the tables stand alone."""
    try:
        return cli.pyplot()
    except UserError as error:
        print(f"{error}: no plot", file=sys.stderr)
        return None


def plot(results: list[dict], out: Path, path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    figure, axes = plt.subplots(figsize=(8, 5))
    for r in results:
        points = validation_curve(out / r["name"])
        line = axes.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=f"{r['name']} (validation)")
        axes.scatter(
            [r["train_seconds"]],
            [r["heldout_bpb"]],
            marker="*",
            s=120,
            color=line[0].get_color(),
            label=f"{r['name']} held out: {r['heldout_bpb']:.3f}",
        )
    axes.set_xlabel("training time (s)")
    axes.set_ylabel("bits per byte")
    axes.set_title("held-out bits per byte against wall-clock training time")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def axis_lines(axis: str, runs: list[Run], scores: dict[str, float], mode: str) -> dict[str, list[tuple[str, float]]]:
    """One panel's lines: label -> [(the axis' value, held-out bpb)]. One-at-a-time: one line, the base
    and the runs that vary this axis; product: a line per combination of the other axes' values."""
    lines: dict[str, list[tuple[str, float]]] = {}
    for run in runs:
        if mode == "one-at-a-time" and run.point and axis not in run.point:
            continue
        others = [f"{name}={value}" for name, value in run.values.items() if name != axis]
        label = ", ".join(others) if mode == "product" else f"{axis} alone"
        lines.setdefault(label, []).append((run.values[axis], scores[run.name]))
    return lines


def numbers(values: list[str]) -> list[float] | None:
    """The values as numbers, or None where one is not (per-stage values, presets: categories)."""
    try:
        return [float(value) for value in values]
    except ValueError:
        return None


def plot_parameters(runs: list[Run], results: list[dict], mode: str, path: Path) -> bool:
    """Held-out bits per byte against each varied setting, one panel per axis: numbers on a numeric axis
    (logarithmic for the learning rate and for positive values spanning 10x or more), other values
    (per-stage shapes, presets) as categories in the order first met."""
    plt = pyplot()
    if plt is None:
        return False
    axes = list(runs[0].values)
    scores = {r["name"]: r["heldout_bpb"] for r in results}
    columns = min(len(axes), 3)
    rows = math.ceil(len(axes) / columns)
    figure, panels = plt.subplots(rows, columns, figsize=(4.8 * columns, 3.8 * rows), squeeze=False)
    for panel, axis in zip(panels.flat, axes):
        lines = axis_lines(axis, runs, scores, mode)
        met = list(dict.fromkeys(value for points in lines.values() for value, _ in points))
        numeric = numbers(met)
        for label, points in lines.items():
            if numeric is not None:
                points = sorted(points, key=lambda p: float(p[0]))
                xs = [float(value) for value, _ in points]
            else:
                points = sorted(points, key=lambda p: met.index(p[0]))
                xs = [met.index(value) for value, _ in points]
            bpbs = [bpb for _, bpb in points]
            panel.plot(xs, bpbs, marker="o", label=label)
            for x, bpb in zip(xs, bpbs):
                panel.annotate(
                    f"{bpb:.3f}", (x, bpb), textcoords="offset points", xytext=(0, 6), ha="center", fontsize="x-small"
                )
        if mode == "one-at-a-time":  # the base, which every panel shares
            base = runs[0].values[axis]
            x = float(base) if numeric is not None else met.index(base)
            panel.scatter([x], [scores[runs[0].name]], marker="*", s=160, color="black", zorder=3, label="the base")
        if numeric is None:
            panel.set_xticks(range(len(met)), met)
        elif min(numeric) > 0 and (axis == "learning_rate" or max(numeric) >= 10 * min(numeric)):
            panel.set_xscale("log")
        panel.margins(x=0.1, y=0.15)  # room for the values written above the points
        panel.set_xlabel(axis)
        panel.set_ylabel("held-out bits per byte")
        panel.grid(alpha=0.3)
        panel.legend(fontsize="small")
    for panel in list(panels.flat)[len(axes) :]:
        panel.set_visible(False)
    figure.suptitle(f"held-out bits per byte against each setting ({mode}, equal training time)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def dry_run(args, runs: list[Run]) -> None:
    """Print the runs as --config takes them, then each one's size and cost (a fixed-FLOPs axis shows
    that it held them), and train nothing."""
    from mlx_megabyte.models import build

    for run in runs:
        print(f"{run.name}: {shlex.join(run.flags)}")
    width = max(len(run.name) for run in runs)
    print(f"{'run':<{width}}  {'parameters':>12}  {'MFLOP/byte':>10}")
    for run in runs:
        model = train_command(args, run.name, run.flags)[1].model
        print(f"{run.name:<{width}}  {build(model).num_parameters():>12,}  {model.flops_per_byte() / 1e6:>10.2f}")
    budget = f"{args.time_budget:g} s of training" if args.bytes is None else f"{args.bytes:,} bytes"
    print(f"{len(runs)} run(s) of {budget} each; nothing trained (--dry-run)")


@cli.cli
def main(argv=None):
    args = parse_args(argv)
    runs = plan(args)
    for run in runs:  # every configuration's flags are checked before the first run starts
        train_command(args, run.name, run.flags)
    if args.dry_run:
        dry_run(args, runs)
        return
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory for the runs, the tables and the plots")
    check_earlier_results(out, runs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "configs.json").write_text(json.dumps({run.name: shlex.join(run.flags) for run in runs}, indent=2) + "\n")
    results = [run_one(args, run.name, run.flags) for run in runs]
    axes = [name for name, _ in args.vary]
    for run, result in zip(runs, results):
        if axes:
            result["values"] = run.values
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table(results, axes))
    written = [out / "results.md", out / "results.json", out / "configs.json"]
    if plot(results, out, out / "bpb-vs-time.png"):
        written.append(out / "bpb-vs-time.png")
    if axes and plot_parameters(runs, results, args.sweep, out / "bpb-vs-parameters.png"):
        written.append(out / "bpb-vs-parameters.png")
    print(table(results, axes), end="")
    print(f"wrote {', '.join(map(str, written))}")


if __name__ == "__main__":
    main()
