"""A creature in trouble, helped."""

from __future__ import annotations

from dataclasses import dataclass

from ..beats import Beats
from ..teller import Teller


@dataclass(frozen=True)
class Creature:
    noun: str
    places: tuple[str, ...]
    trouble: tuple
    help: tuple
    fail: str


CREATURES = (
    Creature(
        "bird",
        ("park", "garden", "forest", "backyard", "orchard", "meadow"),
        ("{spot1}, they found a baby bird that had fallen out of its nest.",),
        ("{hero} gently picked up the bird and placed it back in its nest.", "Its mother chirped happily."),
        "{hero} tried to reach the nest, but it was too high.",
    ),
    Creature(
        "kitten",
        ("park", "village square", "backyard", "garden", "market"),
        ("They heard a tiny meow from {spot1}.", "A little kitten was lost and shivering."),
        (
            "They carried the kitten from door to door until a girl opened a door and cried with joy.",
            "The kitten was hers!",
        ),
        "They asked at the first house, but it was not their kitten.",
    ),
    Creature(
        "duckling",
        ("lake", "river", "park", "farm"),
        ("A little duckling was peeping all alone {spot1}.",),
        (
            "They followed the sound of quacking to the water.",
            "There was the mother duck, and the duckling swam straight to her.",
        ),
        "They looked for the mother duck by the bushes, but she was not there.",
    ),
    Creature(
        "turtle",
        ("park", "garden", "lake", "river", "meadow"),
        ("{spot1}, a small turtle was stuck on its back, waving its legs.",),
        ("{hero} gently turned the turtle over.", "It blinked, stretched its neck, and slowly walked away."),
        "{hero} was afraid to touch it at first.",
    ),
    Creature(
        "puppy",
        ("park", "village square", "farm", "backyard"),
        ("A puppy was limping {spot1}, with a thorn in its paw.",),
        ("{hero} held the puppy gently while {pal} carefully pulled out the thorn.", "The puppy licked their faces."),
        "The puppy was too scared to let anyone near it.",
    ),
    Creature(
        "butterfly",
        ("garden", "meadow", "orchard", "forest"),
        ("A pretty butterfly was caught in a spider web {spot1}.",),
        ("{hero} used a tiny twig to free the butterfly, without breaking the web.", "It fluttered up into the sky."),
        "{hero} tried to pull the web away, but it was very sticky.",
    ),
    Creature(
        "fish",
        ("river", "beach", "lake"),
        ("A little fish was flapping in a shallow puddle {spot1}.", "The water had gone down and left it behind."),
        (
            "{hero} scooped the fish into a bucket of water and carried it back to the deep water.",
            "It swam away with a flick of its tail.",
        ),
        "{hero} tried to catch it with {his} hands, but it was too slippery.",
    ),
    Creature(
        "squirrel",
        ("park", "forest", "backyard"),
        ("A thin little squirrel was digging {spot1}, but it could not find any nuts.",),
        ("{hero} shared {his} {food} with the squirrel.", "It ate every bite and flicked its bushy tail."),
        "The squirrel ran away every time they came close.",
    ),
)


def beats(t: Teller) -> Beats:
    creature = t.pick(CREATURES)
    t.choose_place(lambda p: p.name[4:] in creature.places)
    t.ctx["creature"] = creature.noun
    return Beats(
        theme="kindness",
        bad_theme="kindness",
        setup=(
            "They were playing happily when {hero} suddenly stopped.",
            "They played for a while, and then {hero} heard something.",
        ),
        problem=(creature.trouble,),
        cries=("Look! It needs help!", "Poor little thing!", "We have to help it!"),
        feel=("{hero} felt {worried} for the little {creature}.", "{hero}'s heart felt heavy."),
        offers=("Let's help it together!", "Be gentle, {hero}.", "I know we can help!"),
        offers_narr=("{pal} knelt down next to {hero}.", "{pal} wanted to help too."),
        fails=(creature.fail, "{hero} wanted to help, but at first {he} did not know how."),
        success=(creature.help,),
        after=("{hero} felt warm and happy inside.", "{hero} and {pal} waved goodbye to the little {creature}."),
        cheers=("We did it!", "Goodbye, little {creature}!", "I'm so glad it is safe!"),
        bad=(
            ("But the little {creature} ran off before they could help.", "{hero} never knew if it was safe."),
            (
                "They looked everywhere, but they could not help the little {creature}.",
                "{hero} worried about it all night.",
            ),
        ),
        twists=(
            (
                (
                    "The next morning, {hero} found a surprise on {his} doorstep.",
                    "It was a neat little pile of shiny pebbles and feathers, left by the thankful {creature}!",
                ),
                "{who} helped a little {creature} in trouble, and the next morning it left {him} a thank-you gift.",
            ),
        ),
        summary=(
            "{who} and {pal} found a little {creature} in trouble {at_place} and helped it.",
            "{hero} helped a {creature} that needed help, and it made {his} heart happy.",
        ),
        bad_summary=("{who} tried to help a little {creature} {at_place} but could not save it.",),
    )
