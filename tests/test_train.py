"""Pretraining: objectives, schedule, accumulation, evaluation, checkpoints and exact resumption, bad input."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from minilm import hardware
from minilm.cache import Artifact
from minilm.data.sources.stories import writer as stories
from minilm.model.accounting import count_parameters, flops_per_token
from minilm.model.gpt import GPT, make_optimizer, mask_tokens
from minilm.tokenizer import Tokenizer
from minilm.tokenizer.shards import TokenShards, write_shards
from minilm.train import checkpoint as ckpt
from minilm.train import distributed
from minilm.train import loop
from minilm.train.loop import TrainConfig, evaluate, micro_batches, read_log, step_windows, train, train_step
from minilm.train.objectives import MASK_TOKEN, make_batch
from minilm.train.quality import STORY_PROMPTS, text_quality
from minilm.train.schedule import learning_rate

REPO = Path(__file__).resolve().parent.parent
TINY = TrainConfig(
    n_layer=2, n_head=2, n_embd=32, context=32, batch_size=4, max_steps=12, lr=3e-3, min_lr=3e-4, warmup_steps=3,
    dropout=0.1, log_every=2, eval_every=6, eval_tokens=512, sample_every=6, sample_tokens=8, checkpoint_every=4,
    final_samples=2, precision="fp32", device="cpu",
)


pytestmark = pytest.mark.usefixtures("one_thread")


def make_corpus(folder: Path, vocab_size: int = 320, seed: int = 0) -> Path:
    """A tokenizer and train/val shards of a few generated stories, laid out as stage 2's artifact."""
    texts = [doc.text for doc in stories.iter_stories(110, seed)]
    Tokenizer.train(texts[:100], vocab_size, progress=False).save(folder / "tokenizer")
    write_shards(texts[:100], folder / "tokenizer", folder / "shards", "train", workers=0, progress=False, shard_tokens=20_000)
    write_shards(texts[100:], folder / "tokenizer", folder / "shards", "val", workers=0, progress=False)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = make_corpus(tmp_path_factory.mktemp("corpus"))
    return {
        "folder": folder,
        "tokenizer": Tokenizer.load(folder / "tokenizer"),
        "train": TokenShards(folder / "shards", "train"),
        "val": TokenShards(folder / "shards", "val"),
    }


def run(corpus, out, config=TINY, **kwargs):
    return train(config, corpus["train"], corpus["val"], corpus["tokenizer"], out, **{"progress": False, **kwargs})


def weights(out) -> dict[str, torch.Tensor]:
    return ckpt.read_checkpoint(ckpt.latest_checkpoint(Path(out) / "checkpoints"))[0]


def train_losses(out) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(Path(out) / "log.jsonl") if r["kind"] == "train"}


def seed_globals(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def draws() -> tuple:
    """The next numbers of Python's, NumPy's and PyTorch's global generators (a Gaussian first: Python and
    NumPy each keep the second of a pair of Gaussians, and that cached number is part of their state)."""
    return random.gauss(0, 1), random.random(), np.random.standard_normal(), np.random.random(3).tolist(), torch.rand(3).tolist()


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    seed_globals(0)
    summary = run(corpus, out)
    return {"out": out, "summary": summary, "weights": weights(out), "losses": train_losses(out), "draws": draws()}


# --- schedule, objectives, optimizer ---------------------------------------------------------------


def test_schedule_warms_up_linearly_then_follows_the_cosine_to_its_floor():
    lr = [learning_rate(s, 1.0, 10, 110, 0.1) for s in range(130)]
    assert lr[0] == pytest.approx(0.1) and lr[4] == pytest.approx(0.5) and lr[9] == pytest.approx(1.0)
    assert lr[10] == pytest.approx(1.0)
    assert lr[60] == pytest.approx(0.55)  # half way through the decay: the mean of peak and floor
    assert lr[110] == lr[129] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))
    assert learning_rate(5, 1.0, 0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    with pytest.raises(ValueError, match="warmup_steps"):
        learning_rate(0, 1.0, 20, 10)
    with pytest.raises(ValueError, match="min_lr"):
        learning_rate(0, 1.0, 1, 10, min_lr=2.0)


def test_the_schedule_at_the_edges_of_warmup_decay_and_run():
    # warmup: (step + 1) / warmup_steps of the peak, so the first step already moves and step warmup-1 peaks
    assert [learning_rate(s, 1.0, 4, 20, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate(4, 1.0, 4, 20, 0.1) == 1.0  # the decay starts at the peak
    assert learning_rate(8, 1.0, 4, 20, 0.1) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert learning_rate(12, 1.0, 4, 20, 0.1) == pytest.approx(0.55)
    assert 0.1 < learning_rate(19, 1.0, 4, 20, 0.1) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 15 / 16)))
    assert learning_rate(20, 1.0, 4, 20, 0.1) == learning_rate(1000, 1.0, 4, 20, 0.1) == 0.1  # the floor, from the end on
    assert learning_rate(20, 1.0, 4, 20) == 0.0  # min_lr defaults to 0
    assert learning_rate(4, 1.0, 4, 5, 0.1) == 1.0 and learning_rate(5, 1.0, 4, 5, 0.1) == 0.1  # a one-step decay
    # a warmup as long as the run: the floor right after it, with no decay
    assert learning_rate(4, 1.0, 5, 5, 0.1) == 1.0 and learning_rate(5, 1.0, 5, 5, 0.1) == 0.1
    assert learning_rate(0, 1.0, 0, 0, 0.1) == 0.1
    assert learning_rate(3, 0.5, 0, 10, 0.5) == 0.5  # min_lr = max_lr: a constant rate
    for bad, message in (
        ({"step": -1}, "step must be >= 0, got -1"),
        ({"warmup_steps": -1}, "need 0 <= warmup_steps <= total_steps, got warmup_steps=-1, total_steps=20"),
        ({"warmup_steps": 21}, "need 0 <= warmup_steps <= total_steps, got warmup_steps=21, total_steps=20"),
        ({"min_lr": -0.1}, "need 0 <= min_lr <= max_lr, got min_lr=-0.1, max_lr=1.0"),
        ({"min_lr": 1.5}, "need 0 <= min_lr <= max_lr, got min_lr=1.5, max_lr=1.0"),
    ):
        arguments = {"step": 0, "max_lr": 1.0, "warmup_steps": 4, "total_steps": 20, "min_lr": 0.1, **bad}
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            learning_rate(**arguments)


def test_a_config_with_a_bad_value_is_refused_with_the_allowed_values():
    for bad, message in (
        ({"objective": "denoising"}, "objective='denoising'; choose one of causal, masked"),
        ({"mask_rate": 1.0}, r"mask_rate must be in \(0, 1\), got 1.0"),
        ({"mask_rate": 1.5}, r"mask_rate must be in \(0, 1\), got 1.5"),
        ({"min_lr": 2e-3, "lr": 1e-3}, "need 0 < min_lr <= lr"),
        ({"weight_decay": -0.1}, r"weight_decay and grad_clip must be >= 0, beta1 and beta2 in \[0, 1\)"),
        ({"beta2": 1.0}, r"weight_decay and grad_clip must be >= 0, beta1 and beta2 in \[0, 1\)"),
    ):
        with pytest.raises(ValueError, match=message):
            replace(TINY, **bad)
    assert replace(TINY, min_lr=TINY.lr).min_lr == TINY.lr  # min_lr = lr: a constant rate after the warmup
    assert learning_rate(50, TINY.lr, 3, 100, TINY.lr) == TINY.lr


def test_every_config_field_is_checked_at_its_boundary():
    def refused(message: str, **fields) -> None:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            replace(TINY, **fields)

    positive = ("n_layer", "n_head", "n_embd", "context", "batch_size", "grad_accum", "max_steps",
                "log_every", "eval_every", "sample_every", "sample_tokens", "checkpoint_every")
    room = {"n_embd": {"n_head": 1}, "max_steps": {"warmup_steps": 0}}  # what a value of 1 needs of the others
    for name in positive:
        assert getattr(replace(TINY, **{name: 1}, **room.get(name, {})), name) == 1
        for bad in (0, -1, 2.0, "4"):
            refused(f"TrainConfig.{name} must be a positive integer, got {bad!r}", **{name: bad})
    assert replace(TINY, objective="masked").objective == "masked"
    refused("objective='denoising'; choose one of causal, masked", objective="denoising")
    assert replace(TINY, mask_rate=0.5).mask_rate == 0.5
    for bad in (0.0, 1.0, -0.1):
        refused(f"mask_rate must be in (0, 1), got {bad}", mask_rate=bad)
    for fields in ({"min_lr": TINY.lr}, {"warmup_steps": 0}, {"warmup_steps": TINY.max_steps}):
        replace(TINY, **fields)
    for bad in ({"min_lr": 0.0}, {"min_lr": -1e-4}, {"min_lr": 4e-3}, {"warmup_steps": -1}, {"warmup_steps": 13}):
        values = {"lr": TINY.lr, "min_lr": TINY.min_lr, "warmup_steps": TINY.warmup_steps, "max_steps": TINY.max_steps, **bad}
        refused("need 0 < min_lr <= lr and 0 <= warmup_steps <= max_steps; got "
                "lr={lr}, min_lr={min_lr}, warmup_steps={warmup_steps}, max_steps={max_steps}".format(**values), **bad)
    for fields in ({"weight_decay": 0.0}, {"grad_clip": 0.0}, {"beta1": 0.0}, {"beta2": 0.0}, {"beta2": 0.999}):
        replace(TINY, **fields)  # no decay, no clipping (grad_clip=0 turns it off), no momentum: all allowed
    for bad in ({"weight_decay": -0.1}, {"grad_clip": -1.0}, {"beta1": -0.1}, {"beta1": 1.0}, {"beta2": -0.1}, {"beta2": 1.0}):
        refused("weight_decay and grad_clip must be >= 0, beta1 and beta2 in [0, 1)", **bad)
    for precision in hardware.PRECISIONS:
        assert replace(TINY, precision=precision).precision == precision
    refused("precision='fp8'; choose one of auto, fp32, bf16, fp16", precision="fp8")
    assert replace(TINY, final_samples=0, keep_checkpoints=1).keep_checkpoints == 1
    for bad in ({"final_samples": -1}, {"keep_checkpoints": 0}):
        refused("final_samples must be >= 0 and keep_checkpoints >= 1", **bad)
    for eval_tokens in (None, TINY.context):  # None reads the whole split; one window is the least
        assert replace(TINY, eval_tokens=eval_tokens).eval_tokens == eval_tokens
    refused("eval_tokens=31 must be None (all) or at least one window (32)", eval_tokens=31)
    with pytest.raises(ValueError, match="n_embd=30 does not divide by n_head=4"):  # the model's shape, checked at once
        replace(TINY, n_embd=30, n_head=4)


