"""A deterministic generator of simple children's stories, so training works offline and in CI.

Every sentence template and word list here is our own. A story is a cast (a hero, a friend, a grown-up),
a setting (place, season, weather, time of day) and one of several plots (a lost thing, a stuck thing,
a quarrel, a fear, ...). Each part has many alternative templates and the parts combine freely, so a
small byte-level model has to learn grammar and story shape rather than memorise texts.

`make_story` also returns TinyStoriesInstruct-style metadata (features, three words, a summary, a random
sentence) that is true of the text by construction. `GENERATOR_VERSION` keys cached data: bump it
whenever the output for a given seed changes.

What each module holds: `story` (the Story record, its features and how often the optional parts
appear); the word lists `names`, `cast`, `words`, `weather`, `places`, `things`; `templates` (sentences
every plot shares); `beats` and `plots/` (one module per plot); `teller` (casting and telling);
`metadata` (the three words); `generator` (stories and documents from a seed).
"""

from .generator import documents, generate_stories, instruct_record, make_story
from .names import ACCENTED_NAMES
from .story import FEATURES, Story

GENERATOR_VERSION = 1

__all__ = [
    "ACCENTED_NAMES",
    "FEATURES",
    "GENERATOR_VERSION",
    "Story",
    "documents",
    "generate_stories",
    "instruct_record",
    "make_story",
]
