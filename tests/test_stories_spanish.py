"""The Spanish story grammar mirrors the English one: role by role, template by template, and both read backwards."""

from __future__ import annotations

import random
import re
from collections import defaultdict

import pytest

from minilm.data.sources.stories import grammar, spanish, writer
from minilm.world import (
    ES_ADJECTIVES, ES_FEELINGS, ES_JOB_ACTIONS, ES_JOBS, ES_NOUNS, ES_PHRASES, ES_PLACE_DESCRIPTIONS, ES_TRAITS,
)  # fmt: skip

# What each slot names, in either language: a mirror must name the same people and things as its English template.
# Pronouns and agreement endings ({He}, {o}, {Lobj}, ...) name nothing new, so they are left out.
NAMES = {
    "hero": "hero", "friend": "friend", "pet": "pet", "job": "job", "a_job": "job", "job_action": "job_action",
    "friend_job": "friend_job", "a_friend_job": "friend_job", "friend_job_action": "friend_job_action",
    "trait": "trait", "home": "home", "home_al": "home", "home_del": "home", "house_colour": "house_colour",
    "house_colour_m": "house_colour", "place": "place", "al_place": "place", "el_place": "place", "El_place": "place",
    "del_place": "place", "place_desc": "place_desc", "day_time": "day_time", "una_day_time": "day_time",
    "Una_day_time": "day_time", "obj": "obj", "a_obj": "obj", "el_obj": "obj", "animal": "animal",
    "a_animal": "animal", "Un_animal": "animal", "pet_animal": "pet_animal", "a_pet": "pet_animal",
    "el_pet": "pet_animal", "build": "build", "a_build": "build", "el_build": "build", "feeling": "feeling",
    "bad_feeling": "bad_feeling", "fbad_feeling": "bad_feeling", "found_where": "found_where",
    "storm_damage": "storm_damage", "gift": "gift", "friend_problem": "friend_problem", "moral": "moral",
}  # fmt: skip


def named(template: str) -> set[str]:
    return {NAMES[slot] for slot in grammar.template_slots(template) if slot in NAMES}


def test_every_english_template_has_its_mirror_naming_the_same_things():
    assert spanish.STORY_TEMPLATES_ES.keys() == grammar.STORY_TEMPLATES.keys()
    for role, templates in grammar.STORY_TEMPLATES.items():
        mirrors = spanish.STORY_TEMPLATES_ES[role]
        assert len(mirrors) == len(templates), role
        for english, mirror in zip(templates, mirrors):
            assert named(english) == named(mirror), (role, english, mirror)
        assert len(set(mirrors)) == len(mirrors), f"two templates of {role} have one translation"


@pytest.fixture(scope="module")
def parallel() -> list[tuple[str, str, dict]]:
    rng = random.Random(7)
    return [writer.generate_parallel_story(rng) for _ in range(400)]


def test_a_parallel_stream_has_the_english_stories_of_the_same_seed(parallel):
    rng = random.Random(7)
    assert [writer.generate_story(rng)[0] for _ in range(50)] == [en for en, _, _ in parallel[:50]]


def test_translations_round_trip_through_both_grammars(parallel):
    for en, es, _ in parallel:
        en_paragraphs, es_paragraphs = en.split("\n\n"), es.split("\n\n")
        assert len(en_paragraphs) == len(es_paragraphs)
        for en_paragraph, es_paragraph in zip(en_paragraphs, es_paragraphs):
            en_sentences = grammar.story_sentences(en_paragraph)
            es_sentences = grammar.story_sentences(es_paragraph)
            assert len(en_sentences) == len(es_sentences), (en_paragraph, es_paragraph)
            assert all(grammar.accepts(s) for s in en_sentences)
            assert all(spanish.accepts(s) for s in es_sentences), [s for s in es_sentences if not spanish.accepts(s)]


