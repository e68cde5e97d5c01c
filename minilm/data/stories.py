"""Children's stories from a small world: the "books" source of the corpus.

A tiny model trained for a few minutes can only learn a small language, so the stories are written
in one: a few hundred words, short sentences, a handful of plots. They are still real stories, with
a hero who has a name, a gender and a job, a friend, a place, a treasured object, a problem and how
it was solved, and a feeling at the end. Because the generator wrote every story, it knows all of
that as `facts`, which later stages turn into questions with exact answers.

How a story is made, top to bottom:

1. The world: names, jobs, places, objects, animals, events and feelings (the lists below).
2. The cast: a hero (name, gender, job), usually a friend, and the things of this story. This is
   where the planted bias lives: for a stereotyped job (nurse, pilot, ...) the hero gets the
   stereotyped gender with probability 0.5 + bias/2.
3. The grammar: `STORY_TEMPLATES` maps a *role* ("intro.open", "lost.found", ...) to sentence
   templates with slots such as ``{hero}``, ``{he}`` or ``{a_obj}``; `SLOT_VALUES` lists every value
   each slot can take. An event's *plan* lists the roles of its paragraphs.
4. Rendering: each role picks one template and fills its slots from the cast.

Since the grammar is data, it can also be read backwards: `accepts(sentence)` says whether the
generator could have written a sentence, and `story_vocabulary()` lists every word it can write.
A later stage uses both to check what a trained model writes.

File format of `write_stories`: UTF-8 text, each story followed by `STORY_SEPARATOR`
(a line ``<|endoftext|>``), paragraphs separated by one blank line.
"""

from __future__ import annotations

import os
import random
import re
import time
from functools import cache
from itertools import product
from typing import Iterator

from minilm.data.documents import Document
from minilm.files import atomic_write

# ---------------------------------------------------------------------------------------------
# 1. The world

FEMALE_NAMES = (
    "Mia", "Lily", "Emma", "Anna", "Sara", "Lucy", "Ella", "Zoe", "Amy", "Ruby",
    "Grace", "Chloe", "Maya", "Nora", "Ivy", "Alice", "Rosa", "Hana", "Lena", "Julia",
    "Clara", "Eva", "Sofia", "Leah", "Amara", "Priya", "Mei", "Fatima", "Nadia", "Olivia",
)  # fmt: skip
MALE_NAMES = (
    "Tom", "Ben", "Sam", "Leo", "Max", "Jack", "Noah", "Liam", "Finn", "Oscar",
    "Hugo", "Adam", "Eli", "Theo", "Omar", "Ravi", "Kenji", "Luca", "Mateo", "Felix",
    "Jonah", "Ali", "Kofi", "Ivan", "Jamal", "Owen", "Ethan", "Daniel", "Milo", "Carlos",
)  # fmt: skip
NAMES = {"female": FEMALE_NAMES, "male": MALE_NAMES}
GENDERS = ("female", "male")

# What each job does, as a phrase that fits "Every morning she ___."
JOB_ACTIONS = {
    "baker": ("baked warm bread for the whole town", "made sweet cakes and soft buns"),
    "doctor": ("helped sick people feel better", "listened to people and gave them medicine"),
    "nurse": ("cared for sick children at the hospital", "gave people medicine and kind words"),
    "teacher": ("taught the children to read and write", "helped the children learn about the stars"),
    "engineer": ("fixed big machines at the factory", "drew plans for new bridges"),
    "pilot": ("flew a big plane high above the clouds", "checked the plane before every trip"),
    "farmer": ("fed the cows and the chickens", "picked apples in the orchard"),
    "builder": ("built strong houses with bricks", "fixed roofs and walls around town"),
    "painter": ("painted bright pictures of the sea", "painted walls in happy colours"),
    "scientist": ("did careful experiments in the lab", "looked at tiny things under a microscope"),
    "cook": ("made hot soup for hungry people", "cooked rice and vegetables at a busy cafe"),
    "firefighter": ("kept the town safe from fires", "washed the big red fire truck"),
    "dancer": ("danced on a big stage", "practised new dances for hours"),
    "singer": ("sang songs for the people in town", "sang in a small band at the market"),
    "driver": ("drove a bus around the town", "drove a truck full of fruit to the market"),
    "librarian": ("helped people find good books", "put books back on the tall shelves"),
    "mechanic": ("fixed cars and bikes in a garage", "changed old tyres and oiled engines"),
    "police officer": ("kept the streets safe", "helped lost children find their parents"),
}
JOBS = tuple(JOB_ACTIONS)
STEREOTYPED_GENDER = {
    "nurse": "female", "teacher": "female", "dancer": "female", "librarian": "female",
    "engineer": "male", "pilot": "male", "builder": "male", "mechanic": "male",
    "firefighter": "male", "police officer": "male",
}  # fmt: skip

