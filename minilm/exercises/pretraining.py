"""Checkers for the exercises of notebook 04 (pretraining): the cross-entropy of a batch, the
learning-rate schedule, BERT's masking rule, and gradient accumulation.

Each checker draws fresh inputs (from a new seed every run, named in a failure), runs the learner's
function and the package's own, and passes or fails on the first input where they differ. The inputs
are made to land where a first attempt usually goes wrong: ignored targets (-100) and logits large
enough to overflow a naive softmax; schedules without warmup or run past their end; a masking rule that
is checked by its proportions over half a million tokens, since its output is random; micro-batches of
unequal sizes that count unequal numbers of targets.
"""

from __future__ import annotations

import math
import numbers
import random

import torch
import torch.nn.functional as F

from minilm.exercises import _short, call_learner, checker, failure, passed, torch_generator
from minilm.model.config import GPTConfig
from minilm.model.gpt import GPT, IGNORE_INDEX
from minilm.train.schedule import learning_rate


# --- Exercise 1: the cross-entropy of a batch -----------------------------------------------------------


def _cross_entropy_cases(rng: random.Random):
    """(logits, targets, what) triples: plain, with ignored targets, with huge logits, one position."""
    generator = torch_generator(rng)
    for _ in range(12):
        batch, length, vocab = rng.randint(1, 4), rng.randint(1, 9), rng.choice([2, 5, 50, 300])
        scale = rng.choice([1.0, 3.0, 100.0, 1000.0])  # exp(100) overflows float32: a naive softmax gives inf/nan
        logits = torch.randn(batch, length, vocab, generator=generator) * scale
        targets = torch.randint(vocab, (batch, length), generator=generator)
        ignored = torch.rand(batch, length, generator=generator) < rng.choice([0.0, 0.3, 0.8])
        ignored.view(-1)[rng.randrange(batch * length)] = False  # at least one target counts
        targets[ignored] = IGNORE_INDEX
        what = f"logits {tuple(logits.shape)} × {scale:g}, {int(ignored.sum())} of {ignored.numel()} targets ignored (-100)"
        yield logits, targets, what


@checker
def check_cross_entropy(cross_entropy, rng: random.Random) -> None:
    """Exercise 1: the mean cross-entropy over the counted targets, stable for large logits."""
    title = "Exercise 1 (the cross-entropy of a batch)"
    hint = ("log p = logit - logsumexp(logits); compute logsumexp as max + log(sum(exp(logits - max))) so exp() "
            "cannot overflow; take minus the mean over the positions whose target is not -100 only")
    count = 0
    for logits, targets, what in _cross_entropy_cases(rng):
        got = call_learner(title, cross_entropy, logits.clone(), targets.clone())
        want = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise failure(title, f"return a tensor holding one number, got {_short(got)}", what, hint)
        value = float(got)
        if not math.isfinite(value):
            raise failure(title, f"got {value}, expected {float(want):.6g}: something overflowed or divided by zero", what, hint)
        if not math.isclose(value, float(want), rel_tol=1e-4, abs_tol=1e-4):
            raise failure(title, f"expected {float(want):.6g}, got {value:.6g}", what, hint)
        count += 1
    passed(title, f"{count} batches")


# --- Exercise 2: the learning-rate schedule ---------------------------------------------------------------


@checker
def check_learning_rate(lr_at, rng: random.Random) -> None:
    """Exercise 2: warmup, cosine, floor: equal to `minilm.train.schedule.learning_rate` at every step."""
    title = "Exercise 2 (the learning-rate schedule)"
    schedules = [(6e-4, 10, 100, 6e-5), (1e-3, 0, 50, 1e-4), (3e-3, 1, 20, 0.0), (1e-2, 30, 30, 1e-3)]
    for _ in range(8):
        total = rng.randint(1, 400)
        max_lr = 10 ** rng.uniform(-4, -2)
        schedules.append((max_lr, rng.randint(0, total), total, max_lr * rng.choice([0.0, 0.1, 0.5, 1.0])))
    hint = ("warmup: max_lr * (step + 1) / warmup_steps while step < warmup_steps; then progress = (step - warmup) / "
            "(total - warmup) from 0 to 1, and lr = min_lr + 0.5 * (1 + cos(pi * progress)) * (max_lr - min_lr); "
            "min_lr from total_steps on")
    count = 0
    for max_lr, warmup, total, min_lr in schedules:
        for step in range(total + 5):  # a few steps past the end too
            got = call_learner(title, lr_at, step, max_lr, warmup, total, min_lr)
            want = learning_rate(step, max_lr, warmup, total, min_lr)
            shown = f"step={step}, max_lr={max_lr:.3g}, warmup_steps={warmup}, total_steps={total}, min_lr={min_lr:.3g}"
            if not isinstance(got, numbers.Real) or not math.isclose(float(got), want, rel_tol=1e-6, abs_tol=1e-12):
                raise failure(title, f"expected {want:.6g}, got {_short(got)}", shown, hint)
            count += 1
    passed(title, f"{len(schedules)} schedules, {count} steps")


