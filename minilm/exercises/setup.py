"""Checkers for the exercises of notebook 00 (setup): a language model in numbers. The bytes, characters and
tokens of a text; the loss of a guess that knows nothing and of one that knows the token frequencies; a bigram
language model, fitted by counting, and text sampled from it.

Each checker draws fresh inputs (a new tokenizer, new token streams, new probability tables from a new seed every
run), runs the learner's function and the package's own, and passes or fails on the first input where they differ.
The inputs are made to land where a first attempt usually goes wrong: accents written as one code point or as two,
emoji of several code points, a text made of one token repeated (a loss of 0), tokens that never occur, a last
token that starts no pair, transitions of probability 0 that a sampler must never take.
"""

from __future__ import annotations

import math
import numbers
import random
import unicodedata

import torch

from minilm.exercises import _short, call_learner, check_cases, checker, failure, passed, torch_generator
from minilm.tokenizer import Tokenizer
from minilm.train.objectives import token_losses

# --- Exercise 1: bytes, characters and tokens ---------------------------------------------------------------------

_WORDS = ["the", "cat", "sat", "on", "a", "mat", "Once", "upon", "time", "happy", "ball", "and", "then", "park",
          "café", "cafe\u0301", "naïve", "na\u0131ve", "über", "Ørsted", "東京", "こんにちは", "😀", "👍🏽", "👩‍👩‍👧",
          "🇫🇷", "def", "return", "x", "42", "3.14", "don't", "→", "€", "½", "ß", "ﬁ"]
_SEPARATORS = [" ", " ", " ", "  ", "\n", ", ", ". "]


def _random_text(rng: random.Random, n_words: int) -> str:
    return "".join(rng.choice(_WORDS) + rng.choice(_SEPARATORS) for _ in range(n_words))


def _random_tokenizer(rng: random.Random) -> Tokenizer:
    """A small byte-level BPE tokenizer trained on a fresh random corpus (in milliseconds)."""
    texts = [_random_text(rng, rng.randint(20, 80)) for _ in range(rng.randint(3, 8))]
    return Tokenizer.train(texts, 256 + rng.randint(20, 120) + 1, special_tokens=("<|endoftext|>",))


def reference_text_sizes(text: str, encode) -> dict[str, int]:
    """The three lengths of a text: UTF-8 bytes (what is stored), code points (what Python's str holds), tokens."""
    return {"bytes": len(text.encode("utf-8")), "characters": len(text), "tokens": len(encode(text))}


@checker
def check_text_sizes(text_sizes, rng: random.Random) -> None:
    """Exercise 1: the bytes, the characters and the tokens of a text."""
    title = "Exercise 1 (bytes, characters and tokens)"
    encode = _random_tokenizer(rng).encode_ordinary
    fixed = ["", "hello", "café", "cafe\u0301", unicodedata.normalize("NFD", "naïve über"), "東京", "😀", "👩‍👩‍👧",
             "Once upon a time"]
    cases = [(text, encode) for text in fixed + [_random_text(rng, rng.choice([1, 2, 5, 30])) for _ in range(25)]]
    check_cases(title, text_sizes, reference_text_sizes, cases,
                hint="bytes are counted in the text's UTF-8 encoding; characters are the code points of the str; "
                     "tokens are the ids that encode(text) returns, however many repeat")


# --- Exercise 2: the loss of a guess --------------------------------------------------------------------------


def reference_guess_losses(ids: torch.Tensor, vocab_size: int, n_bytes: int) -> dict[str, float]:
    """The losses of two guesses that ignore the context, computed with the package's cross-entropy
    (`minilm.train.objectives.token_losses`), the function that scores the transformer.

    A guess is a fixed distribution over the vocabulary, the same logits at every position: zeros for the
    uniform guess, the log of each token's frequency in `ids` for the unigram guess (the best fixed distribution
    for these ids). Both are given in nats per token and in bits per byte of the `n_bytes` bytes of text.
    """
    ids = torch.as_tensor(ids, dtype=torch.long)
    counts = torch.bincount(ids, minlength=vocab_size).double()
    seen = counts.nonzero().flatten()  # a token's loss is the same wherever it stands: score each distinct token once
    uniform = token_losses(torch.zeros(1, 1, vocab_size), seen[None, :1]).sum().item()
    logits = (counts / counts.sum()).log().float()
    per_token = token_losses(logits.expand(1, len(seen), vocab_size), seen[None]).double()
    unigram = (per_token[0] * counts[seen]).sum().item() / len(ids)
    to_bits_per_byte = len(ids) / n_bytes / math.log(2)
    return {"uniform": uniform, "unigram": unigram,
            "uniform_bpb": uniform * to_bits_per_byte, "unigram_bpb": unigram * to_bits_per_byte}