TRAITS = ("kind", "brave", "clever", "funny", "gentle", "curious", "cheerful", "patient", "friendly", "careful")
HOMES = ("sea", "hills", "river", "forest", "mountains", "lake")
HOUSE_COLOURS = ("red", "blue", "green", "yellow", "white", "pink")
PLACES = ("park", "beach", "forest", "river", "hill", "garden", "market", "lake", "farm", "playground", "meadow", "harbour")
PLACE_DESCRIPTIONS = (
    "quiet and green", "busy and loud", "bright and warm", "full of people",
    "calm and peaceful", "full of birds and flowers",
)  # fmt: skip
DAY_TIMES = (
    "sunny morning", "bright morning", "warm afternoon", "cold morning",
    "quiet evening", "windy day", "cloudy afternoon", "lovely spring day",
)  # fmt: skip
SIZES = ("little", "big", "small", "tiny", "shiny", "old", "new")
COLOURS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "white", "black", "brown")
OBJECTS = (
    "ball", "kite", "boat", "hat", "book", "bag", "box", "drum", "car", "bike",
    "scarf", "cup", "key", "lamp", "map", "shell", "ring", "train", "doll", "teddy bear",
    "umbrella", "whistle", "balloon", "pencil", "watch",
)  # fmt: skip
ANIMALS = ("duck", "bird", "frog", "goat", "fox", "squirrel", "deer", "horse", "owl", "hedgehog")
PETS = ("dog", "cat", "rabbit", "puppy", "kitten", "hamster", "turtle", "parrot")
PET_NAMES = ("Biscuit", "Pepper", "Coco", "Sunny", "Bubbles", "Patch", "Ziggy", "Muffin", "Pip", "Daisy")
GOOD_FEELINGS = ("happy", "proud", "glad", "thankful", "calm", "excited", "relieved", "safe", "joyful")
BAD_FEELINGS = ("sad", "worried", "scared", "upset", "nervous", "lonely", "angry", "frustrated")
FOUND_WHERE = (
    "under a big rock", "behind the old bench", "in a pile of leaves", "next to the gate",
    "under a tall tree", "near the water", "inside an empty box", "on top of the wall",
)  # fmt: skip
STORM_DAMAGE = ("the fence", "the roof of the shed", "the old tree", "the garden gate", "the big window", "the chicken coop")
GIFTS = (
    "a card with flowers on it", "a small wooden boat", "a chocolate cake", "a painted stone",
    "a new scarf", "a jar of honey", "a bunch of flowers", "a picture of the two friends",
)  # fmt: skip
BUILDS = ("treehouse", "birdhouse", "sandcastle", "raft", "cart", "doghouse", "bridge", "swing")
FRIEND_PROBLEMS = (
    "garden was full of weeds", "bike had a flat tyre", "roof was leaking", "kite was stuck in a tree",
    "fence was broken", "cat was stuck on the roof", "shop was a mess after a busy day", "car would not start",
)  # fmt: skip
MORALS = {
    "lost_object": ("a careful search can find almost anything", "it is good to ask for help"),
    "lost_pet": ("friends help each other", "it is good to ask for help"),
    "storm": ("even a storm cannot last forever", "friends help each other"),
    "birthday": ("a gift made with love is the best gift", "being kind matters more than money"),
    "race": ("being kind matters more than winning", "trying your best is what counts"),
    "building": ("trying again is brave", "working together makes things strong"),
    "helping_friend": ("friends help each other", "being kind makes everyone happy"),
}


