"""The mathematics of RLHF as plain functions on tensors: the losses of a reward model, PPO, DPO and GRPO.

**The objective.** Fine-tuning with human feedback wants a policy pi (the chat model) whose answers y to
prompts x score high under a reward r(x, y), without drifting far from the model it started from, the
reference pi_ref (the SFT model), whose fluency the reward does not measure:

    J(pi) = E_x [ E_{y ~ pi(.|x)} r(x, y)  -  beta KL(pi(.|x) || pi_ref(.|x)) ]

**Its optimum is known.** For each prompt, J is minus beta times a KL divergence to one distribution, plus
a constant: J_x(pi) = -beta KL(pi || pi_ref exp(r / beta) / Z(x)) + beta log Z(x). So the best policy is

    pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x)                            (`kl_optimal_policy`)

and, read backwards, r(x, y) = beta log pi*(y|x) / pi_ref(y|x) + beta log Z(x): the optimal policy fixes
the reward up to a constant per prompt. beta trades reward for closeness: beta -> 0 puts all the mass
on the best answer, beta -> infinity keeps pi_ref. On a problem small enough to enumerate (a bandit:
`minilm.rlhf.bandit`) pi* can be computed exactly, and each method below is checked to reach it.

**How each method approaches pi*.**

- *Reward model* (`bradley_terry_loss`). People compare two answers rather than score one; the
  Bradley-Terry model says P(y_w preferred to y_l) = sigmoid(r(x, y_w) - r(x, y_l)), and a network fit
  by maximum likelihood on the comparisons estimates r, up to that constant per prompt.
- *PPO with a KL penalty* (`kl_penalized_rewards`, `gae`, `ppo_policy_loss`, `ppo_value_loss`), as in
  InstructGPT and TRL's PPOTrainer: sample answers from pi, give each token the reward
  -beta (log pi - log pi_ref) and the last token also the reward model's score, estimate advantages
  with a value model (GAE), and climb the clipped surrogate for a few epochs on each batch. The
  expected policy gradient of that per-token reward is the exact gradient of J, so the fixed point is pi*.
- *DPO* (`dpo_loss`). Put r = beta log pi / pi_ref into the Bradley-Terry likelihood: Z(x) cancels in
  the difference, and maximum likelihood on the comparisons trains the policy directly, with no reward
  model and no sampling. At the optimum pi = pi*, and beta log pi / pi_ref is an implicit reward model.
- *GRPO* (`group_advantages`, `k3_kl`, `grpo_loss`), as in DeepSeekMath and TRL's GRPOTrainer: no value
  model; sample a group of answers per prompt, use each answer's reward standardised within its group
  as the advantage, and add the KL to the *loss* through the k3 estimator. Two things move its fixed
  point off pi*: dividing by the group's standard deviation rescales the reward prompt by prompt, and
  the gradient of k3 at a sampled answer, the answer held fixed, is the gradient of KL(pi_ref || pi),
  the other direction, although its value is an unbiased estimate of KL(pi || pi_ref). The bandit
  measures how far that lands.

**Conventions.** Per-token tensors have shape (batch, tokens), one row per completion, position t about
completion token t: log pi(y_t | x, y_<t), the value of the state before y_t, the reward of y_t.
Masks have that shape too, bool or float, 1 on the completion's real tokens and 0 on padding;
completions are right-padded. A masked mean averages over the real tokens of the whole batch:
sum(x * mask) / sum(mask). Every function follows TRL 1.16's definitions (PPO's, which 1.16 no longer
ships, from trl/experimental/ppo/ppo_trainer.py before its removal); where one differs it says so.
tests/test_rlhf_objectives.py checks each against TRL's code where TRL can be called without a model,
against the formula written out otherwise, and the methods against pi* on the bandit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# ----------------------------------------------------------------------------------------------------------------
# Masked statistics: every average in RLHF is over the real tokens only.


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """The mean of `values` over the positions where `mask` is 1 (over all of them, or along `dim`).
    Padding must not count: a batch of short answers padded to a long one would otherwise look near zero."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum()
    return (values * mask).sum(dim) / mask.sum(dim)


