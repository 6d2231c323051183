"""Two friends quarrel over a thing they both want, and learn to share it."""

from __future__ import annotations

from ..beats import Beats
from ..teller import Teller


def beats(t: Teller) -> Beats:
    t.choose_place(lambda p: True)
    t.choose_thing("lq")  # small enough to be found lying about
    return Beats(
        theme="sharing",
        bad_theme="sharing",
        conflict=True,
        setup=(
            "{spot1}, they found {a_thing}.",
            "{elder} gave {hero} and {pal} {a_thing} to play with.",
            "Someone had left {a_thing} {spot1}.",
        ),
        problem=(
            (
                "{hero} wanted to play with the {obj} first, but so did {pal}.",
                "{hero} grabbed one end, and {pal} grabbed the other.",
            ),
            ("Both of them reached for the {obj} at the same time.", "Neither one would let go."),
            ("{pal} took the {obj} and would not give it back.", "{hero} pulled, and {pal} pulled harder."),
        ),
        cries=("It's mine! I saw it first!", "Give it back!", "I want to play with it now!"),
        retorts=("No, it's my turn!", "I had it first!", "You always go first!"),
        feel=(
            "Soon they were both {angry}.",
            "{hero} stamped {his} feet, and {pal} folded {pal_his} arms.",
            "{hero}'s face went red, and {pal} turned away.",
        ),
        fails=(
            "{hero} tried to hide the {obj} behind {his} back, but {pal} saw it.",
            "{pal} started to cry, and {hero} felt bad, but {he} still did not want to share.",
            "They sat far apart and did not talk to each other, and it was not fun at all.",
            "They pulled so hard that they both fell down on the ground.",
        ),
        success=(
            ("Then {elder} came over and asked what was wrong.", "{elder_he} told them that they could take turns."),
            ("Then {hero} had an idea.", "{he} gave the {obj} to {pal} first, and then they took turns."),
            ("{hero} looked at {pal}'s sad face and let go of the {obj}.", "{he} said {pal} could go first."),
            ("They both stopped and looked at each other.", "Then they decided to play with the {obj} together."),
        ),
        after=(
            "Playing together was much more fun than fighting.",
            "Soon they were laughing again, and the {obj} went back and forth between them.",
            "{hero} and {pal} shared the {obj} for the rest of the day.",
        ),
        cheers=("Let's play together!", "Sharing is more fun!", "You can go first, {pal}."),
        bad=(
            (
                "They pulled so hard that the {obj} broke in two.",
                "Now nobody could play with it, and they both went home {sad}.",
            )
            if "b" in t.thing.tags
            else (
                "They pulled so hard that the {obj} flew out of their hands and rolled away into a deep ditch.",
                "Now nobody could play with it, and they both went home {sad}.",
            ),
            ("In the end, {pal} went home, and {hero} sat alone with the {obj}.", "It was not much fun to play alone."),
        ),
        twists=(
            (
                (
                    "Just then, a small child came running up, looking everywhere.",
                    "The {obj} belonged to the child, who had been searching for it all day!",
                    "{hero} and {pal} gave it back, and then all three of them played together.",
                ),
                "{who} and {pal} fought over {a_thing}, until they found out it belonged to someone else and gave it "
                "back.",
            ),
        ),
        hints=(
            (
                "{elder} had once told {hero} that sharing makes toys twice as fun.",
                (
                    "{hero} remembered what {elder} had said about sharing.",
                    "{he} let {pal} have the first turn, and soon they were both laughing.",
                ),
            ),
        ),
        summary=(
            "{who} and {pal} fought over {a_thing}, but in the end they learned to take turns.",
            "{hero} and {pal} both wanted the same {obj}, and after a quarrel they found a way to share it.",
        ),
        bad_summary=("{who} and {pal} fought over {a_thing} and would not share, so neither of them had any fun.",),
    )
