"""A contest against a rival."""

from __future__ import annotations

from dataclasses import dataclass

from ..beats import Beats
from ..teller import Teller


@dataclass(frozen=True)
class Contest:
    contest: str
    noun: str
    places: tuple[str, ...]
    practice: str
    mishap: tuple
    win: tuple
    season: str = ""


CONTESTS = (
    Contest(
        "a running race",
        "race",
        ("park", "meadow", "school yard", "hill"),
        "{hero} ran around the garden every morning to get faster.",
        ("Halfway through the race, {hero} tripped over a stone and fell.",),
        (
            "{hero} got up, brushed off {his} knees, and kept going.",
            "{he} ran faster than ever and crossed the finish line first!",
        ),
    ),
    Contest(
        "a drawing contest",
        "contest",
        ("classroom", "library", "village square"),
        "{hero} drew a picture every single day.",
        ("Just before the end, {hero} spilled water all over {his} drawing.",),
        (
            "{hero} turned the wet smudge into a beautiful rainy sky.",
            "The judges loved it, and {hero} won first prize!",
        ),
    ),
    Contest(
        "a sandcastle contest",
        "contest",
        ("beach",),
        "{hero} practiced building little castles in the sandbox.",
        ("Then a big wave rushed up the beach and knocked down half of {his} castle.",),
        ("{hero} built the castle again, even taller, with shells on every tower.", "{he} won first prize!"),
        "summer",
    ),
    Contest(
        "a singing show",
        "show",
        ("village square", "school yard", "classroom"),
        "{hero} sang to the birds every morning.",
        ("When it was {his} turn, {hero} forgot the words to {his} song.",),
        (
            "{hero} closed {his} eyes, made up new words, and sang so sweetly that everyone cheered.",
            "{he} won the show!",
        ),
    ),
    Contest(
        "a swimming race",
        "race",
        ("lake",),
        "{hero} swam in the lake every day to get stronger.",
        ("Halfway across, {hero} swallowed some water and started to cough.",),
        ("{hero} kept kicking, stroke after stroke.", "{he} touched the far side first and won the race!"),
        "summer",
    ),
    Contest(
        "a pumpkin contest",
        "contest",
        ("farm", "garden"),
        "{hero} watered {his} pumpkin every day and even sang to it.",
        ("The night before the contest, a hungry rabbit nibbled a big bite out of {his} pumpkin.",),
        (
            "{hero} carved the bite into a smiling face.",
            "The judges laughed and gave {him} the prize for the funniest pumpkin!",
        ),
        "autumn",
    ),
    Contest(
        "a spelling contest",
        "contest",
        ("classroom", "library"),
        "{hero} practiced spelling words every night before bed.",
        ("Then {hero} got the hardest word of all, and {his} mind went blank.",),
        (
            "{hero} closed {his} eyes and saw the word in {his} head, letter by letter.",
            "{he} spelled it right and won!",
        ),
    ),
)


def beats(t: Teller) -> Beats:
    contest = t.pick(CONTESTS)
    t.choose_place(lambda p: p.name[4:] in contest.places)
    if contest.season:
        t.set_season(contest.season)
    t.make_rival()
    t.ctx.update(contest=contest.contest, contest_noun=contest.noun, practice=t.fill(contest.practice))
    return Beats(
        theme="effort",
        bad_theme="effort",
        conflict=True,
        setup=(
            ("There was going to be {contest} {at_place}, and {hero} wanted to win.", "{practice}"),
            (
                "Everyone was talking about {contest} {at_place}.",
                "{hero} wanted to take part, so {he} practiced hard.",
                "{practice}",
            ),
        ),
        problem=(
            (
                "{rival}, {a_rival_kind} who always bragged, laughed at {hero}.",
                "{rival_he} said {hero} could never win.",
            )
            + contest.mishap,
            (
                "But {rival}, {a_rival_kind}, told everyone that {rival_he} would win for sure.",
                "{rival_he} pointed at {hero} and giggled.",
            )
            + contest.mishap,
        ),
        cries=("I will never win now!", "Oh no! Everything is ruined!"),
        feel=("For a moment, {hero} wanted to give up.", "{hero} felt {sad}, and {his} eyes filled with tears."),
        offers=("You can still do it, {hero}!", "Don't give up!", "Don't listen to {rival}. Just do your best!"),
        offers_narr=("{pal} cheered for {hero} as loudly as {pal_he} could.",),
        success=(contest.win,),
        after=(
            "Everyone cheered, and even {rival} said well done.",
            "{hero} felt {proud}, and {pal} gave {him} a big hug.",
        ),
        cheers=("I did it!", "Hooray! We won!"),
        bad=(
            (
                "{hero} tried hard, but {rival} won the {contest_noun}.",
                "{hero} walked home {sad}, with {his} head down.",
            ),
            ("In the end, {hero} came last.", "{rival} laughed, and {hero} felt {sad}."),
        ),
        twists=(
            (
                (
                    "Near the end, {rival} made a big mistake too and started to cry.",
                    "{hero} stopped to help {rival_him}, even though it meant {hero} could not win.",
                    "But the judges gave them both a special prize for kindness!",
                ),
                "{who} gave up {his} chance to win {contest} to help {rival}, and the judges gave them both a prize "
                "for kindness.",
            ),
        ),
        summary=(
            "{who} took part in {contest} and, even though {rival} laughed at {him}, {he} did not give up and won.",
        ),
        bad_summary=("{who} took part in {contest} but lost, and {rival} laughed at {him}.",),
    )
