"""The checkers of notebook 02's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import functools
import re
from collections import Counter

import pytest

from minilm.exercises import ExerciseFailed
from minilm.exercises import tokenizer as checks
from minilm.tokenizer import Tokenizer, bpe, recover_merges
from minilm.tokenizer.naive import merge
from minilm.tokenizer.stage import bytes_per_token

from exercise_checks import nudged, table_tests, tolerance_tests


# --- the package's own functions, shaped like the exercises ---------------------------------------------------


class _Encoder:
    """`encode` shaped like the tiktoken Encoding that stage.bytes_per_token takes."""

    def __init__(self, encode):
        self.encode = encode

    def encode_ordinary_batch(self, texts, num_threads=1):
        return [self.encode(text) for text in texts]


def package_compression(texts_by_domain, encode):
    return bytes_per_token(_Encoder(encode), texts_by_domain)


def package_encode_chunk(data, ranks):
    return Tokenizer(ranks).encode_chunk(data)


def package_encode_with_specials(tokenizer, text, allowed):
    return tokenizer.encode(text, allowed_special=allowed)


def package_merge_and_update(word, count, pair, new_id, pair_counts):
    words = [list(word)]
    bpe._merge_everywhere(pair, new_id, {0}, words, [count], pair_counts, {})
    pair_counts[pair] -= count * (len(word) - len(words[0]))  # the fast trainer deletes the merged pair after all words
    return words[0]


# --- answers written out, as a learner would (the notebook's solutions) ---------------------------------------


def written_compression(texts_by_domain, encode):
    result, all_bytes, all_tokens = {}, 0, 0
    for domain, texts in texts_by_domain.items():
        n_bytes = sum(len(text.encode("utf-8")) for text in texts)
        n_tokens = sum(len(encode(text)) for text in texts)
        result[domain] = n_bytes / n_tokens
        all_bytes, all_tokens = all_bytes + n_bytes, all_tokens + n_tokens
    result["all"] = all_bytes / all_tokens
    return result


def written_encode_chunk(data, ranks):
    if data in ranks:
        return [ranks[data]]
    parts = [data[i:i + 1] for i in range(len(data))]
    while len(parts) > 1:
        candidates = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks]
        if not candidates:
            break
        _, i = min(candidates)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[part] for part in parts]


def written_encode_with_specials(tokenizer, text, allowed):
    for special in tokenizer.special_tokens:
        if special not in allowed and special in text:
            raise ValueError(f"special token {special!r} is not allowed")
    if not allowed:
        return tokenizer.encode_ordinary(text)
    pattern = "(" + "|".join(re.escape(s) for s in sorted(allowed, key=len, reverse=True)) + ")"
    ids = []
    for k, piece in enumerate(re.split(pattern, text)):
        ids += [tokenizer.special_tokens[piece]] if k % 2 else tokenizer.encode_ordinary(piece)
    return ids


def written_merge_and_update(word, count, pair, new_id, pair_counts):
    merged = merge(word, pair, new_id)
    for old in zip(word, word[1:]):
        pair_counts[old] -= count
    for new in zip(merged, merged[1:]):
        pair_counts[new] += count
    return merged


def written_recover(ranks):
    merges = {}
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best, i = min((ranks.get(a + b, rank), i) for i, (a, b) in enumerate(zip(parts, parts[1:])))
            if best >= rank:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        merges[ranks[parts[0]], ranks[parts[1]]] = rank
    return merges


# --- plausible wrong answers ------------------------------------------------------------------------------------


def wrong_compression_characters(texts_by_domain, encode):  # len(text) counts characters, not bytes
    result = {d: sum(map(len, ts)) / sum(len(encode(t)) for t in ts) for d, ts in texts_by_domain.items()}
    result["all"] = sum(len(t) for ts in texts_by_domain.values() for t in ts) / sum(
        len(encode(t)) for ts in texts_by_domain.values() for t in ts)
    return result


def wrong_compression_mean(texts_by_domain, encode):  # "all" as the mean of the domains
    result = {d: sum(len(t.encode()) for t in ts) / sum(len(encode(t)) for t in ts) for d, ts in texts_by_domain.items()}
    result["all"] = sum(result.values()) / len(result)
    return result


def wrong_encode_leftmost(data, ranks):  # joins the leftmost pair that is a token, not the lowest-ranked one
    if data in ranks:
        return [ranks[data]]
    parts = [data[i:i + 1] for i in range(len(data))]
    while True:
        i = next((i for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks), None)
        if i is None:
            return [ranks[p] for p in parts]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]


def wrong_encode_one_pass(data, ranks):  # one left-to-right pass of joins instead of repeating until none is left
    parts = [data[i:i + 1] for i in range(len(data))]
    out = []
    for part in parts:
        if out and out[-1] + part in ranks:
            out[-1] += part
        else:
            out.append(part)
    return [ranks[p] for p in out]


def wrong_specials_ignored(tokenizer, text, allowed):  # special-token text is always ordinary text
    return tokenizer.encode_ordinary(text)


def wrong_specials_never_refused(tokenizer, text, allowed):  # every special token is honoured, allowed or not
    return tokenizer.encode(text, allowed_special="all")


def wrong_specials_shortest_first(tokenizer, text, allowed):  # the shorter of two overlapping tokens wins
    for special in tokenizer.special_tokens:
        if special not in allowed and special in text:
            raise ValueError(special)
    if not allowed:
        return tokenizer.encode_ordinary(text)
    pattern = "(" + "|".join(re.escape(s) for s in sorted(allowed, key=len)) + ")"
    ids = []
    for k, piece in enumerate(re.split(pattern, text)):
        ids += [tokenizer.special_tokens[piece]] if k % 2 else tokenizer.encode_ordinary(piece)
    return ids


def wrong_update_touching(word, count, pair, new_id, pair_counts):  # fixes neighbours from the old word, occurrence by occurrence
    merged = merge(word, pair, new_id)
    i = 0
    while i < len(word) - 1:
        if (word[i], word[i + 1]) == pair:
            pair_counts[pair] -= count
            if i > 0:
                pair_counts[word[i - 1], word[i]] -= count
                pair_counts[word[i - 1], new_id] += count
            if i + 2 < len(word):
                pair_counts[word[i + 1], word[i + 2]] -= count
                pair_counts[new_id, word[i + 2]] += count
            i += 2
        else:
            i += 1
    return merged


def wrong_update_recount(word, count, pair, new_id, pair_counts):  # recounts the word, forgetting the other words
    merged = merge(word, pair, new_id)
    pair_counts.clear()
    for new in zip(merged, merged[1:]):
        pair_counts[new] += count
    return merged


def wrong_update_ignores_count(word, count, pair, new_id, pair_counts):  # one per occurrence, not `count`
    merged = merge(word, pair, new_id)
    for old in zip(word, word[1:]):
        pair_counts[old] -= 1
    for new in zip(merged, merged[1:]):
        pair_counts[new] += 1
    return merged


def wrong_recover_first_cut(ranks):  # the first cut whose two halves are tokens
    merges = {}
    for token, rank in ranks.items():
        if len(token) > 1:
            k = next(k for k in range(1, len(token)) if token[:k] in ranks and token[k:] in ranks)
            merges[ranks[token[:k]], ranks[token[k:]]] = rank
    return merges


def wrong_recover_all_ranks(ranks):  # merges with every token, not only those ranked below
    return {tuple(Tokenizer(ranks).encode_chunk(token[:-1])[:1] + [ranks[token[-1:]]]): rank
            for token, rank in ranks.items() if len(token) > 1}


CHECKS = [
    (checks.check_compression, [package_compression, written_compression], [wrong_compression_characters, wrong_compression_mean]),
    (checks.check_encode_chunk, [package_encode_chunk, written_encode_chunk], [wrong_encode_leftmost, wrong_encode_one_pass]),
    (checks.check_encode_with_specials, [package_encode_with_specials, written_encode_with_specials],
     [wrong_specials_ignored, wrong_specials_never_refused, wrong_specials_shortest_first]),
    (checks.check_merge_and_update, [package_merge_and_update, written_merge_and_update],
     [wrong_update_touching, wrong_update_recount, wrong_update_ignores_count]),
    (checks.check_recover_merges, [recover_merges, written_recover], [wrong_recover_first_cut, wrong_recover_all_ranks]),
]
test_right_answers_pass, test_wrong_answers_fail_with_input_and_hint, test_unsolved_stub_says_not_solved = (
    table_tests(CHECKS, times=2))

# The checkers that compare numbers with a tolerance: (checker, the right answer nudged, rel_tol, abs_tol).
# Compression is compared to the reference rounded to 3 decimals, within 0.0005: the nudged answer is the rounded one.
TOLERANCES = [
    (checks.check_compression, functools.partial(nudged, package_compression), 0.0, 0.0005),
]
test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = (
    tolerance_tests(TOLERANCES))


def test_a_crash_names_the_input():
    def crashes(data, ranks):
        parts = [data[i:i + 1] for i in range(len(data))]
        return [ranks[parts[0] + parts[-1] + b"\xff\xfe"]]  # looks up bytes that are never a token: KeyError

    with pytest.raises(ExerciseFailed, match="raised KeyError") as failure:
        checks.check_encode_chunk(crashes)
    assert "on input:" in str(failure.value)


def test_wrong_return_types_are_named():
    with pytest.raises(ExerciseFailed, match="dict with a key per domain"):
        checks.check_compression(lambda texts_by_domain, encode: 3.5)
    with pytest.raises(ExerciseFailed, match="list of int ids"):
        checks.check_encode_with_specials(lambda tokenizer, text, allowed: text)
    with pytest.raises(ExerciseFailed, match=r"return a dict \(rank, rank\)"):
        checks.check_recover_merges(lambda ranks: list(ranks))


def test_the_fast_trainers_bookkeeping_matches_a_recount():
    # The package reference of exercise 4 is the fast trainer's own update; it must agree with counting again.
    word, count, pair = [0, 1, 0, 1, 0, 1, 2], 3, (0, 1)
    counts = Counter()
    for p in zip(word, word[1:]):
        counts[p] += count
    merged = package_merge_and_update(word, count, pair, 9, counts)
    recount = Counter()
    for p in zip(merged, merged[1:]):
        recount[p] += count
    assert merged == [9, 9, 9, 2]
    assert {p: n for p, n in counts.items() if n} == dict(recount)
