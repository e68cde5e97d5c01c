"""The whole pretraining step of `minilm.train`, against Hugging Face's GPT-2 at the same configuration.

One step of ours is what `minilm.train.loop.train` runs: random windows read from the token shards
(memory-mapped), the batch built, forward and backward under the chosen precision, gradient clipping,
AdamW (decay on matrices only) with the scheduled learning rate. HF's side gets the same windows and
does what a user of `GPT2LMHeadModel` would: forward with `labels=`, backward, clipping, the same
AdamW. Both in float32, then both under bfloat16 autocast. Blocks of `--steps` steps alternate between
the sides, so a busy machine slows both alike; the table gives the median seconds per step, tokens/s,
MFU against this machine's measured matmul peak (in the row's precision), and our speed-up as the
median ratio of neighbouring blocks.

The configuration is the pretrain stage's `cpu` preset (its sizes are in minilm/presets.py),
with the vocabulary of stage 2's tokenizer (its shards are used when cached, and built otherwise).
On a CPU without bfloat16 in hardware the bf16 rows are skipped, with a line saying so (emulated
bf16 takes ten times float32); `--force-bf16` measures them anyway.

With CUDA, a second table gives GPT-2 small (124M, context 1024) in bf16: ours eager and compiled,
and HF eager, with MFU against the GPU's data-sheet peak. Our steps run on the flash-attention
kernel of `scaled_dot_product_attention` (asked for alone, so that they fail rather than fall back
to another kernel) where the GPU has it (Ampere and later).

    python benchmarks/bench_train.py                    # about 2 minutes on 2 cores
    python benchmarks/bench_train.py --repeats 3        # a quick look
    python benchmarks/bench_train.py --no-cpu --repeats 3 --gpu-steps 10   # the GPU table only (gpu_check.sh)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from minilm import hardware
from minilm.model import GPT, flops_per_token, make_optimizer
from minilm.model.hf import to_hf
from minilm.train.loop import TrainConfig, micro_batches, step_windows, train_step

from _common import bf16_skip_reason


def our_step(model, optimizer, scaler, shards, config: TrainConfig, device: str, precision: str):
    counter = iter(range(10**9))

    def step():
        index = next(counter)
        x, y = step_windows(shards, config, index) if shards is not None else random_windows(config, index)
        train_step(model, optimizer, scaler, micro_batches(x, y, config, index), config.lr, config.grad_clip,
                   device, precision)

    return step


def hf_step(model, optimizer, shards, config: TrainConfig, device: str, precision: str):
    counter = iter(range(10**9))

    def step():
        index = next(counter)
        x, _ = step_windows(shards, config, index) if shards is not None else random_windows(config, index)
        x = torch.from_numpy(x).to(device)
        with hardware.autocast(device, precision):
            loss = model(input_ids=x, labels=x).loss  # HF shifts the labels itself
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def random_windows(config: TrainConfig, index: int, vocab_size: int = 50304):
    windows = np.random.default_rng(index).integers(vocab_size, size=(config.batch_size, config.context + 1))
    return windows[:, :-1], windows[:, 1:]


def timed(step, steps: int, device: str) -> float:
    """Seconds per step over a block of `steps` steps (waiting for the GPU at the end)."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def run_blocks(steps_by_key: dict, steps: int, repeats: int, device: str, warmup: int = 1) -> dict:
    for step in steps_by_key.values():
        for _ in range(warmup):
            step()
    times = {key: [] for key in steps_by_key}
    for repeat in range(repeats):
        for key, step in steps_by_key.items():
            times[key].append(timed(step, steps, device))
        print(f"  repeat {repeat + 1}/{repeats}: " + ", ".join(f"{' '.join(k)} {v[-1]:.3f}s" for k, v in times.items()))
    return times


def median_ratio(slow: list[float], fast: list[float]) -> float:
    return statistics.median(s / f for s, f in zip(slow, fast))


