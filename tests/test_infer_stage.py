"""Stage 9 end to end with the `ci` preset: what it measures holds (the same tokens every way, the export equal to
minilm), it is cached, and its report renders; and its pieces (the choice of model, the config, the draft's rows)."""

import json

import pytest
import torch

from minilm.infer import report
from minilm.infer.stage import (CHAT_MODELS, DistillationRows, InferenceConfig, best_chat_model, load_draft,
                                run_inference_stage)
from minilm.model.gpt import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINILM_HOME", str(tmp_path_factory.mktemp("home")))
        built = run_inference_stage("ci", progress=False)
        again = run_inference_stage("ci", progress=False)
        yield built, again


def test_the_stage_is_cached_and_serves_the_best_rated_chat_model(stage):
    built, again = stage
    assert not built.reused and again.reused and again.key == built.key
    r = report.results(built)
    evaluated = json.loads((built.path.parent / "evaluate" / "results.json").read_text())
    assert r["model"] == best_chat_model(evaluated["human"]["ratings"])
    assert (built.path / "draft").is_dir() and (built.path / "hf" / "model.safetensors").is_file()
    draft = load_draft(built)
    assert draft.config.n_layer == InferenceConfig.from_preset("ci").draft_layers and not draft.training


def test_every_way_of_generating_gives_the_same_tokens(stage):
    r = report.results(stage[0])
    assert r["speed"]["same_tokens"] is True
    assert [row["generation"] for row in r["speed"]["rows"]] == [
        "no cache, batch 1", "KV cache, batch 1", "engine, batch 1", "engine, batch 2"]
    for row in r["speed"]["rows"]:
        assert row["tokens_per_second"] == pytest.approx(row["tokens"] / row["seconds"])
    for row in r["speculative"]["by_lookahead"]:
        assert row["same_tokens"] is True and 0 <= row["acceptance_rate"] <= 1
        assert 1 / (row["lookahead"] + 1) <= row["target_calls_per_token"] <= 1


def test_quantization_and_the_export_are_measured(stage):
    r = report.results(stage[0])
    rows = {row["weights"]: row for row in r["quantization"]["rows"]}
    assert list(rows) == ["float32", "bfloat16", "int8 weights, float32 activations",
                          "int8 weights, bfloat16 activations"]
    assert rows["float32"]["same_answers_as_float32"] == 1.0
    assert rows["bfloat16"]["bytes"] * 2 == rows["float32"]["bytes"]
    assert rows["int8 weights, float32 activations"]["bytes"] < rows["float32"]["bytes"]
    for row in rows.values():  # int8 and bf16 move bits per byte a little, not a lot
        for domain, bpb in row["bits_per_byte"].items():
            assert abs(bpb - rows["float32"]["bits_per_byte"][domain]) < 0.05 * rows["float32"]["bits_per_byte"][domain]
    e = r["export"]
    assert e["texts_with_different_ids"] == e["chats_with_different_ids"] == e["different_answers"] == 0
    assert e["texts"] > 0 and e["chats"] > 0 and e["architecture"] == ["GPT2LMHeadModel"]


def test_the_report_section_and_the_terminal_lines(stage, tmp_path):
    section = report.report_section(stage[0], tmp_path)
    assert section.title == "Stage 9: inference and deployment" and section.figures[0].is_file()
    assert "| no cache, batch 1 |" in section.body and "python -m minilm serve" in section.body
    lines = report.describe(stage[0])
    assert lines.startswith("stage 9 (inference): the ") and "0 differences in" in lines


def test_the_best_chat_model_is_the_best_rated_of_the_chat_models():
    # base and LoRA are not served
    assert best_chat_model({"base": 2000, "LoRA": 1500, "SFT": 1000, "DPO": 999}) == "SFT"
    assert best_chat_model({"DPO": 1000.0, "PPO": 1000.0, "GRPO": 999.9}) == "DPO"  # a tie: the first of CHAT_MODELS
    assert best_chat_model({"GRPO": 1000.1, "DPO": 1000.0}) == "GRPO"
    assert CHAT_MODELS[0] == "DPO"
    with pytest.raises(ValueError, match="none of the chat models"):
        best_chat_model({"base": 1000})


def test_the_config_refuses_bad_values():
    assert InferenceConfig(lookaheads=[2, 4]).lookaheads == (2, 4)
    for bad in (dict(draft_steps=0), dict(speed_tokens=-1), dict(lookaheads=()), dict(lookaheads=(0, 2)),
                dict(repeats=1.5)):
        with pytest.raises(ValueError, match="InferenceConfig"):
            InferenceConfig(**bad)


def test_distillation_rows_teach_the_answers_and_ignore_prompts_and_padding():
    rows = DistillationRows([[5, 6, 7, 8], [9, 10]], answer_starts=[2, 1], context=4, pad=0)
    x, y = rows.rows(torch.tensor([0, 1]))
    assert x.tolist() == [[5, 6, 7, 0], [9, 0, 0, 0]]
    assert y.tolist() == [[IGNORE_INDEX, 7, 8, IGNORE_INDEX], [10] + [IGNORE_INDEX] * 3]  # the answers: 7, 8 and 10
    long = DistillationRows([list(range(1, 8))], [3], context=4, pad=0)  # longer than the context: cut to context + 1
    assert long.rows(torch.tensor([0]))[1].tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 4, 5]]
