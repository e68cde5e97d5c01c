"""The bias probes (minilm.eval.bias): minimal pairs differ only in gender, the scores are what their
definitions say on models built to prefer one side, and the two corpora differ only by stage 1's debias step."""

from __future__ import annotations

import re
import zlib

import pytest

from minilm.data.filters.bias import job_gender
from minilm.eval import bias
from minilm.tokenizer import Tokenizer
from minilm.world import NAME_SWAPS, NAMES, STEREOTYPED_GENDER, split_stories

from spread import small_gpt


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([text for text, _ in split_stories("sft_val", 20)], 400)


def _changed(first: str, second: str) -> list[tuple[str, str]]:
    words, swapped = first.split(), second.split()
    assert len(words) == len(swapped)
    return [(a.strip("."), b.strip(".")) for a, b in zip(words, swapped) if a != b]


def test_a_minimal_pair_differs_only_in_the_name_and_the_pronoun_and_its_control_only_in_the_job():
    pairs = bias.minimal_pairs(200, seed=1)
    assert len(pairs) == 200 and pairs == bias.minimal_pairs(200, seed=1)
    swap = {**NAME_SWAPS, "she": "he", "he": "she"}
    for pair in pairs:
        for key in ("", "control_"):
            changed = _changed(pair[f"{key}stereotype"], pair[f"{key}anti"])
            assert len(changed) == 2 and all(swap[a] == b for a, b in changed)
        job = next(j for j in STEREOTYPED_GENDER if re.search(rf"\b(a|an) {j}\b", pair["stereotype"]))
        pronoun = {"female": "she", "male": "he"}[STEREOTYPED_GENDER[job]]
        assert f" {pronoun} " in pair["stereotype"] and f" {pronoun} " in pair["control_stereotype"]
        control_job = next(j for j in bias.NEUTRAL_JOBS if re.search(rf"\b(a|an) {j}\b", pair["control_stereotype"]))
        assert pair["control_stereotype"].split()[:2] == pair["stereotype"].split()[:2] and control_job != job


class Fixed:
    """Stands in for the harness: log-likelihoods from a rule, to check the scores' arithmetic."""

    def __init__(self, rule):
        self.rule = rule

    def __call__(self, model, tokenizer, requests, batch_size=32):
        return [(self.rule(context, continuation), False) for context, continuation in requests]


def _stereotyped(text: str) -> bool:
    return any(re.search(rf"\b(a|an) {j}\b", text) for j in STEREOTYPED_GENDER)


def _is_she(text: str) -> bool:
    return " she " in text or any(f" {name}" in text for name in NAMES["female"])


def test_crows_pairs_counts_what_the_job_adds_to_a_preference_for_one_gender(monkeypatch):
    pairs = bias.minimal_pairs(300, seed=2)
    women_first = sum(STEREOTYPED_GENDER[next(j for j in STEREOTYPED_GENDER if f" {j} " in p["stereotype"]
                                             or f" {j}." in p["stereotype"])] == "female" for p in pairs) / len(pairs)
    # a model that prefers "she" after every job has no stereotype, though CrowS-Pairs' own count says it does
    monkeypatch.setattr(bias.harness, "loglikelihood", Fixed(lambda c, x: -1.0 if _is_she(x) else -2.0))
    result = bias.crows_pairs(None, None, pairs, resamples=200)
    assert result["share"] == 0.0 and result["raw"] == pytest.approx(women_first)
    assert result["control"] == pytest.approx(women_first)
    # one that prefers the stereotyped gender only after the stereotyped jobs is caught on every pair
    def stereotyped(c, x):
        job = next((j for j in STEREOTYPED_GENDER if re.search(rf"\b(a|an) {j}\b", x)), None)
        return 0.0 if job is None else (-1.0 if _is_she(x) == (STEREOTYPED_GENDER[job] == "female") else -2.0)
    monkeypatch.setattr(bias.harness, "loglikelihood", Fixed(stereotyped))
    result = bias.crows_pairs(None, None, pairs, resamples=200)
    assert result["share"] == result["raw"] == 1.0 and result["low"] == 1.0
    # and the interval holds the share, narrower with more pairs
    flips = Fixed(lambda c, x: (zlib.crc32(x.encode()) % 7) / 7.0)
    monkeypatch.setattr(bias.harness, "loglikelihood", flips)
    result = bias.crows_pairs(None, None, pairs, resamples=200)
    assert result["low"] <= result["share"] <= result["high"] and result["high"] - result["low"] < 0.15


def test_stereoset_scores_follow_their_definitions(monkeypatch):
    # the stereotyped name after a stereotyped job, an even choice after any other: lms 100, ss 100, ICAT 0
    def stereotyped(context, continuation):
        if continuation.strip() not in NAMES["female"] + NAMES["male"]:
            return -5.0
        job = next((j for j in STEREOTYPED_GENDER if re.search(rf"\b(a|an) {j}\b", context)), None)
        if job is None:
            return -1.0
        return -1.0 if _is_she(continuation) == (STEREOTYPED_GENDER[job] == "female") else -2.0
    monkeypatch.setattr(bias.harness, "loglikelihood", Fixed(stereotyped))
    result = bias.stereoset(None, None)
    assert (result["lms"], result["ss"], result["ss_raw"], result["icat"]) == (100.0, 100.0, 100.0, 0.0)
    assert result["n"] == len(STEREOTYPED_GENDER) * len(NAMES["female"]) * len(bias.OPENERS)
    # women's names win everywhere and the unrelated word beats them: ss 0 against the control, lms 0
    monkeypatch.setattr(bias.harness, "loglikelihood", Fixed(lambda c, x: -1.0 if _is_she(x) else (0.0 if
                        x.strip() not in NAMES["male"] else -2.0)))
    result = bias.stereoset(None, None)
    men = sum(g == "male" for g in STEREOTYPED_GENDER.values()) / len(STEREOTYPED_GENDER)
    assert result["lms"] == 0.0 and result["ss"] == 0.0 and result["ss_raw"] == pytest.approx(100 * (1 - men))


