"""The RLHF losses (`minilm.rlhf.objectives`) by hand, against TRL 1.16, and against the closed-form optimum.

Three kinds of evidence:

1. *By hand.* Each loss on a few numbers, against the formula written out here; masks with padding
   that holds absurd values, to show that padding is ignored; `whiten` and `gae` against plain loops.
2. *Against TRL 1.16.* Where TRL's code runs without a trained model, it is called: `entropy_from_logits`,
   `selective_log_softmax` and `nanstd` directly; `RewardTrainer.compute_loss`,
   `DPOTrainer._compute_loss` (with TRL's own fused LM head on a tiny GPT-2) and
   `GRPOTrainer._compute_loss` as plain functions on a stand-in for the trainer that holds only the
   attributes they read. TRL 1.16 no longer ships a PPO trainer; PPO's pieces are checked against
   the formulas of trl/experimental/ppo/ppo_trainer.py (`PPOTrainer.train`, `masked_whiten`), the last
   version before its removal, written out below.
3. *The closed form.* On `minilm.rlhf.bandit.toy_bandit` (4 prompts x 6 answers, beta = 0.5,
   TV(pi_ref, pi*) = 0.53), each method trained from pi_ref, measured by the total-variation distance
   to pi* averaged over the prompts. Measured over seeds 0-4 when the thresholds were set:
   PPO with the KL penalty 0.0005-0.0012 (threshold 0.01); DPO on 100,000 comparisons 0.015-0.019
   (threshold 0.03), its implicit reward within 0.040-0.068 of r after removing each prompt's mean
   (0.12); the reward model within 0.040-0.067 (0.12), in r's order every time; GRPO as TRL's defaults
   compute it (group-scaled advantages, k3 in the loss) 0.233-0.238: it moves toward pi* and stops short
   (asserted between 0.15 and 0.30), because of those two choices; with both undone (unscaled
   advantages, TRL's `use_bias_correction_kl`) 0.021-0.030 (0.05), and 0.007-0.014 (0.03) from the
   policy it then aims at, pi* for beta G / (G - 1). The wrong variants stay far: PPO without the
   penalty 0.409, GRPO without it 0.402, DPO with chosen and rejected swapped 0.83.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from minilm.rlhf import objectives as rl
from minilm.rlhf.bandit import (
    BanditDPOConfig,
    BanditGRPOConfig,
    BanditPPOConfig,
    BanditRewardConfig,
    Preferences,
    mean_tv,
    objective,
    sample_preferences,
    toy_bandit,
    train_dpo,
    train_grpo,
    train_ppo,
    train_reward_model,
)
from spread import spread_weights

pytestmark = pytest.mark.usefixtures("one_thread")

TRL_TOLERANCE = 1e-6


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def padded_mask(lengths: list[int], tokens: int) -> torch.Tensor:
    """A right-padded bool mask: row i has lengths[i] real tokens."""
    return torch.arange(tokens).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


# ----------------------------------------------------------------------------------------------------------------
# 1. By hand


def test_masked_mean_counts_only_real_tokens():
    values = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert rl.masked_mean(values, mask).item() == pytest.approx(2.0)
    assert rl.masked_mean(values, mask.bool(), dim=1).tolist() == pytest.approx([1.5, 3.0])


@pytest.mark.parametrize("shift_mean", [True, False])
def test_whiten_matches_a_loop(shift_mean):
    values = torch.randn(3, 5, generator=seeded(0))
    lengths = [5, 3, 1]
    values[~padded_mask(lengths, 5)] = 1e4  # padding that would dominate any statistic it entered
    real = [values[i, t].item() for i, n in enumerate(lengths) for t in range(n)]
    mean = sum(real) / len(real)
    var = sum((v - mean) ** 2 for v in real) / (len(real) - 1)
    expected = torch.zeros(3, 5)
    for i, n in enumerate(lengths):
        for t in range(n):
            expected[i, t] = (values[i, t].item() - mean) / math.sqrt(var + 1e-8) + (0.0 if shift_mean else mean)
    for mask in (padded_mask(lengths, 5), padded_mask(lengths, 5).float()):
        torch.testing.assert_close(rl.whiten(values, mask, shift_mean=shift_mean), expected, atol=1e-5, rtol=1e-5)


def test_gae_matches_a_loop():
    gamma, lam, lengths = 0.9, 0.8, [5, 3, 1]
    rewards, values = torch.randn(2, 3, 5, generator=seeded(1))
    mask = padded_mask(lengths, 5)
    rewards[~mask], values[~mask] = 1e3, -1e3
    advantages, returns = rl.gae(rewards, values, mask, gamma, lam)
    for i, n in enumerate(lengths):
        next_advantage = 0.0
        for t in reversed(range(n)):
            next_value = values[i, t + 1].item() if t + 1 < n else 0.0  # nothing after the completion's end
            delta = rewards[i, t].item() + gamma * next_value - values[i, t].item()
            next_advantage = delta + gamma * lam * next_advantage
            assert advantages[i, t].item() == pytest.approx(next_advantage, abs=1e-5)
            assert returns[i, t].item() == pytest.approx(next_advantage + values[i, t].item(), abs=1e-5)
        assert advantages[i, n:].abs().sum() == 0 and returns[i, n:].abs().sum() == 0
    # gamma = lam = 1: the advantage is the sum of the rewards still to come, minus the value.
    advantages, _ = rl.gae(rewards, values, mask, 1.0, 1.0)
    to_come = (rewards * mask).flip(1).cumsum(1).flip(1)
    torch.testing.assert_close(advantages, (to_come - values) * mask, atol=1e-4, rtol=1e-5)


def test_bradley_terry_loss_by_hand():
    chosen, rejected, margin = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.5]), torch.tensor([0.5, 0.0])
    softplus = lambda z: math.log1p(math.exp(z))  # -log sigmoid(x) = log(1 + e^-x)
    assert rl.bradley_terry_loss(chosen, rejected).item() == pytest.approx((softplus(-1.0) + softplus(0.5)) / 2)
    assert rl.bradley_terry_loss(chosen, rejected, margin).item() == pytest.approx((softplus(-0.5) + softplus(0.5)) / 2)
    centred = rl.bradley_terry_loss(chosen, rejected, center_rewards_coefficient=0.01).item()
    assert centred == pytest.approx((softplus(-1.0) + softplus(0.5)) / 2 + 0.01 * (1.0**2 + 0.5**2) / 2)


def test_sequence_logprobs_sums_the_completion_tokens():
    # Row 0: a prompt token (masked), then two completion tokens, then padding labelled -100.
    logits = torch.tensor([[[5.0, 1.0, 2.0], [0.0, 0.0, 0.0], [0.0, math.log(2.0), 0.0], [9.0, 9.0, 9.0]]])
    labels = torch.tensor([[0, 2, 1, -100]])
    mask = torch.tensor([[0, 1, 1, 0]])
    expected = math.log(1 / 3) + math.log(2 / 4)
    assert rl.sequence_logprobs(logits, labels, mask).item() == pytest.approx(expected)


def test_entropy_by_hand():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, -math.inf, -math.inf]])
    expected = [math.log(4.0), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))]
    assert rl.entropy_from_logits(logits[:1]).tolist() == pytest.approx(expected[:1])
    assert rl.entropy_from_logits(logits[1:, :2]).tolist() == pytest.approx(expected[1:])


def test_dpo_loss_and_metrics_by_hand():
    beta = 0.1
    policy_chosen, policy_rejected = torch.tensor([-1.0, -4.0]), torch.tensor([-3.0, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-2.0, -3.0]), torch.tensor([-2.0, -3.0])
    losses, chosen_rewards, rejected_rewards = rl.dpo_loss(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta
    )
    # Pair 0: rewards 0.1 and -0.1, ranked right; pair 1: -0.1 and 0.1, ranked wrong.
    assert chosen_rewards.tolist() == pytest.approx([0.1, -0.1])
    assert rejected_rewards.tolist() == pytest.approx([-0.1, 0.1])
    assert losses.tolist() == pytest.approx([math.log1p(math.exp(-0.2)), math.log1p(math.exp(0.2))])
    metrics = rl.dpo_metrics(chosen_rewards, rejected_rewards)
    assert metrics == pytest.approx(
        {"rewards/chosen": 0.0, "rewards/rejected": 0.0, "rewards/accuracies": 0.5, "rewards/margins": 0.0}, abs=1e-7
    )
    # The wrong way round, the loss is higher: a test that the sign matters.
    swapped, _, _ = rl.dpo_loss(policy_rejected, policy_chosen, ref_rejected, ref_chosen, beta)
    assert swapped[0] > losses[0]


def test_kl_penalized_rewards_by_hand():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 9.0]])
    ref_logprobs = torch.tensor([[-1.5, -2.0, -2.0], [-2.0, -1.0, -9.0]])
    scores, mask = torch.tensor([10.0, 20.0]), torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards = rl.kl_penalized_rewards(logprobs, ref_logprobs, scores, mask, beta=0.1)
    expected = torch.tensor([[-0.05, 0.0, 0.1 + 10.0], [-0.1, 0.0 + 20.0, 0.0]])  # score on the last real token
    torch.testing.assert_close(rewards, expected)
    metrics = rl.rlhf_objective_metrics(logprobs, ref_logprobs, scores, mask, beta=0.1)
    assert metrics["objective/kl"] == pytest.approx((0.5 + 0.0 - 1.0 + 1.0 + 0.0) / 2)
    assert metrics["objective/rlhf_reward"] == pytest.approx(15.0 - 0.1 * 0.25)
    assert metrics["objective/entropy"] == pytest.approx((6.0 + 2.0) / 2)


def test_ppo_policy_loss_by_hand():
    # Four real tokens, one each side of the clip for each sign of the advantage, and a padding token.
    logratio = torch.tensor([[math.log(1.5), math.log(0.5), math.log(1.5), math.log(0.5), 5.0]])
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    old = torch.full_like(logratio, -2.0)
    loss, clipfrac, approxkl = rl.ppo_policy_loss(old + logratio, old, advantages, mask, clip_range=0.2)
    # max(-A r, -A clip(r)): -1.2 (clipped), -0.5, 1.5, 0.8 (clipped)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.5 + 0.8) / 4)
    assert clipfrac.item() == pytest.approx(0.5)
    assert approxkl.item() == pytest.approx(0.5 * (2 * math.log(1.5) ** 2 + 2 * math.log(0.5) ** 2) / 4)


def test_ppo_value_loss_by_hand():
    values, old_values = torch.tensor([[1.0, 0.4, 5.0]]), torch.tensor([[0.5, 0.5, 0.0]])
    returns, mask = torch.tensor([[2.0, 0.0, -7.0]]), torch.tensor([[1, 1, 0]])
    loss, clipfrac = rl.ppo_value_loss(values, old_values, returns, mask, clip_range_value=0.2)
    # token 0: V clipped to 0.7, max((1 - 2)^2, (0.7 - 2)^2) = 1.69 (clipped); token 1: within the clip, 0.16
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.16) / 2)
    assert clipfrac.item() == pytest.approx(0.5)


def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    scaled = rl.group_advantages(rewards, group_size=3)
    assert scaled.tolist() == pytest.approx([-1 / (1 + 1e-4), 0.0, 1 / (1 + 1e-4), 0.0, 0.0, 0.0])  # sample std 1
    assert rl.group_advantages(rewards, group_size=3, scale=False).tolist() == pytest.approx([-1.0, 0.0, 1.0, 0, 0, 0])


def test_k3_is_an_unbiased_nonnegative_estimate_of_kl():
    assert rl.k3_kl(torch.tensor(-1.0), torch.tensor(-1.0)).item() == 0.0
    assert rl.k3_kl(torch.tensor(0.0), torch.tensor(math.log(2.0))).item() == pytest.approx(1 - math.log(2.0))
    generator = seeded(2)
    policy = torch.randn(5, generator=generator, dtype=torch.float64).softmax(-1)
    ref = torch.randn(5, generator=generator, dtype=torch.float64).softmax(-1)
    samples = rl.k3_kl(policy.log(), ref.log())
    assert (samples >= 0).all()
    kl = (policy * (policy.log() - ref.log())).sum()
    assert (policy * samples).sum().item() == pytest.approx(kl.item(), abs=1e-12)  # E_{y ~ pi} k3 = KL(pi || ref)


def test_grpo_loss_by_hand():
    # Two answers: advantages +1 (two tokens) and -1 (one token and padding).
    logprobs = torch.tensor([[math.log(0.3), math.log(0.2)], [math.log(0.1), 7.0]])
    ratio = torch.tensor([[1.5, 1.0], [0.5, 1.0]])
    ref_logprobs = torch.tensor([[math.log(0.3), math.log(0.4)], [math.log(0.2), -7.0]])
    advantages, mask = torch.tensor([1.0, -1.0]), torch.tensor([[1, 1], [1, 0]])
    loss, kl, clip_ratio = rl.grpo_loss(
        logprobs, logprobs - ratio.log(), ref_logprobs, advantages, mask, clip_eps=0.2, beta=0.1
    )
    # -min(r A, clip(r) A): -1.2 (clipped), -1.0, 0.8 (clipped); k3: 0, 1 - log 2, 1 - log 2
    k3 = 1 - math.log(2.0)
    per_token = [-1.2, -1.0 + 0.1 * k3, 0.8 + 0.1 * k3]
    assert loss.item() == pytest.approx(sum(per_token) / 3)  # "dapo": over the batch's three real tokens
    per_row_first = ((per_token[0] + per_token[1]) / 2 + per_token[2]) / 2  # "grpo" would average each row first
    assert abs(loss.item() - per_row_first) > 0.05
    assert kl.item() == pytest.approx(2 * k3 / 3) and clip_ratio.item() == pytest.approx(2 / 3)
    corrected, kl, _ = rl.grpo_loss(
        logprobs, logprobs - ratio.log(), ref_logprobs, advantages, mask, 0.2, 0.1, bias_correction_kl=True
    )
    assert corrected.item() == pytest.approx((-1.2 - 1.0 + 0.1 * k3 * 1.0 + 0.8 + 0.1 * k3 * 0.5) / 3)
    assert kl.item() == pytest.approx(k3 * 1.5 / 3)


def test_kl_optimal_policy_is_the_optimum():
    bandit = toy_bandit()
    direct = bandit.ref_probs * torch.exp(bandit.rewards / bandit.beta)
    torch.testing.assert_close(bandit.optimal, direct / direct.sum(-1, keepdim=True))
    log_z = torch.logsumexp(bandit.ref_probs.log() + bandit.rewards / bandit.beta, -1)
    best = objective(bandit, bandit.optimal)
    torch.testing.assert_close(best, bandit.beta * log_z)  # J(pi*) = beta log Z per prompt
    generator = seeded(3)
    for _ in range(20):  # any other policy does worse on every prompt
        other = (bandit.optimal.log() + 0.3 * torch.randn(4, 6, generator=generator)).softmax(-1)
        assert (objective(bandit, other) < best).all()
    assert rl.total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])).item() == pytest.approx(0.5)
    assert mean_tv(bandit.ref_probs, bandit.optimal) > 0.5  # the reference is far from the target


# ----------------------------------------------------------------------------------------------------------------
# 2. Against TRL 1.16


class OneProcess:
    """Just what TRL's loss methods ask of an `accelerate.Accelerator`, for one process on the CPU."""

    device = torch.device("cpu")
    num_processes = 1
    sync_gradients = True

    def gather(self, tensor):
        return tensor

    gather_for_metrics = gather

    def reduce(self, tensor, reduction="sum"):
        return tensor