def _random_ids(rng: random.Random, generator: torch.Generator, vocab_size: int, length: int) -> torch.Tensor:
    """Token ids as text has them: most from a few frequent tokens (Zipf-like), some tokens never seen."""
    shape = rng.choice(["zipf", "zipf", "uniform", "few"])
    if shape == "zipf":
        weights = 1.0 / torch.arange(1, vocab_size + 1, dtype=torch.float64) ** rng.uniform(0.8, 1.5)
        weights = weights[torch.randperm(vocab_size, generator=generator)]
    elif shape == "uniform":
        weights = torch.ones(vocab_size, dtype=torch.float64)
    else:
        weights = torch.zeros(vocab_size, dtype=torch.float64)
        weights[torch.randperm(vocab_size, generator=generator)[: rng.randint(1, 4)]] = 1.0
    return torch.multinomial(weights, length, replacement=True, generator=generator)


def _guess_cases(rng: random.Random):
    """(ids, vocab_size, n_bytes): one token repeated (a unigram loss of 0), two tokens, then random streams."""
    generator = torch_generator(rng)
    repeated = torch.full((rng.randint(1, 50),), rng.randrange(7), dtype=torch.long)
    yield repeated, 7, len(repeated) * rng.randint(1, 4)
    yield torch.tensor([0, 1, 1, 0, 1, 1]), 2, 6
    for _ in range(12):
        vocab_size = rng.choice([3, 10, 100, 512, 4096])
        ids = _random_ids(rng, generator, vocab_size, rng.choice([1, 5, 100, 2000]))
        yield ids, vocab_size, int(len(ids) * rng.uniform(1.0, 5.0)) + 1


_GUESS_KEYS = ("uniform", "unigram", "uniform_bpb", "unigram_bpb")


def _ids_summary(ids: torch.Tensor, vocab_size: int) -> str:
    shown = _short(ids.tolist(), 120)
    distinct = len(torch.unique(ids))
    return f"ids={shown} ({len(ids)} tokens, {distinct} distinct), vocab_size={vocab_size}"


@checker
def check_guess_losses(guess_losses, rng: random.Random) -> None:
    """Exercise 2: the losses of the uniform and the unigram guess, in nats per token and bits per byte."""
    title = "Exercise 2 (the loss of a guess)"
    hint = ("a guess scores -ln p of each actual token, averaged over the tokens; the uniform guess gives every id of "
            "the vocabulary the same p, the unigram guess p = count / number of tokens; bits per byte: the nats of "
            "all the tokens together, divided by ln 2 and by the bytes")
    count = 0
    for ids, vocab_size, n_bytes in _guess_cases(rng):
        inputs = f"{_ids_summary(ids, vocab_size)}, n_bytes={n_bytes}"
        got = call_learner(title, guess_losses, ids.clone(), vocab_size, n_bytes)
        want = reference_guess_losses(ids, vocab_size, n_bytes)
        if not isinstance(got, dict) or set(got) != set(want):
            raise failure(title, f"return a dict with the keys {list(_GUESS_KEYS)}, got {_short(got)}", inputs, hint)
        for key in _GUESS_KEYS:
            value = got[key]
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isclose(
                    float(value), want[key], rel_tol=1e-4, abs_tol=1e-6):
                shown = f"{float(value):.6g}" if isinstance(value, numbers.Real) else _short(value)
                raise failure(title, f"wrong {key!r}: expected {want[key]:.6g}, got {shown}", inputs, hint)
        count += 1
    passed(title, f"{count} token streams")


# --- Exercise 3: a bigram language model ---------------------------------------------------------------------