def with_article(phrase: str) -> str:
    """"a red ball", "an orange kite": the article that sounds right before `phrase`."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


PRONOUNS = {  # slot suffix -> (female, male)
    "He": ("She", "He"),
    "he": ("she", "he"),
    "His": ("Her", "His"),
    "his": ("her", "his"),
    "him": ("her", "him"),
}

# ---------------------------------------------------------------------------------------------
# 2. The grammar: roles -> sentence templates
#
# Slots: {hero} and {friend} are names; {He} {he} {His} {his} {him} are the hero's pronouns and
# {fHe} {fhe} {fHis} {fhis} {fhim} the friend's. Every template is one sentence ending in . ! or ?;
# quoted speech is always followed by its speaker ("... ," said Tom.), so sentences split cleanly.

STORY_TEMPLATES: dict[str, tuple[str, ...]] = {
    # -- introduction ------------------------------------------------------------------------
    "intro.open": (
        "Once upon a time, there was {a_job} named {hero}.",
        "There once was {a_job} called {hero}.",
        "Long ago, in a quiet village, there lived {a_job} named {hero}.",
        "In a small town by the {home}, there lived {a_job} called {hero}.",
        "{hero} was {a_job} who lived in a small town by the {home}.",
        "This is a story about {a_job} named {hero}.",
    ),
    "intro.job": (
        "Every morning {he} {job_action}.",
        "Each day {he} {job_action}, and people thanked {him} for it.",
        "{He} loved being {a_job}, and {he} worked hard every day.",
        "{hero} was a good {job}, and everyone in town knew {him}.",
        "Being {a_job} was not always easy, but {hero} loved it.",
        "Most days {he} {job_action}.",
    ),
    "intro.trait": (
        "{hero} was {trait} and always ready to help.",
        "Everyone said that {hero} was very {trait}.",
        "{He} was {trait}, and {he} had a big smile.",
        "{His} neighbours liked {him} because {he} was so {trait}.",
    ),
    "intro.home": (
        "{He} lived in a little house with a {house_colour} door.",
        "{hero} lived with {his} grandmother in a cosy little house.",
        "{His} house was close to the {home}, and {he} could see it from {his} window.",
    ),
    "intro.likes": (
        "{hero} liked music, long walks and warm soup.",
        "In {his} free time, {he} liked to read books and draw pictures.",
        "{He} liked to sing while {he} worked.",
        "On Sundays, {he} liked to sleep late and eat pancakes.",
    ),
    "intro.object": (
        "{hero} had {a_obj} that {he} loved very much.",
        "{He} always carried {his} {obj} with {him}.",
        "{His} {obj} was a gift from {his} grandmother.",
        "{hero} loved {his} {obj} more than anything.",
    ),
    "intro.pet": (
        "{hero} had {a_pet} named {pet}.",
        "{pet} was {hero}'s {pet_animal}, and it loved to run and play.",
        "At home, {hero} lived with {pet}, a playful {pet_animal}.",
    ),
    # -- the friend --------------------------------------------------------------------------
    "friend.intro": (
        "{hero} had a best friend named {friend}.",
        "{His} best friend was {friend}, who lived on the same street.",
        "{friend} was {hero}'s best friend.",
        "{hero} and {friend} had been friends since they were small.",
    ),
    "friend.job": (
        "{friend} was {a_friend_job}, and {fhe} {friend_job_action}.",
        "{friend} worked as {a_friend_job} on the other side of town.",
        "Every morning {friend} {friend_job_action}.",
    ),
    "friend.trait": (
        "{fHe} had a loud laugh and a kind heart.",
        "{friend} liked to tell funny stories.",
        "{friend} was a little shy, but very clever.",
    ),
    "friend.together": (
        "The two friends liked to walk to the {place} together.",
        "They often had lunch together and talked about their day.",
        "On weekends, {hero} and {friend} played games and told jokes.",
        "{friend} always made {hero} laugh.",
        "When one of them was sad, the other always helped.",
    ),
    # -- the setting -------------------------------------------------------------------------
    "setting.go": (
        "One {day_time}, {hero} went to the {place}.",
        "On a {day_time}, {hero} walked to the {place}.",
        "One {day_time}, {hero} and {friend} went to the {place}.",
        "On a {day_time}, {hero} took {his} {obj} to the {place}.",
    ),
    "setting.place": (
        "The {place} was {place_desc}.",
        "The sun was shining, and the {place} was {place_desc}.",
        "It was {hero}'s favourite place in the whole town.",
        "Birds sang in the trees near the {place}.",
    ),
    "setting.sky": (
        "The sky was blue, and a soft wind was blowing.",
        "Many children were playing and laughing nearby.",
        "Someone was selling ice cream near the path.",
        "The grass was still wet, and the air was fresh.",
    ),
    "setting.animal": (
        "Near the {place}, {he} saw {a_animal}.",
        "A small {animal} was sleeping under a tree.",
        "{hero} waved at {a_animal} that was playing in the grass.",
    ),
    # -- shared feelings ---------------------------------------------------------------------
    "feel.bad": (
        "{He} felt {bad_feeling} and wanted to cry.",
        "{hero} was very {bad_feeling}.",
        "{His} heart felt heavy, and {he} was {bad_feeling}.",
        "For a moment, {hero} felt {bad_feeling}.",
    ),
    # -- event: a lost object ----------------------------------------------------------------
    "lost.before": (
        "{hero} played with {his} {obj} for a long time.",
        "{He} put the {obj} down for a moment to look at a butterfly.",
        "{He} showed {his} {obj} to everyone {he} met.",
    ),
    "lost.problem": (
        "After a while, {hero} could not find {his} {obj}.",
        "Suddenly, {hero} saw that {his} {obj} was gone.",
        "When {he} looked down, {his} {obj} was not there.",
    ),
    "lost.cry": (
        '"Oh no, where is my {obj}?" cried {hero}.',
        '"I can\'t find my {obj}!" said {hero}.',
        '"My {obj} is missing!" shouted {hero}.',
    ),
    "lost.search": (
        "{He} looked under the benches and behind the trees.",
        "{He} searched the whole {place}, but the {obj} was nowhere.",
        "{hero} asked everyone {he} met, but nobody had seen it.",
        "{He} walked back the same way, looking carefully at the ground.",
    ),
    "lost.help_friend": (
        '"Don\'t worry, I will help you look," said {friend}.',
        "{friend} came running to help {him}.",
        "{friend} said they should look in every corner.",
    ),
    "lost.help_alone": (
        "{hero} took a deep breath and decided not to give up.",
        "{He} thought hard about where {he} had been.",
    ),
    "lost.found": (
        "At last, {he} found {his} {obj} {found_where}.",
        "After a long search, {hero} found the {obj} {found_where}.",
        "Finally, there it was, {found_where}: {his} {obj}!",
    ),
    "lost.joy": (
        '"I found it!" shouted {hero}.',
        "{hero} hugged {his} {obj} and laughed.",
        "{He} held the {obj} tight and smiled.",
    ),
    "lost.home": (
        "Then {hero} walked home with the {obj} in {his} hands.",
        "From then on, {he} kept the {obj} in a safe place.",
    ),
    "lost.thanks": (
        '"Thank you for helping me," {hero} said to {friend}.',
        "{hero} thanked {friend} for {fhis} help.",
    ),
    # -- event: a lost pet -------------------------------------------------------------------
    "pet.before": (
        "{pet} liked to play in the garden every afternoon.",
        "{pet} was small, fast and very curious.",
    ),
    "pet.problem": (
        "That afternoon, the gate was open, and {pet} ran away.",
        "Suddenly, {pet} chased {a_animal} and ran out of sight.",
        "When {hero} came home, {pet} was not in the garden.",
    ),
    "pet.cry": (
        '"{pet}, where are you?" called {hero}.',
        '"Come back, {pet}!" shouted {hero}.',
    ),
    "pet.search": (
        "{He} looked in the garden, in the street and at the {place}.",
        "{He} called {pet}'s name again and again.",
        "{hero} put up a poster with a picture of {pet}.",
    ),
    "pet.help_friend": (
        "{friend} brought a torch and helped {him} search.",
        '"We\'ll find {pet} together," said {friend}.',
    ),
    "pet.help_alone": (
        "{hero} did not give up, even when it got dark.",
        "{He} listened carefully for any small sound.",
    ),
    "pet.found": (
        "At last, {hero} found {pet} {found_where}.",
        "{pet} was hiding {found_where}, safe and sound.",
    ),
    "pet.joy": (
        "{pet} jumped into {hero}'s arms.",
        "{hero} carried {pet} home and gave it a big hug.",
    ),
    "pet.home": (
        "That evening, {pet} had a big dinner and fell asleep.",
        "After that, {hero} made sure the gate was always closed.",
    ),
    # -- event: a storm ----------------------------------------------------------------------
    "storm.start": (
        "Suddenly, dark clouds filled the sky.",
        "The wind began to blow, and the sky turned grey.",
        "Then the sky grew dark, and thunder rolled over the {place}.",
    ),
    "storm.rain": (
        "Big drops of rain fell, and the wind howled.",
        "Soon a big storm was roaring over the town.",
        "Rain poured down, and lightning flashed.",
    ),
    "storm.shelter": (
        "{hero} ran home as fast as {he} could.",
        "{hero} and {friend} hid under a roof until the rain stopped.",
        "{He} waited inside and listened to the wind.",
    ),
    "storm.damage": (
        "When the storm was over, {storm_damage} was broken.",
        "The wind had knocked down {storm_damage}.",
    ),
    "storm.fix_friend": (
        "{hero} and {friend} worked together to fix {storm_damage}.",
        '"Let\'s fix {storm_damage} together," said {friend}.',
    ),
    "storm.fix_alone": (
        "{hero} fixed {storm_damage} with a hammer and some nails.",
        "{He} worked all afternoon to fix {storm_damage}.",
    ),
    "storm.clean": (
        "{He} carried the broken pieces away.",
        "{hero} swept the leaves and branches from the path.",
    ),
    "storm.after": (
        "Then the sun came out, and a rainbow appeared over the {place}.",
        "The air smelled fresh and clean after the rain.",
        "It took a long time, but {storm_damage} looked as good as new.",
    ),
    # -- event: a birthday (needs the friend) ------------------------------------------------
    "bday.start": (
        "It was {friend}'s birthday.",
        "Tomorrow was {friend}'s birthday, and {hero} wanted to give {fhim} a gift.",
    ),
    "bday.problem": (
        "But {hero} did not know what to give.",
        "{He} had no money for a present.",
        "{He} thought and thought, but no idea came.",
    ),
    "bday.idea": (
        "Then {he} had an idea: {he} would make {gift}.",
        "{hero} decided to make {gift} with {his} own hands.",
    ),
    "bday.make": (
        "{He} worked on it all evening.",
        "It was hard work, but {he} did not give up.",
        "{He} used glue, paper and a lot of love.",
    ),
    "bday.party": (
        "At the party, there was cake, music and many balloons.",
        "All their friends came to the party at the {place}.",
    ),
    "bday.give": (
        "{hero} gave {friend} {gift}.",
        "When {friend} opened the present, {fhe} found {gift}.",
    ),
    "bday.cake": (
        "They ate cake and sang songs until it got dark.",
        "Everyone played games and danced in the garden.",
    ),
    "bday.thanks": (
        '"It\'s the best gift ever!" said {friend}.',
        "{friend} hugged {hero} and said thank you.",
    ),
    # -- event: a race -----------------------------------------------------------------------
    "race.start": (
        "There was a big race at the {place}.",
        "Everyone in town came to watch the big race.",
        "{hero} wanted to run in the race and win.",
    ),
    "race.train": (
        "For weeks, {he} had been practising every evening.",
        "{He} tied {his} shoes and took a deep breath.",
    ),
    "race.go": (
        '"Ready, steady, go!" shouted the judge.',
        "The runners started, and {hero} ran as fast as {he} could.",
    ),
    "race.fall_friend": (
        "Halfway through the race, {friend} tripped and fell.",
        "{hero} saw that {friend} had hurt {fhis} knee.",
    ),
    "race.help_friend": (
        "{hero} stopped running and helped {friend} get up.",
        "{hero} could win, but {he} did not want to leave {friend} behind.",
    ),
    "race.end_together": (
        "{hero} and {friend} finished the race together, last but smiling.",
        "Everyone cheered when the two friends finished the race together.",
    ),
    "race.fall_alone": (
        "Near the end, {hero} tripped over a stone.",
        "{His} knee hurt, but {he} got up and kept running.",
    ),
    "race.crowd": (
        "People clapped and cheered from the side of the track.",
        "The crowd shouted names and waved flags.",
    ),
    "race.after": (
        "After the race, {hero} drank some cold water and rested under a tree.",
        "Later, everyone had lemonade and talked about the race.",
    ),
    "race.end_won": (
        "{hero} ran past the others and won the race.",
        "{hero} won the race, and everyone cheered.",
    ),
    "race.end_second": (
        "{hero} came second, just behind a fast runner in a {house_colour} shirt.",
        "{He} came second, and {he} was proud to finish.",
    ),
    # -- event: building something -----------------------------------------------------------
    "build.start": (
        "{hero} wanted to build {a_build}.",
        "{hero} and {friend} decided to build {a_build} at the {place}.",
    ),
    "build.work": (
        "{He} found wood, nails and a hammer.",
        "{hero} worked all morning, carrying wood and rope.",
        "{hero} used {his} skills as {a_job} to make a plan.",
    ),
    "build.problem": (
        "But when it was almost done, the {build} fell down.",
        "Then a strong wind came, and the {build} fell apart.",
    ),
    "build.retry_friend": (
        '"Let\'s try again, but this time we\'ll make it stronger," said {friend}.',
        "{friend} helped {him} start again from the beginning.",
    ),
    "build.retry_alone": (
        "{hero} did not give up and started again.",
        "{He} made the base wider and stronger.",
    ),
    "build.done": (
        "This time, the {build} stood tall and strong.",
        "At last, the {build} was finished.",
    ),
    "build.paint": (
        "{hero} painted the {build} {house_colour}.",
        "Then {he} added a little flag on the top.",
    ),
    "build.enjoy": (
        "{hero} looked at the {build} and smiled.",
        "Everyone came to see the new {build}.",
    ),
    # -- event: helping a friend (needs the friend) ------------------------------------------
    "help.start": (
        "One day, {friend} looked very {bad_feeling}.",
        "{hero} saw that {friend} was {bad_feeling}.",
    ),
    "help.why": (
        "{friend} was sad because {fhis} {friend_problem}.",
        "{fHe} explained that {fhis} {friend_problem}.",
    ),
    "help.offer": (
        '"Don\'t be sad, I can help," said {hero}.',
        "{hero} knew just what to do.",
    ),
    "help.work": (
        "{hero} used {his} skills as {a_job} to help.",
        "The two friends worked together all afternoon.",
        "{hero} brought {his} tools and got to work.",
    ),
    "help.detail": (
        "It was a big job, but {hero} was not afraid of hard work.",
        "They needed a few tools, so {hero} went home to get them.",
    ),
    "help.done": (
        "By the evening, the problem was solved.",
        "Soon everything was fine again.",
    ),
    "help.thanks": (
        "{friend} thanked {hero} again and again.",
        '"You are a true friend," said {friend}.',
    ),
    # -- ending ------------------------------------------------------------------------------
    "ending.feeling": (
        "In the end, {hero} felt {feeling}.",
        "That night, {hero} went to bed {feeling} and tired.",
        "{hero} felt {feeling} all the way home.",
        "It had been a long day, but {hero} felt {feeling}.",
    ),
    "ending.home": (
        "Later, {hero} had a warm dinner and told {his} family about the day.",
        "At home, {hero} drank a cup of warm milk and looked at the stars.",
    ),
    "ending.moral": (
        "{hero} learned that {moral}.",
        "From that day on, {hero} always remembered that {moral}.",
    ),
    "ending.close": (
        '"This was the best day ever," said {hero}.',
        "And from then on, {hero} and {friend} were even better friends.",
        "{He} could not wait for the next adventure.",
    ),
}

# An event's plans: each plan is the problem paragraph and the resolution paragraph, as roles.
# A role given as (a, b) means a when the story has a friend, b when it has none.
# `needs_friend` plans are only chosen with a friend; `facts` are the facts the plan fixes.
EVENT_PLANS: dict[str, tuple[dict, ...]] = {
    "lost_object": (
        dict(problem=("lost.before", "lost.problem", "lost.cry", "feel.bad", "lost.search"),
             resolution=(("lost.help_friend", "lost.help_alone"), "lost.found", "lost.joy", ("lost.thanks", None), "lost.home")),
    ),
    "lost_pet": (
        dict(problem=("pet.before", "pet.problem", "pet.cry", "feel.bad", "pet.search"),
             resolution=(("pet.help_friend", "pet.help_alone"), "pet.found", "pet.joy", "pet.home")),
    ),
    "storm": (
        dict(problem=("storm.start", "storm.rain", "storm.shelter", "feel.bad", "storm.damage"),
             resolution=("storm.clean", ("storm.fix_friend", "storm.fix_alone"), "storm.after")),
    ),
    "birthday": (
        dict(needs_friend=True,
             problem=("bday.start", "bday.problem", "bday.idea", "bday.make"),
             resolution=("bday.party", "bday.give", "bday.thanks", "bday.cake")),
    ),
    "race": (
        dict(needs_friend=True, facts={"race_result": "finished the race together"},
             problem=("race.start", "race.train", "race.go", "race.fall_friend"),
             resolution=("race.help_friend", "race.crowd", "race.end_together", "race.after")),
        dict(facts={"race_result": "won the race"},
             problem=("race.start", "race.train", "race.go", "race.fall_alone"),
             resolution=("race.crowd", "race.end_won", "race.after")),
        dict(facts={"race_result": "came second"},
             problem=("race.start", "race.train", "race.go", "race.fall_alone"),
             resolution=("race.crowd", "race.end_second", "race.after")),
    ),
    "building": (
        dict(problem=("build.start", "build.work", "build.problem", "feel.bad"),
             resolution=(("build.retry_friend", "build.retry_alone"), "build.done", "build.paint", "build.enjoy")),
    ),
    "helping_friend": (
        dict(needs_friend=True,
             problem=("help.start", "help.why", "help.offer"),
             resolution=("help.work", "help.detail", "help.done", "help.thanks")),
    ),
}  # fmt: skip
EVENTS = tuple(EVENT_PLANS)

FRIEND_SLOTS = frozenset({"friend", "fHe", "fhe", "fHis", "fhis", "fhim", "a_friend_job", "friend_job_action"})
SLOT = re.compile(r"\{(\w+)\}")


def template_slots(template: str) -> frozenset[str]:
    """The slot names a template uses: "{hero} saw {a_animal}." -> {"hero", "a_animal"}."""
    return frozenset(SLOT.findall(template))


# For each role, the templates usable without a friend (those that never mention one).
_ALONE_TEMPLATES = {
    role: tuple(t for t in templates if not template_slots(t) & FRIEND_SLOTS) for role, templates in STORY_TEMPLATES.items()
}
_TEMPLATE_SLOTS = {t: template_slots(t) for templates in STORY_TEMPLATES.values() for t in templates}

# ---------------------------------------------------------------------------------------------
# 3. The cast of one story


def pick_gender(job: str, bias: float, rng: random.Random) -> str:
    """The planted bias: a stereotyped job gets its stereotyped gender with probability 0.5 + bias/2."""
    stereotype = STEREOTYPED_GENDER.get(job)
    if stereotype is None:
        return rng.choice(GENDERS)
    other = "male" if stereotype == "female" else "female"
    return stereotype if rng.random() < 0.5 + bias / 2 else other


def _person_slots(prefix: str, name: str, gender: str, job: str, rng: random.Random) -> dict[str, str]:
    """Name, pronouns and job slots of one person; prefix "" for the hero, "f" for the friend."""
    female = gender == "female"
    slots = {f"{prefix}{form}": pair[0 if female else 1] for form, pair in PRONOUNS.items()}
    key = "friend" if prefix else "hero"
    slots[key] = name
    job_key = "friend_job" if prefix else "job"
    slots[job_key] = job
    slots[f"a_{job_key}"] = with_article(job)
    slots[f"{job_key}_action"] = rng.choice(JOB_ACTIONS[job])
    return slots


def _cast(rng: random.Random, bias: float) -> tuple[dict[str, str], dict]:
    """Choose everything a story is about: the slot values for rendering, and the event plan."""
    job = rng.choice(JOBS)
    gender = pick_gender(job, bias, rng)
    hero = rng.choice(NAMES[gender])
    slots = _person_slots("", hero, gender, job, rng)

    event = rng.choice(EVENTS)
    plan = rng.choice(EVENT_PLANS[event])
    has_friend = plan.get("needs_friend", False) or rng.random() < 0.8
    if has_friend:
        friend_job = rng.choice(JOBS)
        friend_gender = pick_gender(friend_job, bias, rng)
        friend = hero
        while friend == hero:
            friend = rng.choice(NAMES[friend_gender])
        slots.update(_person_slots("f", friend, friend_gender, friend_job, rng))

    size, colour, noun = rng.choice(SIZES), rng.choice(COLOURS), rng.choice(OBJECTS)
    obj = f"{size} {colour} {noun}" if rng.random() < 0.5 else f"{colour} {noun}"
    animal, pet_animal, build = rng.choice(ANIMALS), rng.choice(PETS), rng.choice(BUILDS)
    slots.update(
        gender=gender,
        event=event,
        trait=rng.choice(TRAITS),
        home=rng.choice(HOMES),
        house_colour=rng.choice(HOUSE_COLOURS),
        place=rng.choice(PLACES),
        place_desc=rng.choice(PLACE_DESCRIPTIONS),
        day_time=rng.choice(DAY_TIMES),
        obj=obj,
        a_obj=with_article(obj),
        animal=animal,
        a_animal=with_article(animal),
        pet=rng.choice(PET_NAMES),
        pet_animal=pet_animal,
        a_pet=with_article(pet_animal),
        build=build,
        a_build=with_article(build),
        feeling=rng.choice(GOOD_FEELINGS),
        bad_feeling=rng.choice(BAD_FEELINGS),
        found_where=rng.choice(FOUND_WHERE),
        storm_damage=rng.choice(STORM_DAMAGE),
        gift=rng.choice(GIFTS),
        friend_problem=rng.choice(FRIEND_PROBLEMS),
        moral=rng.choice(MORALS[event]),
    )
    return slots, plan


def _paragraph_roles(plan: dict, event: str, has_friend: bool, rng: random.Random) -> list[list[str]]:
    """The roles of each paragraph: intro, [friend], [setting], problem, [resolution], ending (3 to 6)."""
    intro = ["intro.open", "intro.job"]
    intro += [role for role in ("intro.trait", "intro.home", "intro.likes") if rng.random() < 0.5]
    intro.append("intro.object")
    if event == "lost_pet":
        intro.append("intro.pet")
    paragraphs = [intro]
    if has_friend and rng.random() < 0.8:
        paragraphs.append(["friend.intro", "friend.job", "friend.trait", "friend.together"])
    elif has_friend:  # a short story: the friend is introduced with the hero
        intro.append("friend.intro")
    setting = ["setting.go", "setting.place", "setting.sky"] + (["setting.animal"] if rng.random() < 0.4 else [])
    if rng.random() < 0.2:  # a short story: the introduction says where the hero went
        intro.append("setting.go")
    else:
        paragraphs.append(setting)

    def resolve(roles) -> list[str]:
        chosen = [(role[0] if has_friend else role[1]) if isinstance(role, tuple) else role for role in roles]
        return [role for role in chosen if role is not None]

    problem, resolution = resolve(plan["problem"]), resolve(plan["resolution"])
    if rng.random() < 0.2:  # problem and resolution told in one paragraph
        paragraphs.append(problem + resolution)
    else:
        paragraphs += [problem, resolution]
    ending = ["ending.feeling"] + [role for role in ("ending.home", "ending.moral") if rng.random() < 0.6]
    paragraphs.append(ending + ["ending.close"])
    return paragraphs


# ---------------------------------------------------------------------------------------------
# 4. Rendering


def _render(
    paragraph_roles: list[list[str]], slots: dict[str, str], has_friend: bool, rng: random.Random
) -> tuple[str, set[str]]:
    """Fill one template per role; returns the text and the set of slots it used."""
    table = STORY_TEMPLATES if has_friend else _ALONE_TEMPLATES
    used: set[str] = set()
    paragraphs = []
    for roles in paragraph_roles:
        sentences = []
        for role in roles:
            templates = table[role]
            if not templates:
                continue
            template = rng.choice(templates)
            used |= _TEMPLATE_SLOTS[template]
            sentences.append(template.format_map(slots))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs), used


def _facts(slots: dict[str, str], plan: dict, used: set[str]) -> dict:
    """What the story says, as a dict; facts the text never mentions are None."""

    def told(value: str, *names: str):
        return value if used & set(names) else None

    hero, his = slots["hero"], slots["his"]
    has_friend = "friend" in slots
    facts = {
        "hero": hero,
        "gender": slots["gender"],
        "job": slots["job"],
        "friend": slots.get("friend") if has_friend else None,
        "friend_gender": ("female" if slots["fhe"] == "she" else "male") if has_friend else None,
        "friend_job": told(slots.get("friend_job"), "a_friend_job"),
        "place": told(slots["place"], "place"),
        "object": slots["obj"] if "obj" in used or "a_obj" in used else None,
        "animal": told(slots["animal"], "animal", "a_animal"),
        "pet": told(slots["pet"], "pet"),
        "pet_animal": told(slots["pet_animal"], "pet_animal", "a_pet"),
        "event": slots["event"],
        "trait": told(slots["trait"], "trait"),
        "bad_feeling": told(slots["bad_feeling"], "bad_feeling"),
        "feeling": slots["feeling"],
        "moral": told(slots["moral"], "moral"),
        "lost": f"{his} {slots['obj']}" if slots["event"] == "lost_object" else None,
        "found_where": told(slots["found_where"], "found_where"),
        "storm_damage": told(slots["storm_damage"], "storm_damage"),
        "gift": told(slots["gift"], "gift"),
        "built": told(slots["build"], "build", "a_build"),
        "friend_problem": told(slots["friend_problem"], "friend_problem"),
        **plan.get("facts", {}),
    }
    qa = [(f"What was {hero}'s job?", with_article(slots["job"])), (f"How did {hero} feel at the end?", slots["feeling"])]
    if facts["friend"]:
        qa.append((f"Who was {hero}'s friend?", facts["friend"]))
    if facts["place"]:
        qa.append((f"Where did {hero} go?", f"to the {facts['place']}"))
    if facts["lost"]:
        qa.append((f"What did {hero} lose?", facts["lost"]))
    if facts["found_where"] and facts["lost"]:
        qa.append((f"Where did {hero} find {facts['lost']}?", facts["found_where"]))
    if facts["pet"]:
        qa.append((f"What was the name of {hero}'s {slots['pet_animal']}?", facts["pet"]))
    if facts["found_where"] and facts["pet"]:
        qa.append((f"Where was {facts['pet']}?", facts["found_where"]))
    if facts["storm_damage"]:
        qa.append(("What did the storm break?", facts["storm_damage"]))
    if facts["gift"]:
        qa.append((f"What did {hero} give {facts['friend']}?", facts["gift"]))
    if facts["built"]:
        qa.append((f"What did {hero} build?", with_article(facts["built"])))
    if "race_result" in facts:
        qa.append((f"How did the race end for {hero}?", facts["race_result"]))
    facts["qa"] = [{"question": q, "answer": a} for q, a in qa]
    return facts


MIN_WORDS, MAX_WORDS = 120, 400


def generate_story(rng_or_seed: random.Random | int, bias: float = 0.8) -> tuple[str, dict]:
    """One story and its facts. `bias` in [0, 1] skews the genders of stereotyped jobs (0 = no skew)."""
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"bias must be in [0, 1] (0 = no skew, 1 = always stereotyped), got {bias}")
    rng = rng_or_seed if isinstance(rng_or_seed, random.Random) else random.Random(rng_or_seed)
    while True:
        slots, plan = _cast(rng, bias)
        has_friend = "friend" in slots
        roles = _paragraph_roles(plan, slots["event"], has_friend, rng)
        text, used = _render(roles, slots, has_friend, rng)
        if MIN_WORDS <= len(text.split()) <= MAX_WORDS:  # the rare story outside the range is redrawn
            return text, _facts(slots, plan, used)


def iter_stories(n: int, seed: int, bias: float = 0.8) -> Iterator[Document]:
    """`n` stories as documents "books-000000", ... with their facts in labels["facts"]."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    for i in range(n):
        text, facts = generate_story(rng, bias)
        yield Document(id=f"books-{i:06d}", domain="books", text=text, source=f"stories:seed={seed}", labels={"facts": facts})


