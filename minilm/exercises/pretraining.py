"""Checkers for the exercises of notebook 04 (pretraining): the cross-entropy of a batch, BERT's
masking rule, gradient accumulation, AdamW as a `torch.optim.Optimizer`, and the training loop.

Each checker draws fresh inputs (from a new seed every run, named in a failure), runs the learner's
code and the reference, and passes or fails on the first input where they differ. The inputs are made
to land where a first attempt usually goes wrong: ignored targets (-100) and logits large enough to
overflow a naive softmax; a masking rule that is checked by its proportions over half a million tokens,
since its output is random; micro-batches of unequal sizes that count unequal numbers of targets; an
optimizer whose learning rate changes before every step, with a group that has no weight decay and a
parameter that gets no gradient at one step; a loop whose first run clips every step's gradient.
AdamW is checked against `torch.optim.AdamW`, the loop against the package's `train_step`.
"""

from __future__ import annotations

import copy
import math
import numbers
import random

import torch
import torch.nn.functional as F

from minilm.exercises import _short, call_learner, checker, failure, passed, torch_generator
from minilm.hardware import grad_scaler
from minilm.model.config import GPTConfig
from minilm.model.gpt import GPT, IGNORE_INDEX, make_optimizer
from minilm.train.loop import train_step
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


# --- Exercise 2: BERT's masking rule ----------------------------------------------------------------------


def _share(part: torch.Tensor, whole: torch.Tensor) -> float:
    return float(part.sum()) / max(1, int(whole.sum()))


@checker
def check_masking(mask, rng: random.Random) -> None:
    """Exercise 2: `rate` of the positions chosen, 80/10/10 among them, targets -100 elsewhere; checked statistically."""
    title = "Exercise 2 (BERT's masking rule)"
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


# --- Exercise 3: gradient accumulation --------------------------------------------------------------------


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
    """Exercise 3: k micro-batches whose accumulated gradient equals the whole batch's, weighted by counted targets."""
    title = "Exercise 3 (gradient accumulation)"
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


# --- Exercise 4: AdamW as a torch.optim.Optimizer --------------------------------------------------------


def _adamw_setup(rng: random.Random):
    """Random float64 parameters in two groups (2-D with weight decay, 1-D without) and random hyperparameters."""
    generator = torch_generator(rng)
    shapes = [(rng.randint(2, 6), rng.randint(2, 6)) for _ in range(rng.randint(1, 3))] + \
             [(rng.randint(1, 7),) for _ in range(rng.randint(1, 2))]
    values = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in shapes]
    hyper = dict(lr=10 ** rng.uniform(-3, -1.3), betas=(rng.uniform(0.8, 0.95), rng.uniform(0.95, 0.999)),
                 eps=10 ** rng.uniform(-8, -3), weight_decay=rng.uniform(0.05, 0.3))
    return generator, values, hyper


def _adamw_groups(values: list[torch.Tensor], weight_decay: float) -> list[dict]:
    params = [torch.nn.Parameter(v.clone()) for v in values]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


