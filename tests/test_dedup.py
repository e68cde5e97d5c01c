"""Tests of exact and near-duplicate removal (minilm.data.filters.dedup), checked against datasketch."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from minilm.data.filters import dedup
from minilm.data.filters.dedup import (
    MAX_HASH,
    MERSENNE_PRIME,
    UnionFind,
    estimated_jaccard,
    exact_dedup,
    lsh_candidates,
    minhash_signatures,
    near_dedup,
    near_duplicate_pairs,
    optimal_bands,
    permutations,
    shingles,
    true_jaccard,
    universal_hash,
)
from minilm.data.documents import Document

P = int(MERSENNE_PRIME)


def doc(i: int, text: str) -> Document:
    return Document(id=f"web-{i:05d}", domain="web", text=text)


def random_text(rng: random.Random, words: int, vocabulary: list[str]) -> str:
    return " ".join(rng.choice(vocabulary) for _ in range(words))


VOCABULARY = [f"w{i}" for i in range(3000)]


# --- exact duplicates -------------------------------------------------------------------------


def test_exact_dedup_keeps_the_first_of_each_normalised_text():
    docs = [
        doc(0, "The cat sat on the mat."),
        doc(1, "the  CAT sat\non the mat."),  # same after case and spacing: a copy
        doc(2, "The cat sat on the mat"),  # no full stop: punctuation counts, so kept
        doc(3, "A dog."),
        doc(4, "The cat sat on the mat."),
        doc(5, ""),
        doc(6, "   "),  # empty after normalising: a copy of doc 5
    ]
    result = exact_dedup(docs)
    assert [d.id for d in result.kept] == ["web-00000", "web-00002", "web-00003", "web-00005"]
    assert [(r.doc.id, r.reason) for r in result.removed] == [
        ("web-00001", "exact_dup"),
        ("web-00004", "exact_dup"),
        ("web-00006", "exact_dup"),
    ]
    assert result.name == "exact_dedup"


def test_normalise_for_exact_lowercases_and_collapses_whitespace_only():
    assert dedup.normalise_for_exact("  The CAT\tsat,\n\non the Mat. ") == "the cat sat, on the mat."


# --- shingles ---------------------------------------------------------------------------------


def test_shingles_are_stable_across_processes():
    text = "Tom the baker found a red kite near the old mill, and he smiled."
    ours = shingles(text, 5).tolist()
    code = f"from minilm.data.filters.dedup import shingles; print(shingles({text!r}, 5).tolist())"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different salt for Python's own hash()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert eval(out.stdout) == ours  # noqa: S307 (a list of ints printed by our own subprocess)


def test_shingles_are_word_ngrams_of_the_lowercase_words():
    text = "one two three four five six"
    s = shingles(text, 5)
    assert s.dtype == np.uint64 and len(s) == 2 and np.all(np.diff(s.astype(np.float64)) > 0)
    assert np.array_equal(shingles("ONE two, three... four five six!", 5), s)  # case and punctuation
    assert not np.array_equal(shingles("two one three four five six", 5), s)  # order matters
    assert len(shingles("a b a b a b a b", 2)) == 2  # a set: "a b" and "b a"
    assert len(set(shingles(text, 1).tolist())) == 6


def test_short_and_empty_texts_have_few_but_distinct_shingles():
    assert len(shingles("", 5)) == 0 and len(shingles(" ... !", 5)) == 0
    # uint64 even when empty: a float array concatenated with shingles would turn them all into floats
    assert shingles("", 5).dtype == shingles(" ... !", 5).dtype == np.uint64
    assert np.concatenate([shingles(""), shingles("hello there")]).dtype == np.uint64
    hello, hi = shingles("hello there", 5), shingles("hi there", 5)
    assert len(hello) == 1 and len(hi) == 1 and hello[0] != hi[0]
    assert np.array_equal(shingles("Hello, there!", 5), hello)
    with pytest.raises(ValueError, match="n must be at least 1"):
        shingles("text", 0)


def test_true_jaccard():
    a, b = np.array([1, 2, 3, 4], dtype=np.uint64), np.array([3, 4, 5], dtype=np.uint64)
    assert true_jaccard(a, b) == pytest.approx(2 / 5)
    assert true_jaccard(a, a) == 1.0
    assert true_jaccard(a, np.array([9], dtype=np.uint64)) == 0.0
    assert true_jaccard(np.empty(0, np.uint64), np.empty(0, np.uint64)) == 1.0


def test_jaccard_of_two_texts_uses_n_word_shingles():
    # 2-word shingles: {"a b", "b c"} and {"a b", "b d"} share one of three.
    assert dedup.jaccard("a b c", "A b, d", n=2) == pytest.approx(1 / 3)
    assert dedup.jaccard("a b c", "A b, d") == 0.0  # 5-word shingles: each text is one shingle of its own
    assert dedup.jaccard("", "") == 1.0


# --- MinHash ----------------------------------------------------------------------------------


def test_permutations_are_seeded_and_reject_an_empty_family():
    a, b = permutations(1, seed=3)
    assert a.shape == b.shape == (1,) and a.dtype == b.dtype == np.uint64
    assert 1 <= int(a[0]) < int(MERSENNE_PRIME) and int(b[0]) < int(MERSENNE_PRIME)
    assert [x.tolist() for x in permutations(4, seed=3)] == [x.tolist() for x in permutations(4, seed=3)]
    with pytest.raises(ValueError, match="num_perm must be at least 1, got 0"):
        permutations(0)


def test_universal_hash_is_the_mersenne_formula_including_the_edge_cases():
    rng = np.random.default_rng(0)
    a = int(rng.integers(1, P)) | 1  # odd, so that a x = y (mod 2^64) can be solved for x
    b = int(rng.integers(0, P))
    a_inverse = pow(a, -1, 1 << 64)
    # inputs x whose a*x + b (mod 2^64) lands right around every multiple of p: the values where
    # the shortcut "(y & p) + (y >> 61)" needs its final subtraction, or wraps at 2^64
    targets = [k * P + d for k in range(9) for d in range(-9, 10) if 0 <= k * P + d < 1 << 64]
    targets += [(1 << 64) - 1 - d for d in range(5)] + rng.integers(0, 2**63, 200).tolist()
    x = np.array([((y - b) * a_inverse) % (1 << 64) for y in targets], dtype=np.uint64)
    expected = [((a * int(v) + b) % (1 << 64) % P) & int(MAX_HASH) for v in x]
    assert universal_hash(x, np.uint64(a), np.uint64(b)).tolist() == expected


def test_signatures_equal_datasketch_hashvalues(monkeypatch):
    monkeypatch.setattr(dedup, "CHUNK", 100)  # small chunks: many documents cut by a chunk boundary
    rng = random.Random(1)
    texts = [random_text(rng, rng.randint(0, 120), VOCABULARY) for _ in range(40)] + ["", "tiny", "two words"]
    shingle_arrays = [shingles(t) for t in texts]
    a, b = permutations(64, seed=7)
    signatures = minhash_signatures(shingle_arrays, perms=(a, b))
    assert signatures.shape == (len(texts), 64) and signatures.dtype == np.uint64
    for signature, s in zip(signatures, shingle_arrays):
        theirs = MinHash(num_perm=64, scheme="legacy", permutations=(a, b), hashfunc=int)
        theirs.update_batch(s.tolist())
        assert np.array_equal(signature, theirs.hashvalues)
    assert np.all(signatures[len(texts) - 3] == MAX_HASH)  # the empty text
    assert np.array_equal(minhash_signatures(shingle_arrays, 64, seed=7), signatures)  # same seed, same (a, b)
    # (a, b) as plain lists of ints, as datasketch's MinHash(permutations=...) also takes them
    assert np.array_equal(minhash_signatures(shingle_arrays, perms=(a.tolist(), b.tolist())), signatures)


def test_estimated_jaccard_is_close_to_true_jaccard():
    rng = np.random.default_rng(3)
    errors = []
    for overlap in np.linspace(0.0, 1.0, 21):
        common = rng.integers(0, 2**64 - 1, 200, dtype=np.uint64, endpoint=True)
        extra = rng.integers(0, 2**64 - 1, 400, dtype=np.uint64, endpoint=True)
        keep = int(200 * (1 - overlap))
        a = np.unique(np.concatenate([common, extra[:keep]]))
        b = np.unique(np.concatenate([common, extra[200 : 200 + keep]]))
        sig_a, sig_b = minhash_signatures([a, b], num_perm=256)
        errors.append(estimated_jaccard(sig_a, sig_b) - true_jaccard(a, b))
    errors = np.abs(errors)
    assert errors.max() < 0.12 and errors.mean() < 0.04  # standard error at 256 functions is <= 0.031
    assert estimated_jaccard(sig_a, sig_a) == 1.0


# --- LSH --------------------------------------------------------------------------------------


def test_lsh_candidates_are_exactly_the_pairs_sharing_a_band():
    rng = np.random.default_rng(5)
    signatures = rng.integers(0, 3, size=(60, 12), dtype=np.uint64)  # few values: many collisions
    bands, rows = 4, 3
    band_of = [[tuple(row[k * rows : (k + 1) * rows].tolist()) for k in range(bands)] for row in signatures]
    expected = {
        (i, j) for i, j in itertools.combinations(range(60), 2) if any(x == y for x, y in zip(band_of[i], band_of[j]))
    }
    pairs = lsh_candidates(signatures, bands, rows)
    assert pairs.dtype == np.int64 and pairs.shape[1] == 2
    assert {tuple(p) for p in pairs.tolist()} == expected and len(pairs) == len(expected)
    assert lsh_candidates(signatures[:1], bands, rows).shape == (0, 2)
    distinct = np.arange(24, dtype=np.uint64).reshape(2, 12)  # two documents that share no band
    assert lsh_candidates(distinct, bands, rows).shape == (0, 2)
    with pytest.raises(ValueError, match="bands \\* rows"):
        lsh_candidates(signatures, 5, 3)


def test_lsh_candidates_agree_with_datasketch_minhashlsh():
    rng = random.Random(2)
    texts = [random_text(rng, 60, VOCABULARY[:300]) for _ in range(150)]
    texts += [t.replace(t.split()[3], "changed", 1) for t in texts[:30]]
    shingle_arrays = [shingles(t, 3) for t in texts]
    a, b = permutations(128)
    signatures = minhash_signatures(shingle_arrays, perms=(a, b))
    bands, rows = optimal_bands(0.5, 128)
    lsh = MinHashLSH(threshold=0.5, num_perm=128, params=(bands, rows))
    minhashes = MinHash.bulk(
        [s.tolist() for s in shingle_arrays], num_perm=128, scheme="legacy", permutations=(a, b), hashfunc=int
    )
    for key, m in enumerate(minhashes):
        lsh.insert(key, m)
    theirs = {(i, j) for i, m in enumerate(minhashes) for j in lsh.query(m) if j > i}
    ours = {tuple(p) for p in lsh_candidates(signatures, bands, rows).tolist()}
    assert len(ours) >= 30 and ours == theirs


def test_optimal_bands_matches_datasketch_and_moves_with_the_threshold():
    for threshold, num_perm in [(0.5, 128), (0.7, 128), (0.8, 128), (0.9, 64), (0.3, 256)]:
        bands, rows = optimal_bands(threshold, num_perm)
        assert (bands, rows) == _optimal_param(threshold, num_perm, 0.5, 0.5)
        assert bands * rows <= num_perm
        # the steep part of the S-curve, (1/b)^(1/r), sits near the threshold
        assert abs((1 / bands) ** (1 / rows) - threshold) < 0.1
    assert optimal_bands(0.7, 128, 0.1) == _optimal_param(0.7, 128, 0.1, 0.9)
    # Near the ends of the range the integrals need the fine grid: with 50 points these two would differ.
    assert optimal_bands(0.85, 128, 0.9) == _optimal_param(0.85, 128, 0.9, 0.1) == (5, 25)
    assert optimal_bands(0.05, 128, 0.1) == _optimal_param(0.05, 128, 0.1, 0.9) == (75, 1)
    midpoints = [(1 / b) ** (1 / r) for b, r in (optimal_bands(t) for t in (0.3, 0.5, 0.7, 0.9))]
    assert midpoints == sorted(midpoints)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            optimal_bands(bad)


@pytest.mark.parametrize("num_perm, weight, error", [
    (1, 0.5, None), (0, 0.5, "num_perm must be at least 1, got 0"),
    (8, 0.0, None), (8, 1.0, None), (8, -0.1, "false_positive_weight must be in"), (8, 1.1, "false_positive_weight"),
])
def test_boundary_optimal_bands_arguments(num_perm, weight, error):
    if error:
        with pytest.raises(ValueError, match=error):
            optimal_bands(0.5, num_perm, weight)
    else:
        bands, rows = optimal_bands(0.5, num_perm, weight)
        assert 1 <= bands * rows <= num_perm
        assert num_perm > 1 or (bands, rows) == (1, 1)  # one hash function: one band of one row


# --- clusters and near_dedup ------------------------------------------------------------------


def test_union_find_builds_transitive_clusters_rooted_at_their_smallest_member():
    clusters = UnionFind(10)
    clusters.union(5, 9)
    clusters.union(9, 3)  # 3 ~ 9 ~ 5: one cluster, though 3 and 5 never met
    clusters.union(8, 7)
    clusters.union(7, 8)  # again: no change
    assert clusters.find(5) == clusters.find(9) == clusters.find(3) == 3
    assert clusters.groups() == {3: [3, 5, 9], 7: [7, 8]}
    chain = UnionFind(1000)
    for i in range(999, 0, -1):
        chain.union(i, i - 1)
    assert chain.find(999) == 0 and chain.parent[999] == 0  # path compressed


def test_near_dedup_finds_planted_near_copies():
    rng = random.Random(4)
    docs, copies = [], set()
    for i in range(300):
        if i >= 50 and rng.random() < 0.2:
            original = rng.randrange(i)  # copies come after their originals, so the original is kept
            while docs[original].id in copies:
                original = rng.randrange(i)
            tokens = docs[original].text.split()
            for _ in range(rng.randint(0, 3)):  # a few words changed
                tokens[rng.randrange(len(tokens))] = rng.choice(VOCABULARY)
            if rng.random() < 0.5:  # a sentence dropped or added
                del tokens[:6]
            else:
                tokens += random_text(rng, 6, VOCABULARY).split()
            docs.append(doc(i, " ".join(tokens)))
            copies.add(docs[-1].id)
        else:
            docs.append(doc(i, random_text(rng, rng.randint(120, 200), VOCABULARY)))
    result = near_dedup(docs, threshold=0.7)
    removed = {r.doc.id for r in result.removed}
    assert {r.reason for r in result.removed} == {"near_dup"}
    precision = len(removed & copies) / len(removed)
    recall = len(removed & copies) / len(copies)
    assert len(copies) >= 40 and precision >= 0.95 and recall >= 0.95, (precision, recall)
    assert len(result.kept) + len(result.removed) == len(docs)

    pairs = near_duplicate_pairs(docs, threshold=0.7)
    assert all(i < j and 0.0 <= s <= 1.0 for i, j, s in pairs)
    assert sum(s >= 0.7 for _, _, s in pairs) >= 0.95 * len(copies)


def test_near_dedup_keeps_the_first_of_a_cluster_and_ignores_empty_and_distinct_short_docs():
    rng = random.Random(6)
    base = random_text(rng, 150, VOCABULARY)
    docs = [doc(0, "")]  # empty documents are left to exact_dedup: not merged with each other
    docs += [doc(1, base), doc(2, base + " one more line"), doc(3, "")]
    docs += [doc(4 + i, f"{VOCABULARY[i]} {VOCABULARY[i + 1]}") for i in range(0, 80, 2)]  # 40 short texts
    docs += [doc(100, base.replace(base.split()[10], "zebra")), doc(101, "w2  W3!")]  # copies of doc 1 and doc 5
    result = near_dedup(docs)
    assert sorted(r.doc.id for r in result.removed) == ["web-00002", "web-00100", "web-00101"]
    assert result.kept[0].id == "web-00000" and result.kept[1].id == "web-00001"
    assert near_dedup([]).kept == [] and near_dedup([doc(0, "only one")]).removed == []


def test_near_dedup_rejects_bad_parameters_with_a_clear_message():
    docs = [doc(0, "some words here")]
    with pytest.raises(ValueError, match="threshold must be strictly between 0 and 1"):
        near_dedup(docs, threshold=1.5)
    with pytest.raises(ValueError, match="num_perm must be at least 2"):
        near_dedup(docs, num_perm=1)
    with pytest.raises(ValueError, match="ngram must be at least 1"):
        near_duplicate_pairs(docs, ngram=0)


# --- verification: candidates are checked against the threshold --------------------------------


def edited_pair(seed: int, changes: int, words: int = 120) -> tuple[str, str]:
    """A random text and a copy with `changes` words replaced, spread evenly over it."""
    rng = random.Random(seed)
    base = [rng.choice(VOCABULARY) for _ in range(words)]
    copy = base[:]
    step = words // changes
    for start in range(0, words, step):
        copy[start + rng.randrange(step)] = rng.choice(VOCABULARY)
    return " ".join(base), " ".join(copy)


def test_candidates_below_the_threshold_are_not_duplicates():
    # Twenty pairs with one word in fifteen changed: a Jaccard near 0.5, where the 20 x 6 bands still
    # make a candidate of about one pair in four. Verification must throw those away.
    docs = []
    for seed in range(20):
        docs += [doc(2 * seed + k, text) for k, text in enumerate(edited_pair(seed, 8))]
    pairs = near_duplicate_pairs(docs, threshold=0.7)
    below = [(i, j, s) for i, j, s in pairs if s < 0.7]
    assert len(below) >= 2 and below == pairs  # the case to test: candidates, all of them below 0.7
    assert all(i % 2 == 0 and j == i + 1 for i, j, _ in pairs)  # each a planted pair, no chance collision
    assert all(dedup.jaccard(docs[i].text, docs[j].text) < 0.6 for i, j, _ in pairs)
    assert near_dedup(docs, threshold=0.7).removed == []


@pytest.mark.parametrize("offset, removed", [(-1, True), (0, True), (+1, False)])
def test_boundary_near_dedup_threshold_is_reached_at_equality(offset, removed):
    a, b = edited_pair(1, 6)  # an estimated Jaccard of 83/128
    docs = [doc(0, a), doc(1, b)]
    [(_, _, similarity)] = near_duplicate_pairs(docs, threshold=0.7)
    assert similarity == 83 / 128
    threshold = (83 + offset) / 128  # one hash function's worth either side of the estimate
    assert near_duplicate_pairs(docs, threshold=threshold) == [(0, 1, similarity)]  # a candidate each time
    assert [r.doc.id for r in near_dedup(docs, threshold=threshold).removed] == (["web-00001"] if removed else [])


def test_near_dedup_bands_lean_towards_recall(monkeypatch):
    # The documented choice: at threshold 0.7 and 128 hash functions, 20 bands of 6 rows, which make a
    # candidate of 92% of the pairs at Jaccard 0.7 and 99.8% at 0.8.
    assert dedup.LSH_FALSE_POSITIVE_WEIGHT == 0.1
    used = []
    real = dedup.lsh_candidates

    def spy(signatures, bands, rows):
        used.append((bands, rows))
        return real(signatures, bands, rows)

    monkeypatch.setattr(dedup, "lsh_candidates", spy)
    near_dedup([doc(0, "one two three four five six"), doc(1, "six five four three two one")])
    assert used == [(20, 6)]
    assert dedup.collision_probability(0.7, 20, 6) == pytest.approx(0.92, abs=0.005)
    assert dedup.collision_probability(0.8, 20, 6) == pytest.approx(0.998, abs=0.0005)


@pytest.mark.parametrize("kwargs, ok", [
    ({"threshold": 0.0}, False), ({"threshold": 1e-9}, True),
    ({"threshold": 1 - 1e-9}, True), ({"threshold": 1.0}, False),
    ({"num_perm": 1}, False), ({"num_perm": 2}, True),
    ({"ngram": 0}, False), ({"ngram": 1}, True),
])
def test_boundary_near_dedup_parameters(kwargs, ok):
    docs = [doc(0, "some words here"), doc(1, "other words there")]
    if ok:
        near_dedup(docs, **kwargs)
    else:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            near_dedup(docs, **kwargs)
