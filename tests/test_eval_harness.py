"""The evaluation harness (minilm.eval) against lm-evaluation-harness itself: the same requests split
into the same tokens, the same rolling windows, the same log-likelihoods, and the same acc, acc_norm
and bits per byte when lm-eval runs the world's tasks from its own task configs on the same model."""

from __future__ import annotations

import json
import math
import random
import re

import pytest

from minilm.eval import harness, metrics
from minilm.eval.tasks import (answer_docs, check_docs, cloze_docs, contamination, domain_docs, question_docs,
                               run_generation, run_multiple_choice, run_perplexity)
from minilm.model import GPT
from minilm.tokenizer import Tokenizer
from minilm.world import split_stories

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is in requirements.txt: pip install -r requirements.txt")
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window  # noqa: E402

from minilm.eval.lm_eval_model import LmEvalModel, write_task  # noqa: E402
from spread import small_gpt

CONTEXT = 48  # short, so that stories need several rolling windows and long contexts are cut


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([text for text, _ in split_stories("sft_val", 20)], 400)


@pytest.fixture(scope="module")
def model(tokenizer) -> GPT:
    """A small GPT with larger weights than the init's, so that log-likelihoods differ from choice to choice."""
    return small_gpt(tokenizer.vocab_size, CONTEXT, 0.2)


def instances(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


REQUESTS = [
    ("Tom had a red", " ball"),
    ("Tom had a red ", "ball"),  # the trailing space moves to the continuation
    ("Tom had a red  ", "ball."),
    ("", "Once upon a time"),  # an empty context is the end-of-text token
    ("Q: Where did Mia go?\nA:", " to the park"),
]


def test_requests_split_into_the_tokens_lm_eval_splits_them_into(model, tokenizer):
    adapter = LmEvalModel(model, tokenizer)
    for context, continuation in REQUESTS:
        if context:
            expected = adapter._encode_pair(context, continuation)
        else:
            expected = ([adapter.prefix_token_id], adapter.tok_encode(continuation))
        assert harness.encode_pair(tokenizer, context, continuation) == expected


@pytest.mark.parametrize("context", [1, 2, 3, 7, 48])
def test_rolling_windows_are_lm_evals(context):
    rng = random.Random(context)
    for length in [0, 1, 2, context - 1, context, context + 1, 3 * context + 2, 100]:
        if length < 0:
            continue
        tokens = [rng.randrange(5, 50) for _ in range(length)]
        expected = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, 0, context, 1)]
        windows = harness.rolling_windows(tokens, 0, context)
        assert windows == [(list(a), list(b)) for a, b in expected]
        assert [t for _, predicted in windows for t in predicted] == tokens  # every token predicted once


def test_batched_scores_equal_one_request_at_a_time(model, tokenizer):
    """Right padding changes nothing for a causal model; contexts longer than the window keep their end."""
    stories = [text for text, _ in split_stories("test", 6)]
    requests = REQUESTS + [(story[:300], " and") for story in stories] + [(stories[0][:40], stories[0][40:120])]
    ours = harness.loglikelihood(model, tokenizer, requests, batch_size=4)
    theirs = LmEvalModel(model, tokenizer).loglikelihood(instances("loglikelihood", requests), disable_tqdm=True)
    assert [greedy for _, greedy in ours] == [greedy for _, greedy in theirs]
    assert [ll for ll, _ in ours] == pytest.approx([ll for ll, _ in theirs], abs=1e-4)


def test_rolling_loglikelihood_equals_lm_evals(model, tokenizer):
    texts = [text for text, _ in split_stories("test", 5)] + ["Tom.", "a"]
    ours = harness.loglikelihood_rolling(model, tokenizer, texts, batch_size=3)
    theirs = LmEvalModel(model, tokenizer).loglikelihood_rolling(instances("loglikelihood_rolling", [(t,) for t in texts]))
    assert ours == pytest.approx(theirs, abs=1e-4)
    # one window's worth of text: the rolling log-likelihood is the log-likelihood after end-of-text
    assert harness.loglikelihood_rolling(model, tokenizer, ["Tom."])[0] == pytest.approx(
        harness.loglikelihood(model, tokenizer, [("", "Tom.")])[0][0], abs=1e-5)


