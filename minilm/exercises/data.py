"""Checkers for the exercises of notebook 01 (data): a quality rule, a rule's precision on hand labels
with its Wilson interval, a PII pattern, shingles for near dedup, LSH banding, and a language identifier.

Each checker draws fresh inputs (from a new seed every run, named in a failure), runs the learner's
function and the package's own, and passes or fails on the first input where they differ. The inputs
are made to land on the cases where a first attempt usually goes wrong: a mean word length of exactly
3, a rule that fired on nothing labelled, a dotted number with five parts, a text shorter than one
shingle, signature columns that no band uses.
"""

from __future__ import annotations

import math
import random

import numpy as np

from minilm.data import real
from minilm.data.filters import dedup, pii, quality
from minilm.exercises import ExerciseFailed, _short, call_learner, check_cases, checker, passed

# --- Exercise 1: Gopher's mean word length rule ------------------------------------------------------------

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_ACCENTED = ["café", "naïve", "über", "señor", "crème", "façade", "Zoë"]
_PUNCTUATION_TOKENS = ["—", "-", "...", "…", "!!", "?", "•", "–", "*", "(", ")"]
_WRAPPERS = [("", ""), ("", ","), ("", "."), ("(", ")"), ('"', '"'), ("“", "”"), ("", "!"), ("'", "'"), ("", "...")]


def _word(rng: random.Random, length: int) -> str:
    word = "".join(rng.choice(_LETTERS) for _ in range(length))
    return word.capitalize() if rng.random() < 0.2 else word


def _quality_text(rng: random.Random) -> str:
    """A text whose mean word length falls anywhere from 1 to 13, often near the limits 3 and 10."""
    centre = rng.choice([1.5, 2.5, 2.9, 3.0, 3.1, 3.5, 5.0, 9.5, 10.0, 10.2, 11.0, 13.0])
    tokens = []
    for _ in range(rng.randint(1, 40)):
        roll = rng.random()
        if roll < 0.12:
            tokens.append(rng.choice(_PUNCTUATION_TOKENS))  # not a word at all
        elif roll < 0.18:
            tokens.append(rng.choice(_ACCENTED + ["don't", "it's", "e-mail", "2024", "3.11"]))
        else:
            length = max(1, round(rng.gauss(centre, 1.0)))
            before, after = rng.choice(_WRAPPERS)
            tokens.append(before + _word(rng, length) + after)
    separators = [" ", " ", " ", "  ", "\n", "\t", "\n\n"]
    return "".join(token + rng.choice(separators) for token in tokens).strip()


def _reference_mean_word_length_rule(text: str) -> str | None:
    return quality.gopher_mean_word_length(quality.TextStats(text), quality.QualityConfig())


@checker
def check_mean_word_length_rule(mean_word_length_rule, rng: random.Random) -> None:
    """Exercise 1: Gopher's rule that the mean word length lies between 3 and 10 characters."""
    title = "Exercise 1 (Gopher's mean word length rule)"
    exact = [" ".join(_word(rng, n) for _ in range(rng.randint(2, 9))) for n in (3, 10, 2, 11)]  # on and beyond the limits
    fixed = ["", "   ", "— ... •", "The cat, the dog and the bird.", "(a) (b) (c) ok?"]
    cases = [(text,) for text in exact + fixed + [_quality_text(rng) for _ in range(300)]]
    check_cases(title, mean_word_length_rule, _reference_mean_word_length_rule, cases,
                hint="strip quality.PUNCTUATION from both ends of each whitespace token and drop the tokens "
                     "that become empty; both limits are allowed (3.0 and 10.0 pass); no words at all: mean 0, so the text fails")


# --- Exercise 2: a rule's precision on hand labels, with its Wilson interval --------------------------------


def _flags_and_labels(rng: random.Random) -> tuple[list[bool], list[bool | None]]:
    """What a rule decided on n items, and a reader's labels: True (the rule was right to fire),
    False, or None (not labelled). Sizes from 0 to a few hundred, precisions from 0 to 1."""
    n = rng.choice([0, 1, 2, 3, 5, 8, 13, 30, 80, 300])
    fire_rate, right_rate, labelled_rate = rng.random(), rng.choice([0.0, 1.0, rng.random()]), rng.choice([1.0, 0.9, 0.6])
    flags = [rng.random() < fire_rate for _ in range(n)]
    labels = [(rng.random() < right_rate) if rng.random() < labelled_rate else None for _ in range(n)]
    return flags, labels


