"""The checkers of notebook 07's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import functools

import pytest
import torch
import torch.nn.functional as F

from minilm.exercises import rlhf as checks
from minilm.rlhf import objectives

from exercise_checks import assert_fails, nudged, table_tests, tolerance_tests


pytestmark = pytest.mark.usefixtures("one_thread")


# --- Exercise 1: the Bradley-Terry loss -------------------------------------------------------------------------


def package_bradley_terry(chosen_rewards, rejected_rewards, margin=None):
    return objectives.bradley_terry_loss(chosen_rewards, rejected_rewards, margin)


def written_bradley_terry(chosen_rewards, rejected_rewards, margin=None):
    difference = chosen_rewards - rejected_rewards
    if margin is not None:
        difference = difference - margin
    return -F.logsigmoid(difference).mean()


def softplus_bradley_terry(chosen_rewards, rejected_rewards, margin=None):  # -log sigmoid(x) = softplus(-x)
    margin = torch.zeros_like(chosen_rewards) if margin is None else margin
    return F.softplus(rejected_rewards - chosen_rewards + margin).mean()


def log_of_sigmoid(chosen_rewards, rejected_rewards, margin=None):  # inf where sigmoid rounds to 0
    difference = chosen_rewards - rejected_rewards - (0 if margin is None else margin)
    return -torch.log(torch.sigmoid(difference)).mean()


def margin_added(chosen_rewards, rejected_rewards, margin=None):
    return written_bradley_terry(chosen_rewards, rejected_rewards, None if margin is None else -margin)


def margin_ignored(chosen_rewards, rejected_rewards, margin=None):
    return written_bradley_terry(chosen_rewards, rejected_rewards)


def summed_over_pairs(chosen_rewards, rejected_rewards, margin=None):
    return written_bradley_terry(chosen_rewards, rejected_rewards, margin) * len(chosen_rewards)


# --- Exercise 2: GAE ---------------------------------------------------------------------------------------------


def written_gae(rewards, values, mask, gamma, lam):
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    next_advantage = next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages * mask, (advantages + values) * mask


def per_row_gae(rewards, values, mask, gamma, lam):  # another right way: a loop over each row's real tokens
    advantages, returns = torch.zeros_like(rewards), torch.zeros_like(rewards)
    for row in range(rewards.shape[0]):
        length = int(mask[row].sum())
        advantage = 0.0
        for t in reversed(range(length)):
            next_value = values[row, t + 1] if t + 1 < length else 0.0
            advantage = rewards[row, t] + gamma * next_value - values[row, t] + gamma * lam * advantage
            advantages[row, t] = advantage
        returns[row, :length] = advantages[row, :length] + values[row, :length]
    return advantages, returns


def left_to_right(rewards, values, mask, gamma, lam):  # A_t from A_{t-1}: the future never reaches the past
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    previous = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1]):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(previous)
        previous = rewards[:, t] + gamma * next_value - values[:, t] + gamma * lam * previous
        advantages[:, t] = previous
    return advantages * mask, (advantages + values) * mask


def padding_leaks(rewards, values, mask, gamma, lam):  # runs over the padding as if it were real, then masks
    advantages, returns = objectives.gae(rewards, values, torch.ones_like(mask), gamma, lam)
    return advantages * mask, returns * mask


def returns_are_advantages(rewards, values, mask, gamma, lam):
    advantages, _ = objectives.gae(rewards, values, mask, gamma, lam)
    return advantages, advantages


def returns_on_padding(rewards, values, mask, gamma, lam):  # the padding's garbage values in the returns
    advantages, _ = objectives.gae(rewards, values, mask, gamma, lam)
    return advantages, advantages + values


def lam_forgotten(rewards, values, mask, gamma, lam):
    return written_gae(rewards, values, mask, gamma, 1.0)


# --- Exercise 3: PPO's policy loss -------------------------------------------------------------------------------


def package_ppo(logprobs, old_logprobs, advantages, mask, clip_range):
    return objectives.ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range)[0]


def written_ppo(logprobs, old_logprobs, advantages, mask, clip_range):
    ratio = torch.exp(logprobs - old_logprobs)
    objective = torch.min(ratio * advantages, ratio.clamp(1 - clip_range, 1 + clip_range) * advantages)
    return -(objective * mask).sum() / mask.sum()


def ppo_losses(logprobs, old_logprobs, advantages, ratio_clamp):
    ratio = torch.exp(logprobs - old_logprobs)
    return -advantages * ratio, -advantages * ratio_clamp(ratio)


def min_of_losses(logprobs, old_logprobs, advantages, mask, clip_range):  # the optimistic bound
    unclipped, clipped = ppo_losses(logprobs, old_logprobs, advantages, lambda r: r.clamp(1 - clip_range, 1 + clip_range))
    return objectives.masked_mean(torch.min(unclipped, clipped), mask)


def upper_clip_only(logprobs, old_logprobs, advantages, mask, clip_range):
    unclipped, clipped = ppo_losses(logprobs, old_logprobs, advantages, lambda r: r.clamp(max=1 + clip_range))
    return objectives.masked_mean(torch.max(unclipped, clipped), mask)


def plain_mean(logprobs, old_logprobs, advantages, mask, clip_range):  # the padding counts
    unclipped, clipped = ppo_losses(logprobs, old_logprobs, advantages, lambda r: r.clamp(1 - clip_range, 1 + clip_range))
    return torch.max(unclipped, clipped).mean()


def all_three(logprobs, old_logprobs, advantages, mask, clip_range):  # the package's tuple, not the loss
    return objectives.ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_range)


# --- Exercise 4: DPO ---------------------------------------------------------------------------------------------


def written_dpo(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)  # not detached: the values are what count
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(chosen_rewards - rejected_rewards), chosen_rewards, rejected_rewards


def dpo_log_of_sigmoid(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    losses, chosen, rejected = objectives.dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                                   ref_rejected_logps, beta)
    return -torch.log(torch.sigmoid(chosen - rejected)), chosen, rejected


def no_reference(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    zeros = torch.zeros_like(ref_chosen_logps)
    return objectives.dpo_loss(policy_chosen_logps, policy_rejected_logps, zeros, zeros, beta)


def no_beta(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    return objectives.dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, 1.0)


def rewards_without_beta(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    losses, _, _ = objectives.dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                       ref_rejected_logps, beta)
    return losses, policy_chosen_logps - ref_chosen_logps, policy_rejected_logps - ref_rejected_logps


def mean_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    losses, chosen, rejected = objectives.dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                                   ref_rejected_logps, beta)
    return losses.mean(), chosen, rejected


CHECKS = [
    (checks.check_bradley_terry_loss, [package_bradley_terry, written_bradley_terry, softplus_bradley_terry],
     [log_of_sigmoid, margin_added, margin_ignored, summed_over_pairs]),
    (checks.check_gae, [objectives.gae, written_gae, per_row_gae],
     [left_to_right, padding_leaks, returns_are_advantages, returns_on_padding, lam_forgotten]),
    (checks.check_ppo_policy_loss, [package_ppo, written_ppo],
     [min_of_losses, upper_clip_only, plain_mean, all_three]),
    (checks.check_dpo_loss, [objectives.dpo_loss, written_dpo],
     [dpo_log_of_sigmoid, no_reference, no_beta, rewards_without_beta, mean_loss]),
]
test_right_answers_pass, test_wrong_answers_fail_with_input_and_hint, test_unsolved_stub_says_not_solved = (
    table_tests(CHECKS, times=3))

TOLERANCES = [
    (checks.check_bradley_terry_loss, functools.partial(nudged, package_bradley_terry), 1e-5, 1e-5),
    (checks.check_gae, functools.partial(nudged, objectives.gae), 1e-5, 1e-5),
    (checks.check_ppo_policy_loss, functools.partial(nudged, package_ppo), 1e-5, 1e-5),
    (checks.check_dpo_loss, functools.partial(nudged, objectives.dpo_loss), 1e-5, 1e-5),
]
test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = (
    tolerance_tests(TOLERANCES))


@pytest.mark.parametrize("check, wrong, words", [
    (checks.check_bradley_terry_loss, log_of_sigmoid, "F.logsigmoid(x), which stays finite"),
    (checks.check_bradley_terry_loss, margin_added, "subtract the margin"),
    (checks.check_bradley_terry_loss, margin_ignored, "use the margin when it is given"),
    (checks.check_bradley_terry_loss, summed_over_pairs, "do not sum them"),
    (checks.check_gae, padding_leaks, "nothing from the padding may leak"),
    (checks.check_gae, returns_are_advantages, "hint: returns = advantages + values"),
    (checks.check_gae, returns_on_padding, "must be 0: multiply them by the mask"),
    (checks.check_gae, lam_forgotten, "gamma * lam, not by gamma alone"),
    (checks.check_gae, left_to_right, "go from the last position to the first"),
    (checks.check_ppo_policy_loss, min_of_losses, "PPO is pessimistic"),
    (checks.check_ppo_policy_loss, upper_clip_only, "clip the ratio on both sides"),
    (checks.check_ppo_policy_loss, plain_mean, "counts the padding"),
    (checks.check_ppo_policy_loss, all_three, "return the loss alone"),
    (checks.check_dpo_loss, dpo_log_of_sigmoid, "F.logsigmoid(x), which stays finite"),
    (checks.check_dpo_loss, no_reference, "the reference model is missing"),
    (checks.check_dpo_loss, no_beta, "multiply the log-ratios by beta"),
    (checks.check_dpo_loss, rewards_without_beta, "are beta times the log-ratio"),
    (checks.check_dpo_loss, mean_loss, "not their mean"),
])
def test_failures_say_what_is_wrong(check, wrong, words):
    for seed in range(3):
        message = assert_fails(check, wrong, seed=seed)
        assert words in message and f"seed {seed}" in message, message


def test_the_same_seed_draws_the_same_inputs():
    messages = [assert_fails(checks.check_gae, left_to_right, seed=5) for _ in range(2)]
    assert messages[0] == messages[1]
    assert assert_fails(checks.check_gae, left_to_right, seed=6) != messages[0]


def test_the_cases_land_where_first_attempts_go_wrong():
    import random

    for seed in range(5):
        rng = random.Random(seed)
        gaps = [chosen - rejected for chosen, rejected, _ in checks._bradley_terry_cases(rng)]
        assert min(g.min() for g in gaps) < -745 and max(g.max() for g in gaps) > 745  # past float64's sigmoid
        lengths = [case[-1] for case in checks._gae_cases(rng)]
        assert any(1 in row for row in lengths) and any(len(set(row)) > 1 for row in lengths)
        ratios, advantages = [], []
        for logprobs, old_logprobs, advantage, mask, clip_range, _ in checks._ppo_cases(rng):
            real = mask.bool()
            ratio = torch.exp(logprobs - old_logprobs)[real]
            ratios.append((ratio < 1 - clip_range).any() and (ratio > 1 + clip_range).any()
                          and ((ratio > 1 - clip_range) & (ratio < 1 + clip_range)).any())
            advantages.append((advantage[real] > 0).any() and (advantage[real] < 0).any())
        assert sum(ratios) >= 5 and sum(advantages) >= 5, (ratios, advantages)
        dpo_gaps = [beta * ((pc - rc) - (pr - rr)) for pc, pr, rc, rr, beta in checks._dpo_cases(rng)]
        assert min(g.min() for g in dpo_gaps) < -745 and min(g.abs().min() for g in dpo_gaps) < 1
