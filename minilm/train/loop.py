"""The training loop: the one that turns a random transformer into a language model (stage 4), and
the pretrained model into a chat model (stage 6, fine-tuning) and, later, a preferred one (stage 7).

One optimizer step, on every process:

    lr = warmup-then-cosine(step)
    for each micro-batch (gradient accumulation):
        windows of context+1 tokens from this process's part of the train shards
        loss = model(inputs, targets) * its share of the    (bf16 autocast where the hardware has it)
               step's predicted tokens
        loss.backward()                                     (DDP averages gradients across processes
                                                             after the last micro-batch only)
    clip the gradient norm to 1; AdamW step; zero the gradients

and from time to time: log (JSON lines), evaluate on the validation split (loss, perplexity, bits
per byte), write samples, save a checkpoint. `train` reads top to bottom in that order.

**Batches.** Each step draws `batch_size * grad_accum` windows per process from a NumPy generator
seeded by (seed, step, rank): the data order is a function of the step, so a resumed run reads the
same windows as an uninterrupted one, and splitting a step into micro-batches does not change which
windows it sees (only how many are in memory at once). Process r of N draws only from the r-th of N
contiguous parts of the stream, so processes never train on the same tokens.

**Gradient accumulation.** A batch too big for memory is split into micro-batches. Each
micro-batch's loss is a mean over its predicted tokens, so it is weighted by its share of all the
tokens the step predicts (on every process): the accumulated gradient is then the gradient of the
mean loss over the whole batch, exactly as one big batch would give. Dividing by the number of
micro-batches is the same for the causal objective, where every position is predicted, but not for
the masked one, where each micro-batch has its own random number of masked tokens.

**The data** is anything with the methods of `TokenShards` that the loop calls: `batch` (a step's
windows, drawn with the step's generator from this process's part), `eval_batch` (the validation
windows, the same at every evaluation), and `split`, `vocab_size`, `tokenizer_fingerprint` (checked
against the tokenizer). Pretraining passes token shards; fine-tuning passes conversations
(`minilm.finetune.chat.SFTData`), whose targets are -100 wherever no loss is taken: the weighting
above then counts only the trained tokens. Fine-tuning also passes the `model` to start from (the
pretrained one, perhaps with LoRA adapters, whose frozen weights the optimizer never sees).

**Weight decay** (AdamW's, decoupled from the gradient) pulls weights towards zero. It applies to
the 2-D parameters only, the matrices and embeddings that store what the model knows; the biases
and norm gains, which set scales and offsets, are left free (`minilm.model.make_optimizer`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from minilm import hardware
from minilm.files import atomic_write
from minilm.model.accounting import count_parameters, flops_per_token
from minilm.model.config import GPTConfig
from minilm.model.generate import generate
from minilm.model.gpt import GPT, IGNORE_INDEX, make_optimizer
from minilm.tokenizer.shards import EOT, TokenShards
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.train import checkpoint as ckpt
from minilm.train import distributed
from minilm.train.distributed import World
from minilm.train.objectives import MASK_TOKEN, OBJECTIVES, check_objective, make_batch, token_losses
from minilm.train.quality import STORY_PROMPTS, text_quality
from minilm.train.schedule import learning_rate

LOG, CHECKPOINTS = "log.jsonl", "checkpoints"


@dataclass
class TrainConfig:
    """A pretraining run: the model's shape (its vocabulary comes from the tokenizer), the optimisation,
    the hardware, and how often to look. The defaults are a small model; each preset sets its own sizes
    (minilm/presets.py)."""

    # the model
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    context: int = 256  # tokens per window: the longest sequence the model reads
    position: str = "learned"
    norm: str = "layernorm"
    mlp: str = "gelu"
    dropout: float = 0.0
    objective: str = "causal"  # or "masked": an encoder trained with BERT's masking
    mask_rate: float = 0.15
    # the optimisation
    batch_size: int = 16  # windows per process per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 1000
    lr: float = 1e-3
    min_lr: float = 1e-4  # the floor of the cosine
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    seed: int = 1337
    # the hardware
    device: str | None = None  # None: this process's GPU if there is one, else the CPU
    precision: str = "auto"  # "auto" (bf16 where native, fp16 on older GPUs, else fp32), "fp32", "bf16", "fp16"
    compile: bool = False  # torch.compile the model (worth it on GPUs for long runs)
    # looking at the run
    log_every: int = 10
    eval_every: int = 200
    eval_tokens: int | None = 32_768  # validation tokens per evaluation during training (the final one reads all)
    sample_every: int = 500
    sample_tokens: int = 96
    final_samples: int = 20  # samples written at the end and scored for text quality
    checkpoint_every: int = 250
    keep_checkpoints: int = 1

    def __post_init__(self):
        positive = ("n_layer", "n_head", "n_embd", "context", "batch_size", "grad_accum", "max_steps",
                    "log_every", "eval_every", "sample_every", "sample_tokens", "checkpoint_every")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if not 0 < self.mask_rate < 1:
            raise ValueError(f"mask_rate must be in (0, 1), got {self.mask_rate}")
        if not 0 < self.min_lr <= self.lr or not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError(
                f"need 0 < min_lr <= lr and 0 <= warmup_steps <= max_steps; got lr={self.lr}, min_lr={self.min_lr}, "
                f"warmup_steps={self.warmup_steps}, max_steps={self.max_steps}"
            )
        if self.weight_decay < 0 or self.grad_clip < 0 or not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("weight_decay and grad_clip must be >= 0, beta1 and beta2 in [0, 1)")
        if self.precision not in hardware.PRECISIONS:
            raise ValueError(f"precision={self.precision!r}; choose one of {', '.join(hardware.PRECISIONS)}")
        if self.final_samples < 0 or self.keep_checkpoints < 1:
            raise ValueError("final_samples must be >= 0 and keep_checkpoints >= 1")
        if self.eval_tokens is not None and self.eval_tokens < self.context:
            raise ValueError(f"eval_tokens={self.eval_tokens} must be None (all) or at least one window ({self.context})")
        self.model_config(vocab_size=512)  # a bad shape (n_embd % n_head, ...) fails now, not after loading data

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides) -> "TrainConfig":
        from minilm.presets import config_for

        return config_for(cls, "pretrain", preset, **overrides)

    @classmethod
    def for_model(cls, model_config: GPTConfig, **overrides) -> "TrainConfig":
        """A config whose model fields are those of `model_config`: for training a model that exists
        (fine-tuning), whose shape is not the config's to choose."""
        shape = {name: getattr(model_config, name) for name in SHAPE_FIELDS}
        shape["objective"] = "causal" if model_config.causal else "masked"
        return cls(**shape, **overrides)

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(
            vocab_size=vocab_size, context=self.context, n_layer=self.n_layer, n_head=self.n_head,
            n_embd=self.n_embd, position=self.position, norm=self.norm, mlp=self.mlp, dropout=self.dropout,
            causal=self.objective == "causal",
        )

    def tokens_per_step(self, world_size: int = 1) -> int:
        return self.batch_size * self.grad_accum * self.context * world_size