def test_the_configs_shape_makes_the_model_and_for_model_reads_it_back():
    shape = {"n_layer": 3, "n_head": 4, "n_embd": 48, "context": 24, "position": "rope", "norm": "rmsnorm",
             "mlp": "swiglu", "dropout": 0.25}
    assert {name: getattr(TINY, name) for name in shape} != shape  # every field differs from the config's
    for objective in ("causal", "masked"):
        model_config = replace(TINY, **shape, objective=objective).model_config(320)
        assert {name: getattr(model_config, name) for name in loop.SHAPE_FIELDS} == shape
        assert model_config.vocab_size == 320 and model_config.causal == (objective == "causal")
        again = TrainConfig.for_model(model_config, max_steps=5, warmup_steps=1)
        assert again.model_config(320) == model_config and again.objective == objective and again.max_steps == 5


def test_each_objective_needs_its_kind_of_model_and_others_are_named():
    from minilm.train.objectives import check_objective

    decoder = TINY.model_config(320)
    encoder = decoder.replace(causal=False)
    check_objective("causal", decoder)
    check_objective("masked", encoder)
    with pytest.raises(ValueError, match=r"masked language modelling needs an encoder \(GPTConfig\(causal=False\)\)"):
        check_objective("masked", decoder)
    with pytest.raises(ValueError, match="causal objective needs a decoder"):
        check_objective("causal", encoder)
    windows = np.zeros((1, 4), dtype=np.int64)
    for unknown in (lambda: check_objective("denoising", decoder), lambda: make_batch(windows, windows, "denoising")):
        with pytest.raises(ValueError, match="objective='denoising'; choose one of causal, masked"):
            unknown()


def test_make_batch_gives_int64_tensors_and_names_what_the_masked_objective_lacks():
    windows = np.arange(40, dtype=np.uint16).reshape(4, 10)  # shards store uint16 ids
    x, y = windows[:, :-1], windows[:, 1:]  # views that are not contiguous
    inputs, targets = make_batch(x, y, "causal")
    assert inputs.dtype == targets.dtype == torch.int64 and inputs.is_contiguous() and targets.is_contiguous()
    assert inputs.tolist() == x.tolist() and targets.tolist() == y.tolist()
    for rate in (0.15, 0.5):  # the masks are mask_tokens' with the rate asked for (0.15 unless told)
        arguments = {"mask_rate": rate} if rate != 0.15 else {}
        got = make_batch(x, None, "masked", mask_id=0, vocab_size=40, generator=torch.Generator().manual_seed(3), **arguments)
        expected = mask_tokens(torch.from_numpy(x.astype(np.int64)), 0, 40, torch.Generator().manual_seed(3), rate=rate)
        assert all(torch.equal(a, b) for a, b in zip(got, expected)) and got[0].dtype == torch.int64
    missing = "^the masked objective needs mask_id, vocab_size and a generator$"
    needs = {"mask_id": 0, "vocab_size": 40, "generator": torch.Generator()}
    for absent in needs:
        with pytest.raises(ValueError, match=missing):
            make_batch(x, y, "masked", **{name: value for name, value in needs.items() if name != absent})
    with pytest.raises(ValueError, match="^objective='Causal'; choose one of causal, masked$"):
        make_batch(x, y, "Causal")


def test_masking_follows_berts_15_percent_and_80_10_10_rule():
    windows = np.random.default_rng(0).integers(10, 5000, size=(200, 500))
    inputs, targets = make_batch(windows, windows, "masked", mask_id=7, vocab_size=5000,
                                 generator=torch.Generator().manual_seed(0))
    original = torch.from_numpy(windows)
    chosen = targets != -100
    assert chosen.float().mean().item() == pytest.approx(0.15, abs=0.003)
    assert torch.equal(targets[chosen], original[chosen])
    assert torch.equal(inputs[~chosen], original[~chosen])  # positions not chosen are never touched
    masked = (inputs == 7)[chosen].float().mean().item()
    kept = (inputs == original)[chosen].float().mean().item()
    randomised = 1 - masked - kept
    assert masked == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1, abs=0.01)
    assert randomised == pytest.approx(0.1, abs=0.01)
    again = make_batch(windows, windows, "masked", mask_id=7, vocab_size=5000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], inputs)  # the same generator seed, the same masks


def test_weight_decay_applies_to_matrices_only():
    model = GPT(TINY.model_config(320))
    decay, no_decay = make_optimizer(model, 1e-3, 0.1).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} == {n for n, p in model.named_parameters() if p.dim() == 2}
    assert {names[id(p)] for p in no_decay["params"]} == {n for n, p in model.named_parameters() if p.dim() < 2}
    assert any(n.endswith(".bias") for n in map(names.get, map(id, no_decay["params"])))
    assert "transformer.wte.weight" in {names[id(p)] for p in decay["params"]}  # embeddings are matrices: decayed


def test_masks_are_drawn_anew_for_each_seed_step_and_rank(corpus):
    """The masked objective's random choices, like the windows, are a function of (seed, step, rank) alone."""
    config = replace(TINY, objective="masked")
    x, y = step_windows(corpus["train"], config, step=0)

    def targets(cfg=config, step=0, rank=0):
        return torch.cat([t for _, t in micro_batches(x, y, cfg, step, rank, mask_id=0, vocab_size=320)])

    first = targets()
    assert torch.equal(targets(), first)
    for other in (targets(step=1), targets(rank=1), targets(cfg=replace(config, seed=config.seed + 1))):
        assert not torch.equal(other, first)
    # the seeds: distinct, and non-negative 63-bit integers, which torch.manual_seed and NumPy both take
    seeds = [loop.derived_seed(config.seed, step, rank, purpose) for step in range(50) for rank in range(2) for purpose in range(4)]
    assert len(set(seeds)) == len(seeds) and all(0 <= seed < 2**63 for seed in seeds)


@pytest.mark.parametrize("objective", ["causal", "masked"])
def test_gradient_accumulation_equals_one_big_batch(corpus, tmp_path, objective):
    config = replace(TINY, dropout=0.0, batch_size=8, grad_accum=1, objective=objective)
    split = replace(config, batch_size=4, grad_accum=2)
    x, y = step_windows(corpus["train"], config, step=0)
    assert np.array_equal(x, step_windows(corpus["train"], split, step=0)[0])  # the same windows, however split
    # With plain SGD (lr 1, no clipping) the change of each weight is minus its gradient. In float64, so
    # that the comparison is far from rounding: float32 sums in another order differ by about 1e-7.
    changes = []
    for cfg in (config, split):
        model = GPT(cfg.model_config(320), seed=0).double()
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        scaler = hardware.grad_scaler("cpu", "fp32")
        batches = micro_batches(x, y, cfg, 0, mask_id=0, vocab_size=320)
        assert len(batches) == cfg.grad_accum
        train_step(model, optimizer, scaler, batches, lr=1.0, grad_clip=0.0, device="cpu")
        changes.append([p.detach() - b for p, b in zip(model.parameters(), before)])
    for big, accumulated in zip(*changes):
        torch.testing.assert_close(accumulated, big, rtol=1e-10, atol=1e-12)
    # and whole runs agree too
    run(corpus, tmp_path / "big", replace(config, max_steps=3, final_samples=0))
    run(corpus, tmp_path / "split", replace(split, max_steps=3, final_samples=0))
    for name, tensor in weights(tmp_path / "big").items():
        torch.testing.assert_close(weights(tmp_path / "split")[name], tensor, rtol=1e-5, atol=1e-5)  # Adam magnifies rounding in tiny gradients


