"""Stage 7 end to end with the `ci` preset: the cached stage, what it writes, and that its numbers are what its
parts compute (the win rate and its interval, the KL, the reward model's accuracy, the samples of each policy)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from minilm import hardware
from minilm.finetune.chat import END, PAD, ROLE_TOKENS, encode_chat
from minilm.finetune.stage import load_finetuned, run_finetune_stage
from minilm.finetune.tasks import build_examples
from minilm.rlhf import gold, preferences
from minilm.rlhf.report import describe, report_section, reward_kind_rows, score_rows
from minilm.rlhf.stage import (
    FIGURE, HACKING, METHODS, PAIRS, RESULTS, SAMPLES, RLHFConfig, answer_text, fitting_prompts, gold_scorer,
    kl_to_reference, load_policy, load_reward_model, measure, reward_model_accuracy, reward_model_scorer,
    run_rlhf_stage, win_rate,
)  # fmt: skip
from minilm.tokenizer.stage import load_tokenizer, run_tokenizer_stage
from minilm.train.stage import run_pretrain_stage

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINILM_HOME", str(home))
        tokenizer = run_tokenizer_stage("ci")
        pretrained = run_pretrain_stage("ci", tokenizer=tokenizer, progress=False)
        finetuned = run_finetune_stage("ci", pretrained=pretrained, tokenizer=tokenizer, progress=False)
        aligned = run_rlhf_stage("ci", finetuned=finetuned, tokenizer=tokenizer, progress=False)
        again = run_rlhf_stage("ci", finetuned=finetuned, tokenizer=tokenizer, progress=False)
    return {"home": home, "tokenizer": tokenizer, "finetuned": finetuned, "aligned": aligned, "again": again,
            "results": json.loads((aligned.path / RESULTS).read_text())}


@pytest.fixture(scope="module")
def tokenizer(stages):
    return load_tokenizer(stages["tokenizer"])


def test_the_stage_is_cached_and_writes_its_outputs(stages):
    artifact = stages["aligned"]
    assert stages["again"].reused and stages["again"].key == artifact.key
    for name in (RESULTS, SAMPLES, FIGURE, PAIRS, f"heldout_{PAIRS}"):
        assert (artifact.path / name).is_file(), name
    assert not (artifact.path.parent / ".rlhf-work").exists()
    sft = load_finetuned(stages["finetuned"])
    for name in [*METHODS, HACKING]:  # every policy is saved, and training moved it away from the SFT model
        policy = load_policy(artifact, name)
        moved = max((a - b).abs().max().item() for a, b in zip(policy.parameters(), sft.parameters()))
        assert moved > 0, name


def test_results_hold_every_model_and_the_table_reads_them(stages):
    r = stages["results"]
    assert r["order"] == ["SFT", *METHODS, HACKING]
    assert set(r["histories"]) == {*METHODS, HACKING}
    assert r["models"]["SFT"]["kl"] == 0.0 and "win_rate" not in r["models"]["SFT"]  # the reference against itself
    for name in [*METHODS, HACKING]:
        m = r["models"][name]
        assert math.isclose(m["wins"] + m["losses"] + m["ties"], 1.0)
        if m["win_rate"] is not None:
            assert m["low"] <= m["win_rate"] <= m["high"]
    rows = score_rows(r)
    assert [row["model"] for row in rows] == r["order"]
    assert "stage 7 (RLHF)" in describe(stages["aligned"])
    curve = r["hacking"]
    config = RLHFConfig.from_preset("ci")
    assert [p["iteration"] for p in curve] == list(range(0, config.hacking_iterations + 1, config.hacking_eval_every))
    assert curve[0]["kl"] == 0.0  # the first point is the SFT model itself


def test_report_section_copies_the_figure(stages, tmp_path):
    section = report_section(stages["aligned"], tmp_path)
    assert section.figures[0].is_file() and "gold win rate" in section.body
    assert set(section.headline) <= {*METHODS, HACKING}
    rows = reward_kind_rows(stages["results"])
    assert [row["held-out pairs"] for row in rows] == [row["kind"] for row in stages["results"]["reward_model"]["by_kind"]]
    assert rows[-1]["held-out pairs"] == "all" and rows[-1]["reward model"] in section.body


def test_the_sft_row_is_what_measure_computes_again(stages, tokenizer):
    """The stage's numbers are reproducible from its parts: the SFT model measured again on the test prompts."""
    from minilm.data.stage import DataConfig
    from minilm.finetune.stage import FinetuneConfig, instruction_data

    config = RLHFConfig.from_preset("ci")
    sft = load_finetuned(stages["finetuned"]).eval()
    test = instruction_data(FinetuneConfig.from_preset("ci"), tokenizer, sft.config.context,
                            DataConfig.from_preset("ci").n_stories)["test"]
    prompts = fitting_prompts([e for e in test if e.family in gold.JUDGED_FAMILIES], tokenizer, config.prompt_tokens)
    assert len(prompts) == stages["results"]["prompts"]["test"]
    assert {e.family for e in prompts.examples} == set(gold.JUDGED_FAMILIES)  # translation is stage 6's to score
    precision = hardware.choose_precision("cpu", config.precision)  # the stage's: bf16 on CPUs that compute it natively
    again = measure(sft, sft, load_reward_model(stages["aligned"]), prompts, tokenizer, config, precision)
    row = stages["results"]["models"]["SFT"]
    assert again["gold_mean"] == pytest.approx(row["gold_mean"]) and again["rm_score"] == pytest.approx(row["rm_score"], abs=1e-5)


