"""Stage 6 end to end with the `ci` preset: the cached stage, what it writes, and that its numbers are
what its parts compute (scores, decontamination, the adapter, the forgetting check)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minilm.finetune import lora
from minilm.finetune.report import classification_rows, describe, report_section, score_rows, translation_rows
from minilm.finetune.stage import (
    ADAPTER, CONVERSATIONS, FIGURE, LORA_DIR, RESULTS, FinetuneConfig, add_adapters, check_tokenizer, instruction_data,
    load_finetuned, load_lora, run_finetune_stage, seen_tokens,
)  # fmt: skip
from minilm.finetune.tasks import (
    FAMILIES, build_examples, contamination, conversation_text, exact_match, training_texts,
)  # fmt: skip
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
    assert results["order"] == ["base, few-shot", "SFT", "LoRA"]
    for name, model in results["models"].items():
        assert set(model["scores"]) == {*FAMILIES, "all"}, name
        assert all(0.0 <= score <= 1.0 for score in model["scores"].values())
        assert model["pretrain_val_loss"] > 0
    sft, adapted = results["models"]["SFT"], results["models"]["LoRA"]
    assert sft["trainable"] == sft["total"] > adapted["trainable"] > 0
    assert adapted["memory_bytes"] < sft["memory_bytes"]  # no gradients or AdamW moments for the frozen weights
    assert [r["method"] for r in results["classification"]] == ["bag_of_words", "probe", "last_block", "full", "lora"]
    assert results["classification"][0]["test"] == 0.5  # a bag of words cannot tell the twins apart
    rows = score_rows(stages["finetuned"])
    assert [row["model"] for row in rows] == results["order"] and len(classification_rows(stages["finetuned"])) == 5
    assert "stage 6 (fine-tuning)" in describe(stages["finetuned"])


def test_the_lora_embedding_adapts_the_rows_of_the_tokens_the_training_conversations_contain(stages):
    """Stage 6's embedding adapter has a column of A for each token of the training data and none other: the
    unseen tokens' rows are the base model's, and the trained count is what those rows cost."""
    from minilm.data.stage import DataConfig
    from minilm.finetune.chat import SFTData

    config = FinetuneConfig.from_preset("ci")
    tokenizer = load_tokenizer(stages["tokenizer"])
    base = load_pretrained(stages["pretrained"])
    data = instruction_data(config, tokenizer, base.config.context, DataConfig.from_preset("ci").n_stories)
    seen = seen_tokens(SFTData(tokenizer, [e.messages for e in data["train"]], "sft_train", pack=config.pack))
    assert 0 < len(seen) < base.config.vocab_size
    adapted = load_lora(stages["finetuned"], stages["pretrained"])
    embedding = adapted.transformer.wte
    assert torch.equal(embedding.rows, seen) and embedding.rank == config.lora_embedding_rank
    unseen = torch.ones(base.config.vocab_size, dtype=torch.bool)
    unseen[seen] = False
    with torch.no_grad():
        assert torch.equal(embedding.weight[unseen], base.transformer.wte.weight[unseen])
        assert not torch.equal(embedding.weight[seen], base.transformer.wte.weight[seen])  # trained
    results = json.loads((stages["finetuned"].path / RESULTS).read_text())
    blocks = sum(p.numel() for n, p in adapted.named_parameters() if "lora_" in n and not n.startswith("transformer.wte"))
    assert results["models"]["LoRA"]["trainable"] == config.lora_embedding_rank * (len(seen) + base.config.n_embd) + blocks


def test_translation_is_scored_by_exact_match_and_chrf_for_every_model(stages, tmp_path):
    """The stage's per-direction scores, recomputed from the answers it wrote (conversations.json) with sacrebleu."""
    import sacrebleu

    artifact = stages["finetuned"]
    results = json.loads((artifact.path / RESULTS).read_text())
    conversations = json.loads((artifact.path / CONVERSATIONS).read_text())["conversations"]
    asked = {"en_es": "Translate into Spanish: ", "es_en": "Translate into English: "}
    for name in ("base, few-shot", "SFT", "LoRA"):
        scores = results["models"][name]["translation"]
        assert set(scores) == {"en_es", "es_en", "all"} and artifact.summary["translation"][name] == scores
        for direction, prefix in asked.items():
            chosen = [c for c in conversations
                      if c["family"] == "translation" and c["messages"][0]["content"].startswith(prefix)]
            assert scores[direction]["n"] == len(chosen) > 0
            hits = [exact_match(c[name], c["expected"]) for c in chosen]
            assert scores[direction]["exact_match"] == pytest.approx(np.mean(hits))
            reference = sacrebleu.corpus_chrf([c[name] for c in chosen], [[c["expected"] for c in chosen]]).score
            assert scores[direction]["chrf"] == pytest.approx(reference) and 0 <= reference <= 100
        assert abs(scores["en_es"]["n"] - scores["es_en"]["n"]) <= 1  # the two directions in equal numbers
    rows = translation_rows(artifact)
    assert [(row["model"], row["direction"]) for row in rows][:3] == [
        ("base, few-shot", "English -> Spanish"), ("base, few-shot", "Spanish -> English"), ("base, few-shot", "both")]
    assert "chrF" in report_section(artifact, tmp_path).body and "translation, exact match and chrF" in describe(artifact)