# The fields of TrainConfig that give the model its shape (the vocabulary comes from the tokenizer).
SHAPE_FIELDS = ("n_layer", "n_head", "n_embd", "context", "position", "norm", "mlp", "dropout")

# Fields that may change between a run and its resumption: they change how often we look, or how
# fast a step runs, not what a step computes. Any other change makes the checkpoint another run's.
LOGISTICS = frozenset({
    "log_every", "eval_every", "eval_tokens", "sample_every", "sample_tokens", "final_samples",
    "checkpoint_every", "keep_checkpoints", "compile", "device",
})


# --- data -----------------------------------------------------------------------------------------


def derived_seed(*numbers: int) -> int:
    """A seed for one purpose at one step of one process, from (seed, step, rank, purpose)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1, np.uint64)[0] >> 1)


DATA, MASKS, DROPOUT, EVAL_MASKS = 0, 1, 2, 3  # purposes of derived seeds


def step_windows(data: TokenShards, config: TrainConfig, step: int, rank: int = 0, world_size: int = 1):
    """The windows (x, y) that process `rank` trains on at `step`: numpy int64 (batch_size * grad_accum, context)."""
    generator = np.random.default_rng(derived_seed(config.seed, step, rank, DATA))
    return data.batch(config.batch_size * config.grad_accum, config.context, generator, rank, world_size)


def micro_batches(x, y, config: TrainConfig, step: int, rank: int = 0, mask_id: int | None = None, vocab_size: int | None = None):
    """A step's windows as `grad_accum` (inputs, targets) pairs of CPU tensors, masked for the masked objective."""
    generator = torch.Generator().manual_seed(derived_seed(config.seed, step, rank, MASKS))
    inputs, targets = make_batch(x, y, config.objective, mask_id=mask_id, vocab_size=vocab_size,
                                 generator=generator, mask_rate=config.mask_rate)
    return list(zip(inputs.chunk(config.grad_accum), targets.chunk(config.grad_accum)))