def reference_bigram(ids: torch.Tensor, vocab_size: int, k: float) -> torch.Tensor:
    """(vocab_size, vocab_size) log-probabilities: row a holds ln p(next = b | previous = a), estimated from the
    counts of the pairs (a, b) that follow each other in `ids`, with k added to every count (add-k smoothing) so
    that a pair never seen keeps a small probability."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    pairs = ids[:-1] * vocab_size + ids[1:]
    counts = torch.bincount(pairs, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size).double() + k
    return (counts / counts.sum(dim=1, keepdim=True)).log()


def _bigram_cases(rng: random.Random):
    """(ids, vocab_size, k): two tokens, a last token that starts no pair, tokens never seen, then random streams."""
    generator = torch_generator(rng)
    yield torch.tensor([0, 1, 1, 0, 1, 1, 1]), 2, 1.0
    yield torch.tensor([2, 0, 0, 1, 3]), 5, rng.choice([0.1, 0.5])  # 3 is seen, last; 4 never
    for _ in range(10):
        vocab_size = rng.choice([3, 5, 30, 300])
        ids = _random_ids(rng, generator, vocab_size, rng.choice([2, 10, 200, 3000]))
        yield ids, vocab_size, rng.choice([0.01, 0.1, 0.5, 1.0, 2.0])


def _as_float_tensor(value):
    """The learner's table as a float64 tensor (a NumPy array is accepted too), or None when it is not a table."""
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return None
    return tensor.detach().double() if tensor.is_floating_point() else None


@checker
def check_bigram(bigram, rng: random.Random) -> None:
    """Exercise 3: a bigram model fitted by counting pairs, with add-k smoothing, as a table of log-probabilities."""
    title = "Exercise 3 (a bigram language model)"
    hint = ("count each pair (ids[i], ids[i+1]) once, the last token has no next one; add k to every cell of the "
            "vocab_size x vocab_size table, seen or not; divide each row by its own sum so that row a is the "
            "distribution of what follows a; return the natural log")
    count = 0
    for ids, vocab_size, k in _bigram_cases(rng):
        inputs = f"{_ids_summary(ids, vocab_size)}, k={k}"
        got = _as_float_tensor(call_learner(title, bigram, ids.clone(), vocab_size, k))
        want = reference_bigram(ids, vocab_size, k)
        if got is None or tuple(got.shape) != tuple(want.shape):
            shown = "not a table of floats" if got is None else f"a table of shape {tuple(got.shape)}"
            raise failure(title, f"return a float tensor of shape {tuple(want.shape)}, got {shown}", inputs, hint)
        wrong = ~torch.isclose(got, want, rtol=1e-4, atol=1e-4)
        if bool(wrong.any()):
            a, b = (int(i) for i in wrong.nonzero()[0])
            total = got[a].exp().sum().item()
            rows = f" (the row of {a} sums to {total:.4g} in probability)" if not math.isclose(total, 1, abs_tol=1e-3) else ""
            raise failure(title, f"wrong ln p(next={b} | previous={a}): expected {want[a, b].item():.6g}, "
                                 f"got {got[a, b].item():.6g}{rows}", inputs, hint)
        count += 1
    passed(title, f"{count} token streams")


# --- Exercise 4: sampling from the bigram model ----------------------------------------------------------------


def reference_sample(log_probs: torch.Tensor, start: int, length: int, generator: torch.Generator) -> list[int]:
    """`length` ids drawn one after the other, each from the row of the id before it (the first from `start`'s)."""
    probs = log_probs.double().exp()
    ids, previous = [], start
    for _ in range(length):
        previous = int(torch.multinomial(probs[previous], 1, generator=generator))
        ids.append(previous)
    return ids


def _random_log_probs(rng: random.Random, generator: torch.Generator, vocab_size: int) -> torch.Tensor:
    """A table of transitions: rows of different shapes, some transitions impossible (probability 0)."""
    probs = torch.rand(vocab_size, vocab_size, generator=generator, dtype=torch.float64) ** rng.choice([1, 2, 3])
    impossible = torch.rand(vocab_size, vocab_size, generator=generator) < 0.25
    impossible[torch.arange(vocab_size), (torch.arange(vocab_size) + 1) % vocab_size] = False  # every row can move on
    probs[impossible] = 0.0
    return (probs / probs.sum(dim=1, keepdim=True)).log()


