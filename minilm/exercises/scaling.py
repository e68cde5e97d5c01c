"""Checkers for the exercises of notebook 05 (scaling up): MFU, the part of the data each process
trains on, dynamic loss scaling, and data parallelism's averaged gradients.

Each checker draws fresh inputs (from a new seed every run, named in a failure), runs the learner's
function and the package's own (or PyTorch's), and passes or fails on the first input where they
differ. The inputs are made to land where a first attempt usually goes wrong: long contexts (where
attention's FLOPs matter), jobs on many GPUs, streams that do not divide evenly between processes (or
have fewer tokens than processes), growth intervals of 1, a scale that would overflow float32, and
world sizes of 1 and 3.
"""

from __future__ import annotations

import copy
import math
import numbers
import random

import torch

from minilm.exercises import ExerciseFailed, _short, call_learner, checker, passed
from minilm.model.accounting import matmul_parameters, mfu
from minilm.model.config import SIZES, GPTConfig
from minilm.model.gpt import GPT
from minilm.tokenizer.shards import TokenShards

# --- Exercise 1: MFU ----------------------------------------------------------------------------------


def _random_config(rng: random.Random, small: bool = False) -> GPTConfig:
    """A GPT config of any kind: GELU or SwiGLU, full or grouped-query attention, tied or not."""
    n_head = rng.choice([1, 2, 4] if small else [1, 2, 4, 8, 12, 16])
    n_kv_head = rng.choice([d for d in range(1, n_head + 1) if n_head % d == 0])
    head_dim = rng.choice([4, 8] if small else [8, 16, 32, 64, 128])
    return GPTConfig(
        vocab_size=rng.choice([32, 48, 61] if small else [512, 4096, 8192, 50257, 128_256]),
        context=rng.choice([8, 12, 16] if small else [64, 256, 1024, 2048, 8192]),
        n_layer=rng.randint(1, 2) if small else rng.randint(1, 48),
        n_head=n_head,
        n_kv_head=n_kv_head if rng.random() < 0.5 else None,
        n_embd=n_head * head_dim,
        position=rng.choice(["learned", "rope"]),
        norm=rng.choice(["layernorm", "rmsnorm"]),
        mlp=rng.choice(["gelu", "swiglu"]),
        bias=rng.random() < 0.5,
        tie_weights=rng.random() < 0.7,
    )


def _reference_mfu(config: GPTConfig, context: int, tokens_per_second: float, peak_flops: float, n_devices: int) -> float:
    return mfu(config, tokens_per_second, peak_flops * n_devices, context)


@checker
def check_mfu(model_flops_utilization, rng: random.Random) -> None:
    """Exercise 1: MFU from tokens/s, the model's shape, the context and the peak FLOP/s of each device."""
    title = "Exercise 1 (MFU)"
    gpt2 = GPTConfig(**SIZES["gpt2"], vocab_size=50257, context=1024)
    cases = [(gpt2, 1024, 1.0e6, 989e12, 8), (gpt2, 1024, 150_000.0, 989e12, 1), (gpt2, 64, 2_000.0, 1e11, 1)]
    for _ in range(200):
        config = _random_config(rng)
        context = rng.choice([1, config.context, rng.randint(1, config.context)])
        cases.append((config, context, 10 ** rng.uniform(1, 7), 10 ** rng.uniform(10, 15), rng.choice([1, 1, 2, 8, 64, 1024])))

    for case in cases:
        got = call_learner(title, model_flops_utilization, *case)
        want = _reference_mfu(*case)
        config, context, tokens_per_second, peak, n_devices = case
        shown = (f"config={_short(config, 400)}, context={context}, tokens_per_second={tokens_per_second:,.1f}, "
                 f"peak_flops={peak:.3g}, n_devices={n_devices}")
        if not isinstance(got, numbers.Real) or not math.isclose(float(got), want, rel_tol=1e-9):
            raise ExerciseFailed(
                f"❌ {title}: wrong answer\n   on input: {shown}\n   expected: {want!r}\n   got:      {_short(got)}\n"
                f"   hint: training FLOPs per token = 6 x matmul_parameters(config) + 12 x n_layer x context x n_embd "
                f"(3 x the forward pass: the backward costs twice the forward; attention's dot products are not "
                f"weights); MFU = FLOPs per token x tokens/s (of the whole job) / (peak_flops x n_devices)"
            )
    passed(title, f"{len(cases)} cases")


# --- Exercise 2: each process's part of the stream ----------------------------------------------------