# --- one step -------------------------------------------------------------------------------------


def loss_weights(batches: list[tuple[torch.Tensor, torch.Tensor]], world: World | None = None) -> list[float]:
    """What each micro-batch's mean loss is multiplied by, so that the step's gradient is the gradient of
    the mean loss over every token it predicts, on all processes together.

    Micro-batch i predicts n_i tokens (its targets that are not ignored) of the N the step predicts in
    all; its weight is n_i / N. DDP averages gradients over processes, which divides by the world
    size, so the weights are multiplied by it to undo that.
    """
    world = world or World()
    counts = [int((targets != IGNORE_INDEX).sum()) for _, targets in batches]
    total = distributed.all_reduce_sum([float(sum(counts))], world)[0]
    if total == 0:
        raise ValueError("this step predicts no token: every target is ignored (-100); check the masking rate and the data")
    return [count * world.world_size / total for count in counts]


class BatchTooLargeError(MemoryError):
    """A micro-batch whose activations do not fit in the device's memory."""


@contextlib.contextmanager
def explain_out_of_memory(inputs: torch.Tensor, device: str):
    """Turn the allocator's out-of-memory error into one that names the micro-batch and the fix.

    The activations kept for the backward pass grow with windows x context x width x layers; the
    usual fix keeps the tokens per step and lowers the memory: fewer windows per micro-batch, more
    micro-batches. (CUDA raises torch.OutOfMemoryError; the CPU allocator a RuntimeError or MemoryError.)
    """
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as error:
        text = str(error)
        if not isinstance(error, (torch.OutOfMemoryError, MemoryError)) and not (
            "out of memory" in text or "can't allocate memory" in text
        ):
            raise
        windows, context = inputs.shape[0], inputs.shape[-1]  # preference pairs come as (pairs, 2, tokens)
        raise BatchTooLargeError(
            f"a micro-batch of {windows} windows x {context} tokens does not fit in the memory of {device} "
            f"({text.splitlines()[0][:200] if text else type(error).__name__}). Keep the tokens per step and use "
            f"less memory at once: halve TrainConfig.batch_size and double grad_accum (e.g. python -m minilm pretrain "
            f"--set batch_size={max(1, windows // 2)} --set grad_accum=<twice yours>) in pretraining and SFT, or halve "
            f"the batch_size of the config of a classifier, reward model or RLHF run; or use precision='bf16', a "
            f"shorter context or a smaller model"
        ) from None


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    lr: float,
    grad_clip: float,
    device: str,
    precision: str = "fp32",
    world: World | None = None,
    only_trained: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over `batches` (micro-batches); returns (this process's weighted loss, the
    gradient norm before clipping). The weighted losses of all processes add up to world_size times
    the step's mean loss. `only_trained`: the GPT's head runs only where a target is trained (`GPT.forward`).

    `model` may be wrapped in DistributedDataParallel: its gradients are then averaged across
    processes, once, during the last micro-batch's backward pass (`no_sync` skips the others).
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    total = torch.zeros((), device=device)
    for index, ((inputs, targets), weight) in enumerate(zip(batches, loss_weights(batches, world))):
        last = index == len(batches) - 1
        sync = contextlib.nullcontext() if last or not isinstance(model, DistributedDataParallel) else model.no_sync()
        inputs = inputs.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with sync, explain_out_of_memory(inputs, device):
            with hardware.autocast(device, precision):
                _, loss = model(inputs, targets, only_trained=True) if only_trained else model(inputs, targets)
            loss = loss * weight
            scaler.scale(loss).backward()
        total += loss.detach()
    scaler.unscale_(optimizer)  # the true gradients, before clipping (a no-op without fp16)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip if grad_clip > 0 else float("inf"))
    scaler.step(optimizer)  # skipped by the scaler if fp16 gradients overflowed
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total, norm