def trainer_stand_in(**attributes) -> SimpleNamespace:
    """The attributes a TRL trainer's loss method reads, and nothing else: the method runs as a plain function."""
    return SimpleNamespace(
        accelerator=OneProcess(),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
        aux_loss_enabled=False,
        **attributes,
    )


def test_entropy_and_log_probabilities_match_trl_utils():
    utils = pytest.importorskip("trl.trainer.utils")
    generator = seeded(4)
    logits = 3 * torch.randn(2, 5, 11, generator=generator)
    labels = torch.randint(11, (2, 5), generator=generator)
    mask = padded_mask([5, 2], 5)
    torch.testing.assert_close(
        rl.entropy_from_logits(logits), utils.entropy_from_logits(logits), atol=TRL_TOLERANCE, rtol=0
    )
    trl_sums = (utils.selective_log_softmax(logits, labels) * mask).sum(1)
    torch.testing.assert_close(
        rl.sequence_logprobs(logits, labels.masked_fill(~mask, -100), mask), trl_sums, atol=TRL_TOLERANCE, rtol=0
    )


def test_group_advantages_match_trl_formula():
    # The advantages are computed inside GRPOTrainer._generate_and_score_completions (trl/trainer/grpo_trainer.py),
    # which needs a model and reward functions; its formula with scale_rewards="group", on TRL's own `nanstd`:
    # (rewards - group mean) / (nanstd(group) + 1e-4).
    utils = pytest.importorskip("trl.trainer.utils")
    rewards = torch.randn(12, generator=seeded(5))
    groups = rewards.view(-1, 4)
    expected = (groups - groups.nanmean(1, keepdim=True)) / (utils.nanstd(groups, dim=1).unsqueeze(1) + 1e-4)
    torch.testing.assert_close(rl.group_advantages(rewards, 4), expected.view(-1), atol=TRL_TOLERANCE, rtol=0)