def positions_in_stream(shards: TokenShards, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Every position of the token stream where each window (x's tokens, then y's last) occurs."""
    stream = shards.read(0, len(shards))
    view = np.lib.stride_tricks.sliding_window_view(stream, x.shape[1] + 1)
    return [np.flatnonzero((view == np.append(row, last)).all(axis=1)) for row, last in zip(x, y[:, -1])]


def test_each_step_draws_its_own_windows_from_the_seed_and_the_step(corpus):
    shards = corpus["train"]
    batches = [step_windows(shards, TINY, step) for step in range(20)]
    starts = []
    for x, y in batches:
        assert x.shape == y.shape == (4, 32) and np.array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
        found = positions_in_stream(shards, x, y)
        assert all(len(where) for where in found)  # every window is a piece of the stream
        starts += [where[0] for where in found]
    assert len({x.tobytes() for x, _ in batches}) == 20  # every step its own windows
    assert min(starts) < len(shards) / 4 and max(starts) > 3 * len(shards) / 4  # from all over the stream
    # a function of (seed, step) alone: the same windows again, whatever the global generators did meanwhile
    np.random.seed(0)
    for step in (0, 7):
        assert np.array_equal(step_windows(shards, TINY, step)[0], batches[step][0])
    other_seed = replace(TINY, seed=TINY.seed + 1)
    assert not np.array_equal(step_windows(shards, other_seed, 0)[0], batches[0][0])
    assert not np.array_equal(step_windows(shards, other_seed, 0)[0], batches[1][0])  # not a seed of seed + step
    # process r of 2 draws from the r-th half of the stream only
    for rank in range(2):
        x, y = step_windows(shards, TINY, 0, rank, world_size=2)
        start, stop = shards.part(rank, 2)
        assert all(any(start <= p <= stop - 33 for p in where) for where in positions_in_stream(shards, x, y))


def test_the_loop_trains_each_step_on_that_steps_windows(corpus, tmp_path, monkeypatch, capfd):
    config = replace(TINY, dropout=0.0, grad_accum=2, max_steps=4, warmup_steps=1, eval_every=100, sample_every=100,
                     final_samples=0)
    seen, forward = [], GPT.forward

    def spy(self, idx, *args, **kwargs):  # what the model reads in training mode (evaluation reads in eval mode)
        if self.training:
            seen.append(idx.clone())
        return forward(self, idx, *args, **kwargs)

    monkeypatch.setattr(GPT, "forward", spy)
    run(corpus, tmp_path, config)
    assert len(seen) == 4 * 2  # 4 steps of 2 micro-batches
    trained_on = [torch.cat(seen[2 * step : 2 * step + 2]).numpy() for step in range(4)]
    for step, x in enumerate(trained_on):
        assert np.array_equal(x, step_windows(corpus["train"], config, step)[0]), step
    assert len({x.tobytes() for x in trained_on}) == 4
    assert "pretraining" not in capfd.readouterr().err  # progress=False: no progress bar


def test_the_loop_logs_each_windows_mean_loss_seeds_dropout_per_step_and_shows_progress(corpus, tmp_path, monkeypatch, capfd):
    """... and times each window of steps (on a clock that the stand-in for train_step moves by half a second)
    and samples with the step as the seed."""
    config = replace(TINY, max_steps=4, warmup_steps=1, eval_every=100, sample_every=2, final_samples=0, compile=True)
    devices, compiled, losses, seeds, sample_seeds, clock = [], [], [], [], [], [0.0]
    real_pick_device, real_train_step, real_manual_seed = hardware.pick_device, loop.train_step, torch.manual_seed
    real_generate = loop.generate
    monkeypatch.setattr(hardware, "pick_device", lambda requested, *args, **kwargs: (
        devices.append(requested), real_pick_device(requested, *args, **kwargs))[1])
    monkeypatch.setattr(torch, "compile", lambda model: (compiled.append(model), model)[1])  # compiling takes long on CPUs

    def timed_step(*args, **kwargs):
        step = real_train_step(*args, **kwargs)
        losses.append(step[0].item())
        clock[0] += 0.5
        return step

    monkeypatch.setattr(loop, "train_step", timed_step)
    monkeypatch.setattr(loop, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: clock[0])}))
    monkeypatch.setattr(loop, "generate", lambda *args, seed, **kwargs: (
        sample_seeds.append(seed), real_generate(*args, seed=seed, **kwargs))[1])
    monkeypatch.setattr(torch, "manual_seed", lambda seed: (seeds.append(seed), real_manual_seed(seed))[1])
    special_id = corpus["tokenizer"].special_id

    def no_mask_token(token: str) -> int:  # a tokenizer without the masked objective's token: causal training needs none
        if token == MASK_TOKEN:
            raise KeyError(token)
        return special_id(token)

    monkeypatch.setattr(corpus["tokenizer"], "special_id", no_mask_token)
    summary = run(corpus, tmp_path, config, progress=True)
    assert devices == ["cpu"] and [type(model) for model in compiled] == [GPT]  # the config's device, compiled
    records = [r for r in read_log(tmp_path / "log.jsonl") if r["kind"] == "train"]
    logged = [r["loss"] for r in records]
    assert logged == pytest.approx([(losses[0] + losses[1]) / 2, (losses[2] + losses[3]) / 2], rel=1e-6)  # log_every=2
    # each window: 2 steps of 4 x 32 tokens in 2 x 0.5 s
    assert [(r["step"], r["tokens_per_s"], r["elapsed"]) for r in records] == [(2, 256.0, 1.0), (4, 256.0, 2.0)]
    assert summary["tokens_per_s"] == 256.0 and summary["train_seconds"] == 2.0
    # dropout draws from PyTorch's global generator, seeded anew at each step from (seed, step, rank)
    assert seeds[-4:] == [loop.derived_seed(config.seed, step, 0, loop.DROPOUT) for step in range(4)]
    assert sample_seeds == [2]  # the samples at step 2 (sample_every=2; none at the last step without final_samples)
    assert re.search(r"pretraining.* 4/4 .*(step/s|s/step), loss=\d+\.\d{3}, tok_s=[\d,]+", capfd.readouterr().err)


def total_norm(tensors) -> float:
    return torch.cat([t.flatten() for t in tensors]).norm().item()


class OnDevice(torch.nn.Module):
    """A stand-in model whose loss is computed where its weight lives: on the meta device here, as on a GPU."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))

    def forward(self, inputs, targets):
        assert inputs.device == targets.device == self.weight.device  # the batch was moved to the model's device
        return None, self.weight.sum() * inputs.float().mean()


def test_a_step_keeps_its_loss_on_the_device_and_frees_the_gradients():
    """The loop adds up the losses without waiting for the device (an .item() would), so they stay on it;
    after the step no gradient is kept: set to None, they take no memory until the next backward pass."""
    model = OnDevice().to("meta")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    windows = torch.ones(2, 8, dtype=torch.long)
    loss, norm = train_step(model, optimizer, hardware.grad_scaler("cpu", "fp32"), [(windows, windows)] * 2, 0.1, 1.0, "meta")
    assert loss.device.type == norm.device.type == "meta"
    assert model.weight.grad is None


def test_clipping_shortens_the_step_to_grad_clip_and_reports_the_norm_before_clipping(corpus):
    """With plain SGD at lr 1 the change of the weights is minus the gradient: all changes together have
    the gradient's norm, cut to grad_clip when the gradient is longer, left alone when it is shorter."""
    config = replace(TINY, dropout=0.0)
    batches = micro_batches(*step_windows(corpus["train"], config, step=0), config, 0)

    def one_step(grad_clip: float) -> tuple[float, list[torch.Tensor]]:
        model = GPT(config.model_config(320), seed=0).double()
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        _, norm = train_step(model, optimizer, hardware.grad_scaler("cpu", "fp32"), batches, 1.0, grad_clip, "cpu")
        return float(norm), [p.detach() - b for p, b in zip(model.parameters(), before)]

    raw_norm, raw = one_step(0.0)  # 0 turns clipping off
    assert raw_norm == pytest.approx(total_norm(raw), rel=1e-9) and raw_norm > 0.1
    clip = raw_norm / 4
    norm, clipped = one_step(clip)
    assert norm == pytest.approx(raw_norm, rel=1e-9)  # the norm reported is the one before clipping
    assert total_norm(clipped) == pytest.approx(clip, rel=1e-5)  # (clip_grad_norm_ divides by the norm + 1e-6)
    for change, unclipped in zip(clipped, raw):  # the same direction, a quarter of the length
        torch.testing.assert_close(change, unclipped / 4, rtol=1e-5, atol=1e-12)
    norm, long_clip = one_step(2 * raw_norm)
    assert norm == pytest.approx(raw_norm, rel=1e-9)
    for change, unclipped in zip(long_clip, raw):
        torch.testing.assert_close(change, unclipped, rtol=1e-9, atol=0)


def test_the_loop_clips_to_the_configs_grad_clip_and_logs_the_norm_before_clipping(corpus, tmp_path, monkeypatch):
    config = replace(TINY, dropout=0.0, max_steps=1, warmup_steps=0, lr=0.5, min_lr=0.05, grad_clip=0.05, log_every=1,
                     final_samples=0)
    # plain SGD in place of AdamW, so that the step is minus lr times the clipped gradient
    monkeypatch.setattr(loop, "make_optimizer",
                        lambda model, lr, weight_decay, betas: torch.optim.SGD(model.parameters(), lr=lr))
    run(corpus, tmp_path, config)
    model = GPT(config.model_config(320), seed=config.seed)  # the run's first weights, and their gradient at step 0
    [(inputs, targets)] = micro_batches(*step_windows(corpus["train"], config, step=0), config, 0)
    model(inputs, targets)[1].backward()
    parameters = dict(model.named_parameters())
    raw_norm = total_norm([p.grad for p in parameters.values()])
    assert raw_norm > 4 * config.grad_clip  # long enough to be clipped
    [record] = [r for r in read_log(tmp_path / "log.jsonl") if r["kind"] == "train"]
    assert record["lr"] == config.lr and record["grad_norm"] == pytest.approx(raw_norm, rel=1e-4)
    trained = weights(tmp_path)
    change = total_norm([trained[name] - p.detach() for name, p in parameters.items()])
    assert change == pytest.approx(config.lr * config.grad_clip, rel=1e-4)
    for name, p in parameters.items():
        expected = p.detach() - config.lr * config.grad_clip / raw_norm * p.grad
        torch.testing.assert_close(trained[name], expected, rtol=1e-5, atol=1e-7, msg=name)


# --- evaluation and text quality -------------------------------------------------------------------


def test_bits_per_byte_is_the_loss_over_the_bytes_of_the_targets(corpus):
    config = replace(TINY, dropout=0.0)
    model = GPT(config.model_config(320), seed=3)
    token_bytes = corpus["tokenizer"].token_bytes()
    result = evaluate(model, corpus["val"], config, token_bytes, distributed.World(), "fp32", max_tokens=None)
    val = corpus["val"]
    nats = n_bytes = predictions = total = 0.0
    for start in range(0, (len(val) - 1) // 32 * 32, 32):  # every full window, by hand
        window = torch.from_numpy(val.read(start, start + 33))
        logits, _ = model(window[None, :-1])
        losses = torch.nn.functional.cross_entropy(logits[0], window[1:], reduction="none").double()
        lengths = torch.from_numpy(token_bytes)[window[1:]]
        total += losses.sum().item()
        predictions += 32
        nats += losses[lengths > 0].sum().item()
        n_bytes += lengths.sum().item()
    assert result["val_tokens"] == predictions
    assert result["val_loss"] == pytest.approx(total / predictions, rel=1e-5)
    assert result["val_bits_per_byte"] == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-5)
    assert result["val_perplexity"] == pytest.approx(math.exp(result["val_loss"]))


def test_evaluation_windows_are_spread_evenly_over_the_split(corpus):
    val = corpus["val"]
    every = val.eval_starts(32)  # None: every full window, none overlapping
    assert np.array_equal(every, np.arange((len(val) - 1) // 32) * 32)
    some = val.eval_starts(32, max_tokens=512)  # 16 windows, from all over the split, not its first 512 tokens
    assert len(some) == 16 and set(some) <= set(every) and some[0] == 0 and some[-1] > len(val) * 0.9
    assert np.array_equal(val.eval_starts(32, max_tokens=10), [0])  # fewer tokens than a window: still one window


def test_evaluation_turns_dropout_off_and_gives_training_mode_back(corpus):
    config = replace(TINY, dropout=0.5)
    model = GPT(config.model_config(320), seed=3)  # in training mode, as nn.Modules start
    args = (corpus["val"], config, corpus["tokenizer"].token_bytes(), distributed.World(), "fp32", 512)
    first = evaluate(model, *args)
    assert all(module.training for module in model.modules())  # training mode given back
    assert evaluate(model, *args) == first  # no dropout: the same numbers every time
    model.eval()
    with torch.no_grad():  # by hand, in eval mode
        windows = torch.from_numpy(np.stack([corpus["val"].read(s, s + 33) for s in corpus["val"].eval_starts(32, 512)]))
        logits, _ = model(windows[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()).item()
    assert first["val_loss"] == pytest.approx(loss, rel=1e-5)
    evaluate(model, *args)
    assert not model.training  # a model in eval mode stays in it


def test_text_quality_accepts_stories_and_rejects_word_salad():
    texts = [doc.text for doc in stories.iter_stories(20, seed=5)]
    good = text_quality(texts)
    assert good["vocabulary"] > 0.99 and good["grammar"] > 0.9 and good["sentences"] > 200
    salad = [" ".join(sorted(text.split(), key=lambda w: hash(w) % 7)) for text in texts]  # scrambled word order
    bad = text_quality(salad)
    assert bad["grammar"] < 0.2 and bad["rejected"]
    assert text_quality(salad, examples=2)["rejected"] == bad["rejected"][:2]
    one = text_quality(["Mia went to the park. Then she saw a xyzzy."])
    assert (one["words"], one["sentences"], one["vocabulary"], one["unknown_words"]) == (10, 2, 0.9, ["xyzzy"])
    half = text_quality(["This is a story about a painter named Owen. Then she saw a xyzzy."])  # one sentence of two accepted
    assert half["grammar"] == 0.5 and half["rejected"] == ["Then she saw a xyzzy."]
    assert text_quality(["a xyzzy, a plugh and a frobozz."], examples=2)["unknown_words"] == ["xyzzy", "plugh"]
    assert text_quality([]) == {"vocabulary": 0.0, "grammar": 0.0, "words": 0, "sentences": 0, "rejected": [], "unknown_words": []}
    cut = text_quality(["Once upon a time, there was a baker named Mia. She went to the"])
    assert cut["sentences"] == 1  # the unfinished last sentence is not counted


def test_samples_continue_the_story_prompts_in_the_room_the_context_leaves(corpus, monkeypatch):
    tokenizer = corpus["tokenizer"]
    longest = max(1 + len(tokenizer.encode_ordinary(prompt)) for prompt in STORY_PROMPTS)  # <|endoftext|> + the prompt
    calls, generate = [], loop.generate
    monkeypatch.setattr(loop, "generate", lambda model, ids, n, **kwargs: (calls.append((n, kwargs)), generate(model, ids, n, **kwargs))[1])
    model = GPT(replace(TINY, context=longest + 1).model_config(320), seed=0)  # room for one new token
    for precision in ("fp32", "bf16"):
        texts = loop.write_samples(model, tokenizer, len(STORY_PROMPTS) + 1, 50, precision, seed=3, temperature=0.5)
        assert len(texts) == len(STORY_PROMPTS) + 1 and all(text.startswith(STORY_PROMPTS[i % 5]) for i, text in enumerate(texts))
    assert calls == 2 * [(1, {"temperature": 0.5, "stop_token": tokenizer.special_id("<|endoftext|>"), "seed": 3})]
    assert loop.write_samples(GPT(replace(TINY, context=longest).model_config(320)), tokenizer, 5, 50, "fp32") == []  # no room


# --- training runs ---------------------------------------------------------------------------------


def test_the_log_continues_from_the_checkpoints_step_or_starts_anew(tmp_path):
    records = [{"kind": "start", "step": 0}, {"kind": "train", "step": 2}, {"kind": "note"},  # a line with no step counts as 0
               {"kind": "train", "step": 4}, {"kind": "eval", "step": 4}, {"kind": "train", "step": 6}]
    path = tmp_path / "log.jsonl"
    old = "".join(json.dumps(r) + "\n" for r in records) + '{"kind": "train", "st'  # the last line cut short by a crash
    path.write_text(old)
    log = loop.Log(path, enabled=True, keep_until_step=4)  # resumed from the checkpoint of step 4: its records stay
    kept = records[:5]
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in kept)
    log.write({"kind": "start", "step": 4, "note": "café"})
    assert read_log(path) == [*kept, {"kind": "start", "step": 4, "note": "café"}]  # written at once, before close
    log.close()

    path.write_text(old)
    log = loop.Log(path, enabled=True, keep_until_step=0)  # a fresh run: nothing of the old one, not even its step 0
    assert path.read_text() == ""
    log.write({"kind": "start", "step": 0})
    log.close()
    assert read_log(path) == [{"kind": "start", "step": 0}]

    path.write_text(old)
    log = loop.Log(path, enabled=False, keep_until_step=0)  # a rank other than 0: writes nothing, touches nothing
    log.write({"kind": "start", "step": 0})
    log.close()
    assert path.read_text() == old
    loop.Log(tmp_path / "other.jsonl", enabled=False, keep_until_step=0).close()
    assert not (tmp_path / "other.jsonl").exists()


def test_a_run_logs_evaluates_samples_and_checkpoints(corpus, uninterrupted):
    summary, out = uninterrupted["summary"], uninterrupted["out"]
    assert summary["finished"] and summary["steps"] == 12 and summary["tokens"] == 12 * 4 * 32
    records = read_log(out / "log.jsonl")
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "start" and kinds.count("train") == 6 and kinds.count("eval") == 2 and "samples" in kinds
    assert records[0]["tokens_per_step"] == 4 * 32 and records[0]["world_size"] == 1  # batch 4 x context 32, one process
    # every evaluation, during the run (at eval_every=6) and at its end, measures bits per byte too
    assert [r["step"] for r in records if r["kind"] == "eval" and 0 < r["val_bits_per_byte"] < 8] == [6, 12]
    assert summary["device"] == "cpu" and summary["device_name"].startswith("CPU, ")  # what the report shows
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert losses[-1] < losses[0] - 0.5  # it learns
    assert all(r["lr"] > 0 and r["tokens_per_s"] > 0 for r in records if r["kind"] == "train")
    assert summary["val_loss"] < math.log(320) and 0 < summary["val_bits_per_byte"] < 8
    assert len(summary["samples"]) == 2 and set(summary["quality"]) >= {"vocabulary", "grammar"}
    [during] = [r for r in records if r["kind"] == "samples" and r["step"] == 6]  # sample_every=6
    assert len(during["texts"]) == 2 and all(text.startswith(STORY_PROMPTS) for text in during["texts"])
    assert records[-1] == {"kind": "samples", "step": 12, "texts": summary["samples"], "quality": summary["quality"]}
    # samples during the run at every sample_every steps before the last; at the last, only the scored final ones
    assert [(r["step"], "quality" in r) for r in records if r["kind"] == "samples"] == [(6, False), (12, True)]
    assert all(r["tokens"] == r["step"] * 4 * 32 for r in records if r["kind"] == "train")  # batch 4 x context 32
    _, _, meta = ckpt.read_checkpoint(ckpt.latest_checkpoint(out / "checkpoints"))
    assert meta["precision"] == "fp32" and meta["tokenizer"] == corpus["train"].manifest["tokenizer"]
    assert meta["world_size"] == 1 and meta["train"] == asdict(TINY)
    flops = flops_per_token(ckpt.load_model(out / "checkpoints").config)["training"]
    assert summary["mfu"] == pytest.approx(flops * summary["tokens_per_s"] / summary["peak_flops"])
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step_000012"]  # keep_checkpoints=1
    model = ckpt.load_model(out / "checkpoints")
    assert torch.equal(model.state_dict()["transformer.wte.weight"], uninterrupted["weights"]["transformer.wte.weight"])
    # its final evaluation, with dropout (0.1) off: the same as evaluating the saved model again
    again = evaluate(model, corpus["val"], TINY, None, distributed.World(), "fp32", max_tokens=None)
    assert again["val_loss"] == pytest.approx(summary["val_loss"], rel=1e-6)


def test_resume_continues_exactly_as_an_uninterrupted_run(corpus, uninterrupted, tmp_path):
    seed_globals(0)  # as the uninterrupted run started
    first = run(corpus, tmp_path, until_step=5)  # stops after a checkpoint at 5 (dropout is on: its RNG too)
    assert not first["finished"] and ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "step_000005"
    seed_globals(1)  # as a new process might have them: the checkpoint's must replace them
    resumed = run(corpus, tmp_path)
    assert resumed["finished"]
    for name, tensor in uninterrupted["weights"].items():
        assert torch.equal(weights(tmp_path)[name], tensor), name
    losses = train_losses(tmp_path)
    for step, loss in uninterrupted["losses"].items():
        assert losses[step] == loss
    assert resumed["val_loss"] == uninterrupted["summary"]["val_loss"]
    # The loop seeds dropout from (seed, step), so the weights alone would not show a generator left
    # unrestored; the global generators, left for code of yours, must end as the uninterrupted run's.
    assert draws() == uninterrupted["draws"]


def test_a_run_resumed_at_its_last_checkpoint_reports_the_speed_of_the_whole_run(corpus, tmp_path):
    """A run stopped after its final checkpoint (before a stage moved its files) has no step left to time: its
    summary takes the windows of its log, as the run that never stopped did, rather than reporting no speed."""
    seed_globals(0)
    finished = run(corpus, tmp_path)
    logged = [r["tokens_per_s"] for r in read_log(tmp_path / "log.jsonl") if r["kind"] == "train"]
    assert len(logged) > 1 and finished["tokens_per_s"] == float(np.median(logged))
    resumed = run(corpus, tmp_path)
    assert resumed["finished"] and resumed["steps"] == finished["steps"]
    assert resumed["tokens_per_s"] == finished["tokens_per_s"]
    assert 0 < resumed["mfu"] <= 1


def test_a_checkpoint_restores_the_global_random_generators(tmp_path):
    seed_globals(0)
    random.gauss(0, 1)  # Python and NumPy now each hold a cached Gaussian
    np.random.standard_normal()
    path = ckpt.save_checkpoint(tmp_path, 1, GPT(TINY.model_config(320)), {"rng": ckpt.rng_state()}, {})
    expected = draws()
    seed_globals(1)
    ckpt.set_rng_state(ckpt.read_checkpoint(path)[1]["rng"])
    assert draws() == expected


def test_the_generators_of_every_gpu_are_saved_and_restored(monkeypatch):
    """As a machine with two GPUs sees it (stand-ins for torch.cuda's generator functions)."""
    saved, restored = [torch.tensor([1], dtype=torch.uint8), torch.tensor([2], dtype=torch.uint8)], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    state = ckpt.rng_state()
    assert state["cuda"] is saved
    ckpt.set_rng_state(state)
    assert restored == [saved]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # resumed on a machine with another number of GPUs
    ckpt.set_rng_state(state)
    assert restored == [saved]  # left as they are: there is no right way to share out two generators over one GPU


def test_a_checkpoint_of_the_same_step_replaces_the_old_one(tmp_path):
    ckpt.save_checkpoint(tmp_path, 3, GPT(TINY.model_config(320), seed=0), {}, {})
    model = GPT(TINY.model_config(320), seed=1)
    path = ckpt.save_checkpoint(tmp_path, 3, model, {"note": "again"}, {"note": "again"})
    assert path == tmp_path / "step_000003" and [p.name for p in tmp_path.iterdir()] == ["step_000003"]  # nothing left over
    weights, state, meta = ckpt.read_checkpoint(path)
    assert torch.equal(weights["transformer.wte.weight"], model.state_dict()["transformer.wte.weight"])
    assert state == {"note": "again", "step": 3} and meta["note"] == "again" and meta["step"] == 3
    created = datetime.strptime(meta["created"], "%Y-%m-%dT%H:%M:%S%z")  # ISO 8601, with the time zone
    assert abs(created.timestamp() - time.time()) < 60


def test_a_checkpoints_files_describe_themselves(tmp_path):
    """model.safetensors names its format and step in its own header (it may be copied out of its folder);
    checkpoint.json is for people too: indented, its keys sorted, so two checkpoints compare line by line."""
    from safetensors import safe_open

    path = ckpt.save_checkpoint(tmp_path, 7, GPT(TINY.model_config(320)), {}, {"world_size": 1, "train": {"lr": 0.1}})
    with safe_open(path / "model.safetensors", "pt") as weights_file:
        assert weights_file.metadata() == {"format": "minilm.checkpoint", "step": "7"}
    text = (path / "checkpoint.json").read_text()
    meta = json.loads(text)
    assert text == json.dumps(meta, indent=2, sort_keys=True) + "\n"
    assert meta["format"] == "minilm.checkpoint" and meta["version"] == 1 and meta["world_size"] == 1


def test_a_checkpoint_of_another_format_or_version_is_refused(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, 1, GPT(TINY.model_config(320)), {}, {})
    meta = json.loads((path / "checkpoint.json").read_text())
    for edit in ({"version": 2}, {"format": "other.checkpoint"}, {"format": "other.checkpoint", "version": 2}):
        (path / "checkpoint.json").write_text(json.dumps({**meta, **edit}))
        with pytest.raises(ckpt.CheckpointError, match="checkpoint.json is not a minilm.checkpoint version 1 checkpoint"):
            ckpt.read_checkpoint(path)
    (path / "checkpoint.json").write_text(json.dumps(meta))
    assert ckpt.read_checkpoint(path)[2] == meta


def test_a_failed_save_raises_its_own_error_and_leaves_no_temporary_folder(tmp_path, monkeypatch):
    model = GPT(TINY.model_config(320))
    for failing in ("_write", "_sync_folder"):  # before the rename (the folder half written), and after it
        def fail(*args):
            raise OSError(f"disk full in {failing}")

        with monkeypatch.context() as patch:
            patch.setattr(ckpt, failing, fail)
            with pytest.raises(OSError, match=f"^disk full in {failing}$"):
                ckpt.save_checkpoint(tmp_path / failing, 1, model, {}, {})
        assert not list((tmp_path / failing).glob(".step_*"))


def test_a_save_makes_its_folder_clears_what_a_killed_save_left_and_keeps_the_newest(tmp_path):
    model = GPT(TINY.model_config(320))
    folder = tmp_path / "runs" / "tiny" / "checkpoints"  # its parents do not exist yet
    assert ckpt.save_checkpoint(folder, 1, model, {}, {}) == folder / "step_000001"
    stale = folder / ".step_000002.tmp-0123abcd"  # a save killed half-way
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    ckpt.save_checkpoint(folder, 2, model, {}, {})  # keep=1 unless told
    assert sorted(p.name for p in folder.iterdir()) == ["step_000002"]
    for step in (3, 4, 5):
        ckpt.save_checkpoint(folder, step, model, {}, {}, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(folder)] == ["step_000004", "step_000005"]
    for keep in (0, -1):
        with pytest.raises(ValueError, match=rf"^keep={keep}: a save keeps at least the checkpoint it writes \(keep >= 1\)$"):
            ckpt.save_checkpoint(folder, 6, model, {}, {}, keep=keep)
    assert not (folder / "step_000006").exists()
    path = ckpt.save_checkpoint(folder, 6, model, {}, {"data": tmp_path / "shards"})  # what JSON has no type for: as text
    assert ckpt.read_meta(path)["data"] == str(tmp_path / "shards")


def test_a_save_never_deletes_through_a_link_and_does_not_fail_over_one(tmp_path):
    """Checkpoints kept elsewhere and linked into the folder (a link in place of an old checkpoint, of the step
    being written, or of a temporary folder) are left alone: the save goes on, and what they link to stays."""
    model = GPT(TINY.model_config(320))
    elsewhere = {step: ckpt.save_checkpoint(tmp_path / "kept" / str(step), step, model, {}, {}) for step in (1, 2)}
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "step_000001").symlink_to(elsewhere[1], target_is_directory=True)  # pruned by keep=1
    (folder / "step_000002").symlink_to(elsewhere[2], target_is_directory=True)  # replaced by the new step 2
    (folder / ".step_000003.tmp-0123abcd").symlink_to(tmp_path / "kept" / "1", target_is_directory=True)
    path = ckpt.save_checkpoint(folder, 2, model, {"note": "new"}, {})
    assert path == folder / "step_000002" and not path.is_symlink() and ckpt.read_checkpoint(path)[1]["note"] == "new"
    for step, linked in elsewhere.items():
        assert ckpt.read_checkpoint(linked)[2]["step"] == step  # intact


def test_load_model_takes_the_newest_checkpoint_and_names_what_it_cannot_load(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint in .*: expected checkpoint.json or step_NNNNNN folders"):
        ckpt.load_model(tmp_path)
    model = GPT(TINY.model_config(320), seed=1)
    ckpt.save_checkpoint(tmp_path, 1, GPT(TINY.model_config(320), seed=0), {}, {}, keep=2)
    path = ckpt.save_checkpoint(tmp_path, 2, model, {}, {}, keep=2)
    assert torch.equal(ckpt.load_model(tmp_path).state_dict()["transformer.wte.weight"], model.state_dict()["transformer.wte.weight"])
    assert ckpt.load_model(tmp_path, "meta").transformer.wte.weight.is_meta  # on the device asked for
    meta = json.loads((path / "checkpoint.json").read_text())
    (path / "checkpoint.json").write_text(json.dumps({**meta, "model": {**meta["model"], "n_expert": 8}}))  # another minilm's
    with pytest.raises(ckpt.CheckpointError, match=r"checkpoint.json has a model config this minilm cannot build \(.*n_expert"):
        ckpt.load_model(path)


def test_the_bf16_and_fp16_paths_train_on_cpu(corpus, tmp_path):
    for precision in ("bf16", "fp16"):  # fp16 goes through the GradScaler
        config = replace(TINY, precision=precision, max_steps=2, warmup_steps=1, log_every=1, final_samples=0)
        summary = run(corpus, tmp_path / precision, config)
        assert summary["precision"] == precision and math.isfinite(summary["val_loss"])


def test_the_masked_objective_trains_an_encoder(corpus, tmp_path):
    config = replace(TINY, objective="masked", max_steps=8, lr=1e-2, eval_every=4)
    summary = run(corpus, tmp_path, config)
    losses = list(train_losses(tmp_path).values())
    assert losses[-1] < losses[0] and summary["val_bits_per_byte"] is None and "samples" not in summary
    evals = [r for r in read_log(tmp_path / "log.jsonl") if r["kind"] == "eval"]  # masked too, during training
    assert [r["step"] for r in evals] == [4, 8] and all(math.isfinite(r["val_loss"]) for r in evals)
    assert ckpt.load_model(tmp_path / "checkpoints").config.causal is False


# --- crashes ---------------------------------------------------------------------------------------

CHILD = """
import time
import torch
torch.set_num_threads(1)
from pathlib import Path
from minilm.tokenizer import Tokenizer
from minilm.tokenizer.shards import TokenShards
from minilm.train import checkpoint, loop
folder = Path({corpus!r})
slow = {slow!r}
if slow == "step":  # after 6 steps (checkpoint at 4), training hangs until the parent kills it
    real_step, calls = loop.train_step, []
    def train_step(*args, **kwargs):
        calls.append(1)
        if len(calls) > 6:
            time.sleep(60)
        return real_step(*args, **kwargs)
    loop.train_step = train_step
if slow == "write":  # the checkpoint of step 8 hangs half-way through its files
    real_write = checkpoint._write
    def write(path, data):
        if ".step_000008" in str(path) and path.name == "state.pt":
            Path({flag!r}).write_text("writing")
            time.sleep(60)
        real_write(path, data)
    checkpoint._write = write
loop.train(loop.TrainConfig(**{config!r}), TokenShards(folder / "shards", "train"), TokenShards(folder / "shards", "val"),
           Tokenizer.load(folder / "tokenizer"), {out!r}, progress=False)
"""


def start_child(corpus, out: Path, slow: str, flag: Path) -> subprocess.Popen:
    code = CHILD.format(config=asdict(TINY), corpus=str(corpus["folder"]), slow=slow, flag=str(flag), out=str(out))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, stderr=subprocess.PIPE)


def wait_for(condition, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the child exited early: {process.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, "timed out waiting for the child"
        time.sleep(0.05)


def test_killed_processes_resume_from_their_last_checkpoint(corpus, uninterrupted, tmp_path):
    """SIGKILL mid-training, and SIGKILL half-way through writing a checkpoint: both resume to the same result."""
    during_steps, during_write = tmp_path / "steps", tmp_path / "write"
    flag = tmp_path / "writing.flag"
    children = [start_child(corpus, during_steps, "step", flag), start_child(corpus, during_write, "write", flag)]

    def trained_past_checkpoint():
        return any(r.get("step", 0) >= 6 for r in read_log(during_steps / "log.jsonl"))

    wait_for(trained_past_checkpoint, children[0])
    children[0].send_signal(signal.SIGKILL)
    wait_for(flag.exists, children[1])
    children[1].send_signal(signal.SIGKILL)
    for child in children:
        child.wait()
        child.stderr.close()

    assert ckpt.latest_checkpoint(during_steps / "checkpoints").name == "step_000004"
    # killed while writing step 8: the half-written folder is hidden, step 4 is intact and readable
    assert ckpt.latest_checkpoint(during_write / "checkpoints").name == "step_000004"
    assert list((during_write / "checkpoints").glob(".step_000008.tmp-*"))
    ckpt.read_checkpoint(during_write / "checkpoints" / "step_000004")
    for out in (during_steps, during_write):
        assert run(corpus, out)["finished"]
        for name, tensor in uninterrupted["weights"].items():
            assert torch.equal(weights(out)[name], tensor), name
        assert train_losses(out) == uninterrupted["losses"]
    assert not list((during_write / "checkpoints").glob(".step_*"))  # the next save cleared the leftovers


# --- bad input -------------------------------------------------------------------------------------


def test_shards_of_another_tokenizer_are_refused(corpus, tmp_path):
    other = make_corpus(tmp_path / "other", vocab_size=300, seed=1)
    with pytest.raises(ValueError, match="different tokenizers.*python -m minilm tokenizer --force"):
        train(TINY, TokenShards(other / "shards", "train"), corpus["val"], corpus["tokenizer"], tmp_path / "out",
              progress=False)
    same_size = make_corpus(tmp_path / "same", vocab_size=320, seed=2)
    with pytest.raises(ValueError, match=r"^the train and val data were made with different tokenizers; make both with "
                                         r"one \(for token shards: python -m minilm tokenizer --force\)$"):
        train(TINY, TokenShards(same_size / "shards", "train"), corpus["val"], corpus["tokenizer"], tmp_path / "out",
              progress=False)


def test_a_validation_split_shorter_than_a_window_fails_before_training(corpus, tmp_path):
    write_shards(["Mia went to the park."], corpus["folder"] / "tokenizer", tmp_path, "val", workers=0, progress=False)
    with pytest.raises(ValueError, match="too few for one window of 32"):
        train(TINY, corpus["train"], TokenShards(tmp_path, "val"), corpus["tokenizer"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_missing_shards_fail_with_the_command_that_rebuilds_them(corpus, tmp_path, monkeypatch):
    from minilm.train.stage import run_pretrain_stage

    monkeypatch.setenv("MINILM_HOME", str(tmp_path / "home"))
    (tmp_path / "broken" / "tokenizer").mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer.tiktoken"):
        (tmp_path / "broken" / "tokenizer" / name).write_bytes((corpus["folder"] / "tokenizer" / name).read_bytes())
    artifact = Artifact(tmp_path / "broken", {"key": "broken"})
    with pytest.raises(FileNotFoundError, match="python -m minilm tokenizer --force"):
        run_pretrain_stage("ci", config=replace(TINY, max_steps=4), tokenizer=artifact, progress=False)
    assert not list((tmp_path / "home" / "runs" / "ci").glob("pretrain*"))  # nothing that looks finished


def test_a_checkpoint_of_another_config_or_launch_is_refused(corpus, tmp_path):
    run(corpus, tmp_path, until_step=4)
    with pytest.raises(ckpt.CheckpointError, match=re.escape(
            "made by a run with another config (n_embd: checkpoint 32, now 64; lr: checkpoint 0.003, now 0.01); use that "
            "config to resume, or train from scratch (resume=False; python -m minilm pretrain --force)")):
        run(corpus, tmp_path, replace(TINY, n_embd=64, lr=1e-2))
    with pytest.raises(ckpt.CheckpointError, match="lr: checkpoint 0.003, now 0.01"):
        run(corpus, tmp_path, replace(TINY, lr=1e-2))
    meta_path = tmp_path / "checkpoints" / "step_000004" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "world_size": 2}))
    with pytest.raises(ckpt.CheckpointError, match="written by 2 process.*this run has 1.*--nproc_per_node=2"):
        run(corpus, tmp_path)
    meta_path.write_text(json.dumps(meta))
    # logistics may change between a run and its resumption
    assert run(corpus, tmp_path, replace(TINY, eval_every=100, log_every=3), until_step=5)["steps"] == 5
    # or start over: the old run's checkpoints and log go
    assert run(corpus, tmp_path, replace(TINY, n_embd=64), resume=False, until_step=1)["steps"] == 1
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "checkpoints")] == ["step_000001"]
    assert read_log(tmp_path / "log.jsonl")[0]["step"] == 0
    # starting over where nothing was before deletes nothing, and does not fail
    assert run(corpus, tmp_path / "new", replace(TINY, n_embd=64), resume=False, until_step=1)["steps"] == 1


def test_from_preset_reads_the_named_preset_whatever_minilm_preset_says(monkeypatch):
    from minilm.presets import PRESETS

    monkeypatch.setenv("MINILM_PRESET", "cpu")
    config = TrainConfig.from_preset("ci", max_steps=70)
    ci = PRESETS["pretrain"]["ci"]
    assert (config.n_embd, config.context, config.lr, config.max_steps) == (ci["n_embd"], ci["context"], ci["lr"], 70)
    assert TrainConfig.from_preset().n_embd == PRESETS["pretrain"]["cpu"]["n_embd"] != ci["n_embd"]  # no name: $MINILM_PRESET


@pytest.mark.parametrize("allocate", [
    lambda: torch.empty(2**50, dtype=torch.uint8),  # a real failure of the CPU allocator (a petabyte)
    lambda: (_ for _ in ()).throw(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")),
])
def test_a_batch_too_big_for_memory_names_the_batch_and_the_fix(corpus, monkeypatch, allocate):
    config = replace(TINY, batch_size=6)
    model = GPT(config.model_config(320))
    optimizer = make_optimizer(model, 1e-3, 0.1)
    batches = micro_batches(*step_windows(corpus["train"], config, step=0), config, 0)
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *args, **kwargs: (allocate(), forward(*args, **kwargs))[1])
    with pytest.raises(loop.BatchTooLargeError, match=r"6 windows x 32 tokens does not fit in the memory of cpu.*"
                                                      r"halve TrainConfig.batch_size and double grad_accum.*--set batch_size=3 --set grad_accum.*"
                                                      r"batch_size of the config of a classifier, reward model or RLHF run"):
        train_step(model, optimizer, hardware.grad_scaler("cpu", "fp32"), batches, 1e-3, 1.0, "cpu")
    # other errors are not mistaken for memory
    monkeypatch.setattr(model, "forward", lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="^shape mismatch$"):
        train_step(model, optimizer, hardware.grad_scaler("cpu", "fp32"), batches, 1e-3, 1.0, "cpu")


def test_a_corrupt_checkpoint_is_reported_not_loaded(corpus, tmp_path):
    run(corpus, tmp_path, until_step=4)
    folder = tmp_path / "checkpoints" / "step_000004"
    weights_file = folder / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[-10] ^= 0xFF
    weights_file.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="corrupt: model.safetensors does not match the sha256.*delete"):
        run(corpus, tmp_path)
    (folder / "state.pt").write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match="corrupt|incomplete"):
        ckpt.read_checkpoint(folder)
    (folder / "checkpoint.json").write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="damaged"):
        run(corpus, tmp_path)