def train_on_rows(
    model: torch.nn.Module,
    data,
    steps: int,
    batch_size: int,
    lr: float,
    *,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    seed: int = 0,
    precision: str = "fp32",
    after_step: Callable[[int, float, float], None] | None = None,
) -> list[float]:
    """Train the trainable weights of `model` on random batches of an in-memory data set; returns the losses.

    For a head on a pretrained GPT (stage 6's classifier, stage 7's reward model): `data` has a length
    and `rows(index) -> (inputs, targets)`, the batch that `model(inputs, targets)` takes. Each step is
    `train_step` (AdamW from `make_optimizer`, clipping, the precision policy) at the schedule's rate:
    a warmup over the first tenth of the steps, then a cosine decay to a tenth of the peak. Rows are
    drawn with replacement from a generator seeded by `seed`. `after_step(step, lr, loss)` runs after
    each step (to evaluate, say).
    """
    device = str(next(model.parameters()).device)
    optimizer = make_optimizer(model, lr, weight_decay)
    scaler = hardware.grad_scaler(device, precision)
    generator = torch.Generator().manual_seed(seed)
    warmup = steps // 10
    model.train()
    losses = []
    for step in range(steps):
        rate = learning_rate(step, lr, warmup, steps, lr / 10)
        batch = data.rows(torch.randint(len(data), (batch_size,), generator=generator))
        loss, _ = train_step(model, optimizer, scaler, [batch], rate, grad_clip, device, precision)
        losses.append(loss.item())
        if after_step is not None:
            after_step(step, rate, losses[-1])
    model.eval()
    return losses


