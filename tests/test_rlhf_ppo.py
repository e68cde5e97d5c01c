"""PPO (minilm.rlhf.ppo) on a tiny GPT with a synthetic reward: +1 when the answer contains one token. It learns
to write that token within seconds, a larger beta holds it nearer the reference, the first iteration's numbers
are what the objectives give by hand, and bad rewards or models are refused by name. (Checkpoints, resume and
the divergence guard, which the three trainers share, are tested in test_rlhf_trainer.py.)"""

from __future__ import annotations

import copy

import pytest
import torch

from minilm.model import GPT, GPTConfig
from minilm.rlhf.ppo import PPOConfig, train_ppo
from minilm.rlhf.rollout import ValueModel
from test_finetune_lora import base_model  # a tiny GPT-2-shaped model with large weights

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, STOP, PAD, TARGET = 24, 5, 0, 7  # a small vocabulary: the policy samples TARGET now and then from the start
CONFIG = GPTConfig(vocab_size=VOCAB, context=32, n_layer=2, n_head=4, n_embd=32)
_prompts = torch.Generator().manual_seed(0)
PROMPTS = [torch.randint(1, VOCAB, (int(torch.randint(2, 6, (1,), generator=_prompts)),), generator=_prompts).tolist()
           for _ in range(32)]  # fmt: skip


