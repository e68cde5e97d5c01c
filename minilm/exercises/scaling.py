"""Checkers for the exercises of notebook 05 (scaling up): dynamic loss scaling, data parallelism's
averaged gradients, and ZeRO-1's sharded optimizer in two real processes.

Each checker draws fresh inputs (from a new seed every run, named in a failure), runs the learner's
function and the package's own (or PyTorch's), and passes or fails on the first input where they
differ. The inputs are made to land where a first attempt usually goes wrong: growth intervals of 1, a
scale that would overflow float32, world sizes of 1 and 3, models of every kind (biases or not, tied
embeddings or not), and several optimizer steps, so that a parameter left stale on one rank shows.
"""

from __future__ import annotations

import copy
import functools
import math
import multiprocessing
import numbers
import random
import socket
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.nn.parallel import DistributedDataParallel

from minilm.exercises import ExerciseFailed, _short, call_learner, checker, passed
from minilm.model.config import GPTConfig
from minilm.model.gpt import GPT

# --- inputs ---------------------------------------------------------------------------------------------


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



# --- Exercise 1: dynamic loss scaling -----------------------------------------------------------------


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
    """Exercise 1: GradScaler's update: back off on an overflow, grow after `growth_interval` good steps in a row."""
    title = "Exercise 1 (dynamic loss scaling)"
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


# --- Exercise 2: data parallelism by hand -------------------------------------------------------------


def _big_batch_gradients(model: GPT, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    model = copy.deepcopy(model)
    model.zero_grad(set_to_none=True)
    _, loss = model(inputs, targets)
    loss.backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


@checker
def check_data_parallel_gradients(data_parallel_gradients, rng: random.Random) -> None:
    """Exercise 2: the average of the gradients of `world_size` simulated processes equals the big batch's gradient."""
    title = "Exercise 2 (data parallelism by hand)"
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


# --- Exercise 3: ZeRO-1 by hand, in two real processes ----------------------------------------------------
# The learner's function runs in two processes joined by a gloo process group, as under torchrun. They are started
# with fork: the function is defined in the notebook (in the kernel's __main__), which a process started with spawn
# (a fresh Python that imports its target by name) could not find, while a forked child is a copy of the kernel and
# has it. Fork exists on Linux and macOS, not on Windows.

ZERO_WORLD_SIZE = 2
ZERO_TIMEOUT = 60  # seconds for both processes to run every case (they take a few)
COLLECTIVE_TIMEOUT = 20  # seconds a rank waits in one collective before gloo gives up: one the other rank never calls
ZERO_HINT = ("On every rank: forward and backward on its own batches; average the gradients over the ranks "
             "(dist.all_reduce, then divide by world_size); step an optimizer made by adamw(...) over this rank's shard "
             "only (rank r owns, say, parameters r, r + world_size, ...); then send every parameter from the rank that "
             "owns it to all the others (dist.broadcast(p.data, src=owner)). Every rank calls every collective, in the "
             "same order")


WAITING = ("a rank waited in a collective that another rank never called (a broadcast or all_reduce made only by "
           "the rank that owns a parameter, say). ")


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """The bytes of the tensors an optimizer keeps per parameter (AdamW: its two moments), its step counts aside.

    PyTorch's ZeroRedundancyOptimizer keeps its shard's optimizer in `.optim` (its own `.state` stays empty)."""
    local = optimizer.optim if isinstance(optimizer, ZeroRedundancyOptimizer) else optimizer
    return sum(value.numel() * value.element_size() for state in local.state.values()
               for key, value in state.items() if torch.is_tensor(value) and key != "step")


def _learner_lines(error: BaseException) -> str:
    """Where the learner's code raised: the lines of its frames, the checker's own left out."""
    here, library = Path(__file__).resolve(), Path(torch.__file__).resolve().parent
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if Path(frame.filename).resolve() != here and not Path(frame.filename).resolve().is_relative_to(library)]
    return "".join(f"\n      line {frame.lineno}: {frame.line}" for frame in frames[-3:] if frame.line)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _zero1_rank(answer, rank: int, port: int, cases: list, folder: Path) -> None:
    """One process of the check: join the group, then on every case run the learner's ZeRO-1 and, from the same
    weights and batches, plain data parallelism (DDP, a whole AdamW on every rank); save what both left."""
    torch.set_num_threads(1)  # a forked child has no copy of the parent's OpenMP threads: one thread never needs them
    result: dict = {"cases": []}
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=ZERO_WORLD_SIZE,
                                timeout=timedelta(seconds=COLLECTIVE_TIMEOUT))
        for config, seed, batches, hyperparameters in cases:
            model = GPT(config, seed=seed).train()
            rows = len(batches[0][0]) // ZERO_WORLD_SIZE
            mine = [(x[rank * rows:(rank + 1) * rows], y[rank * rows:(rank + 1) * rows]) for x, y in batches]
            adamw = functools.partial(torch.optim.AdamW, **hyperparameters)
            learner_model = copy.deepcopy(model)
            try:
                optimizer = answer(learner_model, [(x.clone(), y.clone()) for x, y in mine], adamw, rank, ZERO_WORLD_SIZE)
            except NotImplementedError:
                result["error"] = "not solved"
                break
            except Exception as error:
                result["error"] = f"your function raised {type(error).__name__}: {error}{_learner_lines(error)}"
                break
            if not isinstance(optimizer, torch.optim.Optimizer):
                result["error"] = f"return this rank's optimizer (the one adamw(...) made), got {_short(optimizer)}"
                break
            reference = DistributedDataParallel(copy.deepcopy(model))
            whole = adamw(reference.parameters())
            for x, y in mine:
                whole.zero_grad(set_to_none=True)
                _, loss = reference(x, y)
                loss.backward()
                whole.step()
            result["cases"].append({
                "got": {name: p.detach().clone() for name, p in learner_model.named_parameters()},
                "want": {name: p.detach().clone() for name, p in reference.module.named_parameters()},
                "state_bytes": _state_bytes(optimizer), "whole_bytes": _state_bytes(whole)})
    except Exception as error:  # the group could not be joined, or another rank went away mid-collective
        result["error"] = f"{type(error).__name__}: {error}"
    finally:
        torch.save(result, folder / f"rank{rank}.tmp")
        (folder / f"rank{rank}.tmp").rename(folder / f"rank{rank}.pt")  # whole, or not there