# --- evaluation and samples -----------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    data: TokenShards,
    config: TrainConfig,
    token_bytes: np.ndarray | None,
    world: World,
    precision: str,
    max_tokens: int | None = None,
    mask_id: int | None = None,
) -> dict:
    """Validation loss (nats per predicted token), perplexity, and bits per byte.

    Bits per byte divides the loss summed over text tokens by ln 2 and by the bytes those tokens
    stand for: unlike the loss, it does not depend on the tokenizer, so models with different
    vocabularies compare (special tokens, 0 bytes, are left out of both sums, as nanochat does).
    For the masked objective only masked positions count, and bits per byte is not defined.
    Each process evaluates every world_size-th window; the sums are added across processes.
    """
    device = world.device
    x, y = data.eval_batch(config.context, max_tokens)
    x, y = x[world.rank :: world.world_size], y[world.rank :: world.world_size]
    nbytes = torch.from_numpy(token_bytes.astype(np.int64)).to(device) if token_bytes is not None else None
    generator = torch.Generator().manual_seed(derived_seed(config.seed, 0, world.rank, EVAL_MASKS))
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, predictions, loss on text, bytes
    was_training = model.training
    model.eval()
    for i in range(0, len(x), config.batch_size):
        inputs, targets = make_batch(x[i : i + config.batch_size], y[i : i + config.batch_size], config.objective,
                                     mask_id=mask_id, vocab_size=model.config.vocab_size, generator=generator,
                                     mask_rate=config.mask_rate)
        inputs, targets = inputs.to(device), targets.to(device)
        with hardware.autocast(device, precision):
            logits, _ = model(inputs)
        losses = token_losses(logits, targets).double()
        counted = targets >= 0
        sums[0] += losses[counted].sum()
        sums[1] += counted.sum()
        if nbytes is not None and config.objective == "causal":
            text_bytes = torch.where(counted, nbytes[targets.clamp(min=0)], 0)  # ignored targets (-100) have no bytes
            sums[2] += losses[text_bytes > 0].sum()
            sums[3] += text_bytes.sum()
    model.train(was_training)
    loss_sum, predictions, text_loss, n_bytes = distributed.all_reduce_sum(sums.tolist(), world)
    loss = loss_sum / max(predictions, 1)
    return {
        "val_loss": loss,
        "val_perplexity": math.exp(min(loss, 700)),
        "val_bits_per_byte": text_loss / (math.log(2) * n_bytes) if n_bytes else None,
        "val_tokens": int(predictions),
    }


def write_samples(
    model: GPT,
    tokenizer: Tokenizer,
    count: int,
    max_new_tokens: int,
    precision: str,
    seed: int = 0,
    temperature: float = 0.8,
) -> list[str]:
    """`count` stories, each begun with one of `STORY_PROMPTS` (in turn) after <|endoftext|>, ended at the next one."""
    eot = tokenizer.special_id(EOT)
    prompts = [STORY_PROMPTS[i % len(STORY_PROMPTS)] for i in range(count)]
    ids = [[eot, *tokenizer.encode_ordinary(prompt)] for prompt in prompts]
    room = model.config.context - max(len(p) for p in ids)
    if room < 1:
        return []  # a context too short for the prompts: no samples
    device = str(model.transformer.wte.weight.device)
    with hardware.autocast(device, precision):
        new = generate(model, ids, min(max_new_tokens, room), temperature=temperature, stop_token=eot, seed=seed)
    return [prompt + tokenizer.decode(tokens) for prompt, tokens in zip(prompts, new)]


# --- the log --------------------------------------------------------------------------------------


def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines log; a last line cut short by a crash is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class Log:
    """Appends one JSON object per line to log.jsonl (rank 0 only); flushed at once, so a crash loses nothing written."""

    def __init__(self, path: Path, enabled: bool, keep_until_step: int):
        self.path, self.enabled, self.kept = path, enabled, []
        if enabled:  # a resumed run continues the log from its checkpoint's step; a fresh run starts it anew
            kept = [r for r in read_log(path) if r.get("step", 0) <= keep_until_step] if keep_until_step else []
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))
            self.kept = kept  # the records before the resume, for the summary's speed (`logged_speed`)
            self.file = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        if self.enabled:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.enabled:
            self.file.close()


def logged_speed(records: list[dict]) -> tuple[list[float], list[float]]:
    """The tokens/s and FLOP/s of each timed train record among `records` (a log's, before a resume).

    A resumed run counts them in its summary, so that a run stopped after its last checkpoint and
    resumed reports the speed of the run that never stopped, not none (it has no window left to time).
    """
    timed = [r for r in records if r.get("kind") == "train" and "flop_per_s" in r]
    return [r["tokens_per_s"] for r in timed], [r["flop_per_s"] for r in timed]


