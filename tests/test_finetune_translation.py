"""Translation examples: exact sentence pairs from the parallel stories, asked only where a sentence translates alone."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from minilm.data.sources.stories import grammar, spanish, writer
from minilm.finetune.tasks import FAMILIES, TRANSLATE_ASK, TRANSLATION, build_examples, chrf, exact_match
from minilm.world import split_stories


def test_the_spanish_split_has_the_same_stories_and_facts():
    plain, parallel = split_stories("sft_val", 30), split_stories("sft_val", 30, spanish=True)
    assert [text for text, _ in plain] == [text for text, _ in parallel]
    for (_, facts), (text, with_spanish) in zip(plain, parallel):
        assert {k: v for k, v in with_spanish.items() if k not in ("spanish", "templates")} == facts
        assert len(with_spanish["templates"]) == len(grammar.story_sentences(text))
        assert len(grammar.story_sentences(with_spanish["spanish"])) == len(with_spanish["templates"])


def test_determined_sentences_have_one_translation_and_most_are_determined():
    """Over many stories, a sentence that `spanish.determined` marks has one translation in that direction."""
    rng = random.Random(11)
    targets = {"en_es": defaultdict(set), "es_en": defaultdict(set)}
    asked = {"en_es": [], "es_en": []}
    for _ in range(500):
        english, translation, facts = writer.generate_parallel_story(rng)
        pairs = zip(grammar.story_sentences(english), grammar.story_sentences(translation), facts["templates"])
        for en, es, (role, index) in pairs:
            for direction in targets:
                ok = spanish.determined(role, index, direction)
                asked[direction].append(ok)
                if ok:
                    source, target = (en, es) if direction == "en_es" else (es, en)
                    targets[direction][source].add(target)
    for direction, by_source in targets.items():
        assert not [s for s, t in by_source.items() if len(t) > 1], direction
        assert 0.9 < sum(asked[direction]) / len(asked[direction]) < 1.0  # most are; the rule does exclude some


@pytest.mark.parametrize("role, index, direction, expected", [
    ("friend.together", 1, "en_es", False),  # "They often had lunch together": juntos or juntas?
    ("friend.intro", 3, "en_es", True),  # "{hero} and {friend} had been friends": the names say
    ("friend.intro", 1, "es_en", False),  # "Su mejor amiga era {friend}": his or her best friend?
    ("intro.open", 0, "es_en", True),
    ("lost.joy", 0, "en_es", False),  # "I found it!": lo or la depends on the thing
    ("pet.before", 1, "en_es", False),  # "{pet} was small": pequeño or pequeña depends on the animal
])  # fmt: skip
def test_determined_by_hand(role, index, direction, expected):
    assert spanish.determined(role, index, direction) is expected


def test_translation_examples_are_exact_pairs_in_both_directions():
    examples = build_examples("sft_val", 120, seed=3, families=(TRANSLATION,))
    assert len(examples) == 120 and {e.kind for e in examples} == {"en_es", "es_en"}
    for e in examples:
        ask, answer = e.messages[0]["content"], e.messages[1]["content"]
        prefix = TRANSLATE_ASK[e.kind].split("{")[0]
        source = ask[len(prefix):]
        assert ask.startswith(prefix) and e.answers == (answer,)
        english, spanish_sentence = (source, answer) if e.kind == "en_es" else (answer, source)
        assert grammar.accepts(english) and spanish.accepts(spanish_sentence)
        assert not spanish.accepts(english) and not grammar.accepts(spanish_sentence)
    assert build_examples("sft_val", 120, seed=3, families=(TRANSLATION,)) == examples  # deterministic


def test_the_default_families_are_unchanged_by_translation():
    assert TRANSLATION not in FAMILIES
    assert build_examples("sft_val", 5, seed=1) == build_examples("sft_val", 5, seed=1, families=FAMILIES)
    with pytest.raises(ValueError, match="unknown task families"):
        build_examples("sft_val", 5, families=("poetry",))


def test_chrf_scores_exact_near_and_wrong_translations():
    references = ["Mia tenía una pelota roja.", "El perro corrió al parque."]
    assert chrf(references, references) == pytest.approx(100.0)
    near = chrf(["Mia tenía una pelota rojo.", "El perro corrió al parque."], references)
    wrong = chrf(["Tom was happy.", "The cat slept."], references)
    assert 60 < near < 100 and wrong < 20 < near
    assert not exact_match("Mia tenía una pelota rojo.", references[0])  # exact match gives no partial credit
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        chrf(["a", "b"], ["a"])
