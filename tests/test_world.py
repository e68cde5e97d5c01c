"""The story world: one home for people, jobs, places and gender words, which every source draws from."""

import re

import pytest

from minilm import world
from minilm.data.filters.bias import bias_audit, true_job_gender
from minilm.data.sources.site.pages import build_site
from minilm.data.sources.stories.grammar import EVENTS
from minilm.data.sources.stories.writer import iter_stories


def test_names_by_gender_are_distinct_and_pair_up():
    female, male = world.NAMES["female"], world.NAMES["male"]
    assert set(world.NAMES) == set(world.GENDERS) == {"female", "male"}
    assert len(female) == len(male) == 30
    assert len(set(female)) == len(female) and len(set(male)) == len(male) and not set(female) & set(male)
    assert world.ALL_NAMES == female + male
    assert all(re.fullmatch(r"[A-Z][a-z]+", name) for name in world.ALL_NAMES + world.SURNAMES)
    assert not set(world.ALL_NAMES) & set(world.SURNAMES)
    # each name swaps to the name of the same rank of the other gender, and back
    assert len(world.NAME_SWAPS) == 60
    assert world.NAME_SWAPS["Mia"] == "Tom" and world.NAME_SWAPS["Tom"] == "Mia"
    for name, other in world.NAME_SWAPS.items():
        assert world.NAME_SWAPS[other] == name
        assert (name in female) == (other in male)


def test_pronouns_and_gender_words_agree():
    assert world.pronouns("female") == {"He": "She", "he": "she", "His": "Her", "his": "her", "him": "her"}
    assert world.pronouns("male") == {form: form for form in world.PRONOUNS}
    with pytest.raises(ValueError, match="gender must be one of"):
        world.pronouns("f")
    female_words, male_words = world.GENDER_WORDS["female"], world.GENDER_WORDS["male"]
    assert not female_words & male_words
    for gender in world.GENDERS:
        assert {word.lower() for word in world.pronouns(gender).values()} <= world.GENDER_WORDS[gender]
    for female, male in world.GENDER_PAIRS:  # what a swap exchanges, the audit counts
        assert female in female_words and male in male_words


def test_jobs_and_their_stereotypes():
    assert world.JOBS == tuple(world.JOB_ACTIONS) and len(world.JOBS) == 18
    assert all(len(actions) == 2 for actions in world.JOB_ACTIONS.values())
    assert set(world.STEREOTYPED_GENDER) < set(world.JOBS)
    assert set(world.STEREOTYPED_GENDER.values()) == set(world.GENDERS)  # stereotypes lean both ways
    assert world.STEREOTYPED_GENDER["nurse"] == "female" and world.STEREOTYPED_GENDER["pilot"] == "male"


def test_lists_are_fixed_tuples_and_morals_cover_every_event():
    for name in ("SURNAMES", "RELATIVES", "JOBS", "TRAITS", "PLACES", "OBJECTS", "COLOURS", "ANIMALS", "PETS",
                 "DAYS", "MONTHS", "DAY_TIMES", "GOOD_FEELINGS", "BAD_FEELINGS", "GENDER_PAIRS"):
        values = getattr(world, name)
        assert isinstance(values, tuple) and len(set(values)) == len(values), name
    assert len(world.MONTHS) == 12 and len(world.DAYS) == 7
    assert set(world.MORALS) == set(EVENTS)
    assert not set(world.GOOD_FEELINGS) & set(world.BAD_FEELINGS)
    assert world.with_article("orange kite") == "an orange kite" and world.with_article("red ball") == "a red ball"


def test_the_sources_and_the_audit_draw_from_the_world():
    for doc in iter_stories(200, seed=3):
        facts = doc.labels["facts"]
        assert facts["hero"] in world.NAMES[facts["gender"]] and facts["job"] in world.JOBS
        if facts["friend"]:
            assert facts["friend"] in world.NAMES[facts["friend_gender"]]
        assert facts["place"] in (None, *world.PLACES)
    assert [row["job"] for row in true_job_gender([]).to_rows()] == list(world.JOBS)
    assert list(bias_audit([]).counts) == list(world.JOBS)
    site = build_site(60, seed=1, large_page_bytes=10_000)
    text = "\n".join(line for page in site.pages.values() if page.kind in ("news", "blog") for line in page.main_lines)
    named = set(re.findall(r"\b[A-Z][a-z]+ (?=[A-Z][a-z]+\b)", text))  # first names before a surname
    assert {name.strip() for name in named} & set(world.ALL_NAMES)
    assert set(re.findall(r"\b(" + "|".join(world.SURNAMES) + r")\b", text))
