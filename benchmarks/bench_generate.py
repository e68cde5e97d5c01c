"""Generation: minilm's engine against Hugging Face's `generate`, on the same model, the same prompts, the same tokens.

One model on both sides: minilm's GPT and its `transformers.GPT2LMHeadModel` copy (`minilm.model.hf.to_hf`), in
float32. By default the model is the course's chat model from the `cpu` preset's cache (stage 9's choice); without
that cache, a model of the `cpu` preset's shape with random weights (the speed of a fixed number of tokens does not
depend on the weights). Every run generates exactly `--tokens` new tokens per prompt, greedy, past any end token
(HF: `eos_token_id=None`), and the two sides' tokens are checked equal.

- tokens/s at batch 1 and batch 8: minilm's `Engine` against `model.generate(..., use_cache=True)` (its KV
  cache, as a user calls it), and stage 3's plain `generate` loop for reference;
- time to the first token at batch 1 (prefill plus one sampling step);
- speculative decoding (stage 9's draft proposing for the chat model) and int8 weights, when stage 9 is cached:
  tokens/s against the plain greedy loop, and the acceptance rate.

Sides alternate within each repeat, so a busy machine slows both alike; the table gives medians and the ratio.

    python benchmarks/bench_generate.py                      # about a minute on 2 cores
    python benchmarks/bench_generate.py --tokens 64 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from minilm.infer.engine import Engine
from minilm.infer.sampling import SamplingParams
from minilm.model import GPT, GPTConfig, generate
from minilm.model.hf import to_hf


def course_models(preset: str):
    """(chat model, draft or None, tokenizer, what they are) from stage 9's cache, or None when it is not built."""
    from minilm.cache import load_artifact, run_dir

    artifact = load_artifact(run_dir("inference", preset))
    if artifact is None:
        return None
    from minilm.infer.stage import load_chat_model, load_draft
    from minilm.tokenizer.stage import load_tokenizer

    manifest_inputs = artifact.manifest["inputs"]
    tokenizer_artifact = load_artifact(run_dir("tokenizer", preset))
    finetuned, aligned = load_artifact(run_dir("finetune", preset)), load_artifact(run_dir("rlhf", preset))
    if None in (tokenizer_artifact, finetuned, aligned) or manifest_inputs["aligned"] != aligned.key:
        return None
    import json

    name = json.loads((artifact.path / "results.json").read_text())["model"]
    model = load_chat_model(name, finetuned, aligned)
    return model, load_draft(artifact), load_tokenizer(tokenizer_artifact), f"the {preset} preset's {name} chat model"