def test_bbq_questions_are_balanced_and_their_context_names_the_answer_or_nobody():
    questions = bias.bbq_questions(400, seed=3)
    assert questions == bias.bbq_questions(400, seed=3) and sum(q["ambiguous"] for q in questions) == 200
    female = sum(STEREOTYPED_GENDER[re.search(r"Who was the ([a-z ]+)\?", q["context"]).group(1)] == "female"
                 for q in questions)
    assert 160 < female < 240  # the stereotype's gender drawn half and half: a preference for one gender cancels
    for q in questions:
        stereotype, anti, unknown = q["choices"]
        assert NAME_SWAPS[stereotype] == anti and unknown == bias.UNKNOWN
        job = re.search(r"Who was the ([a-z ]+)\?", q["context"]).group(1)
        assert _is_she(" " + stereotype) == (STEREOTYPED_GENDER[job] == "female")
        told = re.search(rf"([A-Z]\w+) was an? {job},", q["context"])
        if q["ambiguous"]:
            assert told is None and q["gold"] == 2 and q["stereotypical"] is None
        else:
            assert q["choices"][q["gold"]] == told.group(1) and q["stereotypical"] == (q["gold"] == 0)


def test_bbq_scores_follow_their_definitions(monkeypatch):
    questions = bias.bbq_questions(200, seed=4)
    # always the stereotype: right on every stereotypical context, wrong on the others, bias 100 both ways
    scores = bias.bbq_scores(questions, [0] * len(questions))
    assert (scores["acc_ambiguous"], scores["acc_stereotypical"], scores["acc_anti"]) == (0.0, 100.0, 0.0)
    assert scores["bias_disambiguated"] == scores["bias_ambiguous"] == 100.0
    # always "does not say": right on every ambiguous context, no bias
    scores = bias.bbq_scores(questions, [2] * len(questions))
    assert (scores["acc_ambiguous"], scores["acc_disambiguated"], scores["unknown"]) == (100.0, 0.0, 100.0)
    assert scores["bias_ambiguous"] == scores["bias_disambiguated"] == 0.0
    # reads the context, and names the one against the stereotype when it says nothing: s_AMB = (1 - 0) * -100
    picked = [1 if q["ambiguous"] else q["gold"] for q in questions]
    scores = bias.bbq_scores(questions, picked)
    assert scores["acc_disambiguated"] == 100.0 and scores["bias_ambiguous"] == -100.0
    half = sum(q["stereotypical"] is True for q in questions) / sum(not q["ambiguous"] for q in questions)
    assert scores["bias_disambiguated"] == pytest.approx(100 * (2 * half - 1))
    # through the model: log-likelihoods that favour the stereotype's name are caught, with an interval
    monkeypatch.setattr(bias.harness, "loglikelihood", Fixed(
        lambda c, x: -1.0 if x.strip() == next(q for q in questions if q["context"] == c)["choices"][0] else -2.0))
    result = bias.bbq(None, None, questions, resamples=100)
    assert result["bias_ambiguous"] == 100.0 and result["bias_ambiguous_interval"] == (100.0, 100.0)


def test_probes_run_on_a_real_model(tokenizer):
    model = small_gpt(tokenizer.vocab_size, 128, 0.2)
    result = bias.probe(model, tokenizer, n_pairs=20, resamples=50)
    assert set(result) == {"crows", "stereoset", "bbq"}
    assert -100 <= result["bbq"]["bias_ambiguous_interval"][0] <= result["bbq"]["bias_ambiguous_interval"][1] <= 100
    assert 0 <= result["crows"]["low"] <= result["crows"]["share"] <= result["crows"]["high"] <= 1
    assert 0 <= result["stereoset"]["icat"] <= 100


def test_the_debias_step_evens_out_the_stories_and_changes_nothing_else():
    skewed, balanced = bias.bias_corpus(300, "none"), bias.bias_corpus(300, "substitute")
    assert len(skewed) == len(balanced) == 300
    assert skewed == [text for text, _ in split_stories("pretrain", 300)]  # stage 1's own stories

    def stereotyped_share(texts):
        hits = [STEREOTYPED_GENDER[job] == gender for text in texts
                if (found := job_gender(text)) and (job := found[0]) in STEREOTYPED_GENDER and (gender := found[1])]
        return sum(hits) / len(hits)

    assert stereotyped_share(skewed) > 0.7 and abs(stereotyped_share(balanced) - 0.5) < 0.1
    assert sum(a != b for a, b in zip(skewed, balanced)) < 100  # only the swapped stories change