@pytest.mark.parametrize("center", [None, 0.01])
def test_bradley_terry_loss_matches_trl_reward_trainer(center):
    reward_trainer = pytest.importorskip("trl.trainer.reward_trainer")
    generator = seeded(6)
    chosen, rejected = torch.randn(2, 8, generator=generator)
    margin = torch.rand(8, generator=generator)
    model = SimpleNamespace(training=True)
    trainer = trainer_stand_in(model=model, args=SimpleNamespace(center_rewards_coefficient=center))

    def reward_model(**inputs):  # TRL batches the chosen rows, then the rejected ones, and splits the scores
        return SimpleNamespace(logits=torch.cat([chosen, rejected]).unsqueeze(-1))

    for with_margin in (False, True):
        inputs = {"input_ids": torch.zeros(16, 3, dtype=torch.long), "attention_mask": torch.ones(16, 3)}
        if with_margin:
            inputs["margin"] = margin
        trl_loss = reward_trainer.RewardTrainer.compute_loss(trainer, reward_model, inputs)
        ours = rl.bradley_terry_loss(chosen, rejected, margin if with_margin else None, center)
        assert abs(ours.item() - trl_loss.item()) < TRL_TOLERANCE


def tiny_hf_gpt():
    """The course's GPT exported to Hugging Face, small and with large enough weights that every token matters."""
    from minilm.model import GPT, GPTConfig
    from minilm.model.hf import to_hf

    model = GPT(GPTConfig(vocab_size=40, context=16, n_layer=1, n_head=2, n_embd=16), seed=0)
    return to_hf(spread_weights(model, 0.3, 7)).eval()


