"""The checkers of notebook 01's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import functools
import hashlib
import itertools
import re
from collections import Counter, defaultdict

import numpy as np
import pytest

import math

from minilm.data import real
from minilm.data.filters import dedup, language, pii, quality
from minilm.exercises import ExerciseFailed
from minilm.exercises import data as checks

from exercise_checks import nudged, table_tests, tolerance_tests


# --- the package's own functions, shaped like the exercises ---------------------------------------------------


def package_mean_word_length_rule(text):
    return quality.gopher_mean_word_length(quality.TextStats(text), quality.QualityConfig())


def package_find_ipv4(text):
    return [text[start:end] for kind, start, end in pii.find_pii(text) if kind == "ip"]


def package_shingles(text, n):
    return {int(x) for x in dedup.shingles(text, n)}


def package_lsh(signatures, bands, rows):
    return {tuple(map(int, p)) for p in dedup.lsh_candidates(np.array(signatures, dtype=np.uint64), bands, rows)}


# --- answers written out, as a learner would (the notebook's solutions) ---------------------------------------


def written_mean_word_length_rule(text):
    words = [w for w in (t.strip(quality.PUNCTUATION) for t in text.split()) if w]
    mean = sum(map(len, words)) / len(words) if words else 0.0
    return None if 3 <= mean <= 10 else "gopher:mean_word_length"


def package_precision_interval(flags, labels):
    judged = [label for flag, label in zip(flags, labels) if flag and label is not None]
    return (sum(judged) / len(judged) if judged else math.nan, *real.wilson_interval(sum(judged), len(judged)))


def written_precision_interval(flags, labels, z=1.96):
    judged = [label for flag, label in zip(flags, labels) if flag and label is not None]
    n, k = len(judged), sum(judged)
    if n == 0:
        return math.nan, 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){OCTET}(?:\.{OCTET}){{3}}(?!\w|\.\d)")


def written_find_ipv4(text):
    return IPV4.findall(text)


def written_shingles(text, n):
    hashes = [int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
              for w in re.findall(r"\w+", text.lower())]
    if not hashes:
        return set()
    n = min(n, len(hashes))
    out = set()
    for i in range(len(hashes) - n + 1):
        h = 0
        for x in hashes[i:i + n]:
            h = (h * int(dedup.NGRAM_MULTIPLIER) + x) % 2**64
        out.add(h)
    return out


def written_lsh(signatures, bands, rows):
    pairs = set()
    for band in range(bands):
        buckets = defaultdict(list)
        for doc, signature in enumerate(signatures):
            buckets[tuple(signature[band * rows:(band + 1) * rows])].append(doc)
        for members in buckets.values():
            pairs.update(itertools.combinations(members, 2))
    return pairs


# --- plausible wrong answers ------------------------------------------------------------------------------------


def wrong_strict_limits(text):  # < instead of <=: a mean of exactly 3 fails
    words = [w for w in (t.strip(quality.PUNCTUATION) for t in text.split()) if w]
    mean = sum(map(len, words)) / len(words) if words else 0.0
    return None if 3 < mean < 10 else "gopher:mean_word_length"


def wrong_punctuation_kept(text):  # "word," counts 5 characters, "—" counts as a word
    words = text.split()
    mean = sum(map(len, words)) / len(words) if words else 0.0
    return None if 3 <= mean <= 10 else "gopher:mean_word_length"


def wrong_precision_wald(flags, labels, z=1.96):  # the normal approximation: an interval of width 0 at p = 1
    judged = [label for flag, label in zip(flags, labels) if flag and label is not None]
    if not judged:
        return math.nan, 0.0, 1.0
    p = sum(judged) / len(judged)
    half = z * math.sqrt(p * (1 - p) / len(judged))
    return p, max(0.0, p - half), min(1.0, p + half)


def wrong_precision_unlabelled_as_wrong(flags, labels):  # an item nobody labelled counts as a false alarm
    judged = [bool(label) for flag, label in zip(flags, labels) if flag]
    return (sum(judged) / len(judged) if judged else math.nan, *real.wilson_interval(sum(judged), len(judged)))


def wrong_precision_all_items(flags, labels):  # counts the labels of items the rule did not fire on
    judged = [label for label in labels if label is not None]
    return (sum(judged) / len(judged) if judged else math.nan, *real.wilson_interval(sum(judged), len(judged)))


def wrong_ipv4_no_range(text):  # any 1-3 digits, word boundaries
    return re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text)


def wrong_ipv4_word_boundaries(text):  # the octet range is right, the boundaries are \b
    return re.findall(rf"\b{OCTET}(?:\.{OCTET}){{3}}\b", text)


def wrong_shingles_python_hash(text, n):  # Python's hash(): salted per process
    words = re.findall(r"\w+", text.lower())
    return {hash(tuple(words[i:i + n])) for i in range(max(1, len(words) - n + 1))} if words else set()


def wrong_shingles_no_wrap(text, n):  # forgets the wrap-around at 2**64
    hashes = [int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
              for w in re.findall(r"\w+", text.lower())]
    n = min(n, len(hashes))
    out = set()
    for i in range(len(hashes) - n + 1):
        h = 0
        for x in hashes[i:i + n]:
            h = h * int(dedup.NGRAM_MULTIPLIER) + x
        out.add(h)
    return out if hashes else set()


def wrong_lsh_interleaved(signatures, bands, rows):  # band k takes every bands-th column
    pairs = set()
    for band in range(bands):
        buckets = defaultdict(list)
        for doc, signature in enumerate(signatures):
            buckets[tuple(signature[band::bands][:rows])].append(doc)
        for members in buckets.values():
            pairs.update(itertools.combinations(members, 2))
    return pairs


def wrong_lsh_any_column(signatures, bands, rows):  # one equal value is not a whole equal band
    return {(i, j) for i, j in itertools.combinations(range(len(signatures)), 2)
            if any(a == b for a, b in zip(signatures[i][:bands * rows], signatures[j][:bands * rows]))}



# --- Exercise 6: naive Bayes language identification, written out, and wrong in the usual ways -------------------


def package_language_posteriors(train, text, alpha=1.0):
    model = language.train_identifier(train, alpha=alpha)
    return dict(zip(model.languages, language.log_posteriors(model, [text])[0].tolist()))


def _naive_bayes(train, text, alpha=1.0, *, prior="documents", denominator="vocabulary", unseen="skip",
                 counts_of=language.char_ngrams, normalise=True, shared_vocabulary=True):
    counts = {lang: Counter() for lang in train}
    for lang, docs in train.items():
        for doc in docs:
            counts[lang].update(counts_of(doc))
    vocabulary = set().union(*counts.values())
    n_docs = sum(len(docs) for docs in train.values())
    joint = {}
    for lang in train:
        size = len(vocabulary) if shared_vocabulary else len(counts[lang])
        total = sum(counts[lang].values()) + (alpha * size if denominator == "vocabulary" else 0)
        log_prior = math.log(len(train[lang]) / n_docs) if prior == "documents" else -math.log(len(train))
        joint[lang] = log_prior + sum(c * math.log((counts[lang][g] + alpha) / total)
                                      for g, c in counts_of(text).items() if unseen == "keep" or g in vocabulary)
    if not normalise:
        return joint
    top = max(joint.values())
    norm = top + math.log(sum(math.exp(v - top) for v in joint.values()))
    return {lang: v - norm for lang, v in joint.items()}


def written_language_posteriors(train, text, alpha=1.0):
    return _naive_bayes(train, text, alpha)


def wrong_language_uniform_prior(train, text, alpha=1.0):
    return _naive_bayes(train, text, alpha, prior="uniform")


def wrong_language_no_smoothing_mass(train, text, alpha=1.0):  # alpha added above the line, not below it
    return _naive_bayes(train, text, alpha, denominator="total")


def wrong_language_unseen_kept(train, text, alpha=1.0):
    return _naive_bayes(train, text, alpha, unseen="keep")


def wrong_language_presence(train, text, alpha=1.0):  # each n-gram once, however often it occurs
    return _naive_bayes(train, text, alpha, counts_of=lambda t: Counter(set(language.char_ngrams(t))))


def wrong_language_not_normalised(train, text, alpha=1.0):
    return _naive_bayes(train, text, alpha, normalise=False)


def wrong_language_own_vocabulary(train, text, alpha=1.0):
    return _naive_bayes(train, text, alpha, shared_vocabulary=False)


CHECKS = [
    (checks.check_mean_word_length_rule, [package_mean_word_length_rule, written_mean_word_length_rule],
     [wrong_strict_limits, wrong_punctuation_kept]),
    (checks.check_precision_interval, [package_precision_interval, written_precision_interval],
     [wrong_precision_wald, wrong_precision_unlabelled_as_wrong, wrong_precision_all_items]),
    (checks.check_find_ipv4, [package_find_ipv4, written_find_ipv4], [wrong_ipv4_no_range, wrong_ipv4_word_boundaries]),
    (checks.check_shingle_hashes, [package_shingles, written_shingles], [wrong_shingles_python_hash, wrong_shingles_no_wrap]),
    (checks.check_lsh_candidates, [package_lsh, written_lsh], [wrong_lsh_interleaved, wrong_lsh_any_column]),
    (checks.check_language_posteriors, [package_language_posteriors, written_language_posteriors],
     [wrong_language_uniform_prior, wrong_language_no_smoothing_mass, wrong_language_unseen_kept,
      wrong_language_presence, wrong_language_not_normalised, wrong_language_own_vocabulary]),
]
test_right_answers_pass, test_wrong_answers_fail_with_input_and_hint, test_unsolved_stub_says_not_solved = (
    table_tests(CHECKS, times=3, names_input=("input", "signatures")))

# The checkers that compare numbers with a tolerance: (checker, the right answer nudged, rel_tol, abs_tol).
TOLERANCES = [
    (checks.check_precision_interval, functools.partial(nudged, package_precision_interval), 1e-9, 1e-12),
    (checks.check_language_posteriors, functools.partial(nudged, package_language_posteriors), 1e-9, 1e-9),
]
test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = (
    tolerance_tests(TOLERANCES))


def test_a_crash_names_the_input():
    def crashes(text):
        return text.split()[1000]  # IndexError

    with pytest.raises(ExerciseFailed, match="raised IndexError") as failure:
        checks.check_mean_word_length_rule(crashes)
    assert "on input:" in str(failure.value)


def test_wrong_return_types_are_named():
    with pytest.raises(ExerciseFailed, match="list of strings"):
        checks.check_find_ipv4(lambda text: ",".join(written_find_ipv4(text)))
    with pytest.raises(ExerciseFailed, match="set of"):
        checks.check_lsh_candidates(lambda signatures, bands, rows: len(signatures))
