"""Supervised fine-tuning steps of `minilm`, against TRL's `SFTTrainer`; and LoRA against full fine-tuning.

**The course against TRL.** The same model (the pretrained `cpu` checkpoint; TRL gets its HF export,
`to_hf`), the same conversations (`build_examples("sft_train", ...)`, encoded by `encode_chat`), the
same rows at every step: step s of each side trains on the rows that `step_windows` draws for step s,
in the same order (TRL reads them pre-tokenized, `input_ids` with an `assistant_masks` column, through
a sequential sampler). Our step is the loop's: `step_windows`, `micro_batches`, `train_step` (loss on
the trained tokens, the head computed at those positions only as the loop does, `only_trained`;
clipping, AdamW). TRL's is `SFTTrainer.train`'s: its dataloader and collator, forward through its
fused LM head, backward, clipping, AdamW, its scheduler; it is timed between
consecutive `on_step_end` callbacks, so everything a step does is counted. Float32, `--threads` torch
threads, `--batch` rows a step, one micro-batch. Our rows are padded to the context; TRL's collator
pads to the longest row of the batch, so TRL is measured twice: padded to the context as we are
(`pad_to_multiple_of`, the same shapes: the same work) and with its dynamic padding. TRL turns on
activation checkpointing by default (recomputes the forward during backward to save memory); the
rows say which is on. Tokens/s counts the conversations' tokens (not padding), the same on every side.
The sides run in blocks of `--steps` steps, one block per side per round, so a busy machine slows them
alike; the table gives medians over all rounds' steps (the first step of each block not counted).

**LoRA against full fine-tuning.** Our `train_step` on the same rows, the whole model trained or
`add_lora(rank=8)` on every linear layer of the blocks, one step each in turn (step times). Memory,
two ways: the gradients and AdamW's two moments of the trained weights (12 bytes each in float32,
counted exactly: what LoRA saves), and the peak resident memory (`VmHWM` in /proc/self/status) of a
process that runs 3 steps, one process per side, minus that of a process that only loads the same
model and data: everything training adds (those states, the activations kept for the backward pass,
the allocator's slack). On a model this small the activations dominate the second.

    nice -n 5 python benchmarks/bench_finetune.py                 # 2 to 3 minutes on 2 busy cores
    nice -n 5 python benchmarks/bench_finetune.py --steps 3 --rounds 1   # a quick look
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from minilm import hardware
from minilm.finetune.chat import END, PAD, SFTData
from minilm.finetune.lora import add_lora, trainable_parameters
from minilm.finetune.tasks import build_examples
from minilm.model import GPT, GPTConfig, count_parameters, make_optimizer
from minilm.model.hf import to_hf
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.train.checkpoint import load_model
from minilm.train.loop import TrainConfig, micro_batches, step_windows, train_step

HOME = Path(os.environ.get("MINILM_HOME", "data/runs"))
CPU_SHAPE = dict(context=128, n_layer=4, n_head=4, n_embd=128)
IGNORE = -100


# --- the shared setup -------------------------------------------------------------------------


def setup(args) -> tuple[GPT, Tokenizer, SFTData, TrainConfig]:
    """The model, the tokenizer, the SFT examples and the loop's config (one micro-batch of `--batch` rows)."""
    tokenizer = Tokenizer.load(args.tokenizer)
    if args.checkpoint.is_dir():
        model = load_model(args.checkpoint)
    else:
        print(f"no checkpoint at {args.checkpoint}: a fresh GPT of the cpu shape")
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **CPU_SHAPE), seed=0)
    context = model.config.context
    examples = build_examples("sft_train", args.per_family, 0, tokenizer, context)
    data = SFTData(tokenizer, [e.messages for e in examples], "sft_train")
    config = TrainConfig.for_model(model.config, batch_size=args.batch, grad_accum=1, max_steps=10_000, warmup_steps=0,
                                   lr=1e-4, min_lr=1e-5, precision="fp32", device="cpu")  # fmt: skip
    return model.train(), tokenizer, data, config


