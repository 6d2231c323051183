"""A lost thing, searched for spot by spot."""

from __future__ import annotations

from ..beats import Beats
from ..teller import Teller


def beats(t: Teller) -> Beats:
    t.choose_place(lambda p: len(p.spots) >= 4)
    t.choose_thing("l")
    t.ctx["pause"] = t.pick(
        (
            "look at a butterfly",
            "catch {his} breath",
            "drink some water",
            "tie a bow",
            "watch a bird",
            "help {pal} with something",
        )
    ).format_map(t.ctx)
    outdoor = t.place.outdoor
    return Beats(
        theme=t.pick(("teamwork", "careful")),
        bad_theme="careful",
        owns_thing=True,
        setup=(
            "{hero} {used} all morning.",
            "{hero} showed {his} {thing} to {pal}, and {pal} thought it was wonderful.",
            "{hero} put {his} {obj} down for a moment to {pause}.",
            "They played for hours, laughing and running around.",
        ),
        problem=(
            ("When it was time to go home, {hero} looked for {his} {obj}.", "It was gone!"),
            ("Later, {hero} reached for {his} {obj}, but it was not there.",),
            ("Suddenly, {hero} stopped.", "{his} {obj} was missing!"),
            ("After a while, {hero} noticed that {his} {thing} was gone.",),
        ),
        cries=(
            "Where is my {obj}?",
            "Oh no! I lost my {obj}!",
            "Has anyone seen my {obj}?",
            "My {obj} is gone! What will I do?",
        ),
        feel=(
            "{hero} felt {sad} and a little {worried}.",
            "Tears rolled down {hero}'s cheeks.",
            "{hero}'s heart sank.",
        ),
        offers=(
            "Don't cry, {hero}. I will help you look!",
            "Let's look everywhere!",
            "Two pairs of eyes are better than one!",
        ),
        offers_narr=("{pal} said {pal_he} would help {hero} look.", "{pal} promised to help {hero} search."),
        fails=(
            "First they looked {spot}, but the {obj} was not there.",
            "{pal} searched {spot}, but {pal_he} only found {junk}.",
            "{hero} looked {spot}, but there was nothing there except {junk}.",
            "They checked {spot} twice, just to be sure, but it was empty.",
            "They asked a {critter} if it had seen the {obj}, but it had not.",
        ),
        success=(
            ("At last, {hero} looked {spot3}, and there was the {obj}!",),
            ("Then {pal} shouted and pointed.", "The {obj} was {spot3}!"),
            ("Finally, {hero} found the {obj} {spot3}, right where {he} had dropped it.",),
            (
                "{hero} took a deep breath and thought about where {he} had been.",
                "{he} looked {spot3}, and there it was!",
            ),
        ),
        after=(
            "{hero} held the {obj} close and smiled.",
            "{hero} hugged {pal} and thanked {pal_him}.",
            "After that, {hero} always kept {his} {obj} in a safe place.",
        ),
        cheers=("I found it!", "Thank you for helping me, {pal}!", "My {obj}! I am so happy!"),
        bad=(
            (
                "They looked and looked until the sun went down, but they never found the {obj}.",
                "{hero} went home without it.",
            ),
            ("In the end, the {obj} was lost for good.", "{hero} missed it for a long, long time."),
        ),
        twists=tuple(
            x
            for x in (
                (
                    (
                        "Then {hero} put {his} hand in {his} pocket and felt something small.",
                        "The {obj} had been in {his} pocket the whole time!",
                    ),
                    "{who} searched everywhere for {his} lost {thing}, only to find it had been in {his} pocket all along.",
                )
                if "p" in t.thing.tags
                else None,
                (
                    (
                        "Just then, they saw a little {critter} {spot3}, playing with the {obj}.",
                        "It had found the {obj} and only wanted to borrow it.",
                        "{hero} laughed, and the {critter} gave it back.",
                    ),
                    "{who} lost {his} {thing} and discovered that a little {critter} had borrowed it.",
                ),
                (
                    (
                        "Then {elder} came over with a smile, holding the {obj}.",
                        "{elder_he} had picked it up earlier to keep it safe!",
                    ),
                    "{who} thought {his} {thing} was lost, but it turned out {elder} had been keeping it safe.",
                ),
            )
            if x
        ),
        hints=(
            (
                (
                    "A little magpie with bright, curious eyes watched them from a branch.",
                    (
                        "Then {hero} remembered the magpie with the curious eyes.",
                        "They looked up and found the {obj} in its nest, next to a shiny spoon!",
                    ),
                ),
            )
            if outdoor
            else (
                (
                    "{elder} was busy tidying up and putting things into boxes.",
                    (
                        "Then {hero} remembered that {elder} had been tidying up.",
                        "{he} opened the toy box, and there was the {obj}!",
                    ),
                ),
            )
        ),
        summary=(
            "{who} lost {his} {thing} {at_place} and, with help from {pal}, found it {spot3}.",
            "When {hero} lost {his} {thing}, {hero} and {pal} searched everywhere until they found it.",
        ),
        bad_summary=(
            "{who} lost {his} {thing} {at_place} and, even after searching with {pal}, never found it again.",
        ),
    )
