"""The hero's thing blown or thrown up high outdoors, stuck there, and how it comes down."""

from __future__ import annotations

from ..beats import Beats
from ..teller import Teller


def beats(t: Teller) -> Beats:
    t.choose_place(lambda p: p.outdoor and p.high)
    t.choose_thing("w" if t.rng.random() < 0.6 else "t")
    wind = "w" in t.thing.tags and "t" not in t.thing.tags
    return Beats(
        theme="teamwork",
        bad_theme="careful",
        owns_thing=True,
        setup=(
            "For a while, {hero} {used}, and {pal} laughed and ran beside {him}.",
            "They ran and jumped and played in the wind.",
            "They played happily for a long time.",
        ),
        problem=(
            ("Suddenly, a big gust of wind came.", "It snatched the {obj}, and soon the {obj} was stuck {high}."),
            ("Whoosh! The wind grabbed the {obj}, and it landed {high}.",),
            ("Then the wind blew hard, and the {obj} flew up and got stuck {high}.",),
        )
        if wind
        else (
            ("{hero} {used} as hard as {he} could.", "The {obj} flew up and landed {high}."),
            ("{pal} wanted a turn, but {pal_he} threw the {obj} much too high.", "It got stuck {high}."),
            ("Up, up, up went the {obj}, and it came down {high}.",),
        ),
        cries=("Oh no! My {obj} is stuck!", "My {obj}! How will I get it down?", "Help! My {obj} is way up there!"),
        feel=(
            "{hero} looked up at the {obj} and felt {sad}.",
            "{hero}'s lip began to shake.",
            "{hero} did not know what to do.",
            "Now the {obj} was stuck, far above their heads.",
        ),
        offers=(
            "Don't worry, {hero}. We will get it down!",
            "I will help you!",
            "Let's think of a plan!",
            "We can do this together!",
        ),
        offers_narr=("{pal} said {pal_he} would help.", "{pal} wanted to help {hero} get it back."),
        fails=(
            "{hero} jumped as high as {he} could, but {he} could not reach the {obj}.",
            "{pal} tried to climb up, but {pal_he} slipped and slid back down.",
            "{hero} threw a small stone at it, but the {obj} did not move.",
            "{pal} stood on a bucket, but {pal_he} {pal_was} still much too short.",
            "{hero} stretched up on tiptoe, but it was no use.",
            "They waited for the wind to blow it down, but it stayed stuck.",
        ),
        success=(
            ("Then {hero} had an idea.", "{he} found a long stick and gently poked the {obj} until it fell."),
            (
                "{pal} ran home and came back with a ladder.",
                "{pal_he} held it steady while {hero} climbed up and got the {obj}.",
            ),
            ("Then {elder} came by.", "{elder_he} was tall enough to reach up and get the {obj} down."),
            (
                "{pal} stood on a box, and {hero} climbed onto {pal_his} shoulders.",
                "Together they were tall enough to reach the {obj}.",
            ),
            ("A kind bird saw them and pecked the {obj} loose.", "The {obj} tumbled down into {hero}'s arms."),
        ),
        after=(
            "{hero} hugged the {obj} and laughed.",
            "The {obj} was safe again, and {hero} {was} so {glad}.",
            "They played until it was time to go home, and this time {hero} was more careful.",
        ),
        cheers=("Thank you, {pal}!", "We did it!", "Hooray! My {obj} is back!"),
        bad=(
            (
                "They tried until the sun went down, but the {obj} stayed stuck {high}.",
                "{hero} had to go home without it.",
            ),
            ("Then the wind blew again, and the {obj} flew away over the rooftops.", "They never saw it again."),
        ),
        twists=(
            (
                (
                    "When the {obj} finally came down, it was not {hero}'s at all!",
                    "It was an old {obj} that someone had lost long ago, and {hero}'s own {obj} was lying in the grass "
                    "right behind {him}.",
                ),
                "{who} tried to rescue {his} {thing} from up high, only to find it was someone else's long-lost {obj}.",
            ),
            (
                (
                    "Just then, a little squirrel scampered up and pushed the {obj} down.",
                    "The squirrel had been watching them all along, and it only wanted to play too.",
                ),
                "{who} got {his} {thing} stuck up high, and a playful squirrel knocked it down for {him}.",
            ),
        ),
        hints=(
            (
                "On the way, {hero} saw a long ladder leaning against a fence.",
                (
                    "{hero} remembered the long ladder by the fence.",
                    "{hero} and {pal} carried it over, and {pal} held it steady while {hero} climbed up to get the "
                    "{obj}.",
                ),
            ),
            (
                "{pal} brought a long fishing net along, just in case.",
                (
                    "Then {pal} remembered the long net {pal_he} had brought.",
                    "With the net, {pal_he} gently lifted the {obj} down.",
                ),
            ),
        ),
        summary=(
            "{who} got {his} {thing} stuck {high}, and {pal} helped {him} get it down.",
            "When {hero}'s {thing} got stuck {high}, {hero} and {pal} worked together to bring it back.",
        ),
        bad_summary=("{who} got {his} {thing} stuck {high} and, no matter what {he} tried, could not get it back.",),
    )