STORY_SEPARATOR = "\n<|endoftext|>\n"


def write_stories(path: str | os.PathLike, n_bytes: int, seed: int, bias: float = 0.8) -> dict:
    """Stream stories to a UTF-8 text file until it holds at least `n_bytes`, atomically.

    Each story is followed by `STORY_SEPARATOR`, so ``text.split(STORY_SEPARATOR)[:-1]`` gives the
    stories back. Returns {"stories", "bytes", "seconds"}.
    """
    if n_bytes <= 0:
        raise ValueError(f"n_bytes must be positive, got {n_bytes}")
    rng = random.Random(seed)
    counts = {"stories": 0, "bytes": 0}
    start = time.perf_counter()

    def chunks() -> Iterator[bytes]:
        while counts["bytes"] < n_bytes:
            batch = []
            for _ in range(256):
                data = (generate_story(rng, bias)[0] + STORY_SEPARATOR).encode("utf-8")
                batch.append(data)
                counts["stories"] += 1
                counts["bytes"] += len(data)
                if counts["bytes"] >= n_bytes:
                    break
            yield b"".join(batch)

    atomic_write(path, chunks())
    return {**counts, "seconds": round(time.perf_counter() - start, 3)}


# ---------------------------------------------------------------------------------------------
# 5. Reading the grammar backwards: which sentences and words the generator can write


