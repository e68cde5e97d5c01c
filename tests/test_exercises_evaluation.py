"""The checkers of notebook 08's exercises (acc_norm, bits per byte, the paired bias score): they pass the package's
own functions and written-out answers, and fail, with the input and a hint, on plausible wrong answers and on
unsolved stubs. The Bradley-Terry checker is tested with the ratings, in tests/test_eval_human.py."""

import functools
import math
import random
import statistics

import pytest

from minilm.eval import bias, metrics
from minilm.exercises import evaluation as checks

from exercise_checks import assert_fails, nudged, table_tests, tolerance_tests

# --- Exercise 1: acc_norm ------------------------------------------------------------------------------------


def written_acc_norm(loglikelihoods, choices, gold):
    per_character = [ll / len(choice) for ll, choice in zip(loglikelihoods, choices)]
    return float(per_character.index(max(per_character)) == gold)


def plain_acc(loglikelihoods, choices, gold):
    return float(loglikelihoods.index(max(loglikelihoods)) == gold)


def by_words(loglikelihoods, choices, gold):
    per_word = [ll / len(choice.split()) for ll, choice in zip(loglikelihoods, choices)]
    return float(per_word.index(max(per_word)) == gold)


def returns_the_index(loglikelihoods, choices, gold):
    per_character = [ll / len(choice) for ll, choice in zip(loglikelihoods, choices)]
    return per_character.index(max(per_character))


# --- Exercise 2: bits per byte -------------------------------------------------------------------------------


def written_bits_per_byte(loglikelihoods, texts):
    return -sum(loglikelihoods) / math.log(2) / sum(len(text.encode("utf-8")) for text in texts)


def per_character(loglikelihoods, texts):
    return -sum(loglikelihoods) / math.log(2) / sum(len(text) for text in texts)


def in_nats(loglikelihoods, texts):
    return -sum(loglikelihoods) / sum(len(text.encode("utf-8")) for text in texts)


def mean_of_ratios(loglikelihoods, texts):
    return statistics.fmean(-ll / math.log(2) / len(t.encode("utf-8")) for ll, t in zip(loglikelihoods, texts))


# --- Exercise 3: the paired bias score -----------------------------------------------------------------------


def package_score(pairs, resamples, seed):
    wins = [float(s - a > cs - ca) for s, a, cs, ca in pairs]
    return (metrics.mean(wins), *bias.percentile_interval(wins, metrics.mean, resamples, seed))


def written_score(pairs, resamples, seed):  # its own resamples: another draw, the same interval within the tolerance
    wins = [1.0 if stereo - anti > control_stereo - control_anti else 0.0 for stereo, anti, control_stereo, control_anti in pairs]
    rng = random.Random(seed + 1)
    means = sorted(sum(rng.choices(wins, k=len(wins))) / len(wins) for _ in range(resamples))
    return sum(wins) / len(wins), means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def normal_interval(pairs, resamples, seed):  # the analytic interval is as good here: it passes
    wins = [float(s - a > cs - ca) for s, a, cs, ca in pairs]
    share = statistics.fmean(wins)
    stderr = statistics.stdev(wins) / math.sqrt(len(wins))
    return share, share - 1.96 * stderr, share + 1.96 * stderr


def without_the_control(pairs, resamples, seed):
    wins = [float(s > a) for s, a, _, _ in pairs]
    return (metrics.mean(wins), *bias.percentile_interval(wins, metrics.mean, resamples, seed))


def without_replacement(pairs, resamples, seed):
    wins = [float(s - a > cs - ca) for s, a, cs, ca in pairs]
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.sample(wins, len(wins))) for _ in range(resamples))
    return statistics.fmean(wins), means[25], means[974]


def share_only(pairs, resamples, seed):
    return package_score(pairs, resamples, seed)[0]


test_right_answers_pass, test_wrong_answers_fail_with_input_and_hint, test_unsolved_stub_says_not_solved = table_tests([
    (checks.check_acc_norm, [metrics.acc_norm, written_acc_norm], [plain_acc, by_words, returns_the_index]),
    (checks.check_bits_per_byte, [metrics.bits_per_byte, written_bits_per_byte], [per_character, in_nats, mean_of_ratios]),
    (checks.check_paired_bias_score, [package_score, written_score, normal_interval],
     [without_the_control, without_replacement, share_only]),
], times=3)

test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = tolerance_tests(
    [(checks.check_bits_per_byte, functools.partial(nudged, written_bits_per_byte), 1e-9, 0.0)])


@pytest.mark.parametrize("check, wrong, hint", [
    (checks.check_acc_norm, plain_acc, "that is acc"),
    (checks.check_bits_per_byte, per_character, "count bytes, not characters"),
    (checks.check_bits_per_byte, in_nats, "divide by log(2)"),
    (checks.check_bits_per_byte, mean_of_ratios, "pool over the texts"),
    (checks.check_paired_bias_score, without_the_control, "without the control"),
    (checks.check_paired_bias_score, without_replacement, "WITH replacement"),
])
def test_the_checker_names_the_mistake(check, wrong, hint):
    message = assert_fails(check, wrong, seed=1)
    assert hint in message and "seed 1" in message, message


def test_the_choice_items_make_acc_and_acc_norm_disagree_often():
    items = checks._choice_sets(random.Random(0))
    disagree = sum(metrics.acc(lls, gold) != metrics.acc_norm(lls, choices, gold) for lls, choices, gold in items)
    assert 0.2 * len(items) < disagree < 0.8 * len(items)
