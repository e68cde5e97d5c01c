"""Translation examples: exact sentence pairs from the parallel stories, asked only where a sentence translates alone."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest

from minilm.data.sources.stories import grammar, spanish, writer
from minilm.finetune.stage import first_test_examples, seen_translations
from minilm.finetune.tasks import (
    FAMILIES, TRANSLATE_ASK, TRANSLATION, build_examples, chrf, contamination, conversation_text, decontaminate,
    exact_match, ngrams, translation, translation_scores,
)  # fmt: skip
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


def test_translation_is_a_family_asked_in_both_directions_equally():
    assert FAMILIES[-1] == TRANSLATION  # last: the other families keep their places (and few-shot shots) in the test
    examples = build_examples("sft_val", 6, seed=1)
    assert [e.family for e in examples] == [f for f in FAMILIES for _ in range(6)]
    translations = build_examples("sft_train", 200, seed=5, families=(TRANSLATION,))
    assert Counter(e.kind for e in translations) == {"en_es": 100, "es_en": 100}
    with pytest.raises(ValueError, match="unknown task families"):
        build_examples("sft_val", 5, families=("poetry",))
    text, facts = split_stories("sft_val", 1, spanish=True)[0]
    with pytest.raises(ValueError, match="unknown translation direction 'en_fr'; use one of en_es, es_en"):
        translation(text, facts, random.Random(0), lambda messages: True, direction="en_fr")


def test_test_translations_are_decontaminated_like_the_others_and_against_verbatim_repeats():
    """A translation prompt that shares an uncommon 13-gram with training text is dropped by `decontaminate`; one
    under 13 words that a training conversation asks word for word is dropped by `seen_translations`."""
    test = build_examples("test", 300, seed=2, families=(TRANSLATION,))
    train = build_examples("sft_train", 300, seed=2, families=(TRANSLATION,))
    long = next(e for e in test if len(ngrams(conversation_text(e.prompt))) > 0)
    clean, dropped = decontaminate(test, [conversation_text(long.prompt)])
    assert long not in clean and dropped[TRANSLATION] >= 1 and len(clean) + dropped[TRANSLATION] == len(test)
    asked = {e.messages[0]["content"] for e in train}
    expected = [e for e in test if e.messages[0]["content"] in asked]
    assert expected and seen_translations(test, train) == expected  # the templates repeat short sentences
    assert 0 in contamination(expected, [conversation_text(e.messages) for e in train])  # 13-grams miss some


def test_the_test_set_takes_the_two_directions_in_turn():
    examples = build_examples("test", 40, seed=4, families=(TRANSLATION, "refusal"))
    skewed = [e for e in examples if e.kind == "es_en"][:3] + [e for e in examples if e.kind == "en_es"]
    chosen = first_test_examples(skewed, TRANSLATION, 10)
    assert [e.kind for e in chosen] == ["en_es", "es_en"] * 3  # es_en has only 3: 6 in all
    assert first_test_examples(examples, TRANSLATION, 8) == [e for pair in zip(
        [e for e in examples if e.kind == "en_es"], [e for e in examples if e.kind == "es_en"]) for e in pair][:8]
    assert first_test_examples(examples, "refusal", 5) == [e for e in examples if e.family == "refusal"][:5]


def test_translation_scores_per_direction():
    examples = build_examples("test", 6, seed=0, families=("refusal", TRANSLATION))
    perfect = [e.answers[0] for e in examples]
    scores = translation_scores(examples, perfect)
    assert set(scores) == {"en_es", "es_en", "all"} and [scores[d]["n"] for d in scores] == [3, 3, 6]
    for direction in scores:
        assert scores[direction]["exact_match"] == 1.0 and scores[direction]["chrf"] == pytest.approx(100.0)
    # a wrong answer for every English->Spanish question: the English source given back; refusals do not count
    wrong = [e.messages[0]["content"].split(": ", 1)[1] if e.kind == "en_es" else "nonsense" if e.family == "refusal"
             else e.answers[0] for e in examples]
    scores = translation_scores(examples, wrong)
    assert scores["en_es"]["exact_match"] == 0.0 and scores["es_en"]["exact_match"] == 1.0
    assert scores["all"]["exact_match"] == 0.5 and scores["en_es"]["chrf"] < scores["all"]["chrf"] < 100
    references = [e.answers[0] for e in examples if e.kind == "en_es"]
    assert scores["en_es"]["chrf"] == pytest.approx(chrf([p for p, e in zip(wrong, examples) if e.kind == "en_es"],
                                                         references))
    with pytest.raises(ValueError, match="12 examples but 11 predictions"):
        translation_scores(examples, perfect[:11])


def test_chrf_scores_exact_near_and_wrong_translations():
    references = ["Mia tenía una pelota roja.", "El perro corrió al parque."]
    assert chrf(references, references) == pytest.approx(100.0)
    near = chrf(["Mia tenía una pelota rojo.", "El perro corrió al parque."], references)
    wrong = chrf(["Tom was happy.", "The cat slept."], references)
    assert 60 < near < 100 and wrong < 20 < near
    assert not exact_match("Mia tenía una pelota rojo.", references[0])  # exact match gives no partial credit
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        chrf(["a", "b"], ["a"])
