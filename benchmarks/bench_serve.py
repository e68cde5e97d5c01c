"""The server under load: N concurrent clients against dynamic batching, and against one-at-a-time serving.

Two servers on 127.0.0.1, the same model, the same requests: `python -m minilm serve`'s app with the engine's
batch of `--clients` requests (dynamic batching: a request joins the running batch between steps), and the same
app with a batch of 1 (each request waits for the one before it to finish). `--clients` threads each send
`--requests` requests, streamed, greedy, one after another: text completions (`/v1/completions`) of the opening
words of stories the model never trained on, which it continues to the token limit, or with `--endpoint chat`
stage 6's test conversations, whose answers are a few words. The load is bounded: every request asks for at most
`--max-tokens` tokens.

Printed for each server: completion tokens per second over the whole load, each request's latency (p50, p99)
and time to its first streamed token (p50, p99), and the ratio. Greedy decoding makes every answer checkable:
each must equal the answer the one-at-a-time server gives to the same request alone, so nothing is lost, cut
short or mixed up between clients.

The model is the cached chat model of `--preset` (what `serve` would load); without the cache, the `ci`-sized
random model with a tokenizer trained here, so that the script runs anywhere.

    python benchmarks/bench_serve.py                       # about a minute on 2 cores
    python benchmarks/bench_serve.py --clients 16 --requests 4
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import httpx


def load_model(preset: str):
    """(model, tokenizer, what) from the cache, or a random model and a small tokenizer when nothing is cached."""
    from minilm.infer.models import ModelNotFoundError, chat_model

    try:
        return chat_model(preset)
    except ModelNotFoundError:
        from minilm.model import GPT, GPTConfig
        from minilm.tokenizer.tokenizer import Tokenizer
        from minilm.world import OBJECTS

        texts = [f"The {thing} was on the table, and Mia took the {thing} home." for thing in OBJECTS] * 20
        tokenizer = Tokenizer.train(texts, vocab_size=400)
        model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, context=128, n_layer=2, n_head=2, n_embd=64))
        return model, tokenizer, f"a random model ({preset} is not cached)"


def openings(count: int, words: int = 12) -> list[str]:
    """The first words of `count` different test stories of the story world (which no stage trained on)."""
    from minilm.world import split_stories

    return [" ".join(text.split()[:words]) for text, _ in split_stories("test", count)]


def conversations(tokenizer, context: int, count: int, max_tokens: int) -> list[list[dict]]:
    from minilm.finetune.chat import encode_chat
    from minilm.finetune.tasks import build_examples

    found = []
    for example in build_examples("test", count, 11, tokenizer, context):
        if len(encode_chat(tokenizer, example.prompt, add_generation_prompt=True)[0]) + max_tokens <= context:
            found.append(example.prompt)
    return found[:count]


def ask(url: str, prompt: list[dict] | str, max_tokens: int) -> dict:
    """One streamed greedy request (a chat for a list of messages, a completion for a text): its text, its latency
    and its time to the first token."""
    started = time.perf_counter()
    first, pieces, tokens = None, [], 0
    chat = not isinstance(prompt, str)
    body = {"model": "minilm-chat", "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, **({"messages": prompt} if chat else {"prompt": prompt})}
    route = "chat/completions" if chat else "completions"
    with httpx.stream("POST", f"{url}/v1/{route}", json=body, timeout=120) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                text = choice["delta"].get("content") if chat else choice.get("text")
                if text:
                    first = first or time.perf_counter()
                    pieces.append(text)
    done = time.perf_counter()
    return {"text": "".join(pieces), "latency": done - started, "ttft": (first or done) - started, "tokens": tokens}


def load(url: str, prompts: list[list[dict]], clients: int, requests: int, max_tokens: int) -> tuple[dict, float]:
    """`clients` threads, each sending `requests` prompts in turn; returns {(client, i): result} and the wall time."""
    out: dict[tuple[int, int], dict] = {}

    def client(c: int) -> None:
        for i in range(requests):
            out[c, i] = ask(url, prompts[(c * requests + i) % len(prompts)], max_tokens)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3, help="requests per client, one after another")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    args = parser.parse_args()

    from minilm.infer.server import ServerLimits, create_app, running_server

    model, tokenizer, what = load_model(args.preset)
    if args.endpoint == "chat":
        prompts = conversations(tokenizer, model.config.context, args.clients * args.requests, args.max_tokens)
    else:
        prompts = openings(args.clients * args.requests)
    print(f"{what}; {args.clients} clients x {args.requests} streamed greedy {args.endpoint} requests, up to "
          f"{args.max_tokens} tokens each, {len(prompts)} different prompts\n")

    reference: dict[int, str] = {}
    with running_server(create_app(model, tokenizer, limits=ServerLimits(max_batch_size=1))) as url:
        for index, messages in enumerate(prompts):
            reference[index] = ask(url, messages, args.max_tokens)["text"]
    rows = {}
    for name, batch in (("one at a time", 1), (f"dynamic batching (up to {args.clients})", args.clients)):
        limits = ServerLimits(max_batch_size=batch, max_queue=args.clients * args.requests)
        with running_server(create_app(model, tokenizer, limits=limits)) as url:
            ask(url, prompts[0], args.max_tokens)  # warm up
            results, seconds = load(url, prompts, args.clients, args.requests, args.max_tokens)
        same = all(r["text"] == reference[(c * args.requests + i) % len(prompts)] for (c, i), r in results.items())
        latencies = [r["latency"] for r in results.values()]
        ttfts = [r["ttft"] for r in results.values()]
        rows[name] = {"tokens/s": sum(r["tokens"] for r in results.values()) / seconds, "seconds": seconds,
                      "p50 latency": percentile(latencies, 0.5), "p99 latency": percentile(latencies, 0.99),
                      "p50 ttft": percentile(ttfts, 0.5), "p99 ttft": percentile(ttfts, 0.99), "same": same,
                      "requests": len(results)}
    print("| server | requests | wall (s) | tokens/s | p50 latency (s) | p99 latency (s) | p50 first token (s) | "
          "p99 first token (s) | answers equal to one-at-a-time alone |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, row in rows.items():
        print(f"| {name} | {row['requests']} | {row['seconds']:.2f} | {row['tokens/s']:,.0f} | "
              f"{row['p50 latency']:.3f} | "
              f"{row['p99 latency']:.3f} | {row['p50 ttft']:.3f} | {row['p99 ttft']:.3f} | {row['same']} |")
    single, batched = rows.values()
    print(f"\nthroughput: {batched['tokens/s'] / single['tokens/s']:.2f}x with dynamic batching; "
          f"p50 latency {single['p50 latency'] / batched['p50 latency']:.2f}x lower")


if __name__ == "__main__":
    main()
