"""Where a story happens: each place's spots, sights and whether it is outdoors or high."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Place:
    """Somewhere a story happens. `spots` are where a small thing could be ("under the slide"),
    `high` where a thing could get stuck, `sights` whole sentences describing the place."""

    name: str
    at: str
    outdoor: bool
    spots: tuple[str, ...]
    high: tuple[str, ...] = ()
    sights: tuple[str, ...] = ()


PLACES = {
    p.name.split(" ", 1)[1]: p
    for p in (
        Place(
            "the park",
            "in the park",
            True,
            ("under the slide", "behind a bench", "near the swings", "in the tall grass", "by the duck pond"),
            ("in the branches of a tall oak tree", "on the roof of the little shed"),
            ("Ducks swam on the pond.", "Children laughed on the swings.", "Flowers grew along the path."),
        ),
        Place(
            "the garden",
            "in the garden",
            True,
            (
                "under a bush",
                "behind the flower pots",
                "between the carrots",
                "next to the watering can",
                "in a pile of leaves",
            ),
            ("on the roof of the garden shed", "in the branches of the apple tree"),
            ("Bees buzzed around the roses.", "Tomatoes grew red and round.", "A snail moved slowly along the wall."),
        ),
        Place(
            "the beach",
            "at the beach",
            True,
            (
                "under a pile of seaweed",
                "behind a big rock",
                "in the soft sand",
                "near the beach huts",
                "by the tide pools",
            ),
            ("on top of a tall rock", "on the roof of a beach hut"),
            ("Waves rolled onto the sand.", "Seagulls called in the sky.", "Little crabs ran across the rocks."),
        ),
        Place(
            "the forest",
            "in the forest",
            True,
            (
                "under a mossy log",
                "behind a big tree",
                "in a pile of pine needles",
                "near a bubbling stream",
                "inside a hollow stump",
            ),
            ("high in a tall pine tree", "on a branch of an old oak"),
            ("Tall trees whispered in the wind.", "A woodpecker tapped on a tree.", "Mushrooms grew near the roots."),
        ),
        Place(
            "the farm",
            "on the farm",
            True,
            ("in the hay", "behind the barn", "near the chicken coop", "under the tractor", "by the water trough"),
            ("on the roof of the red barn", "on top of the tall haystack"),
            ("Cows mooed in the field.", "Hens pecked at the ground.", "The old tractor stood by the barn."),
        ),
        Place(
            "the meadow",
            "in the meadow",
            True,
            ("among the daisies", "behind a big stone", "in the long grass", "near a rabbit hole", "by the old fence"),
            ("in the branches of a lonely tree", "on top of the old stone wall"),
            ("Butterflies danced over the flowers.", "The grass swayed in the breeze."),
        ),
        Place(
            "the playground",
            "at the playground",
            True,
            ("under the slide", "in the sandpit", "behind the climbing frame", "near the seesaw", "by the gate"),
            ("on top of the climbing frame", "on the roof of the little playhouse"),
            ("Kids were laughing on the seesaw.", "The swings creaked back and forth."),
        ),
        Place(
            "the lake",
            "by the lake",
            True,
            (
                "among the reeds",
                "under the wooden dock",
                "behind a row of boats",
                "on the pebbly shore",
                "near the old boathouse",
            ),
            ("in a willow tree by the water", "on the roof of the boathouse"),
            ("Swans glided on the water.", "Frogs croaked in the reeds.", "The water sparkled in the light."),
        ),
        Place(
            "the river",
            "by the river",
            True,
            (
                "under the little bridge",
                "among the smooth stones",
                "behind the reeds",
                "near a fallen log",
                "by the stepping stones",
            ),
            ("in a tree that leaned over the water", "on a high branch above the bank"),
            ("The water rushed and bubbled over the stones.", "A kingfisher flashed past like a blue spark."),
        ),
        Place(
            "the hill",
            "on the hill",
            True,
            (
                "behind a rock",
                "in a patch of clover",
                "near the old windmill",
                "under a thorny bush",
                "by a rabbit hole",
            ),
            ("on the sails of the old windmill", "in a tree at the very top of the hill"),
            ("From the top, you could see the whole village.", "Sheep grazed on the green slopes."),
        ),
        Place(
            "the backyard",
            "in the backyard",
            True,
            ("under the porch", "behind the doghouse", "by the sandbox", "near the fence", "under the picnic table"),
            ("on the roof of the house", "in the big maple tree", "on top of the fence"),
            ("The laundry flapped on the line.", "A robin hopped across the lawn."),
        ),
        Place(
            "the village square",
            "in the village square",
            True,
            (
                "near the fountain",
                "behind the flower cart",
                "by the old well",
                "under a wooden bench",
                "next to the bakery door",
            ),
            ("on the roof of the bakery", "in the tree by the fountain"),
            ("The fountain splashed and sparkled.", "People sold fruit, bread, and flowers."),
        ),
        Place(
            "the orchard",
            "in the orchard",
            True,
            (
                "under the apple trees",
                "in a basket of pears",
                "behind a ladder",
                "in the long grass",
                "by the cider press",
            ),
            ("high in an apple tree", "in the top of a pear tree"),
            ("Red apples hung from every branch.", "The air smelled sweet, like fruit."),
        ),
        Place(
            "the campsite",
            "at the campsite",
            True,
            ("inside the tent", "under a log", "near the campfire ring", "behind the woodpile", "by the water pump"),
            ("in a tall pine tree", "on top of the tent"),
            ("Smoke curled up from the campfire.", "Pine trees stood all around like tall green guards."),
        ),
        Place(
            "the zoo",
            "at the zoo",
            True,
            ("near the penguin pool", "behind the ice cream cart", "under a bench by the monkeys", "by the map sign"),
            ("in a tree by the giraffes", "on the roof of the snack stand"),
            ("The monkeys swung from branch to branch.", "A lion yawned in the sun."),
        ),
        Place(
            "the school yard",
            "in the school yard",
            True,
            (
                "by the gate",
                "behind the bike rack",
                "under the big bench",
                "near the water fountain",
                "by the flower beds",
            ),
            ("on the roof of the school", "in the tree by the gate"),
            ("The school bell rang loudly.", "Children played hopscotch on the ground."),
        ),
        Place(
            "the market",
            "at the market",
            True,
            ("under a fruit stall", "behind baskets of apples", "near the flower seller", "by the cheese stand"),
            ("on top of a striped awning", "on the roof of the fish stall"),
            ("People sold apples, bread, and cheese.", "It smelled of fresh bread and flowers."),
        ),
        Place(
            "the kitchen",
            "in the kitchen",
            False,
            (
                "under the table",
                "behind the bread box",
                "inside a drawer",
                "next to the fridge",
                "in the laundry basket",
            ),
            ("on top of the tall cupboard",),
            ("The kettle whistled on the stove.", "It smelled like fresh bread."),
        ),
        Place(
            "the bedroom",
            "in the bedroom",
            False,
            ("under the bed", "inside the toy box", "behind the curtains", "under the pillow", "in the wardrobe"),
            ("on top of the wardrobe",),
            ("A little lamp made a warm circle of light.", "Toys sat in a row on the shelf."),
        ),
        Place(
            "the living room",
            "in the living room",
            False,
            ("under the sofa", "behind a cushion", "inside the toy basket", "next to the bookshelf", "under the rug"),
            ("on top of the bookshelf",),
            ("A fire crackled in the fireplace.", "The old clock ticked on the wall."),
        ),
        Place(
            "the attic",
            "in the attic",
            False,
            ("inside an old trunk", "behind a pile of boxes", "under a dusty blanket", "next to the rocking horse"),
            ("on a high beam",),
            ("Dust danced in a beam of light.", "Old boxes were stacked up to the ceiling."),
        ),
        Place(
            "the classroom",
            "in the classroom",
            False,
            ("under a desk", "inside the pencil box", "behind the reading corner", "next to the fish tank"),
            ("on top of the tall cupboard",),
            ("Colorful pictures hung on the walls.", "The fish swam round and round in their tank."),
        ),
        Place(
            "the library",
            "at the library",
            False,
            ("under a big armchair", "behind a row of books", "in the returns box", "next to the globe"),
            ("on the highest shelf",),
            ("Everyone spoke in soft, quiet voices.", "Books of every color filled the shelves."),
        ),
        Place(
            "the playroom",
            "in the playroom",
            False,
            ("under the toy chest", "behind the puppet theater", "inside the dollhouse", "in a pile of blocks"),
            ("on top of the toy chest",),
            ("Blocks and crayons covered the floor.", "A big window let in lots of light."),
        ),
    )
}
