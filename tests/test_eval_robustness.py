"""CheckList's tests (minilm.eval.robustness): each perturbation changes what it says and nothing else, a changed
fact changes the answer, and the failure rates and HELM's worst case count what their definitions say."""

from __future__ import annotations

import random
import re

import pytest

from minilm.eval import robustness
from minilm.finetune.tasks import normalize_answer
from minilm.tokenizer import Tokenizer
from minilm.world import NAMES, split_stories

from spread import small_gpt


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    return robustness.story_questions(40)


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z']+", text)


def test_templated_questions_are_answered_by_their_passage():
    found = robustness.templated(40, seed=1)
    assert found == robustness.templated(40, seed=1) and len(found) == 40
    for q in found:
        assert normalize_answer(q["answers"][0]) in normalize_answer(q["paragraph"])
        hero = re.search(r"\b([A-Z][a-z]+)(?:'s| go| feel)", q["question"]).group(1)
        assert hero in q["paragraph"] and hero in NAMES[q["group"]]


def test_invariance_perturbations_change_the_form_and_keep_the_facts(questions):
    rng = random.Random(0)
    for q in questions:
        typo = robustness.typos(q, rng)
        assert typo["question"] == q["question"] and typo["answers"] == q["answers"]
        changed = [(a, b) for a, b in zip(_words(q["paragraph"]), _words(typo["paragraph"])) if a != b]
        assert changed and all(sorted(a) == sorted(b) and a[0] == b[0] for a, b in changed)  # letters swapped
        assert all(normalize_answer(a) in normalize_answer(typo["paragraph"]) or a not in q["paragraph"]
                   for a in q["answers"])
        assert robustness.lower_case(q, rng)["paragraph"] == q["paragraph"].lower()
        assert robustness.extra_spaces(q, rng)["paragraph"].split() == q["paragraph"].split()
        assert robustness.irrelevant_sentence(q, rng)["paragraph"].startswith(q["paragraph"])
        renamed = robustness.other_names(q, rng)
        swap = renamed["renamed"]
        assert swap and all((a in NAMES["female"]) == (b in NAMES["female"]) for a, b in swap.items())
        assert not any(re.search(rf"\b{name}\b", renamed["paragraph"] + renamed["question"]) for name in swap)
        assert robustness._renamed(q["answers"][0], renamed) == renamed["answers"][0]
    contracted = [c for q in questions if (c := robustness.contractions(q, rng))]
    assert contracted and all("n't" in c["paragraph"] or "'s" in c["paragraph"] or "'ll" in c["paragraph"]
                              or " not " in c["paragraph"] for c in contracted)
    assert robustness.contractions({"paragraph": "Mia ran home.", "question": "", "answers": ["x"]}, rng) is None


def test_a_changed_fact_changes_the_answer_in_the_passage(questions):
    changed = robustness.changed_facts(questions, seed=2)
    assert len(changed) > len(questions) // 2
    for i, c in changed:
        old, new = questions[i]["answers"][0], c["answers"][0]
        assert normalize_answer(old) != normalize_answer(new) and c["before"] == questions[i]["answers"]
        assert re.search(rf"\b{re.escape(new)}\b", c["paragraph"]) and not re.search(rf"\b{re.escape(old)}\b", c["paragraph"])
        assert c["question"] == questions[i]["question"]


def test_failure_rates_and_the_worst_case_follow_their_definitions(questions, monkeypatch):
    # a rule stands in for the model: right on every question as written, wrong when the passage is in lower
    # case, and unmoved by a changed fact
    def rule(model, tokenizer, qs, chat, max_new_tokens=16, batch_size=32):
        said = []
        for q in qs:
            if q["paragraph"].islower():
                said.append("no idea")
            elif "before" in q:
                said.append(q["before"][0])
            else:
                said.append(q["answers"][0])
        return said, [float(normalize_answer(s) in map(normalize_answer, q["answers"])) for s, q in zip(said, qs)]

    monkeypatch.setattr(robustness, "answers", rule)
    r = robustness.run_checklist(None, None, questions, 20, chat=True, seed=3)
    assert r["original"]["exact_match"] == 1.0 and r["tests"]["templated questions"]["failure_rate"] == 0.0
    assert r["tests"]["lower case"]["failure_rate"] == 1.0 and r["tests"]["typos"]["failure_rate"] == 0.0
    assert r["tests"]["other names"]["failure_rate"] == 0.0  # the renamed answer is the same answer
    assert r["tests"]["changed fact"]["failure_rate"] == 1.0 and r["tests"]["changed fact"]["kind"] == "DIR"
    assert r["worst_case"]["exact_match"] == 0.0  # every question fails in lower case
    assert r["tests"]["lower case"]["examples"][0]["answer_after"] == "no idea"


def test_the_checklist_runs_on_a_real_model(questions):
    tokenizer = Tokenizer.train([text for text, _ in split_stories("sft_val", 20)], 400)
    model = small_gpt(tokenizer.vocab_size, 256, 0.2)
    r = robustness.run_checklist(model, tokenizer, questions[:8], 4, chat=False, max_new_tokens=4)
    assert {t["kind"] for t in r["tests"].values()} == {"MFT", "INV", "DIR"}
    assert r["worst_case"]["exact_match"] <= r["original"]["exact_match"]