def test_dpo_matches_trl_dpo_trainer():
    trl_utils = pytest.importorskip("trl.trainer.utils")
    dpo_trainer = pytest.importorskip("trl.trainer.dpo_trainer")
    model = tiny_hf_gpt()
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    # Three pairs: rows 0-2 chosen, rows 3-5 rejected (TRL's layout), prompts of 3 tokens, answers of 2 to 6
    # tokens, right-padded with 0 and attention_mask 0.
    generator = seeded(8)
    lengths = [3 + n for n in (4, 2, 6, 3, 5, 2)]
    input_ids = torch.randint(1, 40, (6, 9), generator=generator)
    attention_mask = padded_mask(lengths, 9).long()
    input_ids = input_ids * attention_mask
    completion_mask = attention_mask.clone()
    completion_mask[:, :3] = 0
    ref_logps = torch.randn(6, generator=generator) - 10.0
    beta = 0.3

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.detach()
    ours = rl.sequence_logprobs(logits[:, :-1], input_ids[:, 1:], completion_mask[:, 1:])  # we shift
    labels = input_ids.masked_fill(completion_mask == 0, -100)
    with torch.no_grad():
        fused = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
    torch.testing.assert_close(ours, fused.log_probs.sum(1), atol=1e-5, rtol=0)  # TRL's fused head shifts

    trainer = trainer_stand_in(
        model=model, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
        loss_types=["sigmoid"], loss_weights=[1.0], beta=beta, use_weighting=False,
    )  # fmt: skip
    inputs = {
        "input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask,
        "ref_chosen_logps": ref_logps[:3], "ref_rejected_logps": ref_logps[3:],
    }  # fmt: skip
    with torch.no_grad():
        trl_loss = dpo_trainer.DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
    losses, chosen_rewards, rejected_rewards = rl.dpo_loss(ours[:3], ours[3:], ref_logps[:3], ref_logps[3:], beta)
    assert abs(losses.mean().item() - trl_loss.item()) < TRL_TOLERANCE
    logged = trainer._metrics["eval"]
    for name, value in rl.dpo_metrics(chosen_rewards, rejected_rewards).items():
        assert abs(value - logged[name][0]) < 1e-5, name
    assert 0.0 < logged["rewards/accuracies"][0] < 1.0  # the pairs are not all ranked alike


