"""The plots a story can follow, each a function from a Teller to its Beats, and how often each is
chosen."""

from __future__ import annotations

from typing import Callable

from ..beats import Beats
from ..teller import Teller
from . import broken, contest, disobey, fear, gift, help, lost, quarrel, stuck

PLOTS: tuple[tuple[Callable[[Teller], Beats], int], ...] = (
    (stuck.beats, 12),
    (lost.beats, 14),
    (broken.beats, 10),
    (quarrel.beats, 10),
    (fear.beats, 12),
    (gift.beats, 10),
    (help.beats, 12),
    (contest.beats, 8),
    (disobey.beats, 12),
)
