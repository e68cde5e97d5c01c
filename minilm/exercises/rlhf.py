"""Checkers for the exercises of notebook 07 (RLHF): the reward model's Bradley-Terry loss, generalised
advantage estimation, PPO's clipped policy loss, and DPO's loss with its implicit rewards.

Each checker draws fresh inputs (from a new seed every run, named in a failure), runs the learner's
function and the package's own (`minilm.rlhf.objectives`), and passes or fails on the first input where
they differ by more than ``torch.allclose(atol=1e-5, rtol=1e-5)``. The inputs are float64, so that this
tolerance measures the mathematics and not the rounding. They are made to land where a first attempt
usually goes wrong: gaps between rewards, or between log-ratios, of several hundred (-log(sigmoid(x))
is inf past x = -745, where sigmoid rounds to 0 even in float64; F.logsigmoid is not), a margin given
or None, a batch of one pair; completions right-padded to different lengths (one row not padded, one a
single token) whose padding holds garbage rewards, values, log-probabilities and advantages that must
not count; discounts gamma and lam below 1; probability ratios inside the clip range and far outside it
on both sides, under positive and negative advantages; several betas.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from minilm.exercises import _short, call_learner, checker, failure, passed, torch_generator
from minilm.rlhf import objectives

ATOL, RTOL = 1e-5, 1e-5  # torch.allclose's tolerances: float64 inputs round far below them
DTYPE = torch.float64

# --- shared helpers ----------------------------------------------------------------------------------------


def _numbers(values) -> str:
    """A tensor's (or a list of tensors') values to 4 significant digits: short enough to read in a failure."""
    def rounded(value):
        return [rounded(v) for v in value] if isinstance(value, list) else float(f"{value:.4g}")

    if isinstance(values, torch.Tensor):
        values = values.detach().double().tolist()
    else:
        values = [v.detach().double().tolist() for v in values]
    return str(rounded(values))


def _real(tensor: torch.Tensor, lengths: list[int]) -> str:
    """Each row of a (B, T) tensor up to its length: the real tokens only."""
    return _numbers([row[:n] for row, n in zip(tensor, lengths)])


def _close(got, want: torch.Tensor) -> bool:
    """`got` is a tensor of `want`'s shape (a scalar may come as one number of any shape), within the tolerance."""
    if not isinstance(got, torch.Tensor):
        return False
    if want.dim() == 0 and got.numel() == 1:
        got = got.reshape(())
    return tuple(got.shape) == tuple(want.shape) and torch.allclose(
        got.detach().to(want.dtype), want.detach(), rtol=RTOL, atol=ATOL)


def _diagnose(got, variants: list[tuple[torch.Tensor, str]], hint: str) -> str:
    """The hint of the first known mistake whose result `got` equals, else the general `hint`."""
    return next((specific for value, specific in variants if _close(got, value)), hint)


def _scalar(title: str, got, shown: str, hint: str) -> torch.Tensor:
    """The learner's loss as a 0-dimensional tensor, or a failure saying what to return."""
    if isinstance(got, (tuple, list)):
        raise failure(title, f"return the loss alone, a tensor holding one number, not a {type(got).__name__}: got "
                      f"{_short(got)}", shown, hint)
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        raise failure(title, f"return the loss, a tensor holding one number, got {_short(got)}", shown, hint)
    return got.reshape(())


def _right_padded(rng: random.Random, padded: bool) -> tuple[torch.Tensor, list[int]]:
    """A float mask (B, T) of completions right-padded to various lengths: one row not padded and, from two rows on,
    one row of a single token. `padded` asks for at least three rows of at least four tokens (so some padding)."""
    batch = rng.randint(3, 5) if padded else rng.randint(1, 5)
    tokens = rng.randint(4, 12) if padded else rng.randint(1, 12)
    lengths = [rng.randint(1, tokens) for _ in range(batch)]
    special = rng.sample(range(batch), min(2, batch))
    lengths[special[0]] = tokens
    if len(special) > 1:
        lengths[special[1]] = 1
    mask = (torch.arange(tokens).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).to(DTYPE)
    return mask, lengths


def _garbage_on_padding(values: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, scale: float) -> torch.Tensor:
    """`values` on the real tokens and, on the padding, where a batch holds nothing to use, garbage: uniform between
    0 and 2 * scale (a log-probability's sign for a negative scale)."""
    garbage = torch.rand(values.shape, generator=generator, dtype=DTYPE) * 2 * scale
    return torch.where(mask.bool(), values, garbage)


# --- Exercise 1: the reward model's Bradley-Terry loss -----------------------------------------------------