def _run_ranks(answer, cases: list) -> tuple[list[dict | None], float]:
    """Run `_zero1_rank` in ZERO_WORLD_SIZE forked processes; their results (None for a rank that never finished)
    and the seconds they took. When one rank ends and another is still running 10 s later, that one waits in a
    collective the first never reached: it is stopped. A port another program took in the meantime is tried again."""
    for attempt in range(3):
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="minilm-zero1-") as folder:
            context = multiprocessing.get_context("fork")
            port = _free_port()
            processes = [context.Process(target=_zero1_rank, args=(answer, rank, port, cases, Path(folder)), daemon=True)
                         for rank in range(ZERO_WORLD_SIZE)]
            for process in processes:
                process.start()
            first_exit = None
            while any(p.is_alive() for p in processes) and time.monotonic() - started < ZERO_TIMEOUT:
                if first_exit is None and any(not p.is_alive() for p in processes):
                    first_exit = time.monotonic()
                if first_exit is not None and time.monotonic() - first_exit > 10:
                    break
                time.sleep(0.02)
            for process in processes:
                if process.is_alive():
                    process.kill()
                process.join()
            files = [Path(folder) / f"rank{rank}.pt" for rank in range(ZERO_WORLD_SIZE)]
            results = [torch.load(file, weights_only=True) if file.exists() else None for file in files]
        if not any(result and "address already in use" in result.get("error", "").lower() for result in results):
            break
    return results, time.monotonic() - started


def _not_solved() -> None:
    raise NotImplementedError("the learner's function raised this in the processes")


