"""The checkers of notebook 04's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from minilm.exercises import pretraining as checks
from minilm.model import mask_tokens
from minilm.train.schedule import learning_rate

from exercise_checks import assert_fails, assert_passes, nudge, nudged, stub, tolerance_tests


pytestmark = pytest.mark.usefixtures("one_thread")


# --- Exercise 1 ------------------------------------------------------------------------------------------------


def package_cross_entropy(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)


def written_cross_entropy(logits, targets):
    counted = targets != -100
    top = logits.max(dim=-1, keepdim=True).values
    log_probs = logits - top - (logits - top).exp().sum(dim=-1, keepdim=True).log()
    return -log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)[counted].mean()


def naive_softmax_cross_entropy(logits, targets):  # overflows for large logits
    counted = targets != -100
    probs = logits.exp() / logits.exp().sum(dim=-1, keepdim=True)
    return -probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)[counted].log().mean()


def mean_over_every_position(logits, targets):  # counts the ignored positions as zeros
    log_probs = logits.log_softmax(-1)
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked * (targets != -100)).mean()


def in_bits(logits, targets):
    return package_cross_entropy(logits, targets) / math.log(2)


@pytest.mark.parametrize("answer", [package_cross_entropy, written_cross_entropy])
def test_cross_entropy_passes_right_answers(answer, capsys):
    assert_passes(checks.check_cross_entropy, answer, capsys)


@pytest.mark.parametrize("answer", [naive_softmax_cross_entropy, mean_over_every_position, in_bits, stub])
def test_cross_entropy_fails_wrong_answers(answer):
    assert_fails(checks.check_cross_entropy, answer)


# --- Exercise 2 ------------------------------------------------------------------------------------------------


def written_lr(step, max_lr, warmup_steps, total_steps, min_lr):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def warmup_from_zero(step, max_lr, warmup_steps, total_steps, min_lr):  # step 0 would not move the weights
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    return learning_rate(step, max_lr, warmup_steps, total_steps, min_lr)


def cosine_to_zero(step, max_lr, warmup_steps, total_steps, min_lr):  # forgets the floor
    return learning_rate(step, max_lr, warmup_steps, total_steps, 0.0)


def cosine_over_all_steps(step, max_lr, warmup_steps, total_steps, min_lr):  # the decay ignores the warmup
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(step / total_steps, 1.0)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


@pytest.mark.parametrize("answer", [learning_rate, written_lr])
def test_learning_rate_passes_right_answers(answer, capsys):
    assert_passes(checks.check_learning_rate, answer, capsys)


@pytest.mark.parametrize("answer", [warmup_from_zero, cosine_to_zero, cosine_over_all_steps, stub])
def test_learning_rate_fails_wrong_answers(answer):
    assert_fails(checks.check_learning_rate, answer)


# --- Exercise 3 ------------------------------------------------------------------------------------------------


def written_mask(ids, mask_id, vocab_size, generator, rate=0.15):
    chosen = torch.rand(ids.shape, generator=generator) < rate
    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
    kind = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (kind < 0.8)] = mask_id
    swap = chosen & (kind >= 0.8) & (kind < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, targets


def mask_every_chosen(ids, mask_id, vocab_size, generator, rate=0.15):  # no 10% random, no 10% kept
    chosen = torch.rand(ids.shape, generator=generator) < rate
    return torch.where(chosen, torch.full_like(ids, mask_id), ids), torch.where(chosen, ids, torch.full_like(ids, -100))


def targets_everywhere(ids, mask_id, vocab_size, generator, rate=0.15):  # the loss would count every position
    inputs, _ = mask_tokens(ids, mask_id, vocab_size, generator, rate)
    return inputs, ids.clone()


def fixed_pattern(ids, mask_id, vocab_size, generator, rate=0.15):  # every 7th position: not random
    chosen = torch.zeros(ids.shape, dtype=torch.bool)
    chosen[:, :: round(1 / rate)] = True
    return torch.where(chosen, torch.full_like(ids, mask_id), ids), torch.where(chosen, ids, torch.full_like(ids, -100))


def global_random(ids, mask_id, vocab_size, generator, rate=0.15):  # ignores the generator
    return mask_tokens(ids, mask_id, vocab_size, torch.Generator().manual_seed(torch.randint(2**31, ()).item()), rate)


def in_place(ids, mask_id, vocab_size, generator, rate=0.15):  # changes the caller's ids
    inputs, targets = mask_tokens(ids, mask_id, vocab_size, generator, rate)
    ids.copy_(inputs)
    return inputs, targets


@pytest.mark.parametrize("answer", [mask_tokens, written_mask])
def test_masking_passes_right_answers(answer, capsys):
    assert_passes(checks.check_masking, answer, capsys)


@pytest.mark.parametrize("answer", [mask_every_chosen, targets_everywhere, fixed_pattern, global_random, in_place, stub])
def test_masking_fails_wrong_answers(answer):
    assert_fails(checks.check_masking, answer)


def masking_with(rate_offset=0.0, masked=0.8, swapped=0.1, stripes=0.0, replacements=1.0):
    """BERT's rule with its numbers moved: the rate, the shares of [MASK] and random tokens among the chosen, odd
    columns chosen `stripes` more often and even ones less (the same rate overall), replacements drawn from the first
    `replacements` of the vocabulary."""
    def mask(ids, mask_id, vocab_size, generator, rate=0.15):
        column_rate = rate + rate_offset + stripes * (torch.arange(ids.size(1)) % 2 * 2 - 1)
        chosen = torch.rand(ids.shape, generator=generator) < column_rate
        kind = torch.rand(ids.shape, generator=generator)
        random_ids = torch.randint(max(1, int(vocab_size * replacements)), ids.shape, generator=generator)
        inputs = ids.clone()
        inputs[chosen & (kind < masked)] = mask_id
        swap = chosen & (kind >= masked) & (kind < masked + swapped)
        inputs[swap] = random_ids[swap]
        return inputs, torch.where(chosen, ids, torch.full_like(ids, -100))
    return mask


# The masking checker's tolerances are statistical: ±0.01 on the rate, ±0.02 on the share of [MASK] among the chosen,
# ±0.015 on the random and unchanged shares, a spread of the columns' rates at most 1.5 times that of independent
# draws, replacements from at least a quarter of the vocabulary (or of the replaced positions). Just outside each: fail.
@pytest.mark.parametrize("answer, message", [
    (masking_with(rate_offset=0.03), "chosen positions"),
    (masking_with(masked=0.86, swapped=0.07), "mask_id among the chosen"),
    (masking_with(masked=0.74, swapped=0.13), "mask_id among the chosen"),
    (masking_with(swapped=0.145), "random tokens among the chosen"),
    (masking_with(swapped=0.055), "random tokens among the chosen"),
    # The unchanged share is what the other two leave: off by 0.023 while they stay inside theirs.
    (masking_with(masked=0.812, swapped=0.111), "unchanged among the chosen"),
    (masking_with(stripes=0.08), "chosen far more often"),
    (masking_with(replacements=0.2), "distinct ids"),
], ids=["rate", "more-mask", "less-mask", "more-random", "less-random", "fewer-unchanged", "striped-columns",
        "few-replacements"])
def test_masking_just_outside_each_tolerance_fails(answer, message):
    assert_fails(checks.check_masking, answer, match=message)


def test_masking_well_inside_every_tolerance_passes(capsys):
    answer = masking_with(rate_offset=0.003, masked=0.806, swapped=0.0955, stripes=0.01, replacements=0.5)
    assert_passes(checks.check_masking, answer, capsys, times=2)


# --- Exercise 4 ------------------------------------------------------------------------------------------------


def written_accumulate(model, inputs, targets, k):
    total = int((targets != -100).sum())
    whole = 0.0
    for x, y in zip(inputs.chunk(k), targets.chunk(k)):
        _, loss = model(x, y)
        share = int((y != -100).sum()) / total
        (loss * share).backward()
        whole += loss.item() * share
    return whole


def sum_of_token_losses(model, inputs, targets, k):  # another right way: sum the per-token losses, divide once
    total = int((targets != -100).sum())
    whole = 0.0
    for x, y in zip(inputs.chunk(k), targets.chunk(k)):
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="sum") / total
        loss.backward()
        whole += loss.item()
    return whole


def divide_by_k(model, inputs, targets, k):  # what train_step does: exact only for equal micro-batches
    chunks = list(zip(inputs.chunk(k), targets.chunk(k)))
    whole = 0.0
    for x, y in chunks:
        _, loss = model(x, y)
        (loss / len(chunks)).backward()
        whole += loss.item() / len(chunks)
    return whole


def no_scaling(model, inputs, targets, k):  # k times too big
    for x, y in zip(inputs.chunk(k), targets.chunk(k)):
        model(x, y)[1].backward()
    return model(inputs, targets)[1].item()


def zero_between(model, inputs, targets, k):  # keeps only the last micro-batch's gradient
    whole = written_accumulate(model, inputs, targets, k)
    model.zero_grad()
    x, y = inputs.chunk(k)[-1], targets.chunk(k)[-1]
    model(x, y)[1].backward()
    return whole


@pytest.mark.parametrize("answer", [written_accumulate, sum_of_token_losses])
def test_gradient_accumulation_passes_right_answers(answer, capsys):
    assert_passes(checks.check_gradient_accumulation, answer, capsys)


@pytest.mark.parametrize("answer", [divide_by_k, no_scaling, zero_between, stub])
def test_gradient_accumulation_fails_wrong_answers(answer):
    assert_fails(checks.check_gradient_accumulation, answer)


# --- the tolerances ---------------------------------------------------------------------------------------------


def whole_batch(model, inputs, targets, k):  # right, the whole batch at once (as the checker computes it), k ignored
    _, loss = model(inputs, targets)
    loss.backward()
    return loss.item()


def loss_nudged(rel, abs_):  # the gradients right, the returned loss off
    return nudged(whole_batch, rel, abs_)


def gradients_nudged(rel, abs_):  # the returned loss right, the gradients off
    def accumulate(model, inputs, targets, k):
        loss = whole_batch(model, inputs, targets, k)
        for param in model.parameters():
            param.grad = nudge(param.grad, rel, abs_)
        return loss
    return accumulate


# The checkers that compare numbers with a tolerance: (checker, the right answer nudged, rel_tol, abs_tol).
TOLERANCES = [
    (checks.check_cross_entropy, functools.partial(nudged, package_cross_entropy), 1e-4, 1e-4),
    (checks.check_learning_rate, functools.partial(nudged, learning_rate), 1e-6, 1e-12),
    (checks.check_gradient_accumulation, loss_nudged, 1e-6, 0.0),  # abs_tol=1e-9: no loss comes near 0
    (checks.check_gradient_accumulation, gradients_nudged, 1e-5, 1e-8),
]
test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = (
    tolerance_tests(TOLERANCES))
