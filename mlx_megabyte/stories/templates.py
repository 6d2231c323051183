"""Sentence templates every plot shares: openings, going somewhere, morals, endings, dialogue tags.

Placeholders: {hero} {he} {him} {his} {self} {was} {kind} {noun} {trait} ...; the friend's and the
grown-up's fields carry a "pal_" / "elder_" prefix. A template may be a tuple of sentences."""

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