@checker
def check_adamw(AdamW, rng: random.Random) -> None:
    """Exercise 4: an Optimizer subclass that moves parameters as torch.optim.AdamW does, step after step."""
    title = "Exercise 4 (AdamW)"
    hint = ("per parameter keep m and v (zeros at first) and the step count t; each step: p *= 1 - lr * weight_decay "
            "(the group's), m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g², m̂ = m / (1 - b1^t), v̂ = v / (1 - b2^t), "
            "p -= lr * m̂ / (sqrt(v̂) + eps); read lr, betas, eps, weight_decay from each group at every step; skip "
            "parameters whose grad is None; no gradient tracking (torch.no_grad)")
    count = 0
    for case in range(3):
        generator, values, hyper = _adamw_setup(rng)
        steps = rng.randint(6, 10)
        theirs, ours = _adamw_groups(values, hyper["weight_decay"]), _adamw_groups(values, hyper["weight_decay"])
        shown = (f"parameters of shapes {[tuple(v.shape) for v in values]} (float64), groups: 2-D with weight_decay="
                 f"{hyper['weight_decay']:.3g}, 1-D with 0; lr={hyper['lr']:.3g}, betas=({hyper['betas'][0]:.3f}, "
                 f"{hyper['betas'][1]:.4f}), eps={hyper['eps']:.2g}; {steps} steps, the lr changed before each")
        optimizer = call_learner(title, AdamW, theirs, hyper["lr"], hyper["betas"], hyper["eps"], hyper["weight_decay"])
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise failure(title, f"AdamW(...) must make a torch.optim.Optimizer, got {_short(optimizer)}", shown, hint)
        reference = torch.optim.AdamW(ours, lr=hyper["lr"], betas=hyper["betas"], eps=hyper["eps"],
                                      weight_decay=hyper["weight_decay"], foreach=False)
        mine = [p for group in theirs for p in group["params"]]
        want = [p for group in ours for p in group["params"]]
        for step in range(steps):
            lr = hyper["lr"] * rng.uniform(0.3, 1.0)  # as a schedule does: a new rate in every group before the step
            skipped = rng.randrange(len(mine)) if step == steps // 2 else None  # a parameter with no gradient
            for index, (p, q) in enumerate(zip(mine, want)):
                grad = None if index == skipped else torch.randn(p.shape, generator=generator, dtype=torch.float64) * \
                    10 ** rng.uniform(-4, 1)
                p.grad, q.grad = (None, None) if grad is None else (grad.clone(), grad.clone())
            for group in (*optimizer.param_groups, *reference.param_groups):
                group["lr"] = lr
            call_learner(title, optimizer.step)
            reference.step()
            for index, (p, q) in enumerate(zip(mine, want)):
                if not torch.allclose(p.detach(), q.detach(), rtol=1e-9, atol=1e-12):
                    kind = "2-D, weight decay" if p.dim() >= 2 else "1-D, no weight decay"
                    gap = (p.detach() - q.detach()).abs().max().item()
                    none = " (its grad was None at this step)" if index == skipped else ""
                    raise failure(title, f"after step {step + 1}, parameter {index} ({kind}{none}) differs from "
                                  f"torch.optim.AdamW's by up to {gap:.3g} (lr {lr:.3g} at this step)", shown, hint)
        count += 1
    passed(title, f"{count} runs of 6 to 10 steps, equal to torch.optim.AdamW")


# --- Exercise 5: the training loop ------------------------------------------------------------------------