def test_reward_model_accuracy_is_recomputed_from_the_saved_pairs(stages, tokenizer):
    config = RLHFConfig.from_preset("ci")
    heldout = preferences.load_pairs(stages["aligned"].path / f"heldout_{PAIRS}")
    measured = reward_model_accuracy(load_reward_model(stages["aligned"]), heldout, config.annotators(), tokenizer, 128)
    saved = stages["results"]["reward_model"]
    for key in ("accuracy", "ceiling", "label_agreement", "gold_order_accuracy", "ordered_heldout_pairs", "by_kind"):
        assert measured[key] == pytest.approx(saved[key]), key
    assert saved["by_kind"][-1]["kind"] == "all" and saved["by_kind"][-1]["accuracy"] == saved["accuracy"]
    assert sum(row["pairs"] for row in saved["by_kind"][:-1]) == saved["ordered_heldout_pairs"]


def test_likelihood_baseline_is_the_sft_models_answer_log_probability(stages, tokenizer):
    """Recomputed here from the model's logits, one conversation at a time, without the batched DPO helper."""
    sft = load_finetuned(stages["finetuned"]).eval()
    heldout = preferences.load_pairs(stages["aligned"].path / f"heldout_{PAIRS}")
    ordered = [pair for pair in heldout if pair["gold_chosen"] != pair["gold_rejected"]]
    precision = hardware.choose_precision("cpu", RLHFConfig.from_preset("ci").precision)

    def logp(pair: dict, side: str) -> float:
        ids, trained = encode_chat(tokenizer, [*pair["prompt"], *pair[side]])
        start = len(trained) - trained[::-1].index(False)
        with torch.no_grad(), hardware.autocast("cpu", precision):  # the stage's precision
            logits, _ = sft(torch.tensor([ids]))
        logprobs = torch.log_softmax(logits[0, :-1].float(), dim=-1)
        return sum(float(logprobs[t - 1, ids[t]]) for t in range(start, len(ids)))

    scored = [(logp(pair, "chosen"), logp(pair, "rejected"), pair["gold_chosen"] > pair["gold_rejected"]) for pair in ordered]
    saved = stages["results"]["reward_model"]["likelihood"]
    assert saved["accuracy"] == pytest.approx(sum(c > r for c, r, _ in scored) / len(scored), abs=1.01 / len(scored))
    gold = sum((c > r) if first else (r > c) for c, r, first in scored) / len(scored)
    assert saved["gold_order_accuracy"] == pytest.approx(gold, abs=1.01 / len(scored))
    assert saved["by_kind"][-1] == {**saved["by_kind"][-1], "accuracy": saved["accuracy"],
                                    "gold_order_accuracy": saved["gold_order_accuracy"], "pairs": len(scored)}


# ---------------------------------------------------------------------------------------------
# The parts


def test_win_rate_counts_decisive_comparisons_and_its_interval_covers_it():
    ours = [[1.5, 1.5], [1.0, 1.5], [1.5, 0.5], [0.5, 1.5]]
    sft = [[1.0, 1.5], [1.0, 1.0], [1.0, 1.5], [1.5, 1.0]]
    # comparisons: win tie | tie win | win loss | loss win -> 4 wins, 2 losses, 2 ties
    rate = win_rate(ours, sft, resamples=500, seed=0)
    assert rate["win_rate"] == pytest.approx(4 / 6) and rate["ties"] == pytest.approx(2 / 8)
    assert rate["wins"] == pytest.approx(4 / 8) and rate["losses"] == pytest.approx(2 / 8)
    assert rate["win_rate_ties_half"] == pytest.approx(5 / 8)
    assert 0 <= rate["low"] <= rate["win_rate"] <= rate["high"] <= 1
    assert win_rate(ours, sft, resamples=500, seed=0) == rate  # seeded
    sure = win_rate([[1.5]] * 200, [[1.0]] * 150 + [[1.5]] * 50, resamples=500, seed=0)
    assert sure["win_rate"] == 1.0 and sure["low"] == 1.0 and sure["ties"] == pytest.approx(0.25)
    tied = win_rate([[1.0]] * 3, [[1.0]] * 3, resamples=10, seed=0)
    assert tied["win_rate"] is None and tied["ties"] == 1.0 and tied["win_rate_ties_half"] == 0.5