# --- the loop -------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    train_data: TokenShards,
    val_data: TokenShards,
    tokenizer: Tokenizer,
    out_dir: str | os.PathLike,
    *,
    model: GPT | None = None,
    world: World | None = None,
    resume: bool = True,
    until_step: int | None = None,
    progress: bool = True,
) -> dict:
    """Train `model` (None: a new one made from `config`, i.e. pretraining) on `train_data`, writing
    log.jsonl and checkpoints/ into `out_dir`; returns a summary.

    With `resume` (the default) a run continues from the newest checkpoint in `out_dir`, exactly as
    if it had never stopped; without it, the run starts over, deleting the checkpoints and the log in
    `out_dir`. `until_step` stops early (after a checkpoint), to continue later.
    Under torchrun, pass the `World` of `distributed.processes()`; every process calls `train`.
    """
    out_dir = Path(out_dir)
    world = world or World(device=hardware.pick_device(config.device))
    device = world.device
    precision = hardware.choose_precision(device, config.precision)
    hardware.allow_tf32(device)
    _check_data(train_data, val_data, tokenizer, config)
    mask_id = tokenizer.special_id(MASK_TOKEN) if config.objective == "masked" else None
    model_config = config.model_config(tokenizer.vocab_size)
    check_objective(config.objective, model_config)

    stage = "pretraining" if model is None else "fine-tuning"
    if model is None:
        model = GPT(model_config, seed=config.seed)
    elif differences := ckpt.config_differences(asdict(model.config), asdict(model_config)):
        raise ValueError(f"the model to train does not have the shape of TrainConfig ({'; '.join(differences)}); "
                         f"set the config's shape from the model's (TrainConfig.for_model)")
    model = model.to(device)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, (config.beta1, config.beta2))
    scaler = hardware.grad_scaler(device, precision)
    step, elapsed, window = 0, 0.0, {"loss": 0.0, "flops": 0.0, "steps": 0, "seconds": 0.0}
    newest = ckpt.latest_checkpoint(out_dir / CHECKPOINTS) if resume else None
    if not resume and world.is_main:  # starting over: the old run's checkpoints would pass for this run's
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
    if newest is not None:
        step, elapsed, window = _restore(newest, model, optimizer, scaler, config, world)
    meta = {"train": asdict(config), "world_size": world.world_size, "precision": precision,
            "tokenizer": train_data.tokenizer_fingerprint}

    stepper: torch.nn.Module = torch.compile(model) if config.compile else model
    if world.distributed:
        stepper = DistributedDataParallel(stepper, device_ids=[torch.device(device).index] if world.backend == "nccl" else None)

    last_step = config.max_steps if until_step is None else min(until_step, config.max_steps)
    log = Log(out_dir / LOG, world.is_main, keep_until_step=step)
    token_bytes = tokenizer.token_bytes()
    # at the model's context, which every window fills; with `only_trained` the head runs only where a target
    # is trained (a sixth of the positions in fine-tuning), and MFU counts the FLOPs a step did, not those it skipped
    counted = flops_per_token(model_config)
    flops, head_flops = counted["training"], counted["head"]
    only_trained = not config.compile
    # the peak FLOP/s of one device, for MFU (measured by rank 0 only; raised if training goes faster)
    peak = hardware.peak_flops(device, precision) if world.is_main else hardware.Peak(float("nan"), "rank 0's")
    tokens_per_step = config.tokens_per_step(world.world_size)
    if world.is_main:
        log.write({"kind": "start", "step": step, "parameters": count_parameters(model), "device": device,
                   "precision": precision, "world_size": world.world_size, "tokens_per_step": tokens_per_step,
                   "peak_flops": peak.flops, "peak_source": peak.source})

    from tqdm.auto import tqdm

    bar = tqdm(total=last_step, initial=step, desc=stage, unit="step", disable=not (progress and world.is_main))
    # a resumed run's speed is the median over every window of the run, those logged before the stop too
    throughput, achieved_flops = logged_speed(log.kept)  # none on a fresh run, or on a rank that keeps no log
    for achieved in achieved_flops:
        peak = peak.at_least(achieved)
    run_started = time.perf_counter() - elapsed  # wall time, counting the attempts before a resume
    # The steps since the last log line: their summed loss (on the device: no wait per step) and time.
    window_loss = torch.tensor(window["loss"] if world.is_main else 0.0, device=device)  # the sum over processes
    window_flops = window["flops"] if world.is_main else 0.0  # the sum over processes, too
    window_steps, window_seconds = window["steps"], window["seconds"]
    while step < last_step:
        started = time.perf_counter()
        x, y = step_windows(train_data, config, step, world.rank, world.world_size)
        batches = micro_batches(x, y, config, step, world.rank, mask_id, model_config.vocab_size)
        if device.startswith("cuda"):  # page-locked memory: the copy to the GPU then overlaps its work (non_blocking)
            batches = [(inputs.pin_memory(), targets.pin_memory()) for inputs, targets in batches]
        if config.dropout > 0:  # dropout draws from PyTorch's global generator: make it a function of the step too
            torch.manual_seed(derived_seed(config.seed, step, world.rank, DROPOUT))
        lr = learning_rate(step, config.lr, config.warmup_steps, config.max_steps, config.min_lr)
        loss, grad_norm = train_step(stepper, optimizer, scaler, batches, lr, config.grad_clip, device, precision, world,
                                     only_trained=only_trained)
        trained = sum(int((targets != IGNORE_INDEX).sum()) for _, targets in batches) if only_trained else x.size
        window_flops += x.size * (flops - head_flops) + trained * head_flops
        step += 1
        window_loss += loss
        window_steps += 1
        logging = step % config.log_every == 0 or step == config.max_steps
        if logging:  # .item() waits for the GPU to finish, so the time below is the steps' true time
            mean_loss, step_flops = distributed.all_reduce_sum([window_loss.item() / window_steps, window_flops], world)
            mean_loss /= world.world_size
        window_seconds += time.perf_counter() - started

        if logging:
            tokens_per_s = tokens_per_step * window_steps / window_seconds
            achieved = step_flops / window_seconds / world.world_size  # FLOP/s of each device
            window_seconds, window_steps, window_flops = 0.0, 0, 0.0
            window_loss.zero_()
            throughput.append(tokens_per_s)
            achieved_flops.append(achieved)
            peak = peak.at_least(achieved)
            log.write({"kind": "train", "step": step, "loss": mean_loss, "lr": lr, "grad_norm": float(grad_norm),
                       "tokens_per_s": tokens_per_s, "flop_per_s": achieved, "mfu": achieved / peak.flops,
                       "tokens": step * tokens_per_step, "elapsed": time.perf_counter() - run_started})
            bar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)  # shown at the next redraw
        if step % config.eval_every == 0 and step < config.max_steps:
            log.write({"kind": "eval", "step": step, **evaluate(model, val_data, config, token_bytes, world, precision,
                                                                  config.eval_tokens, mask_id)})
        if step % config.sample_every == 0 and step < config.max_steps and world.is_main and config.objective == "causal":
            texts = write_samples(model, tokenizer, 2, config.sample_tokens, precision, seed=step)
            log.write({"kind": "samples", "step": step, "texts": texts})
            if progress:
                bar.write(f"step {step}: {texts[0]!r}")
        if step % config.checkpoint_every == 0 or step == last_step:
            elapsed = time.perf_counter() - run_started
            # the steps not logged yet, so that a resumed run's next log line averages the same steps
            window_total, flops_total = distributed.all_reduce_sum([window_loss.item(), window_flops], world)
            window = {"loss": window_total, "flops": flops_total, "steps": window_steps, "seconds": window_seconds}
            _save(out_dir, step, model, optimizer, scaler, config, meta, elapsed, window, world)
        bar.update(1)
    bar.close()

    summary = {"steps": step, "finished": step >= config.max_steps, "parameters": count_parameters(model),
               "tokens": step * tokens_per_step, "train_seconds": time.perf_counter() - run_started, "world_size": world.world_size,
               "device": device, "device_name": hardware.device_name(device), "precision": precision,
               "compiled": config.compile, "peak_flops": peak.flops, "peak_source": peak.source,
               "peak_raised_from": peak.raised_from, "tokens_per_s": float(np.median(throughput)) if throughput else None}
    if achieved_flops:
        summary["mfu"] = float(np.median(achieved_flops)) / peak.flops  # <= 1: the peak is >= every log's rate
    if summary["finished"]:
        final = evaluate(model, val_data, config, token_bytes, world, precision, None, mask_id)
        summary.update(final)
        log.write({"kind": "eval", "step": step, **final})
        if world.is_main and config.objective == "causal" and config.final_samples:
            texts = write_samples(model, tokenizer, config.final_samples, model_config.context, precision, seed=0)
            summary["samples"] = texts
            summary["quality"] = text_quality(texts)
            log.write({"kind": "samples", "step": step, "texts": texts, "quality": summary["quality"]})
    log.close()
    return summary


