"""The model's training step and generation: minilm against Hugging Face's GPT-2, on the same input.

Training step (forward, backward, AdamW), at one configuration for both sides (by default the
course's `cpu` size: 6 layers, 384 wide, 6 heads, context 256, vocabulary 8192, batch 8; no dropout):
- float32, both sides;
- bfloat16 autocast, both sides;
- the default of each: ours takes bf16 autocast where the hardware computes in bf16
  (`minilm.hardware.autocast`), HF's `GPT2LMHeadModel` trains in float32 unless told otherwise.
On a CPU without bfloat16 in hardware the bf16 rows are skipped, with a line saying so (emulated
bf16 takes ten times float32); `--force-bf16` measures them anyway.
Both use the same AdamW (multi-tensor, as PyTorch picks on CPU) and their usual loss (HF's with
`labels=`). Measurements alternate between the sides in blocks of `--steps` steps, so that a busy
machine slows both alike; the table gives the median time per step, tokens/s, MFU against the
machine's matmul peak (measured here with a loop of large matmuls in float32 and in bfloat16), and
the speed-up as the median of the ratios of neighbouring blocks.

Generation: `--gen-tokens` new tokens (greedy, batch 1) with the KV cache and without (the whole
sequence recomputed at each step), same model, same tokens (checked).

    python benchmarks/bench_model.py                  # about 3 minutes on 2 cores
    python benchmarks/bench_model.py --steps 2 --repeats 2 --gen-tokens 128   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time

import torch

from minilm.hardware import autocast, bf16_native, format_flops, measure_peak
from minilm.model import GPT, GPTConfig, flops_per_token, generate, make_optimizer
from minilm.model.hf import to_hf

from _common import bf16_skip_reason

# ---------------------------------------------------------------------------------------------
# Training steps


def our_step(model: GPT, optimizer, x, y, precision):
    def step():
        with precision():
            _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def hf_step(model, optimizer, x, y, precision):
    def step():
        with precision():
            loss = model(input_ids=x, labels=y).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def seconds_per_step(step, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def bench_training(
    config: GPTConfig, batch: int, steps: int, repeats: int, precisions: tuple[str, ...]
) -> dict[tuple[str, str], list[float]]:
    """Seconds per training step, one per repeat, keyed by (precision, side), for each of `precisions`."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(config.vocab_size, (batch, config.context), generator=generator)
    ours = GPT(config, seed=0).train()
    theirs = to_hf(GPT(config, seed=0)).train()
    our_optimizer = make_optimizer(ours, lr=1e-4)
    their_optimizer = torch.optim.AdamW(theirs.parameters(), lr=1e-4, weight_decay=0.1, foreach=True)
    fp32 = contextlib.nullcontext
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    # HF shifts `labels` itself; we pass the targets already shifted. Same tokens, same work.
    y = torch.roll(x, -1, dims=1)
    contexts = {"float32": fp32, "bf16 autocast": bf16}
    steps_by_key = {}
    for precision in precisions:
        steps_by_key[(precision, "minilm")] = our_step(ours, our_optimizer, x, y, contexts[precision])
        steps_by_key[(precision, "HF")] = hf_step(theirs, their_optimizer, x, x, contexts[precision])
    for step in steps_by_key.values():  # warm up: allocator, oneDNN kernels, optimizer state
        step()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steps_by_key}
    for repeat in range(repeats):
        for key, step in steps_by_key.items():
            times[key].append(seconds_per_step(step, steps))
        print(f"  repeat {repeat + 1}/{repeats}: " + ", ".join(f"{k[0]} {k[1]} {v[-1]:.3f}s" for k, v in times.items()))
    return times


def median_ratio(slow: list[float], fast: list[float]) -> float:
    """The median of the ratios of blocks measured next to each other."""
    return statistics.median(s / f for s, f in zip(slow, fast))


# ---------------------------------------------------------------------------------------------
# Generation