def contains_target(prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> torch.Tensor:
    """The synthetic reward: 1 for an answer that contains TARGET, else 0."""
    return torch.tensor([float(TARGET in completion) for completion in completion_ids])


def models(seed: int = 1) -> tuple[GPT, GPT, ValueModel]:
    """A policy, its frozen reference (a copy), and a value model on a copy of the policy's GPT."""
    policy = base_model(seed, CONFIG)
    return policy, copy.deepcopy(policy), ValueModel(copy.deepcopy(policy), seed=seed)


def ppo_config(**overrides) -> PPOConfig:
    return PPOConfig(**{**dict(beta=0.05, lr=1e-3, iterations=30, rollout_batch_size=16, minibatch_size=8,
                               max_new_tokens=8, stop_token=STOP, pad_token=PAD, precision="fp32",
                               checkpoint_every=1000), **overrides})  # fmt: skip


def mean(history: list[dict], name: str, part: slice) -> float:
    values = [record[name] for record in history[part]]
    return sum(values) / len(values)


TRL_NAMES = ("objective/kl", "objective/entropy", "objective/non_score_reward", "objective/rlhf_reward",
             "objective/scores", "policy/approxkl_avg", "policy/clipfrac_avg", "policy/entropy_avg", "loss/policy_avg",
             "loss/value_avg", "val/clipfrac_avg", "val/ratio", "val/num_eos_tokens", "lr")  # fmt: skip


def test_ppo_raises_the_reward_and_a_larger_beta_keeps_the_kl_smaller(tmp_path):
    """Measured (30 iterations of 16 answers, 2.5 s a run): at beta 0.05 the mean score rose from 0.25 over the first
    three iterations to 0.88 over the last five, with objective/kl 3.5 nats an answer there; at beta 1 the score
    stayed at 0.25 and the KL at 0.7 (means over the last ten: 3.8 against 0.7). The value model's loss fell from
    0.076 to 0.023 at beta 0.05. With the advantages' sign flipped by hand the score falls to 0.01, and with the KL
    penalty's flipped the KL passes 20: either way this test fails."""
    runs = {}
    for beta in (0.05, 1.0):
        policy, reference, value_model = models()
        runs[beta] = train_ppo(policy, reference, value_model, contains_target, PROMPTS, ppo_config(beta=beta),
                               tmp_path / str(beta))  # fmt: skip
    low = runs[0.05]
    assert [r["step"] for r in low] == list(range(1, 31)) and all(name in low[-1] for name in TRL_NAMES)
    start, end = mean(low, "objective/scores", slice(0, 3)), mean(low, "objective/scores", slice(-5, None))
    assert start < 0.4 and end > start + 0.4, (start, end)
    assert all(0 < r["objective/kl"] < 20 for r in low[-10:])  # finite and positive
    assert mean(low, "loss/value_avg", slice(-5, None)) < mean(low, "loss/value_avg", slice(0, 5))
    high = runs[1.0]
    assert mean(high, "objective/kl", slice(-10, None)) < mean(low, "objective/kl", slice(-10, None)) / 2
    assert mean(high, "objective/scores", slice(-5, None)) < end
    assert mean(high, "objective/rlhf_reward", slice(-5, None)) > mean(high, "objective/scores", slice(-5, None)) - 5


def test_the_first_iteration_starts_at_the_reference(tmp_path):
    """Before any update the policy is the reference: KL 0, score - beta KL = score, and the first minibatch's
    ratio is 1 (so nothing is clipped yet); later updates move it, within PPO's clip."""
    policy, reference, value_model = models()
    history = train_ppo(policy, reference, value_model, contains_target, PROMPTS, ppo_config(iterations=2, num_ppo_epochs=1,
                                                                                              minibatch_size=16), tmp_path)  # fmt: skip
    first = history[0]
    assert first["objective/kl"] == 0.0 and first["objective/non_score_reward"] == 0.0
    assert first["objective/rlhf_reward"] == first["objective/scores"]
    assert first["val/ratio"] == pytest.approx(1.0, abs=1e-6) and first["policy/clipfrac_avg"] == 0.0
    assert first["policy/approxkl_avg"] == pytest.approx(0.0, abs=1e-10)
    assert history[1]["objective/kl"] != 0.0  # the update moved the policy


def test_missing_eos_penalty_lowers_the_score_of_answers_that_never_stop(tmp_path):
    policy, reference, value_model = models()
    zero = lambda prompts, completions: torch.zeros(len(completions))  # noqa: E731
    history = train_ppo(policy, reference, value_model, zero, PROMPTS, ppo_config(iterations=1, missing_eos_penalty=2.0),
                        tmp_path)  # fmt: skip
    stopped = history[0]["val/num_eos_tokens"]
    assert 0 < stopped < 16  # some answers stopped, some ran out of tokens
    assert history[0]["objective/scores"] == pytest.approx(-2.0 * (16 - stopped) / 16)
    with pytest.raises(ValueError, match="needs a stop_token"):
        ppo_config(missing_eos_penalty=1.0, stop_token=None)


def test_bad_rewards_and_models_are_refused_by_name(tmp_path):
    policy, reference, value_model = models()
    config = ppo_config(iterations=1)

    def nan_at_3(prompts, completions):
        scores = contains_target(prompts, completions)
        scores[3] = float("nan")
        return scores

    with pytest.raises(ValueError, match=r"reward_fn returned nan for completion 3 \(1 of 16 scores are not finite\)"):
        train_ppo(policy, reference, value_model, nan_at_3, PROMPTS, config, tmp_path)
    infinite = lambda prompts, completions: torch.full((len(completions),), float("inf"))  # noqa: E731
    with pytest.raises(ValueError, match="returned inf for completion 0 .16 of 16"):
        train_ppo(policy, reference, value_model, infinite, PROMPTS, config, tmp_path)
    one = lambda prompts, completions: torch.ones(1)  # noqa: E731
    with pytest.raises(ValueError, match=r"shape \(1,\) for 16 completions"):
        train_ppo(policy, reference, value_model, one, PROMPTS, config, tmp_path)
    other = GPT(GPTConfig(vocab_size=VOCAB + 8, context=32, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="the reference has a vocabulary of 32 tokens and the policy 24"):
        train_ppo(policy, other, value_model, contains_target, PROMPTS, config, tmp_path)
    with pytest.raises(ValueError, match="the value model has a vocabulary of 32 tokens and the policy 24"):
        train_ppo(policy, reference, ValueModel(other), contains_target, PROMPTS, config, tmp_path)
    with pytest.raises(ValueError, match="the reference is the policy itself"):
        train_ppo(policy, policy, value_model, contains_target, PROMPTS, config, tmp_path)
    with pytest.raises(ValueError, match="must be a multiple of minibatch_size"):
        ppo_config(rollout_batch_size=16, minibatch_size=5)