def test_generation_is_batched_greedy_and_cut_at_the_stop_strings(model, tokenizer):
    contexts = ["Once upon a time", "Tom had a", "The", "Mia went to the park with her dog and"]
    requests = [(c, ["."]) for c in contexts]
    ours = harness.generate_until(model, tokenizer, requests, max_new_tokens=12, batch_size=3)
    adapter = LmEvalModel(model, tokenizer)
    theirs = adapter.generate_until(instances("generate_until", [(c, {"until": ["."], "max_gen_toks": 12})
                                                                 for c in contexts]))
    assert ours == theirs
    assert all("." not in answer for answer in ours)
    assert harness.cut_at_stops("yes. no\nmaybe", ["\n", "."]) == "yes"
    assert harness.cut_at_stops("yes", []) == "yes"


@pytest.fixture(scope="module")
def lm_eval_results(model, tokenizer, tmp_path_factory):
    """lm-eval's own run of the cloze and a perplexity task, from task configs over JSON lines."""
    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    cloze = cloze_docs(60, seed=1)
    texts = [{"text": text} for text, _ in split_stories("test", 8)]
    write_task(folder, "minilm_cloze", cloze, "multiple_choice")
    write_task(folder, "minilm_stories_ppl", texts, "perplexity")
    results = lm_eval.simple_evaluate(
        model=LmEvalModel(model, tokenizer), tasks=["minilm_cloze", "minilm_stories_ppl"], num_fewshot=0,
        task_manager=lm_eval.tasks.TaskManager(include_path=str(folder), include_defaults=False),
        log_samples=True, bootstrap_iters=0,
    )  # fmt: skip
    return cloze, texts, results


def test_multiple_choice_gives_lm_evals_acc_and_acc_norm(model, tokenizer, lm_eval_results):
    cloze, _, results = lm_eval_results
    ours = run_multiple_choice(model, tokenizer, cloze, batch_size=7)
    theirs = results["results"]["minilm_cloze"]
    assert len(cloze) >= 15 and ours["n"] == len(results["samples"]["minilm_cloze"])
    assert ours["acc"] == theirs["acc,none"] and ours["acc_norm"] == theirs["acc_norm,none"]
    samples = sorted(results["samples"]["minilm_cloze"], key=lambda s: s["doc_id"])
    for lls, sample in zip(ours["loglikelihoods"], samples):
        assert lls == pytest.approx([float(r[0][0]) for r in sample["resps"]], abs=1e-4)


def test_perplexity_gives_lm_evals_bits_per_byte(model, tokenizer, lm_eval_results):
    _, texts, results = lm_eval_results
    ours = run_perplexity(model, tokenizer, texts, bootstrap_iterations=50)
    theirs = results["results"]["minilm_stories_ppl"]
    for name in ("bits_per_byte", "byte_perplexity", "word_perplexity"):
        assert ours[name] == pytest.approx(theirs[f"{name},none"], rel=1e-5)
    assert 0 < ours["bits_per_byte_stderr"] < ours["bits_per_byte"]


def test_acc_and_acc_norm_disagree_where_a_long_answer_wins_per_character():
    lls, choices = [-6.0, -4.0], ["teddy bear", "cup"]
    assert metrics.acc(lls, 0) == 0.0 and metrics.acc_norm(lls, choices, 0) == 1.0
    assert metrics.choice_index([-1.0, -1.0]) == 0  # ties go to the first choice, as numpy's argmax