def _reference_precision_interval(flags: list[bool], labels: list[bool | None]) -> tuple[float, float, float]:
    judged = [label for flag, label in zip(flags, labels) if flag and label is not None]
    low, high = real.wilson_interval(sum(judged), len(judged))
    return (sum(judged) / len(judged) if judged else math.nan), low, high


@checker
def check_precision_interval(precision_interval, rng: random.Random) -> None:
    """Exercise 2: a rule's precision on the items it fired on that carry a label, with a Wilson 95% interval."""
    title = "Exercise 2 (precision with a Wilson interval)"
    fixed = [([True] * 10, [True] * 10), ([True] * 10, [False] * 10), ([True, True, False], [True, None, True]),
             ([False, False], [True, False]), ([], []), ([True] * 4, [True, False, None, True])]
    cases = fixed + [_flags_and_labels(rng) for _ in range(150)]

    def same(got, want) -> bool:
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            return False
        try:
            got = [float(x) for x in got]
        except (TypeError, ValueError):
            return False
        return all((math.isnan(w) and math.isnan(g)) or math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12)
                   for g, w in zip(got, want))

    check_cases(title, precision_interval, _reference_precision_interval, cases, same=same,
                hint="count only the items where the rule fired AND a label exists (None is not labelled); precision = "
                     "right / labelled; the Wilson interval with z = 1.96 is (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), "
                     "clipped to [0, 1]; with nothing labelled: (nan, 0.0, 1.0)")


# --- Exercise 3: IPv4 addresses -----------------------------------------------------------------------------

_FILLER = ["the server", "our printer", "a camera", "the router", "my laptop", "the old box", "the gateway"]


def _octet(rng: random.Random) -> str:
    return str(rng.choice([rng.randint(0, 9), rng.randint(10, 99), rng.randint(100, 255), 255, 250, 199, 0]))


def _ipv4(rng: random.Random) -> str:
    while True:
        parts = [_octet(rng) for _ in range(4)]
        address = ".".join(parts)
        # Stay on the rules the exercise states: the package also rejects all-single-digit "1.2.3.4"
        # (a section number) and a few addresses that name no one (127.0.0.1, ...); keep away from those.
        if any(len(p) > 1 for p in parts) and address not in pii.IP_ALLOWLIST:
            return address


def _not_an_ipv4(rng: random.Random) -> str:
    """Dotted numbers that are not IPv4 addresses, and addresses glued to something."""
    ip = _ipv4(rng)
    parts = ip.split(".")
    k = rng.randrange(4)
    choices = [
        ".".join(parts[:k] + [str(rng.randint(256, 999))] + parts[k + 1:]),  # an octet above 255
        ".".join(parts[:k] + ["0" + str(rng.randint(1, 99))] + parts[k + 1:]),  # a leading zero
        ".".join(parts[:3]),  # three parts: a version like 3.11.7
        ip + "." + str(rng.randint(0, 99)),  # five parts
        str(rng.randint(0, 99)) + "." + ip,  # five parts, the extra one in front
        "v" + ip,  # glued to a word
        "id_" + ip,
        ip + "abc",
        f"{rng.randint(2000, 2030)}.{rng.randint(1, 12):02d}.{rng.randint(1, 28):02d}",  # a date
    ]
    return rng.choice(choices)


def _ip_text(rng: random.Random) -> str:
    pieces = []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.5:
            before, after = rng.choice([("", ""), ("(", ")"), ("", "."), ("", ","), ("", ":8080"), ("host-", ""), ("=", ";")])
            pieces.append(f"{rng.choice(_FILLER)} at {before}{_ipv4(rng)}{after}")
        else:
            pieces.append(f"{rng.choice(_FILLER)} runs {_not_an_ipv4(rng)}")
    return rng.choice([". ", ", ", "\n", " and "]).join(pieces)


def _reference_find_ipv4(text: str) -> list[str]:
    return [text[start:end] for kind, start, end in pii.find_pii(text) if kind == "ip"]


