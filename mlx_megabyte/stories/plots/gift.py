"""A gift made for someone."""

from __future__ import annotations

from dataclasses import dataclass

from ..beats import Beats
from ..teller import Teller


@dataclass(frozen=True)
class Gift:
    gift: str
    noun: str
    make: str
    made: str
    materials: tuple[str, ...]
    place: str


GIFTS = (
    Gift("a chocolate cake", "cake", "bake", "baked", ("flour", "sugar", "eggs", "chocolate", "milk"), "kitchen"),
    Gift("an apple pie", "pie", "bake", "baked", ("apples", "flour", "butter", "sugar", "cinnamon"), "kitchen"),
    Gift("a carrot cake", "cake", "bake", "baked", ("carrots", "flour", "eggs", "raisins", "nuts"), "kitchen"),
    Gift("a loaf of banana bread", "bread", "bake", "baked", ("bananas", "flour", "honey", "butter"), "kitchen"),
    Gift("a strawberry tart", "tart", "bake", "baked", ("strawberries", "cream", "butter", "flour"), "kitchen"),
    Gift(
        "a pot of vegetable soup",
        "soup",
        "cook",
        "cooked",
        ("potatoes", "carrots", "onions", "salt", "peas"),
        "kitchen",
    ),
    Gift("a birthday card", "card", "make", "made", ("paper", "crayons", "glue", "glitter", "stickers"), "playroom"),
    Gift("a flower crown", "crown", "make", "made", ("daisies", "ribbon", "buttercups"), "meadow"),
    Gift("a birdhouse", "birdhouse", "build", "built", ("wood", "nails", "paint"), "backyard"),
    Gift("a woolly scarf", "scarf", "knit", "knitted", ("yarn", "knitting needles", "buttons"), "living room"),
    Gift("a painting of the sea", "painting", "paint", "painted", ("paper", "paints", "brushes"), "playroom"),
    Gift("a necklace of shells", "necklace", "make", "made", ("shells", "string", "beads"), "beach"),
)
OCCASIONS = (
    "for {for}'s birthday",
    "to say thank you to {for}",
    "to cheer up {for}, who had been feeling sad",
    "as a surprise for {for}",
)


def beats(t: Teller) -> Beats:
    gift = t.pick(GIFTS)
    t.choose_place(lambda p: p.name[4:] == gift.place)
    t.ctx.update(gift=gift.gift, gift_noun=gift.noun, make=gift.make, made=gift.made, missing=t.pick(gift.materials))
    recipient = t.pick(("pal", "elder"))
    t.set_recipient(recipient)
    occasion = t.pick(OCCASIONS)  # left unfilled: filling it now would spend the grown-up's first mention
    return Beats(
        theme="giving",
        bad_theme="giving",
        cheer_by="for",
        go=(
            "One {weather} {time}, {hero} went to {place}.",
            "Early one {weather} {season} {time}, {hero} hurried to {place}.",
        ),
        setup=(
            ("{hero} wanted to {make} {gift} " + occasion + ".",),
            ("{hero} had a plan: {he} would {make} {gift} " + occasion + ".",),
        ),
        problem=(
            ("But when {hero} looked for the {missing}, {he} could not find any!",),
            ("Halfway through, {hero} found that {he} had no {missing}.",),
            ("{hero} got everything ready.", "Then {he} saw that {he} had run out of {missing}!"),
        ),
        cries=("Oh no! I have run out of {missing}!", "How can I {make} it without {missing}?"),
        feel=("{hero} sat down and felt {sad}.", "{hero} did not want to give up."),
        fails=(
            "{hero} looked in every cupboard, but {he} could not find any {missing}.",
            "{hero} tried to {make} it without {missing}, but it did not turn out right.",
            "{hero} went next door to ask, but nobody was home.",
        ),
        success=(
            (
                "{hero} ran to the market and bought some {missing} with {his} saved coins.",
                "{he} worked hard, and at last the {gift_noun} was ready.",
            ),
            (
                "{hero}'s neighbor had some {missing} to spare.",
                "{hero} worked all afternoon, and at last the {gift_noun} was ready.",
            ),
            (
                "{hero} asked {elder}, who had some {missing} in a basket."
                if recipient == "pal"
                else "{hero} asked {pal}, who had some {missing} at home.",
                "It was just enough, and soon the {gift_noun} was finished.",
            ),
        ),
        after=(
            ("{hero} gave the {gift_noun} to {for}.", "{for_he} smiled the biggest smile {hero} had ever seen."),
            ("{hero} gave the {gift_noun} to {for}.", "{for} said it was the best present ever."),
        ),
        cheers=("Thank you, {hero}! It is wonderful!", "You made this for me?"),
        bad=(
            ("But the {gift_noun} was not finished in time.", "{hero} had nothing to give, and {he} felt {sad}."),
            ("{hero} tried to finish it anyway, but it fell apart.", "There was no present for {for} that day."),
        ),
        twists=(
            (
                (
                    "When {hero} knocked on the door with the {gift_noun}, there was a surprise waiting.",
                    "{for} had made a present for {hero} too!",
                ),
                "{who} worked hard to {make} {gift} for {for}, and found that {for} had made a present for {him} too.",
            ),
        ),
        hints=(
            (
                "{hero} had been saving coins in a little jar for weeks.",
                (
                    "{hero} remembered {his} jar of coins.",
                    "{he} ran to the market, bought some {missing}, and finished the {gift_noun}.",
                ),
            ),
        ),
        summary=(
            "{who} wanted to {make} {gift} for {for}, and even without enough {missing}, {he} found a way to "
            "finish it.",
        ),
        bad_summary=("{who} wanted to {make} {gift} for {for}, but without any {missing}, it was never finished.",),
    )