def test_the_gap_between_groups_has_the_two_standard_errors_in_quadrature():
    gap = metrics.group_gap([1, 1, 0, 1, 0, 0, 0, 1], list("ffffmmmm"), "f", "m")
    assert (gap["f"], gap["m"], gap["gap"]) == (0.75, 0.25, 0.5) and gap["n"] == {"f": 4, "m": 4}
    assert gap["gap_stderr"] == pytest.approx(math.sqrt(2 * metrics.mean_stderr([1, 1, 0, 1]) ** 2))
    with pytest.raises(ValueError, match="both groups"):
        metrics.group_gap([1.0], ["f"], "f", "m")


def test_metrics_equal_lm_evals_definitions():
    from lm_eval.api import metrics as lm_metrics

    rng = random.Random(0)
    scores = [float(rng.random() < 0.7) for _ in range(50)]
    assert metrics.mean_stderr(scores) == pytest.approx(lm_metrics.mean_stderr(scores), rel=1e-12)
    lls, texts = [-rng.uniform(10, 90) for _ in range(6)], ["ab cd", "é and ü", "x" * 40, "a\nb", "one", "two"]
    pooled = [(ll, metrics.byte_count(t)) for ll, t in zip(lls, texts)]
    assert metrics.bits_per_byte(lls, texts) == pytest.approx(lm_metrics.bits_per_byte(pooled), rel=1e-12)
    assert metrics.byte_perplexity(lls, texts) == pytest.approx(lm_metrics.weighted_perplexity(pooled), rel=1e-12)
    assert metrics.byte_perplexity(lls, texts) == pytest.approx(2 ** metrics.bits_per_byte(lls, texts), rel=1e-12)
    low, high = metrics.interval(0.5, 0.1)
    assert (low, high) == pytest.approx((0.304, 0.696))
    assert metrics.bootstrap_stderr(metrics.mean, [1.0] * 10) == 0.0


def test_the_cloze_task_names_the_object_twice_and_shuffles_the_gold_index():
    docs = cloze_docs(80, seed=3)
    assert len(docs) >= 15
    assert len({doc["gold"] for doc in docs}) == 4  # the answer is not always in one place
    for doc in docs:
        assert doc["choices"][doc["gold"]] in doc["context"] and not doc["context"].endswith(" ")
    assert docs == cloze_docs(80, seed=3)


def test_story_questions_are_answered_by_their_paragraph_and_not_by_the_wrong_choices():
    docs = question_docs(60, seed=0)
    assert len(docs) >= 60
    for doc in docs:
        assert doc["context"].endswith("\nAnswer:")
        wrong = [c for i, c in enumerate(doc["choices"]) if i != doc["gold"]]
        assert not any(re.search(rf"\b{c.split()[-1]}\b", doc["context"], re.IGNORECASE) for c in wrong)
        assert re.search(rf"\b{doc['choices'][doc['gold']].split()[-1]}\b", doc["context"], re.IGNORECASE)
    short = question_docs(60, seed=0, fits=lambda prompt: len(prompt) < 300)
    assert 0 < len(short) < len(docs)
    answers = answer_docs(60)
    assert {d["context"] for d in docs} <= {a["prompt"] for a in answers}
    assert all(a["answers"] for a in answers)
    assert {d["group"] for d in docs} == {a["group"] for a in answers} == {"female", "male"}


def test_generation_scores_exact_match_after_normalisation(model, tokenizer, monkeypatch):
    docs = [{"prompt": "Q: job?\nA:", "answers": ["a doctor", "doctor"]}, {"prompt": "Q: who?\nA:", "answers": ["Ali"]}]
    monkeypatch.setattr(harness, "generate_until", lambda *args, **kwargs: [" The Doctor.", "Tom"])
    result = run_generation(model, tokenizer, docs)
    assert result["exact_match"] == 0.5 and result["exact_match_stderr"] == pytest.approx(0.5)