def bench_generation(config: GPTConfig, new_tokens: int, prompt_length: int = 16) -> dict[str, float]:
    model = GPT(config, seed=0).eval()
    prompt = [torch.randint(config.vocab_size, (prompt_length,), generator=torch.Generator().manual_seed(1)).tolist()]
    results, outputs = {}, {}
    for use_cache in (True, False):
        start = time.perf_counter()
        outputs[use_cache] = generate(model, prompt, new_tokens, temperature=0, use_cache=use_cache)
        results["with KV cache" if use_cache else "recompute each step"] = time.perf_counter() - start
    if outputs[True] != outputs[False]:
        raise AssertionError("generation with and without the KV cache gave different tokens")
    return results


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1, help="training steps per timed block")
    parser.add_argument("--repeats", type=int, default=11, help="timed blocks per side and precision")
    parser.add_argument("--gen-tokens", type=int, default=512, help="0 skips the generation benchmark")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's choice)")
    parser.add_argument("--force-bf16", action="store_true", help="measure bf16 even on a CPU that only emulates it")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = GPTConfig(
        vocab_size=args.vocab, context=args.context, n_layer=args.layers, n_head=args.heads, n_embd=args.width
    )
    tokens_per_step = args.batch * args.context
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; "
          f"torch {torch.__version__}; bf16 in hardware: {bf16_native('cpu')}")

    skip_bf16 = bf16_skip_reason(args.force_bf16)
    precisions = ("float32",) if skip_bf16 else ("float32", "bf16 autocast")
    if skip_bf16:
        print(skip_bf16)
    dtypes = {"float32": torch.float32, "bf16 autocast": torch.bfloat16}
    peak = {precision: measure_peak("cpu", dtypes[precision]).flops for precision in precisions}
    print("matmul peak (best over sizes): " + ", ".join(f"{str(dtypes[p]).removeprefix('torch.')} {format_flops(peak[p])}"
                                                        for p in precisions))

    print(f"training: {args.layers} layers, {args.width} wide, {args.heads} heads, context {args.context}, "
          f"vocabulary {args.vocab}, batch {args.batch}; {args.repeats} x {args.steps} steps per cell")
    times = bench_training(config, args.batch, args.steps, args.repeats, precisions)
    seconds = {key: statistics.median(values) for key, values in times.items()}
    flops = flops_per_token(config, args.context)["training"]

    print("\n### Training step (forward, backward, AdamW)\n")
    print("| precision | side | s/step | tokens/s | MFU | minilm speed-up |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for precision in precisions:
        for side in ("minilm", "HF"):
            s = seconds[(precision, side)]
            ratio = median_ratio(times[(precision, "HF")], times[(precision, "minilm")])
            speedup = f"**{ratio:.2f}x**" if side == "minilm" else ""
            print(f"| {precision} | {side} | {s:.3f} | {tokens_per_step / s:,.0f} | "
                  f"{flops * tokens_per_step / s / peak[precision]:.1%} | {speedup} |")
    ours_default = "bf16 autocast" if isinstance(autocast("cpu"), torch.autocast) else "float32"
    ratio = median_ratio(times[("float32", "HF")], times[(ours_default, "minilm")])
    print(f"| default: minilm ({ours_default}) vs HF (float32) | | | | | **{ratio:.2f}x** |")

    if args.gen_tokens:
        gen_config = config.replace(context=max(args.context, args.gen_tokens + 16))
        print(f"\n### Generation of {args.gen_tokens} tokens "
              f"(greedy, batch 1, float32, context {gen_config.context})\n")
        results = bench_generation(gen_config, args.gen_tokens)
        print("| method | seconds | tokens/s |")
        print("| --- | ---: | ---: |")
        for method, s in results.items():
            print(f"| {method} | {s:.2f} | {args.gen_tokens / s:,.1f} |")
        print(f"| **KV cache speed-up** | **{results['recompute each step'] / results['with KV cache']:.1f}x** | |")


if __name__ == "__main__":
    main()