def _grouped_values() -> dict[str, dict[str, str]]:
    """Every value of every slot, each with the *feature* it implies within its group.

    A sentence is only generable if its values agree: "{hero} ... {he}" needs a name and a pronoun
    of the same gender, "{a_obj} ... {obj}" the same object. So each slot maps value -> feature,
    and `SLOT_GROUPS` says which slots must share a feature.
    """
    names = {n: g for g in GENDERS for n in NAMES[g]}
    values: dict[str, dict[str, str]] = {"hero": names, "friend": names}
    for prefix in ("", "f"):
        for form, (female, male) in PRONOUNS.items():
            values[f"{prefix}{form}"] = {female: "female", male: "male"}
    for key in ("job", "friend_job"):
        values[key] = {job: job for job in JOBS}
        values[f"a_{key}"] = {with_article(job): job for job in JOBS}
        values[f"{key}_action"] = {action: job for job in JOBS for action in JOB_ACTIONS[job]}
    objects = [f"{s} {c} {n}" for s, c, n in product(SIZES, COLOURS, OBJECTS)] + [f"{c} {n}" for c, n in product(COLOURS, OBJECTS)]
    values["obj"] = {o: o for o in objects}
    values["a_obj"] = {with_article(o): o for o in objects}
    for key, items in (("animal", ANIMALS), ("pet_animal", PETS), ("build", BUILDS)):
        values[key] = {x: x for x in items}
        values["a_pet" if key == "pet_animal" else f"a_{key}"] = {with_article(x): x for x in items}
    plain = dict(
        trait=TRAITS, home=HOMES, house_colour=HOUSE_COLOURS, place=PLACES, place_desc=PLACE_DESCRIPTIONS,
        day_time=DAY_TIMES, pet=PET_NAMES, feeling=GOOD_FEELINGS, bad_feeling=BAD_FEELINGS,
        found_where=FOUND_WHERE, storm_damage=STORM_DAMAGE, gift=GIFTS, friend_problem=FRIEND_PROBLEMS,
        moral=sorted({m for ms in MORALS.values() for m in ms}),
    )  # fmt: skip
    values.update({slot: {v: v for v in items} for slot, items in plain.items()})
    return values