def _loop_case(rng: random.Random, index: int):
    """A tiny model, its steps of micro-batches (targets counted unequally) and the loop's settings."""
    generator = torch_generator(rng)
    causal = index != 1
    model = _tiny_model(rng, causal)
    vocab = model.config.vocab_size
    n_steps, k = rng.randint(5, 8), rng.randint(1, 3) if index else 2
    steps = []
    for _ in range(n_steps):
        batches = []
        for _ in range(k):
            rows, length = rng.randint(1, 4), rng.randint(4, 12)
            inputs = torch.randint(vocab, (rows, length), generator=generator)
            targets = torch.randint(vocab, (rows, length), generator=generator)
            drop = torch.rand(rows, length, generator=generator) < (0.85 if not causal else rng.choice([0.0, 0.5]))
            drop.view(-1)[rng.randrange(rows * length)] = False  # every micro-batch counts a target
            targets[drop] = IGNORE_INDEX
            batches.append((inputs, targets))
        steps.append(batches)
    lr = 10 ** rng.uniform(-2.5, -1.5)
    clip = [0.05, rng.uniform(0.5, 2.0), 1e3][index % 3]  # the first run clips every step, the last none
    return model, steps, dict(lr=lr, warmup_steps=rng.randint(1, n_steps // 2), min_lr=lr / 10, grad_clip=clip)


def _package_loop(model: GPT, steps, lr: float, warmup_steps: int, min_lr: float, grad_clip: float) -> list[float]:
    """What `minilm.train.train` does per step, on given micro-batches: `train_step` at the schedule's rate."""
    optimizer = make_optimizer(model, lr, weight_decay=0.1)
    scaler, losses = grad_scaler("cpu", "fp32"), []
    for step, batches in enumerate(steps):
        rate = learning_rate(step, lr, warmup_steps, len(steps), min_lr)
        loss, _ = train_step(model, optimizer, scaler, batches, rate, grad_clip, "cpu")
        losses.append(loss.item())
    return losses


@checker
def check_training_loop(train_loop, rng: random.Random) -> None:
    """Exercise 5: the loop's losses and final weights equal those of the package's `train_step` on the same batches."""
    title = "Exercise 5 (the training loop)"
    hint = ("for each step: set every group's lr to learning_rate(step, lr, warmup_steps, len(steps), min_lr); weight "
            "each micro-batch's loss by its counted targets / the step's, backward() each; then clip the norm of all "
            "the gradients together to grad_clip (torch.nn.utils.clip_grad_norm_), optimizer.step(), "
            "optimizer.zero_grad(); the step's loss is the sum of the weighted losses")
    count = 0
    for index in range(3):
        model, steps, s = _loop_case(rng, index)
        reference = copy.deepcopy(model)
        want = _package_loop(reference, steps, s["lr"], s["warmup_steps"], s["min_lr"], s["grad_clip"])
        kind = "decoder" if model.config.causal else "encoder (masked targets)"
        shown = (f"{kind}, {len(steps)} steps of {len(steps[0])} micro-batches counting "
                 f"{[int((t != IGNORE_INDEX).sum()) for _, t in steps[0]]} targets at step 0, lr={s['lr']:.3g}, "
                 f"warmup_steps={s['warmup_steps']}, min_lr={s['min_lr']:.3g}, grad_clip={s['grad_clip']:.3g}")
        optimizer = make_optimizer(model, s["lr"], weight_decay=0.1)
        copied = [[(x.clone(), y.clone()) for x, y in batches] for batches in steps]
        got = call_learner(title, train_loop, model, optimizer, copied, s["lr"], s["warmup_steps"], s["min_lr"],
                           s["grad_clip"])
        if not isinstance(got, (list, tuple)) or len(got) != len(steps):
            raise failure(title, f"return a list of {len(steps)} losses (one float per step), got {_short(got)}", shown, hint)
        for step, (loss, expected) in enumerate(zip(got, want)):
            loss = float(loss)
            if not math.isclose(loss, expected, rel_tol=1e-5, abs_tol=0.0):
                raise failure(title, f"the loss of step {step} is {loss:.8g}, expected {expected:.8g} (losses expected: "
                              f"{', '.join(f'{w:.5f}' for w in want)}; got: {', '.join(f'{float(g):.5f}' for g in got)})",
                              shown, hint)
        mine, theirs = dict(model.named_parameters()), dict(reference.named_parameters())
        # A wrong last step moves weights by about its rate, min_lr >= 3e-4 here. Rounding moves them far less, but
        # not nothing: Adam divides each gradient by its own root mean square, so a weight whose gradients are near
        # zero magnifies a difference of summation order between two right loops (measured: 2.6e-7 at lr 0.0117,
        # seed 994055; 8.8e-6 at lr 0.0231 with every step clipped, seed 822683)
        for name, param in theirs.items():
            if not torch.allclose(mine[name].detach(), param.detach(), rtol=1e-4, atol=5e-5):
                gap = (mine[name].detach() - param.detach()).abs().max().item()
                raise failure(title, f"the losses match but the final {name} differs from the package's by up to "
                              f"{gap:.3g}: check what happens after the last backward of each step", shown, hint)
        if any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()):
            raise failure(title, "gradients are left in .grad after the last step: zero them after every optimizer step",
                          shown, hint)
        count += 1
    passed(title, f"{count} runs, the same losses and weights as minilm's train_step")
