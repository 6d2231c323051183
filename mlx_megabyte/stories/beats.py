"""The plot-specific templates one story is told from."""

from __future__ import annotations

from dataclasses import dataclass

from .story import P_BAD_ENDING
from .templates import GO


@dataclass
class Beats:
    """The plot-specific templates for one story. `fails` are attempts that do not work, `success` the
    one that does; `twists` and `hints` are (sentences, summary) and (hint, sentences replacing success)."""

    theme: str
    bad_theme: str
    summary: tuple[str, ...]
    bad_summary: tuple[str, ...]
    problem: tuple
    success: tuple = ()
    setup: tuple = ()
    cries: tuple[str, ...] = ()  # the hero's words when the problem strikes
    retorts: tuple[str, ...] = ()  # the friend answers back (a quarrel) instead of offering help
    feel: tuple = ()
    offers: tuple[str, ...] = ()
    offers_narr: tuple[str, ...] = ()
    fails: tuple = ()
    after: tuple = ()
    cheers: tuple[str, ...] = ()
    cheer_by: str = "hero"
    bad: tuple = ()
    twists: tuple = ()
    hints: tuple = ()
    go: tuple[str, ...] = GO
    owns_thing: bool = False
    conflict: bool = False
    bad_rate: float = P_BAD_ENDING
