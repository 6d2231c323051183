"""What every command and every tool under tools/ shares: one-line errors with exit codes, help texts that
show real defaults, flag types that check ranges as flags are read, the choice of device (`--device
cpu|gpu`), and matplotlib for the tools that draw."""

from __future__ import annotations

import argparse
import functools
import math
import sys

from .errors import UserError
from .runtime import DTYPES, SEED_LIMIT, default_dtype, use_device
from .sampling import DEFAULT_MIN_P, DEFAULT_TEMP, DEFAULT_TOP_K, DEFAULT_TOP_P, RANGES


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


def number(kind=float, low=None, high=None, low_open=False, high_open=False):
    """An argparse type for a finite number in [low, high] (open ends where asked): NaN, infinities and
    out-of-range values are refused when the flags are read, not a step later."""

    def convert(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'above' if low_open else 'at least'} {low}, got {text}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {'below' if high_open else 'at most'} {high}, got {text}")
        return value

    convert.__name__ = "integer" if kind is int else "number"  # argparse names the type in its messages
    return convert


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


seed = number(int, 0, SEED_LIMIT - 1)


def sampling_setting(name: str):
    """The argparse type of a sampling setting: sampling.RANGES's bounds, checked as flags are read."""
    kind, low, high, low_open, high_open = RANGES[name]
    return number(kind, low, high, low_open, high_open)


SAMPLING_DEFAULTS = {"temp": DEFAULT_TEMP, "top_p": DEFAULT_TOP_P, "min_p": DEFAULT_MIN_P, "top_k": DEFAULT_TOP_K}


def add_sampling_flags(parser, defaults: bool = True) -> None:
    """--temp, --top-p, --min-p and --top-k, spelled, checked and defaulted alike in generate and evaluate
    (defaults=False: None when not given, for a command that uses them only in one mode)."""

    def default(name):
        return SAMPLING_DEFAULTS[name] if defaults else None

    shown = "" if defaults else " (default: {})"
    parser.add_argument(
        "--temp",
        type=sampling_setting("temp"),
        default=default("temp"),
        help="sampling temperature (0 = greedy)" + shown.format(DEFAULT_TEMP),
    )
    parser.add_argument(
        "--top-p",
        type=sampling_setting("top_p"),
        default=default("top_p"),
        help="nucleus sampling mass (1 = off)" + shown.format(DEFAULT_TOP_P),
    )
    parser.add_argument(
        "--min-p",
        type=sampling_setting("min_p"),
        default=default("min_p"),
        help="drop bytes below this share of the top one" + shown.format(DEFAULT_MIN_P),
    )
    parser.add_argument(
        "--top-k",
        type=number(int, 0),
        default=default("top_k"),
        help="keep only the k likeliest bytes (0 = off)" + shown.format(DEFAULT_TOP_K),
    )


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