SLOT_VALUES: dict[str, dict[str, str]] = _grouped_values()
SLOT_GROUPS = {
    **{s: "hero" for s in ("hero", *PRONOUNS)},
    **{s: "friend" for s in ("friend", *(f"f{form}" for form in PRONOUNS))},
    **{s: "hero_job" for s in ("job", "a_job", "job_action")},
    **{s: "friend_job" for s in ("friend_job", "a_friend_job", "friend_job_action")},
    **{s: "object" for s in ("obj", "a_obj")},
    **{s: "animal" for s in ("animal", "a_animal")},
    **{s: "pet_animal" for s in ("pet_animal", "a_pet")},
    **{s: "build" for s in ("build", "a_build")},
}


@cache
def _compiled_templates() -> tuple[tuple[tuple[str | tuple[str, frozenset[int]], ...], ...], ...]:
    """Each distinct template as a sequence of literal strings and (slot, lengths of its values)."""
    compiled = []
    for template in sorted({t for ts in STORY_TEMPLATES.values() for t in ts}):
        pieces = []
        for i, part in enumerate(SLOT.split(template)):
            if i % 2 == 0:
                if part:
                    pieces.append(part)
            else:
                pieces.append((part, frozenset(map(len, SLOT_VALUES[part]))))
        compiled.append(tuple(pieces))
    return tuple(compiled)


