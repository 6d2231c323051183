"""What a story is: its text and TinyStoriesInstruct metadata, and how often its optional parts appear."""

from __future__ import annotations

from dataclasses import dataclass

FEATURES = ("Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict")


@dataclass(frozen=True)
class Story:
    """One story and its TinyStoriesInstruct metadata, all of it true of `text`."""

    text: str  # a few short paragraphs separated by blank lines
    features: tuple[str, ...]  # the FEATURES this story really has, in FEATURES order
    words: tuple[str, ...]  # a noun, a verb and an adjective that appear verbatim in text
    summary: str
    random_sentence: str  # one narrated sentence of text


# How often the optional parts appear. Plots may raise the bad-ending rate (disobeying, mostly).
P_DIALOGUE = 0.5
P_BAD_ENDING = 0.12
P_MORAL = 0.4
P_TWIST = 0.18
P_FORESHADOW = 0.25
P_ACCENTED_NAME = 0.02  # a few names like "Zoë" so the byte model sees multi-byte UTF-8
