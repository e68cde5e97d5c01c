"""Stage 6 end to end with the `ci` preset: the cached stage, what it writes, and that its numbers are
what its parts compute (scores, decontamination, the adapter, the forgetting check)."""

from __future__ import annotations

import json

import pytest
import torch

from minilm.finetune import lora
from minilm.finetune.report import classification_rows, describe, report_section, score_rows
from minilm.finetune.stage import (
    ADAPTER, CONVERSATIONS, FIGURE, LORA_DIR, RESULTS, FinetuneConfig, check_tokenizer, instruction_data,
    load_finetuned, load_lora, run_finetune_stage,
)  # fmt: skip
from minilm.finetune.tasks import FAMILIES, contamination, training_texts
from minilm.tokenizer.stage import load_tokenizer, run_tokenizer_stage
from minilm.train.stage import CHECKPOINT_DIR, load_pretrained, run_pretrain_stage

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINILM_HOME", str(home))
        tokenizer = run_tokenizer_stage("ci")
        pretrained = run_pretrain_stage("ci", tokenizer=tokenizer, progress=False)
        finetuned = run_finetune_stage("ci", pretrained=pretrained, tokenizer=tokenizer, progress=False)
        again = run_finetune_stage("ci", pretrained=pretrained, tokenizer=tokenizer, progress=False)
    return {"home": home, "tokenizer": tokenizer, "pretrained": pretrained, "finetuned": finetuned, "again": again}


def test_the_stage_is_cached_and_writes_its_outputs(stages):
    artifact = stages["finetuned"]
    assert stages["again"].reused and stages["again"].key == artifact.key
    for name in (RESULTS, CONVERSATIONS, FIGURE, f"{LORA_DIR}/{ADAPTER}", "sft/checkpoint/model.safetensors", "sft/log.jsonl"):
        assert (artifact.path / name).is_file(), name
    assert not (artifact.path.parent / ".finetune-work").exists()  # the work folder is gone once the stage is built


def test_results_hold_every_model_family_and_classifier(stages):
    results = json.loads((stages["finetuned"].path / RESULTS).read_text())
    assert results["order"] == ["base, few-shot", "SFT", "LoRA r=8"]
    for name, model in results["models"].items():
        assert set(model["scores"]) == {*FAMILIES, "all"}, name
        assert all(0.0 <= score <= 1.0 for score in model["scores"].values())
        assert model["pretrain_val_loss"] > 0
    sft, adapted = results["models"]["SFT"], results["models"]["LoRA r=8"]
    assert sft["trainable"] == sft["total"] > adapted["trainable"] > 0
    assert adapted["memory_bytes"] < sft["memory_bytes"]  # no gradients or AdamW moments for the frozen weights
    assert [r["method"] for r in results["classification"]] == ["bag_of_words", "probe", "last_block", "full", "lora"]
    assert results["classification"][0]["test"] == 0.5  # a bag of words cannot tell the twins apart
    rows = score_rows(stages["finetuned"])
    assert [row["model"] for row in rows] == results["order"] and len(classification_rows(stages["finetuned"])) == 5
    assert "stage 6 (fine-tuning)" in describe(stages["finetuned"])


def test_the_test_questions_share_no_13_gram_with_the_training_data(stages):
    tokenizer = load_tokenizer(stages["tokenizer"])
    config = FinetuneConfig.from_preset("ci")
    data = instruction_data(config, tokenizer, 128, n_pretrain_stories=400)
    assert data["test"] and len(data["test"]) + sum(data["dropped"].values()) <= data["test_drawn"]
    counts = {family: sum(e.family == family for e in data["test"]) for family in FAMILIES}
    assert all(0 < count <= config.test_per_family for count in counts.values()), counts
    assert not any(contamination(data["test"], training_texts(data["train"], 400)))
    results = json.loads((stages["finetuned"].path / RESULTS).read_text())
    assert results["examples"]["test"] == len(data["test"])  # the stage scored exactly these


def test_the_adapter_and_the_sft_model_load_and_differ_from_the_base(stages):
    base = load_pretrained(stages["pretrained"])
    adapted = load_lora(stages["finetuned"], stages["pretrained"])
    assert lora.lora_layers(adapted)
    sft = load_finetuned(stages["finetuned"])
    idx = torch.randint(0, base.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = [model(idx)[0] for model in (base, adapted, sft)]
    assert not torch.allclose(logits[0], logits[1]) and not torch.allclose(logits[0], logits[2])


def test_conversations_and_the_report_section(stages, tmp_path):
    conversations = json.loads((stages["finetuned"].path / CONVERSATIONS).read_text())["conversations"]
    assert conversations and {"family", "messages", "expected", "base, few-shot", "SFT", "LoRA r=8"} <= set(conversations[0])
    section = report_section(stages["finetuned"], tmp_path)
    assert section.title == "Stage 6: fine-tuning" and (tmp_path / "finetune_curves.png").stat().st_size > 5_000
    assert "| base, few-shot |" in section.body and "bag of words" in section.body


def test_a_model_of_another_tokenizer_is_refused(stages):
    checkpoint = stages["pretrained"].path / CHECKPOINT_DIR
    with pytest.raises(ValueError, match=r"pretrained with another tokenizer .*python -m minilm pretrain rebuilds it"):
        check_tokenizer(checkpoint, "0" * 64)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="FinetuneConfig.max_steps must be a positive integer, got 0"):
        FinetuneConfig(max_steps=0)
    assert FinetuneConfig.from_preset("ci").train_per_family < FinetuneConfig.from_preset("cpu").train_per_family


@pytest.mark.parametrize("adapters", [False, True], ids=["full", "lora"])
def test_fine_tuning_resumes_exactly_where_it_stopped(stages, tmp_path, adapters):
    """The stage-4 loop's exact resume carries over to fine-tuning, with LoRA adapters too."""
    from minilm.finetune.chat import SFTData
    from minilm.finetune.tasks import build_examples
    from minilm.train.loop import train

    tokenizer = load_tokenizer(stages["tokenizer"])
    examples = build_examples("sft_train", 6, 0, tokenizer, 128)
    data = SFTData(tokenizer, [e.messages for e in examples], "sft_train", pack=True)
    config = FinetuneConfig.from_preset("ci", max_steps=6, warmup_steps=2, lora_steps=6, batch_size=4)
    base = load_pretrained(stages["pretrained"])
    train_config = config.train_config(base.config, lora_run=adapters)

    def fresh():
        model = load_pretrained(stages["pretrained"])
        return lora.add_lora(model, 4, 8.0) if adapters else model

    whole = fresh()
    train(train_config, data, data, tokenizer, tmp_path / "whole", model=whole, progress=False)
    train(train_config, data, data, tokenizer, tmp_path / "parts", model=fresh(), until_step=3, progress=False)
    resumed = fresh()
    train(train_config, data, data, tokenizer, tmp_path / "parts", model=resumed, progress=False)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