class _Stream:
    """Something of a given length, to call the package's `TokenShards.part` without token files."""

    def __init__(self, length: int):
        self.length = length

    def __len__(self) -> int:
        return self.length


def _reference_part(n_tokens: int, rank: int, world_size: int) -> tuple[int, int]:
    return TokenShards.part(_Stream(n_tokens), rank, world_size)


@checker
def check_rank_part(rank_part, rng: random.Random) -> None:
    """Exercise 2: the contiguous, nearly equal part [start, stop) of a stream that process `rank` trains on."""
    title = "Exercise 2 (each process's part of the data)"
    streams = [(10, 3), (7, 4), (2, 4), (0, 2), (1, 1), (100, 1), (2_732_843, 2), (2_732_843, 8), (1000, 7)]
    streams += [(rng.choice([rng.randint(0, 50), rng.randint(50, 10**6), rng.randint(10**8, 10**10)]),
                 rng.choice([1, 2, 3, 4, 6, 7, 8, 16, 64, 1000])) for _ in range(150)]
    count = 0
    for n_tokens, world_size in streams:
        for rank in range(world_size):
            got = call_learner(title, rank_part, n_tokens, rank, world_size)
            want = _reference_part(n_tokens, rank, world_size)
            try:
                got = tuple(int(x) for x in got)
            except (TypeError, ValueError):
                raise ExerciseFailed(f"❌ {title}: return a pair (start, stop) of ints, got {_short(got)}") from None
            if got != want:
                raise ExerciseFailed(
                    f"❌ {title}: wrong answer\n   on input: n_tokens={n_tokens:,}, rank={rank}, world_size={world_size}\n"
                    f"   expected: {want}\n   got:      {got}\n"
                    f"   hint: the parts must cover every token, never overlap, and differ in size by at most one token: "
                    f"rank r starts at r * n_tokens // world_size and stops where rank r + 1 starts"
                )
            count += 1
    passed(title, f"{count} cases, {len(streams)} streams")


# --- Exercise 3: dynamic loss scaling -----------------------------------------------------------------


def _reference_update_scale(scale: float, good_steps: int, found_inf: bool, growth_factor: float,
                            backoff_factor: float, growth_interval: int) -> tuple[float, int]:
    """PyTorch's own rule: the kernel `torch.amp.GradScaler.update` calls (on float32 tensors, as it keeps them)."""
    scale_tensor = torch.tensor([scale], dtype=torch.float32)
    tracker = torch.tensor([good_steps], dtype=torch.int32)
    torch._amp_update_scale_(scale_tensor, tracker, torch.tensor([float(found_inf)]), growth_factor, backoff_factor,
                             growth_interval)
    return float(scale_tensor.item()), int(tracker.item())


@checker
def check_update_scale(update_scale, rng: random.Random) -> None:
    """Exercise 3: GradScaler's update: back off on an overflow, grow after `growth_interval` good steps in a row."""
    title = "Exercise 3 (dynamic loss scaling)"
    float32_max = torch.finfo(torch.float32).max
    runs = [(2.0**16, 2.0, 0.5, 2000, [False] * 5 + [True] + [False] * 3),
            (2.0**16, 2.0, 0.5, 1, [False, False, True, False, True, True, False]),
            (2.0**16, 2.0, 0.5, 3, [False] * 7 + [True, True] + [False] * 4),
            (2.0**126, 2.0, 0.5, 1, [False] * 4),  # 2**128 would be inf in float32: the scale must stay
            (float32_max / 3, 4.0, 0.5, 2, [False] * 5 + [True] + [False] * 2)]
    for _ in range(60):
        flags = [rng.random() < rng.choice([0.05, 0.2, 0.5]) for _ in range(rng.randint(1, 40))]
        runs.append((rng.choice([2.0**16, 2.0**24, 1.0, 2.0 ** rng.randint(-10, 30), rng.uniform(1, 1e5)]),
                     rng.choice([2.0, 2.0, 1.5, 4.0, 1.001]), rng.choice([0.5, 0.5, 0.25, 0.9]),
                     rng.choice([1, 2, 3, 5, 10, 2000]), flags))

    steps = 0
    for init_scale, growth, backoff, interval, flags in runs:
        scale, good = float(init_scale), 0
        for index, found_inf in enumerate(flags):
            arguments = (scale, good, found_inf, growth, backoff, interval)
            got = call_learner(title, update_scale, *arguments)
            want = _reference_update_scale(*arguments)
            shown = (f"scale={scale!r}, good_steps={good}, found_inf={found_inf}, growth_factor={growth}, "
                     f"backoff_factor={backoff}, growth_interval={interval} (step {index + 1} of a run)")
            ok = (isinstance(got, (tuple, list)) and len(got) == 2 and isinstance(got[0], numbers.Real)
                  and isinstance(got[1], numbers.Integral) and not isinstance(got[1], bool)
                  and math.isclose(float(got[0]), want[0], rel_tol=1e-6) and int(got[1]) == want[1])
            if not ok:
                raise ExerciseFailed(
                    f"❌ {title}: wrong answer\n   on input: {shown}\n   expected: {want}\n   got:      {_short(got)}\n"
                    f"   hint: on an overflow multiply the scale by backoff_factor and reset the count of good steps to 0 "
                    f"(the step is skipped); otherwise count one more good step, and when the count reaches "
                    f"growth_interval multiply the scale by growth_factor (unless that would exceed float32's "
                    f"largest value, {float32_max:.4g}: then keep it) and reset the count; return (scale, good_steps)"
                )
            scale, good = want  # continue from the right state, so that each step is judged on its own
            steps += 1
    passed(title, f"{steps} updates in {len(runs)} runs")


