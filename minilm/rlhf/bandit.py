"""RLHF on a problem small enough to solve exactly: a bandit of a few prompts with a few answers each.

A language model's answers are sequences of tokens, far too many to enumerate; here each prompt x has
a handful of answers y, each one token, so a policy is a table of probabilities pi(y|x), the reference
policy another, and the reward r(x, y) a third. The optimum of the KL-regularised objective,
pi* = pi_ref exp(r / beta) / Z (`minilm.rlhf.objectives`), is then one softmax away, and each method can be
watched converging to it, or not:

- `train_ppo`: a tabular policy and a tabular value model, trained by PPO with the per-token KL penalty
  (one token, so the penalty and the score fall on the same token), on answers sampled from the policy;
- `train_dpo`: a tabular policy trained by DPO on comparisons drawn from the Bradley-Terry model of r;
- `train_reward_model`: a tabular reward trained with the Bradley-Terry loss on the same comparisons;
- `train_grpo`: a tabular policy trained by GRPO with the k3 KL term, on groups of sampled answers.

What tests/test_rlhf_objectives.py finds: PPO and DPO end within a few hundredths of pi* in total
variation, DPO's implicit reward and the reward model match r up to each prompt's constant, and the
variants that leave out the KL (or swap DPO's chosen and rejected) end far away. GRPO as TRL computes
it moves toward pi* and stops short, for the two reasons `minilm.rlhf.objectives` gives; with both
undone (`scale_rewards=False`, `bias_correction_kl=True`) it reaches pi* too, for a beta larger by
G / (G - 1), since each answer is part of its own group's mean.

The tables stand in for networks: a softmax over free logits can represent any policy, so whatever
gap remains between a method's result and pi* is the method's (its estimator, its noise, its fixed
point), not the model's. Each trainer uses the same loss functions the language-model trainers use,
on tensors of shape (batch, 1), and logs under TRL's names. Every random draw comes from the
`torch.Generator` passed in, so a seed repeats a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from minilm.rlhf.objectives import (
    bradley_terry_loss,
    dpo_loss,
    dpo_metrics,
    entropy_from_logits,
    gae,
    group_advantages,
    grpo_loss,
    kl_optimal_policy,
    kl_penalized_rewards,
    ppo_policy_loss,
    ppo_value_loss,
    rlhf_objective_metrics,
    total_variation,
    whiten,
)

History = list[dict[str, float]]  # one dict of logged numbers per step or iteration, under TRL's names


@dataclass(frozen=True)
class Bandit:
    """Prompts x answers: the reference policy's probabilities and the true reward, two (prompts, answers)
    tables, and beta, the weight of the KL in the objective E r - beta KL(pi || pi_ref)."""

    ref_probs: Tensor
    rewards: Tensor
    beta: float

    @property
    def optimal(self) -> Tensor:
        """pi*, the policy that maximises the objective, prompt by prompt."""
        return kl_optimal_policy(self.ref_probs, self.rewards, self.beta)


def toy_bandit(beta: float = 0.5) -> Bandit:
    """4 prompts x 6 answers. The reference is far from uniform and disagrees with the reward (its favourite
    answer is rarely the best), and the rewards of a prompt are at least 0.3 apart, so their order is clear."""
    ref_probs = torch.tensor(
        [
            [0.30, 0.25, 0.15, 0.12, 0.10, 0.08],
            [0.05, 0.10, 0.40, 0.20, 0.15, 0.10],
            [0.25, 0.08, 0.20, 0.22, 0.10, 0.15],
            [0.08, 0.12, 0.10, 0.05, 0.35, 0.30],
        ]
    )
    rewards = torch.tensor(
        [
            [-1.0, 0.5, 1.2, -0.3, 0.0, 0.9],
            [0.8, -0.5, 0.2, 1.4, -1.2, 0.5],
            [0.0, 1.0, -0.8, 0.4, 1.5, -0.3],
            [1.1, 0.3, -0.6, 0.7, -0.2, -1.0],
        ]
    )
    return Bandit(ref_probs, rewards, beta)


def objective(bandit: Bandit, policy: Tensor) -> Tensor:
    """J per prompt, computed exactly: E_{y ~ pi} r(x, y) - beta KL(pi || pi_ref). At pi* it equals beta log Z(x)."""
    kl = (torch.xlogy(policy, policy) - policy * bandit.ref_probs.log()).sum(-1)  # 0 log 0 = 0
    return (policy * bandit.rewards).sum(-1) - bandit.beta * kl


def mean_tv(policy: Tensor, target: Tensor) -> float:
    """The total-variation distance between two policy tables, averaged over the prompts."""
    return total_variation(policy, target).mean().item()


def linear_decay(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate falling linearly to 0 over `steps` (Hugging Face's default schedule, which TRL's
    trainers inherit): the noise of the sampled gradients dies out with it, so the policy settles."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / steps))


# ----------------------------------------------------------------------------------------------------------------
# Preferences, and the two methods that learn from them.


@dataclass(frozen=True)
class Preferences:
    """Comparisons: for each, the prompt, the preferred answer and the other one (index tensors of one length)."""

    prompts: Tensor
    chosen: Tensor
    rejected: Tensor


def sample_preferences(bandit: Bandit, pairs: int, generator: torch.Generator) -> Preferences:
    """Comparisons as a preference data set is made: a prompt at random, two different answers from the
    reference policy (the SFT model writes the candidates), and a label from Bradley-Terry:
    the first answer is preferred with probability sigmoid(r(x, y1) - r(x, y2))."""
    prompts = torch.randint(bandit.ref_probs.shape[0], (pairs,), generator=generator)
    answers = torch.multinomial(bandit.ref_probs[prompts], 2, replacement=False, generator=generator)
    first, second = answers[:, 0], answers[:, 1]
    gap = bandit.rewards[prompts, first] - bandit.rewards[prompts, second]
    first_wins = torch.rand(pairs, generator=generator) < torch.sigmoid(gap)
    chosen = torch.where(first_wins, first, second)
    rejected = torch.where(first_wins, second, first)
    return Preferences(prompts, chosen, rejected)


@dataclass
class BanditDPOConfig:
    steps: int = 150
    lr: float = 0.1


def train_dpo(bandit: Bandit, data: Preferences, config: BanditDPOConfig) -> tuple[Tensor, History]:
    """A tabular policy, started at pi_ref, trained by DPO on all the comparisons at once (Adam, full batch:
    in the logits the loss is convex, so this finds its minimum). Returns the policy and a log per step."""
    ref_logprobs = bandit.ref_probs.log()
    logits = ref_logprobs.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=config.lr)
    target = bandit.optimal
    history = []
    for _ in range(config.steps):
        logprobs = logits.log_softmax(-1)
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            logprobs[data.prompts, data.chosen],
            logprobs[data.prompts, data.rejected],
            ref_logprobs[data.prompts, data.chosen],
            ref_logprobs[data.prompts, data.rejected],
            bandit.beta,
        )
        loss = losses.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy = logits.detach().softmax(-1)
        metrics = dpo_metrics(chosen_rewards, rejected_rewards)
        history.append({"loss": loss.item(), **metrics, "tv": mean_tv(policy, target)})
    return logits.detach().softmax(-1), history


@dataclass
class BanditRewardConfig:
    steps: int = 150
    lr: float = 0.1
    # TRL's default, None, leaves each prompt's constant free; a coefficient (0.01 recommended) pulls the
    # rewards toward 0 pair by pair, which also shrinks their differences a little.
    center_rewards_coefficient: float | None = None


def train_reward_model(bandit: Bandit, data: Preferences, config: BanditRewardConfig) -> tuple[Tensor, History]:
    """A tabular reward model, started at 0, fit to the comparisons with the Bradley-Terry loss (full batch).
    Returns the learnt reward table and a log per step under TRL RewardTrainer's names."""
    rewards = torch.zeros_like(bandit.rewards, requires_grad=True)
    optimizer = torch.optim.Adam([rewards], lr=config.lr)
    history = []
    for _ in range(config.steps):
        chosen, rejected = rewards[data.prompts, data.chosen], rewards[data.prompts, data.rejected]
        loss = bradley_terry_loss(chosen, rejected, center_rewards_coefficient=config.center_rewards_coefficient)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            accuracy = (chosen > rejected).float().mean().item()
            history.append({"loss": loss.item(), "accuracy": accuracy, "margin": (chosen - rejected).mean().item()})
    return rewards.detach(), history