# --- Exercise 3: BERT's masking rule ----------------------------------------------------------------------


def _share(part: torch.Tensor, whole: torch.Tensor) -> float:
    return float(part.sum()) / max(1, int(whole.sum()))


@checker
def check_masking(mask, rng: random.Random) -> None:
    """Exercise 3: `rate` of the positions chosen, 80/10/10 among them, targets -100 elsewhere; checked statistically."""
    title = "Exercise 3 (BERT's masking rule)"
    hint = ("choose each position with probability rate (torch.rand(..., generator=generator) < rate); targets = ids "
            "where chosen, -100 elsewhere; among the chosen, 80% -> mask_id, 10% -> torch.randint(vocab_size, ...), "
            "10% unchanged; draw everything from `generator`")
    count = 0
    for vocab_size, rate in ((1000, 0.15), (rng.choice([3000, 5000]), round(rng.uniform(0.2, 0.4), 2))):
        mask_id = rng.randrange(vocab_size)
        generator = torch_generator(rng)
        ids = torch.randint(vocab_size, (250, 1000), generator=generator)
        ids[ids == mask_id] = (mask_id + 1) % vocab_size  # the text never holds the mask token itself
        original = ids.clone()
        shown = f"ids {tuple(ids.shape)} int64, mask_id={mask_id}, vocab_size={vocab_size}, rate={rate}"
        seed = rng.randrange(2**62)
        got = call_learner(title, mask, ids, mask_id, vocab_size, torch.Generator().manual_seed(seed), rate)
        if not torch.equal(ids, original):
            raise failure(title, "your function changed `ids`; work on a copy (ids.clone())", shown, hint)
        if not (isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(t, torch.Tensor) for t in got)):
            raise failure(title, f"return a pair of tensors (inputs, targets), got {_short(got)}", shown, hint)
        inputs, targets = got
        for name, tensor in (("inputs", inputs), ("targets", targets)):
            if tuple(tensor.shape) != tuple(ids.shape) or tensor.dtype.is_floating_point:
                raise failure(title, f"{name} must be integer ids of shape {tuple(ids.shape)}, got "
                            f"{tuple(tensor.shape)} {tensor.dtype}", shown, hint)
        chosen = targets != IGNORE_INDEX
        problems = []
        if not torch.equal(targets[chosen], ids[chosen]):
            problems.append("at the chosen positions targets must hold the original ids")
        if not torch.equal(inputs[~chosen], ids[~chosen]):
            problems.append("inputs must keep the original id wherever targets is -100 (positions not chosen)")
        if problems:
            raise failure(title, "; ".join(problems), shown, hint)
        # Proportions: n = 250,000 positions, so a share's standard deviation is under 0.001 (0.003 among the chosen).
        masked = chosen & (inputs == mask_id)
        kept = chosen & (inputs == ids)
        swapped = chosen & ~masked & ~kept
        shares = {
            "chosen positions": (_share(chosen, torch.ones_like(chosen)), rate, 0.01),
            "mask_id among the chosen": (_share(masked, chosen), 0.8, 0.02),
            "random tokens among the chosen": (_share(swapped, chosen), 0.1, 0.015),
            "unchanged among the chosen": (_share(kept, chosen), 0.1, 0.015),
        }
        for what, (share, expected, tolerance) in shares.items():
            if abs(share - expected) > tolerance:
                raise failure(title, f"{what}: {share:.3f}, expected {expected:.3f} ± {tolerance}", shown, hint)
        # Random, not a pattern: every column and row chosen at about the same rate; replacements spread over the vocabulary.
        # (Independent choices spread the columns' shares with a standard deviation of sqrt(rate (1 - rate) / rows).)
        def spread(shares: torch.Tensor, n: int) -> float:
            return shares.std().item() / math.sqrt(rate * (1 - rate) / n)

        if spread(chosen.float().mean(dim=0), ids.size(0)) > 1.5 or spread(chosen.float().mean(dim=1), ids.size(1)) > 1.5:
            raise failure(title, "some positions are chosen far more often than others: choose each one independently at random",
                        shown, hint)
        distinct = inputs[swapped].unique().numel()
        if distinct < min(vocab_size, int(swapped.sum())) // 4:
            raise failure(title, f"the random replacements use only {distinct} distinct ids: draw them uniformly from "
                        f"0..vocab_size-1", shown, hint)
        again = call_learner(title, mask, ids, mask_id, vocab_size, torch.Generator().manual_seed(seed), rate)
        other = call_learner(title, mask, ids, mask_id, vocab_size, torch.Generator().manual_seed(seed + 1), rate)
        if not (torch.equal(again[0], inputs) and torch.equal(again[1], targets)):
            raise failure(title, "the same generator seed gave a different result: draw every random number from `generator`",
                        shown, hint)
        if torch.equal(other[1], targets):
            raise failure(title, "another generator seed chose the same positions: draw them from `generator`", shown, hint)
        count += 1
    passed(title, f"{count} batches of 250,000 tokens")


