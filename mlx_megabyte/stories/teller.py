"""Telling: the Teller casts a story, chooses its setting and tells its beats sentence by sentence."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable

from .beats import Beats
from .cast import CRITTERS, FAMILY, GROUP_WEIGHTS, HAPPY_NOISES, HOBBIES, HOMES, KINDS, NEIGHBOURS, SIZES, TRAITS, Kind
from .names import ACCENTED_NAMES, BOY_NAMES, GIRL_NAMES, MAGIC_NAMES, NEUTRAL_NAMES, PET_NAMES, PRONOUNS, ROBOT_NAMES
from .places import PLACES, Place
from .story import P_ACCENTED_NAME, P_DIALOGUE, P_FORESHADOW, P_MORAL, P_TWIST
from .templates import (
    BAD_ENDINGS,
    FOOD_LINES,
    GO,
    GO_WITH_THING,
    GOOD_ENDINGS,
    HELP_ARRIVES,
    HOBBY_LINES,
    HOME_LINES,
    MORAL_LINES,
    MORAL_SAYINGS,
    MORALS,
    OPENINGS,
    PAL_LINES,
    PICNIC,
    TAGS,
    THING_LINES,
    TRAIT_LINES,
    WEATHER_HINT,
    WEATHER_PAYOFF,
    WHEN,
)
from .things import THINGS, Thing
from .weather import CLEAR_WEATHER, SEASON_LINES, SEASON_WEATHER, WEATHER_LINES
from .words import COLOURS, FEELINGS, FOODS, JUNK, QUALITIES

_SENTENCE_START = re.compile(r'(^"?|[.!?] "?|, ")([a-z])')


def _capitalise(text: str) -> str:
    """Upper-case the first letter of every sentence, including one that opens a quotation."""
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def _a(phrase: str) -> str:
    """`phrase` with the right indefinite article: "an old turtle", "a unicorn", "an honest fox"."""
    word = phrase.lower()
    if word.startswith(("uni", "use", "eu", "one")):
        return "a " + phrase
    if word[0] in "aeiou" or word.startswith(("honest", "hour")):
        return "an " + phrase
    return "a " + phrase


class _Pick:
    """A template field that draws a fresh word each time it is used ("{sad}" -> "upset")."""

    __slots__ = ("rng", "options")

    def __init__(self, rng: random.Random, options: tuple[str, ...]):
        self.rng, self.options = rng, options

    def __format__(self, spec: str) -> str:
        return self.rng.choice(self.options)


class _Mention:
    """A name whose first use carries a description ("the kind baker Mrs. Plum"), later uses not."""

    __slots__ = ("first", "name", "used")

    def __init__(self, first: str, name: str):
        self.first, self.name, self.used = first, name, False

    def __format__(self, spec: str) -> str:
        if self.used:
            return self.name
        self.used = True
        return self.first


class _Spots:
    """Search spots handed out in turn, so attempts never look in the same place twice."""

    __slots__ = ("spots", "i")

    def __init__(self, spots):
        self.spots, self.i = spots, 0

    def __format__(self, spec: str) -> str:
        self.i += 1
        return self.spots[(self.i - 1) % len(self.spots)]


@dataclass
class Teller:
    """Builds one story: the cast and setting go into `ctx`, sentences into `paras`."""

    rng: random.Random
    ctx: dict = field(default_factory=dict)
    paras: list = field(default_factory=lambda: [[]])
    narration: list = field(default_factory=list)  # sentences without quotes: random_sentence comes from here
    features: set = field(default_factory=set)
    place: Place | None = None
    thing: Thing | None = None

    def pick(self, options):
        return self.rng.choice(options)

    def fill(self, template: str) -> str:
        return _capitalise(template.format_map(self.ctx))

    def say(self, options) -> None:
        """Tell one of `options` (a template, or a tuple of templates told in order)."""
        choice = self.pick(options)
        for template in choice if isinstance(choice, tuple) else (choice,):
            sentence = self.fill(template)
            self.paras[-1].append(sentence)
            self.narration.append(sentence)

    def speak(self, who: str, lines) -> None:
        """`who` ("hero", "pal", "elder", ...) says one of `lines`, with a varied dialogue tag."""
        line = self.fill(self.pick(lines))
        name = format(self.ctx[who])
        pronoun = self.ctx["he" if who == "hero" else who + "_he"]  # needed only when _pronoun_is_clear
        tag = self.pick(TAGS[line[-1]])
        form = self.rng.randrange(5)
        if form == 4 and " " not in tag:  # inverted tag: '"We did it!" cried Lily.'
            self.paras[-1].append(f'"{_comma(line)}" {tag} {name}.')
        elif form == 3:
            self.paras[-1].append(_capitalise(f'{name} {tag}, "{line}"'))
        else:
            speaker = pronoun if form == 2 and self._pronoun_is_clear(who) else name
            self.paras[-1].append(f'"{_comma(line)}" {speaker} {tag}.')

    def _pronoun_is_clear(self, who: str) -> bool:
        """Whether "she said" can only mean `who`: no other child in the story is also a "she"."""
        keys = {"hero": "he", "pal": "pal_he", "rival": "rival_he"}
        if who not in keys:
            return False
        return all(self.ctx.get(key) != self.ctx[keys[who]] for other, key in keys.items() if other != who)

    def para(self) -> None:
        if self.paras[-1]:
            self.paras.append([])

    # --- casting ---

    def character(self, role: str, groups: dict[str, int], avoid: tuple[str, ...]) -> None:
        """Choose a kind, pronoun, name and trait for `role` and put its fields into `ctx`."""
        group = self.rng.choices(list(groups), list(groups.values()))[0]
        # Two singular "they"s in one story would blur who is who.
        kind = self.pick([k for k in KINDS if k.group == group and not ("they" in avoid and k.pronouns == "n")])
        letter = self.pick(kind.pronouns)
        name = self._name(kind, letter, avoid)
        if self.rng.random() < P_ACCENTED_NAME and kind.group in ("human", "animal"):
            fits = [(n, p) for n, p in ACCENTED_NAMES if p in kind.pronouns and n not in avoid]
            if fits:
                name, letter = self.pick(fits)
        sizes = [s for s in SIZES if not (s == "old" and (kind.young or kind.group == "human"))]
        size = self.pick(sizes) + " " if self.rng.random() < 0.4 else ""
        trait = self.pick(list(TRAITS))
        prefix = "" if role == "hero" else role + "_"
        he, him, his, self_, was = PRONOUNS[letter]
        self.ctx.update(
            {
                role: name,
                prefix + "he": he,
                prefix + "him": him,
                prefix + "his": his,
                prefix + "self": self_,
                prefix + "was": was,
                prefix + "noun": kind.noun,
                prefix + "kind": size + kind.noun,
                prefix + "trait": trait,
                "a_" + prefix + "kind": _a(size + kind.noun),
                "a_" + prefix + "trait_kind": _a(f"{trait} {size}{kind.noun}"),
            }
        )
        self.ctx[prefix + "trait_desc"] = self.pick(TRAITS[trait]).format_map(self.ctx)
        self.ctx[prefix + "kind_group"] = kind.group
        if role == "hero":
            self.ctx["home"] = self.pick(HOMES[kind.group])
            self.ctx["sound"] = self.pick(kind.sounds or HAPPY_NOISES)

    def _name(self, kind: Kind, letter: str, avoid: tuple[str, ...]) -> str:
        if kind.group == "human":
            names = {"m": BOY_NAMES, "f": GIRL_NAMES, "n": NEUTRAL_NAMES}[letter]
        elif kind.group == "robot":
            names = ROBOT_NAMES
        elif kind.group == "magic":
            names = MAGIC_NAMES if self.rng.random() < 0.6 else GIRL_NAMES if letter == "f" else BOY_NAMES
        elif self.rng.random() < 0.6:
            names = PET_NAMES
        else:
            names = GIRL_NAMES if letter == "f" else BOY_NAMES if letter == "m" else NEUTRAL_NAMES
        while True:
            name = self.pick(names)
            if name not in avoid:
                return name

    def cast(self) -> None:
        self.character("hero", GROUP_WEIGHTS, ())
        avoid = (self.ctx["hero"],) + (("they",) if self.ctx["he"] == "they" else ())
        self.character("pal", {"human": 45, "animal": 45, "robot": 4, "toy": 2, "magic": 4}, avoid)
        self.ctx["hobby"], self.ctx["hobby_past"] = self.pick(HOBBIES)
        self.ctx["pal_hobby"] = self.pick(HOBBIES)[0]
        family = self.ctx["kind_group"] not in ("robot", "toy") and self.rng.random() < 0.75
        taken = (self.ctx["hero"], self.ctx["pal"])
        while True:
            name, letter, title = self.pick(FAMILY) + ("",) if family else self.pick(NEIGHBOURS)
            if not any(part in taken for part in name.split()):
                break
        he, him, his, _, was = PRONOUNS[letter]
        self.ctx.update(
            elder=_Mention(f"{title} {name}" if title else name, name),
            elder_he=he,
            elder_him=him,
            elder_his=his,
            elder_was=was,
        )
        self.set_season(self.pick(tuple(SEASON_WEATHER)))
        self.ctx["time"] = self.pick(("morning", "afternoon", "evening", "morning"))
        food, food2 = self.rng.sample(FOODS, 2)
        for key, options in FEELINGS.items():
            self.ctx[key] = _Pick(self.rng, options)
        self.ctx.update(food=food, food2=food2, junk=_Pick(self.rng, JUNK), critter=self.pick(CRITTERS))

    def set_season(self, season: str) -> None:
        self.ctx["season"] = season
        self.ctx["weather"] = self.pick(SEASON_WEATHER[season])

    def choose_place(self, fits: Callable[[Place], bool]) -> None:
        self.place = self.pick([p for p in PLACES.values() if fits(p)])
        spots = list(self.place.spots)
        self.rng.shuffle(spots)
        self.ctx.update(
            place=self.place.name,
            at_place=self.place.at,
            spot1=spots[0],
            spot3=spots[-1],
            spot=_Spots(spots[:-1]),
            high=self.pick(self.place.high) if self.place.high else "",
        )

    def choose_thing(self, tags: str) -> None:
        self.thing = self.pick([t for t in THINGS if all(letter in t.tags for letter in tags)])
        desc = self.pick(COLOURS if self.rng.random() < 0.6 else QUALITIES)
        thing = f"{desc} {self.thing.noun}" if self.rng.random() < 0.8 else self.thing.noun
        self.ctx.update(thing=thing, obj=self.thing.noun, a_thing=_a(thing), use=self.thing.use, used=self.thing.used)

    def set_recipient(self, who: str) -> None:
        prefix = who + "_"
        self.ctx.update(
            {
                "for": self.ctx[who],
                "for_he": self.ctx[prefix + "he"],
                "for_him": self.ctx[prefix + "him"],
                "for_his": self.ctx[prefix + "his"],
            }
        )

    def make_rival(self) -> None:
        avoid = (self.ctx["hero"], self.ctx["pal"], "they")
        self.character("rival", {"human": 50, "animal": 50}, avoid)

    # --- the story ---

    def tell(self, beats: Beats) -> tuple[str, str]:
        """Tell the whole story; returns (summary template, moral or "")."""
        rng = self.rng
        bad = rng.random() < beats.bad_rate
        twist = None if bad or not beats.twists or rng.random() >= P_TWIST else self.pick(beats.twists)
        dialogue = rng.random() < P_DIALOGUE
        hint = weather_hint = None
        if rng.random() < P_FORESHADOW:
            if beats.hints and not bad and not twist and rng.random() < 0.7:
                hint = self.pick(beats.hints)
            elif self.ctx["weather"] in CLEAR_WEATHER:
                weather_hint = True

        self._introduce(beats)
        self._set_scene(beats, dialogue, hint, weather_hint)
        resolution = self._trouble(beats, dialogue, hint, bad or twist)
        self._end(beats, dialogue, bad, twist, resolution)
        moral = self._moral(beats, dialogue, bad)
        if weather_hint:
            self.say(WEATHER_PAYOFF[bad])
        self.say(BAD_ENDINGS if bad else GOOD_ENDINGS)
        summaries = beats.bad_summary if bad else beats.summary
        return (twist[1] if twist else self.pick(summaries)), moral

    def _introduce(self, beats: Beats) -> None:
        """Who the hero is."""
        rng = self.rng
        opening = self.pick(OPENINGS)
        self.say((opening,))
        if "{home}" not in opening and rng.random() < 0.4:
            self.say(HOME_LINES)
        about = [TRAIT_LINES, HOBBY_LINES] + ([FOOD_LINES] if rng.random() < 0.3 else [])
        rng.shuffle(about)
        for lines in about:
            self.say(lines)
        if beats.owns_thing:
            self.say(THING_LINES)
        self.say(PAL_LINES)

    def _set_scene(self, beats: Beats, dialogue: bool, hint, weather_hint) -> None:
        """Where and when, and the set-up."""
        rng = self.rng
        if rng.random() < 0.6:
            self.para()
        go = beats.go
        if beats.owns_thing and go is GO:
            go = go + GO_WITH_THING
        go = self.pick(go)
        picnic = self.place.outdoor and go in GO and rng.random() < 0.2
        if go in GO + GO_WITH_THING and rng.random() < 0.8:
            go = self.pick(WHEN) + " " + go
        self.say((go,))
        if rng.random() < 0.7:
            line = self.pick(WEATHER_LINES[self.ctx["weather"]] + SEASON_LINES[self.ctx["season"]])
            self.say((line if self.place.outdoor else "Outside, " + line[0].lower() + line[1:],))
        if self.place.sights and rng.random() < 0.6:
            self.say(self.place.sights)
        if picnic:
            self.say(PICNIC)
        for part in self.pick(beats.setup) if isinstance(beats.setup[0], tuple) else (self.pick(beats.setup),):
            if isinstance(part, tuple) and part[0] == "warn":  # a warning: spoken or reported
                if dialogue:
                    self.speak("elder", (part[1],))
                else:
                    self.say((part[2],))
            else:
                self.say((part,))
        if hint:
            self.say((hint[0],))
            self.features.add("Foreshadowing")
        if weather_hint:
            self.say((WEATHER_HINT[self.place.outdoor],))
            self.features.add("Foreshadowing")

    def _trouble(self, beats: Beats, dialogue: bool, hint, unresolved) -> tuple | None:
        """The problem and the attempts; returns the resolution the ending tells (if it is not a bad
        ending or a twist, `unresolved`)."""
        rng = self.rng
        self.para()
        self.say(beats.problem)
        if beats.cries and dialogue:
            self.speak("hero", beats.cries)
        if beats.retorts and dialogue:
            self.speak("pal", beats.retorts)
        if beats.feel and (not dialogue or rng.random() < 0.5):
            self.say(beats.feel)
        if beats.offers:
            if dialogue and not beats.retorts:
                self.speak("pal", beats.offers)
            elif beats.offers_narr and rng.random() < 0.7:
                self.say(beats.offers_narr)
        resolution = hint[1] if hint else self.pick(beats.success) if beats.success else None
        # A grown-up who helps in the resolution is seen arriving first, unless the resolution says so itself.
        first = resolution[0] if resolution and not unresolved else ""
        if "{elder}" in first and "came" not in first and not self.ctx["elder"].used:
            self.say(HELP_ARRIVES[self.place.outdoor])
        if beats.fails:
            for template in rng.sample(beats.fails, min(len(beats.fails), rng.choice((1, 1, 2)))):
                self.say((template,))
        return resolution

    def _end(self, beats: Beats, dialogue: bool, bad: bool, twist, resolution) -> None:
        """How it ends."""
        rng = self.rng
        if rng.random() < 0.5:
            self.para()
        if bad:
            self.say(beats.bad)
            self.features.add("BadEnding")
        elif twist:
            self.say((twist[0],))
            self.features.add("Twist")
        else:
            self.say((resolution,))
            if beats.after:
                self.say(beats.after)
            if beats.cheers and dialogue:
                self.speak(beats.cheer_by, beats.cheers)
        if beats.conflict:
            self.features.add("Conflict")
        if dialogue and '"' not in "".join(s for p in self.paras for s in p):
            # Every story that chose dialogue gets at least one line of it.
            lines = ("I wish this had never happened.",) if bad else ("That was quite a day!", "What an adventure!")
            self.speak("hero", lines)

    def _moral(self, beats: Beats, dialogue: bool, bad: bool) -> str:
        """The moral, told now and then; returns it or ""."""
        if self.rng.random() >= P_MORAL:
            return ""
        moral = self.pick(MORALS[beats.bad_theme if bad else beats.theme])
        self.ctx["moral"] = moral
        if dialogue and self.ctx["elder"].used and self.rng.random() < 0.5:
            self.speak("elder", MORAL_SAYINGS)
        else:
            self.say(MORAL_LINES)
        self.features.add("MoralValue")
        return moral


def _comma(line: str) -> str:
    """A quoted statement before its tag ends in a comma: '"We can share," said Mia.'"""
    return line[:-1] + "," if line.endswith(".") else line
