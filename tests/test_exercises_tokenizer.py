"""The checkers of notebook 02's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import re
from collections import Counter

import pytest
import regex

from minilm.exercises import ExerciseFailed
from minilm.exercises import tokenizer as checks
from minilm.tokenizer import GPT4_SPLIT_PATTERN, Tokenizer, bpe, recover_merges, train, train_naive
from minilm.tokenizer.bpe import BYTE_TO_ID, initial_vocab
from minilm.tokenizer.naive import merge

from exercise_checks import assert_fails, table_tests


# --- the package's own functions, shaped like the exercises ---------------------------------------------------


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


def written_train_bpe(texts, vocab_size):  # the naive loop: recount every chunk after each merge
    chunks = [list(chunk.encode("utf-8").translate(BYTE_TO_ID)) for text in texts
              for chunk in regex.findall(GPT4_SPLIT_PATTERN, text)]
    vocab, merges = initial_vocab(), {}
    while len(vocab) < vocab_size:
        stats = Counter(pair for ids in chunks for pair in zip(ids, ids[1:]))
        if not stats:
            break
        pair = min(stats, key=lambda p: (-stats[p], p))
        new_id = len(vocab)
        vocab[new_id], merges[pair] = vocab[pair[0]] + vocab[pair[1]], new_id
        chunks = [merge(ids, pair, new_id) for ids in chunks]
    return merges, vocab


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


def _trainer(name, count, choose, merge_ids=merge, split=True, extra=0):
    """A trainer like the written one, with one of its parts swapped for a plausible mistake."""
    def train_bpe(texts, vocab_size):
        pieces = [c for t in texts for c in regex.findall(GPT4_SPLIT_PATTERN, t)] if split else list(texts)
        chunks = [list(c.encode("utf-8").translate(BYTE_TO_ID)) for c in pieces]
        vocab, merges = initial_vocab(), {}
        while len(vocab) < vocab_size + extra:
            stats = count(chunks)
            if not stats:
                break
            pair = choose(stats)
            new_id = len(vocab)
            vocab[new_id], merges[pair] = vocab[pair[0]] + vocab[pair[1]], new_id
            chunks = [merge_ids(ids, pair, new_id) for ids in chunks]
        return merges, vocab
    train_bpe.__name__ = name
    return train_bpe


def _count_in_chunks(chunks):
    return Counter(pair for ids in chunks for pair in zip(ids, ids[1:]))


def _count_across_chunks(chunks):  # pairs across the boundary of two chunks are counted too
    flat = [i for ids in chunks for i in ids]
    return Counter(zip(flat, flat[1:]))


def _smallest_on_ties(stats):
    return min(stats, key=lambda p: (-stats[p], p))


def _merge_right_to_left(ids, pair, new_id):  # "a a a" -> "a aa"
    return merge(ids[::-1], pair[::-1], new_id)[::-1]


wrong_train_first_seen = _trainer("wrong_train_first_seen", _count_in_chunks,  # ties: the pair counted first
                                  lambda stats: stats.most_common(1)[0][0])
wrong_train_largest_on_ties = _trainer("wrong_train_largest_on_ties", _count_in_chunks,
                                       lambda stats: max(stats, key=lambda p: (stats[p], p)))
wrong_train_across_chunks = _trainer("wrong_train_across_chunks", _count_across_chunks, _smallest_on_ties)
wrong_train_no_split = _trainer("wrong_train_no_split", _count_in_chunks, _smallest_on_ties, split=False)  # texts as chunks
wrong_train_right_to_left = _trainer("wrong_train_right_to_left", _count_in_chunks, _smallest_on_ties,
                                     merge_ids=_merge_right_to_left)
wrong_train_one_merge_too_many = _trainer("wrong_train_one_merge_too_many", _count_in_chunks, _smallest_on_ties, extra=1)


def wrong_train_ids_from_255(texts, vocab_size):  # the first new token gets id 255, not 256
    merges, vocab = train(texts, vocab_size)
    return {pair: i - 1 for pair, i in merges.items()}, vocab


def wrong_train_vocab_of_merges_only(texts, vocab_size):  # vocab holds the new tokens but not the 256 bytes
    merges, vocab = train(texts, vocab_size)
    return merges, {i: token for i, token in vocab.items() if i >= 256}


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
    (checks.check_train_bpe, [train, train_naive, written_train_bpe],
     [wrong_train_first_seen, wrong_train_largest_on_ties, wrong_train_across_chunks, wrong_train_no_split,
      wrong_train_right_to_left, wrong_train_one_merge_too_many, wrong_train_ids_from_255, wrong_train_vocab_of_merges_only]),
    (checks.check_encode_chunk, [package_encode_chunk, written_encode_chunk], [wrong_encode_leftmost, wrong_encode_one_pass]),
    (checks.check_encode_with_specials, [package_encode_with_specials, written_encode_with_specials],
     [wrong_specials_ignored, wrong_specials_never_refused, wrong_specials_shortest_first]),
    (checks.check_merge_and_update, [package_merge_and_update, written_merge_and_update],
     [wrong_update_touching, wrong_update_recount, wrong_update_ignores_count]),
    (checks.check_recover_merges, [recover_merges, written_recover], [wrong_recover_first_cut, wrong_recover_all_ranks]),
]
test_right_answers_pass, test_wrong_answers_fail_with_input_and_hint, test_unsolved_stub_says_not_solved = (
    table_tests(CHECKS, times=2))

@pytest.mark.parametrize("wrong, words", [
    (wrong_train_first_seen, "equally frequent"), (wrong_train_largest_on_ties, "equally frequent"),
    (wrong_train_across_chunks, "inside each chunk"), (wrong_train_right_to_left, "left to right"),
    (wrong_train_one_merge_too_many, "vocab_size tokens"), (wrong_train_ids_from_255, "len(vocab)"),
    (wrong_train_vocab_of_merges_only, "initial_vocab()")], ids=lambda x: getattr(x, "__name__", ""))
def test_a_wrong_trainer_gets_the_hint_for_its_mistake(wrong, words):
    for seed in range(3):
        assert words in assert_fails(checks.check_train_bpe, wrong, seed=seed)


def test_the_trainer_check_names_the_first_merge_that_differs():
    message = assert_fails(checks.check_train_bpe, wrong_train_ids_from_255)
    assert "differ from merge 1" in message and "expected: (64, 64) = b'a' + b'a' -> 256" in message


def test_a_crash_names_the_input():
    def crashes(data, ranks):
        parts = [data[i:i + 1] for i in range(len(data))]
        return [ranks[parts[0] + parts[-1] + b"\xff\xfe"]]  # looks up bytes that are never a token: KeyError

    with pytest.raises(ExerciseFailed, match="raised KeyError") as failure:
        checks.check_encode_chunk(crashes)
    assert "on input:" in str(failure.value)


def test_wrong_return_types_are_named():
    with pytest.raises(ExerciseFailed, match=r"return a tuple \(merges, vocab\)"):
        checks.check_train_bpe(lambda texts, vocab_size: train(texts, vocab_size)[0])
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