def masked_var(values: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """The variance over the masked positions, with Bessel's correction n / (n - 1) as TRL's `masked_var`."""
    mask = mask.to(values.dtype)
    variance = masked_mean((values - masked_mean(values, mask)) ** 2, mask)
    if unbiased:
        count = mask.sum()
        if count < 2:
            raise ValueError(f"the variance of {int(count)} value(s) is undefined: whiten at least two real tokens")
        variance = variance * count / (count - 1)
    return variance


def whiten(values: Tensor, mask: Tensor, shift_mean: bool = True) -> Tensor:
    """Scale the masked values to variance 1, and to mean 0 unless `shift_mean` is False (TRL's `masked_whiten`).

    PPO whitens its advantages so that one learning rate suits any reward scale; TRL's `whiten_rewards`
    whitens rewards with `shift_mean=False`, keeping their mean. Padding positions come back as 0: TRL
    transforms them too and then fills them with 0, which gives the same tensor."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


# ----------------------------------------------------------------------------------------------------------------
# Log-probabilities and entropy of a language model's completions.


def sequence_logprobs(logits: Tensor, labels: Tensor, loss_mask: Tensor) -> Tensor:
    """log pi(y | x): the sum over the completion's tokens of the log-probability of each, one number per row.

    `labels` must already be aligned with `logits`: labels[:, t] is the token that logits[:, t] predicts
    (the course's targets y, where y[t] = x[t + 1]); the caller shifts, as `SFTData` does. `loss_mask`
    is 1 on the completion's tokens, so the prompt and the padding add nothing; labels outside the mask
    may be anything, -100 included. A sum, not a mean: DPO compares the probabilities of whole answers,
    and TRL's DPOTrainer sums likewise."""
    mask = loss_mask.bool()
    index = labels.masked_fill(~mask, 0).unsqueeze(-1)
    token_logprobs = torch.gather(logits.log_softmax(-1), -1, index).squeeze(-1)
    return (token_logprobs * mask).sum(-1)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """The entropy in nats of the next-token distribution at each position: -sum p log p, with log p = log_softmax(z).
    Logged by every TRL trainer as `entropy`: a policy that collapses onto a few answers shows it falling."""
    logprobs = logits.log_softmax(-1)
    return -(logprobs.exp() * logprobs).sum(-1)


# ----------------------------------------------------------------------------------------------------------------
# The reward model: Bradley-Terry on pairs of answers.


def bradley_terry_loss(
    chosen_rewards: Tensor,
    rejected_rewards: Tensor,
    margin: Tensor | None = None,
    center_rewards_coefficient: float | None = None,
) -> Tensor:
    """The negative log-likelihood of the preferences under Bradley-Terry, a mean over the pairs (TRL's RewardTrainer).

    -log sigmoid(r_chosen - r_rejected - margin): `margin` (one per pair, optional) asks for a larger gap
    where the raters preferred strongly (Llama 2). Only differences enter, so the rewards are defined
    up to a constant per prompt; `center_rewards_coefficient` adds c * mean((r_chosen + r_rejected)^2),
    which pulls them toward mean 0 (Eisenstein et al., 2023) so that scores from different prompts compare."""
    difference = chosen_rewards - rejected_rewards
    if margin is not None:
        difference = difference - margin
    loss = -F.logsigmoid(difference).mean()
    if center_rewards_coefficient is not None:
        loss = loss + center_rewards_coefficient * ((chosen_rewards + rejected_rewards) ** 2).mean()
    return loss


# ----------------------------------------------------------------------------------------------------------------
# DPO: the reward model folded into the policy.


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """DPO's loss per pair, and the implicit rewards of the two answers (TRL's `loss_type="sigmoid"`).

    The implicit reward of an answer is beta (log pi(y|x) - log pi_ref(y|x)); the loss is Bradley-Terry's
    on these rewards, -log sigmoid(reward_chosen - reward_rejected). Its gradient raises the chosen
    answer's probability and lowers the rejected one's, weighted by how wrongly the implicit rewards
    rank the pair. The rewards come back detached: they are for logging (`dpo_metrics`). TRL 1.16's
    sigmoid loss has no label smoothing (its `label_smoothing` belongs to the robust and EXO losses);
    nor has this one."""
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def dpo_metrics(chosen_rewards: Tensor, rejected_rewards: Tensor) -> dict[str, float]:
    """What TRL's DPOTrainer logs about the implicit rewards: their means, how often the chosen answer's is
    strictly higher (`rewards/accuracies`), and the mean gap. Margins that keep growing while the
    accuracy stays put are the sign of DPO pushing both answers' probabilities down."""
    return {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
    }


# ----------------------------------------------------------------------------------------------------------------
# PPO with a KL penalty (InstructGPT; TRL's PPOTrainer).


def last_token_index(mask: Tensor) -> Tensor:
    """The position of each row's last real token (the highest index where the mask is 1)."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    return (positions * mask.to(torch.long)).argmax(1)


def kl_penalized_rewards(logprobs: Tensor, ref_logprobs: Tensor, scores: Tensor, mask: Tensor, beta: float) -> Tensor:
    """PPO's per-token rewards: -beta (log pi - log pi_ref) at each completion token, plus the reward
    model's score (one per row) at the row's last real token; 0 on padding.

    log pi - log pi_ref at the sampled token is TRL's default KL estimator ("k1"); its expectation under
    pi is the KL, and summed over the tokens it is the sequence's. Putting the score at the end
    makes it the return of every token before it (with gamma = 1). TRL puts the score one position
    after the last token it counts as real (`sequence_lengths + 1`); where the padding token is the
    end-of-sequence token, as in most tokenizers, that position is the end-of-sequence token, the last
    real token of this mask."""
    mask = mask.to(logprobs.dtype)
    rewards = -beta * (logprobs - ref_logprobs) * mask
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last_token_index(mask)] += scores
    return rewards


def rlhf_objective_metrics(
    logprobs: Tensor, ref_logprobs: Tensor, scores: Tensor, mask: Tensor, beta: float
) -> dict[str, float]:
    """How well a batch of samples does on J itself, under TRL PPOTrainer's names: `objective/kl` (the sequence's
    KL estimate, summed over its tokens, averaged over rows), `objective/scores`,
    `objective/non_score_reward` (-beta times the KL) and `objective/rlhf_reward` (score minus beta KL, the
    quantity J averages). Sums run over the real tokens: TRL sets padding log-probabilities to 1 and so
    counts its KL as 0, which agrees, but adds -1 per padding token to `objective/entropy`, which this does not."""
    mask = mask.to(logprobs.dtype)
    kl = ((logprobs - ref_logprobs) * mask).sum(1).mean()
    return {
        "objective/kl": kl.item(),
        "objective/entropy": (-logprobs * mask).sum(1).mean().item(),
        "objective/non_score_reward": (-beta * kl).item(),
        "objective/scores": scores.mean().item(),
        "objective/rlhf_reward": (scores.mean() - beta * kl).item(),
    }


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016), right to left as TRL's PPOTrainer: the advantages
    and the returns, the value model's targets.

    delta_t = r_t + gamma V_{t+1} - V_t and A_t = delta_t + gamma lam A_{t+1}, with V and A past the
    completion's end 0. lam = 1 gives the Monte-Carlo return minus V (no bias from a wrong value model,
    high variance); lam = 0 gives the one-step estimate (the reverse). Returns are A + V. Rewards and
    values on padding are taken as 0 and the outputs are 0 there. PPO then whitens the advantages
    (`whiten`); that is the caller's step, after the returns are taken, as in TRL."""
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    tokens = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(tokens)):
        next_value = values[:, t + 1] if t + 1 < tokens else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def ppo_policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip_range: float
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's clipped surrogate (Schulman et al., 2017), a loss to minimise, with TRL's `policy/clipfrac` and
    `policy/approxkl`.

    With ratio = pi / pi_old per token: max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps)), a masked mean.
    The pessimistic max removes any gain from moving a token's ratio beyond 1 +- eps, so several
    epochs on one batch of samples cannot run far from the policy that drew them. clipfrac is the share
    of tokens where the clipped term is the larger; approxkl is 0.5 mean((log pi - log pi_old)^2), an
    estimate of KL(pi_old || pi) (TRL averages it over all positions, padding counted as 0; here over
    the real tokens)."""
    logratio = logprobs - old_logprobs
    ratio = torch.exp(logratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
        approxkl = 0.5 * masked_mean(logratio**2, mask)
    return loss, clipfrac, approxkl


def ppo_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_range_value: float
) -> tuple[Tensor, Tensor]:
    """The value model's loss, clipped like the policy's (TRL's `loss/value_avg`, `val/clipfrac_avg`).

    0.5 max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2), a masked mean: the value may not gain by
    moving more than c from where it was when the batch was drawn. The clip fraction is the share of
    tokens where the clipped error is the larger."""
    clipped_values = torch.clamp(values, old_values - clip_range_value, old_values + clip_range_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped_error > unclipped_error).float(), mask)
    return loss, clipfrac


# ----------------------------------------------------------------------------------------------------------------
# GRPO: the group as the baseline (DeepSeekMath; TRL's GRPOTrainer).


def group_advantages(rewards: Tensor, group_size: int, scale: bool = True) -> Tensor:
    """Each answer's reward minus the mean of its group (the answers to the same prompt, consecutive rows),
    divided by the group's standard deviation + 1e-4 when `scale` (TRL's `scale_rewards="group"`, its
    default; `scale=False` is its "none", as Dr. GRPO recommends).

    The group mean replaces PPO's value model as the baseline. The standard deviation is the sample one
    (Bessel's n - 1), as TRL's `nanstd`; a group whose answers all score alike gets advantage 0 and
    teaches nothing."""
    groups = rewards.view(-1, group_size)
    advantages = groups - groups.mean(1, keepdim=True)
    if scale:
        advantages = advantages / (groups.std(1, keepdim=True) + 1e-4)
    return advantages.reshape(rewards.shape)


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Schulman's "k3" estimate of KL(pi || pi_ref) per sampled token: exp(d) - d - 1 with d = log pi_ref - log pi.
    Unbiased under y ~ pi (its mean is E[pi_ref / pi] - 1 + KL = KL) and never negative, unlike the
    plain -d whose samples can be."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    ref_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float,
    beta: float,
    bias_correction_kl: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """GRPO's loss, its mean per-token KL (TRL's `kl`) and the share of clipped tokens (`clip_ratio/region_mean`).

    Per token: -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A) + beta k3, where A is the row's advantage
    (shape (batch,), one per answer, or already per token) and ratio = pi / pi_old. Normalised as TRL
    1.16's default `loss_type="dapo"`: summed over every real token of the batch and divided by their
    number, so a long answer weighs by its tokens and not as one row ("grpo" would average each row
    first). A token counts as clipped where the ratio is past the bound on the side the advantage
    pushes it. `bias_correction_kl` multiplies the k3 term by the ratio (TRL's `use_bias_correction_kl`):
    its gradient is then that of KL(pi || pi_ref), the objective's, instead of KL(pi_ref || pi).
    TRL's default beta is 0: no KL term and no reference model."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(logprobs - old_logprobs)
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    per_token_loss = -torch.min(ratio * advantages, clipped_ratio * advantages)
    kl = k3_kl(logprobs, ref_logprobs)
    if bias_correction_kl:
        kl = kl * ratio
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * kl
    loss = masked_mean(per_token_loss, mask)
    with torch.no_grad():
        clipped = ((ratio < 1.0 - clip_eps) & (advantages < 0)) | ((ratio > 1.0 + clip_eps) & (advantages > 0))
        clip_ratio = masked_mean(clipped.float(), mask)
        kl_mean = masked_mean(kl, mask)
    return loss, kl_mean, clip_ratio


# ----------------------------------------------------------------------------------------------------------------
# The closed form, and how far a policy is from it.


def kl_optimal_policy(ref_probs: Tensor, rewards: Tensor, beta: float) -> Tensor:
    """pi* = pi_ref exp(r / beta) / Z for each prompt: softmax(log pi_ref + r / beta) over the last dimension
    (the answers), for tables of shape (prompts, answers). The policy every method above aims at."""
    return torch.softmax(torch.log(ref_probs) + rewards / beta, dim=-1)


def total_variation(p: Tensor, q: Tensor) -> Tensor:
    """The total-variation distance 0.5 sum |p - q| between distributions over the last dimension, one per
    row: the largest difference in the probability the two give to any set of answers, between 0 and 1."""
    return 0.5 * (p - q).abs().sum(-1)
