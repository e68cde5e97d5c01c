"""The checkers of notebook 05's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import copy
import functools
import math

import pytest
import torch

from minilm.exercises import scaling as checks
from minilm.model.accounting import matmul_parameters, mfu, parameter_counts
from minilm.tokenizer.shards import TokenShards

from exercise_checks import assert_fails, assert_not_solved, assert_passes, nudged, tolerance_tests


pytestmark = pytest.mark.usefixtures("one_thread")


# --- answers written out, as a learner would (the notebook's solutions) ---------------------------------------


def written_mfu(config, context, tokens_per_second, peak_flops, n_devices=1):
    flops_per_token = 6 * matmul_parameters(config) + 12 * config.n_layer * context * config.n_embd
    return flops_per_token * tokens_per_second / (peak_flops * n_devices)


def written_rank_part(n_tokens, rank, world_size):
    return rank * n_tokens // world_size, (rank + 1) * n_tokens // world_size


def written_update_scale(scale, good_steps, found_inf, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000):
    if found_inf:
        return scale * backoff_factor, 0
    good_steps += 1
    if good_steps < growth_interval:
        return scale, good_steps
    grown = scale * growth_factor
    return (grown if grown <= torch.finfo(torch.float32).max else scale), 0


def written_data_parallel_gradients(model, inputs, targets, world_size):
    per_rank = len(inputs) // world_size
    summed = {}
    for rank in range(world_size):
        replica = copy.deepcopy(model)
        rows = slice(rank * per_rank, (rank + 1) * per_rank)
        _, loss = replica(inputs[rows], targets[rows])
        loss.backward()
        for name, p in replica.named_parameters():
            summed[name] = summed.get(name, 0) + p.grad
    return {name: g / world_size for name, g in summed.items()}


# --- plausible wrong answers ----------------------------------------------------------------------------------


def forward_only_mfu(config, context, tokens_per_second, peak_flops, n_devices=1):
    return written_mfu(config, context, tokens_per_second, peak_flops, n_devices) / 3


def six_n_mfu(config, context, tokens_per_second, peak_flops, n_devices=1):  # forgets attention's dot products
    return 6 * matmul_parameters(config) * tokens_per_second / (peak_flops * n_devices)


def all_parameters_mfu(config, context, tokens_per_second, peak_flops, n_devices=1):
    flops = 6 * parameter_counts(config)["total"] + 12 * config.n_layer * context * config.n_embd
    return flops * tokens_per_second / (peak_flops * n_devices)


def one_device_mfu(config, context, tokens_per_second, peak_flops, n_devices=1):
    return written_mfu(config, context, tokens_per_second, peak_flops, 1)


def floor_rank_part(n_tokens, rank, world_size):  # drops the remainder
    size = n_tokens // world_size
    return rank * size, (rank + 1) * size


def last_takes_rest_rank_part(n_tokens, rank, world_size):  # covers everything, but the last part is too big
    size = n_tokens // world_size
    return rank * size, n_tokens if rank == world_size - 1 else (rank + 1) * size


def strided_rank_part(n_tokens, rank, world_size):
    return rank, n_tokens


def never_reset_update_scale(scale, good_steps, found_inf, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000):
    if found_inf:
        return scale * backoff_factor, good_steps  # forgets to restart the count
    good_steps += 1
    if good_steps % growth_interval == 0:
        return scale * growth_factor, good_steps
    return scale, good_steps


def unbounded_update_scale(scale, good_steps, found_inf, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000):
    if found_inf:
        return scale * backoff_factor, 0
    good_steps += 1
    return (scale * growth_factor, 0) if good_steps == growth_interval else (scale, good_steps)


def summed_data_parallel_gradients(model, inputs, targets, world_size):  # all-reduce SUM without the division
    return {name: g * world_size for name, g in written_data_parallel_gradients(model, inputs, targets, world_size).items()}


def rank0_data_parallel_gradients(model, inputs, targets, world_size):  # no all-reduce: rank 0's gradient only
    per_rank = len(inputs) // world_size
    _, loss = model(inputs[:per_rank], targets[:per_rank])
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


def stepping_data_parallel_gradients(model, inputs, targets, world_size):  # right gradients, but takes a step
    grads = written_data_parallel_gradients(model, inputs, targets, world_size)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p -= 0.1 * grads[name]
    return grads


# --- the tests ------------------------------------------------------------------------------------------------


def test_the_written_answers_agree_with_the_package():
    config = checks.GPTConfig(n_layer=2, n_head=2, n_embd=64, context=64, vocab_size=512)
    assert math.isclose(written_mfu(config, 64, 1e4, 1e11, 2), mfu(config, 1e4, 2e11, 64))
    assert written_rank_part(10, 2, 3) == TokenShards.part(checks._Stream(10), 2, 3) == (6, 10)


@pytest.mark.parametrize("answer", [mfu_answer for mfu_answer in (written_mfu, checks._reference_mfu)])
def test_mfu_checker_passes_right_answers(answer, capsys):
    assert_passes(checks.check_mfu, answer, capsys)


@pytest.mark.parametrize("answer", [forward_only_mfu, six_n_mfu, all_parameters_mfu, one_device_mfu])
def test_mfu_checker_fails_wrong_answers(answer):
    assert_fails(checks.check_mfu, answer, match="(?s)wrong answer.*hint")


@pytest.mark.parametrize("answer", [written_rank_part, checks._reference_part])
def test_rank_part_checker_passes_right_answers(answer, capsys):
    assert_passes(checks.check_rank_part, answer, capsys)


@pytest.mark.parametrize("answer", [floor_rank_part, last_takes_rest_rank_part, strided_rank_part])
def test_rank_part_checker_fails_wrong_answers(answer):
    assert_fails(checks.check_rank_part, answer, match="(?s)wrong answer.*hint")


def test_rank_part_checker_explains_a_bad_return_type():
    assert_fails(checks.check_rank_part, lambda n, r, w: None, match="pair")


@pytest.mark.parametrize("answer", [written_update_scale, checks._reference_update_scale])
def test_update_scale_checker_passes_right_answers(answer, capsys):
    assert_passes(checks.check_update_scale, answer, capsys)


@pytest.mark.parametrize("answer", [never_reset_update_scale, unbounded_update_scale])
def test_update_scale_checker_fails_wrong_answers(answer):
    assert_fails(checks.check_update_scale, answer, match="(?s)wrong answer.*hint")


def test_the_reference_update_is_what_gradscaler_does():
    # the rule the checker holds the learner to is the one a real GradScaler follows, step by step
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_factor=2.0, backoff_factor=0.5, growth_interval=2)
    scale, good = 2.0**10, 0
    for found_inf in [False, False, True, False, False, False]:
        loss = (parameter * (float("inf") if found_inf else 1.0)).sum()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        scale, good = checks._reference_update_scale(scale, good, found_inf, 2.0, 0.5, 2)
        assert scaler.get_scale() == scale
    assert scale == 2.0**11


@pytest.mark.parametrize("answer", [written_data_parallel_gradients])
def test_data_parallel_checker_passes_right_answers(answer, capsys):
    assert_passes(checks.check_data_parallel_gradients, answer, capsys)


@pytest.mark.parametrize("answer, message", [
    (summed_data_parallel_gradients, "differs from the big batch"),
    (rank0_data_parallel_gradients, "differs from the big batch"),
    (stepping_data_parallel_gradients, "changed the model's weights"),
])
def test_data_parallel_checker_fails_wrong_answers(answer, message):
    assert_fails(checks.check_data_parallel_gradients, answer, match=message)


@pytest.mark.parametrize("checker", [checks.check_mfu, checks.check_rank_part, checks.check_update_scale,
                                     checks.check_data_parallel_gradients])
def test_checkers_fail_on_stubs(checker):
    assert_not_solved(checker)


# --- the tolerances ---------------------------------------------------------------------------------------------


def big_batch_gradients(model, inputs, targets, world_size):  # right, on one process: the checker's own computation
    return checks._big_batch_gradients(model, inputs, targets)


# The checkers that compare numbers with a tolerance: (checker, the right answer nudged, rel_tol, abs_tol).
# The scale of exercise 3 is compared within rel_tol=1e-6 (its count of good steps exactly: `nudge` leaves ints alone).
TOLERANCES = [
    (checks.check_mfu, functools.partial(nudged, checks._reference_mfu), 1e-9, 0.0),
    (checks.check_update_scale, functools.partial(nudged, checks._reference_update_scale), 1e-6, 0.0),
    (checks.check_data_parallel_gradients, functools.partial(nudged, big_batch_gradients), 1e-4, 1e-6),
]
test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = (
    tolerance_tests(TOLERANCES))