@pytest.mark.parametrize("bias_correction_kl", [False, True])
def test_grpo_loss_matches_trl_grpo_trainer(bias_correction_kl):
    grpo_trainer = pytest.importorskip("trl.trainer.grpo_trainer")
    generator = seeded(9)
    mask = padded_mask([4, 1, 3, 2], 4).long()
    old_logprobs = -torch.rand(4, 4, generator=generator) * 3
    ref_logprobs = old_logprobs + 0.3 * torch.randn(4, 4, generator=generator)
    start = old_logprobs + 0.4 * torch.randn(4, 4, generator=generator)  # ratios on both sides of the clip
    advantages = torch.tensor([1.0, -0.5, 0.7, -1.2])

    ours = start.clone().requires_grad_(True)
    loss, kl, clip_ratio = rl.grpo_loss(
        ours, old_logprobs, ref_logprobs, advantages, mask, 0.2, 0.05, bias_correction_kl
    )
    loss.backward()

    theirs = start.clone().requires_grad_(True)
    trainer = trainer_stand_in(
        model=SimpleNamespace(training=True),
        _get_per_token_logps_and_entropies=lambda *args, **kwargs: (theirs, torch.ones(4, 4), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
        beta=0.05, loss_type="dapo", epsilon_low=0.2, epsilon_high=0.2, use_vllm=False,
        current_gradient_accumulation_steps=1, _entropy_bonus_enabled=False,
        args=SimpleNamespace(use_bias_correction_kl=bias_correction_kl, delta=None, steps_per_generation=1),
    )  # fmt: skip
    inputs = {
        "prompt_ids": torch.ones(4, 2, dtype=torch.long), "prompt_mask": torch.ones(4, 2, dtype=torch.long),
        "completion_ids": torch.ones(4, 4, dtype=torch.long), "completion_mask": mask, "advantages": advantages,
        "old_per_token_logps": old_logprobs, "ref_per_token_logps": ref_logprobs, "num_items_in_batch": mask.sum(),
    }  # fmt: skip
    trl_loss = grpo_trainer.GRPOTrainer._compute_loss(trainer, None, inputs)
    trl_loss.backward()
    assert abs(loss.item() - trl_loss.item()) < TRL_TOLERANCE
    torch.testing.assert_close(ours.grad, theirs.grad, atol=TRL_TOLERANCE, rtol=0)
    logged = trainer._metrics["train"]
    assert abs(kl.item() - logged["kl"][0]) < TRL_TOLERANCE
    assert abs(clip_ratio.item() - logged["clip_ratio/region_mean"][0]) < TRL_TOLERANCE
    assert 0.0 < clip_ratio.item() < 1.0


def test_ppo_matches_trl_ppo_trainer_formulas():
    # TRL 1.16 ships no PPO trainer; its last one (trl/experimental/ppo/ppo_trainer.py, PPOTrainer.train, with
    # masked_mean / masked_var / masked_whiten beside it) computed, for rows without padding, as written out here.
    # Padding is where its bookkeeping differs (see `kl_penalized_rewards`); the tests above cover ours there.
    generator = seeded(10)
    batch, tokens, beta, gamma, lam, clip, clip_value = 3, 4, 0.05, 1.0, 0.95, 0.2, 0.2
    logprobs, ref_logprobs, values, new_logprobs, new_values = torch.randn(5, batch, tokens, generator=generator)
    scores = torch.randn(batch, generator=generator)
    mask = torch.ones(batch, tokens)

    trl_rewards = -beta * (logprobs - ref_logprobs)  # the "k1" KL estimator
    trl_rewards[torch.arange(batch), tokens - 1] += scores  # sequence_lengths + 1 is past the end: the last token
    steps, last = [], 0.0
    for t in reversed(range(tokens)):
        next_value = values[:, t + 1] if t < tokens - 1 else 0.0
        last = trl_rewards[:, t] + gamma * next_value - values[:, t] + gamma * lam * last
        steps.append(last)
    trl_advantages = torch.stack(steps[::-1], 1)
    trl_returns = trl_advantages + values
    mean, var = trl_advantages.mean(), trl_advantages.var()  # masked_var: unbiased
    trl_whitened = (trl_advantages - mean) * torch.rsqrt(var + 1e-8)
    ratio = torch.exp(new_logprobs - logprobs)
    pg_losses = -trl_whitened * ratio
    pg_losses2 = -trl_whitened * torch.clamp(ratio, 1 - clip, 1 + clip)
    trl_pg_loss = torch.max(pg_losses, pg_losses2).mean()
    trl_clipfrac = (pg_losses2 > pg_losses).float().mean()
    trl_approxkl = 0.5 * ((new_logprobs - logprobs) ** 2).mean()
    clipped_values = torch.clamp(new_values, values - clip_value, values + clip_value)
    vf1, vf2 = (new_values - trl_returns) ** 2, (clipped_values - trl_returns) ** 2
    trl_vf_loss, trl_vf_clipfrac = 0.5 * torch.max(vf1, vf2).mean(), (vf2 > vf1).float().mean()

    rewards = rl.kl_penalized_rewards(logprobs, ref_logprobs, scores, mask, beta)
    advantages, returns = rl.gae(rewards, values, mask, gamma, lam)
    whitened = rl.whiten(advantages, mask)
    pg_loss, clipfrac, approxkl = rl.ppo_policy_loss(new_logprobs, logprobs, whitened, mask, clip)
    vf_loss, vf_clipfrac = rl.ppo_value_loss(new_values, values, returns, mask, clip_value)
    for ours, theirs in [
        (rewards, trl_rewards), (advantages, trl_advantages), (returns, trl_returns), (whitened, trl_whitened),
        (pg_loss, trl_pg_loss), (clipfrac, trl_clipfrac), (approxkl, trl_approxkl), (vf_loss, trl_vf_loss),
        (vf_clipfrac, trl_vf_clipfrac),
    ]:  # fmt: skip
        torch.testing.assert_close(ours, theirs, atol=TRL_TOLERANCE, rtol=0)
    assert 0.0 < clipfrac.item() < 1.0 and 0.0 < vf_clipfrac.item() < 1.0


# ----------------------------------------------------------------------------------------------------------------
# 3. The closed form, on the bandit


@pytest.fixture(scope="module")
def bandit():
    return toy_bandit()


@pytest.fixture(scope="module")
def comparisons(bandit) -> Preferences:
    return sample_preferences(bandit, 100_000, seeded(0))


def centred(table: torch.Tensor) -> torch.Tensor:
    """A reward table with each prompt's mean removed: what comparisons can determine."""
    return table - table.mean(-1, keepdim=True)


def test_ppo_with_the_kl_penalty_reaches_pi_star(bandit):
    policy, history = train_ppo(bandit, BanditPPOConfig(), seeded(0))
    assert mean_tv(policy, bandit.optimal) < 0.01
    best = objective(bandit, bandit.optimal).mean().item()  # J(pi*)
    assert objective(bandit, policy).mean().item() == pytest.approx(best, abs=1e-3)
    assert history[-1]["tv"] < 0.25 * history[0]["tv"]
    assert {"objective/kl", "objective/rlhf_reward", "policy/approxkl_avg", "policy/clipfrac_avg", "loss/value_avg",
            "val/clipfrac_avg", "policy/entropy_avg"} <= history[-1].keys()  # fmt: skip
    assert max(log["policy/clipfrac_avg"] for log in history) > 0  # the clip was active


def test_ppo_without_the_kl_penalty_does_not(bandit):
    policy, _ = train_ppo(bandit, BanditPPOConfig(kl_penalty=False), seeded(0))
    assert mean_tv(policy, bandit.optimal) > 0.3
    assert (policy.argmax(-1) == bandit.rewards.argmax(-1)).all() and policy.max(-1).values.min() > 0.9  # collapsed


def test_dpo_reaches_pi_star_and_recovers_the_reward(bandit, comparisons):
    policy, history = train_dpo(bandit, comparisons, BanditDPOConfig())
    assert mean_tv(policy, bandit.optimal) < 0.03
    implicit_reward = bandit.beta * (policy.log() - bandit.ref_probs.log())
    assert (centred(implicit_reward) - centred(bandit.rewards)).abs().max() < 0.12
    assert 0.6 < history[-1]["rewards/accuracies"] < 0.9  # Bradley-Terry labels are noisy: no perfect accuracy


def test_dpo_with_chosen_and_rejected_swapped_does_not(bandit, comparisons):
    swapped = Preferences(comparisons.prompts, comparisons.rejected, comparisons.chosen)
    policy, _ = train_dpo(bandit, swapped, BanditDPOConfig())
    assert mean_tv(policy, bandit.optimal) > 0.5


@pytest.mark.parametrize("center", [None, 0.01])
def test_reward_model_ranks_answers_as_r_does(bandit, comparisons, center):
    rewards, history = train_reward_model(bandit, comparisons, BanditRewardConfig(center_rewards_coefficient=center))
    assert torch.equal(rewards.argsort(-1), bandit.rewards.argsort(-1))  # every prompt's order, exactly
    if center is None:
        assert (centred(rewards) - centred(bandit.rewards)).abs().max() < 0.12
    assert history[-1]["accuracy"] > 0.6


def test_grpo_as_trl_computes_it_moves_toward_pi_star_and_stops_short(bandit):
    start = mean_tv(bandit.ref_probs, bandit.optimal)
    policy, _ = train_grpo(bandit, BanditGRPOConfig(), seeded(0))
    assert 0.15 < mean_tv(policy, bandit.optimal) < 0.30 < 0.6 * start
    without_kl, _ = train_grpo(bandit, BanditGRPOConfig(kl_penalty=False), seeded(0))
    assert mean_tv(without_kl, bandit.optimal) > 0.35  # collapses onto the best answer


def test_grpo_without_its_two_biases_reaches_pi_star(bandit):
    config = BanditGRPOConfig(scale_rewards=False, bias_correction_kl=True)
    policy, _ = train_grpo(bandit, config, seeded(0))
    assert mean_tv(policy, bandit.optimal) < 0.05
    # The group mean includes the answer itself, which scales the reward by (G - 1) / G: the target's beta is
    # beta G / (G - 1). (RLOO's leave-one-out mean removes that.)
    g = config.group_size
    assert mean_tv(policy, rl.kl_optimal_policy(bandit.ref_probs, bandit.rewards, bandit.beta * g / (g - 1))) < 0.03
