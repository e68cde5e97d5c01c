"""The gold reward of stage 7, its flawed responses, and the simulated annotators.

The gold reward is checked term by term on hand-written responses to real examples of every
family: each case names the terms it must change, and by how much, so a term that stopped firing
(or fired on a clean answer) fails. The annotators are checked against the probabilities they are
defined by: label rates against Bradley-Terry within a few standard errors of the sample, the
ceiling against a Monte Carlo estimate, and the pairs against TRL's own data utilities.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter

import pytest

from minilm.data.truth.defects import PII_SENTENCES, SLOTS, TOXIC_WORDS, fill
from minilm.finetune.chat import END, render_chat
from minilm.finetune.tasks import REFUSAL, Example, build_examples, sentences
from minilm.rlhf import gold
from minilm.rlhf.gold import BEST, FLAWS, JUDGED_FAMILIES, flawed_response, flaws_for, gold_breakdown, gold_reward
from minilm.rlhf.preferences import (
    PAIR_KINDS, AnnotatorConfig, accuracy_by_kind, ceiling_accuracy, check_pairs, label_agreement, label_pairs,
    label_probability, load_pairs, pair_kind, save_pairs, sigmoid, verbose_reward,
)  # fmt: skip
from minilm.world import ALL_NAMES, RUDE_PHRASES, split_stories

CLEAN = {"correct": 1.0, "complete": 0.5, "concise": 0.0, "polite": 0.0, "grammatical": 0.0, "nontoxic": 0.0, "private": 0.0}
TRL_KEYS = ("prompt", "chosen", "rejected")
SIGMAS = 4  # statistical tests pass within 4 standard errors (a false failure about once in 16,000 runs)


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return build_examples("sft_train", 3, families=JUDGED_FAMILIES)


@pytest.fixture(scope="module")
def many() -> list[Example]:
    return [*build_examples("sft_train", 30, families=JUDGED_FAMILIES),
            *build_examples("test", 30, families=JUDGED_FAMILIES)]


def of(examples: list[Example], family: str) -> Example:
    return next(e for e in examples if e.family == family)


def concise(example: Example, response: str) -> float:
    """The concise cost of `response` counted by hand: 0.04 a word beyond the longest answer, at most 0.4."""
    return -min(0.4, 0.04 * (len(response.split()) - max(len(answer.split()) for answer in example.answers)))


def expect(example: Example, response: str, **changed: float) -> None:
    """`response` scores as a clean answer but for the `changed` terms, and its reward is their sum."""
    expected = {**CLEAN, **changed}
    assert tuple(gold_breakdown(example, response)) == gold.TERMS
    assert gold_breakdown(example, response) == pytest.approx(expected, abs=1e-9), response
    assert gold_reward(example, response) == pytest.approx(sum(expected.values()), abs=1e-9)


def then(answer: str, more: str) -> str:
    return gold._then(answer, more)


# ---------------------------------------------------------------------------------------------
# The rubric, term by term


def test_every_clean_answer_scores_best(many):
    for example in many:
        for answer in example.answers:
            expect(example, answer)
    assert {e.family for e in many} == set(JUDGED_FAMILIES)


@pytest.mark.parametrize("family", JUDGED_FAMILIES)
def test_each_term_on_hand_written_responses(examples, family):
    example = of(examples, family)
    answer = example.answers[0]
    # correct: the answer first, as its own sentence; anything before it, or another answer, is wrong
    wrong, _ = flawed_response(example, random.Random(0), "wrong")
    assert gold_breakdown(example, wrong)["correct"] == 0 and gold_breakdown(example, wrong)["complete"] == 0
    expect(example, f"Well, {answer}", correct=0.0, complete=0.0, concise=-0.04)
    # concise: 0.04 a word beyond the answer, at most 0.4; the answer stays correct
    expect(example, then(answer, "I hope this helps!"), concise=-0.16)
    long = then(answer, "That is what the story says, and I hope it helps you with the rest of your reading today.")
    expect(example, long, concise=-0.4)
    # polite: a rude phrase of the world
    expect(example, then(answer, "Obviously."), concise=-0.04, polite=-0.5)
    expect(example, then(answer, "What a silly question."), concise=-0.16, polite=-0.5)
    # grammatical: cut off mid-sentence, or a run of words repeated
    expect(example, then(answer, "Let me know if"), concise=-0.16, grammatical=-0.4)
    looped = then(answer, answer)
    expect(example, looped, concise=concise(example, looped), grammatical=-0.4)
    # nontoxic: a word of the world's toxic vocabulary, also in the plural
    expect(example, then(answer, "You are a fool."), concise=-0.16, nontoxic=-2.0)
    expect(example, then(answer, "Only idiots ask."), concise=-0.12, nontoxic=-2.0)
    # private: an e-mail address or a phone number
    expect(example, then(answer, "Write to mia.finch@example.com."), concise=-0.12, private=-2.0)
    expect(example, then(answer, "Call +44 20 7946 0958."), concise=-0.2, private=-2.0)
    expect(example, then(answer, "Call (555) 123-4567 now."), concise=-0.16, private=-2.0)
    expect(example, then(answer, "It was 2024."), concise=-0.12)  # a year is no phone number


def test_list_answers_get_partial_credit_and_none_for_extra_names(many):
    example = next(e for e in many if e.kind == "characters" and len(e.answers[0].split(", ")) >= 2)
    names = example.answers[0].split(", ")
    other = next(n for n in ALL_NAMES if n not in names)
    expect(example, " and ".join(names))  # the other accepted form
    expect(example, names[-1], correct=0.0, complete=0.5 / len(names))
    expect(example, ", ".join([*names, other]), correct=0.0, complete=0.0, concise=concise(example, ", ".join([*names, other])))
    expect(example, ", ".join(reversed(names)), correct=0.0, complete=0.5)  # all there, but not in order
    after = then(", ".join(names), f"I hope {other} likes it.")
    expect(example, after, concise=concise(example, after))  # another name after the answer: still correct


def test_grammar_rules_are_exact():
    example = Example("reading", "qa", [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Tom"}], ("Tom",))
    expect(example, "Tom.")
    expect(example, "Tom and", correct=0.0, complete=0.0, concise=-0.04, grammatical=-0.4)  # a dangling word
    expect(example, "Tom,", grammatical=-0.4)  # a dangling comma
    expect(example, "Tom Tom", correct=0.0, complete=0.0, concise=-0.04, grammatical=-0.4)
    expect(example, "", correct=0.0, complete=0.0, grammatical=-0.4)  # empty: a bad response, not an error
    expect(example, "   ", correct=0.0, complete=0.0, grammatical=-0.4)
    expect(example, 'Tom. He said "Hi!" and left.', concise=-0.2)  # a quote inside a sentence is not an end
    for odd in ("@@", "...", "\n\n", "😀", "Tom " * 5000, "Tom.\n\nTom?"):  # total: any string gets a reward
        terms = gold_breakdown(example, odd)
        assert all(math.isfinite(value) for value in terms.values())
        assert all(math.copysign(1, value) > 0 for value in terms.values() if value == 0)  # 0.0, never -0.0


def test_the_detectors_never_fire_on_the_worlds_own_sentences():
    """No sentence of the stories is rude, toxic, personal, cut off or looped: the costs fall on flaws only."""
    example = Example("reading", "qa", [{"role": "user", "content": "?"}, {"role": "assistant", "content": "x"}], ("x",))
    for text, _ in split_stories("sft_train", 150):
        for sentence in (s for paragraph in text.split("\n\n") for s in sentences(paragraph)):
            terms = gold_breakdown(example, sentence)
            assert terms["polite"] == terms["grammatical"] == terms["nontoxic"] == terms["private"] == 0, sentence


def test_every_address_and_number_the_world_makes_is_personal_data():
    rng = random.Random(0)
    messages = [{"role": "user", "content": "?"}, {"role": "assistant", "content": REFUSAL}]
    example = Example("refusal", "personal_data", messages, (REFUSAL,))
    for _ in range(300):
        for slot in ("email", "phone"):
            assert gold_breakdown(example, SLOTS[slot][1](rng, {}))["private"] == -2.0
        leak, items = fill(rng.choice([t for t in PII_SENTENCES if "{email}" in t or "{phone}" in t]), rng)
        assert gold_breakdown(example, leak)["private"] == -2.0, (leak, items)
    for word in sorted(TOXIC_WORDS):
        assert gold_breakdown(example, f"You {word}.")["nontoxic"] == -2.0
    for phrase in RUDE_PHRASES:
        assert gold_breakdown(example, then(REFUSAL, phrase))["polite"] == -0.5


def test_correctness_dominates_and_harm_costs_more_than_an_answer_earns(examples):
    style = gold.CONCISE_MAX + gold.RUDE + gold.UNGRAMMATICAL
    assert style < BEST and gold.TOXIC > BEST and gold.PERSONAL_DATA > BEST
    for example in examples:
        answer = example.answers[0]
        worst_style = then(then(answer, "Whatever. That is what the story says, and I hope it helps you with the rest"), "of")
        terms = gold_breakdown(example, worst_style)
        assert terms["correct"] == 1 and terms["concise"] == -gold.CONCISE_MAX and terms["polite"] < 0 and terms["grammatical"] < 0
        wrong, _ = flawed_response(example, random.Random(1), "wrong")
        assert gold_reward(example, worst_style) > gold_reward(example, wrong) + 0.1  # a margin larger than rounding
        toxic, _ = flawed_response(example, random.Random(1), "toxic")
        assert gold_reward(example, toxic) < gold_reward(example, wrong)


def test_gold_reward_refuses_invalid_input(examples):
    example = examples[0]
    for response in (None, 3, ["a cook"]):
        with pytest.raises(ValueError, match="response must be the assistant's reply as a string"):
            gold_reward(example, response)
    with pytest.raises(ValueError, match="must be a minilm.finetune.tasks.Example"):
        gold_reward(None, "a cook")
    with pytest.raises(ValueError, match="has no accepted answer"):
        gold_reward(Example("reading", "qa", example.messages, ()), "a cook")


def test_gold_reward_is_fast(many):
    responses = [(e, flawed_response(e, random.Random(i), None)[0]) for i, e in enumerate(many * 10)]
    start = time.perf_counter()
    for example, response in responses:
        gold_reward(example, response)
    per_second = len(responses) / (time.perf_counter() - start)
    assert per_second > 1000, f"{per_second:.0f} gold rewards a second"


# ---------------------------------------------------------------------------------------------
# Flawed responses


FLAW_TERMS = {  # the term each flaw must cost, and the terms that must stay clean
    "chatter": ("concise",), "rude": ("polite",), "toxic": ("nontoxic",), "personal_data": ("private",),
    "truncated": ("grammatical",), "repeated": ("grammatical",), "wrong": ("correct",), "incomplete": ("correct",),
    "padded": ("correct", "complete"),
}  # fmt: skip


def test_every_flaw_scores_below_the_clean_answer_and_costs_its_term(many):
    rng = random.Random(0)
    seen = set()
    for example in many:
        for kind in flaws_for(example):
            text, flaw = flawed_response(example, rng, kind)
            terms = gold_breakdown(example, text)
            assert flaw == kind and gold_reward(example, text) < BEST, (kind, text)
            assert all(terms[term] < CLEAN[term] for term in FLAW_TERMS[kind]), (kind, text, terms)
            refusal_leaks = kind == "personal_data" and example.family == "refusal"  # leaks instead of refusing
            if kind in ("chatter", "rude", "toxic", "personal_data", "truncated", "repeated") and not refusal_leaks:
                assert terms["correct"] == 1, (kind, text)  # the flaw comes after the answer
            if kind == "incomplete":
                assert 0 < terms["complete"] < 0.5
            seen.add(kind)
    assert seen == set(FLAWS)


def test_flawed_response_is_seeded_and_checks_its_kind(examples):
    example = of(examples, "reading")
    assert [flawed_response(example, random.Random(7)) for _ in range(3)] == [flawed_response(example, random.Random(7))] * 3
    drawn = {flawed_response(example, random.Random(seed))[1] for seed in range(200)}
    assert drawn == set(flaws_for(example)) and "padded" not in drawn
    with pytest.raises(ValueError, match="unknown flaw 'typo'"):
        flawed_response(example, random.Random(0), "typo")
    with pytest.raises(ValueError, match="needs a list answer of names"):
        flawed_response(example, random.Random(0), "incomplete")
    refusal = of(examples, "refusal")
    leak, _ = flawed_response(refusal, random.Random(0), "personal_data")
    assert REFUSAL not in leak and gold_breakdown(refusal, leak)["private"] < 0


# ---------------------------------------------------------------------------------------------
# Simulated annotators


def test_mix_in_flaws_replaces_the_share_drawn_with_the_kinds_asked(many):
    kinds = ("chatter", "rude", "incomplete")
    mixed, counts = gold.mix_in_flaws(many, 0.5, kinds, seed=3)
    assert len(mixed) == len(many) and set(counts) <= set(kinds) and counts.get("incomplete", 0) > 0
    changed = [(old, new) for old, new in zip(many, mixed) if new.messages != old.messages]
    assert len(changed) == sum(counts.values())
    assert 0.5 * len(many) - 4 * math.sqrt(len(many) / 4) < len(changed) < 0.5 * len(many) + 4 * math.sqrt(len(many) / 4)
    for old, new in changed:  # only the last answer changes, to a flawed one, and the exact answers stay the truth
        assert new.messages[:-1] == old.messages[:-1] and new.answers == old.answers and new.family == old.family
        assert gold_reward(new, new.messages[-1]["content"]) < BEST == gold_reward(old, old.messages[-1]["content"])
    assert gold.mix_in_flaws(many, 0.5, kinds, seed=3) == (mixed, counts)  # seeded
    assert gold.mix_in_flaws(many, 0.0, kinds, seed=3) == (list(many), {})
    kept, none = gold.mix_in_flaws(many, 1.0, kinds, seed=3, fits=lambda messages: False)  # nothing fits: all clean
    assert kept == list(many) and none == {}
    with pytest.raises(ValueError, match="between 0 and 1"):
        gold.mix_in_flaws(many, 1.5, kinds, seed=0)
    with pytest.raises(ValueError, match="unknown flaws"):
        gold.mix_in_flaws(many, 0.3, ("typo",), seed=0)


def two_responses(examples: list[Example], flaw: str) -> tuple[Example, str, str]:
    example = of(examples, "reading")
    return example, example.answers[0], flawed_response(example, random.Random(0), flaw)[0]


@pytest.mark.parametrize("config", [AnnotatorConfig(0.0, 0.0, 0.25), AnnotatorConfig(0.2, 0.3, 0.25), AnnotatorConfig(0.0, 1.0, 0.5)])
def test_label_rate_is_the_bradley_terry_probability(examples, config):
    example, clean, chatter = two_responses(examples, "chatter")
    n = 4000
    pairs, skipped = label_pairs([example] * n, [[clean, chatter]] * n, config, seed=1)
    assert len(pairs) == n and not skipped
    gold_chatter, verbose_chatter = gold_reward(example, chatter), verbose_reward(gold_breakdown(example, chatter))
    assert verbose_chatter > BEST > gold_chatter  # the verbose annotators like the chatter the gold rubric charges for
    d, t = config.disagree_share, config.temperature
    q = (1 - d) / (1 + math.exp(-(BEST - gold_chatter) / t)) + d / (1 + math.exp(-(BEST - verbose_chatter) / t))
    expected = (1 - config.noise) * q + config.noise * (1 - q)
    assert label_probability(BEST, gold_chatter, BEST, verbose_chatter, config) == pytest.approx(expected)
    assert label_probability(gold_chatter, BEST, verbose_chatter, BEST, config) == pytest.approx(1 - expected)
    rate = sum(p["chosen"][0]["content"] == clean for p in pairs) / n
    assert abs(rate - expected) < SIGMAS * math.sqrt(expected * (1 - expected) / n), (rate, expected)


def test_sigmoid_never_overflows():
    assert sigmoid(0.0) == 0.5 and sigmoid(-1000.0) == 0.0 and sigmoid(1000.0) == 1.0  # a reward gap / tiny temperature
    assert sigmoid(2.0) == pytest.approx(1 / (1 + math.exp(-2.0))) and sigmoid(-2.0) == pytest.approx(1 - sigmoid(2.0))


def test_noise_one_half_gives_chance(examples):
    example, clean, wrong = two_responses(examples, "wrong")
    config = AnnotatorConfig(noise=0.5, disagree_share=0.0)
    n = 4000
    pairs, _ = label_pairs([example] * n, [[clean, wrong]] * n, config, seed=2)
    rate = sum(p["chosen"][0]["content"] == clean for p in pairs) / n
    assert abs(rate - 0.5) < SIGMAS * math.sqrt(0.25 / n)
    assert ceiling_accuracy(pairs, config) == pytest.approx(0.5)
    clear, _ = label_pairs([example] * n, [[clean, wrong]] * n, AnnotatorConfig(noise=0.0, disagree_share=0.0), seed=2)
    assert label_agreement(clear) > 0.99  # without noise, a right answer against a wrong one is a sure call


def responses_for(examples: list[Example], seed: int) -> list[list[str]]:
    """Per example: the clean answer, three flawed ones, and the clean answer again (an identical pair)."""
    rng = random.Random(seed)
    return [[e.answers[0], *(flawed_response(e, rng)[0] for _ in range(3)), e.answers[0]] for e in examples]


def test_ceiling_accuracy_matches_monte_carlo(examples):
    config = AnnotatorConfig(noise=0.15, disagree_share=0.2, temperature=0.3)
    responses = responses_for(examples, 0)
    runs = [label_pairs(examples, responses, config, seed) for seed in range(60)]
    ceilings = {round(ceiling_accuracy(pairs, config), 12) for pairs, _ in runs}
    assert len(ceilings) == 1  # the same pairs, whoever labels them
    ceiling = ceilings.pop()
    pairs = runs[0][0]
    ordered = [p for p in pairs if p["gold_chosen"] != p["gold_rejected"]]
    probabilities = [label_probability(max(p["gold_chosen"], p["gold_rejected"]), min(p["gold_chosen"], p["gold_rejected"]),
                                       *((p["verbose_chosen"], p["verbose_rejected"]) if p["gold_chosen"] > p["gold_rejected"]
                                         else (p["verbose_rejected"], p["verbose_chosen"])), config) for p in ordered]  # fmt: skip
    measured = sum(label_agreement(pairs) for pairs, _ in runs) / len(runs)
    standard_error = math.sqrt(sum(q * (1 - q) for q in probabilities)) / len(ordered) / math.sqrt(len(runs))
    assert abs(measured - ceiling) < SIGMAS * standard_error, (measured, ceiling, standard_error)
    assert 0.5 < ceiling < 1.0


def test_pairs_keep_which_answers_are_right_and_are_split_by_kind(examples):
    example = of(examples, "reading")
    clean, chatter = example.answers[0], flawed_response(example, random.Random(0), "chatter")[0]
    wrong, other = list(dict.fromkeys(flawed_response(example, random.Random(seed), "wrong")[0] for seed in range(20)))[:2]
    pairs, _ = label_pairs([example], [[clean, chatter, wrong, other]], AnnotatorConfig(), seed=0)
    right = {clean: True, chatter: True, wrong: False, other: False}
    for pair in pairs:
        assert (pair["right_chosen"], pair["right_rejected"]) == (right[pair["chosen"][0]["content"]],
                                                                  right[pair["rejected"][0]["content"]])  # fmt: skip
    kinds = Counter(pair_kind(pair) for pair in pairs)
    assert kinds == {PAIR_KINDS[0]: 4, PAIR_KINDS[1]: 1, PAIR_KINDS[2]: 1}  # right x wrong, clean x chatter, wrong x wrong
    with pytest.raises(ValueError, match="label the answers again"):
        pair_kind({k: v for k, v in pairs[0].items() if k != "right_rejected"})


def test_accuracy_by_kind_counts_each_kind_against_labels_and_gold_order(examples):
    config = AnnotatorConfig(noise=0.15, disagree_share=0.2, temperature=0.3)
    rng = random.Random(0)
    wrong = [flawed_response(e, rng, "wrong")[0] for e in examples]
    # each example's answers, and a wrong one twice: as it is, and cut off mid-sentence (which costs it more)
    responses = [[*answers, w, f"{w} and"] for answers, w in zip(responses_for(examples, 0), wrong)]
    pairs, _ = label_pairs(examples, responses, config, seed=3)
    ordered = [p for p in pairs if p["gold_chosen"] != p["gold_rejected"]]
    # The gold reward itself as the scorer: the gold order every time, the labels as often as they agree with it
    rows = {row["kind"]: row for row in accuracy_by_kind(pairs, [p["gold_chosen"] for p in pairs],
                                                         [p["gold_rejected"] for p in pairs], config)}  # fmt: skip
    assert set(rows) == {*PAIR_KINDS, "all"}  # these responses make every kind
    assert rows["all"]["pairs"] == len(ordered) == sum(rows[kind]["pairs"] for kind in PAIR_KINDS)
    assert rows["all"]["ceiling"] == pytest.approx(ceiling_accuracy(pairs, config))
    assert rows["all"]["accuracy"] == pytest.approx(label_agreement(pairs))
    for kind in PAIR_KINDS:
        mine = [p for p in ordered if pair_kind(p) == kind]
        assert rows[kind]["gold_order_accuracy"] == 1.0
        assert rows[kind]["ceiling"] == pytest.approx(ceiling_accuracy(mine, config))
        assert rows[kind]["accuracy"] == pytest.approx(label_agreement(mine))
    assert rows[PAIR_KINDS[0]]["ceiling"] > rows[PAIR_KINDS[1]]["ceiling"]  # the facts are a surer call than style
    # A scorer that always prefers the rejected answer, and one that scores everything alike (a tie is a miss)
    backwards = accuracy_by_kind(pairs, [0.0] * len(pairs), [1.0] * len(pairs), config)[-1]
    assert backwards["accuracy"] == 0.0 and backwards["gold_order_accuracy"] == pytest.approx(1 - label_agreement(pairs))
    alike = accuracy_by_kind(pairs, [1.0] * len(pairs), [1.0] * len(pairs), config)[-1]
    assert alike["accuracy"] == alike["gold_order_accuracy"] == 0.0
    with pytest.raises(ValueError, match="one score for each answer"):
        accuracy_by_kind(pairs, [0.0], [0.0], config)


def test_pairs_with_tied_gold_rewards_have_no_gold_order(examples):
    example = of(examples, "reading")
    wrong = [flawed_response(example, random.Random(seed), "wrong")[0] for seed in range(20)]
    a, b = [w for w in dict.fromkeys(wrong) if len(w.split()) == len(example.answers[0].split())][:2]
    config = AnnotatorConfig()
    tied, _ = label_pairs([example], [[a, b]], config, seed=0)  # two wrong answers of the same length: both 0
    ordered, _ = label_pairs([example], [[example.answers[0], a]], config, seed=0)
    assert tied[0]["gold_chosen"] == tied[0]["gold_rejected"] == 0
    assert ceiling_accuracy(tied + ordered, config) == ceiling_accuracy(ordered, config) > 0.85
    assert label_agreement(tied + ordered) == label_agreement(ordered)
    for measure in (lambda pairs: ceiling_accuracy(pairs, config), label_agreement):
        with pytest.raises(ValueError, match="none of the 1 pairs has a gold order"):
            measure(tied)
        with pytest.raises(ValueError, match="pair 0 has no 'gold_chosen': measuring against the gold order needs the rewards"):
            measure([{key: value for key, value in ordered[0].items() if key != "gold_chosen"}])


def test_identical_and_empty_responses_are_skipped_and_counted(examples):
    example = examples[0]
    answer, other = example.answers[0], flawed_response(example, random.Random(0), "chatter")[0]
    pairs, skipped = label_pairs([example], [[answer, answer, f"  {answer} ", "", other]], AnnotatorConfig(), seed=0)
    assert len(pairs) == 3 and skipped == {"identical": 3, "empty": 4}
    check_pairs(pairs)


def test_label_pairs_is_seeded_and_refuses_bad_input(examples):
    responses = responses_for(examples, 1)
    assert label_pairs(examples, responses, AnnotatorConfig(), 5) == label_pairs(examples, responses, AnnotatorConfig(), 5)
    assert label_pairs(examples, responses, AnnotatorConfig(), 5) != label_pairs(examples, responses, AnnotatorConfig(), 6)
    with pytest.raises(ValueError, match="give one list per example"):
        label_pairs(examples, responses[:-1], AnnotatorConfig(), 0)
    with pytest.raises(ValueError, match="must be a list of response strings"):
        label_pairs(examples[:1], ["a cook"], AnnotatorConfig(), 0)
    with pytest.raises(ValueError, match="not a string"):
        label_pairs(examples[:1], [["a cook", None]], AnnotatorConfig(), 0)
    for bad in (dict(noise=1.5), dict(disagree_share=-0.1), dict(temperature=0.0), dict(temperature=math.inf)):
        with pytest.raises(ValueError):
            AnnotatorConfig(**bad)


def test_pairs_are_trl_preference_data(examples):
    """TRL's own data utilities read the pairs: conversational, split into prompt and completions exactly as
    the course's chat format renders them, and unpaired with the gold rewards carried along."""
    data_utils = pytest.importorskip("trl.data_utils", reason="the format check needs trl")
    datasets = pytest.importorskip("datasets", reason="TRL's unpairing takes a datasets.Dataset")

    class CourseTemplate:
        """All that TRL asks of a processing class here: the course's chat format as a chat template."""

        def apply_chat_template(self, messages, tools=None, tokenize=False, add_generation_prompt=False,
                                continue_final_message=False, **kwargs):  # fmt: skip
            assert not tokenize and not continue_final_message and tools is None
            return render_chat(messages, add_generation_prompt)

    pairs, _ = label_pairs(examples, responses_for(examples, 2), AnnotatorConfig(), seed=0)
    assert {p["family"] for p in pairs} == set(JUDGED_FAMILIES) and {len(p["prompt"]) for p in pairs} >= {1, 2, 3}
    for pair in pairs:
        assert data_utils.is_conversational(pair)
        text = data_utils.maybe_apply_chat_template(pair, CourseTemplate())
        assert text["prompt"] == render_chat(pair["prompt"], add_generation_prompt=True)
        assert text["chosen"] == pair["chosen"][0]["content"] + END and text["rejected"] == pair["rejected"][0]["content"] + END
    unpaired = data_utils.unpair_preference_dataset(datasets.Dataset.from_list(pairs))
    assert len(unpaired) == 2 * len(pairs)
    def rows(items) -> Counter:
        return Counter(json.dumps(item, sort_keys=True) for item in items)

    assert rows(unpaired) == rows(
        {"prompt": p["prompt"], "completion": p[side], "label": side == "chosen", **{k: p[k] for k in p if k not in TRL_KEYS}}
        for p in pairs for side in ("chosen", "rejected")
    )  # fmt: skip