def optimizer_for(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return make_optimizer(model, config.lr, config.weight_decay, (config.beta1, config.beta2))


def course_steps(model, optimizer, data: SFTData, config: TrainConfig, steps: int, first: int = 0) -> list[float]:
    """Seconds per step of the loop's step (draw the rows, build the micro-batches, train_step), steps first..first+steps-1."""
    scaler = hardware.grad_scaler("cpu", "fp32")
    times = []
    for step in range(first, first + steps):
        start = time.perf_counter()
        x, y = step_windows(data, config, step)
        batches = micro_batches(x, y, config, step)
        train_step(model, optimizer, scaler, batches, config.lr, config.grad_clip, "cpu", "fp32", only_trained=True)
        times.append(time.perf_counter() - start)
    return times


# --- TRL --------------------------------------------------------------------------------------


def trl_rows(data: SFTData, config: TrainConfig, steps: int) -> tuple[list[dict], int]:
    """The rows our steps 0..steps-1 train on, in order, as TRL's pre-tokenized rows; and their tokens per step."""
    rows, tokens = [], []
    for step in range(steps):
        x, y = step_windows(data, config, step)
        for row_x, row_y in zip(x, y):
            length = int((row_x != data.pad_id).sum())
            trained = [0] + [int(t != IGNORE) for t in row_y[: length - 1]]  # HF's labels sit on the token itself
            rows.append({"input_ids": row_x[:length].tolist(), "assistant_masks": trained})
        tokens.append(int((x != data.pad_id).sum()))
    return rows, int(statistics.median(tokens))


def hf_tokenizer(tokenizer: Tokenizer):
    """A stand-in for an HF tokenizer with the course's ids: the rows arrive tokenized, so TRL asks it only for the pad token."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models
    from transformers import PreTrainedTokenizerFast

    names = {i: f"<id{i}>" for i in range(tokenizer.vocab_size)}
    names.update({i: text for text, i in tokenizer.special_tokens.items()})
    vocab = {name: i for i, name in names.items()}
    return PreTrainedTokenizerFast(tokenizer_object=HFTokenizer(models.WordLevel(vocab, unk_token=PAD)), pad_token=PAD, eos_token=END)


def trl_trainer(model: GPT, tokenizer: Tokenizer, rows: list[dict], config: TrainConfig, steps: int, out: str,
                pad_to_context: bool, checkpointing: bool):  # fmt: skip
    import datasets
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class StepTimes(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.ends = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    args = SFTConfig(
        output_dir=out, per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=1, max_steps=steps,
        learning_rate=config.lr, weight_decay=config.weight_decay, adam_beta1=config.beta1, adam_beta2=config.beta2,
        max_grad_norm=config.grad_clip, completion_only_loss=True, max_length=None, train_sampling_strategy="sequential",
        pad_to_multiple_of=config.context if pad_to_context else None, activation_checkpointing=checkpointing,
        use_cpu=True, bf16=False, report_to="none", save_strategy="no", logging_steps=10_000, disable_tqdm=True,
        dataloader_num_workers=0, seed=config.seed,
    )  # fmt: skip
    timer = StepTimes()
    trainer = SFTTrainer(model=to_hf(model).train(), args=args, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=hf_tokenizer(tokenizer), callbacks=[timer])  # fmt: skip
    return trainer, timer


def trl_steps(trainer, timer) -> list[float]:
    trainer.train()
    return list(np.diff(timer.ends))


# --- LoRA against full, one process each ------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM, which starts afresh at exec; `getrusage`'s ru_maxrss
    would not do: a child inherits its parent's peak across fork and exec."""
    status = Path("/proc/self/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # bytes on macOS


def worker(args) -> None:
    """Run in a subprocess: `--worker none|full|lora`; prints one JSON line: its peak resident memory in MiB."""
    torch.set_num_threads(args.threads)
    model, _, data, config = setup(args)
    if args.worker == "lora":
        model = add_lora(model, rank=args.rank, alpha=2.0 * args.rank)
    if args.worker != "none":
        course_steps(model, optimizer_for(model, config), data, config, 3)
    print(json.dumps({"peak_mib": peak_rss_mib()}))


def run_worker(mode: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", mode, *sys.argv[1:]]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=HOME / "cpu/pretrain/checkpoint")
    parser.add_argument("--tokenizer", type=Path, default=HOME / "cpu/tokenizer/tokenizer")
    parser.add_argument("--batch", type=int, default=8, help="rows per step")
    parser.add_argument("--per-family", type=int, default=40, help="examples per task family")
    parser.add_argument("--steps", type=int, default=5, help="steps per block")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", choices=("none", "full", "lora"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    torch.set_num_threads(args.threads)
    import transformers
    import trl

    model, tokenizer, data, config = setup(args)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
          f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}")  # fmt: skip
    print(f"model: {model.config.n_layer} layers x {model.config.n_embd}, context {model.config.context}, "
          f"vocabulary {model.config.vocab_size}, {count_parameters(model):,} parameters; {data!r}\n")  # fmt: skip

    blocks = args.steps + 1  # the first step of a block warms up and is not counted
    rows, tokens = trl_rows(data, config, blocks)
    out = tempfile.mkdtemp(prefix="bench_finetune_")
    sides = {
        "minilm `train_step` (padded to the context)": None,
        "TRL `SFTTrainer`, padded to the context": trl_trainer(model, tokenizer, rows, config, blocks, out, True, False),
        "TRL `SFTTrainer`, dynamic padding": trl_trainer(model, tokenizer, rows, config, blocks, out, False, False),
        "TRL `SFTTrainer`, its defaults (dynamic padding, activation checkpointing)":
            trl_trainer(model, tokenizer, rows, config, blocks, out, False, True),
    }  # fmt: skip

    ours = copy.deepcopy(model)
    our_optimizer = optimizer_for(ours, config)
    times = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, side in sides.items():
            measured = course_steps(ours, our_optimizer, data, config, blocks) if side is None else trl_steps(*side)
            times[name] += measured[1:]
    mine = statistics.median(times[next(iter(sides))])
    print(f"### An SFT step, {args.batch} rows ({tokens:,} conversation tokens, median), float32, "
          f"median of {args.rounds} x {args.steps} steps\n")  # fmt: skip
    print("| side | step (s) | conversation tokens/s | minilm's speed over it |")
    print("| --- | ---: | ---: | ---: |")
    for name in sides:
        step = statistics.median(times[name])
        print(f"| {name} | {step:.3f} | {tokens / step:,.0f} | {step / mine:.2f}x |")

    full, lora = copy.deepcopy(model), add_lora(copy.deepcopy(model), rank=args.rank, alpha=2.0 * args.rank)
    optimizers = {"full": optimizer_for(full, config), "lora": optimizer_for(lora, config)}
    lora_times = {"full": [], "lora": []}
    for step in range(blocks):  # one step each in turn, on the same rows; the first not counted
        for name, side in (("full", full), ("lora", lora)):
            seconds = course_steps(side, optimizers[name], data, config, 1, first=step)
            if step:
                lora_times[name] += seconds
    memory = {mode: run_worker(mode, args)["peak_mib"] for mode in ("none", "full", "lora")}
    print(f"\n### LoRA (rank {args.rank}, every linear layer of the blocks) against full fine-tuning, minilm's `train_step`, "
          f"median of {args.steps} steps each, alternating\n")  # fmt: skip
    print("Gradients + AdamW state: 12 bytes per trained weight (float32 gradient and two moments), exact. "
          "Peak RSS: one process each, 3 steps, over a process that only loads the model and data.\n")
    print("| fine-tuning | trained weights | step (s) | gradients + AdamW state (MiB) | peak RSS (MiB) | over loading only (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, side in (("full", full), ("lora", lora)):
        trained = trainable_parameters(side)
        print(f"| {name} | {trained:,} | {statistics.median(lora_times[name]):.3f} | {12 * trained / 2**20:.1f} | "
              f"{memory[name]:.0f} | {memory[name] - memory['none']:.0f} |")  # fmt: skip
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