def cpu_table(args) -> None:
    from minilm.tokenizer.stage import open_shards, run_tokenizer_stage

    tokenizer = run_tokenizer_stage(args.preset)
    shards = open_shards(tokenizer, "train")
    config = replace(TrainConfig.from_preset(args.preset), batch_size=args.batch, dropout=0.0)
    model_config = config.model_config(shards.vocab_size)
    tokens_per_step = config.tokens_per_step()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; "
          f"torch {torch.__version__}; bf16 in hardware: {hardware.bf16_native('cpu')}")
    skip_bf16 = bf16_skip_reason(args.force_bf16)
    precisions = ("fp32",) if skip_bf16 else ("fp32", "bf16")
    if skip_bf16:
        print(skip_bf16)
    peak = {p: hardware.measure_peak("cpu", hardware.DTYPES[p]).flops for p in precisions}
    print("matmul peak (best over sizes): " + ", ".join(f"{hardware.dtype_name(hardware.DTYPES[p])} {hardware.format_flops(peak[p])}"
                                                        for p in precisions))
    print(f"config: {config.n_layer} layers, {config.n_embd} wide, {config.n_head} heads, context {config.context}, "
          f"vocabulary {shards.vocab_size}, batch {config.batch_size} ({tokens_per_step:,} tokens/step); "
          f"{args.repeats} x {args.steps} steps per cell")

    ours, theirs = GPT(model_config, seed=0), to_hf(GPT(model_config, seed=0)).train()
    our_optimizer = make_optimizer(ours, config.lr)
    their_optimizer = make_optimizer(theirs, config.lr)
    steps_by_key = {}
    for precision in precisions:
        scaler = hardware.grad_scaler("cpu", precision)
        steps_by_key[(precision, "minilm")] = our_step(ours, our_optimizer, scaler, shards, config, "cpu", precision)
        steps_by_key[(precision, "HF")] = hf_step(theirs, their_optimizer, shards, config, "cpu", precision)
    times = run_blocks(steps_by_key, args.steps, args.repeats, "cpu")
    flops = flops_per_token(model_config, config.context)["training"]

    print("\n### Whole training step (windows from the shards, forward, backward, clipping, AdamW)\n")
    print("| precision | side | s/step | tokens/s | MFU | minilm speed-up |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for precision in precisions:
        for side in ("minilm", "HF"):
            seconds = statistics.median(times[(precision, side)])
            ratio = median_ratio(times[(precision, "HF")], times[(precision, "minilm")])
            print(f"| {precision} | {side} | {seconds:.3f} | {tokens_per_step / seconds:,.0f} | "
                  f"{flops * tokens_per_step / seconds / peak[precision]:.1%} | "
                  f"{f'**{ratio:.2f}x**' if side == 'minilm' else ''} |")


def flash_only(step):
    """`step` with `scaled_dot_product_attention` allowed the flash kernel only: an error, not a silent
    fallback, if a step cannot use it."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def flashed():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            step()

    return flashed


def gpu_table(args) -> None:
    device = "cuda"
    hardware.allow_tf32(device)
    precision = hardware.choose_precision(device)
    # PyTorch's flash kernel: fp16/bf16 on Ampere (compute capability 8.0) and later
    flash = precision in ("bf16", "fp16") and torch.cuda.get_device_capability(device) >= (8, 0)
    ours = flash_only if flash else (lambda step: step)
    attention = ("flash attention (scaled_dot_product_attention, flash kernel only)" if flash else
                 "scaled_dot_product_attention, PyTorch's choice of kernel (flash needs fp16/bf16 on Ampere or later)")
    config = TrainConfig(n_layer=12, n_head=12, n_embd=768, context=1024, batch_size=args.gpu_batch, dropout=0.0,
                         lr=6e-4, min_lr=6e-5)
    model_config = config.model_config(50304)  # GPT-2's vocabulary padded to a multiple of 64, as nanoGPT does
    tokens_per_step = config.tokens_per_step()
    peak = hardware.peak_flops(device, precision)
    flops = flops_per_token(model_config, config.context)["training"]
    print(f"\nGPU: {torch.cuda.get_device_name()}, {precision}; peak {peak}; "
          f"GPT-2 small, context 1024, batch {config.batch_size} ({tokens_per_step:,} tokens/step); "
          f"minilm's attention: {attention}")

    eager = GPT(model_config, seed=0).to(device)
    compiled_model = GPT(model_config, seed=0).to(device)
    compiled = torch.compile(compiled_model)
    hf = to_hf(GPT(model_config, seed=0)).to(device).train()
    steps_by_key = {
        (precision, "minilm eager"): ours(our_step(eager, make_optimizer(eager, config.lr),
                                                   hardware.grad_scaler(device, precision), None, config, device,
                                                   precision)),
        (precision, "minilm compiled"): ours(our_step(compiled, make_optimizer(compiled_model, config.lr),
                                                      hardware.grad_scaler(device, precision), None, config, device,
                                                      precision)),
        (precision, "HF eager"): hf_step(hf, make_optimizer(hf, config.lr), None, config, device, precision),
    }
    times = run_blocks(steps_by_key, args.gpu_steps, args.repeats, device, warmup=3)  # compile in the warm-up
    print("\n| side | s/step | tokens/s | MFU |")
    print("| --- | ---: | ---: | ---: |")
    for key, values in times.items():
        seconds = statistics.median(values)
        print(f"| {key[1]} ({key[0]}) | {seconds:.3f} | {tokens_per_step / seconds:,.0f} | "
              f"{flops * tokens_per_step / seconds / peak.flops:.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", help="the pretrain preset whose configuration is measured")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2, help="training steps per timed block")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per side and precision")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's choice)")
    parser.add_argument("--force-bf16", action="store_true", help="measure bf16 even on a CPU that only emulates it")
    parser.add_argument("--gpu-batch", type=int, default=16)
    parser.add_argument("--gpu-steps", type=int, default=10)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU table (for a GPU-only run)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_cpu:
        cpu_table(args)
    if torch.cuda.is_available():
        gpu_table(args)
    else:
        print("\n(no CUDA GPU: the GPT-2 small MFU table is skipped)")


if __name__ == "__main__":
    main()
