"""Metadata: the three words (a noun, a verb and an adjective from the text) and the summary's subject."""

from __future__ import annotations

import random
import re

from .cast import CRITTERS, HOBBIES, KINDS, SIZES, TRAITS
from .places import PLACES
from .plots.gift import GIFTS
from .plots.help import CREATURES
from .things import THINGS
from .weather import SEASON_WEATHER
from .words import COLOURS, FEELINGS, FOODS, QUALITIES

_WORD = re.compile(r"[A-Za-z]+")


def _heads(phrases) -> set[str]:
    return {p.split()[-1] for p in phrases}


NOUNS = (
    _heads(t.noun for t in THINGS)
    | _heads(k.noun for k in KINDS)
    | _heads(p.name for p in PLACES.values())
    | _heads(FOODS)
    | {c.noun for c in CREATURES}
    | {g.noun for g in GIFTS}
    | set(CRITTERS)
    | {m for g in GIFTS for m in g.materials if " " not in m}
    | {"pond", "tree", "ladder", "stick", "nest"}
)
# base form -> past form, for the verbs our templates use most; hobbies add their own.
VERB_PAST = {h[0].split()[0]: h[1].split()[0] for h in HOBBIES} | {
    "look": "looked",
    "find": "found",
    "help": "helped",
    "run": "ran",
    "jump": "jumped",
    "smile": "smiled",
    "climb": "climbed",
    "play": "played",
    "share": "shared",
    "hug": "hugged",
    "search": "searched",
    "fix": "fixed",
    "cry": "cried",
    "laugh": "laughed",
    "try": "tried",
    "pull": "pulled",
    "throw": "threw",
    "fall": "fell",
    "break": "broke",
    "give": "gave",
    "walk": "walked",
    "hold": "held",
    "reach": "reached",
    "build": "built",
    "make": "made",
    "bake": "baked",
    "win": "won",
    "sing": "sang",
    "stop": "stopped",
    "listen": "listened",
    "remember": "remembered",
    "carry": "carried",
    "wait": "waited",
    "go": "went",
    "come": "came",
    "see": "saw",
    "hide": "hid",
    "fly": "flew",
    "swim": "swam",
    "ride": "rode",
    "paint": "painted",
    "know": "knew",
    "say": "said",
    "think": "thought",
    "feel": "felt",
    "want": "wanted",
    "love": "loved",
    "shout": "shouted",
}
VERBS = set(VERB_PAST)
PAST_VERBS = set(VERB_PAST.values())
ADJECTIVES = (
    set(TRAITS)
    | {c for c in COLOURS if " " not in c}
    | set(QUALITIES)
    | set(SIZES)
    | {w for options in FEELINGS.values() for w in options if " " not in w}
    | {w for ws in SEASON_WEATHER.values() for w in ws}
    | {"safe", "tall", "wet", "sticky", "scary"}
)


def three_words(rng: random.Random, text: str, ctx: dict) -> tuple[str, str, str]:
    """A noun, a verb and an adjective, each appearing verbatim in `text`. The story's own object, kind,
    hobby and trait come first, as in TinyStoriesInstruct; verbs prefer the base form."""
    tokens = set(_WORD.findall(text))

    def choose(preferred, *pools):
        own = [w for w in preferred if w in tokens]
        if own and rng.random() < 0.6:
            return rng.choice(own)
        for pool in pools:
            present = sorted(tokens & pool)  # sorted: set order changes between processes
            if present:
                return rng.choice(present)
        return rng.choice(own)

    heads = [ctx[k].split()[-1] for k in ("obj", "noun", "creature", "gift_noun") if ctx.get(k)]
    noun = choose(heads, NOUNS)
    verb = choose([ctx["hobby"].split()[0]], VERBS, PAST_VERBS)
    adjective = choose([ctx["trait"], ctx["pal_trait"]], ADJECTIVES)
    return noun, verb, adjective


SUMMARY_WHO = ("{hero}", "{hero} the {noun}", "{a_kind} named {hero}", "{a_trait_kind} called {hero}")