# ----------------------------------------------------------------------------------------------------------------
# The two methods that sample: a rollout is one answer per row, drawn from the policy being trained.


def sample_answers(
    bandit: Bandit, logits: Tensor, prompts: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One answer for each entry of `prompts`, drawn from softmax(logits): the answers (batch, 1), their
    log-probabilities under the policy and under the reference (batch, 1), and their rewards (batch,).
    The shapes are a language model's with one token per completion."""
    with torch.no_grad():
        answers = torch.multinomial(logits.softmax(-1)[prompts], 1, generator=generator)
        rows = prompts.unsqueeze(1)
        logprobs = logits.log_softmax(-1)[rows, answers]
        ref_logprobs = bandit.ref_probs.log()[rows, answers]
    return answers, logprobs, ref_logprobs, bandit.rewards[prompts, answers.squeeze(1)]


# ----------------------------------------------------------------------------------------------------------------
# PPO with the KL penalty.


@dataclass
class BanditPPOConfig:
    kl_penalty: bool = True  # False: no KL in the reward (TRL's `kl_coef` 0), a method that cannot reach pi*
    iterations: int = 150  # batches of samples
    samples_per_prompt: int = 64
    epochs: int = 4  # passes over each batch (TRL's `num_ppo_epochs`)
    minibatches: int = 4  # per epoch (TRL's `num_mini_batches`)
    lr: float = 0.05
    clip_range: float = 0.2  # TRL's `cliprange`
    clip_range_value: float = 0.2  # TRL's `cliprange_value`
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95


def train_ppo(bandit: Bandit, config: BanditPPOConfig, generator: torch.Generator) -> tuple[Tensor, History]:
    """PPO with the KL penalty on a tabular policy (started at pi_ref) and a tabular value per prompt.

    Each iteration samples answers from the current policy, rewards each with its score minus
    beta (log pi - log pi_ref), takes GAE advantages against the value model, whitens them over the
    batch, and runs `epochs` passes of `minibatches` clipped updates. Returns the policy and a log per
    iteration under TRL PPOTrainer's names, with `tv`, the distance to pi*.

    At pi* the penalised reward r - beta log pi* / pi_ref is beta log Z(x) for every answer of a prompt:
    once the value model has learnt it, every advantage is 0 and the sampling noise stops moving the
    policy, which is why PPO settles so close to pi*."""
    prompts_n, _ = bandit.ref_probs.shape
    logits = bandit.ref_probs.log().requires_grad_(True)
    value_table = torch.zeros(prompts_n, requires_grad=True)
    optimizer = torch.optim.Adam([logits, value_table], lr=config.lr)
    steps = config.iterations * config.epochs * config.minibatches
    schedule = linear_decay(optimizer, steps)
    target, kl_coef = bandit.optimal, bandit.beta if config.kl_penalty else 0.0
    prompts = torch.arange(prompts_n).repeat_interleave(config.samples_per_prompt)
    batch = len(prompts)
    mask = torch.ones(batch, 1)
    history = []
    for _ in range(config.iterations):
        with torch.no_grad():  # the rollout: sample, score, and fix the advantages
            answers, old_logprobs, ref_logprobs, scores = sample_answers(bandit, logits, prompts, generator)
            old_values = value_table[prompts].unsqueeze(1)
            rewards = kl_penalized_rewards(old_logprobs, ref_logprobs, scores, mask, kl_coef)
            advantages, returns = gae(rewards, old_values, mask, config.gamma, config.lam)
            advantages = whiten(advantages, mask)
        stats: dict[str, list[float]] = {}
        for _ in range(config.epochs):
            order = torch.randperm(batch, generator=generator)
            for rows in order.chunk(config.minibatches):
                row_logits = logits[prompts[rows]]
                new_logprobs = row_logits.log_softmax(-1).gather(1, answers[rows])
                values = value_table[prompts[rows]].unsqueeze(1)
                policy_loss, clipfrac, approxkl = ppo_policy_loss(
                    new_logprobs, old_logprobs[rows], advantages[rows], mask[rows], config.clip_range
                )
                value_loss, value_clipfrac = ppo_value_loss(
                    values, old_values[rows], returns[rows], mask[rows], config.clip_range_value
                )
                loss = policy_loss + config.vf_coef * value_loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                for name, value in [
                    ("policy/approxkl_avg", approxkl),
                    ("policy/clipfrac_avg", clipfrac),
                    ("loss/policy_avg", policy_loss),
                    ("loss/value_avg", value_loss),
                    ("val/clipfrac_avg", value_clipfrac),
                    ("policy/entropy_avg", entropy_from_logits(row_logits).mean()),
                ]:
                    stats.setdefault(name, []).append(value.item())
        log = rlhf_objective_metrics(old_logprobs, ref_logprobs, scores, mask, kl_coef)
        log.update({name: sum(values) / len(values) for name, values in stats.items()})
        log["tv"] = mean_tv(logits.detach().softmax(-1), target)
        history.append(log)
    return logits.detach().softmax(-1), history


# ----------------------------------------------------------------------------------------------------------------
# GRPO with the k3 KL term.


@dataclass
class BanditGRPOConfig:
    kl_penalty: bool = True  # False: TRL's default beta = 0, no KL term and no reference model
    iterations: int = 150
    group_size: int = 16  # answers per prompt in a group (TRL's `num_generations`)
    groups_per_prompt: int = 4
    updates: int = 2  # updates on each batch (TRL's `num_iterations`, mu in the paper)
    lr: float = 0.05
    clip_eps: float = 0.2  # TRL's `epsilon`
    scale_rewards: bool = True  # divide by the group's standard deviation (TRL's "group", its default)
    bias_correction_kl: bool = False  # TRL's `use_bias_correction_kl`


def train_grpo(bandit: Bandit, config: BanditGRPOConfig, generator: torch.Generator) -> tuple[Tensor, History]:
    """GRPO on a tabular policy started at pi_ref: groups of answers sampled per prompt, advantages
    standardised within each group, and `updates` full-batch steps of the clipped loss with the k3 KL
    term per batch. Returns the policy and a log per iteration (TRL's `reward`, `kl`,
    `clip_ratio/region_mean`, `entropy`, and `tv`, the distance to pi*).

    With TRL's choices (`scale_rewards=True`, `bias_correction_kl=False`) the policy settles near where
    the expected gradients of the two terms cancel, answer by answer
    pi(y) (r(y) - E_pi r) / std_pi r = beta (pi(y) - pi_ref(y)), which is not pi*."""
    prompts_n, _ = bandit.ref_probs.shape
    logits = bandit.ref_probs.log().requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=config.lr)
    schedule = linear_decay(optimizer, config.iterations * config.updates)
    target, kl_coef = bandit.optimal, bandit.beta if config.kl_penalty else 0.0
    prompts = torch.arange(prompts_n).repeat_interleave(config.group_size * config.groups_per_prompt)
    mask = torch.ones(len(prompts), 1)
    history = []
    for _ in range(config.iterations):
        with torch.no_grad():
            answers, old_logprobs, ref_logprobs, scores = sample_answers(bandit, logits, prompts, generator)
            advantages = group_advantages(scores, config.group_size, scale=config.scale_rewards)
        for _ in range(config.updates):
            row_logits = logits[prompts]
            logprobs = row_logits.log_softmax(-1).gather(1, answers)
            loss, kl, clip_ratio = grpo_loss(
                logprobs,
                old_logprobs,
                ref_logprobs,
                advantages,
                mask,
                config.clip_eps,
                kl_coef,
                bias_correction_kl=config.bias_correction_kl,
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        history.append(
            {
                "loss": loss.item(),
                "reward": scores.mean().item(),
                "kl": kl.item(),
                "clip_ratio/region_mean": clip_ratio.item(),
                "entropy": entropy_from_logits(row_logits).mean().item(),
                "tv": mean_tv(logits.detach().softmax(-1), target),
            }
        )
    return logits.detach().softmax(-1), history