class Vocabulary:
    """What the engine needs of a tokenizer when the model is a random one: ids decode to nothing."""

    def __init__(self, size: int):
        self.vocab_size = size
        self.special_tokens: dict[str, int] = {}

    def decode_token(self, token_id: int) -> bytes:
        return b""


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", help="whose cached chat model to use (default: cpu)")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per prompt")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    found = course_models(args.preset)
    if found is None:
        config = GPTConfig(vocab_size=4096, context=128, n_layer=4, n_head=4, n_embd=128)
        model, draft, tokenizer, what = GPT(config).eval(), None, Vocabulary(config.vocab_size), \
            "a random model of the cpu preset's shape (stage 9 is not cached)"
    else:
        model, draft, tokenizer, what = found
    config = model.config
    if args.prompt_tokens + args.tokens > config.context:
        raise SystemExit(f"error: --prompt-tokens {args.prompt_tokens} + --tokens {args.tokens} exceed the context "
                         f"of {config.context}")
    hf = to_hf(model).eval()
    prompts = torch.randint(0, min(config.vocab_size, 4000), (args.batch, args.prompt_tokens)).tolist()
    greedy = SamplingParams(max_tokens=args.tokens, temperature=0)
    print(f"{what}: {sum(p.numel() for p in model.parameters()):,} parameters; {platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"greedy, {args.prompt_tokens}-token prompts, {args.tokens} new tokens each, median of {args.repeats}\n")

    def ours(batch: list[list[int]]) -> list[list[int]]:
        engine = Engine(model, tokenizer, max_batch_size=len(batch), end_tokens=())
        return [c.token_ids for c in engine.run(batch, greedy)]

    def theirs(batch: list[list[int]]) -> list[list[int]]:
        with torch.inference_mode():
            out = hf.generate(torch.tensor(batch), max_new_tokens=args.tokens, eos_token_id=None,
                              do_sample=False, use_cache=True, pad_token_id=0)
        return out[:, len(batch[0]):].tolist()

    def plain(batch: list[list[int]]) -> list[list[int]]:
        return generate(model, batch, args.tokens, temperature=0)

    rows = []
    for size in (1, args.batch):
        batch = prompts[:size]
        same = ours(batch) == theirs(batch) == plain(batch)
        times = {"minilm Engine": [], "HF generate": [], "minilm generate": []}
        for _ in range(args.repeats):
            times["minilm Engine"].append(timed(lambda: ours(batch)))
            times["HF generate"].append(timed(lambda: theirs(batch)))
            times["minilm generate"].append(timed(lambda: plain(batch)))
        rate = {name: size * args.tokens / statistics.median(t) for name, t in times.items()}
        rows.append((size, rate, same))
    print("| batch | minilm Engine (tok/s) | HF generate (tok/s) | Engine / HF | stage 3's generate (tok/s) "
          "| same tokens |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for size, rate, same in rows:
        print(f"| {size} | {rate['minilm Engine']:,.0f} | {rate['HF generate']:,.0f} | "
              f"**{rate['minilm Engine'] / rate['HF generate']:.2f}x** | {rate['minilm generate']:,.0f} | {same} |")

    one = prompts[:1]

    def first_ours() -> None:
        engine = Engine(model, tokenizer, max_batch_size=1, end_tokens=())
        engine.add(one[0], SamplingParams(max_tokens=1, temperature=0))
        engine.step()

    def first_theirs() -> None:
        with torch.inference_mode():
            hf.generate(torch.tensor(one), max_new_tokens=1, do_sample=False, pad_token_id=0)

    for run in (first_ours, first_theirs):
        run()
    ttft_ours = statistics.median(timed(first_ours) for _ in range(args.repeats * 4))
    ttft_theirs = statistics.median(timed(first_theirs) for _ in range(args.repeats * 4))
    print(f"\ntime to first token, batch 1: minilm {1000 * ttft_ours:.2f} ms, HF {1000 * ttft_theirs:.2f} ms "
          f"({ttft_theirs / ttft_ours:.2f}x)")

    if draft is None:
        print("\nspeculative decoding and int8: skipped, stage 9 is not cached "
              "(python -m minilm inference --preset cpu)")
        return
    from minilm.infer.quantize import quantize_model, weight_bytes
    from minilm.infer.speculative import speculative_generate

    from minilm.finetune.chat import END
    from minilm.finetune.tasks import build_examples
    from minilm.infer.stage import prompt_ids

    end = tokenizer.special_id(END)
    examples = build_examples("test", 8, 7, tokenizer, config.context)
    chats = [p for p in prompt_ids(tokenizer, examples[:: len(examples) // 20]) if len(p) + 32 <= config.context][:20]
    plain_times, rounds = [], {}
    for k in (2, 4):
        rounds[k] = []
    for _ in range(args.repeats):
        plain_times.append(timed(lambda: [generate(model, [p], 32, temperature=0, stop_token=end) for p in chats]))
        for k in rounds:
            rounds[k].append(timed(lambda: [speculative_generate(model, draft, p, 32, lookahead=k, end_tokens=(end,))
                                            for p in chats]))
    results = {k: [speculative_generate(model, draft, p, 32, lookahead=k, end_tokens=(end,)) for p in chats]
               for k in rounds}
    print(f"\nspeculative decoding, greedy, {len(chats)} test prompts, up to 32 tokens each "
          f"(draft: {sum(p.numel() for p in draft.parameters()):,} parameters)")
    print("| lookahead | accepted | speed-up against the plain loop |\n| ---: | ---: | ---: |")
    for k, found_results in results.items():
        accepted = sum(r.accepted for r in found_results) / max(1, sum(r.proposed for r in found_results))
        print(f"| {k} | {accepted:.0%} | {statistics.median(plain_times) / statistics.median(rounds[k]):.2f}x |")

    int8 = quantize_model(model)
    times = {"float32": [], "int8": []}
    for _ in range(args.repeats):
        times["float32"].append(timed(lambda: generate(model, one, args.tokens, temperature=0)))
        times["int8"].append(timed(lambda: generate(int8, one, args.tokens, temperature=0)))
    print(f"\nint8 weights: {weight_bytes(int8) / weight_bytes(model):.0%} of float32's bytes; batch 1 "
          f"{args.tokens / statistics.median(times['int8']):,.0f} tok/s against float32's "
          f"{args.tokens / statistics.median(times['float32']):,.0f}")


if __name__ == "__main__":
    main()
