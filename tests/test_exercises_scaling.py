"""The checkers of notebook 05's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import copy
import functools

import pytest
import torch
import torch.distributed as dist
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

from minilm.exercises import scaling as checks

from exercise_checks import assert_fails, assert_not_solved, assert_passes, nudge, nudged, tolerance_tests


pytestmark = pytest.mark.usefixtures("one_thread")


# --- answers written out, as a learner would (the notebook's solutions) ---------------------------------------


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


def written_zero1(model, batches, adamw, rank, world_size):
    parameters = list(model.parameters())
    owner = [index % world_size for index in range(len(parameters))]
    optimizer = adamw([p for p, o in zip(parameters, owner) if o == rank])
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        for p in parameters:
            dist.all_reduce(p.grad)
            p.grad /= world_size
        optimizer.step()
        for p, o in zip(parameters, owner):
            dist.broadcast(p.data, src=o)
    return optimizer


def reduce_to_owner_zero1(model, batches, adamw, rank, world_size):  # right too: only the owner needs the sum
    parameters = list(model.parameters())
    sizes = [0] * world_size  # balance the shards by size, largest tensors first, as ZeroRedundancyOptimizer does
    owner = {}
    for p in sorted(parameters, key=lambda p: -p.numel()):
        owner[p] = min(range(world_size), key=sizes.__getitem__)
        sizes[owner[p]] += p.numel()
    optimizer = adamw([p for p in parameters if owner[p] == rank])
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        for p in parameters:
            dist.reduce(p.grad, dst=owner[p])
            p.grad /= world_size
        optimizer.step()
        for p in parameters:
            dist.broadcast(p.data, src=owner[p])
    return optimizer


def pytorch_zero1(model, batches, adamw, rank, world_size):  # the peer: DDP averages, ZeroRedundancyOptimizer shards
    replica = DistributedDataParallel(model)
    optimizer = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=adamw)
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        _, loss = replica(x, y)
        loss.backward()
        optimizer.step()
    return optimizer


# --- plausible wrong answers ----------------------------------------------------------------------------------


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


def stale_zero1(model, batches, adamw, rank, world_size):  # steps its shard, never sends it: the copies drift apart
    parameters = list(model.parameters())
    optimizer = adamw(parameters[rank::world_size])
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        for p in parameters:
            dist.all_reduce(p.grad)
            p.grad /= world_size
        optimizer.step()
    return optimizer


def local_gradient_zero1(model, batches, adamw, rank, world_size):  # no all-reduce: each shard steps on one rank's data
    parameters = list(model.parameters())
    optimizer = adamw(parameters[rank::world_size])
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        for index, p in enumerate(parameters):
            dist.broadcast(p.data, src=index % world_size)
    return optimizer


def unsharded_zero1(model, batches, adamw, rank, world_size):  # plain data parallelism: every rank keeps all the state
    parameters = list(model.parameters())
    optimizer = adamw(parameters)
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        for p in parameters:
            dist.all_reduce(p.grad)
            p.grad /= world_size
        optimizer.step()
    return optimizer


def owner_sends_alone_zero1(model, batches, adamw, rank, world_size):  # only the owner calls broadcast: the ranks wait
    parameters = list(model.parameters())
    optimizer = adamw(parameters[rank::world_size])
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        for p in parameters:
            dist.all_reduce(p.grad)
            p.grad /= world_size
        optimizer.step()
        for p in parameters[rank::world_size]:
            dist.broadcast(p.data, src=rank)
    return optimizer


# --- the tests ------------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("answer", [written_zero1, reduce_to_owner_zero1, pytorch_zero1])
def test_zero1_checker_passes_right_answers_and_pytorchs_own(answer, capsys):
    assert_passes(checks.check_zero1, answer, capsys)


@pytest.mark.parametrize("answer, message", [
    (stale_zero1, "rank 0's and rank 1's .* differ"),
    (local_gradient_zero1, "differs from plain data parallelism's"),
    (unsharded_zero1, "ZeRO-1 shares that out"),
])
def test_zero1_checker_fails_wrong_answers(answer, message):
    message = assert_fails(checks.check_zero1, answer, match=message)
    assert "hint:" in message and "on input:" in message


def test_zero1_checker_stops_ranks_that_wait_for_each_other(monkeypatch):
    monkeypatch.setattr(checks, "COLLECTIVE_TIMEOUT", 3)
    message = assert_fails(checks.check_zero1, owner_sends_alone_zero1, match="(?i)timed out|did not finish")
    assert "never called" in message


def test_zero1_checker_measures_the_state_of_pytorchs_sharded_optimizer():
    parameters = [torch.nn.Parameter(torch.ones(5)), torch.nn.Parameter(torch.ones(3, 2))]
    whole = torch.optim.AdamW(parameters)
    sum(p.sum() for p in parameters).backward()
    whole.step()
    assert checks._state_bytes(whole) == 2 * 4 * 11  # two moments of 11 float32 numbers; the step counts aside


@pytest.mark.parametrize("checker", [checks.check_update_scale, checks.check_data_parallel_gradients, checks.check_zero1])
def test_checkers_fail_on_stubs(checker):
    assert_not_solved(checker)


# --- the tolerances ---------------------------------------------------------------------------------------------


def big_batch_gradients(model, inputs, targets, world_size):  # right, on one process: the checker's own computation
    return checks._big_batch_gradients(model, inputs, targets)


def nudged_zero1(rel, abs_):
    """A right ZeRO-1 whose weights end off by rel * |w| + abs_ (the same on both ranks)."""
    def off(model, batches, adamw, rank, world_size):
        optimizer = written_zero1(model, batches, adamw, rank, world_size)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(nudge(p, rel, abs_))
        return optimizer
    return off


# The checkers that compare numbers with a tolerance: (checker, the right answer nudged, rel_tol, abs_tol).
# The scale of exercise 1 is compared within rel_tol=1e-6 (its count of good steps exactly: `nudge` leaves ints alone).
TOLERANCES = [
    (checks.check_update_scale, functools.partial(nudged, checks._reference_update_scale), 1e-6, 0.0),
    (checks.check_data_parallel_gradients, functools.partial(nudged, big_batch_gradients), 1e-4, 1e-6),
    (checks.check_zero1, nudged_zero1, 1e-5, 1e-7),
]
test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = (
    tolerance_tests(TOLERANCES))