def _bradley_terry_cases(rng: random.Random):
    """(chosen, rejected, margin): moderate rewards, and pairs whose gap is several hundred either way."""
    generator = torch_generator(rng)
    for index in range(10):
        pairs = 1 if index in (0, 9) else rng.randint(2, 8)  # a batch of one pair, with and without a margin
        scale = rng.choice([0.3, 1.0, 3.0])
        chosen = torch.randn(pairs, generator=generator, dtype=DTYPE) * scale
        rejected = torch.randn(pairs, generator=generator, dtype=DTYPE) * scale
        if index in (3, 6, 9):  # the first huge gap ranks the pair the wrong way: sigmoid(-800) is 0 in float64
            for k, pair in enumerate(rng.sample(range(pairs), rng.randint(1, pairs))):
                gap = rng.uniform(800, 1200) * (-1 if k == 0 or rng.random() < 0.5 else 1)
                centre = rng.uniform(-5, 5)
                chosen[pair], rejected[pair] = centre + gap / 2, centre - gap / 2
        margin = torch.rand(pairs, generator=generator, dtype=DTYPE) * rng.choice([1.0, 3.0]) if index % 2 else None
        yield chosen, rejected, margin


@checker
def check_bradley_terry_loss(bradley_terry_loss, rng: random.Random) -> None:
    """Exercise 1: the mean of -log sigmoid(r_chosen - r_rejected - margin), stable for any gap."""
    title = "Exercise 1 (the reward model's Bradley-Terry loss)"
    hint = ("the loss of a pair is -log sigmoid(r_chosen - r_rejected - margin) (no margin when it is None); return "
            "its mean over the pairs, a tensor holding one number")
    count = 0
    for chosen, rejected, margin in _bradley_terry_cases(rng):
        shown = (f"chosen_rewards={_numbers(chosen)}, rejected_rewards={_numbers(rejected)}, "
                 f"margin={'None' if margin is None else _numbers(margin)}")
        got = call_learner(title, bradley_terry_loss, chosen.clone(), rejected.clone(),
                           None if margin is None else margin.clone())
        want = objectives.bradley_terry_loss(chosen, rejected, margin)
        got = _scalar(title, got, shown, hint)
        if not torch.isfinite(got):
            raise failure(title, f"got {got.item()}, expected {want.item():.6g}: sigmoid of a gap below -745 "
                          "rounds to 0 in float64, and its log is -inf", shown,
                          "compute log sigmoid(x) with F.logsigmoid(x), which stays finite for any x "
                          "(-torch.log(torch.sigmoid(x)) is inf once sigmoid(x) rounds to 0)")
        if not _close(got, want):
            difference = chosen - rejected
            variants = [(-F.logsigmoid(rejected - chosen - (0 if margin is None else margin)).mean(),
                         "the chosen answer should get the higher reward: the gap is r_chosen - r_rejected")]
            if margin is not None:
                variants += [(-F.logsigmoid(difference + margin).mean(),
                              "subtract the margin, do not add it: a pair is ranked well only when r_chosen beats "
                              "r_rejected by more than the margin"),
                             (-F.logsigmoid(difference).mean(), "use the margin when it is given (not None): "
                              "-log sigmoid(r_chosen - r_rejected - margin)")]
            if len(chosen) > 1:
                variants.append((-F.logsigmoid(difference - (0 if margin is None else margin)).sum(),
                                 "average the pairs' losses (mean), do not sum them"))
            raise failure(title, f"expected {want.item():.6g}, got {got.item():.6g}", shown,
                          _diagnose(got, variants, hint))
        count += 1
    passed(title, f"{count} batches of pairs")


# --- Exercise 2: generalised advantage estimation ----------------------------------------------------------

_DISCOUNTS = [(0.9, 0.8), (1.0, 0.95), (0.99, 1.0), (0.7, 0.0), (1.0, 1.0)]


def _gae_cases(rng: random.Random):
    """(rewards, values, mask, gamma, lam, lengths): KL-like rewards with a score at the end, garbage on the padding."""
    generator = torch_generator(rng)
    for index in range(10):
        mask, lengths = _right_padded(rng, padded=index == 0)
        if index < len(_DISCOUNTS):
            gamma, lam = _DISCOUNTS[index]
        else:
            gamma, lam = rng.choice([0.8, 0.9, 0.95, 0.99, 1.0]), rng.choice([0.5, 0.9, 0.95, 1.0])
        rewards = torch.randn(mask.shape, generator=generator, dtype=DTYPE) * 0.3
        rows = torch.arange(len(lengths))
        rewards[rows, torch.tensor(lengths) - 1] += torch.randn(len(lengths), generator=generator, dtype=DTYPE) * 2
        values = torch.randn(mask.shape, generator=generator, dtype=DTYPE)
        yield (_garbage_on_padding(rewards, mask, generator, 5.0), _garbage_on_padding(values, mask, generator, 5.0),
               mask, gamma, lam, lengths)