# --- Exercise 4: data parallelism by hand -------------------------------------------------------------


def _big_batch_gradients(model: GPT, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    model = copy.deepcopy(model)
    model.zero_grad(set_to_none=True)
    _, loss = model(inputs, targets)
    loss.backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


@checker
def check_data_parallel_gradients(data_parallel_gradients, rng: random.Random) -> None:
    """Exercise 4: the average of the gradients of `world_size` simulated processes equals the big batch's gradient."""
    title = "Exercise 4 (data parallelism by hand)"
    hint = ("give rank r the rows r*b .. (r+1)*b - 1 (b = batch / world_size), compute on a copy of the model the "
            "gradient of the mean loss of its rows, then all-reduce: add the ranks' gradients and divide by world_size; "
            "return {name: gradient} for every name of model.named_parameters()")
    cases = 0
    for world_size in [1, 2, 3, 4] + [rng.choice([2, 3, 4]) for _ in range(4)]:
        config = _random_config(rng, small=True)
        model = GPT(config, seed=rng.randrange(2**31)).train()
        generator = torch.Generator().manual_seed(rng.randrange(2**62))
        batch = world_size * rng.randint(1, 3)
        length = rng.randint(2, config.context)
        inputs = torch.randint(0, config.vocab_size, (batch, length), generator=generator)
        targets = torch.randint(0, config.vocab_size, (batch, length), generator=generator)
        shown = f"a GPT of {sum(p.numel() for p in model.parameters()):,} parameters, inputs {tuple(inputs.shape)}, world_size={world_size}"
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        learner_model = copy.deepcopy(model)
        got = call_learner(title, data_parallel_gradients, learner_model, inputs.clone(), targets.clone(), world_size)
        want = _big_batch_gradients(model, inputs, targets)
        if not isinstance(got, dict) or set(got) != set(want):
            keys = sorted(got)[:4] if isinstance(got, dict) else None
            raise ExerciseFailed(f"❌ {title}: return a dict with one gradient per parameter name "
                                 f"({len(want)} names, such as {sorted(want)[:2]}), got {_short(got) if keys is None else keys}\n"
                                 f"   on input: {shown}\n   hint: {hint}")
        if any(not torch.equal(p.detach(), before[name]) for name, p in learner_model.named_parameters()):
            raise ExerciseFailed(f"❌ {title}: your function changed the model's weights; only compute gradients (no optimizer step)\n"
                                 f"   on input: {shown}")
        for name, gradient in want.items():
            value = got[name]
            if not isinstance(value, torch.Tensor) or value.shape != gradient.shape:
                raise ExerciseFailed(f"❌ {title}: the gradient of {name} must be a tensor of shape {tuple(gradient.shape)}, "
                                     f"got {_short(value if not isinstance(value, torch.Tensor) else tuple(value.shape))}\n"
                                     f"   on input: {shown}\n   hint: {hint}")
            if not torch.allclose(value.detach().double(), gradient.double(), rtol=1e-4, atol=1e-6):
                ratio = (value.detach().double().norm() / gradient.double().norm().clamp_min(1e-30)).item()
                raise ExerciseFailed(
                    f"❌ {title}: the gradient of {name} differs from the big batch's (largest difference "
                    f"{(value.detach().double() - gradient.double()).abs().max().item():.3g}; its norm is {ratio:.3g} x "
                    f"the expected one)\n   on input: {shown}\n   hint: {hint}"
                )
        cases += 1
    passed(title, f"{cases} models, world sizes 1 to 4")
