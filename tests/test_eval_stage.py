"""Stage 8 end to end with the ci preset: every model on every benchmark, cached, and its report card."""

from __future__ import annotations

import math

import pytest

from minilm.eval import report
from minilm.eval.stage import BASE, EvalConfig, run_eval_stage
from minilm.eval.tasks import run_multiple_choice
from minilm.finetune.tasks import FAMILIES

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINILM_HOME", str(tmp_path_factory.mktemp("home")))
        built = run_eval_stage("ci", progress=False)
        again = run_eval_stage("ci", progress=False)
        yield built, again


def test_every_model_is_scored_on_every_benchmark(stage):
    built, again = stage
    assert not built.reused and again.reused and again.key == built.key
    r = report.results(built)
    assert r["order"] == [BASE, "SFT", "LoRA", "DPO", "PPO", "GRPO"] and set(r["models"]) == set(r["order"])
    tasks = set(r["documents"])
    assert {"cloze", "questions", "answers"} <= tasks and {"bpb:books", "bpb:code"} <= tasks
    assert list(r["bias"]) == ["stories, debias none", "stories, debias substitute", "the course's base model"]
    assert all(set(p) == {"crows", "stereoset", "bbq"} for p in r["bias"].values())
    assert r["seconds"]["bias"] > 0
    assert not (built.path.parent / ".evaluate-work" / "bias-none").exists()  # removed once finished
    assert set(r["contamination"]) == tasks and all(0 <= share <= 1 for share in r["contamination"].values())
    assert set(r["languages"]) == set(r["order"])  # every model on the same stories in English and in Spanish
    for name, languages in r["languages"].items():
        assert set(languages) == {"English", "Spanish", "gap"}, name
        assert languages["English"]["n"] == languages["Spanish"]["n"] == EvalConfig.from_preset("ci").language_stories
        assert all(0 < languages[language]["bits_per_byte"] < 16 for language in ("English", "Spanish"))
    for name, scores in r["models"].items():
        assert set(scores) == tasks, name
        for task, s in scores.items():
            assert s["n"] == r["documents"][task] > 0
            if task.startswith("bpb:"):
                assert 0 < s["bits_per_byte"] < 8 and s["stderr"] >= 0
            elif task == "instructions":
                assert set(s["by_family"]) == set(FAMILIES)
                assert s["exact_match"] == pytest.approx(
                    sum(f["exact_match"] * f["n"] for f in s["by_family"].values()) / s["n"])
            elif task == "answers":
                assert 0 <= s["exact_match"] <= 1
                g = s["by_gender"]
                assert g["n"]["female"] + g["n"]["male"] == s["n"]
                assert s["exact_match"] == pytest.approx((g["female"] * g["n"]["female"] + g["male"] * g["n"]["male"]) / s["n"])
            else:
                n, p = s["n"], s["acc"]
                assert s["acc_stderr"] == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else 0.0)


def test_stage_6s_instructions_score_as_stage_6_scored_them(stage):
    """The rebuilt test examples are stage 6's: the SFT and LoRA models score what stage 6 recorded."""
    import json

    from minilm.finetune.stage import RESULTS as FINETUNE_RESULTS

    built, _ = stage
    r = report.results(built)
    finetune = json.loads((built.path.parent / "finetune" / FINETUNE_RESULTS).read_text())
    for name in ("SFT", "LoRA"):
        ours = r["models"][name]["instructions"]
        assert ours["n"] == finetune["examples"]["test"]
        assert ours["exact_match"] == pytest.approx(finetune["models"][name]["scores"]["all"])


def test_robustness_runs_every_checklist_test_on_every_model(stage):
    built, _ = stage
    r = report.results(built)
    assert set(r["robustness"]) == set(r["order"])
    for name, checks in r["robustness"].items():
        kinds = {t["kind"] for t in checks["tests"].values()}
        assert kinds == {"MFT", "INV", "DIR"}, name
        assert {"typos", "lower case", "other names", "irrelevant sentence"} <= set(checks["tests"])
        assert checks["worst_case"]["exact_match"] <= checks["original"]["exact_match"]
        assert all(0 <= t["failure_rate"] <= 1 and t["n"] > 0 for t in checks["tests"].values())
    rows = report.robustness_rows(built)
    assert len(rows) == len(r["order"]) and all("[" in row["INV: typos"] for row in rows)