@checker
def check_gae(gae, rng: random.Random) -> None:
    """Exercise 2: advantages and returns by GAE, right to left, on right-padded completions."""
    title = "Exercise 2 (generalised advantage estimation)"
    hint = ("go from the last position to the first: delta_t = r_t + gamma V_{t+1} - V_t and A_t = delta_t + gamma "
            "lam A_{t+1}, where V_{t+1} and A_{t+1} after a row's last real token are 0; returns = advantages + values; "
            "rewards and values on padding count as 0, and both outputs are 0 there")
    count = 0
    for rewards, values, mask, gamma, lam, lengths in _gae_cases(rng):
        shown = (f"rewards {_real(rewards, lengths)}, values {_real(values, lengths)} (real tokens shown; the padding "
                 f"holds garbage), mask {tuple(mask.shape)} with lengths {lengths}, gamma={gamma}, lam={lam}")
        got = call_learner(title, gae, rewards.clone(), values.clone(), mask.clone(), gamma, lam)
        want = objectives.gae(rewards, values, mask, gamma, lam)
        if not (isinstance(got, (tuple, list)) and len(got) == 2 and all(
                isinstance(g, torch.Tensor) and tuple(g.shape) == tuple(mask.shape) for g in got)):
            raise failure(title, f"return a pair (advantages, returns) of tensors of shape {tuple(mask.shape)}, got "
                          f"{_short(got)}", shown, hint)
        for name, got_part, want_part in zip(("advantages", "returns"), got, want):
            if _close(got_part, want_part):
                continue
            got_part = got_part.detach().to(DTYPE)
            wrong = ~torch.isclose(got_part, want_part, rtol=RTOL, atol=ATOL)
            row = int(wrong.any(1).nonzero()[0])
            if (wrong & (mask == 0)).any():
                specific = ("on padding (from a row's length on) advantages and returns must be 0: multiply them by "
                            "the mask")
            elif name == "returns":
                specific = "returns = advantages + values, on the real tokens (the value model's targets)"
            else:
                everywhere = torch.ones_like(mask)
                variants = [(objectives.gae(rewards, values, everywhere, gamma, lam)[0] * mask,
                             "rewards and values on padding count as 0 (multiply them by the mask first): the value "
                             "after a row's last real token is 0, and nothing from the padding may leak into the real "
                             "tokens")]
                if lam != 1.0:
                    variants.append((objectives.gae(rewards, values, mask, gamma, 1.0)[0],
                                     "the next advantage is discounted by gamma * lam, not by gamma alone"))
                specific = _diagnose(got_part, variants, hint)
            raise failure(title, f"{name} differ in row {row} (length {lengths[row]}): expected "
                          f"{_numbers(want_part[row])}, got {_numbers(got_part[row])}", shown, specific)
        count += 1
    passed(title, f"{count} batches")


# --- Exercise 3: PPO's clipped policy loss -----------------------------------------------------------------


def _ppo_cases(rng: random.Random):
    """(logprobs, old_logprobs, advantages, mask, clip_range, lengths): each real token's ratio inside the clip range,
    far above it or far below it, under a positive or a negative advantage (every one of the six from six real tokens
    on), garbage on the padding."""
    generator = torch_generator(rng)
    for index in range(10):
        mask, lengths = _right_padded(rng, padded=index == 0)
        clip_range = rng.choice([0.1, 0.2, 0.3])
        low, high = math.log(1 - clip_range), math.log(1 + clip_range)
        # the six kinds of token, (inside, above, below) x (A > 0, A < 0), in turn over the real tokens shuffled
        real = mask.flatten().nonzero().squeeze(1)
        kinds = torch.zeros(mask.numel(), dtype=torch.long)
        kinds[real[torch.randperm(len(real), generator=generator)]] = (torch.arange(len(real)) + rng.randrange(6)) % 6
        where, sign = (kinds % 3).view(mask.shape), torch.where(kinds < 3, 1.0, -1.0).to(DTYPE).view(mask.shape)
        u = torch.rand(mask.shape, generator=generator, dtype=DTYPE)
        logratio = torch.where(where == 0, 0.8 * (low + (high - low) * u),  # inside: 0.8 of the way to each bound
                               torch.where(where == 1, high + 0.05 + 1.5 * u, low - 0.05 - 1.5 * u))
        old_logprobs = -torch.rand(mask.shape, generator=generator, dtype=DTYPE) * 6 - 0.05
        scale = rng.choice([0.5, 1.0, 3.0])
        advantages = sign * (torch.randn(mask.shape, generator=generator, dtype=DTYPE).abs() + 0.05) * scale
        yield (_garbage_on_padding(old_logprobs + logratio, mask, generator, -1.5),
               _garbage_on_padding(old_logprobs, mask, generator, -1.5),
               _garbage_on_padding(advantages, mask, generator, 4.0), mask, clip_range, lengths)


