"""PPO's rollouts: `minilm.rlhf.rollout.sample_completions` (the course's KV-cache sampler) against HF `generate`.

An on-policy RLHF step spends much of its time writing answers: every round samples a batch of
completions from the policy before anything is scored or trained. This times that phase on both
sides with the same model (the stage-6 SFT model of the `cpu` preset when it is cached, else the
stage-4 model, else a fresh GPT of that shape, and the output says which; HF gets its export,
`to_hf`), the same prompts (validation questions of stage 6 in the chat format, ending with
``<|assistant|>``, left-padded on both sides), the same number of new tokens and the same
distribution: temperature 1, no top-k, no top-p (HF's default top-k of 50 is turned off), as RLHF
samples. Neither side stops early (no stop token; HF gets no end-of-sequence token), so both write
exactly batch x `--new` tokens, and tokens/s counts those. Float32, `--threads` torch threads (1 by default);
the sides alternate, one run each per repeat, so a busy machine slows them alike; medians. Each
`--batch` size is a row: the first prompts of one shuffled list.

A check first: greedy answers (temperature 0) of both sides, token for token, to show that the
two run the same model on the same prompts.

    nice -n 5 python benchmarks/bench_rlhf.py                     # about a minute on 2 busy cores
    nice -n 5 python benchmarks/bench_rlhf.py --batch 8 --repeats 3      # a quick look
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from pathlib import Path

import torch

from minilm.finetune.chat import PAD, encode_chat
from minilm.finetune.tasks import build_examples
from minilm.model import GPT, GPTConfig, count_parameters
from minilm.model.generate import left_pad
from minilm.model.hf import to_hf
from minilm.rlhf.rollout import sample_completions
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.train.checkpoint import load_model

HOME = Path(os.environ.get("MINILM_HOME", "data/runs"))
CPU_SHAPE = dict(context=128, n_layer=4, n_head=4, n_embd=128)


def load(args) -> tuple[GPT, str, list[list[int]], int]:
    """The model, what it is, the prompts (token ids) and the pad id."""
    tokenizer = Tokenizer.load(args.tokenizer) if args.tokenizer.is_dir() else None
    cached = ((args.checkpoint, "the stage-6 SFT model (cpu preset)"), (args.pretrained, "the stage-4 model (cpu preset)"))
    for path, what in cached:
        if path.is_dir():
            model, which = load_model(path), f"{what}, {path}"
            break
    else:
        vocab = tokenizer.vocab_size if tokenizer is not None else 4096
        model = GPT(GPTConfig(vocab_size=vocab, **CPU_SHAPE), seed=0)
        which = "a fresh GPT of the cpu shape, random weights (no checkpoint cached)"
    context = model.config.context
    if tokenizer is not None:
        examples = build_examples("sft_val", max(args.batch), 0, tokenizer, context - args.new)
        prompts = [encode_chat(tokenizer, e.prompt, add_generation_prompt=True)[0] for e in examples]
        prompts = [p for p in prompts if len(p) + args.new <= context]
        random.Random(0).shuffle(prompts)
        pad = tokenizer.special_id(PAD)
    else:  # no tokenizer cached: random prompts, of lengths like the chat questions'
        rng = random.Random(0)
        lengths = [rng.randint(30, context - args.new) for _ in range(max(args.batch))]
        prompts = [[rng.randrange(model.config.vocab_size) for _ in range(n)] for n in lengths]
        pad = 0
    return model.eval(), which, prompts[: max(args.batch)], pad


def hf_generate(hf, prompts, new: int, pad: int, greedy: bool = False) -> list[list[int]]:
    idx, is_real = left_pad(prompts, pad)
    sampling = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
    with torch.no_grad():
        out = hf.generate(input_ids=idx, attention_mask=is_real.long(), max_new_tokens=new, min_new_tokens=new,
                          pad_token_id=pad, eos_token_id=None, **sampling)  # fmt: skip
    return out[:, idx.size(1) :].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=HOME / "cpu/finetune/sft/checkpoint")
    parser.add_argument("--pretrained", type=Path, default=HOME / "cpu/pretrain/checkpoint")
    parser.add_argument("--tokenizer", type=Path, default=HOME / "cpu/tokenizer/tokenizer")
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64], help="prompts per rollout (one row each)")
    parser.add_argument("--new", type=int, default=48, help="new tokens per prompt (stage 6 answers in at most 48)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 2 on a busy 2-core machine stalled decoding one prompt 20x (see the README)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    model, which, prompts, pad = load(args)
    hf = to_hf(model).eval()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
          f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, transformers {transformers.__version__}")  # fmt: skip
    print(f"model: {which}: {model.config.n_layer} layers x {model.config.n_embd}, context {model.config.context}, "
          f"vocabulary {model.config.vocab_size}, {count_parameters(model):,} parameters")  # fmt: skip
    lengths = [len(p) for p in prompts]
    print(f"prompts: {len(prompts)}, {min(lengths)} to {max(lengths)} tokens (median {statistics.median(lengths):.0f}), "
          f"{args.new} new tokens each\n")  # fmt: skip

    ours = sample_completions(model, prompts, args.new, temperature=0, pad_token=pad).completion_ids.tolist()
    theirs = hf_generate(hf, prompts, args.new, pad, greedy=True)
    same = sum(a == b for a, b in zip(ours, theirs))
    tokens = sum(x == y for a, b in zip(ours, theirs) for x, y in zip(a, b))
    print(f"greedy check: {same} of {len(prompts)} answers identical, {tokens} of {len(prompts) * args.new} tokens\n")

    print(f"### A rollout of `--new` {args.new} tokens per prompt, temperature 1, float32, median of {args.repeats}\n")
    print("| prompts | minilm `sample_completions` (s) | HF `generate` (s) | minilm tokens/s | HF tokens/s | speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch in args.batch:
        rows = prompts[:batch]
        times = {"minilm": [], "hf": []}
        for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
            start = time.perf_counter()
            sample_completions(model, rows, args.new, temperature=1.0, seed=repeat, pad_token=pad)
            middle = time.perf_counter()
            torch.manual_seed(repeat)
            hf_generate(hf, rows, args.new, pad)
            end = time.perf_counter()
            if repeat:
                times["minilm"].append(middle - start)
                times["hf"].append(end - middle)
        mine, theirs = statistics.median(times["minilm"]), statistics.median(times["hf"])
        written = batch * args.new
        print(f"| {batch} | {mine:.3f} | {theirs:.3f} | {written / mine:,.0f} | {written / theirs:,.0f} | {theirs / mine:.2f}x |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
