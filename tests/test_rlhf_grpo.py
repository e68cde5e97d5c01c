"""GRPO (minilm.rlhf.grpo) on a tiny GPT with PPO's synthetic reward (+1 when the answer contains one token): it
learns to write that token within seconds, a larger beta holds it nearer the reference, the groups and their
advantages are laid out as TRL lays them out, and bad rewards are refused by name. (Checkpoints, resume and the
divergence guard, which the three trainers share, are tested in test_rlhf_trainer.py.)"""

from __future__ import annotations

import copy

import pytest
import torch

from minilm.model import GPT, GPTConfig
from minilm.rlhf.grpo import GRPOConfig, train_grpo
from test_rlhf_ppo import PAD, PROMPTS, STOP, VOCAB, contains_target, mean, models

pytestmark = pytest.mark.usefixtures("one_thread")


def grpo_config(**overrides) -> GRPOConfig:
    return GRPOConfig(**{**dict(beta=0.04, lr=1e-3, iterations=30, prompts_per_iteration=4, num_generations=4,
                                max_new_tokens=8, stop_token=STOP, pad_token=PAD, precision="fp32",
                                checkpoint_every=1000), **overrides})  # fmt: skip


TRL_NAMES = ("reward", "reward_std", "frac_reward_zero_std", "completions/mean_length", "kl", "entropy",
             "clip_ratio/region_mean", "loss", "lr")  # fmt: skip


def test_grpo_raises_the_reward_and_a_larger_beta_keeps_the_kl_smaller(tmp_path):
    """Measured (30 iterations of 4 prompts x 4 answers, 0.8 s a run): at beta 0.04 the mean reward rose from 0.21
    over the first three iterations to 0.78 over the last five, with a k3 KL of 0.56 nats per token over the last
    ten; at beta 1 the reward reached 0.31 and the KL 0.04. With the advantages' sign flipped by hand, the reward
    falls and this test fails."""
    runs = {}
    for beta in (0.04, 1.0):
        policy, reference, _ = models()
        runs[beta] = train_grpo(policy, reference, contains_target, PROMPTS, grpo_config(beta=beta), tmp_path / str(beta))
    low = runs[0.04]
    assert [r["step"] for r in low] == list(range(1, 31)) and all(name in low[-1] for name in TRL_NAMES)
    start, end = mean(low, "reward", slice(0, 3)), mean(low, "reward", slice(-5, None))
    assert start < 0.4 and end > start + 0.4, (start, end)
    assert all(0 < r["kl"] < 20 for r in low[-10:])  # finite and positive
    high = runs[1.0]
    assert mean(high, "kl", slice(-10, None)) < mean(low, "kl", slice(-10, None)) / 2
    assert mean(high, "reward", slice(-5, None)) < end


def test_groups_are_consecutive_and_a_group_scored_alike_teaches_nothing(tmp_path):
    """Each prompt's G answers are consecutive rows, as TRL repeats its prompts; the reward function sees them so.
    A reward that is the same for every answer of a group gives every advantage 0; at the first iteration the policy
    is the reference, where the k3 term's gradient is 0 too: the update leaves the weights as they were."""
    seen = []

    def by_prompt(prompt_ids, completion_ids):
        seen.append(prompt_ids)
        return torch.tensor([float(len(prompt)) for prompt in prompt_ids])  # alike within a group, not across

    policy, reference, _ = models()
    before = copy.deepcopy(policy.state_dict())
    history = train_grpo(policy, reference, by_prompt, PROMPTS, grpo_config(iterations=1), tmp_path)
    groups = [seen[0][i : i + 4] for i in range(0, 16, 4)]
    assert all(group == [group[0]] * 4 for group in groups) and len({tuple(g[0]) for g in groups}) == 4
    assert history[0]["frac_reward_zero_std"] == 1.0 and history[0]["reward_std"] == 0.0
    assert history[0]["kl"] == 0.0 and history[0]["loss"] == 0.0 and history[0]["grad_norm"] == 0.0
    assert all(torch.equal(before[name], value) for name, value in policy.state_dict().items())


def test_several_updates_per_batch_clip_against_the_policy_that_sampled(tmp_path):
    """One update per batch (TRL's default) has ratio 1 throughout, so nothing is ever clipped; two passes in
    minibatches of 8 compare each update with the policy that sampled (old log-probabilities), and clip."""
    policy, reference, _ = models()
    single = train_grpo(policy, reference, contains_target, PROMPTS, grpo_config(iterations=6), tmp_path / "one")
    assert all(r["clip_ratio/region_mean"] == 0.0 for r in single)
    policy, reference, _ = models()
    several = train_grpo(policy, reference, contains_target, PROMPTS, grpo_config(iterations=6, epochs=2, minibatch_size=8,
                                                                                 lr=3e-3), tmp_path / "several")  # fmt: skip
    assert max(r["clip_ratio/region_mean"] for r in several) > 0.0
    with pytest.raises(ValueError, match="minibatch_size=5 must divide the 16 answers"):
        grpo_config(minibatch_size=5)
    with pytest.raises(ValueError, match="at least 2 answers"):
        grpo_config(num_generations=1)


def test_bad_rewards_and_models_are_refused_by_name(tmp_path):
    policy, reference, _ = models()
    nan = lambda prompts, completions: torch.full((len(completions),), float("nan"))  # noqa: E731
    with pytest.raises(ValueError, match=r"reward_fn returned nan for completion 0 \(16 of 16 scores are not finite\)"):
        train_grpo(policy, reference, nan, PROMPTS, grpo_config(iterations=1), tmp_path)
    other = GPT(GPTConfig(vocab_size=VOCAB + 8, context=32, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="the reference has a vocabulary of 32 tokens and the policy 24"):
        train_grpo(policy, other, contains_target, PROMPTS, grpo_config(iterations=1), tmp_path)
