"""The story grammar: which sentences a story can have, and reading it backwards.

A tiny model trained for a few minutes can only learn a small language, so the stories are written
in one: short sentences from a few hundred templates. `STORY_TEMPLATES` maps a *role* ("intro.open",
"lost.found", ...) to sentence templates with slots such as ``{hero}``, ``{he}`` or ``{a_obj}``; an
event's *plan* (`EVENT_PLANS`) lists the roles of its paragraphs. The writer (`writer.py`) picks one
template per role and fills its slots from the cast of the story; the slots' values come from the
world (`minilm.world`).

Since the grammar is data, it can also be read backwards: `accepts(sentence)` says whether the
generator can write a sentence, and `story_vocabulary()` lists every word it can write. Stage 4 uses
both to check what a trained model writes: a sentence the grammar cannot write is not necessarily
ungrammatical English, it is one the story generator never writes.
"""

from __future__ import annotations

import re
from functools import cache
from itertools import product

from minilm.world import (
    ANIMALS, BAD_FEELINGS, BUILDS, COLOURS, DAY_TIMES, FOUND_WHERE, FRIEND_PROBLEMS, GENDERS, GIFTS, GOOD_FEELINGS,
    HOMES, HOUSE_COLOURS, JOB_ACTIONS, JOBS, MORALS, NAMES, OBJECTS, PET_NAMES, PETS, PLACE_DESCRIPTIONS, PLACES,
    PRONOUNS, SIZES, STORM_DAMAGE, TRAITS, with_article,
)  # fmt: skip

# ---------------------------------------------------------------------------------------------
# 1. Roles -> sentence templates
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
ALONE_TEMPLATES = {
    role: tuple(t for t in templates if not template_slots(t) & FRIEND_SLOTS) for role, templates in STORY_TEMPLATES.items()
}
TEMPLATE_SLOTS = {t: template_slots(t) for templates in STORY_TEMPLATES.values() for t in templates}

# ---------------------------------------------------------------------------------------------
# 2. Reading the grammar backwards: which sentences and words the generator can write


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


# A value's features: the group each one belongs to and its feature there. An English value has at most one
# ("Mia" -> hero: female); a Spanish one can have two ("una panadera" -> hero: female, hero_job: baker), and
# a value can be read more than one way ("juntos": two men, or a man and a woman), so each value maps to
# the tuple of its readings.
Features = dict[str, str]
SlotFeatures = dict[str, dict[str, tuple[Features, ...]]]


@cache
def _english_features() -> SlotFeatures:
    def readings(slot: str, feature: str) -> tuple[Features, ...]:
        return ({SLOT_GROUPS[slot]: feature} if slot in SLOT_GROUPS else {},)

    return {slot: {value: readings(slot, feature) for value, feature in options.items()}
            for slot, options in SLOT_VALUES.items()}


def compile_templates(templates, slot_features: SlotFeatures) -> tuple:
    """Each distinct template as a sequence of literal strings and (slot, lengths of its values)."""
    compiled = []
    for template in sorted(set(templates)):
        pieces = []
        for i, part in enumerate(SLOT.split(template)):
            if i % 2 == 0:
                if part:
                    pieces.append(part)
            else:
                pieces.append((part, frozenset(map(len, slot_features[part]))))
        compiled.append(tuple(pieces))
    return tuple(compiled)


def match(pieces, sentence: str, slot_features: SlotFeatures) -> bool:
    """Whether the compiled template `pieces` can write exactly `sentence`: a backtracking match that keeps each
    slot's value, and each group's feature, the same wherever they occur (and the hero and friend apart)."""

    def go(k: int, pos: int, values: dict[str, str], features: Features) -> bool:
        if k == len(pieces):
            return pos == len(sentence)
        piece = pieces[k]
        if isinstance(piece, str):
            return sentence.startswith(piece, pos) and go(k + 1, pos + len(piece), values, features)
        slot, lengths = piece
        options = slot_features[slot]
        for length in lengths:
            value = sentence[pos : pos + length]
            if value not in options or values.get(slot, value) != value:
                continue
            if slot in ("hero", "friend") and value == values.get("friend" if slot == "hero" else "hero"):
                continue  # the hero and the friend never share a name
            for implied in options[value]:
                if any(features.get(group, feature) != feature for group, feature in implied.items()):
                    continue
                if go(k + 1, pos + length, {**values, slot: value}, {**features, **implied}):
                    return True
        return False

    return go(0, 0, {}, {})


@cache
def _compiled_english() -> tuple:
    return compile_templates(TEMPLATE_SLOTS, _english_features())


def accepts(sentence: str) -> bool:
    """True iff the generator can write exactly this sentence (one sentence, as `story_sentences` splits)."""
    return any(match(pieces, sentence, _english_features()) for pieces in _compiled_english())


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
    for template in TEMPLATE_SLOTS:
        vocabulary.update(words(SLOT.sub(" ", template)))
        for slot, suffix in re.findall(r"\{(\w+)\}('\w+)", template):
            vocabulary.update(words(value)[-1] + suffix for value in SLOT_VALUES[slot])
    for options in SLOT_VALUES.values():
        for value in options:
            vocabulary.update(words(value))
    return frozenset(vocabulary)