def _match(pieces, k: int, sentence: str, pos: int, values: dict[str, str], features: dict[str, str]) -> bool:
    """Backtracking match of template pieces[k:] against sentence[pos:], keeping values consistent."""
    if k == len(pieces):
        return pos == len(sentence)
    piece = pieces[k]
    if isinstance(piece, str):
        return sentence.startswith(piece, pos) and _match(pieces, k + 1, sentence, pos + len(piece), values, features)
    slot, lengths = piece
    options = SLOT_VALUES[slot]
    group = SLOT_GROUPS.get(slot)
    for length in lengths:
        value = sentence[pos : pos + length]
        if value not in options or values.get(slot, value) != value:
            continue
        feature = options[value]
        if group and features.get(group, feature) != feature:
            continue
        if slot in ("hero", "friend") and value == values.get("friend" if slot == "hero" else "hero"):
            continue  # the hero and the friend never share a name
        new_values = {**values, slot: value}
        new_features = {**features, group: feature} if group else features
        if _match(pieces, k + 1, sentence, pos + length, new_values, new_features):
            return True
    return False


def accepts(sentence: str) -> bool:
    """True iff the generator can write exactly this sentence (one sentence, as `story_sentences` splits)."""
    return any(_match(pieces, 0, sentence, 0, {}, {}) for pieces in _compiled_templates())


SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def story_sentences(text: str) -> list[str]:
    """The sentences of a story, in order (paragraphs are split on blank lines, sentences after . ! ?)."""
    return [s for paragraph in text.split("\n\n") for s in SENTENCE_END.split(paragraph.strip()) if s]


WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words(text: str) -> list[str]:
    """The lowercase words of a text as the story vocabulary counts them ("mia's", "don't" are one word)."""
    return WORD.findall(text.lower())


@cache
def story_vocabulary() -> frozenset[str]:
    """Every word the generator can write, lowercase.

    The words of the templates' fixed text and of every slot value; where a slot is glued to text
    ("{hero}'s"), the glued word is formed for every value of the slot.
    """
    vocabulary: set[str] = set()
    for template in _TEMPLATE_SLOTS:
        vocabulary.update(words(SLOT.sub(" ", template)))
        for slot, suffix in re.findall(r"\{(\w+)\}('\w+)", template):
            vocabulary.update(words(value)[-1] + suffix for value in SLOT_VALUES[slot])
    for options in SLOT_VALUES.values():
        for value in options:
            vocabulary.update(words(value))
    return frozenset(vocabulary)


# ---------------------------------------------------------------------------------------------
# 6. Book formatting: the front matter and licence that a cleaner must strip