@checker
def check_zero1(zero1_train, rng: random.Random) -> None:
    """Exercise 3: ZeRO-1 in two gloo processes trains as plain data parallelism does, each rank holding the
    optimizer state of its shard only."""
    title = "Exercise 3 (ZeRO-1 by hand)"
    cases = []
    for _ in range(3):
        config = _random_config(rng, small=True)
        generator = torch.Generator().manual_seed(rng.randrange(2**62))
        steps, rows, length = rng.randint(3, 5), ZERO_WORLD_SIZE * rng.randint(1, 2), rng.randint(2, config.context)
        batches = [tuple(torch.randint(0, config.vocab_size, (rows, length), generator=generator) for _ in range(2))
                   for _ in range(steps)]
        hyperparameters = dict(lr=10 ** rng.uniform(-3, -2), betas=(0.9, 0.95), weight_decay=rng.choice([0.0, 0.1]))
        cases.append((config, rng.randrange(2**31), batches, hyperparameters))
    results, seconds = _run_ranks(zero1_train, cases)

    def shown(index: int) -> str:
        config, seed, batches, hyper = cases[index]
        parameters = list(GPT(config, seed=seed).parameters())
        size = sum(p.numel() for p in parameters)
        return (f"a GPT of {size:,} parameters ({len(parameters)} tensors), {len(batches)} steps of "
                f"AdamW(lr={hyper['lr']:.3g}, weight_decay={hyper['weight_decay']}), each rank's batches "
                f"{tuple(batches[0][0][:len(batches[0][0]) // ZERO_WORLD_SIZE].shape)}, {ZERO_WORLD_SIZE} processes")

    if any(result is not None and result.get("error") == "not solved" for result in results):
        call_learner(title, _not_solved)  # fails as for any stub, "not solved yet"
    for rank, result in enumerate(results):
        if result is not None and "error" in result:
            waited = "timed out" in result["error"].lower()
            raise ExerciseFailed(f"❌ {title}: on rank {rank}, {result['error']}\n   on input: {shown(len(result['cases']))}\n"
                                 f"   hint: {WAITING if waited else ''}{ZERO_HINT}")
    for rank, result in enumerate(results):
        if result is None:
            raise ExerciseFailed(
                f"❌ {title}: rank {rank} did not finish (stopped after {seconds:.0f} s)\n   on input: {shown(0)}\n"
                f"   hint: {WAITING}{ZERO_HINT}")

    for index in range(len(cases)):
        got = [result["cases"][index]["got"] for result in results]
        want = results[0]["cases"][index]["want"]
        for name, value in want.items():
            if not torch.equal(got[0][name], got[1][name]):
                raise ExerciseFailed(
                    f"❌ {title}: after training, rank 0's and rank 1's {name} differ (largest difference "
                    f"{(got[0][name] - got[1][name]).abs().max().item():.3g}): the copies of the model drifted apart\n"
                    f"   on input: {shown(index)}\n   hint: after each step every rank must receive the parameters it "
                    f"does not own, from the rank that stepped them. {ZERO_HINT}")
            if not torch.allclose(got[0][name], value, rtol=1e-5, atol=1e-7):
                raise ExerciseFailed(
                    f"❌ {title}: after training, {name} differs from plain data parallelism's (DDP with a whole AdamW on "
                    f"each rank; largest difference {(got[0][name] - value).abs().max().item():.3g})\n"
                    f"   on input: {shown(index)}\n   hint: {ZERO_HINT}")
        held = [result["cases"][index]["state_bytes"] for result in results]
        whole = results[0]["cases"][index]["whole_bytes"]
        if sum(held) != whole or min(held) == 0:
            raise ExerciseFailed(
                f"❌ {title}: the optimizer states hold {' + '.join(f'{b:,}' for b in held)} bytes on ranks "
                f"{', '.join(map(str, range(ZERO_WORLD_SIZE)))}; one AdamW over every parameter holds {whole:,}: "
                f"ZeRO-1 shares that out, each rank keeping the state of its shard only\n   on input: {shown(index)}\n"
                f"   hint: make the optimizer with adamw(my_parameters), over this rank's shard, not over every "
                f"parameter; every parameter must be in exactly one rank's shard, and every rank must own some")
    kib = lambda b: f"{b / 1024:,.1f} KiB"
    held = [result["cases"][-1]["state_bytes"] for result in results]
    passed(title, f"{len(cases)} models trained by 2 gloo processes in {seconds:.1f} s: the weights of DDP; the last "
                  f"one's AdamW state {' + '.join(kib(b) for b in held)} on ranks 0 and 1, "
                  f"{kib(results[0]['cases'][-1]['whole_bytes'])} on each rank under DDP")