def _check_data(train_data: TokenShards, val_data: TokenShards, tokenizer: Tokenizer, config: TrainConfig) -> None:
    for data in (train_data, val_data):
        if data.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"the {data.split} data ({data!r}) holds ids of a {data.vocab_size}-token vocabulary but the "
                f"tokenizer has {tokenizer.vocab_size}: they come from different tokenizers; make the data with this "
                f"tokenizer (for token shards: python -m minilm tokenizer --force)"
            )
    if train_data.tokenizer_fingerprint != val_data.tokenizer_fingerprint:
        raise ValueError("the train and val data were made with different tokenizers; make both with one "
                         "(for token shards: python -m minilm tokenizer --force)")
    val_data.eval_batch(config.context, config.context)  # a validation split shorter than one window fails now, not at the first evaluation


def _save(out_dir: Path, step: int, model: GPT, optimizer, scaler, config: TrainConfig, meta: dict, elapsed: float,
          window: dict, world: World) -> None:
    """Rank 0 writes the checkpoint; every process waits for it, so none runs ahead of a checkpoint it might resume from."""
    if world.is_main:
        state = {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": ckpt.rng_state(),
                 "elapsed": elapsed, "log_window": window}
        ckpt.save_checkpoint(out_dir / CHECKPOINTS, step, model, state, meta, keep=config.keep_checkpoints)
    distributed.barrier(world)