@checker
def check_find_ipv4(find_ipv4, rng: random.Random) -> None:
    """Exercise 3: find IPv4 addresses, and leave alone dotted numbers that are not addresses."""
    title = "Exercise 3 (find IPv4 addresses)"
    fixed = ["Ping 192.168.0.12 or 10.0.0.254.", "Python 3.11.7 and torch 2.13.0", "Not 256.10.10.10, nor 10.10.10.256.",
             "version 10.2.3.4.5 of the tool", "Mask 010.1.20.3, keep 10.1.20.3!", ""]
    cases = [(text,) for text in fixed + [_ip_text(rng) for _ in range(200)]]
    def learner(text: str) -> list[str]:
        got = call_learner(title, find_ipv4, text)
        if not isinstance(got, (list, tuple)) or not all(isinstance(x, str) for x in got):
            raise ExerciseFailed(f"❌ {title}: return a list of strings (the addresses as written), got {_short(got)}")
        return list(got)

    check_cases(title, learner, _reference_find_ipv4, cases,
                hint="each of the 4 numbers 0-255 without a leading zero; nothing of \\w or '.' just before; nothing of \\w, "
                     "and no '.' followed by a digit, just after; return the addresses as strings, in order")


# --- Exercise 4: shingles -----------------------------------------------------------------------------------

_VOCABULARY = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "Tom", "Mia", "park", "happy", "big", "red",
               "ball", "and", "café", "Zoë", "snake_case", "x2", "2024", "don't", "e-mail", "THE", "Cat"]


def _shingle_text(rng: random.Random) -> str:
    words = rng.choices(_VOCABULARY, k=rng.choice([0, 1, 2, 3, 4, 5, 6, 8, 12, 30]))
    text = ""
    for word in words:
        text += word + rng.choice([" ", " ", " ", ", ", ". ", "\n", " -- ", "!"])
    return text if rng.random() < 0.9 else text + " ... ?!"


def _reference_shingles(text: str, n: int) -> list[int]:
    return sorted(int(x) for x in dedup.shingles(text, n))


@checker
def check_shingle_hashes(shingle_hashes, rng: random.Random) -> None:
    """Exercise 4: the set of hashed word n-grams of a text, as `minilm.data.filters.dedup.shingles` computes it."""
    title = "Exercise 4 (hashed word shingles)"
    fixed = [("", 5), ("?!", 3), ("one", 5), ("The cat sat.", 5), ("the THE The", 1), ("a b c d e f", 5)]
    cases = fixed + [(_shingle_text(rng), rng.randint(1, 6)) for _ in range(150)]

    def learner(text: str, n: int) -> list[int]:
        got = call_learner(title, shingle_hashes, text, n)
        try:
            return sorted({int(x) for x in got})
        except TypeError:
            raise ExerciseFailed(f"❌ {title}: return a set of ints, got {type(got).__name__}") from None

    check_cases(title, learner, _reference_shingles, cases,
                hint="words = re.findall(r'\\w+', text.lower()); h = blake2b-8 of each word, read little-endian; "
                     "a shingle combines n word hashes as h = (h * NGRAM_MULTIPLIER + next) % 2**64; "
                     "fewer than n words: one shingle of all of them; no words: no shingles")


# --- Exercise 5: LSH banding --------------------------------------------------------------------------------