def test_interval_narrows_with_more_prompts():
    gen = torch.Generator().manual_seed(0)
    widths = []
    for n in (40, 640):
        ours = (torch.rand(n, 1, generator=gen) < 0.7).float().tolist()
        theirs = [[1.0 - a[0]] for a in ours]  # every comparison decisive
        rate = win_rate(ours, theirs, resamples=1000, seed=1)
        widths.append(rate["high"] - rate["low"])
        assert rate["low"] < rate["win_rate"] < rate["high"]
    assert widths[1] < widths[0] / 2.5  # the interval shrinks as 1/sqrt(n): 4x narrower for 16x the prompts


def test_kl_of_a_model_to_itself_is_zero_and_grows_when_it_moves(stages, tokenizer):
    sft = load_finetuned(stages["finetuned"]).eval()
    prompts = fitting_prompts(build_examples("sft_val", 2, 0, tokenizer, 128), tokenizer, 115)
    from minilm.rlhf.stage import sample_answers

    rollout, _ = sample_answers(sft, prompts, tokenizer, 8, seed=0)
    assert torch.equal(kl_to_reference(sft, sft, rollout), torch.zeros(len(prompts)))
    # A policy that moved for sure: the SFT model with its logits tripled (its final norm's gain and shift), which
    # samples as the SFT model does at temperature 1/3. (The ci preset's trained policies move too little for an
    # estimate from a few samples to be positive on every machine.)
    moved = copy.deepcopy(sft)
    with torch.no_grad():
        for parameter in moved.transformer.ln_f.parameters():
            parameter.mul_(3.0)
    rollout, _ = sample_answers(moved, prompts, tokenizer, 8, seed=0)
    kl = kl_to_reference(moved, sft, rollout)
    assert kl.mean() > 0  # KL(pi || ref) >= 0, and > 0 for a policy that moved


def test_scorers_read_what_they_say(stages, tokenizer):
    reward_model = load_reward_model(stages["aligned"])
    end = tokenizer.special_id(END)
    prompts = fitting_prompts(build_examples("sft_val", 1, 0, tokenizer, 128), tokenizer, 115)
    answer = tokenizer.encode_ordinary(prompts.examples[0].answers[0])
    score = reward_model_scorer(reward_model, end)
    # a completion without <|end|> is scored as the same answer closed by it
    assert torch.allclose(score(prompts.ids[:1], [answer]), score(prompts.ids[:1], [answer + [end]]))
    full = encode_chat(tokenizer, [*prompts.examples[0].prompt, {"role": "assistant", "content": prompts.examples[0].answers[0]}])[0]
    padded = torch.tensor([full])
    assert torch.allclose(score(prompts.ids[:1], [answer + [end]]), reward_model.score(padded), atol=1e-6)
    exact = gold_scorer(prompts, tokenizer)
    wrong = tokenizer.encode_ordinary("Nobody knows.")
    assert exact(prompts.ids[:2], [answer + [end], wrong]).tolist() == [
        gold.gold_reward(prompts.examples[0], prompts.examples[0].answers[0]),
        gold.gold_reward(prompts.examples[1], "Nobody knows.")]


def test_answer_text_leaves_special_tokens_out(tokenizer):
    ids = tokenizer.encode_ordinary("a cook") + [tokenizer.special_id(ROLE_TOKENS["assistant"]), tokenizer.special_id(PAD)]
    assert answer_text(tokenizer, ids) == "a cook"


def test_config_refuses_what_cannot_run(stages, monkeypatch):
    monkeypatch.setenv("MINILM_HOME", str(stages["home"]))
    with pytest.raises(ValueError, match="heldout_share"):
        RLHFConfig(heldout_share=1.0)
    with pytest.raises(ValueError, match="ppo_iterations must be a positive integer"):
        RLHFConfig(ppo_iterations=0)
    with pytest.raises(ValueError, match="exceeds the model's context"):
        run_rlhf_stage("ci", config=RLHFConfig.from_preset("ci", prompt_tokens=128), finetuned=stages["finetuned"],
                       tokenizer=stages["tokenizer"], progress=False)  # fmt: skip
