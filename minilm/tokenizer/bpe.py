"""Training a byte-level BPE tokenizer, fast.

Byte pair encoding (Sennrich et al., 2016; GPT-2's byte-level variant) starts from the 256 bytes
and repeatedly *merges* the most frequent pair of adjacent tokens into a new token, until the
vocabulary has the size we asked for. The list of merges, in order, is the tokenizer.

Text is first cut into *chunks* by a regular expression (the split pattern): words with their
leading space, runs of digits, punctuation, whitespace. Merges never cross a chunk boundary, so
" dog" and " dog." share the token " dog" instead of learning " dog." as well.

The naive trainer (`minilm.tokenizer.naive`) recounts every pair of the whole corpus after each
merge: O(merges x corpus). This one gets the *same merges* with three ideas:

1. **Count each distinct chunk once.** A corpus of millions of chunks has only tens of thousands
   of distinct ones; we keep a `Counter` of them and weigh every pair by its chunk's count. The
   texts are streamed: only the counter is kept in memory.
2. **Update pair counts incrementally.** Merging (a, b) only changes the pairs next to each
   occurrence of (a, b). An index pair -> chunks that contain it tells us which chunks to touch.
3. **A heap with lazy deletion** finds the most frequent pair. Counts change all the time; rather
   than updating the heap, we push new pairs and, when an entry is popped whose count is out of
   date, push it back with its current count.

**Token ids.** Ids 0-255 are the single bytes in GPT-2's order (`BYTE_ORDER`: the printable bytes
first, then the others), the order of the byte-level alphabet in HF `tokenizers` and of the
single-byte tokens in tiktoken's encodings. Merged tokens get the next ids, in the order they are
learned; special tokens come last (the tokenizer adds them).

**Ties.** Among the pairs with the highest count we merge the one with the smallest pair of ids
(compared as tuples: smallest first id, then smallest second id). With the id order above this is
exactly the rule of HF `tokenizers`' `BpeTrainer`, so both learn the same merges from the same
chunks. As in `BpeTrainer`, a merge whose bytes are already a token (b"a" + b"bc" after b"ab" + b"c")
reuses that token's id and adds no new token.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Iterable, Mapping, Sequence

import regex

# The split patterns of tiktoken's GPT-2 (r50k_base) and GPT-4 (cl100k_base) encodings, verbatim.
# `++`, `?+` and `{1,3}+` are possessive quantifiers: they never give back what they matched, which
# only makes matching faster (tiktoken's comment: "equivalent, but executes faster").
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

# GPT-2's order of the 256 bytes: the printable ones ("!" to "~", "¡" to "¬", "®" to "ÿ"), then the rest.
_PRINTABLE = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
BYTE_ORDER: tuple[int, ...] = tuple(_PRINTABLE + [b for b in range(256) if b not in _PRINTABLE])
# bytes.translate table from a byte to its token id (ids 0-255 fit in a byte).
BYTE_TO_ID = bytes(BYTE_ORDER.index(b) for b in range(256))

Pair = tuple[int, int]


def initial_vocab() -> dict[int, bytes]:
    """The 256 single-byte tokens: id -> bytes, in `BYTE_ORDER`."""
    return {token_id: bytes([byte]) for token_id, byte in enumerate(BYTE_ORDER)}


def compile_pattern(pattern: str) -> regex.Pattern:
    """Compile a split pattern, with an error that says which pattern is broken."""
    try:
        return regex.compile(pattern)
    except regex.error as error:
        raise ValueError(f"the split pattern {pattern!r} is not a valid regular expression: {error}") from None


def special_token_splitter(special_tokens: Sequence[str]) -> regex.Pattern | None:
    """A pattern that matches any of the special tokens (longest first), or None when there are none."""
    if not special_tokens:
        return None
    return regex.compile("|".join(regex.escape(token) for token in sorted(special_tokens, key=len, reverse=True)))


def count_chunks(
    texts: Iterable[str], pattern: str = GPT4_SPLIT_PATTERN, special_tokens: Sequence[str] = ()
) -> Counter[bytes]:
    """How often each distinct chunk occurs in `texts` (streamed: one text in memory at a time).

    Text is first cut at the special tokens, which are removed: a merge must not learn
    "<|endoftext|>" from the document separators of a corpus file, nor cross a document boundary.
    """
    split_pattern = compile_pattern(pattern)
    specials = special_token_splitter(special_tokens)
    counts: Counter[str] = Counter()
    for number, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"texts must yield str, but item {number} is a {type(text).__name__}; "
                "pass the texts themselves, e.g. (doc.text for doc in docs)"
            )
        for piece in specials.split(text) if specials else (text,):
            counts.update(split_pattern.findall(piece))
    # Counting strings and encoding each distinct one once is faster than encoding every chunk.
    return Counter({chunk.encode("utf-8"): count for chunk, count in counts.items()})


def learn_merges(
    chunk_counts: Mapping[bytes, int], n_tokens: int, progress: bool = False
) -> tuple[dict[Pair, int], dict[int, bytes]]:
    """Merge the most frequent pairs of the chunks until the vocabulary has `n_tokens` tokens.

    Returns `merges` (pair of ids -> id of the merged token, in the order learned) and `vocab`
    (id -> bytes). Stops early, with a smaller vocabulary, when no pair is left to merge.
    """
    vocab = initial_vocab()
    token_ids = {token: token_id for token_id, token in vocab.items()}
    merges: dict[Pair, int] = {}

    # The distinct chunks as lists of ids, their counts, and the count of every adjacent pair.
    words = [list(chunk.translate(BYTE_TO_ID)) for chunk in chunk_counts]
    counts = list(chunk_counts.values())
    pair_counts: Counter[Pair] = Counter()
    where: dict[Pair, set[int]] = {}  # pair -> the words that contain it (or did: a superset)
    for w, (word, count) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += count
            where.setdefault(pair, set()).add(w)
    # A heap of (-count, pair): the most frequent pair on top, the smallest pair among equals.
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    bar = _progress_bar(n_tokens - len(vocab)) if progress else None
    while len(vocab) < n_tokens and heap:
        negative_count, pair = heapq.heappop(heap)
        count = pair_counts[pair]
        if count != -negative_count:  # out of date: push back with the current count
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue

        token = vocab[pair[0]] + vocab[pair[1]]
        new_id = token_ids.get(token)
        if new_id is None:  # a new token (else the merge reuses an existing one, as HF does)
            new_id = len(vocab)
            vocab[new_id] = token
            token_ids[token] = new_id
            if bar is not None:
                bar.update()
        merges[pair] = new_id

        new_pairs = _merge_everywhere(pair, new_id, where.pop(pair), words, counts, pair_counts, where)
        del pair_counts[pair]
        for new_pair in new_pairs:
            if pair_counts[new_pair] > 0:
                heapq.heappush(heap, (-pair_counts[new_pair], new_pair))
    if bar is not None:
        bar.close()
    return merges, vocab


def _merge_everywhere(
    pair: Pair,
    new_id: int,
    candidates: set[int],
    words: list[list[int]],
    counts: list[int],
    pair_counts: Counter[Pair],
    where: dict[Pair, set[int]],
) -> set[Pair]:
    """Merge `pair` in every candidate word, in place, and update the pair counts around it.

    Around an occurrence "x a b y", the pairs (x, a) and (b, y) lose one occurrence per copy of the
    word, and (x, ab) and (ab, y) gain one. When occurrences touch ("a b a b"), the right pair of
    the first, (ab, a), is taken back by the left pair of the second, leaving (ab, ab): the same
    bookkeeping as HF's `Word::merge`. Returns the new pairs (those that contain `new_id`).
    """
    first, second = pair
    new_pairs: set[Pair] = set()
    for w in candidates:
        word = words[w]
        count = counts[w]
        i = 0
        last = len(word) - 1
        while i < last:
            if word[i] != first or word[i + 1] != second:
                i += 1
                continue
            if i > 0:  # the pair on the left: (x, a) becomes (x, ab)
                left = word[i - 1]
                pair_counts[left, first] -= count
                pair_counts[left, new_id] += count
                new_pairs.add((left, new_id))
                where.setdefault((left, new_id), set()).add(w)
            if i + 1 < last:  # the pair on the right: (b, y) becomes (ab, y)
                right = word[i + 2]
                pair_counts[second, right] -= count
                pair_counts[new_id, right] += count
                new_pairs.add((new_id, right))
                where.setdefault((new_id, right), set()).add(w)
            word[i : i + 2] = (new_id,)
            last -= 1
            i += 1
    return new_pairs


def train(
    texts: Iterable[str],
    vocab_size: int,
    pattern: str = GPT4_SPLIT_PATTERN,
    special_tokens: Sequence[str] = (),
    progress: bool = False,
) -> tuple[dict[Pair, int], dict[int, bytes]]:
    """Learn a byte-level BPE of `vocab_size` tokens (special tokens included) from `texts`.

    Returns (`merges`, `vocab`) as `learn_merges` does; the special tokens are not in `vocab`
    (the tokenizer gives them the ids after it). See the module docstring for ids and ties.
    """
    special_tokens = check_special_tokens(special_tokens)
    minimum = 256 + len(special_tokens)
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: it must hold the 256 byte tokens and the "
            f"{len(special_tokens)} special tokens, so at least {minimum}"
        )
    chunk_counts = count_chunks(texts, pattern, special_tokens)
    if not chunk_counts:
        raise ValueError("the training corpus is empty: `texts` yielded no text to learn merges from")
    return learn_merges(chunk_counts, vocab_size - len(special_tokens), progress)


def check_special_tokens(special_tokens: Sequence[str]) -> tuple[str, ...]:
    """The special tokens as a tuple, after checking they are distinct non-empty strings."""
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a list of strings, not the string {special_tokens!r}")
    special_tokens = tuple(special_tokens)
    for token in special_tokens:
        if not isinstance(token, str) or not token:
            raise ValueError(f"special tokens must be non-empty strings, got {token!r}")
    duplicates = sorted(token for token, n in Counter(special_tokens).items() if n > 1)
    if duplicates:
        raise ValueError(f"special tokens must be distinct; repeated: {duplicates}")
    return special_tokens


def _progress_bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="BPE merges", unit="merge")
