"""What every command and every tool under tools/ shares: one-line errors with exit codes, help texts that
show real defaults, flag types that check ranges as flags are read, the choice of device (`--device
cpu|gpu`), and matplotlib for the tools that draw."""

from __future__ import annotations

import argparse
import functools
import sys

from . import settings
from .errors import UserError
from .runtime import DTYPES, default_dtype, use_device
from .sampling import SamplingSettings
from .settings import settings_of


def cli(main):
    """Run a command-line `main`: UserError and OS errors print one line and exit 1, Ctrl-C exits 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as error:
            print(f"error: {error.strerror}: {error.filename}", file=sys.stderr)
        except OSError as error:  # a full disk, a broken pipe, ...
            print(f"error: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        sys.exit(1)

    return wrapper


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout and appends "(default: X)" where an option has a default."""

    def _get_help_string(self, action):
        text = action.help or ""
        quiet = action.default is None or action.default is False or action.default in ("", [], argparse.SUPPRESS)
        if not quiet and "default" not in text and action.option_strings:
            text += f" (default: {action.default})"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: a bad flag says what is wrong and where help is."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    return ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)


def setting_type(spec):
    """The argparse type of a setting (settings.py): its kind and range checked as the flag is read, in
    the words the REPL and the server use for the same value."""

    def convert(text: str):
        try:
            return settings.parse(spec, text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = {int: "integer", float: "number"}.get(spec["kind"], "value")  # named in argparse's messages
    return convert


def number(kind=float, low=None, high=None, low_open=False, high_open=False):
    """An argparse type for a finite number in [low, high] (open ends where asked), for a flag that is no
    dataclass's setting: NaN, infinities and out-of-range values are refused when the flags are read, not
    a step later."""
    return setting_type({"kind": kind, "low": low, "high": high, "low_open": low_open, "high_open": high_open})


def setting_flag(parser, field, *names: str, **options) -> None:
    """The flag of a dataclass's `setting` field: --its-name (or `names`), its help, its default, and a
    type that checks it as it is read; `options` (help, default, metavar, ...) where the flag differs."""
    spec = field.metadata
    flag = {"help": spec["help"].replace("%", "%%"), "default": field.default}  # help strings are %-formatted
    if spec["kind"] is bool:
        flag["action"] = "store_true"
    else:
        flag["type"] = setting_type(spec)
        if spec["choices"] is not None:
            flag["choices"] = spec["choices"]
    parser.add_argument(*(names or ("--" + field.name.replace("_", "-"),)), **{**flag, **options})


def listed(kind=str, low=None, choices=None, low_open=False):
    """An argparse type for comma-separated values (`--tasks train,forward`, `--clients 1,4,16`), each
    checked as `number` checks one value, or against `choices`, when the flags are read."""
    one = number(kind, low, low_open=low_open) if kind is not str else str

    def convert(text: str) -> list:
        values = [value.strip() for value in text.split(",")]
        if not all(values):
            raise argparse.ArgumentTypeError(f"expected comma-separated values, got {text!r}")
        unknown = [value for value in values if choices is not None and value not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown[0]!r} (choose from {', '.join(choices)})")
        return [one(value) for value in values]

    convert.__name__ = "list"
    return convert


SAMPLING = settings_of(SamplingSettings)
SAMPLING_FLAGS = ("temp", "top_p", "min_p", "top_k")  # the sampler itself; generate adds its other settings
SAMPLING_DEFAULTS = {name: SAMPLING[name].default for name in SAMPLING_FLAGS}


def add_sampling_flags(parser, defaults: bool = True) -> None:
    """--temp, --top-p, --min-p and --top-k, spelled, checked and defaulted alike in generate and evaluate
    (defaults=False: None when not given, for a command that uses them only in one mode)."""
    for name in SAMPLING_FLAGS:
        field = SAMPLING[name]
        if defaults:
            setting_flag(parser, field)
        else:
            setting_flag(parser, field, default=None, help=f"{field.metadata['help']} (default: {field.default})")


MODEL_HELP = (
    "a weights directory, a training run directory (its newest checkpoint), or a Hugging Face repo id; default: "
    "the newest weights of your own under weights/, else the shipped weights/demo (for instruct prompts: the "
    "newest instruct-tuned, else weights/demo-instruct)"
)


def model_flag(parser) -> None:
    """--model, as generate and the server read it (weights.locate)."""
    parser.add_argument("--model", help=MODEL_HELP)


def add_model_flags(parser, quantize_help: str = "quantize the weights to 4 or 8 bits") -> None:
    """--device, --dtype and --quantize, spelled and checked alike in generate, evaluate and the server."""
    parser.add_argument("--device", choices=("cpu", "gpu"), help="where to run (default: the GPU when MLX has one)")
    parser.add_argument(
        "--dtype",
        choices=tuple(DTYPES),
        help="the weights' dtype while running (default: float32 on CPUs, where half-precision "
        "matmuls skip BLAS; the stored dtype on GPUs)",
    )
    parser.add_argument("--quantize", type=int, choices=(4, 8), help=quantize_help)


def model_flags(args) -> tuple:
    """Apply --device; return (quantize bits, dtype) for weights.load_for_inference (runtime's default
    rule where --dtype is not given)."""
    use_device(args.device)
    dtype = args.dtype or default_dtype(training=False)
    return args.quantize, DTYPES[dtype] if dtype else None


def pyplot():
    """matplotlib's pyplot, drawing to files (no screen needed); a UserError saying how to install it
    where it is not (it is the optional `plot` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("matplotlib is not installed: pip install 'mlx-megabyte[plot]'") from None
    return plt
