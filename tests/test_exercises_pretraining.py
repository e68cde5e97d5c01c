"""The checkers of notebook 04's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from minilm.exercises import pretraining as checks
from minilm.model import mask_tokens
from minilm.train.loop import train_step
from minilm.train.schedule import learning_rate

from exercise_checks import assert_fails, assert_not_solved, assert_passes, nudge, nudged, stub, tolerance_tests


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


# --- Exercise 3 ------------------------------------------------------------------------------------------------


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


# --- Exercise 4 ------------------------------------------------------------------------------------------------


class WrittenAdamW(torch.optim.Optimizer):
    """AdamW as the notebook's solution writes it: moments and a step count per parameter, the group's settings."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def update(self, p, g, state, lr, beta1, beta2, eps, weight_decay):
        t, m, v = state["step"], state["m"], state["v"]
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        p.mul_(1 - lr * weight_decay)
        p.sub_(lr * m_hat / (v_hat.sqrt() + eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            (beta1, beta2) = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["step"] += 1
                self.update(p, p.grad, state, group["lr"], beta1, beta2, group["eps"], group["weight_decay"])


class NoBiasCorrection(WrittenAdamW):
    def update(self, p, g, state, lr, beta1, beta2, eps, weight_decay):
        m, v = state["m"], state["v"]
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        p.mul_(1 - lr * weight_decay)
        p.sub_(lr * m / (v.sqrt() + eps))


class EpsInsideTheRoot(WrittenAdamW):
    def update(self, p, g, state, lr, beta1, beta2, eps, weight_decay):
        t, m, v = state["step"], state["m"], state["v"]
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        p.mul_(1 - lr * weight_decay)
        p.sub_(lr * (m / (1 - beta1**t)) / (v / (1 - beta2**t) + eps).sqrt())


class CoupledDecay(WrittenAdamW):  # Adam with L2: the decay goes into the gradient, and through the moments
    def update(self, p, g, state, lr, beta1, beta2, eps, weight_decay):
        super().update(p, g + weight_decay * p, state, lr, beta1, beta2, eps, 0.0)


class DecayEverywhere(WrittenAdamW):  # the constructor's weight decay on every group, biases too
    def update(self, p, g, state, lr, beta1, beta2, eps, weight_decay):
        super().update(p, g, state, lr, beta1, beta2, eps, self.defaults["weight_decay"])


class LearningRateOfTheStart(WrittenAdamW):  # ignores the schedule's changes to group["lr"]
    def update(self, p, g, state, lr, beta1, beta2, eps, weight_decay):
        super().update(p, g, state, self.defaults["lr"], beta1, beta2, eps, weight_decay)


class OneStepCount(WrittenAdamW):  # counts the optimizer's steps, not each parameter's: wrong once a grad is None
    @torch.no_grad()
    def step(self):
        self.steps = getattr(self, "steps", 0) + 1
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    state = self.state[p]
                    if not state:
                        state.update(m=torch.zeros_like(p), v=torch.zeros_like(p))
                    state["step"] = self.steps
                    self.update(p, p.grad, state, group["lr"], *group["betas"], group["eps"], group["weight_decay"])


class StubAdamW(torch.optim.Optimizer):  # the learner's notebook before the exercise is done
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def step(self):
        raise NotImplementedError("Exercise: write your code here")


def torch_adamw(params, lr, betas, eps, weight_decay):  # the reference itself, in its default (foreach) form
    return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


@pytest.mark.parametrize("answer", [WrittenAdamW, torch_adamw])
def test_adamw_passes_right_answers(answer, capsys):
    assert_passes(checks.check_adamw, answer, capsys, times=2)


@pytest.mark.parametrize("answer", [NoBiasCorrection, EpsInsideTheRoot, CoupledDecay, DecayEverywhere,
                                    LearningRateOfTheStart, OneStepCount])
def test_adamw_fails_wrong_answers(answer):
    message = assert_fails(checks.check_adamw, answer)
    assert message.startswith("❌") and "hint:" in message and "on input:" in message, message


@pytest.mark.parametrize("answer", [stub, StubAdamW])
def test_adamw_unsolved_says_not_solved(answer):
    assert_fails(checks.check_adamw, answer, match="not solved yet")


# --- Exercise 5 ------------------------------------------------------------------------------------------------


def counted(targets):
    return int((targets != -100).sum())


def written_loop(model, optimizer, steps, lr, warmup_steps, min_lr, grad_clip, *, rate_of=None, weigh=None,
                 clip_each=False, zero=True, clip=True):
    """The notebook's solution; the keywords turn it into the wrong answers below."""
    losses = []
    for step, batches in enumerate(steps):
        rate = (rate_of or learning_rate)(step, lr, warmup_steps, len(steps), min_lr)
        for group in optimizer.param_groups:
            group["lr"] = rate
        total = sum(counted(y) for _, y in batches)
        step_loss = 0.0
        for x, y in batches:
            _, loss = model(x, y)
            loss = loss * (weigh(y, total, len(batches)) if weigh else counted(y) / total)
            loss.backward()
            step_loss += loss.item()
            if clip_each:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if clip and not clip_each:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if zero:
            optimizer.zero_grad()
        losses.append(step_loss)
    return losses


def package_loop(model, optimizer, steps, lr, warmup_steps, min_lr, grad_clip):  # train_step itself
    scaler, losses = torch.amp.GradScaler("cpu", enabled=False), []
    for step, batches in enumerate(steps):
        rate = learning_rate(step, lr, warmup_steps, len(steps), min_lr)
        losses.append(train_step(model, optimizer, scaler, batches, rate, grad_clip, "cpu")[0].item())
    return losses


def sum_then_divide_loop(model, optimizer, steps, lr, warmup_steps, min_lr, grad_clip):  # per-token sums: right too
    losses = []
    for step, batches in enumerate(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, lr, warmup_steps, len(steps), min_lr)
        total = sum(counted(y) for _, y in batches)
        step_loss = 0.0
        for x, y in batches:
            logits, _ = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="sum") / total
            loss.backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
    return losses


def no_clipping(*args):
    return written_loop(*args, clip=False)


def clip_each_micro_batch(*args):
    return written_loop(*args, clip_each=True)


def never_zeroed(*args):
    return written_loop(*args, zero=False)


def divide_by_k(*args):  # right for equal micro-batches only
    return written_loop(*args, weigh=lambda y, total, k: 1 / k)


def schedule_one_step_late(*args):  # the rate of step + 1
    return written_loop(*args, rate_of=lambda step, *rest: learning_rate(step + 1, *rest))


def schedule_without_warmup(*args):
    return written_loop(*args, rate_of=lambda step, lr, warmup, total, min_lr: learning_rate(step, lr, 0, total, min_lr))


@pytest.mark.parametrize("answer", [written_loop, package_loop, sum_then_divide_loop])
def test_training_loop_passes_right_answers(answer, capsys):
    assert_passes(checks.check_training_loop, answer, capsys, times=2)


@pytest.mark.parametrize("answer", [no_clipping, clip_each_micro_batch, never_zeroed, divide_by_k,
                                    schedule_one_step_late, schedule_without_warmup])
def test_training_loop_fails_wrong_answers(answer):
    message = assert_fails(checks.check_training_loop, answer)
    assert message.startswith("❌") and "hint:" in message and "on input:" in message, message


def test_training_loop_unsolved_says_not_solved():
    assert_not_solved(checks.check_training_loop)


def adamw_nudged(rel, abs_):  # AdamW right, its parameters shown off by a fixed amount after every step
    class Nudged(WrittenAdamW):
        @torch.no_grad()
        def step(self):
            params = [p for group in self.param_groups for p in group["params"]]
            for p in params:  # the right values, kept aside, so that the nudges do not add up over the steps
                p.copy_(self.state[p].get("right", p))
            super().step()
            for p in params:
                self.state[p]["right"] = p.clone()
                p.copy_(nudge(p, rel, abs_))
    return Nudged


def loop_losses_nudged(rel, abs_):  # the weights right, the losses returned off
    def loop(*args):
        return nudge(written_loop(*args), rel, abs_)
    return loop


def loop_weights_nudged(rel, abs_):  # the losses right, the final weights off
    def loop(model, *args):
        losses = written_loop(model, *args)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(nudge(p, rel, abs_))
        return losses
    return loop



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
    (checks.check_gradient_accumulation, loss_nudged, 1e-6, 0.0),  # abs_tol=1e-9: no loss comes near 0
    (checks.check_gradient_accumulation, gradients_nudged, 1e-5, 1e-8),
    (checks.check_adamw, adamw_nudged, 1e-9, 0.0),  # atol=1e-12: no parameter comes near 0
    (checks.check_training_loop, loop_losses_nudged, 1e-5, 0.0),  # no loss comes near 0
    (checks.check_training_loop, loop_weights_nudged, 1e-4, 5e-5),
]
test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = (
    tolerance_tests(TOLERANCES))