def test_the_test_questions_share_no_13_gram_with_the_training_data(stages):
    tokenizer = load_tokenizer(stages["tokenizer"])
    config = FinetuneConfig.from_preset("ci")
    data = instruction_data(config, tokenizer, 128, n_pretrain_stories=400)
    assert data["test"] and len(data["test"]) + sum(data["dropped"].values()) <= data["test_drawn"]
    counts = {family: sum(e.family == family for e in data["test"]) for family in FAMILIES}
    assert all(0 < count <= config.test_per_family for count in counts.values()), counts
    assert not any(contamination(data["test"], training_texts(data["train"], 400)))
    asked = {conversation_text(e.prompt) for e in data["train"]}
    assert not [e for e in data["test"] if e.family == "translation" and conversation_text(e.prompt) in asked]
    results = json.loads((stages["finetuned"].path / RESULTS).read_text())
    assert results["examples"]["test"] == len(data["test"])  # the stage scored exactly these


def test_flaws_go_only_into_the_families_not_kept_clean(stages):
    tokenizer = load_tokenizer(stages["tokenizer"])
    config = FinetuneConfig.from_preset("ci", train_per_family=40, flawed_share=0.5)
    data = instruction_data(config, tokenizer, 128, n_pretrain_stories=400)
    flawed = {e.family for e in data["train"] if not exact_match(e.messages[-1]["content"], e.answers)}
    assert config.clean_families == ("classify",) and "classify" not in flawed and {"reading", "transform"} <= flawed
    drawn = build_examples("sft_train", 40, config.seed, tokenizer, 128, scale=config.train_scale)
    assert [e.prompt for e in data["train"]] == [e.prompt for e in drawn]  # every example in its place
    everything = instruction_data(FinetuneConfig.from_preset("ci", train_per_family=40, flawed_share=0.5,
                                                           clean_families=()), tokenizer, 128, 400)
    assert "classify" in {e.family for e in everything["train"] if not exact_match(e.messages[-1]["content"], e.answers)}


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
    assert conversations and {"family", "messages", "expected", "base, few-shot", "SFT", "LoRA"} <= set(conversations[0])
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
    with pytest.raises(ValueError, match=r"clean_families: unknown task families \['clasify'\]"):
        FinetuneConfig(clean_families=("clasify",))
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


# --- under torchrun: two processes fine-tune exactly as one on their batches put together ---------------

TWO = dict(train_per_family=6, val_per_family=2, test_per_family=1, test_oversample=10, batch_size=2, max_steps=3,
           warmup_steps=1, lora_steps=3, classify_methods=("probe",), classify_steps=2, classify_train_stories=8,
           classify_eval_stories=4, precision="fp32")


def finetune_worker(rank: int, port: int, home: str, tokenizer: str, pretrained: str, results: str) -> None:
    """One process of `torchrun --nproc_per_node=2 -m minilm finetune`: the stage, called by every rank."""
    import os
    from pathlib import Path

    from minilm.cache import load_artifact

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), MINILM_HOME=home)
    artifact = run_finetune_stage("ci", config=FinetuneConfig.from_preset("ci", **TWO),
                                  tokenizer=load_artifact(Path(tokenizer)), pretrained=load_artifact(Path(pretrained)),
                                  progress=False)
    Path(results, f"rank{rank}.json").write_text(json.dumps({"path": str(artifact.path), "key": artifact.key}))


def one_process_reference(stages, config: FinetuneConfig, lora_run: bool, world_size: int = 2) -> dict:
    """One process, one batch per step: the windows of every rank put together, as the stage builds them."""
    import copy

    from minilm.data.stage import DataConfig
    from minilm.finetune.chat import SFTData
    from minilm.hardware import grad_scaler
    from minilm.model.gpt import make_optimizer
    from minilm.train.loop import step_windows, train_step
    from minilm.train.objectives import make_batch
    from minilm.train.schedule import learning_rate

    tokenizer = load_tokenizer(stages["tokenizer"])
    base = load_pretrained(stages["pretrained"])
    data = instruction_data(config, tokenizer, base.config.context, DataConfig.from_preset("ci").n_stories)
    train_data = SFTData(tokenizer, [e.messages for e in data["train"]], "sft_train", pack=config.pack)
    model = copy.deepcopy(base)
    if lora_run:
        add_adapters(model, config, seen_tokens(train_data))
    train_config = config.train_config(base.config, lora_run)
    optimizer = make_optimizer(model, train_config.lr, train_config.weight_decay, (train_config.beta1, train_config.beta2))
    for step in range(train_config.max_steps):
        parts = [step_windows(train_data, train_config, step, rank, world_size) for rank in range(world_size)]
        inputs, targets = make_batch(np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]), "causal")
        lr = learning_rate(step, train_config.lr, train_config.warmup_steps, train_config.max_steps, train_config.min_lr)
        train_step(model, optimizer, grad_scaler("cpu", "fp32"), [(inputs, targets)], lr, train_config.grad_clip, "cpu")
    return model.state_dict()