def _signatures(rng: random.Random) -> tuple[list[list[int]], int, int]:
    num_docs, num_perm = rng.randint(2, 25), rng.randint(2, 24)
    alphabet = rng.choice([2, 3, 5, 1000, 2**32 - 1])  # few values: many collisions
    signatures = [[rng.randrange(alphabet) for _ in range(num_perm)] for _ in range(num_docs)]
    for _ in range(rng.randint(0, 3)):  # some copies, and some documents equal on one stretch only
        i, j = rng.randrange(num_docs), rng.randrange(num_docs)
        start = rng.randrange(num_perm)
        end = rng.randint(start + 1, num_perm)
        signatures[j][start:end] = signatures[i][start:end]
    bands = rng.randint(1, num_perm)
    rows = rng.randint(1, num_perm // bands)  # bands * rows may be less than num_perm: the rest is unused
    return signatures, bands, rows


def _reference_lsh(signatures: list[list[int]], bands: int, rows: int) -> set[tuple[int, int]]:
    pairs = dedup.lsh_candidates(np.array(signatures, dtype=np.uint64), bands, rows)
    return {(int(i), int(j)) for i, j in pairs}


@checker
def check_lsh_candidates(lsh_candidates, rng: random.Random) -> None:
    """Exercise 5: the candidate pairs of LSH banding, as `minilm.data.filters.dedup.lsh_candidates` finds them."""
    title = "Exercise 5 (LSH candidate pairs)"
    cases = [([[1, 2, 3, 4], [1, 2, 9, 9], [0, 2, 3, 4]], 2, 2), ([[5, 5], [5, 5]], 1, 1), ([[7, 1, 2], [8, 1, 2]], 1, 2)]
    cases += [_signatures(rng) for _ in range(150)]
    hint = ("band k covers columns k*rows to (k+1)*rows - 1; two documents are a candidate pair when some band is equal "
            "in all its columns; pairs (i, j) with i < j, each once")
    for signatures, bands, rows in cases:
        got = call_learner(title, lsh_candidates, [list(s) for s in signatures], bands, rows)
        try:
            got = {(int(i), int(j)) for i, j in got}
        except (TypeError, ValueError):
            raise ExerciseFailed(f"❌ {title}: return a set of (i, j) pairs, got {_short(got)}") from None
        want = _reference_lsh(signatures, bands, rows)
        if got != want:
            missing, extra = sorted(want - got), sorted(got - want)
            raise ExerciseFailed(
                f"❌ {title}: wrong pairs for bands={bands}, rows={rows} and these signatures (one per line):\n"
                + "\n".join(f"   {i}: {s}" for i, s in enumerate(signatures[:12]))
                + ("\n   ..." if len(signatures) > 12 else "")
                + (f"\n   missing: {_short(missing)}" if missing else "")
                + (f"\n   not candidates: {_short(extra)}" if extra else "")
                + f"\n   hint: {hint}"
            )
    passed(title, f"{len(cases)} cases")


# --- Exercise 6: a character n-gram language identifier ---------------------------------------------------

_ALPHABETS = ["aeiounrst", "aeilnorsu", "bcdeikmouz", "aeghinrtw", "abdeijkloy"]


def _pseudo_text(rng: random.Random, alphabet: str, words: int) -> str:
    return " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(words))


def _language_case(rng: random.Random) -> tuple[dict[str, list[str]], str, float]:
    """A small training set of 2 to 4 made-up languages (each its own letters), a text, and alpha."""
    languages = rng.sample(["xx", "yy", "zz", "ww"], rng.randint(2, 4))
    alphabets = rng.sample(_ALPHABETS, len(languages))
    train = {lang: [_pseudo_text(rng, alphabet, rng.randint(1, 12)) for _ in range(rng.randint(1, 5))]
             for lang, alphabet in zip(languages, alphabets)}
    alphabet = rng.choice(alphabets + ["abcdefghijklmnopqrstuvwxyz", "áéíñ"])  # sometimes n-grams never seen
    text = _pseudo_text(rng, alphabet, rng.randint(1, 5)) if rng.random() < 0.9 else ""
    return train, text, rng.choice([1.0, 0.5, 0.1, 2.0])


def _reference_language_posteriors(train: dict[str, list[str]], text: str, alpha: float) -> dict[str, float]:
    from minilm.data.filters import language

    model = language.train_identifier(train, alpha=alpha)
    return dict(zip(model.languages, language.log_posteriors(model, [text])[0].tolist()))


@checker
def check_language_posteriors(language_posteriors, rng: random.Random) -> None:
    """Exercise 6: naive Bayes over character n-grams, as `minilm.data.filters.language` computes it."""
    title = "Exercise 6 (a character n-gram language identifier)"
    real_train = {"en": ["The dog ran to the park.", "She was happy and tired."],
                  "es": ["El perro corrió al parque.", "Ella estaba feliz y cansada."]}
    cases = [(real_train, "The cat was happy.", 1.0), (real_train, "El gato estaba feliz.", 1.0),
             (real_train, "", 1.0), (real_train, "ñ", 0.5), ({"a": ["ab ab"], "b": ["cd", "cd", "cd"]}, "ab", 1.0)]
    cases += [_language_case(rng) for _ in range(120)]

    def same(got, want) -> bool:
        if not isinstance(got, dict) or set(got) != set(want):
            return False
        try:
            return all(math.isclose(float(got[lang]), want[lang], rel_tol=1e-9, abs_tol=1e-9) for lang in want)
        except (TypeError, ValueError):
            return False

    check_cases(title, language_posteriors, _reference_language_posteriors, cases, same=same,
                hint="priors: each language's share of the training documents; P(g | language) = (count of g in the "
                     "language + alpha) / (all n-grams of the language + alpha * V), V = the n-grams seen in training "
                     "in any language; n-grams never seen in training are skipped; log P(text, language) = log prior + "
                     "sum of count(g) * log P(g | language); normalise with log-sum-exp so the exponentials sum to 1")
