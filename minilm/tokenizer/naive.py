"""The naive BPE trainer, for teaching: the algorithm as it is usually first written.

Cut the text into chunks, turn every chunk into its list of byte ids, then repeat: count every
adjacent pair of the whole corpus, merge the most frequent one everywhere, and start again. This
is what Karpathy's minbpe does. Each merge costs a full pass over the corpus, so training costs
O(merges x corpus): fine for a few hundred kilobytes, hours for gigabytes.

`minilm.tokenizer.bpe.train` learns exactly the same merges (same ids, same ties), only faster;
a test checks it.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from minilm.tokenizer.bpe import (
    BYTE_TO_ID,
    GPT4_SPLIT_PATTERN,
    Pair,
    check_special_tokens,
    compile_pattern,
    initial_vocab,
    special_token_splitter,
)


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, left to right (a a a -> aa a)."""
    first, second = pair
    merged, i, n = [], 0, len(ids)
    while i < n:
        if ids[i] == first and i + 1 < n and ids[i + 1] == second:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def train_naive(
    texts: Iterable[str],
    vocab_size: int,
    pattern: str = GPT4_SPLIT_PATTERN,
    special_tokens: Sequence[str] = (),
) -> tuple[dict[Pair, int], dict[int, bytes]]:
    """Learn (`merges`, `vocab`) like `bpe.train`, recounting all pairs after every merge."""
    special_tokens = check_special_tokens(special_tokens)
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(f"vocab_size={vocab_size} is too small: it must be at least {256 + len(special_tokens)}")
    split_pattern = compile_pattern(pattern)
    specials = special_token_splitter(special_tokens)

    chunks: list[list[int]] = []  # every chunk of the corpus, repeats included
    for text in texts:
        for piece in specials.split(text) if specials else (text,):
            chunks += [list(chunk.encode("utf-8").translate(BYTE_TO_ID)) for chunk in split_pattern.findall(piece)]
    if not chunks:
        raise ValueError("the training corpus is empty: `texts` yielded no text to learn merges from")

    vocab = initial_vocab()
    merges: dict[Pair, int] = {}
    while len(vocab) + len(special_tokens) < vocab_size:
        pair_counts = Counter()
        for ids in chunks:
            pair_counts.update(zip(ids, ids[1:]))
        if not pair_counts:
            break  # every chunk is a single token: nothing left to merge
        # The most frequent pair; among equally frequent ones, the smallest pair of ids.
        pair = min(pair_counts, key=lambda p: (-pair_counts[p], p))

        token = vocab[pair[0]] + vocab[pair[1]]
        new_id = next((i for i, t in vocab.items() if t == token), len(vocab))  # reuse a token with these bytes
        vocab[new_id] = token
        merges[pair] = new_id
        chunks = [merge(ids, pair, new_id) for ids in chunks]
    return merges, vocab