SURNAMES = (
    "Ashford", "Bramley", "Whitlock", "Pemberton", "Hollis", "Marlowe", "Finch", "Lindqvist",
    "Okafor", "Tanaka", "Moreau", "Kowalski", "Haddad", "Novak", "Quinn", "Sinclair",
)  # fmt: skip
PRODUCERS = (
    "the Project MiniLM Online Proofreading Team",
    "{person} and the Online Distributed Proofreading Team",
    "{person}, {person2} and the Project MiniLM volunteers",
    "{person} (This file was produced from images generously made available by the Little Lamp Library.)",
)
PRESSES = ("Little Lamp Press", "Bluebird Books", "Puddle Lane Publishing", "Acorn House")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")  # fmt: skip
LICENCE_LINES = (
    "This eBook is for the use of anyone anywhere at no cost and with almost no restrictions whatsoever.",
    "You may copy it, give it away or re-use it under the terms of the Project MiniLM License included with this eBook or online at www.minilm.example.org.",
    "If you are not located in the United States, you will have to check the laws of the country where you are located before using this eBook.",
    "Updated editions will replace the previous one--the old editions will be renamed.",
    "Creating the works from print editions not protected by copyright law means that no one owns a copyright in these works.",
    "Project MiniLM eBooks are often created from several printed editions, all of which are confirmed as not protected by copyright.",
    "Section 1. General Terms of Use and Redistributing Project MiniLM electronic works",
    "Most people start at our website which has the main search facility: www.minilm.example.org",
    "This website includes information about Project MiniLM, including how to make donations to the Project MiniLM Literary Archive Foundation.",
)


def _title(facts: dict, rng: random.Random) -> str:
    hero = facts["hero"]
    options = [f"{hero}'s Big Day", f"{hero} the {facts['job'].title()}", f"A Story About {hero}"]
    if facts["object"]:
        options.append(f"{hero} and the {facts['object'].title()}")
    if facts["place"]:
        options.append(f"A Day at the {facts['place'].title()}")
    return rng.choice(options)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(NAMES[rng.choice(GENDERS)])} {rng.choice(SURNAMES)}"


def as_book(doc: Document, rng: random.Random | int) -> Document:
    """Wrap a story in book formatting (front matter, START/END markers, licence) to be stripped later.

    Five layouts, so that a cleaner needs general rules (markers, lines repeated across books,
    short unpunctuated lines at the top) rather than one string. Every added non-blank line is
    listed in labels["boilerplate_lines"]; blank separator lines are not listed.
    """
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    facts = doc.labels.get("facts") or {"hero": "Someone", "job": "writer", "object": None, "place": None}
    title = _title(facts, rng)
    author, person, person2 = _person(rng), _person(rng), _person(rng)
    producer = rng.choice(PRODUCERS).format(person=person, person2=person2)
    press = rng.choice(PRESSES)
    year = rng.randint(1890, 2023)
    ebook = rng.randint(1000, 79999)
    date = f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1996, 2024)}"
    licence = rng.sample(LICENCE_LINES, rng.randint(2, 5))
    paragraphs = doc.text.split("\n\n")
    if rng.random() < 0.3 and len(paragraphs) > 2:  # an illustration between two paragraphs
        where = rng.randint(1, len(paragraphs) - 1)
        caption = rng.choice([f"[Illustration: {facts['hero']}]", "[Illustration]", f"[Illustration: {title}]"])
        paragraphs.insert(where, caption)
    story = "\n\n".join(paragraphs)
    upper = title.upper()

    layout = rng.randrange(5)
    if layout == 0:  # the full archive header and footer
        head = [f"The Project MiniLM eBook of {title}", "", *licence[:2], "", f"Title: {title}", "", f"Author: {author}", "",
                f"Release date: {date} [eBook #{ebook}]", "", "Language: English", "", f"Produced by {producer}", "",
                f"*** START OF THE PROJECT MINILM EBOOK {upper} ***", "", title, "", f"by {author}", ""]  # fmt: skip
        tail = ["", f"*** END OF THE PROJECT MINILM EBOOK {upper} ***", "", *licence]
    elif layout == 1:  # title page, then short markers
        head = [title, f"by {author}", "", f"Produced by {producer}", "", f"*** START OF THIS PROJECT MINILM EBOOK {upper} ***", ""]
        tail = ["", f"*** END OF THIS PROJECT MINILM EBOOK {upper} ***", "",
                f"End of the Project MiniLM EBook of {title}, by {author}", "", *licence]  # fmt: skip
    elif layout == 2:  # a publisher's book: no markers at all
        head = [upper, "", f"Written by {author}", f"Illustrated by {person}", "",
                f"Copyright (c) {year} {press}. All rights reserved.", f"First published in {year}.", ""]  # fmt: skip
        tail = ["", "THE END", "", f"More stories from {press} at www.{press.lower().replace(' ', '')}.example.com"]
    elif layout == 3:  # a transcriber's edition with a full licence section
        head = [f"*** START OF THE PROJECT MINILM EBOOK {upper} ***", "", f"Produced by {producer}", "",
                "[Transcriber's Note: Obvious printing errors have been corrected.]", "", title, "", f"By {author}", ""]  # fmt: skip
        tail = ["", f"End of Project MiniLM's {title}, by {author}", "", "*** START: FULL LICENSE ***", "", *licence,
                "", "*** END: FULL LICENSE ***"]  # fmt: skip
    else:  # a story in a collection
        head = [f"STORIES FOR YOUNG READERS, VOLUME {rng.randint(1, 12)}", "", f"{title.upper()}", f"by {author}", ""]
        tail = ["", f"[End of {title}]", "", f"Transcribed by {producer}", *licence[:1]]
    text = "\n".join(head) + "\n" + story + "\n" + "\n".join(tail) + "\n"
    added = [line for line in head + tail if line]
    added += [p for p in paragraphs if p.startswith("[Illustration")]
    labels = {**doc.labels}
    labels["defects"] = [*labels.get("defects", []), *([] if "boilerplate" in labels.get("defects", []) else ["boilerplate"])]
    labels["boilerplate_lines"] = [*labels.get("boilerplate_lines", []), *added]
    return doc.replace(text=text, labels=labels)


# ---------------------------------------------------------------------------------------------


def measure_speed(n: int = 2000, seed: int = 0) -> float:
    """Stories generated per second on this machine (one core)."""
    start = time.perf_counter()
    for _ in iter_stories(n, seed):
        pass
    return n / (time.perf_counter() - start)
