"""A fear faced."""

from __future__ import annotations

from dataclasses import dataclass

from ..beats import Beats
from ..teller import Teller
from ..templates import GO


@dataclass(frozen=True)
class Fear:
    fear: str
    places: tuple[str, ...]
    trigger: tuple
    brave: tuple
    twist: tuple
    twist_summary: str
    time: str = ""


FEARS = (
    Fear(
        "the dark",
        ("bedroom", "attic", "living room"),
        (
            "That night, the lights went out, and everything was dark.",
            "Then {hero} saw a big, scary shape in the corner.",
        ),
        (
            ("{elder} came and sat with {him}, and they sang a quiet song until {he} felt calm.",),
            (
                "{hero} took a deep breath and switched on a little flashlight.",
                "The scary shape was only a pile of clothes on a chair!",
            ),
        ),
        (
            "{hero} crept closer and closer to the shape.",
            "It was not a monster at all.",
            "It was {pal}, hiding under a blanket to play a game!",
        ),
        "{who} was scared of a dark shape in the night, but it turned out to be {pal} playing a game.",
        time="night",
    ),
    Fear(
        "thunder",
        ("bedroom", "living room", "kitchen"),
        ("Suddenly, there was a flash of light and a loud boom of thunder.", "The windows shook."),
        (
            (
                "{elder} held {him} close and showed {him} how to count the seconds between the flash and the boom.",
                "Each time, the storm was a little farther away.",
            ),
            (
                "{pal} told {hero} that thunder is just the sky clapping its hands.",
                "Soon they were both clapping along with it.",
            ),
        ),
        (
            "The next boom was the loudest of all, but it was not thunder.",
            "It was {pal}, who had dropped a pile of pots in the kitchen!",
        ),
        "{who} was scared of the thunder, but the loudest boom was only {pal} dropping some pots.",
    ),
    Fear(
        "deep water",
        ("lake", "beach", "river"),
        ("{pal} jumped into the water and called for {hero} to come in too.", "The water looked very deep."),
        (
            (
                "{hero} held {pal}'s hand and stepped in slowly, one step at a time.",
                "Soon {he} {was} splashing and laughing.",
            ),
        ),
        (
            "At last, {hero} stepped in with {his} eyes shut tight.",
            "When {he} opened them, {he} saw that the water only came up to {his} knees!",
        ),
        "{who} was scared of the deep water, but it turned out to be only knee-deep.",
    ),
    Fear(
        "the big slide",
        ("playground", "park"),
        ("{pal} climbed to the top of the big slide and waved.", "The slide looked very tall to {hero}."),
        (("{hero} climbed up one step at a time, held on tight, and slid down with a big whoosh.",),),
        (
            "At the top, {hero} found that {pal} was scared too!",
            "So they held hands and slid down together, laughing all the way.",
        ),
        "{who} was scared of the big slide and found out at the top that {pal} was scared too.",
    ),
    Fear(
        "strange noises",
        ("forest", "garden", "attic", "farm", "campsite"),
        ("Then they heard a strange noise coming from {spot1}.", "Scratch, scratch, squeak!"),
        (("{hero} picked up a stick and tiptoed closer.", "It was only a little hedgehog looking for snacks."),),
        ("{hero} peeked {spot1}.", "There was a tiny mouse family having a party with crumbs from {hero}'s lunch!"),
        "{who} was scared of a strange noise, but it was only a family of mice having a party.",
    ),
    Fear(
        "big dogs",
        ("park", "village square", "backyard", "beach"),
        ("A big, shaggy dog came running toward them, barking loudly.",),
        (("{hero} stood very still and held out {his} hand.", "The dog sniffed it and wagged its tail."),),
        (
            "The big dog dropped something at {hero}'s feet.",
            "It was a stick!",
            "The dog only wanted someone to play with.",
        ),
        "{who} was scared of a big barking dog, but it only wanted someone to throw its stick.",
    ),
    Fear(
        "bees",
        ("garden", "meadow", "orchard"),
        ("A fat, fuzzy bee buzzed right past {hero}'s nose.",),
        (
            (
                "{hero} stood still and watched the bee fly from flower to flower.",
                "It did not care about {hero} at all.",
            ),
        ),
        (
            "The bee landed on {hero}'s sleeve, and {hero} held {his} breath.",
            "Then it flew off and came back with a whole line of friends, dancing in the air like a little show!",
        ),
        "{who} was scared of bees, until one led a whole line of dancing bees past {him}.",
    ),
    Fear(
        "meeting new friends",
        ("school yard", "playground", "classroom"),
        (
            "Some children {hero} did not know were playing a game {spot1}.",
            "{hero} wanted to join, but {his} legs would not move.",
        ),
        (("{hero} took a deep breath, walked over, and asked if {he} could play.", "They said yes right away!"),),
        (
            "One of the new children walked over to {hero}.",
            "She was just as shy as {hero}, and she had been too scared to say hello!",
        ),
        "{who} was too shy to meet new friends, until {he} found a girl who was just as shy.",
    ),
)


def beats(t: Teller) -> Beats:
    fear = t.pick(FEARS)
    t.choose_place(lambda p: p.name[4:] in fear.places)
    t.ctx["fear"] = fear.fear
    if fear.time:
        t.ctx["time"] = fear.time
    go = (
        GO
        if fear.time != "night"
        else (
            "One {weather} {season} evening, {hero} was getting ready for bed.",
            "{hero} was in bed, but {he} could not sleep.",
        )
    )
    return Beats(
        theme="bravery",
        bad_theme="bravery",
        go=go,
        setup=(
            "{hero} was afraid of {fear}.",
            "There was one thing {hero} did not like at all: {fear}.",
            "{hero} was brave about most things, but not about {fear}.",
        ),
        problem=(fear.trigger,),
        cries=("I'm scared!", "I don't want to!", "What if something bad happens?"),
        feel=("{hero}'s knees shook, and {his} heart went thump, thump, thump.", "{hero} felt very {scared}."),
        offers=("I'm right here, {hero}. You can do it!", "Be brave! I will stay with you.", "It's okay to be scared."),
        offers_narr=("{pal} held {hero}'s hand.", "{pal} stayed close to {hero}."),
        fails=(
            "{hero} took one step forward, but then {he} stopped.",
            "{hero} closed {his} eyes and wished the fear would go away, but it did not.",
            "{hero} tried to hide behind {pal}.",
        ),
        success=fear.brave,
        after=(
            "{hero} felt {proud} of {self}.",
            "After that, {hero} was not afraid of {fear} anymore.",
            "It was not so scary after all.",
        ),
        cheers=("I did it! I was brave!", "That was not so scary after all!"),
        bad=(
            (
                "{hero} was too scared, and {he} ran away as fast as {he} could.",
                "{he} never found out that there was nothing to be afraid of.",
            ),
            ("{hero} hid under a blanket and would not come out.", "{he} stayed scared for a long, long time."),
        ),
        twists=((fear.twist, fear.twist_summary),),
        summary=(
            "{who} was afraid of {fear}, but with a little help, {he} found the courage to face it.",
            "{hero} was scared of {fear}, but {he} {was} brave and found out it was not so bad.",
        ),
        bad_summary=("{who} was afraid of {fear} and, in the end, was too scared to face it.",),
    )