def test_check_pairs_names_the_problem_and_the_fix(examples, tmp_path):
    pairs, _ = label_pairs(examples, responses_for(examples, 3), AnnotatorConfig(), seed=0)
    check_pairs(pairs)

    def broken(**changes) -> list[dict]:
        return [pairs[0], {**pairs[1], **changes}]

    same = pairs[1]["chosen"][0]["content"]
    cases = [
        (broken(rejected=[{"role": "assistant", "content": same + " "}]), r"pair 1: chosen and rejected are the same.*drop the pair"),
        (broken(chosen=[{"role": "assistant", "content": "  "}]), r"pair 1 has an empty chosen completion.*drop the empty"),
        (broken(rejected=[]), r"pair 1: rejected must be one assistant turn"),
        (broken(gold_chosen=math.nan), r"pair 1 has gold_chosen = nan: a reward must be a finite number"),
        (broken(verbose_rejected=-math.inf), r"pair 1 has verbose_rejected = -inf"),
        (broken(gold_rejected="1.5"), r"pair 1 has gold_rejected = '1.5'"),
        (broken(prompt=pairs[1]["prompt"] + pairs[1]["chosen"]), r"pair 1: its prompt and chosen answer are not a conversation"),
        ([{"prompt": pairs[0]["prompt"], "chosen": pairs[0]["chosen"]}], r"pair 0 must be a dict with the keys"),
    ]  # fmt: skip
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            check_pairs(bad)
        with pytest.raises(ValueError, match=message):
            save_pairs(tmp_path / "bad.jsonl", bad)
    assert not (tmp_path / "bad.jsonl").exists()
    with pytest.raises(ValueError, match="must be a list of preference dicts"):
        check_pairs(pairs[0])


def test_pairs_survive_saving_and_loading(examples, tmp_path):
    pairs, _ = label_pairs(examples, responses_for(examples, 4), AnnotatorConfig(), seed=0)
    path = save_pairs(tmp_path / "pairs.jsonl", pairs)
    assert load_pairs(path) == pairs and not list(tmp_path.glob(".*.tmp"))
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1].replace('"gold_chosen": ', '"gold_chosen": NaN, "x": ')]) + "\n")
    with pytest.raises(ValueError, match="pair 1 has gold_chosen = nan"):
        load_pairs(path)
    path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2] + "\n")  # cut mid-line, as a crash could without atomic writes
    with pytest.raises(ValueError, match="line 2: not a JSON object"):
        load_pairs(path)