def _frequency_failure(log_probs: torch.Tensor, start: int, ids: list[int]) -> str | None:
    """What is wrong with how often each transition occurs in `ids`, or None when they follow the table.

    A row visited n times holds counts that differ from n p by a few sqrt(n p (1 - p)) at most; five standard
    deviations (plus a sliver) leaves a correct sampler a chance of about one in a million to fail."""
    vocab_size = log_probs.shape[0]
    previous = torch.tensor([start, *ids[:-1]])
    counts = torch.bincount(previous * vocab_size + torch.tensor(ids), minlength=vocab_size**2).view(vocab_size, vocab_size)
    probs = log_probs.double().exp()
    for a in range(vocab_size):
        visits = int(counts[a].sum())
        for b in range(vocab_size):
            if probs[a, b] == 0 and counts[a, b] > 0:
                return f"{b} followed {a} {int(counts[a, b])} times, but ln p({b} | {a}) = -inf: it can never follow"
            if visits < 200:
                continue
            p, seen = float(probs[a, b]), int(counts[a, b]) / visits
            if abs(seen - p) > 5 * math.sqrt(p * (1 - p) / visits) + 0.005:
                return (f"after {a} ({visits} times) the next id was {b} in {seen:.1%} of cases, but p({b} | {a}) = {p:.1%}; "
                        f"row {a} of the table is {_short([round(x, 3) for x in probs[a].tolist()])}")
    return None


@checker
def check_sample(sample, rng: random.Random) -> None:
    """Exercise 4: text sampled from a bigram model, reproducible from its generator, with the model's frequencies."""
    title = "Exercise 4 (sampling from the bigram model)"
    hint = ("start from `start`; at each step turn the row of the previous id into probabilities (exp) and draw the "
            "next id with torch.multinomial(..., generator=generator), which then becomes the previous id; draw "
            "nothing else from any generator")
    generator = torch_generator(rng)
    tables = [_random_log_probs(rng, generator, vocab_size) for vocab_size in (3, rng.choice([4, 5]), 6)]
    count = 0
    for table in tables:
        vocab_size, start, seed = table.shape[0], rng.randrange(table.shape[0]), rng.randrange(2**62)
        for length in (0, 1, rng.randint(2, 9)):
            got = call_learner(title, sample, table.clone(), start, length, torch.Generator().manual_seed(seed))
            inputs = f"log_probs of shape {tuple(table.shape)}, start={start}, length={length}"
            got_list = got.tolist() if isinstance(got, torch.Tensor) else got
            if not isinstance(got_list, list) or len(got_list) != length or not all(
                    isinstance(i, numbers.Integral) and 0 <= i < vocab_size for i in got_list):
                raise failure(title, f"return a list of {length} ids in 0..{vocab_size - 1}, got {_short(got)}", inputs, hint)
        length = 5000
        rounded = [[round(x, 2) for x in row] for row in table.tolist()]
        inputs = f"log_probs={_short(rounded, 400)}, start={start}, length={length}"
        first = call_learner(title, sample, table.clone(), start, length, torch.Generator().manual_seed(seed))
        again = call_learner(title, sample, table.clone(), start, length, torch.Generator().manual_seed(seed))
        first, again = (ids.tolist() if isinstance(ids, torch.Tensor) else list(ids) for ids in (first, again))
        if first != again:
            raise failure(title, "two generators with the same seed gave two different texts: the draws must come "
                                 "from the generator you are given, so that a seed reproduces a sample", inputs, hint)
        if len(first) != length or not all(isinstance(i, numbers.Integral) and 0 <= i < vocab_size for i in first):
            raise failure(title, f"return a list of {length} ids in 0..{vocab_size - 1}, got {_short(first)}", inputs, hint)
        wrong = _frequency_failure(table, start, [int(i) for i in first])
        if wrong:
            raise failure(title, wrong, inputs, hint)
        count += 1
    passed(title, f"{count} tables, {count * length:,} tokens drawn twice")