def test_two_processes_fine_tune_exactly_as_one_on_the_same_global_batch(stages, tmp_path, monkeypatch):
    import socket

    import torch.multiprocessing as mp

    from minilm.train import checkpoint as ckpt
    from minilm.train.loop import read_log

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home, results = tmp_path / "home", tmp_path / "results"
    results.mkdir()
    mp.spawn(finetune_worker, nprocs=2, join=True, args=(port, str(home), str(stages["tokenizer"].path),
                                                          str(stages["pretrained"].path), str(results)))
    seen = [json.loads((results / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert seen[0] == seen[1]  # every rank returns the artifact rank 0 built
    path = Path(seen[0]["path"])
    finished = json.loads((path / RESULTS).read_text())
    assert finished["models"]["SFT"]["world_size"] == finished["models"]["LoRA"]["world_size"] == 2
    for sub in ("sft", LORA_DIR):
        start = read_log(path / sub / "log.jsonl")[0]
        assert start["world_size"] == 2 and start["tokens_per_step"] == 2 * 2 * 128

    config = FinetuneConfig.from_preset("ci", **TWO)
    width = load_pretrained(stages["pretrained"]).config.n_embd
    trained = ckpt.read_checkpoint(path / "sft" / "checkpoint")[0]
    # Adam moves every weight by about lr at first, whatever its gradient's size, so where a gradient is rounding
    # noise (summed in another order by two processes) the two runs part by a little: 2e-5, where one process
    # on rank 0's windows alone ends 1e-2 away (checked below)
    for name, tensor in one_process_reference(stages, config, lora_run=False).items():
        if name.endswith("attn.c_attn.bias"):  # the keys' bias: its true gradient is 0 (softmax ignores it)
            keys = slice(width, 2 * width)
            torch.testing.assert_close(trained[name][keys], tensor[keys], rtol=0, atol=5e-4, msg=name)
            trained[name][keys] = tensor[keys]
        torch.testing.assert_close(trained[name], tensor, rtol=0, atol=2e-5, msg=name)
    adapted = lora.load_adapter(load_pretrained(stages["pretrained"]), path / LORA_DIR / ADAPTER).state_dict()
    reference = one_process_reference(stages, config, lora_run=True)
    changed = [name for name in reference if name.endswith((".lora_A", ".lora_B", ".delta"))]
    assert changed and all(name in adapted for name in changed)
    for name in changed:
        torch.testing.assert_close(adapted[name], reference[name], rtol=0, atol=2e-5, msg=name)
    # not a test that cannot fail: one process on rank 0's windows alone ends elsewhere
    alone = one_process_reference(stages, config, lora_run=False, world_size=1)
    assert not torch.allclose(alone["transformer.wte.weight"], trained["transformer.wte.weight"], atol=1e-3)


def test_mfu_counts_the_head_only_where_fine_tuning_trains(stages, tmp_path):
    """The head runs only at the assistant's tokens (`only_trained`): MFU counts the FLOPs done, not those skipped."""
    from dataclasses import replace

    from minilm.finetune.chat import SFTData
    from minilm.finetune.tasks import build_examples
    from minilm.model.accounting import flops_per_token
    from minilm.train.loop import read_log, step_windows, train

    tokenizer = load_tokenizer(stages["tokenizer"])
    examples = build_examples("sft_train", 6, 0, tokenizer, 128)
    data = SFTData(tokenizer, [e.messages for e in examples], "sft_train", pack=True)
    base = load_pretrained(stages["pretrained"])
    config = replace(FinetuneConfig.from_preset("ci").train_config(base.config), max_steps=4, warmup_steps=1,
                     log_every=4, precision="fp32")
    summary = train(config, data, data, tokenizer, tmp_path, model=base, progress=False)
    [record] = [r for r in read_log(tmp_path / "log.jsonl") if r["kind"] == "train"]
    per_token = record["mfu"] * summary["peak_flops"] / record["tokens_per_s"]
    flops, head = flops_per_token(base.config)["training"], 6 * base.config.vocab_size * base.config.n_embd
    assert flops_per_token(base.config)["head"] == head
    trained = sum(int((step_windows(data, config, step)[1] != -100).sum()) for step in range(4))
    tokens = 4 * config.batch_size * config.context
    assert trained < tokens / 2  # most positions are the user's turn or padding: the head skips them
    assert per_token == pytest.approx(flops - head + head * trained / tokens, rel=1e-9)
