"""A deterministic generator of simple children's stories, so training works offline and in CI.

Every sentence template and word list here is our own. A story is a cast (a hero, a friend, a grown-up),
a setting (place, season, weather, time of day) and one of several plots (a lost thing, a stuck thing,
a quarrel, a fear, ...). Each part has many alternative templates and the parts combine freely, so a
small byte-level model has to learn grammar and story shape rather than memorise texts.

`make_story` also returns TinyStoriesInstruct-style metadata (features, three words, a summary, a random
sentence) that is true of the text by construction. `GENERATOR_VERSION` keys cached data: bump it
whenever the output for a given seed changes.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .text import instruct_text

GENERATOR_VERSION = 1

FEATURES = ("Dialogue", "BadEnding", "MoralValue", "Twist", "Foreshadowing", "Conflict")


@dataclass(frozen=True)
class Story:
    """One story and its TinyStoriesInstruct metadata, all of it true of `text`."""

    text: str  # a few short paragraphs separated by blank lines
    features: tuple[str, ...]  # the FEATURES this story really has, in FEATURES order
    words: tuple[str, ...]  # a noun, a verb and an adjective that appear verbatim in text
    summary: str
    random_sentence: str  # one narrated sentence of text


# How often the optional parts appear. Plots may raise the bad-ending rate (disobeying, mostly).
P_DIALOGUE = 0.5
P_BAD_ENDING = 0.12
P_MORAL = 0.4
P_TWIST = 0.18
P_FORESHADOW = 0.25
P_ACCENTED_NAME = 0.02  # a few names like "Zoë" so the byte model sees multi-byte UTF-8


# ---------------------------------------------------------------------------------------------------
# Word lists
# ---------------------------------------------------------------------------------------------------

GIRL_NAMES = (
    "Lily",
    "Mia",
    "Emma",
    "Sara",
    "Anna",
    "Lucy",
    "Ella",
    "Grace",
    "Ruby",
    "Rosie",
    "Daisy",
    "Molly",
    "Chloe",
    "Amy",
    "Kate",
    "Nora",
    "Ivy",
    "Hannah",
    "Julia",
    "Clara",
    "Alice",
    "Maya",
    "Zara",
    "Leila",
    "Amara",
    "Priya",
    "Aiko",
    "Mei",
    "Yuki",
    "Sofia",
    "Elena",
    "Ingrid",
    "Olga",
    "Fatima",
    "Aisha",
    "Nadia",
    "Keiko",
    "Lina",
    "Rosa",
    "Carmen",
    "Lucia",
    "Freya",
    "Hazel",
    "Poppy",
    "Tilly",
    "Greta",
    "Heidi",
    "Nina",
    "Bella",
    "Stella",
    "Luna",
    "Esme",
    "Tara",
    "Asha",
    "Ada",
    "June",
    "Mabel",
    "Pearl",
    "Iris",
    "Wren",
    "Olive",
    "Violet",
    "Matilda",
    "Ayla",
    "Sana",
    "Imani",
    "Kiri",
    "Leilani",
    "Anya",
)
BOY_NAMES = (
    "Tom",
    "Ben",
    "Max",
    "Leo",
    "Jack",
    "Finn",
    "Oliver",
    "Noah",
    "Liam",
    "Jacob",
    "Ethan",
    "Lucas",
    "Owen",
    "Henry",
    "Oscar",
    "Theo",
    "Arlo",
    "Felix",
    "Hugo",
    "Jonah",
    "Toby",
    "Milo",
    "Eli",
    "Kofi",
    "Ravi",
    "Omar",
    "Hamid",
    "Kenji",
    "Hiro",
    "Chen",
    "Wei",
    "Mateo",
    "Diego",
    "Pablo",
    "Luca",
    "Marco",
    "Ivan",
    "Pavel",
    "Lars",
    "Sven",
    "Tariq",
    "Yusuf",
    "Arjun",
    "Dev",
    "Kwame",
    "Jamal",
    "Malik",
    "Tim",
    "Dan",
    "Ned",
    "Gus",
    "Rufus",
    "Albert",
    "Otto",
    "Bruno",
    "Hector",
    "Ezra",
    "Caleb",
    "Rory",
    "Angus",
    "Tomas",
    "Nikolai",
    "Raj",
    "Obi",
    "Ali",
    "Emil",
    "Anton",
    "Boris",
)
NEUTRAL_NAMES = (
    "Sam",
    "Alex",
    "Robin",
    "Charlie",
    "Kai",
    "Jordan",
    "Riley",
    "Quinn",
    "Jesse",
    "Rowan",
    "Sky",
    "Ash",
    "Remy",
    "Jamie",
    "Eden",
    "Sasha",
    "Bailey",
    "Kit",
    "Frankie",
    "Morgan",
    "Avery",
    "Taylor",
)
PET_NAMES = (
    "Whiskers",
    "Biscuit",
    "Pip",
    "Buttons",
    "Patch",
    "Pepper",
    "Coco",
    "Bubbles",
    "Fluffy",
    "Mittens",
    "Shadow",
    "Sunny",
    "Nibbles",
    "Hopper",
    "Waddles",
    "Snowball",
    "Peanut",
    "Muffin",
    "Ginger",
    "Pumpkin",
    "Clover",
    "Socks",
    "Tumble",
    "Dot",
    "Scout",
    "Rusty",
    "Thistle",
    "Maple",
    "Acorn",
    "Bramble",
    "Puddle",
    "Noodle",
    "Pickles",
    "Toffee",
    "Fudge",
    "Honey",
    "Bean",
    "Sprout",
    "Pebble",
    "Twig",
    "Blossom",
    "Custard",
    "Marbles",
    "Squeak",
    "Dash",
    "Ziggy",
)
ROBOT_NAMES = (
    "Beep",
    "Bolt",
    "Zip",
    "Gizmo",
    "Sprocket",
    "Tink",
    "Blip",
    "Widget",
    "Rivet",
    "Cog",
    "Buzz",
    "Zoom",
    "Chip",
    "Clank",
    "Dynamo",
    "Pixel",
    "Sparky",
    "Volt",
    "Gadget",
    "Bleep",
)
MAGIC_NAMES = (
    "Ember",
    "Moonbeam",
    "Sparkle",
    "Glimmer",
    "Stardust",
    "Willow",
    "Puck",
    "Fern",
    "Misty",
    "Nimbus",
    "Comet",
    "Flicker",
    "Aurora",
    "Pippin",
    "Tinsel",
    "Twinkle",
    "Sage",
    "Orla",
    "Bramblewick",
    "Juniper",
)
# (name, pronoun): the only non-ASCII text we emit, chosen for a few percent of characters.
ACCENTED_NAMES = (
    ("Zoë", "f"),
    ("Chloé", "f"),
    ("Léa", "f"),
    ("Inés", "f"),
    ("Renée", "f"),
    ("Noémie", "f"),
    ("Maëlle", "f"),
    ("Sofía", "f"),
    ("Åsa", "f"),
    ("José", "m"),
    ("André", "m"),
    ("Björn", "m"),
    ("Søren", "m"),
    ("Ramón", "m"),
    ("Andrés", "m"),
    ("Joël", "m"),
    ("Émile", "m"),
    ("Zoltán", "m"),
    ("Jürgen", "m"),
    ("Noël", "n"),
)

# subject, object, possessive, reflexive, and the past of "to be" that agrees with the subject
PRONOUNS = {
    "m": ("he", "him", "his", "himself", "was"),
    "f": ("she", "her", "her", "herself", "was"),
    "n": ("they", "them", "their", "themselves", "were"),
    "i": ("it", "it", "its", "itself", "was"),
}


@dataclass(frozen=True)
class Kind:
    """What a character is: `noun` ("bear cub"), `group` (picks homes and names), the pronoun letters
    it may take, whether it is `young` (never "old"), and noises it makes when happy (past tense)."""

    noun: str
    group: str
    pronouns: str = "mf"
    young: bool = False
    sounds: tuple[str, ...] = ()


KINDS = (
    Kind("girl", "human", "f"),
    Kind("boy", "human", "m"),
    Kind("child", "human", "n"),
    Kind("puppy", "animal", young=True, sounds=("barked", "yipped")),
    Kind("dog", "animal", sounds=("barked",)),
    Kind("kitten", "animal", young=True, sounds=("purred", "meowed")),
    Kind("cat", "animal", sounds=("purred", "meowed")),
    Kind("bunny", "animal", young=True),
    Kind("rabbit", "animal"),
    Kind("bear cub", "animal", young=True, sounds=("growled",)),
    Kind("bear", "animal", sounds=("roared",)),
    Kind("fox", "animal", sounds=("yipped",)),
    Kind("owl", "animal", sounds=("hooted",)),
    Kind("duck", "animal", sounds=("quacked",)),
    Kind("duckling", "animal", young=True, sounds=("peeped",)),
    Kind("frog", "animal", sounds=("croaked",)),
    Kind("turtle", "animal"),
    Kind("tortoise", "animal"),
    Kind("mouse", "animal", sounds=("squeaked",)),
    Kind("squirrel", "animal", sounds=("chattered",)),
    Kind("hedgehog", "animal", sounds=("snuffled",)),
    Kind("pig", "animal", sounds=("oinked",)),
    Kind("piglet", "animal", young=True, sounds=("squealed",)),
    Kind("cow", "animal", "f", sounds=("mooed",)),
    Kind("calf", "animal", young=True, sounds=("mooed",)),
    Kind("lamb", "animal", young=True, sounds=("bleated",)),
    Kind("goat", "animal", sounds=("bleated",)),
    Kind("horse", "animal", sounds=("neighed",)),
    Kind("pony", "animal", sounds=("neighed",)),
    Kind("donkey", "animal", sounds=("brayed",)),
    Kind("elephant", "animal", sounds=("trumpeted",)),
    Kind("giraffe", "animal"),
    Kind("lion cub", "animal", young=True, sounds=("roared",)),
    Kind("tiger cub", "animal", young=True, sounds=("growled",)),
    Kind("monkey", "animal", sounds=("chattered", "squealed")),
    Kind("penguin", "animal", sounds=("squawked",)),
    Kind("hippo", "animal", sounds=("grunted",)),
    Kind("zebra", "animal"),
    Kind("koala", "animal"),
    Kind("panda", "animal"),
    Kind("raccoon", "animal"),
    Kind("badger", "animal"),
    Kind("beaver", "animal"),
    Kind("otter", "animal", sounds=("squeaked",)),
    Kind("deer", "animal"),
    Kind("fawn", "animal", young=True),
    Kind("chick", "animal", young=True, sounds=("cheeped",)),
    Kind("hen", "animal", "f", sounds=("clucked",)),
    Kind("goose", "animal", sounds=("honked",)),
    Kind("parrot", "animal", sounds=("squawked",)),
    Kind("crow", "animal", sounds=("cawed",)),
    Kind("sparrow", "animal", sounds=("chirped",)),
    Kind("ladybug", "animal", "mfi"),
    Kind("bee", "animal", "mfi", sounds=("buzzed",)),
    Kind("butterfly", "animal", "mfi"),
    Kind("ant", "animal", "mfi"),
    Kind("snail", "animal", "mfi"),
    Kind("mole", "animal"),
    Kind("bat", "animal", sounds=("squeaked",)),
    Kind("seal", "animal", sounds=("barked",)),
    Kind("kangaroo", "animal"),
    Kind("wolf cub", "animal", young=True, sounds=("howled",)),
    Kind("dinosaur", "animal", sounds=("roared",)),
    Kind("robot", "robot", "i", sounds=("beeped", "whirred")),
    Kind("teddy bear", "toy"),
    Kind("toy soldier", "toy", "m"),
    Kind("rag doll", "toy", "f"),
    Kind("dragon", "magic", sounds=("roared",)),
    Kind("unicorn", "magic", sounds=("neighed",)),
    Kind("fairy", "magic", "f"),
    Kind("elf", "magic"),
    Kind("giant", "magic"),
    Kind("wizard", "magic", "m"),
    Kind("witch", "magic", "f"),
    Kind("troll", "magic", sounds=("grunted",)),
    Kind("gnome", "magic"),
)
GROUP_WEIGHTS = {"human": 40, "animal": 42, "robot": 5, "toy": 4, "magic": 9}
SIZES = ("little", "tiny", "big", "young", "small", "old")

HOMES = {
    "human": (
        "in a little house by the sea",
        "in a small yellow house on a hill",
        "in a busy town",
        "in a cozy cottage near the woods",
        "in a tall apartment building",
        "on a quiet street",
        "in a tiny village",
        "in a house with a red door",
        "on a farm at the edge of a village",
        "in a big city full of lights",
        "in a blue house next to a bakery",
        "in a little town by a river",
    ),
    "animal": (
        "in a cozy hole under an old tree",
        "in a warm nest high in an oak",
        "in a burrow near the river",
        "in a den deep in the forest",
        "on a sunny farm",
        "in a meadow full of flowers",
        "at the edge of a quiet pond",
        "in a hollow log",
        "in a little barn",
        "near a big green hill",
        "in the tall grass by the lake",
        "under the roots of a giant willow",
    ),
    "robot": (
        "in a busy workshop",
        "in a little house full of gears",
        "in a toy shop on the corner",
        "in a lab at the top of a hill",
        "in a garage full of tools",
    ),
    "toy": ("in a toy box in a sunny bedroom", "on a shelf in a toy shop", "in a cozy playroom"),
    "magic": (
        "in a cave on a tall mountain",
        "in a magic forest",
        "in a castle made of stone",
        "beyond the misty hills",
        "in a hidden valley",
        "in a tower by the sea",
    ),
}

# trait -> things a character with that trait did (filled with the character's pronouns)
TRAITS = {
    "kind": ("always helped anyone who was sad", "shared {his} snacks with everyone"),
    "brave": ("{was} not afraid of big dogs", "always stood up for {his} friends"),
    "shy": ("often hid when new friends came to play", "spoke in a very small voice"),
    "curious": ("asked questions about everything", "always wanted to know how things worked"),
    "clever": ("could solve any puzzle", "always had good ideas"),
    "silly": ("made funny faces all day long", "wore {his} hat upside down"),
    "cheerful": ("smiled even on rainy days", "hummed a tune wherever {he} went"),
    "gentle": ("never pushed or shoved", "held baby birds as softly as a feather"),
    "playful": ("turned everything into a game", "never wanted to stop playing"),
    "friendly": ("said hello to everyone {he} met", "made new friends wherever {he} went"),
    "careful": ("always looked both ways before crossing", "kept {his} things neat and tidy"),
    "busy": ("always had something to do", "ran from one job to the next"),
    "lazy": ("liked to sleep until lunchtime", "never wanted to tidy up"),
    "grumpy": ("frowned a lot, but {he} had a soft heart", "did not like mornings at all"),
    "proud": ("liked to show off {his} drawings", "thought {he} could do anything"),
    "polite": ("always said please and thank you", "never forgot to say sorry"),
    "helpful": ("always helped carry the shopping", "liked to help in the kitchen"),
    "quiet": ("liked to sit and listen", "loved calm, quiet places"),
    "noisy": ("sang loudly wherever {he} went", "could never keep {his} voice down"),
    "bouncy": ("could not sit still for a minute", "hopped instead of walking"),
    "sleepy": ("yawned all day long", "could fall asleep anywhere"),
    "funny": ("made everyone laugh", "knew a hundred silly jokes"),
    "honest": ("always told the truth", "never took what was not {his}"),
    "generous": ("gave {his} toys to friends who had none", "always shared {his} treats"),
    "patient": ("never minded waiting", "could wait a long time for good things"),
    "cheeky": ("liked to play little tricks", "giggled at the wrong moments"),
    "thoughtful": ("always remembered {his} friends' birthdays", "thought hard before {he} spoke"),
    "nervous": ("worried about little things", "bit {his} nails when {he} {was} scared"),
    "tidy": ("kept {his} room neat", "put every toy back in its place"),
    "messy": ("left {his} toys everywhere", "always had jam on {his} face"),
    "chatty": ("talked from morning until night", "had a story for everyone"),
    "bossy": ("liked to tell everyone what to do", "always wanted to be the leader"),
    "stubborn": ("never changed {his} mind", "did not like to say sorry"),
    "daring": ("loved to try new things", "climbed higher than anyone else"),
    "dreamy": ("often stared at the clouds", "made up stories in {his} head"),
    "jolly": ("laughed with a big, round laugh", "loved parties and games"),
    "timid": ("jumped at every little noise", "did not like the dark"),
    "wise": ("always knew what to say", "gave good advice to {his} friends"),
    "eager": ("always wanted to help", "{was} first in line for everything"),
    "clumsy": ("tripped over {his} own feet", "dropped things all the time"),
    "forgetful": ("often forgot where {he} put things", "forgot {his} lunch almost every day"),
    "impatient": ("hated waiting for anything", "always wanted things right away"),
    "lively": ("ran everywhere {he} went", "woke up before the birds"),
    "loyal": ("always stood by {his} friends", "never left a friend behind"),
    "creative": ("painted and built wonderful things", "made toys out of boxes and string"),
    "greedy": ("wanted all the cookies for {self}", "never liked to share {his} sweets"),
}

# (base form, past form): what a character likes to do. Past forms are written out, never derived.
HOBBIES = (
    ("jump in puddles", "jumped in puddles"),
    ("sing silly songs", "sang silly songs"),
    ("dance in the sunshine", "danced in the sunshine"),
    ("draw pictures of the sea", "drew pictures of the sea"),
    ("paint bright pictures", "painted bright pictures"),
    ("read books about the stars", "read books about the stars"),
    ("build tall towers of blocks", "built tall towers of blocks"),
    ("climb trees", "climbed trees"),
    ("swim in the lake", "swam in the lake"),
    ("dig holes in the sand", "dug holes in the sand"),
    ("skip down the path", "skipped down the path"),
    ("hop over stones", "hopped over stones"),
    ("bake little cakes", "baked little cakes"),
    ("count the stars", "counted the stars"),
    ("collect shiny pebbles", "collected shiny pebbles"),
    ("explore new places", "explored new places"),
    ("splash in the river", "splashed in the river"),
    ("fly kites", "flew kites"),
    ("ride a little red bike", "rode a little red bike"),
    ("roll down grassy hills", "rolled down grassy hills"),
    ("play hide and seek", "played hide and seek"),
    ("hum happy tunes", "hummed happy tunes"),
    ("whistle with the birds", "whistled with the birds"),
    ("chase butterflies", "chased butterflies"),
    ("watch the clouds", "watched the clouds"),
    ("plant flowers", "planted flowers"),
    ("pick berries", "picked berries"),
    ("catch falling leaves", "caught falling leaves"),
    ("tell funny jokes", "told funny jokes"),
    ("write little stories", "wrote little stories"),
    ("make paper boats", "made paper boats"),
    ("fold paper animals", "folded paper animals"),
    ("spin in circles", "spun in circles"),
    ("slide down the big slide", "slid down the big slide"),
    ("swing as high as the sky", "swung as high as the sky"),
    ("feed the ducks", "fed the ducks"),
    ("grow tomatoes", "grew tomatoes"),
    ("knit warm scarves", "knitted warm scarves"),
    ("sew tiny hats", "sewed tiny hats"),
    ("drum on pots and pans", "drummed on pots and pans"),
    ("look for bugs under rocks", "looked for bugs under rocks"),
    ("learn new words", "learned new words"),
    ("nap in the sun", "napped in the sun"),
    ("blow bubbles", "blew bubbles"),
    ("wave at passing trains", "waved at passing trains"),
    ("race the wind", "raced the wind"),
    ("sail little boats on the pond", "sailed little boats on the pond"),
    ("find pretty shells", "found pretty shells"),
    ("hide behind the curtains", "hid behind the curtains"),
    ("stack cups into towers", "stacked cups into towers"),
    ("giggle at funny faces", "giggled at funny faces"),
    ("doodle in a notebook", "doodled in a notebook"),
    ("bounce on the bed", "bounced on the bed"),
    ("play the drums", "played the drums"),
    ("play the piano", "played the piano"),
    ("play the flute", "played the flute"),
    ("juggle apples", "juggled apples"),
    ("wander through the fields", "wandered through the fields"),
    ("skate on the frozen pond", "skated on the frozen pond"),
    ("listen to the rain", "listened to the rain"),
    ("tell stories to the moon", "told stories to the moon"),
    ("gather acorns", "gathered acorns"),
    ("kick a ball against the wall", "kicked a ball against the wall"),
    ("do cartwheels on the grass", "did cartwheels on the grass"),
    ("make mud pies", "made mud pies"),
    ("visit the library", "visited the library"),
    ("weave little baskets", "wove little baskets"),
    ("carve wooden animals", "carved wooden animals"),
    ("throw pebbles into the pond", "threw pebbles into the pond"),
    ("shake a tambourine", "shook a tambourine"),
    ("sweep the porch", "swept the porch"),
    ("feed the chickens", "fed the chickens"),
    ("teach tricks to the cat", "taught tricks to the cat"),
    ("sleep in the shade", "slept in the shade"),
    ("take long walks", "took long walks"),
    ("fish by the river", "fished by the river"),
    ("sing to the flowers", "sang to the flowers"),
    ("dream about faraway places", "dreamed about faraway places"),
    ("bring flowers to the neighbors", "brought flowers to the neighbors"),
    ("seek out secret paths", "sought out secret paths"),
    ("bite into crunchy apples", "bit into crunchy apples"),
    ("ride on the merry-go-round", "rode on the merry-go-round"),
    ("win at board games", "won at board games"),
)

COLOURS = (
    "red",
    "blue",
    "green",
    "yellow",
    "orange",
    "purple",
    "pink",
    "white",
    "brown",
    "golden",
    "silver",
    "bright red",
    "light blue",
    "dark green",
    "sky blue",
    "lemon yellow",
    "rainbow",
    "spotted",
    "striped",
)
QUALITIES = ("shiny", "new", "little", "special", "old", "sparkly", "lucky", "pretty", "beautiful", "tiny")

FOODS = (
    "apples",
    "bananas",
    "carrots",
    "cookies",
    "cherries",
    "grapes",
    "pears",
    "plums",
    "peaches",
    "strawberries",
    "blueberries",
    "raspberries",
    "oranges",
    "pancakes",
    "muffins",
    "cupcakes",
    "cheese sandwiches",
    "honey",
    "warm bread",
    "toast with jam",
    "tomato soup",
    "porridge",
    "noodles",
    "rice",
    "beans",
    "peas",
    "corn",
    "popcorn",
    "pizza",
    "cherry pie",
    "chocolate cake",
    "yogurt",
    "nuts",
    "watermelon",
    "lemonade",
    "hot cocoa",
    "crackers",
    "pretzels",
    "cucumbers",
    "potatoes",
    "pumpkin soup",
    "apple pie",
    "dumplings",
    "waffles",
    "biscuits",
    "sticky buns",
    "mango",
    "figs",
    "oatmeal",
    "pickles",
)

# sad/happy/... words drawn afresh each time a template asks for one
FEELINGS = {
    "sad": ("sad", "upset", "unhappy", "very sad", "gloomy", "miserable"),
    "glad": ("happy", "glad", "delighted", "joyful", "very happy", "thrilled"),
    "scared": ("scared", "frightened", "afraid", "nervous", "worried"),
    "angry": ("angry", "cross", "grumpy", "upset", "cranky"),
    "worried": ("worried", "nervous", "anxious", "uneasy"),
    "proud": ("proud", "very proud", "so proud"),
}
JUNK = (
    "an old sock",
    "a few dry leaves",
    "a shiny pebble",
    "a sleepy beetle",
    "a lost button",
    "a broken crayon",
    "a candy wrapper",
    "a curly feather",
    "a tiny snail",
    "an acorn cap",
)

SEASON_WEATHER = {
    "spring": ("sunny", "rainy", "windy", "warm", "breezy", "misty"),
    "summer": ("sunny", "hot", "warm", "windy", "cloudy"),
    "autumn": ("windy", "chilly", "rainy", "foggy", "cloudy", "cool"),
    "winter": ("snowy", "cold", "frosty", "gray", "sunny"),
}
CLEAR_WEATHER = ("sunny", "warm", "hot", "breezy", "windy", "cool", "chilly", "cloudy")
WEATHER_LINES = {
    "sunny": ("The sun was shining, and the sky was blue.", "The sun smiled down from a clear sky."),
    "rainy": (
        "Soft rain was falling, and there were puddles everywhere.",
        "Raindrops went pitter-patter on the leaves.",
    ),
    "windy": (
        "The wind was blowing hard, and the leaves danced in the air.",
        "A strong wind whooshed through the trees.",
    ),
    "warm": ("The air was warm and smelled of flowers.", "It was warm enough to run around without a coat."),
    "breezy": ("A gentle breeze made the grass sway.", "A soft breeze tickled {hero}'s nose."),
    "misty": ("A thin mist hung over the grass.", "Everything looked soft and gray in the mist."),
    "hot": ("It was so hot that even the bees were slow.", "The sun was hot, and everyone looked for shade."),
    "cloudy": ("Big white clouds drifted across the sky.", "Gray clouds hid the sun now and then."),
    "chilly": ("The air was chilly, so {hero} wore a warm sweater.", "It was chilly, and the grass was wet with dew."),
    "foggy": ("Thick fog hid the trees and the houses.", "The fog was so thick that the world looked like a cloud."),
    "cool": ("The air was cool and fresh.", "A cool wind blew, and the leaves were turning red and yellow."),
    "snowy": ("Soft white snow covered the ground.", "Snowflakes floated down from the sky."),
    "cold": ("It was so cold that {hero}'s breath made little clouds.", "Icicles hung from the roofs."),
    "frosty": ("Frost sparkled on every leaf and every window.", "The ground was white with frost."),
    "gray": ("The sky was gray and quiet.", "The clouds were low and gray."),
}
SEASON_LINES = {
    "spring": ("Flowers were starting to bloom everywhere.", "Baby birds were singing in their nests."),
    "summer": ("The days were long and bright.", "The grass was tall and green."),
    "autumn": ("Red and orange leaves covered the ground.", "The trees were dropping their leaves one by one."),
    "winter": ("The trees were bare.", "Everyone wore warm hats and mittens."),
}


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


@dataclass(frozen=True)
class Thing:
    """Something a character owns or finds. `use`/`used`: what you do with it, base and past form.
    tags: w the wind can carry it off, t it can be thrown, l small enough to lose, p fits in a pocket,
    b it can break and be mended, q two friends could both want it."""

    noun: str
    use: str
    used: str
    tags: str


THINGS = (
    Thing("kite", "fly it", "flew it", "wbq"),
    Thing("balloon", "hold it", "held it", "w"),
    Thing("hat", "wear it", "wore it", "w"),
    Thing("scarf", "wear it", "wore it", "w"),
    Thing("paper plane", "throw it", "threw it", "wtq"),
    Thing("cap", "wear it", "wore it", "w"),
    Thing("pinwheel", "blow on it", "blew on it", "wbq"),
    Thing("umbrella", "open it", "opened it", "wb"),
    Thing("ball", "throw it", "threw it", "tlq"),
    Thing("beach ball", "bounce it", "bounced it", "tq"),
    Thing("frisbee", "throw it", "threw it", "tlq"),
    Thing("boomerang", "throw it", "threw it", "tl"),
    Thing("toy plane", "throw it", "threw it", "tlbq"),
    Thing("ribbon", "wave it", "waved it", "wlp"),
    Thing("marble", "roll it", "rolled it", "lpq"),
    Thing("ring", "wear it", "wore it", "lp"),
    Thing("key", "carry it", "carried it", "lp"),
    Thing("seashell", "hold it", "held it", "lp"),
    Thing("crayon", "draw with it", "drew with it", "lpq"),
    Thing("coin", "hold it", "held it", "lp"),
    Thing("whistle", "blow it", "blew it", "lpq"),
    Thing("book", "read it", "read it", "lq"),
    Thing("toy car", "race it", "raced it", "lpbq"),
    Thing("doll", "play with it", "played with it", "lbq"),
    Thing("teddy bear", "hug it", "hugged it", "lbq"),
    Thing("necklace", "wear it", "wore it", "lpb"),
    Thing("bracelet", "wear it", "wore it", "lp"),
    Thing("hair clip", "wear it", "wore it", "lp"),
    Thing("compass", "use it", "used it", "lpb"),
    Thing("flashlight", "shine it around", "shone it around", "lb"),
    Thing("yo-yo", "spin it", "spun it", "lpbq"),
    Thing("spinning top", "spin it", "spun it", "lpbq"),
    Thing("feather", "hold it", "held it", "lpw"),
    Thing("badge", "wear it", "wore it", "lp"),
    Thing("bell", "ring it", "rang it", "lpq"),
    Thing("mitten", "wear it", "wore it", "lp"),
    Thing("notebook", "write in it", "wrote in it", "l"),
    Thing("paintbrush", "paint with it", "painted with it", "lpq"),
    Thing("toy dinosaur", "play with it", "played with it", "lpbq"),
    Thing("toy train", "push it along", "pushed it along", "lbq"),
    Thing("toy robot", "wind it up", "wound it up", "lbq"),
    Thing("rubber duck", "squeeze it", "squeezed it", "lpq"),
    Thing("music box", "listen to it", "listened to it", "lb"),
    Thing("snow globe", "shake it", "shook it", "lb"),
    Thing("lunchbox", "carry it", "carried it", "l"),
    Thing("backpack", "carry it", "carried it", "l"),
    Thing("jump rope", "skip with it", "skipped with it", "lq"),
    Thing("bucket", "fill it with sand", "filled it with sand", "lbq"),
    Thing("shovel", "dig with it", "dug with it", "lq"),
    Thing("toy boat", "sail it", "sailed it", "bq"),
    Thing("wagon", "pull it", "pulled it", "bq"),
    Thing("drum", "play it", "played it", "bq"),
    Thing("bike", "ride it", "rode it", "bq"),
    Thing("scooter", "ride it", "rode it", "bq"),
    Thing("birdhouse", "paint it", "painted it", "b"),
    Thing("toy truck", "push it", "pushed it", "lbq"),
    Thing("guitar", "play it", "played it", "bq"),
    Thing("flute", "play it", "played it", "lbq"),
    Thing("magnifying glass", "look through it", "looked through it", "lb"),
    Thing("magic wand", "wave it", "waved it", "lpbq"),
    Thing("crown", "wear it", "wore it", "lbq"),
    Thing("puppet", "play with it", "played with it", "lbq"),
    Thing("harmonica", "play it", "played it", "lpq"),
    Thing("bubble wand", "blow bubbles with it", "blew bubbles with it", "lpq"),
    Thing("stuffed rabbit", "cuddle it", "cuddled it", "lbq"),
    Thing("pocket watch", "wind it", "wound it", "lpb"),
)

# Family grown-ups for children, animals and magic folk; the others (with a description used on first
# mention) suit anyone, including robots and toys.
FAMILY = (
    ("Mom", "f"),
    ("Dad", "m"),
    ("Grandma", "f"),
    ("Grandpa", "m"),
    ("Granny", "f"),
    ("Papa", "m"),
    ("Mama", "f"),
    ("Nana", "f"),
    ("Aunt Lucy", "f"),
    ("Uncle Ted", "m"),
    ("Grandpa Joe", "m"),
)
NEIGHBOURS = (
    ("Mrs. Plum", "f", "the kind baker"),
    ("Mr. Hill", "m", "the old farmer"),
    ("Miss Lark", "f", "the teacher"),
    ("Mr. Bell", "m", "the friendly mailman"),
    ("Granny Fern", "f", "the lady next door"),
    ("Professor Pim", "m", "the clever inventor"),
    ("Doctor Sun", "f", "the village doctor"),
    ("Captain Reed", "m", "the old sailor"),
    ("Hoot", "m", "the wise old owl"),
    ("Mrs. Moss", "f", "the gardener"),
)
CRITTERS = ("mouse", "squirrel", "puppy", "kitten", "raccoon", "rabbit", "hedgehog", "goat")
HAPPY_NOISES = ("laughed", "cheered", "clapped", "giggled")


# ---------------------------------------------------------------------------------------------------
# Shared sentence templates
# ---------------------------------------------------------------------------------------------------
# Placeholders: {hero} {he} {him} {his} {self} {was} {kind} {noun} {trait} ...; the friend's and the
# grown-up's fields carry a "pal_" / "elder_" prefix. A template may be a tuple of sentences.

OPENINGS = (
    "Once upon a time, there was {a_trait_kind} named {hero}.",
    "Once upon a time, {a_trait_kind} named {hero} lived {home}.",
    "There once was {a_trait_kind} called {hero}, who lived {home}.",
    "{hero} was {a_trait_kind} who lived {home}.",
    "Long ago, {a_trait_kind} named {hero} lived {home}.",
    "Not long ago, there was {a_trait_kind} named {hero}.",
    "This is a story about {a_trait_kind} named {hero}.",
    "Once there was {a_trait_kind}, and {his} name was {hero}.",
    "{home}, there lived {a_trait_kind} named {hero}.",
    "Once upon a time, {home}, there lived {a_trait_kind} called {hero}.",
    "Have you ever heard of {a_trait_kind} named {hero}?",
    "In a place not far from here, there was {a_trait_kind} named {hero}.",
)
HOME_LINES = ("{he} lived {home}.", "{hero} lived {home}.", "{his} home was {home}.")
TRAIT_LINES = (
    "{hero} was very {trait}, and {he} {trait_desc}.",
    "{he} {was} {trait} and {trait_desc}.",
    "{hero} {trait_desc}, because {he} {was} so {trait}.",
    "Everyone knew that {hero} was {trait}.",
    "{hero} {trait_desc}.",
    "Being {trait}, {hero} {trait_desc}.",
)
HOBBY_LINES = (
    "{he} loved to {hobby}.",
    "More than anything, {hero} loved to {hobby}.",
    "Every day, {hero} {hobby_past}.",
    "{his} favorite thing to do was to {hobby}.",
    "On most days, {hero} would {hobby}.",
    "{hero} liked to {hobby} whenever {he} could.",
    "When {he} {was} not busy, {hero} liked to {hobby}.",
    "{hero} could {hobby} all day long.",
)
FOOD_LINES = (
    "{his} favorite food was {food}.",
    "{hero} loved {food} more than anything else to eat.",
    "For a snack, {hero} always asked for {food}.",
)
THING_LINES = (
    "{hero} had {a_thing} that {he} loved very much.",
    "{his} favorite thing in the world was {a_thing}.",
    "{elder} had given {him} {a_thing}, and {he} took it everywhere.",
    "{hero} had {a_thing}, and {he} kept it close.",
    "{hero} was very proud of {his} {thing}.",
    "Of all {his} things, {hero} loved {his} {thing} the most.",
    "{hero}'s most special treasure was {a_thing}.",
)
PAL_LINES = (
    "{hero}'s best friend was {a_pal_trait_kind} named {pal}.",
    "{hero} had a best friend, {a_pal_trait_kind} called {pal}.",
    "{pal}, {a_pal_trait_kind}, was {hero}'s best friend.",
    "{hero} and {pal} the {pal_noun} were best friends.",
    "Next door lived {pal}, {a_pal_trait_kind}, who was {hero}'s best friend.",
    "{hero} often played with {pal}, {a_pal_trait_kind} from down the road.",
    "{hero}'s friend {pal} was {a_pal_trait_kind} who liked to {pal_hobby}.",
)
WHEN = (
    "One {weather} {time} in {season},",
    "One {weather} {season} {time},",
    "Early one {weather} {time},",
    "On a {weather} {season} day,",
    "It was a {weather} {season} {time}, and",
    "One {weather} day,",
)
GO = (
    "{hero} and {pal} went to {place}.",
    "{hero} went to {place} with {pal}.",
    "{hero} and {pal} ran to {place} to play.",
    "{hero} and {pal} walked to {place} together.",
    "{hero} asked {pal} to come to {place}.",
)
GO_WITH_THING = ("{hero} took {his} {thing} to {place}.", "{hero} and {pal} took the {obj} to {place}.")
PICNIC = ("They brought a little picnic of {food} and {food2}.", "{pal} brought {food2} to share.")
HELP_ARRIVES = {  # a grown-up joins in; the first mention names a neighbour in full
    True: ("{elder} was sitting on a bench nearby.", "Just then, {elder} came walking by."),
    False: ("{elder} was in the next room.", "Just then, {elder} came in."),
}
WEATHER_HINT = {  # foreshadowing that pays off in the ending
    True: "Far away, dark clouds were slowly gathering over the hills.",
    False: "Through the window, {hero} saw dark clouds gathering far away.",
}
WEATHER_PAYOFF = {
    False: (
        "That evening, the dark clouds finally brought a big storm, but {hero} was warm and safe inside.",
        "Just as they got home, the dark clouds opened and rain poured down, and they laughed as they shook off "
        "the drops.",
    ),
    True: (
        "Then the dark clouds that {hero} had seen earlier burst, and cold rain soaked {him} on the way home.",
        "To make things worse, the dark clouds from the morning brought a cold rain that lasted all night.",
    ),
}

MORAL_LINES = (
    "{hero} learned that {moral}.",
    "That day, {hero} learned an important lesson: {moral}.",
    "From then on, {hero} always remembered that {moral}.",
    "The lesson of this story is that {moral}.",
    "And so {hero} understood that {moral}.",
    "{hero} knew now that {moral}.",
)
MORAL_SAYINGS = ("Remember, {moral}.", "You see, {moral}.", "Always remember that {moral}.")
MORALS = {
    "teamwork": (
        "friends can do hard things when they work together",
        "two heads are better than one",
        "it is good to ask for help when you need it",
        "working together makes hard jobs easy",
    ),
    "careful": (
        "it is important to take good care of the things you love",
        "keeping your things in a safe place saves a lot of tears",
        "being careful is better than being sorry",
    ),
    "patience": (
        "patience and care can fix almost anything",
        "giving up is easy, but trying again is better",
        "broken things can often be mended with patience and love",
    ),
    "sharing": (
        "sharing makes playing more fun",
        "it is better to share than to fight",
        "good friends take turns",
        "a toy is more fun when two friends share it",
    ),
    "bravery": (
        "being brave does not mean you are never scared",
        "things are often less scary than they seem",
        "a good friend can help you be brave",
    ),
    "kindness": (
        "a small kindness can make a big difference",
        "helping others makes your own heart happy",
        "it is always right to be kind to animals",
    ),
    "effort": (
        "trying your best matters more than winning",
        "practice helps you grow",
        "being a good friend is better than winning a prize",
    ),
    "listening": (
        "it is important to listen to the grown-ups who love you",
        "rules are there to keep us safe",
        "listening can save you from a lot of trouble",
    ),
    "giving": (
        "the best presents come from the heart",
        "a gift made with love is worth more than gold",
        "you should never give up when you want to make someone happy",
    ),
}
GOOD_ENDINGS = (
    "From that day on, {hero} and {pal} were the best of friends.",
    "That night, {hero} fell asleep with a big smile.",
    "It was the best day {hero} had ever had.",
    "And they all lived happily ever after.",
    "{hero} would never forget that {weather} {season} day.",
    "When the sun went down, {hero} and {pal} walked home together, tired and happy.",
    "{hero} {sound} with joy.",
    "Everyone went home happy that day.",
)
BAD_ENDINGS = (
    "It was a sad day for {hero}.",
    "{hero} went to bed that night feeling {sad}.",
    "{hero} walked home slowly, looking at the ground.",
    "Sometimes things do not turn out the way we hope.",
    "{hero} did not smile again for the rest of the day.",
)

# Dialogue tags by the line's last character; inverted tags ("said Mia") only take one-word verbs.
TAGS = {
    "?": ("asked", "asked softly", "wondered"),
    "!": ("cried", "shouted", "called", "said", "yelled"),
    ".": ("said", "whispered", "said softly", "said with a smile", "replied", "said kindly"),
}


# ---------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------


@dataclass
class Beats:
    """The plot-specific templates for one story. `fails` are attempts that do not work, `success` the
    one that does; `twists` and `hints` are (sentences, summary) and (hint, sentences replacing success)."""

    theme: str
    bad_theme: str
    summary: tuple[str, ...]
    bad_summary: tuple[str, ...]
    problem: tuple
    success: tuple = ()
    setup: tuple = ()
    cries: tuple[str, ...] = ()  # the hero's words when the problem strikes
    retorts: tuple[str, ...] = ()  # the friend answers back (a quarrel) instead of offering help
    feel: tuple = ()
    offers: tuple[str, ...] = ()
    offers_narr: tuple[str, ...] = ()
    fails: tuple = ()
    after: tuple = ()
    cheers: tuple[str, ...] = ()
    cheer_by: str = "hero"
    bad: tuple = ()
    twists: tuple = ()
    hints: tuple = ()
    go: tuple[str, ...] = GO
    owns_thing: bool = False
    conflict: bool = False
    bad_rate: float = P_BAD_ENDING


def _stuck(t: "Teller") -> Beats:
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


def _lost(t: "Teller") -> Beats:
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


def _broken(t: "Teller") -> Beats:
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


def _quarrel(t: "Teller") -> Beats:
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


def _fear(t: "Teller") -> Beats:
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


def _gift(t: "Teller") -> Beats:
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


def _help(t: "Teller") -> Beats:
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


def _contest(t: "Teller") -> Beats:
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


def _disobey(t: "Teller") -> Beats:
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


PLOTS: tuple[tuple[Callable[["Teller"], Beats], int], ...] = (
    (_stuck, 12),
    (_lost, 14),
    (_broken, 10),
    (_quarrel, 10),
    (_fear, 12),
    (_gift, 10),
    (_help, 12),
    (_contest, 8),
    (_disobey, 12),
)


# ---------------------------------------------------------------------------------------------------
# Telling
# ---------------------------------------------------------------------------------------------------

_SENTENCE_START = re.compile(r'(^"?|[.!?] "?|, ")([a-z])')
_WORD = re.compile(r"[A-Za-z]+")


def _capitalise(text: str) -> str:
    """Upper-case the first letter of every sentence, including one that opens a quotation."""
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def _a(phrase: str) -> str:
    """`phrase` with the right indefinite article: "an old turtle", "a unicorn", "an honest fox"."""
    word = phrase.lower()
    if word.startswith(("uni", "use", "eu", "one")):
        return "a " + phrase
    if word[0] in "aeiou" or word.startswith(("honest", "hour")):
        return "an " + phrase
    return "a " + phrase


class _Pick:
    """A template field that draws a fresh word each time it is used ("{sad}" -> "upset")."""

    __slots__ = ("rng", "options")

    def __init__(self, rng: random.Random, options: tuple[str, ...]):
        self.rng, self.options = rng, options

    def __format__(self, spec: str) -> str:
        return self.rng.choice(self.options)


class _Mention:
    """A name whose first use carries a description ("the kind baker Mrs. Plum"), later uses not."""

    __slots__ = ("first", "name", "used")

    def __init__(self, first: str, name: str):
        self.first, self.name, self.used = first, name, False

    def __format__(self, spec: str) -> str:
        if self.used:
            return self.name
        self.used = True
        return self.first


class _Spots:
    """Search spots handed out in turn, so attempts never look in the same place twice."""

    __slots__ = ("spots", "i")

    def __init__(self, spots):
        self.spots, self.i = spots, 0

    def __format__(self, spec: str) -> str:
        self.i += 1
        return self.spots[(self.i - 1) % len(self.spots)]


@dataclass
class Teller:
    """Builds one story: the cast and setting go into `ctx`, sentences into `paras`."""

    rng: random.Random
    ctx: dict = field(default_factory=dict)
    paras: list = field(default_factory=lambda: [[]])
    narration: list = field(default_factory=list)  # sentences without quotes: random_sentence comes from here
    features: set = field(default_factory=set)
    place: Place | None = None
    thing: Thing | None = None

    def pick(self, options):
        return self.rng.choice(options)

    def fill(self, template: str) -> str:
        return _capitalise(template.format_map(self.ctx))

    def say(self, options) -> None:
        """Tell one of `options` (a template, or a tuple of templates told in order)."""
        choice = self.pick(options)
        for template in choice if isinstance(choice, tuple) else (choice,):
            sentence = self.fill(template)
            self.paras[-1].append(sentence)
            self.narration.append(sentence)

    def speak(self, who: str, lines) -> None:
        """`who` ("hero", "pal", "elder", ...) says one of `lines`, with a varied dialogue tag."""
        line = self.fill(self.pick(lines))
        name = format(self.ctx[who])
        pronoun = self.ctx["he" if who == "hero" else who + "_he"]  # needed only when _pronoun_is_clear
        tag = self.pick(TAGS[line[-1]])
        form = self.rng.randrange(5)
        if form == 4 and " " not in tag:  # inverted tag: '"We did it!" cried Lily.'
            self.paras[-1].append(f'"{_comma(line)}" {tag} {name}.')
        elif form == 3:
            self.paras[-1].append(_capitalise(f'{name} {tag}, "{line}"'))
        else:
            speaker = pronoun if form == 2 and self._pronoun_is_clear(who) else name
            self.paras[-1].append(f'"{_comma(line)}" {speaker} {tag}.')

    def _pronoun_is_clear(self, who: str) -> bool:
        """Whether "she said" can only mean `who`: no other child in the story is also a "she"."""
        keys = {"hero": "he", "pal": "pal_he", "rival": "rival_he"}
        if who not in keys:
            return False
        return all(self.ctx.get(key) != self.ctx[keys[who]] for other, key in keys.items() if other != who)

    def para(self) -> None:
        if self.paras[-1]:
            self.paras.append([])

    # --- casting ---

    def character(self, role: str, groups: dict[str, int], avoid: tuple[str, ...]) -> None:
        """Choose a kind, pronoun, name and trait for `role` and put its fields into `ctx`."""
        group = self.rng.choices(list(groups), list(groups.values()))[0]
        # Two singular "they"s in one story would blur who is who.
        kind = self.pick([k for k in KINDS if k.group == group and not ("they" in avoid and k.pronouns == "n")])
        letter = self.pick(kind.pronouns)
        name = self._name(kind, letter, avoid)
        if self.rng.random() < P_ACCENTED_NAME and kind.group in ("human", "animal"):
            fits = [(n, p) for n, p in ACCENTED_NAMES if p in kind.pronouns and n not in avoid]
            if fits:
                name, letter = self.pick(fits)
        sizes = [s for s in SIZES if not (s == "old" and (kind.young or kind.group == "human"))]
        size = self.pick(sizes) + " " if self.rng.random() < 0.4 else ""
        trait = self.pick(list(TRAITS))
        prefix = "" if role == "hero" else role + "_"
        he, him, his, self_, was = PRONOUNS[letter]
        self.ctx.update(
            {
                role: name,
                prefix + "he": he,
                prefix + "him": him,
                prefix + "his": his,
                prefix + "self": self_,
                prefix + "was": was,
                prefix + "noun": kind.noun,
                prefix + "kind": size + kind.noun,
                prefix + "trait": trait,
                "a_" + prefix + "kind": _a(size + kind.noun),
                "a_" + prefix + "trait_kind": _a(f"{trait} {size}{kind.noun}"),
            }
        )
        self.ctx[prefix + "trait_desc"] = self.pick(TRAITS[trait]).format_map(self.ctx)
        self.ctx[prefix + "kind_group"] = kind.group
        if role == "hero":
            self.ctx["home"] = self.pick(HOMES[kind.group])
            self.ctx["sound"] = self.pick(kind.sounds or HAPPY_NOISES)

    def _name(self, kind: Kind, letter: str, avoid: tuple[str, ...]) -> str:
        if kind.group == "human":
            names = {"m": BOY_NAMES, "f": GIRL_NAMES, "n": NEUTRAL_NAMES}[letter]
        elif kind.group == "robot":
            names = ROBOT_NAMES
        elif kind.group == "magic":
            names = MAGIC_NAMES if self.rng.random() < 0.6 else GIRL_NAMES if letter == "f" else BOY_NAMES
        elif self.rng.random() < 0.6:
            names = PET_NAMES
        else:
            names = GIRL_NAMES if letter == "f" else BOY_NAMES if letter == "m" else NEUTRAL_NAMES
        while True:
            name = self.pick(names)
            if name not in avoid:
                return name

    def cast(self) -> None:
        self.character("hero", GROUP_WEIGHTS, ())
        avoid = (self.ctx["hero"],) + (("they",) if self.ctx["he"] == "they" else ())
        self.character("pal", {"human": 45, "animal": 45, "robot": 4, "toy": 2, "magic": 4}, avoid)
        self.ctx["hobby"], self.ctx["hobby_past"] = self.pick(HOBBIES)
        self.ctx["pal_hobby"] = self.pick(HOBBIES)[0]
        family = self.ctx["kind_group"] not in ("robot", "toy") and self.rng.random() < 0.75
        taken = (self.ctx["hero"], self.ctx["pal"])
        while True:
            name, letter, title = self.pick(FAMILY) + ("",) if family else self.pick(NEIGHBOURS)
            if not any(part in taken for part in name.split()):
                break
        he, him, his, _, was = PRONOUNS[letter]
        self.ctx.update(
            elder=_Mention(f"{title} {name}" if title else name, name),
            elder_he=he,
            elder_him=him,
            elder_his=his,
            elder_was=was,
        )
        self.set_season(self.pick(tuple(SEASON_WEATHER)))
        self.ctx["time"] = self.pick(("morning", "afternoon", "evening", "morning"))
        food, food2 = self.rng.sample(FOODS, 2)
        for key, options in FEELINGS.items():
            self.ctx[key] = _Pick(self.rng, options)
        self.ctx.update(food=food, food2=food2, junk=_Pick(self.rng, JUNK), critter=self.pick(CRITTERS))

    def set_season(self, season: str) -> None:
        self.ctx["season"] = season
        self.ctx["weather"] = self.pick(SEASON_WEATHER[season])

    def choose_place(self, fits: Callable[[Place], bool]) -> None:
        self.place = self.pick([p for p in PLACES.values() if fits(p)])
        spots = list(self.place.spots)
        self.rng.shuffle(spots)
        self.ctx.update(
            place=self.place.name,
            at_place=self.place.at,
            spot1=spots[0],
            spot3=spots[-1],
            spot=_Spots(spots[:-1]),
            high=self.pick(self.place.high) if self.place.high else "",
        )

    def choose_thing(self, tags: str) -> None:
        self.thing = self.pick([t for t in THINGS if all(letter in t.tags for letter in tags)])
        desc = self.pick(COLOURS if self.rng.random() < 0.6 else QUALITIES)
        thing = f"{desc} {self.thing.noun}" if self.rng.random() < 0.8 else self.thing.noun
        self.ctx.update(thing=thing, obj=self.thing.noun, a_thing=_a(thing), use=self.thing.use, used=self.thing.used)

    def set_recipient(self, who: str) -> None:
        prefix = who + "_"
        self.ctx.update(
            {
                "for": self.ctx[who],
                "for_he": self.ctx[prefix + "he"],
                "for_him": self.ctx[prefix + "him"],
                "for_his": self.ctx[prefix + "his"],
            }
        )

    def make_rival(self) -> None:
        avoid = (self.ctx["hero"], self.ctx["pal"], "they")
        self.character("rival", {"human": 50, "animal": 50}, avoid)

    # --- the story ---

    def tell(self, beats: Beats) -> tuple[str, str]:
        """Tell the whole story; returns (summary template, moral or "")."""
        rng = self.rng
        bad = rng.random() < beats.bad_rate
        twist = None if bad or not beats.twists or rng.random() >= P_TWIST else self.pick(beats.twists)
        dialogue = rng.random() < P_DIALOGUE
        hint = weather_hint = None
        if rng.random() < P_FORESHADOW:
            if beats.hints and not bad and not twist and rng.random() < 0.7:
                hint = self.pick(beats.hints)
            elif self.ctx["weather"] in CLEAR_WEATHER:
                weather_hint = True

        # Who the hero is.
        opening = self.pick(OPENINGS)
        self.say((opening,))
        if "{home}" not in opening and rng.random() < 0.4:
            self.say(HOME_LINES)
        about = [TRAIT_LINES, HOBBY_LINES] + ([FOOD_LINES] if rng.random() < 0.3 else [])
        rng.shuffle(about)
        for lines in about:
            self.say(lines)
        if beats.owns_thing:
            self.say(THING_LINES)
        self.say(PAL_LINES)

        # Where and when, and the set-up.
        if rng.random() < 0.6:
            self.para()
        go = beats.go
        if beats.owns_thing and go is GO:
            go = go + GO_WITH_THING
        go = self.pick(go)
        picnic = self.place.outdoor and go in GO and rng.random() < 0.2
        if go in GO + GO_WITH_THING and rng.random() < 0.8:
            go = self.pick(WHEN) + " " + go
        self.say((go,))
        if rng.random() < 0.7:
            line = self.pick(WEATHER_LINES[self.ctx["weather"]] + SEASON_LINES[self.ctx["season"]])
            self.say((line if self.place.outdoor else "Outside, " + line[0].lower() + line[1:],))
        if self.place.sights and rng.random() < 0.6:
            self.say(self.place.sights)
        if picnic:
            self.say(PICNIC)
        for part in self.pick(beats.setup) if isinstance(beats.setup[0], tuple) else (self.pick(beats.setup),):
            if isinstance(part, tuple) and part[0] == "warn":  # a warning: spoken or reported
                if dialogue:
                    self.speak("elder", (part[1],))
                else:
                    self.say((part[2],))
            else:
                self.say((part,))
        if hint:
            self.say((hint[0],))
            self.features.add("Foreshadowing")
        if weather_hint:
            self.say((WEATHER_HINT[self.place.outdoor],))
            self.features.add("Foreshadowing")

        # The problem and the attempts.
        self.para()
        self.say(beats.problem)
        if beats.cries and dialogue:
            self.speak("hero", beats.cries)
        if beats.retorts and dialogue:
            self.speak("pal", beats.retorts)
        if beats.feel and (not dialogue or rng.random() < 0.5):
            self.say(beats.feel)
        if beats.offers:
            if dialogue and not beats.retorts:
                self.speak("pal", beats.offers)
            elif beats.offers_narr and rng.random() < 0.7:
                self.say(beats.offers_narr)
        resolution = hint[1] if hint else self.pick(beats.success) if beats.success else None
        # A grown-up who helps in the resolution is seen arriving first, unless the resolution says so itself.
        first = resolution[0] if resolution and not bad and not twist else ""
        if "{elder}" in first and "came" not in first and not self.ctx["elder"].used:
            self.say(HELP_ARRIVES[self.place.outdoor])
        if beats.fails:
            for template in rng.sample(beats.fails, min(len(beats.fails), rng.choice((1, 1, 2)))):
                self.say((template,))

        # How it ends.
        if rng.random() < 0.5:
            self.para()
        if bad:
            self.say(beats.bad)
            self.features.add("BadEnding")
        elif twist:
            self.say((twist[0],))
            self.features.add("Twist")
        else:
            self.say((resolution,))
            if beats.after:
                self.say(beats.after)
            if beats.cheers and dialogue:
                self.speak(beats.cheer_by, beats.cheers)
        if beats.conflict:
            self.features.add("Conflict")
        if dialogue and '"' not in "".join(s for p in self.paras for s in p):
            # Every story that chose dialogue gets at least one line of it.
            lines = ("I wish this had never happened.",) if bad else ("That was quite a day!", "What an adventure!")
            self.speak("hero", lines)

        moral = ""
        if rng.random() < P_MORAL:
            moral = self.pick(MORALS[beats.bad_theme if bad else beats.theme])
            self.ctx["moral"] = moral
            if dialogue and self.ctx["elder"].used and rng.random() < 0.5:
                self.speak("elder", MORAL_SAYINGS)
            else:
                self.say(MORAL_LINES)
            self.features.add("MoralValue")
        if weather_hint:
            self.say(WEATHER_PAYOFF[bad])
        self.say(BAD_ENDINGS if bad else GOOD_ENDINGS)
        summaries = beats.bad_summary if bad else beats.summary
        return (twist[1] if twist else self.pick(summaries)), moral


def _comma(line: str) -> str:
    """A quoted statement before its tag ends in a comma: '"We can share," said Mia.'"""
    return line[:-1] + "," if line.endswith(".") else line


# ---------------------------------------------------------------------------------------------------
# Metadata: the three words and the summary
# ---------------------------------------------------------------------------------------------------


def _heads(phrases) -> set[str]:
    return {p.split()[-1] for p in phrases}


NOUNS = (
    _heads(t.noun for t in THINGS)
    | _heads(k.noun for k in KINDS)
    | _heads(p.name for p in PLACES.values())
    | _heads(FOODS)
    | {c.noun for c in CREATURES}
    | {g.noun for g in GIFTS}
    | set(CRITTERS)
    | {m for g in GIFTS for m in g.materials if " " not in m}
    | {"pond", "tree", "ladder", "stick", "nest"}
)
# base form -> past form, for the verbs our templates use most; hobbies add their own.
VERB_PAST = {h[0].split()[0]: h[1].split()[0] for h in HOBBIES} | {
    "look": "looked",
    "find": "found",
    "help": "helped",
    "run": "ran",
    "jump": "jumped",
    "smile": "smiled",
    "climb": "climbed",
    "play": "played",
    "share": "shared",
    "hug": "hugged",
    "search": "searched",
    "fix": "fixed",
    "cry": "cried",
    "laugh": "laughed",
    "try": "tried",
    "pull": "pulled",
    "throw": "threw",
    "fall": "fell",
    "break": "broke",
    "give": "gave",
    "walk": "walked",
    "hold": "held",
    "reach": "reached",
    "build": "built",
    "make": "made",
    "bake": "baked",
    "win": "won",
    "sing": "sang",
    "stop": "stopped",
    "listen": "listened",
    "remember": "remembered",
    "carry": "carried",
    "wait": "waited",
    "go": "went",
    "come": "came",
    "see": "saw",
    "hide": "hid",
    "fly": "flew",
    "swim": "swam",
    "ride": "rode",
    "paint": "painted",
    "know": "knew",
    "say": "said",
    "think": "thought",
    "feel": "felt",
    "want": "wanted",
    "love": "loved",
    "shout": "shouted",
}
VERBS = set(VERB_PAST)
PAST_VERBS = set(VERB_PAST.values())
ADJECTIVES = (
    set(TRAITS)
    | {c for c in COLOURS if " " not in c}
    | set(QUALITIES)
    | set(SIZES)
    | {w for options in FEELINGS.values() for w in options if " " not in w}
    | {w for ws in SEASON_WEATHER.values() for w in ws}
    | {"safe", "tall", "wet", "sticky", "scary"}
)


def _words(rng: random.Random, text: str, ctx: dict) -> tuple[str, str, str]:
    """A noun, a verb and an adjective, each appearing verbatim in `text`. The story's own object, kind,
    hobby and trait come first, as in TinyStoriesInstruct; verbs prefer the base form."""
    tokens = set(_WORD.findall(text))

    def choose(preferred, *pools):
        own = [w for w in preferred if w in tokens]
        if own and rng.random() < 0.6:
            return rng.choice(own)
        for pool in pools:
            present = sorted(tokens & pool)  # sorted: set order changes between processes
            if present:
                return rng.choice(present)
        return rng.choice(own)

    heads = [ctx[k].split()[-1] for k in ("obj", "noun", "creature", "gift_noun") if ctx.get(k)]
    noun = choose(heads, NOUNS)
    verb = choose([ctx["hobby"].split()[0]], VERBS, PAST_VERBS)
    adjective = choose([ctx["trait"], ctx["pal_trait"]], ADJECTIVES)
    return noun, verb, adjective


SUMMARY_WHO = ("{hero}", "{hero} the {noun}", "{a_kind} named {hero}", "{a_trait_kind} called {hero}")


def make_story(rng: random.Random) -> Story:
    """One story, drawn from `rng`."""
    teller = Teller(rng)
    teller.cast()
    plot = rng.choices([p for p, _ in PLOTS], [w for _, w in PLOTS])[0]
    beats = plot(teller)
    summary, moral = teller.tell(beats)
    text = "\n\n".join(" ".join(p) for p in teller.paras if p)

    teller.ctx["who"] = teller.fill(rng.choice(SUMMARY_WHO))
    summary = teller.fill(summary)
    if moral and rng.random() < 0.5:
        summary += " " + teller.fill("{hero} learned that {moral}.")
    features = set(teller.features)
    if '"' in text:
        features.add("Dialogue")
    return Story(
        text=text,
        features=tuple(f for f in FEATURES if f in features),
        words=_words(rng, text, teller.ctx),
        summary=summary,
        random_sentence=rng.choice(teller.narration),
    )


def generate_stories(seed: int, n_bytes: int) -> Iterator[Story]:
    """Yield stories from random.Random(seed) until their texts total at least n_bytes UTF-8 bytes."""
    rng = random.Random(seed)
    total = 0
    while total < n_bytes:
        story = make_story(rng)
        total += len(story.text.encode("utf-8"))
        yield story


def instruct_record(story: Story) -> str:
    """The story in TinyStoriesInstruct's record layout (text.instruct_text)."""
    return instruct_text(story.features, story.words, story.summary, story.random_sentence, story.text)


def documents(seed: int, n_bytes: int, instruct: bool = False) -> Iterator[str]:
    """Plain story texts, or instruct records, until at least n_bytes UTF-8 bytes of documents."""
    rng = random.Random(seed)
    total = 0
    while total < n_bytes:
        story = make_story(rng)
        doc = instruct_record(story) if instruct else story.text
        total += len(doc.encode("utf-8"))
        yield doc