def test_the_rating_round_rates_every_model_from_votes_on_disk(stage):
    from minilm.eval import human
    from minilm.eval.stage import JUDGE, RATERS, VOTES

    built, _ = stage
    h = report.results(built)["human"]
    votes = human.read_votes(built.path / VOTES, h["models"])
    assert len(votes) == sum(h["votes"].values()) and {v["rater"] for v in votes} == {*RATERS, JUDGE}
    rated = [v for v in votes if v["rater"] in RATERS]
    assert h["ratings"] == pytest.approx(human.bradley_terry(rated, h["models"]))  # the card's ratings are the votes'
    assert set(h["ratings"]) == set(h["models"]) == set(report.results(built)["order"])
    assert all(i["lower"] <= h["ratings"][m] + 1e-6 and h["ratings"][m] - 1e-6 <= i["upper"]
               for m, i in h["intervals"].items())
    assert -1 <= h["agreement"]["rater 1 and rater 2"]["kappa"] <= 1
    assert len(report.human_rows(built)) == len(h["models"]) and len(report.rater_rows(built)) == 4
    shown = [float(row["Bradley-Terry [95% CI]"].split()[0]) for row in report.human_rows(built)]
    assert shown == sorted(shown, reverse=True)  # best first, though results.json sorts its keys by name


def test_the_rating_round_asks_the_judged_families_in_turn():
    from types import SimpleNamespace

    from minilm.eval.stage import rated_examples
    from minilm.rlhf.gold import JUDGED_FAMILIES

    # stage 6's test lists each family's examples together, the judged ones and translation; one family runs short
    counts = {"reading": 6, "transform": 6, "classify": 6, "multiturn": 1, "refusal": 6, "translation": 6}
    test = [SimpleNamespace(family=f, n=k) for f in FAMILIES for k in range(counts[f])]
    chosen = rated_examples(test, 12)
    picked = [test[i] for i in chosen]
    assert len(set(chosen)) == 12 and all(e.family in JUDGED_FAMILIES for e in picked)
    assert [e.family for e in picked[:5]] == list(JUDGED_FAMILIES)  # one of each in turn, in stage 6's order
    assert [(e.family, e.n) for e in picked[5:9]] == [("reading", 1), ("transform", 1), ("classify", 1), ("refusal", 1)]
    assert rated_examples(test, 1000) == sorted(rated_examples(test, 1000), key=lambda i: (test[i].n, i))  # all 25
    assert len(rated_examples(test, 1000)) == 25


def test_the_card_shows_each_score_with_its_interval(stage, tmp_path):
    built, _ = stage
    rows = report.card_rows(built)
    assert [row["model"] for row in rows] == [BASE, "SFT", "LoRA", "DPO", "PPO", "GRPO"]
    assert all("±" in value for row in rows for key, value in row.items() if key != "model")
    text = report.describe(built)
    assert "stage 8" in text and "GRPO" in text
    section = report.report_section(built, tmp_path)
    assert "| model |" in section.body and set(section.headline) == {row["model"] for row in rows}
    assert "heroines / heroes" in section.body and "sharing a 13-gram" in section.body and "CrowS-Pairs" in section.body and "bias (CrowS-Pairs" in text
    assert "BBQ" in section.body and "worst case" in section.body and "refusal" in section.body
    assert "Bradley-Terry" in section.body and "kappa" in section.body
    languages = report.language_rows(built)
    assert [(row["model"], row["language"]) for row in languages] == [
        (row["model"], language) for row in rows for language in ("English", "Spanish")]
    assert "minus English (paired)" in section.body and "Spanish" in text
    assert [f.name for f in section.figures] == ["evaluation.png"] and section.figures[0].stat().st_size > 10_000


def test_a_saved_score_is_what_the_harness_computes_again(stage):
    """Rescoring the base model on the cloze task from the cached stages gives the card's number."""
    from minilm.eval.stage import benchmarks
    from minilm.train.stage import load_pretrained, run_pretrain_stage
    from minilm.tokenizer.stage import load_tokenizer, run_tokenizer_stage
    from minilm.data.stage import run_data_stage

    built, _ = stage
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINILM_HOME", str(built.path.parent.parent.parent))
        tokenizer_artifact = run_tokenizer_stage("ci")
        model = load_pretrained(run_pretrain_stage("ci", tokenizer=tokenizer_artifact, progress=False))
        tokenizer = load_tokenizer(tokenizer_artifact)
        docs = benchmarks(EvalConfig.from_preset("ci"), tokenizer, model.config.context,
                          run_data_stage("ci").path / "val.jsonl")
    again = run_multiple_choice(model, tokenizer, docs["cloze"])
    assert again["acc"] == report.results(built)["models"][BASE]["cloze"]["acc"]


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="EvalConfig.cloze_stories must be a positive integer"):
        EvalConfig(cloze_stories=0)