# --- Exercise 4: gradient accumulation --------------------------------------------------------------------


def _tiny_model(rng: random.Random, causal: bool) -> GPT:
    config = GPTConfig(vocab_size=rng.choice([31, 64]), context=16, n_layer=1, n_head=2, n_embd=16, causal=causal)
    return GPT(config, seed=rng.randrange(2**31)).double()  # float64 weights (the loss itself is computed in float32)


def _accumulation_cases(rng: random.Random):
    generator = torch_generator(rng)
    for index in range(8):
        causal = index % 2 == 0
        model = _tiny_model(rng, causal)
        vocab = model.config.vocab_size
        batch, length = rng.randint(3, 11), rng.randint(4, 16)
        k = rng.randint(2, batch) if index else batch  # one micro-batch per window once
        inputs = torch.randint(vocab, (batch, length), generator=generator)
        if causal:
            targets = torch.randint(vocab, (batch, length), generator=generator)
            if index % 4 == 2:  # padding at the end of some windows: ignored targets in a decoder too
                for row in range(batch):
                    targets[row, rng.randint(1, length):] = IGNORE_INDEX
        else:  # masked: each window counts a different number of targets
            targets = torch.full((batch, length), IGNORE_INDEX)
            for row in range(batch):
                for position in rng.sample(range(length), rng.randint(1, length)):
                    targets[row, position] = inputs[row, position]
        yield model, inputs, targets, k


@checker
def check_gradient_accumulation(accumulate, rng: random.Random) -> None:
    """Exercise 4: k micro-batches whose accumulated gradient equals the whole batch's, weighted by counted targets."""
    title = "Exercise 4 (gradient accumulation)"
    hint = ("each micro-batch's loss is a mean over its own counted targets; weight it by (its counted targets) / "
            "(the whole batch's counted targets) before backward(), so the weighted losses add up to the whole mean; "
            "do not zero the gradients between micro-batches")
    count = 0
    for model, inputs, targets, k in _accumulation_cases(rng):
        kind = "decoder" if model.config.causal else "encoder (masked targets)"
        sizes = [len(c) for c in inputs.chunk(k)]
        counted = [int((c != IGNORE_INDEX).sum()) for c in targets.chunk(k)]
        shown = f"{kind}, inputs {tuple(inputs.shape)}, k={k}: micro-batches of {sizes} windows counting {counted} targets"
        model.zero_grad(set_to_none=True)
        _, loss = model(inputs, targets)
        loss.backward()
        want = {name: p.grad.clone() for name, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
        got = call_learner(title, accumulate, model, inputs.clone(), targets.clone(), k)
        if not isinstance(got, numbers.Real) and not (isinstance(got, torch.Tensor) and got.numel() == 1):
            raise failure(title, f"return the whole batch's loss as a float, got {_short(got)}", shown, hint)
        if not math.isclose(float(got), loss.item(), rel_tol=1e-6, abs_tol=1e-9):
            raise failure(title, f"returned loss {float(got):.8g}, expected the whole batch's {loss.item():.8g}", shown, hint)
        for name, param in model.named_parameters():
            if param.grad is None:
                raise failure(title, f"{name}.grad is None: call backward() on each micro-batch's loss", shown, hint)
            if not torch.allclose(param.grad, want[name], rtol=1e-5, atol=1e-8):
                ratio = (param.grad.norm() / want[name].norm()).item() if want[name].norm() > 0 else float("nan")
                raise failure(title, f"{name}.grad differs from the whole batch's gradient (its norm is {ratio:.4g} times "
                            f"the expected one)", shown, hint)
        count += 1
    passed(title, f"{count} batches")
