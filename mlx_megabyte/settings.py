"""One vocabulary for every setting a person can give: a dataclass field declared with `setting(...)` says
its help text, kind and range once, and everything that reads such a value checks it here, in the same
words: the model configs and `TrainingConfig` when they are made (`check_fields`), command-line flags and
the story REPL's commands as their text is read (`parse`; cli.py builds flags on it), and the HTTP API's
JSON values (`check_value`).

The one-line message for a value out of range names no field ("must be at least 0, got -1"): each
surface says which value it was, as argparse does ("argument --seed: ..."), the REPL ("invalid value:
...") and the server ("'seed': ...")."""

from __future__ import annotations

import math
from dataclasses import MISSING, field, fields

STAGES = "stages"  # the kind of a per-stage field: a tuple of ints, one per stage of the hierarchy


def setting(
    default=MISSING,
    *,
    help: str,
    kind=int,
    low=None,
    high=None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
    tunable: bool = False,
    choices: tuple | None = None,
):
    """A dataclass field with what the command line and the validation need to know about it.

    kind: int, float, bool, str or STAGES. low/high: the allowed range (open ends where asked). optional:
    None is allowed (a value derived from other fields, or chosen later). tunable: changing it changes no
    weight's shape (fine with --init-from, e.g. dropout). choices: the values a str setting may take."""
    metadata = {
        "help": help,
        "kind": kind,
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "optional": optional,
        "tunable": tunable,
        "choices": choices,
    }
    return field(metadata=metadata) if default is MISSING else field(default=default, metadata=metadata)


def settings_of(owner) -> dict:
    """The `setting` fields of a dataclass (or of an instance's class), by name."""
    return {f.name: f for f in fields(owner) if "kind" in f.metadata}


def spec_of(owner, name: str) -> dict:
    """What `setting` recorded for one field of `owner`."""
    return settings_of(owner)[name].metadata


# --- a setting's range in words ------------------------------------------------------------------------


def range_text(spec) -> str:
    low, high = spec["low"], spec["high"]
    if low is not None and high is not None:
        return f"in {'(' if spec['low_open'] else '['}{low}, {high}{')' if spec['high_open'] else ']'}"
    if low is not None:
        return f"{'above' if spec['low_open'] else 'at least'} {low}"
    return f"{'below' if spec['high_open'] else 'at most'} {high}" if high is not None else ""


def expected(spec) -> str:
    """What a numeric field must be, in words: "a positive integer", "a number in [0, 1)", ..."""
    if spec["kind"] in (int, STAGES):
        if spec["low"] in (0, 1) and spec["high"] is None and not spec["low_open"]:
            return "a positive integer" if spec["low"] == 1 else "a non-negative integer"
        return f"an integer {range_text(spec)}".strip()
    return f"a number {range_text(spec)}".strip()


def fits(value, spec) -> bool:
    """Is `value` a finite number of the field's kind in its range?"""
    return _kind_problem(value, spec) is None and _range_problem(value, spec, "") is None


# --- checking ------------------------------------------------------------------------------------------


def check_fields(config) -> None:
    """Every `setting` field of a dataclass instance has its kind and lies in its range, or ValueError
    naming it ("dim_head must be a positive integer, got 0")."""
    for name, f in settings_of(config).items():
        spec = f.metadata
        value, kind = getattr(config, name), spec["kind"]
        if value is None and spec["optional"]:
            continue
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        elif kind is str:
            if not isinstance(value, str) or (spec["choices"] is not None and value not in spec["choices"]):
                one_of = f"one of {', '.join(spec['choices'])}" if spec["choices"] is not None else "a string"
                raise ValueError(f"{name} must be {one_of}, got {value!r}")
        elif kind == STAGES:
            if not isinstance(value, tuple) or not all(fits(v, spec) for v in value):
                raise ValueError(f"every {name} must be {expected(spec)}, got {value!r}")
        elif not fits(value, spec):
            raise ValueError(f"{name} must be {expected(spec)}, got {value!r}")


class WrongKind(ValueError):
    """A value of the wrong kind (text where a number belongs); its range was not looked at."""


def check_value(owner, name: str, value):
    """`value` for the setting `name` of the dataclass `owner`, if it is of the setting's kind and in its
    range (None where the setting is optional); else ValueError with the same one-line message that the
    flag and the REPL give for it, WrongKind where the kind is wrong. An integer given for a number is
    returned as a float. For values that arrive as JSON (the HTTP API)."""
    spec = spec_of(owner, name)
    if value is None and spec["optional"]:
        return None
    problem = _kind_problem(value, spec)
    if problem:
        raise WrongKind(problem)
    problem = _range_problem(value, spec, value)
    if problem:
        raise ValueError(problem)
    return float(value) if spec["kind"] is float else value


def parse(spec, text: str):
    """A setting's value from its text (a flag, a REPL command), checked; ValueError with the one-line
    message otherwise. `spec`: what `setting` recorded (or a dict with kind, low, high and open ends)."""
    kind = spec["kind"]
    if kind is str:
        return text
    if kind is bool:
        if text.lower() in ("true", "yes", "on", "1"):
            return True
        if text.lower() in ("false", "no", "off", "0"):
            return False
        raise WrongKind(f"expected true or false, got {text!r}")
    try:
        value = int(text) if kind in (int, STAGES) else float(text)
    except (ValueError, OverflowError):
        raise WrongKind(f"expected {'an integer' if kind in (int, STAGES) else 'a number'}, got {text!r}") from None
    problem = _range_problem(value, spec, text)
    if problem:
        raise ValueError(problem)
    return value


def _kind_problem(value, spec) -> str | None:
    kind = spec["kind"]
    integer = kind in (int, STAGES)
    if kind is bool:
        right, wanted = isinstance(value, bool), "true or false"
    elif kind is str:
        right, wanted = isinstance(value, str), "a string"
    else:
        right = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
        wanted = "an integer" if integer else "a number"
    return None if right else f"must be {wanted}, got {repr(value)[:40]}"  # a request's value may be long


def _range_problem(value, spec, shown) -> str | None:
    """Why a number of the right kind is refused, as "must be at least 0, got -1"; None if it is not.
    `shown`: the value as it was given (a flag's text, not the float it became)."""
    if spec["kind"] is str:
        choices = spec.get("choices")
        return None if choices is None or value in choices else f"must be one of {', '.join(choices)}, got {shown!r}"
    if spec["kind"] is bool:
        return None
    if not math.isfinite(value):
        return f"expected a finite number, got {shown!r}" if isinstance(shown, str) else f"must be finite, got {shown}"
    low, high = spec.get("low"), spec.get("high")
    if low is not None and (value < low or (spec.get("low_open") and value == low)):
        return f"must be {'above' if spec.get('low_open') else 'at least'} {low}, got {shown}"
    if high is not None and (value > high or (spec.get("high_open") and value == high)):
        return f"must be {'below' if spec.get('high_open') else 'at most'} {high}, got {shown}"
    return None