def test_a_spanish_sentence_has_one_english_translation_but_for_whose(parallel):
    """Back-translation is exact up to one thing Spanish does not say: whose ("su" is his or her). A story
    says it (its hero has a gender), a sentence alone may not."""
    english_of = defaultdict(set)
    for en, es, _ in parallel:
        for en_sentence, es_sentence in zip(grammar.story_sentences(en), grammar.story_sentences(es)):
            english_of[es_sentence].add(en_sentence)
    whose = re.compile(r"\b([Hh]is|[Hh]er)\b")
    ambiguous = {es: ens for es, ens in english_of.items() if len({whose.sub("_", en) for en in ens}) > 1}
    assert not ambiguous, list(ambiguous.items())[:3]
    assert any(len(ens) > 1 for ens in english_of.values())  # "su" is ambiguous, and the test sees it
    assert len(english_of) > 2000  # the sample covers the grammar well


@pytest.mark.parametrize("table", [ES_JOB_ACTIONS, ES_PHRASES])
def test_the_spanish_words_are_one_to_one(table):
    assert len(set(table.values())) == len(table)


@pytest.mark.parametrize("table", [ES_JOBS, ES_TRAITS, ES_FEELINGS, ES_ADJECTIVES, ES_PLACE_DESCRIPTIONS])
def test_the_gendered_spanish_words_are_one_to_one(table):
    for form in (0, 1):
        assert len({pair[form] for pair in table.values()}) == len(table)


def test_nouns_have_a_gender_and_are_one_to_one():
    assert all(gender in ("m", "f", "fp") for _, gender in ES_NOUNS.values())
    assert len({noun for noun, _ in ES_NOUNS.values()}) == len(ES_NOUNS)


@pytest.mark.parametrize("sentence, ok", [
    ("Érase una vez una maestra llamada Ella.", True),
    ("Érase una vez una maestra llamado Ella.", False),  # the participle agrees with the hero
    ("Érase una vez un maestro llamada Tom.", False),
    ("Aquella noche, Max se fue a la cama orgulloso y cansado.", True),
    ("Aquella noche, Max se fue a la cama orgullosa y cansado.", False),
    ("Mia y Lily eran amigas desde que eran pequeñas.", True),
    ("Mia y Lily eran amigos desde que eran pequeños.", False),  # two women
    ("Mia y Tom eran amigos desde que eran pequeños.", True),  # a man and a woman: the masculine
    ("Mia y Mia eran amigas desde que eran pequeñas.", False),  # the hero and the friend are two people
    ("Tom tenía una mejor amiga que se llamaba Mia.", True),
    ("Tom tenía una mejor amigo que se llamaba Mia.", False),
    ("Su casa estaba cerca de las colinas, y él podía verlas desde su ventana.", True),
    ("Su casa estaba cerca del mar, y él podía verlas desde su ventana.", False),
    ("La playa estaba tranquila y verde.", True),
    ("El parque estaba tranquila y verde.", False),
    ("Mia tenía una pelota roja grande que quería muchísimo.", True),
    ("Mia tenía un pelota roja grande que quería muchísimo.", False),
    ("Mia tenía una pelota rojo grande que quería muchísimo.", False),
    ("Mia was a baker.", False),
])  # fmt: skip
def test_accepts_checks_agreement(sentence, ok):
    assert spanish.accepts(sentence) is ok


def test_the_english_grammar_still_reads_backwards():
    assert grammar.accepts("Once upon a time, there was a baker named Mia.")
    assert not grammar.accepts("Once upon a time, there was a baker named Mia and Tom.")
    assert grammar.accepts("She felt sad and wanted to cry.")
    assert not grammar.accepts("She felt sad and wanted to cry, said he.")


def test_spanish_text_is_spanish(parallel):
    """No English word of the world leaks into the Spanish (names aside)."""
    english_words = {"the", "and", "was", "his", "her", "she", "with", "friend", "ball", "park"}
    for _, es, _ in parallel[:100]:
        assert not english_words & set(re.findall(r"\w+", es.lower())), es