@checker
def check_ppo_policy_loss(ppo_policy_loss, rng: random.Random) -> None:
    """Exercise 3: PPO's clipped surrogate as a loss, the masked mean of max(-A ratio, -A clip(ratio))."""
    title = "Exercise 3 (PPO's clipped policy loss)"
    hint = ("ratio = exp(logprobs - old_logprobs); per token the loss is the larger of -A ratio and -A clamp(ratio, "
            "1 - clip_range, 1 + clip_range); return its mean over the real tokens (where mask is 1)")
    clip_hint = ("clip the ratio on both sides, to [1 - clip_range, 1 + clip_range]: a negative advantage pushes the "
                 "ratio down, and only the lower bound stops it there")
    mean_hint = ("average over the real tokens only: sum(loss * mask) / sum(mask); .mean() counts the padding "
                 "positions too")
    count = 0
    for logprobs, old_logprobs, advantages, mask, clip_range, lengths in _ppo_cases(rng):
        ratio = torch.exp(logprobs - old_logprobs)
        shown = (f"ratio = exp(logprobs - old_logprobs) {_real(ratio, lengths)}, advantages {_real(advantages, lengths)} "
                 f"(real tokens shown; the padding holds garbage), mask {tuple(mask.shape)} with lengths {lengths}, "
                 f"clip_range={clip_range}")
        got = call_learner(title, ppo_policy_loss, logprobs.clone(), old_logprobs.clone(), advantages.clone(),
                           mask.clone(), clip_range)
        want = objectives.ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range)[0]
        got = _scalar(title, got, shown, hint)
        if not _close(got, want):
            unclipped = -advantages * ratio
            clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
            loss = torch.max(unclipped, clipped)

            def masked_mean(x):
                return objectives.masked_mean(x, mask)

            variants = [
                (masked_mean(torch.min(unclipped, clipped)),
                 "PPO is pessimistic: per token take the larger (max) of the two losses -A ratio and -A clip(ratio), "
                 "i.e. minus the smaller objective; with min, moving the ratio past the clip range still pays"),
                (masked_mean(torch.max(unclipped, -advantages * ratio.clamp(max=1 + clip_range))), clip_hint),
                (masked_mean(torch.max(unclipped, -advantages * ratio.clamp(min=1 - clip_range))), clip_hint),
                (masked_mean(unclipped), clip_hint),
                (loss.mean(), mean_hint),
                ((loss * mask).mean(), mean_hint),
                (-want, "return a loss to minimise: minus the clipped objective, so max(-A ratio, -A clip(ratio))"),
            ]
            raise failure(title, f"expected {want.item():.6g}, got {got.item():.6g}", shown,
                          _diagnose(got, variants, hint))
        count += 1
    passed(title, f"{count} batches")


# --- Exercise 4: DPO's loss and implicit rewards -----------------------------------------------------------

_BETAS = [0.1, 0.5, 1.0, 2.0, 0.01]


def _dpo_cases(rng: random.Random):
    """(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta): sequence log-probabilities (all below 0) whose
    log-ratios are small, large, and, in some pairs, several hundred nats apart."""
    generator = torch_generator(rng)
    for index in range(10):
        pairs = 1 if index == 0 else rng.randint(2, 8)
        beta = _BETAS[index % len(_BETAS)]
        scale = rng.choice([0.3, 3.0, 30.0])
        chosen_ratio = torch.randn(pairs, generator=generator, dtype=DTYPE) * scale
        rejected_ratio = torch.randn(pairs, generator=generator, dtype=DTYPE) * scale
        if index in (2, 6, 8):  # gaps of beta * 800 and more; the first ranks the pair the wrong way
            beta = rng.choice([1.0, 2.0])
            for k, pair in enumerate(rng.sample(range(pairs), rng.randint(1, pairs))):
                gap = rng.uniform(400, 600) * (-1 if k == 0 or rng.random() < 0.5 else 1)
                chosen_ratio[pair], rejected_ratio[pair] = gap, -gap
        logps = []
        for ratio in (chosen_ratio, rejected_ratio):
            ref = -torch.rand(pairs, generator=generator, dtype=DTYPE) * 100 - 5 - ratio.clamp(min=0)
            logps.append((ref + ratio, ref))
        (policy_chosen, ref_chosen), (policy_rejected, ref_rejected) = logps
        yield policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta


