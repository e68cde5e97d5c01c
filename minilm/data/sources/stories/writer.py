"""Children's stories from the small world: the "books" source of the corpus.

They are real stories, with a hero who has a name, a gender and a job, a friend, a place, a
treasured object, a problem and how it was solved, and a feeling at the end. Because the generator
wrote every story, it knows all of that as `facts`, which later stages turn into questions with
exact answers.

How a story is made, top to bottom:

1. The cast and the plan: a hero (name, gender, job), usually a friend, and the things of this
   story, drawn from the world (`minilm.world`); then the event (a lost object, a storm, a race, ...)
   and the roles of each paragraph, from the grammar (`grammar.py`). The cast is where the planted
   bias lives: for a stereotyped job (nurse, pilot, ...) the hero gets the stereotyped gender with
   probability 0.5 + bias/2.
2. Rendering: each role picks one template and fills its slots from the cast; the facts are what
   the rendered text says.

File format of `write_stories`: UTF-8 text, each story followed by `STORY_SEPARATOR`
(a line ``<|endoftext|>``), paragraphs separated by one blank line.
"""

from __future__ import annotations

import os
import random
import time
from typing import Iterator

from minilm.data.documents import Document
from minilm.data.sources.stories.grammar import ALONE_TEMPLATES, EVENT_PLANS, EVENTS, STORY_TEMPLATES, TEMPLATE_SLOTS
from minilm.data.sources.stories.spanish import translate
from minilm.files import atomic_write
from minilm.world import (
    ANIMALS, BAD_FEELINGS, BUILDS, COLOURS, DAY_TIMES, FOUND_WHERE, FRIEND_PROBLEMS, GENDERS, GIFTS, GOOD_FEELINGS,
    HOMES, HOUSE_COLOURS, JOB_ACTIONS, JOBS, MORALS, NAMES, OBJECTS, PET_NAMES, PETS, PLACE_DESCRIPTIONS, PLACES,
    PRONOUNS, SIZES, STEREOTYPED_GENDER, STORM_DAMAGE, TRAITS, with_article,
)  # fmt: skip

# ---------------------------------------------------------------------------------------------
# 1. The cast of one story


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
# 2. Rendering


def _render(
    paragraph_roles: list[list[str]], slots: dict[str, str], has_friend: bool, rng: random.Random
) -> tuple[str, set[str], list[list[tuple[str, int]]]]:
    """Fill one template per role; returns the text, the set of slots it used, and the choices: each
    paragraph's (role, index of the template in `STORY_TEMPLATES[role]`), which the translation follows."""
    table = STORY_TEMPLATES if has_friend else ALONE_TEMPLATES
    used: set[str] = set()
    paragraphs, choices = [], []
    for roles in paragraph_roles:
        sentences, chosen = [], []
        for role in roles:
            templates = table[role]
            if not templates:
                continue
            template = rng.choice(templates)
            used |= TEMPLATE_SLOTS[template]
            sentences.append(template.format_map(slots))
            chosen.append((role, STORY_TEMPLATES[role].index(template)))
        paragraphs.append(" ".join(sentences))
        choices.append(chosen)
    return "\n\n".join(paragraphs), used, choices


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


def _write(rng_or_seed: random.Random | int, bias: float) -> tuple[str, dict, dict, list]:
    """One story: its text, its facts, its cast's slots and its template choices."""
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"bias must be in [0, 1] (0 = no skew, 1 = always stereotyped), got {bias}")
    rng = rng_or_seed if isinstance(rng_or_seed, random.Random) else random.Random(rng_or_seed)
    while True:
        slots, plan = _cast(rng, bias)
        has_friend = "friend" in slots
        roles = _paragraph_roles(plan, slots["event"], has_friend, rng)
        text, used, choices = _render(roles, slots, has_friend, rng)
        if MIN_WORDS <= len(text.split()) <= MAX_WORDS:  # the rare story outside the range is redrawn
            return text, _facts(slots, plan, used), slots, choices


def generate_story(rng_or_seed: random.Random | int, bias: float = 0.8) -> tuple[str, dict]:
    """One story and its facts. `bias` in [0, 1] skews the genders of stereotyped jobs (0 = no skew)."""
    text, facts, _, _ = _write(rng_or_seed, bias)
    return text, facts


def generate_parallel_story(rng_or_seed: random.Random | int, bias: float = 0.8) -> tuple[str, str, dict]:
    """One story in English and in Spanish, sentence for sentence (`spanish.translate`), and its facts.

    It draws the same random numbers as `generate_story`, so a stream of parallel stories has the same
    English texts as the stream of English ones with the same seed.
    The facts gain "templates": the (role, index) of each sentence's template, in order, the same in both
    languages (`spanish.determined` says from them which sentences translate without their story).
    """
    text, facts, slots, choices = _write(rng_or_seed, bias)
    facts = {**facts, "templates": [choice for paragraph in choices for choice in paragraph]}
    return text, translate(choices, slots, facts["friend_gender"]), facts


def iter_stories(n: int, seed: int, bias: float = 0.8, spanish: bool = False) -> Iterator[Document]:
    """`n` stories as documents "books-000000", ... with their facts in labels["facts"]; with `spanish`, each
    also has its Spanish translation in labels["spanish"] (the English texts are the same either way)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    for i in range(n):
        if spanish:
            text, translation, facts = generate_parallel_story(rng, bias)
            labels = {"facts": facts, "spanish": translation}
        else:
            text, facts = generate_story(rng, bias)
            labels = {"facts": facts}
        yield Document(id=f"books-{i:06d}", domain="books", text=text, source=f"stories:seed={seed}", labels=labels)


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


def measure_speed(n: int = 2000, seed: int = 0) -> float:
    """Stories generated per second on this machine (one core)."""
    start = time.perf_counter()
    for _ in iter_stories(n, seed):
        pass
    return n / (time.perf_counter() - start)