def _restore(path: Path, model: GPT, optimizer, scaler, config: TrainConfig, world: World) -> tuple[int, float, dict]:
    """Load a checkpoint into model, optimizer and scaler after checking it belongs to this run;
    returns (step, seconds so far, the loss of the steps not yet logged)."""
    weights, state, meta = ckpt.read_checkpoint(path)
    fresh = "or train from scratch (resume=False; python -m minilm pretrain --force)"
    differences = ckpt.config_differences(meta["model"], asdict(model.config))
    differences += ckpt.config_differences(meta["train"], asdict(config), ignore=LOGISTICS)
    differences = list(dict.fromkeys(differences))  # a field of both configs (n_embd, ...) once
    if differences:
        raise ckpt.CheckpointError(
            f"checkpoint {path} was made by a run with another config ({'; '.join(differences)}); "
            f"use that config to resume, {fresh}"
        )
    if meta["world_size"] != world.world_size:
        raise ckpt.CheckpointError(
            f"checkpoint {path} was written by {meta['world_size']} process(es) and this run has {world.world_size}: "
            f"each process trains on its own part of the data, so the run would not continue the same way; "
            f"launch {meta['world_size']} (torchrun --nproc_per_node={meta['world_size']}), {fresh}"
        )
    model.load_state_dict(weights)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as error:
        raise ckpt.CheckpointError(f"the optimizer state in {path} does not fit this model ({error}); {fresh}") from None
    scaler.load_state_dict(state["scaler"])
    ckpt.set_rng_state(state["rng"])
    return int(state["step"]), float(state["elapsed"]), state["log_window"]