@checker
def check_dpo_loss(dpo_loss, rng: random.Random) -> None:
    """Exercise 4: DPO's loss per pair and the implicit rewards beta (log pi - log pi_ref) of both answers."""
    title = "Exercise 4 (DPO's loss and implicit rewards)"
    hint = ("the implicit reward of an answer is beta (log pi(y) - log pi_ref(y)); the loss of a pair is "
            "-log sigmoid(reward_chosen - reward_rejected), one per pair; return (losses, chosen_rewards, "
            "rejected_rewards), three tensors of shape (B,)")
    count = 0
    for policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta in _dpo_cases(rng):
        inputs = (policy_chosen, policy_rejected, ref_chosen, ref_rejected)
        shown = (f"policy_chosen_logps={_numbers(policy_chosen)}, policy_rejected_logps={_numbers(policy_rejected)}, "
                 f"ref_chosen_logps={_numbers(ref_chosen)}, ref_rejected_logps={_numbers(ref_rejected)}, beta={beta}")
        got = call_learner(title, dpo_loss, *(x.clone() for x in inputs), beta)
        want = objectives.dpo_loss(*inputs, beta)
        pairs = (len(policy_chosen),)
        if not (isinstance(got, (tuple, list)) and len(got) == 3 and all(isinstance(g, torch.Tensor) for g in got)):
            raise failure(title, f"return three tensors (losses, chosen_rewards, rejected_rewards), got {_short(got)}",
                          shown, hint)
        for name, got_part in zip(("losses", "chosen_rewards", "rejected_rewards"), got):
            if tuple(got_part.shape) != pairs:
                why = ": one loss per pair, not their mean (the trainer averages them)" if name == "losses" else ""
                raise failure(title, f"{name} must have shape {pairs}, one number per pair{why}; got "
                              f"{tuple(got_part.shape)}", shown, hint)
        losses, chosen_rewards, rejected_rewards = got
        if not torch.isfinite(losses).all():
            raise failure(title, f"losses {_numbers(losses)}, expected {_numbers(want[0])}: sigmoid of a gap below "
                          "-745 rounds to 0 in float64, and its log is -inf", shown,
                          "compute log sigmoid(x) with F.logsigmoid(x), which stays finite for any x "
                          "(-torch.log(torch.sigmoid(x)) is inf once sigmoid(x) rounds to 0)")
        chosen_logratio, rejected_logratio = policy_chosen - ref_chosen, policy_rejected - ref_rejected
        if not _close(losses, want[0]):
            variants = [
                (-F.logsigmoid(beta * (policy_chosen - policy_rejected)),
                 "the reference model is missing: an answer's implicit reward is beta (log pi - log pi_ref), "
                 "the policy's log-probability minus the reference's"),
                (-F.logsigmoid(chosen_logratio - rejected_logratio),
                 "multiply the log-ratios by beta: the implicit reward is beta (log pi - log pi_ref)"),
                (-F.logsigmoid(beta * (rejected_logratio - chosen_logratio)),
                 "the chosen answer should get the higher reward: -log sigmoid(reward_chosen - reward_rejected)"),
            ]
            raise failure(title, f"losses: expected {_numbers(want[0])}, got {_numbers(losses)}", shown,
                          _diagnose(losses, variants, hint))
        for name, got_part, want_part, policy, logratio in (
                ("chosen_rewards", chosen_rewards, want[1], policy_chosen, chosen_logratio),
                ("rejected_rewards", rejected_rewards, want[2], policy_rejected, rejected_logratio)):
            if not _close(got_part, want_part):  # values only: detached or not, both are right
                variants = [(logratio, f"{name} are beta times the log-ratio: beta (log pi - log pi_ref)"),
                            (beta * policy, f"{name} are beta (log pi - log pi_ref): subtract the reference model's "
                             "log-probability")]
                raise failure(title, f"{name}: expected {_numbers(want_part)}, got {_numbers(got_part)}", shown,
                              _diagnose(got_part, variants, hint))
        count += 1
    passed(title, f"{count} batches of pairs")
