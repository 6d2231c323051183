"""The generator: stories, instruct records and documents from a seed, to a byte budget."""

from __future__ import annotations

import random
from typing import Iterator

from ..text import instruct_text
from .metadata import SUMMARY_WHO, three_words
from .plots import PLOTS
from .story import FEATURES, Story
from .teller import Teller


def make_story(rng: random.Random) -> Story:
    """One story, drawn from `rng`."""
    teller = Teller(rng)
    teller.cast()
    plot = rng.choices([p for p, _ in PLOTS], [w for _, w in PLOTS])[0]
    beats = plot(teller)
    summary, moral = teller.tell(beats)
    text = "\n\n".join(" ".join(p) for p in teller.paras if p)

    teller.ctx["who"] = teller.fill(rng.choice(SUMMARY_WHO))
    summary = teller.fill(summary)
    if moral and rng.random() < 0.5:
        summary += " " + teller.fill("{hero} learned that {moral}.")
    features = set(teller.features)
    if '"' in text:
        features.add("Dialogue")
    return Story(
        text=text,
        features=tuple(f for f in FEATURES if f in features),
        words=three_words(rng, text, teller.ctx),
        summary=summary,
        random_sentence=rng.choice(teller.narration),
    )


def generate_stories(seed: int, n_bytes: int) -> Iterator[Story]:
    """Yield stories from random.Random(seed) until their texts total at least n_bytes UTF-8 bytes."""
    rng = random.Random(seed)
    total = 0
    while total < n_bytes:
        story = make_story(rng)
        total += len(story.text.encode("utf-8"))
        yield story


def instruct_record(story: Story) -> str:
    """The story in TinyStoriesInstruct's record layout (text.instruct_text)."""
    return instruct_text(story.features, story.words, story.summary, story.random_sentence, story.text)


def documents(seed: int, n_bytes: int, instruct: bool = False) -> Iterator[str]:
    """Plain story texts, or instruct records, until at least n_bytes UTF-8 bytes of documents."""
    rng = random.Random(seed)
    total = 0
    while total < n_bytes:
        story = make_story(rng)
        doc = instruct_record(story) if instruct else story.text
        total += len(doc.encode("utf-8"))
        yield doc
