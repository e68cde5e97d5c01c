"""Presets and seeds: the two knobs every stage shares (the device is `minilm.hardware`'s).

A preset names the sizes a stage runs at: `ci` for tests (seconds), `cpu` for a learner's laptop
(minutes on 2 cores), `gpu` for one CUDA GPU. A preset changes sizes and steps, never code paths,
so the `ci` tests exercise the same code that the `gpu` run uses.

All presets live in the `PRESETS` table below; each stage's config dataclass is built from its row
with `config_for`. The preset is chosen by, in order: an explicit argument, the `MINILM_PRESET`
environment variable, then `gpu` if CUDA is available and `cpu` otherwise.
"""

from __future__ import annotations

import dataclasses
import os
import random
from typing import TypeVar

PRESET_NAMES = ("ci", "cpu", "gpu")

# Stage -> preset -> field overrides of that stage's config dataclass.
# Fields not named here keep the dataclass defaults, which are the published or sensible values.
PRESETS: dict[str, dict[str, dict]] = {
    "data": {
        "ci": dict(n_stories=400, n_web_pages=60, n_doc_topics=40, n_code_files=40, defect_rate=0.08),
        "cpu": dict(n_stories=12_000, n_web_pages=400, n_doc_topics=300, n_code_files=300, defect_rate=0.08),
        "gpu": dict(n_stories=60_000, n_web_pages=1_000, n_doc_topics=550, n_code_files=700, defect_rate=0.08),
    },
    "tokenizer": {
        "ci": dict(vocab_size=512, shard_tokens=100_000),  # small shards, so ci reads across shard files
        "cpu": dict(vocab_size=4096),
        "gpu": dict(vocab_size=8192),
    },
    "pretrain": {  # the vocabulary comes from the tokenizer row
        # ci: context 128 like cpu, so that stage 6's conversations fit (they are up to 128 tokens)
        "ci": dict(n_layer=2, n_head=2, n_embd=64, context=128, batch_size=8, max_steps=60, lr=3e-3, min_lr=3e-4,
                   warmup_steps=10, log_every=10, eval_every=30, eval_tokens=4096, sample_every=30, sample_tokens=32,
                   checkpoint_every=30, final_samples=5),
        # cpu: sized so that stages 1-5 take under 10 minutes on 2 cores in float32 (most laptops have no bf16)
        "cpu": dict(n_layer=4, n_head=4, n_embd=128, context=128, batch_size=32, max_steps=1000, lr=4e-3, min_lr=4e-4,
                    warmup_steps=50, log_every=20, eval_every=200, sample_every=200, checkpoint_every=100),
        "gpu": dict(n_layer=12, n_head=12, n_embd=768, context=512, batch_size=32, grad_accum=2, max_steps=1500,
                    lr=6e-4, min_lr=6e-5, warmup_steps=100, compile=True, log_every=10, eval_every=250,
                    eval_tokens=262_144, sample_every=500, checkpoint_every=500),
    },
    "finetune": {  # the model's shape comes from the pretrain row
        "ci": dict(train_per_family=20, val_per_family=4, test_per_family=8, test_oversample=10, batch_size=8,
                   max_steps=20, warmup_steps=5, lora_steps=20, forgetting_tokens=4096, classify_train_stories=20,
                   classify_eval_stories=6, classify_steps=10, classify_batch_size=16),
        "cpu": dict(),  # the dataclass defaults: sized for the cpu model, within 10 minutes on 2 cores
        "gpu": dict(train_per_family=2000, val_per_family=50, test_per_family=200, batch_size=32, max_steps=1000,
                    warmup_steps=50, lora_steps=1000, forgetting_tokens=262_144),
    },
    "rlhf": {  # the model is stage 6's
        "ci": dict(prompts_per_family=4, max_new_tokens=12, prompt_tokens=115, responses_per_prompt=3, reward_steps=6,
                   reward_prompts_per_step=8, dpo_steps=4, dpo_batch_size=4, ppo_iterations=2, ppo_rollout_batch_size=8,
                   ppo_minibatch_size=4, grpo_iterations=2, grpo_prompts=2, grpo_generations=4, hacking_iterations=4,
                   hacking_eval_every=2, eval_samples=1, bootstrap=200),
        "cpu": dict(),  # the dataclass defaults: sized for the cpu model, within 15 minutes on 2 cores
        # gpu: the reward model keeps the default 300 steps of 10 prompts, about three passes over the pairs (on the
        # cpu model, twice the steps did not help: `RLHFConfig.reward_prompts_per_step`)
        "gpu": dict(prompt_tokens=448, max_new_tokens=64,
                    dpo_steps=500, ppo_iterations=100, grpo_iterations=100, hacking_iterations=120,
                    hacking_eval_every=20),
    },
    "evaluate": {  # every model of stages 4, 6 and 7
        "ci": dict(cloze_stories=150, question_stories=12, domain_chars=4_000, language_stories=8,
                   bootstrap_iterations=100, bias_stories=200, bias_steps=10, bias_pairs=60),
        "cpu": dict(),  # the dataclass defaults
        "gpu": dict(cloze_stories=3_000, question_stories=400, domain_chars=400_000, language_stories=200,
                    bias_stories=60_000, bias_steps=1_000, bias_pairs=4_000),
    },
    "inference": {  # stage 8's best-rated chat model
        "ci": dict(speed_prompts=2, speed_tokens=8, repeats=1, draft_prompts_per_family=6, draft_steps=10,
                   lookaheads=(1, 3), speculative_prompts=3, max_new_tokens=8, quality_chars=1_000, answer_prompts_per_family=2, export_prompts=2),
        "cpu": dict(),  # the dataclass defaults
        "gpu": dict(speed_tokens=128, draft_layers=2, draft_prompts_per_family=1000, draft_steps=1000,
                    draft_batch_size=32, speculative_prompts=200, max_new_tokens=64, quality_chars=400_000),
    },
}

Config = TypeVar("Config")


def preset_name(preset: str | None = None) -> str:
    """The preset to use: `preset` if given, else $MINILM_PRESET, else `gpu` with CUDA and `cpu` without."""
    name = preset or os.environ.get("MINILM_PRESET") or ("gpu" if _cuda_available() else "cpu")
    if name not in PRESET_NAMES:
        source = "the argument" if preset else "MINILM_PRESET"
        raise ValueError(f"unknown preset {name!r} (from {source}); choose one of {', '.join(PRESET_NAMES)}")
    return name


def config_for(cls: type[Config], stage: str, preset: str | None = None, **overrides) -> Config:
    """Build `cls` (a stage's config dataclass) from the preset table, then apply `overrides`."""
    name = preset_name(preset)
    values = {**PRESETS.get(stage, {}).get(name, {}), **overrides}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {unknown}; known fields: {sorted(known)}")
    return cls(**values)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (every device), so that a run can be repeated exactly."""
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # the data stage runs without torch
        return
    torch.manual_seed(seed)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()
