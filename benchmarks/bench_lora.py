"""LoRA against full fine-tuning, and against Hugging Face PEFT, on the pretrained `cpu` model.

First the share of the weights that LoRA trains at ranks 4, 8 and 16 (on every linear layer of the
blocks). Then one training step, forward and backward, and AdamW's update, on a batch of
`--batch` x context random tokens: full fine-tuning (every weight) and LoRA, ours and PEFT's on HF's
GPT-2 with the same weights. The sides alternate, one step each, so a busy machine slows them alike;
the table gives medians over `--repeats` steps.

    python benchmarks/bench_lora.py                      # 1 to 3 minutes on 2 cores
    python benchmarks/bench_lora.py --checkpoint PATH    # another pretrained checkpoint

Without a checkpoint (the pretrain stage not run yet), a freshly initialised GPT of the `cpu` shape is
used: the counts and times depend on the shape only.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from minilm.finetune.lora import BLOCK_LINEARS, add_lora, trainable_parameters
from minilm.model import GPT, GPTConfig, count_parameters
from minilm.model.hf import to_hf
from minilm.train.checkpoint import load_model

CPU_SHAPE = GPTConfig(vocab_size=4096, context=128, n_layer=4, n_head=4, n_embd=128)


def base(checkpoint: Path) -> GPT:
    if checkpoint.is_dir():
        return load_model(checkpoint)
    print(f"no checkpoint at {checkpoint}: a fresh GPT of the cpu shape")
    return GPT(CPU_SHAPE)


def peft_model(model: GPT, rank: int, alpha: float):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(BLOCK_LINEARS), fan_in_fan_out=True)
    return get_peft_model(to_hf(model), config)


def training_step(model, optimizer, x: torch.Tensor, hf: bool):
    """One step on windows `x` (B, context + 1): (seconds for forward + backward, seconds for AdamW's update)."""
    start = time.perf_counter()
    if hf:  # HF shifts the labels itself
        loss = model(input_ids=x[:, :-1], labels=x[:, :-1]).loss
    else:
        loss = model(x[:, :-1], x[:, 1:])[1]
    loss.backward()
    middle = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return middle - start, time.perf_counter() - middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path(os.environ.get("MINILM_HOME", "data/runs")) / "cpu/pretrain/checkpoint")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = base(args.checkpoint).train()
    config = model.config
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; torch {torch.__version__}")
    print(f"model: {config.n_layer} layers x {config.n_embd}, context {config.context}, vocabulary {config.vocab_size}, "
          f"{count_parameters(model):,} parameters\n")

    print("### Weights trained by LoRA on every linear layer of the blocks (" + ", ".join(BLOCK_LINEARS) + ")\n")
    print("| rank | trained | share of the model |")
    print("| ---: | ---: | ---: |")
    for rank in (4, 8, 16):
        lora = add_lora(copy.deepcopy(model), rank=rank, alpha=2.0 * rank)
        trained = trainable_parameters(lora)
        print(f"| {rank} | {trained:,} | {trained / count_parameters(model):.2%} |")

    sides = {
        "minilm full": copy.deepcopy(model),
        f"minilm LoRA r={args.rank}": add_lora(copy.deepcopy(model), rank=args.rank, alpha=2.0 * args.rank),
        "HF GPT-2 full": to_hf(model).train(),
        f"PEFT LoRA r={args.rank}": peft_model(model, args.rank, 2.0 * args.rank).train(),
    }
    optimizers = {name: torch.optim.AdamW([p for p in side.parameters() if p.requires_grad], lr=1e-4)
                  for name, side in sides.items()}
    generator = torch.Generator().manual_seed(0)
    times = {name: [] for name in sides}
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        x = torch.randint(0, config.vocab_size, (args.batch, config.context + 1), generator=generator)
        for name, side in sides.items():
            result = training_step(side, optimizers[name], x, hf=name.startswith(("HF", "PEFT")))
            if repeat:
                times[name].append(result)
    full = times["minilm full"]
    print(f"\n### One training step, batch {args.batch} x {config.context} tokens, median of {args.repeats}\n")
    print("The speed-up is the median over rounds of minilm full's step time over the side's, in the same round.\n")
    print("| side | trained weights | forward + backward (s) | AdamW update (s) | step (s) | speed-up over minilm full |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, side in sides.items():
        fb = statistics.median(t[0] for t in times[name])
        update = statistics.median(t[1] for t in times[name])
        step = statistics.median(sum(t) for t in times[name])
        ratio = statistics.median(sum(f) / sum(t) for f, t in zip(full, times[name]))
        print(f"| {name} | {trainable_parameters(side):,} | {fb:.3f} | {update:.4f} | {step:.3f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
