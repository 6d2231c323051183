"""A rule a grown-up gives, kept or broken."""

from __future__ import annotations

from dataclasses import dataclass

from ..beats import Beats
from ..teller import Teller


@dataclass(frozen=True)
class Rule:
    """A warning the hero ignores (foreshadowing), and what follows: `bad` or a near miss (`good`)."""

    places: tuple[str, ...]
    forbid: str
    warn: str
    tempt: tuple
    bad: tuple
    good: tuple
    outcome: str
    season: str = ""


RULES = (
    Rule(
        ("lake", "park", "farm"),
        "go too close to the pond",
        "Don't go too close to the pond, {hero}. The edge is slippery.",
        ("But {hero} saw a shiny green frog on a lily pad and wanted a closer look.",),
        (
            "{hero} stepped closer and closer, and then {his} foot slipped.",
            "Splash! {hero} fell into the cold, muddy water.",
        ),
        ("Just as {his} foot began to slip, {pal} grabbed {his} arm and pulled {him} back.",),
        "falling into the cold pond",
    ),
    Rule(
        ("kitchen",),
        "eat too many cookies before dinner",
        "Don't eat too many cookies before dinner, {hero}.",
        ("But the cookies smelled so good, and {hero} ate one, then another, then another.",),
        ("Soon {hero}'s tummy hurt, and {he} could not eat any dinner at all.",),
        ("Then {hero} remembered what {elder} had said and put the last cookies back in the jar.",),
        "with a very bad tummy ache",
    ),
    Rule(
        ("living room",),
        "play ball in the house",
        "Please don't play ball in the house, {hero}.",
        ("But it was raining outside, and {hero} really wanted to play.", "{he} kicked the ball against the wall."),
        ("The ball bounced off the wall and hit {elder}'s favorite vase.", "Crash! The vase broke into many pieces."),
        ("The ball wobbled toward {elder}'s favorite vase, but {hero} caught it just in time.",),
        "breaking a vase",
    ),
    Rule(
        ("backyard", "village square", "park"),
        "go out without a warm coat",
        "Put on your warm coat before you go out, {hero}.",
        ("But {hero} was in a hurry to play and ran outside without it.",),
        (
            "Soon {hero} was shivering, and that night {he} started to sneeze.",
            "{he} had to stay in bed for three whole days.",
        ),
        ("After a few minutes, {hero} was shivering, so {he} ran back and put on {his} coat.",),
        "catching a cold",
        "winter",
    ),
    Rule(
        ("forest",),
        "wander off the path",
        "Stay on the path, {hero}, and don't go too far.",
        ("But {hero} saw a beautiful butterfly and followed it deep into the trees.",),
        (
            "Soon {hero} was lost, and the forest was getting dark.",
            "It was a long time before {elder} found {him}, cold and tired.",
        ),
        ("Then {hero} remembered {elder}'s words, turned around, and followed the path back.",),
        "getting lost in the forest",
    ),
    Rule(
        ("playroom", "living room"),
        "paint on the walls",
        "Keep the paint on the paper, please, {hero}.",
        ("But the big white wall looked like a giant piece of paper.",),
        (
            "{hero} painted a huge purple sun on the wall.",
            "It would not wash off, and {hero} had to spend the whole weekend scrubbing.",
        ),
        ("{hero} lifted the brush to the wall, then stopped and painted the sun on {his} paper instead.",),
        "with paint all over the wall",
    ),
    Rule(
        ("backyard", "farm"),
        "climb the old fence",
        "Don't climb the old fence, {hero}. It is wobbly.",
        ("But {hero} wanted to see what was on the other side.",),
        ("The fence wobbled and creaked, and {hero} fell and scraped {his} knee.", "It hurt a lot, and {hero} cried."),
        ("The fence began to wobble, so {hero} climbed down quickly before it could fall.",),
        "falling off the fence",
    ),
)


def beats(t: Teller) -> Beats:
    rule = t.pick(RULES)
    t.choose_place(lambda p: p.name[4:] in rule.places)
    if rule.season:
        t.set_season(rule.season)
    t.ctx.update(forbid=rule.forbid, outcome=rule.outcome)
    t.features.add("Foreshadowing")  # the warning always comes true or nearly does
    return Beats(
        theme="listening",
        bad_theme="listening",
        bad_rate=0.45,
        setup=((("warn", rule.warn, "{elder} told {hero} not to {forbid}."),),),
        problem=(rule.tempt,),
        offers=("I don't think that is a good idea, {hero}.", "Remember what {elder} said!", "Let's not, {hero}."),
        offers_narr=(
            "{pal} said it was not a good idea, but {hero} did not listen.",
            "{pal} tugged at {hero}'s sleeve, but {hero} did not stop.",
        ),
        fails=(
            "{hero} remembered the warning, but {he} pushed it out of {his} mind.",
            "{hero} looked around to see if anyone was watching.",
            "Just this once won't hurt, thought {hero}.",
        ),
        success=(rule.good,),
        after=("{hero} was glad {he} had stopped in time.", "{hero} ran to {elder} and gave {elder_him} a big hug."),
        cheers=("That was close!", "I should have listened."),
        bad=(rule.bad + ("{hero} wished {he} had listened to {elder}.",),),
        summary=("{who} was told not to {forbid}, and {he} almost did it anyway, but stopped just in time.",),
        bad_summary=("{who} did not listen when {elder} said not to {forbid}, and it ended {outcome}.",),
    )
