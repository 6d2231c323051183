"""Seasons, weather, and the lines that describe them."""

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
