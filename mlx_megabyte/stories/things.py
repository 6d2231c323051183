"""The things a story can be about, with what they are for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thing:
    """Something a character owns or finds. `use`/`used`: what you do with it, base and past form.
    tags: w the wind can carry it off, t it can be thrown, l small enough to lose, p fits in a pocket,
    b it can break and be mended, q two friends could both want it."""

    noun: str
    use: str
    used: str
    tags: str


THINGS = (
    Thing("kite", "fly it", "flew it", "wbq"),
    Thing("balloon", "hold it", "held it", "w"),
    Thing("hat", "wear it", "wore it", "w"),
    Thing("scarf", "wear it", "wore it", "w"),
    Thing("paper plane", "throw it", "threw it", "wtq"),
    Thing("cap", "wear it", "wore it", "w"),
    Thing("pinwheel", "blow on it", "blew on it", "wbq"),
    Thing("umbrella", "open it", "opened it", "wb"),
    Thing("ball", "throw it", "threw it", "tlq"),
    Thing("beach ball", "bounce it", "bounced it", "tq"),
    Thing("frisbee", "throw it", "threw it", "tlq"),
    Thing("boomerang", "throw it", "threw it", "tl"),
    Thing("toy plane", "throw it", "threw it", "tlbq"),
    Thing("ribbon", "wave it", "waved it", "wlp"),
    Thing("marble", "roll it", "rolled it", "lpq"),
    Thing("ring", "wear it", "wore it", "lp"),
    Thing("key", "carry it", "carried it", "lp"),
    Thing("seashell", "hold it", "held it", "lp"),
    Thing("crayon", "draw with it", "drew with it", "lpq"),
    Thing("coin", "hold it", "held it", "lp"),
    Thing("whistle", "blow it", "blew it", "lpq"),
    Thing("book", "read it", "read it", "lq"),
    Thing("toy car", "race it", "raced it", "lpbq"),
    Thing("doll", "play with it", "played with it", "lbq"),
    Thing("teddy bear", "hug it", "hugged it", "lbq"),
    Thing("necklace", "wear it", "wore it", "lpb"),
    Thing("bracelet", "wear it", "wore it", "lp"),
    Thing("hair clip", "wear it", "wore it", "lp"),
    Thing("compass", "use it", "used it", "lpb"),
    Thing("flashlight", "shine it around", "shone it around", "lb"),
    Thing("yo-yo", "spin it", "spun it", "lpbq"),
    Thing("spinning top", "spin it", "spun it", "lpbq"),
    Thing("feather", "hold it", "held it", "lpw"),
    Thing("badge", "wear it", "wore it", "lp"),
    Thing("bell", "ring it", "rang it", "lpq"),
    Thing("mitten", "wear it", "wore it", "lp"),
    Thing("notebook", "write in it", "wrote in it", "l"),
    Thing("paintbrush", "paint with it", "painted with it", "lpq"),
    Thing("toy dinosaur", "play with it", "played with it", "lpbq"),
    Thing("toy train", "push it along", "pushed it along", "lbq"),
    Thing("toy robot", "wind it up", "wound it up", "lbq"),
    Thing("rubber duck", "squeeze it", "squeezed it", "lpq"),
    Thing("music box", "listen to it", "listened to it", "lb"),
    Thing("snow globe", "shake it", "shook it", "lb"),
    Thing("lunchbox", "carry it", "carried it", "l"),
    Thing("backpack", "carry it", "carried it", "l"),
    Thing("jump rope", "skip with it", "skipped with it", "lq"),
    Thing("bucket", "fill it with sand", "filled it with sand", "lbq"),
    Thing("shovel", "dig with it", "dug with it", "lq"),
    Thing("toy boat", "sail it", "sailed it", "bq"),
    Thing("wagon", "pull it", "pulled it", "bq"),
    Thing("drum", "play it", "played it", "bq"),
    Thing("bike", "ride it", "rode it", "bq"),
    Thing("scooter", "ride it", "rode it", "bq"),
    Thing("birdhouse", "paint it", "painted it", "b"),
    Thing("toy truck", "push it", "pushed it", "lbq"),
    Thing("guitar", "play it", "played it", "bq"),
    Thing("flute", "play it", "played it", "lbq"),
    Thing("magnifying glass", "look through it", "looked through it", "lb"),
    Thing("magic wand", "wave it", "waved it", "lpbq"),
    Thing("crown", "wear it", "wore it", "lbq"),
    Thing("puppet", "play with it", "played with it", "lbq"),
    Thing("harmonica", "play it", "played it", "lpq"),
    Thing("bubble wand", "blow bubbles with it", "blew bubbles with it", "lpq"),
    Thing("stuffed rabbit", "cuddle it", "cuddled it", "lbq"),
    Thing("pocket watch", "wind it", "wound it", "lpb"),
)
