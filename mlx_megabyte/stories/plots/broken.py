"""A broken thing, and how it is mended."""

from __future__ import annotations

from ..beats import Beats
from ..teller import Teller


def beats(t: Teller) -> Beats:
    t.choose_place(lambda p: True)
    t.choose_thing("b")
    return Beats(
        theme="patience",
        bad_theme="careful",
        owns_thing=True,
        setup=(
            "{hero} {used} all morning.",
            "{hero} showed {pal} how to {use}.",
            "They took turns, and both of them were having fun.",
        ),
        problem=(
            ("But then {hero} tripped, and the {obj} fell to the ground.", "Crack! It broke."),
            ("Suddenly, {pal} bumped into {hero} by accident.", "The {obj} fell and broke into pieces."),
            ("{hero} dropped the {obj}, and one piece snapped right off.",),
            ("The {obj} slipped out of {hero}'s hands and landed with a crash.", "It was broken."),
        ),
        cries=("Oh no! My {obj} is broken!", "Can we fix it?", "My poor {obj}!"),
        feel=("{hero} looked at the broken {obj} and felt {sad}.", "{hero} sat down and tried not to cry."),
        offers=(
            "I'm sorry, {hero}. Let me help you fix it.",
            "Maybe we can fix it together!",
            "Don't be sad. Broken things can be fixed!",
        ),
        offers_narr=("{pal} said they could try to fix it together.", "{pal} sat down next to {hero} to help."),
        fails=(
            "They tried to stick the pieces together with tape, but the tape would not hold.",
            "{pal} held the pieces together, but they fell apart again.",
            "{hero} tried some glue, but it was too runny and made a sticky mess.",
            "They tried tying the pieces with string, but it looked very wobbly.",
        ),
        success=(
            (
                "Then they asked {elder} for help.",
                "{elder} had strong glue, and together they fixed the {obj} piece by piece.",
            ),
            ("{hero} did not give up.", "Slowly and carefully, {he} fit each piece back where it belonged."),
            (
                "{pal} found some strong glue in a drawer.",
                "They pressed the pieces together and waited for the glue to dry.",
            ),
        ),
        after=(
            "Soon the {obj} was as good as new.",
            "The {obj} had a small crack now, but {hero} loved it even more.",
            "{hero} {used} again, and it worked perfectly.",
        ),
        cheers=("It works again!", "Thank you for helping me fix it!", "Look, {pal}! It is fixed!"),
        bad=(
            (
                "But the {obj} was broken too badly, and no one could fix it.",
                "{hero} put the pieces in a box and felt {sad}.",
            ),
            ("They tried and tried, but the pieces did not fit anymore.", "The {obj} would never be the same."),
        ),
        twists=(
            (
                (
                    "Then {elder} smiled and brought out a box with a bow on top.",
                    "Inside was a brand new {obj}, which {elder_he} had been saving for {hero}'s birthday!",
                ),
                "{who} broke {his} {thing} by accident, but {elder} surprised {him} with a brand new one.",
            ),
            (
                (
                    "When they looked closely, the {obj} was not really broken at all.",
                    "One piece had only come loose, and it clicked right back into place!",
                ),
                "{who} thought {his} {thing} was broken, but only one piece had come loose.",
            ),
        ),
        hints=(
            (
                "{elder} kept a little box of tools and glue on a high shelf.",
                (
                    "Then {hero} remembered the box of tools and glue on the high shelf.",
                    "{elder} got it down, and together they mended the {obj}.",
                ),
            ),
        ),
        summary=(
            "{who} broke {his} {thing} by accident, but with patience and some help, it was fixed.",
            "When {hero}'s {thing} broke, {hero} and {pal} did not give up until it worked again.",
        ),
        bad_summary=("{who} broke {his} {thing} by accident and, though {he} tried hard, could not fix it.",),
    )