@pytest.mark.parametrize("edit", ["no sha256", "no sha256 of state.pt", "state.pt cut in half", "state.pt emptied",
                                  "model.safetensors cut in half"])
def test_a_checkpoint_edited_by_hand_gets_the_same_clear_error(corpus, tmp_path, edit):
    """Edits that keep the recorded sha256s true, or remove them: refused with the file and the fix, never a raw error."""
    import hashlib

    run(corpus, tmp_path, until_step=4)
    folder = tmp_path / "checkpoints" / "step_000004"
    meta_path, state_path = folder / "checkpoint.json", folder / "state.pt"
    meta = json.loads(meta_path.read_text())
    if edit == "no sha256":
        del meta["sha256"]
        expected = f"{meta_path} has no valid 'sha256'"
    elif edit == "no sha256 of state.pt":
        del meta["sha256"]["state.pt"]
        expected = f"{meta_path} has no valid sha256 of state.pt"
    elif edit == "model.safetensors cut in half":
        weights_path = folder / "model.safetensors"
        weights = weights_path.read_bytes()[: weights_path.stat().st_size // 2]
        weights_path.write_bytes(weights)
        meta["sha256"]["model.safetensors"] = hashlib.sha256(weights).hexdigest()  # the hash re-recorded
        expected = f"{weights_path} is not a readable safetensors file ("
    else:
        state = state_path.read_bytes()
        state = state[: len(state) // 2] if edit == "state.pt cut in half" else b""
        state_path.write_bytes(state)
        meta["sha256"]["state.pt"] = hashlib.sha256(state).hexdigest()  # the hash re-recorded, so it matches
        expected = f"{state_path} is not a readable PyTorch file"
        if edit == "state.pt emptied":  # torch.load raises an EOFError without a message: its name is the reason
            expected += " (EOFError)"
    meta_path.write_text(json.dumps(meta))
    for load in (lambda: run(corpus, tmp_path), lambda: ckpt.read_checkpoint(folder), lambda: ckpt.load_model(folder)):
        with pytest.raises(ckpt.CheckpointError, match=re.escape(expected) + f".*delete {re.escape(str(folder))} to resume"):
            load()


class Payload:
    """What a malicious state file could hold: unpickling it calls a function of the author's choice."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_a_state_file_with_pickled_objects_is_not_unpickled(corpus, tmp_path):
    run(corpus, tmp_path, until_step=4)
    folder = tmp_path / "checkpoints" / "step_000004"
    import io

    buffer = io.BytesIO()
    torch.save({"step": 4, "payload": Payload()}, buffer)  # unpickling it would call a function: refused

    (folder / "state.pt").write_bytes(buffer.getvalue())
    meta = json.loads((folder / "checkpoint.json").read_text())
    import hashlib

    meta["sha256"]["state.pt"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="other than tensors and plain containers"):
        ckpt.read_checkpoint(folder)


def test_broken_launches_and_devices_get_clear_errors(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RuntimeError, match="incomplete distributed launch: RANK set but LOCAL_RANK, WORLD_SIZE.*torchrun"):
        distributed.start("cpu")
    for name, value in (("LOCAL_RANK", "zero"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")):
        monkeypatch.setenv(name, value)
    with pytest.raises(RuntimeError, match="LOCAL_RANK='zero' is not an integer"):
        distributed.start("cpu")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(RuntimeError, match="inconsistent launch: RANK=2.*WORLD_SIZE=2"):
        distributed.start("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU; use device='cpu'"):
            hardware.pick_device("cuda")
    with pytest.raises(ValueError, match="causal objective needs a decoder"):
        from minilm.train.objectives import check_objective

        check_objective("causal", TINY.model_config(320).replace(causal=False))
    with pytest.raises(ValueError, match="n_embd=30 does not divide by n_head=4"):
        replace(TINY, n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="precision='fp8'"):
        replace(TINY, precision="fp8")


def test_a_peak_below_what_training_reaches_is_raised_so_mfu_never_exceeds_100_percent(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "peak_flops", lambda device, precision: hardware.Peak(1e3, "measured while busy"))
    config = replace(TINY, max_steps=4, eval_every=4, sample_every=4, checkpoint_every=4)
    summary = run(corpus, tmp_path / "run", config)
    mfus = [r["mfu"] for r in read_log(tmp_path / "run" / "log.jsonl") if r["kind"] == "train"]
    assert len(mfus) == 2 and max(mfus) <= 1 and summary["mfu"] <= 1
    assert summary["peak_raised_from"] == 1e3 and summary["peak_flops"] > 1e3
    assert summary["peak_source"] == "measured while busy"


# --- the stage -------------------------------------------------------------------------------------


def test_the_stage_trains_once_then_reuses_and_reports(corpus, tmp_path, monkeypatch):
    from minilm.train import stage

    monkeypatch.setenv("MINILM_HOME", str(tmp_path / "home"))
    tokenizer = Artifact(corpus["folder"], {"key": "corpus-v1"})
    config = replace(TINY, max_steps=4, eval_every=2, final_samples=4)
    artifact = stage.run_pretrain_stage("ci", config=config, tokenizer=tokenizer, progress=False)
    assert not artifact.reused and artifact.summary["steps"] == 4
    samples = json.loads((artifact.path / "samples.json").read_text())
    assert len(samples["samples"]) == 4 and samples["quality"] == artifact.summary["quality"]
    assert artifact.summary["samples"] == samples["samples"][:3]  # the summary shows the first three
    files = set(artifact.manifest["files"])
    assert {"checkpoint/model.safetensors", "checkpoint/state.pt", "checkpoint/checkpoint.json", "log.jsonl",
            "samples.json", "training.png"} <= files
    assert not (tmp_path / "home" / "runs" / "ci" / ".pretrain-work").exists()
    asked = []  # without a tokenizer artifact: the tokenizer stage's, of the same preset
    monkeypatch.setattr("minilm.tokenizer.stage.run_tokenizer_stage", lambda preset: (asked.append(preset), tokenizer)[1])
    again = stage.run_pretrain_stage("ci", config=config, progress=False)
    assert again.reused and asked == ["ci"]
    # force: trained anew, even over an interrupted run of another config (which it deletes, not resumes)
    work = tmp_path / "home" / "runs" / "ci" / ".pretrain-work"
    (work / "checkpoints" / "step_000002").mkdir(parents=True)
    (work / "run.json").write_text(json.dumps({"config": {"lr": 0.5}}))
    ticks = iter(range(100))
    monkeypatch.setattr(stage, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: 1.23456 * next(ticks))}))
    forced = stage.run_pretrain_stage("ci", force=True, config=config, tokenizer=tokenizer, progress=False)
    assert not forced.reused and forced.summary["steps"] == 4 and not work.exists()
    assert forced.summary["seconds"] == 1.23  # the build's wall time, to the hundredth (on the clock below)
    model = stage.load_pretrained(artifact)
    assert model.config.vocab_size == 320 and model.config.n_layer == 2
    assert stage.load_pretrained(artifact, "meta").transformer.wte.weight.is_meta  # on the device asked for
    from minilm.train import report

    text = report.describe(artifact)
    assert "stage 4 (pretrain)" in text and "bits/byte" in text and "stage 5 (scaling): 1 process on cpu" in text
    section = report.report_section(artifact, tmp_path / "report")
    assert section.figures[0].exists() and "val loss" in section.headline
    scaling = report.scaling_section(artifact, tmp_path / "report")
    assert scaling.title == "Stage 5: scaling" and "| processes | 1 (no communication) |" in scaling.body
    assert 0 < artifact.summary["mfu"] <= 1 and "| MFU |" in scaling.body


def test_the_work_folder_keeps_a_run_to_resume_and_refuses_to_drop_another(tmp_path):
    from minilm.train import stage

    tokenizer = Artifact(tmp_path, {"key": "tokenizer-1"})
    first = stage.work_run(TINY, tokenizer)
    assert first["tokenizer"] == "tokenizer-1" and first["config"]["lr"] == TINY.lr and not set(first["config"]) & loop.LOGISTICS
    work, interrupted = tmp_path / ".pretrain-work", tmp_path / ".pretrain-work" / "checkpoints" / "step_000004"
    stage.prepare_work_folder(work, first)
    assert json.loads((work / "run.json").read_text()) == first
    interrupted.mkdir(parents=True)
    stage.prepare_work_folder(work, stage.work_run(replace(TINY, eval_every=7), tokenizer))  # other logistics: the same run
    assert interrupted.is_dir()
    other = stage.work_run(replace(TINY, lr=0.01, seed=1), Artifact(tmp_path, {"key": "tokenizer-2"}))
    with pytest.raises(ckpt.CheckpointError, match=re.escape(
            ".pretrain-work/ holds a run interrupted at step_000004 with another config (lr: checkpoint 0.003, now 0.01; "
            "seed: checkpoint 1337, now 1); "
            "another tokenizer (stage 2 was rebuilt since): run again with the checkpoint's values to resume it, "
            "or add --force (force=True) to delete it and start over")):
        stage.prepare_work_folder(work, other)
    assert stage.changes(first, {**first, "code": "edited"}) == ["other training or model code"]
    (work / "run.json").write_text("{cut sho")
    with pytest.raises(ckpt.CheckpointError, match=re.escape("with settings that were not recorded (its run.json is missing")):
        stage.prepare_work_folder(work, first)
    assert interrupted.is_dir()  # refused: nothing deleted
    stage.prepare_work_folder(work, other, fresh=True)  # --force
    assert not interrupted.exists() and json.loads((work / "run.json").read_text()) == other
    (work / "log.jsonl").write_text("")  # a run of another config without a checkpoint has nothing to lose: replaced
    stage.prepare_work_folder(work, first)
    assert sorted(p.name for p in work.iterdir()) == ["run.json"] and json.loads((work / "run.json").read_text()) == first


def test_the_command_line_changes_the_presets_config_with_set(capsys):
    from minilm.__main__ import build_parser, setting, train_config

    args = build_parser().parse_args(["pretrain", "--preset", "ci", "--set", "batch_size=4", "--set", "grad_accum=2",
                                      "--set", "precision=fp32", "--set", "eval_tokens=None"])
    config = train_config("ci", args.set)
    preset = TrainConfig.from_preset("ci")
    assert (config.batch_size, config.grad_accum, config.precision, config.eval_tokens) == (4, 2, "fp32", None)
    assert config.tokens_per_step() == preset.tokens_per_step() and config.n_embd == preset.n_embd  # the same step, in two passes
    with pytest.raises(SystemExit, match=r"--set batchsize: TrainConfig has no such field; did you mean batch_size\?"):
        train_config("ci", [setting("batchsize=4")])
    with pytest.raises(SystemExit, match="batch_size must be a positive integer"):  # more mistakes: test_cli.py
        train_config("ci", [setting("batch_size=0")])
    with pytest.raises(SystemExit):  # argparse: not NAME=VALUE
        build_parser().parse_args(["pretrain", "--set", "batch_size"])
    assert "NAME=VALUE" in capsys.readouterr().err


def test_the_loop_hands_its_world_to_every_step(corpus, tmp_path, monkeypatch):
    """Each step weights its micro-batches by their share of the tokens predicted on all processes together
    (`loss_weights`), which needs the world: with the masked objective the processes predict different numbers of
    tokens, so a step that forgot it would weight them as if alone."""
    worlds = []
    real_step = loop.train_step

    def spy(*args, **kwargs):
        worlds.append(args[8] if len(args) > 8 else kwargs.get("world"))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", spy)
    world = distributed.World()
    run(corpus, tmp_path, replace(TINY, max_steps=2, warmup_steps=1, final_samples=0), world=world)
    assert worlds == [world, world]


# --- the same loop for fine-tuning: any data with TokenShards' methods, a model to start from ---


class HalfIgnored:
    """Token-shard windows whose targets are ignored (-100) in the first half of every window, as
    fine-tuning's conversations are outside the assistant's turns."""

    def __init__(self, shards):
        self.shards, self.split, self.vocab_size = shards, shards.split, shards.vocab_size
        self.tokenizer_fingerprint = shards.tokenizer_fingerprint

    def _ignore(self, x, y):
        y = y.copy()
        y[:, : y.shape[1] // 2] = -100
        return x, y

    def batch(self, n, context, generator, rank=0, world_size=1):
        return self._ignore(*self.shards.batch(n, context, generator, rank, world_size))

    def eval_batch(self, context, max_tokens=None):
        return self._ignore(*self.shards.eval_batch(context, max_tokens))


def test_the_loop_fine_tunes_a_given_model_on_masked_targets(corpus, tmp_path):
    config = replace(TINY, dropout=0.0, max_steps=4, final_samples=0, eval_tokens=None)
    start = GPT(config.model_config(corpus["tokenizer"].vocab_size), seed=123)
    before = {k: v.clone() for k, v in start.state_dict().items()}
    train_data, val_data = HalfIgnored(corpus["train"]), HalfIgnored(corpus["val"])
    with torch.no_grad():  # the loop's first loss is the given model's loss on the first step's windows
        x, y = step_windows(train_data, config, 0)
        _, first = start(torch.from_numpy(x), torch.from_numpy(y))
    summary = train(config, train_data, val_data, corpus["tokenizer"], tmp_path, model=start, progress=False)
    log = read_log(tmp_path / "log.jsonl")
    assert log[0]["parameters"] == count_parameters(start)
    assert any(not torch.equal(before[k], v) for k, v in start.state_dict().items())  # it trained the model it was given
    x, y = val_data.eval_batch(config.context)
    assert summary["val_tokens"] == int((y != -100).sum()) == y.size // 2  # only the targets that are not ignored count
    config1 = replace(config, log_every=1, max_steps=1, warmup_steps=0)  # the first step's loss, logged at once
    again = GPT(config.model_config(corpus["tokenizer"].vocab_size), seed=123)
    train(config1, train_data, val_data, corpus["tokenizer"], tmp_path / "one", model=again, progress=False)
    assert read_log(tmp_path / "one" / "log.jsonl")[1]["loss"] == pytest.approx(float(first), rel=1e-5)


def test_the_loop_refuses_a_model_of_another_shape(corpus, tmp_path):
    config = replace(TINY, max_steps=1, warmup_steps=0)
    other = GPT(replace(config.model_config(corpus["tokenizer"].vocab_size), n_embd=64))
    with pytest.raises(ValueError, match=r"does not have the shape of TrainConfig \(n_embd: .*TrainConfig.for_model"):
        train(config, corpus["train"], corpus["val"], corpus["tokenizer"], tmp_path, model=other, progress=False)
    shaped = TrainConfig.for_model(other.config, max_steps=1, warmup_steps=0, device="cpu")
    assert (shaped.n_embd, shaped.n_layer, shaped.context, shaped.objective) == (64, 2, 32, "causal")
    assert shaped.model_config(other.config.vocab_size) == other.config