def test_domain_documents_come_from_the_validation_file(tmp_path):
    lines = [{"id": str(i), "domain": d, "text": t} for i, (d, t) in
             enumerate([("books", "a" * 60), ("books", "b" * 60), ("code", "x = 1"), ("web", ""), ("books", "c")])]
    path = tmp_path / "val.jsonl"
    path.write_text("".join(__import__("json").dumps(line) + "\n" for line in lines))
    assert domain_docs(path, max_chars=100) == {"books": [{"text": "a" * 60}, {"text": "b" * 60}],
                                                "code": [{"text": "x = 1"}]}
    path.write_text('{"domain": "books", "text": "a"}\n{"domain": "boo')
    with pytest.raises(ValueError, match="line 2: not a document.*rebuild the data stage"):
        domain_docs(path)


def test_the_contamination_scan_counts_uncommon_13_grams_only():
    leaked = "the quick brown fox jumps over the lazy dog near the old mill by the river"
    common = "once upon a time there was a little girl who lived in a small town"
    train = [f"Intro. {leaked}. Outro.", *(f"{common} number {i}" for i in range(12))]
    prompts = [f"Q: {leaked}?", f"Q: {common}?", "Q: nothing shared here at all, not even one long run of words"]
    counts = contamination(prompts, train, max_documents=10)
    assert counts[0] == 4 and counts[1] == 0 and counts[2] == 0  # 16 words: four 13-grams, all leaked
    assert contamination(prompts, train, max_documents=None)[1] > 0  # counted when common phrasing counts too


@pytest.mark.parametrize("docs, kind, message", [
    ([{"context": "a", "choices": ["x", "y"]}], "multiple_choice", "no gold field"),
    ([{"context": "a", "choices": ["x", "x"], "gold": 0}], "multiple_choice", "duplicate choices"),
    ([{"context": "a", "choices": ["x", ""], "gold": 0}], "multiple_choice", "non-empty choices"),
    ([{"context": "a", "choices": ["x", "y"], "gold": 2}], "multiple_choice", "index into its 2 choices"),
    ([{"text": ""}], "perplexity", "empty text"),
    ([], "perplexity", "no documents"),
    ([{"text": "a"}], "cloze", "unknown task kind"),
    ([{"prompt": "a", "answers": [""]}], "generation", "empty answer"),
])  # fmt: skip
def test_bad_task_documents_are_named(docs, kind, message):
    with pytest.raises(ValueError, match=message):
        check_docs(docs, kind)


def test_a_task_file_reads_back_and_its_faults_are_named_with_the_line(tmp_path):
    from minilm.eval.tasks import read_task

    docs = cloze_docs(30, seed=2)
    write_task(tmp_path, "cloze", docs, "multiple_choice")
    path = tmp_path / "cloze.jsonl"
    assert read_task(path, "multiple_choice") == docs
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # cut off mid-line, as a crash while writing would
    with pytest.raises(ValueError, match=rf"line {len(docs)}: not a JSON document \(the file ends mid-line"):
        read_task(path, "multiple_choice")
    path.write_text(text.replace('"gold": ', '"answer": ', 1))
    with pytest.raises(ValueError, match="cloze.jsonl: document 0 of the multiple_choice task has no gold field"):
        read_task(path, "multiple_choice")
    path.write_text(json.dumps({"text": "a lone surrogate \ud800 here"}) + "\n")  # valid JSON, not valid Unicode
    with pytest.raises(ValueError, match="no tokenizer can encode"):
        read_task(path, "perplexity")
    with pytest.raises(ValueError, match="text that no tokenizer can encode"):
        check_docs([{"context": "a", "choices": ["x", "y\udfff"], "gold": 0}], "multiple_choice")


def test_requests_that_cannot_be_scored_are_named(model, tokenizer):
    with pytest.raises(ValueError, match="empty continuation"):
        harness.score_tokens(model, [([1, 2], [])])
    with pytest.raises(ValueError, match="rolling log-likelihood instead"):
        harness.score_tokens(model, [([1], [5] * (CONTEXT + 1))])
    with pytest.raises(ValueError, match="leaves no room"):
        harness.generate_until(model, tokenizer, [("a", ["."])], max_new_tokens=CONTEXT)
    assert math.isclose(harness.loglikelihood_rolling(model, tokenizer, [""])[0], 0.0)
