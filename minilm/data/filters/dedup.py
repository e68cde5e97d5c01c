"""Deduplication: exact copies by hashing, near copies by MinHash and LSH.

The web repeats itself: mirrors, syndicated articles, the same page behind two URLs, a template
with one word changed. A model trained on repeated text memorises it and wastes its budget on it,
so every large pretraining corpus is deduplicated, in two passes:

1. **Exact duplicates.** Normalise the text a little (case, runs of spaces), hash it, and keep the
   first document of each hash. One pass, one dictionary, no false positives.
2. **Near duplicates.** Two documents are near copies when their sets of word *shingles*
   (overlapping n-grams of words) have a high Jaccard similarity |A & B| / |A | B|. Comparing
   every pair is quadratic, so we use the classic trick of Broder (1997) and Indyk & Motwani:

   - **MinHash**: apply `num_perm` random hash functions to every shingle and keep the minimum of
     each. The chance that two sets share the same minimum equals their Jaccard similarity, so the
     fraction of equal entries in two *signatures* estimates it, from 128 numbers per document.
   - **LSH (banding)**: cut each signature into `bands` bands of `rows` values. Documents that agree
     on all values of at least one band land in the same bucket and become *candidate pairs*.
     Similar pairs collide with high probability, dissimilar ones rarely; the choice of bands and
     rows moves the threshold of this S-shaped filter (see `optimal_bands`).
   - **Verification and clusters**: keep the candidates whose estimated Jaccard reaches the
     threshold, join them into clusters with union-find, and keep one document per cluster.

The MinHash arithmetic follows `datasketch` (the library most people would reach for) in its
"legacy" scheme, bit for bit, so the tests and the benchmark check that both compute the same
signatures. What we change is how: a modulo without division (`universal_hash`), and one hash
function at a time over the shingles of many documents at once, instead of one document at a
time; `benchmarks/bench_dedup.py` measures the difference.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np

from minilm.data.documents import Document, Removal, StepResult

# ---------------------------------------------------------------------------------------------
# Exact duplicates


def normalise_for_exact(text: str) -> str:
    """Lowercase and collapse every run of whitespace to one space.

    Punctuation is kept on purpose: "Let's eat, Grandma." and "Let's eat Grandma." are different
    texts, and copies that differ only in punctuation are caught by the near-duplicate pass anyway.
    """
    return " ".join(text.lower().split())


def exact_dedup(docs: list[Document]) -> StepResult:
    """Keep the first document of each normalised text; remove later copies as "exact_dup"."""
    seen: set[bytes] = set()
    kept: list[Document] = []
    removed: list[Removal] = []
    for doc in docs:
        digest = hashlib.blake2b(normalise_for_exact(doc.text).encode("utf-8"), digest_size=16).digest()
        if digest in seen:
            removed.append(Removal(doc, "exact_dup"))
        else:
            seen.add(digest)
            kept.append(doc)
    return StepResult("exact_dedup", kept, removed)


# ---------------------------------------------------------------------------------------------
# Shingles: a document as a set of 64-bit numbers

WORD = re.compile(r"\w+")
NGRAM_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd, so multiplying by it loses no bits


def words(text: str) -> list[str]:
    """The lowercase words of a text; punctuation and spacing do not matter for near duplicates."""
    return WORD.findall(text.lower())


@lru_cache(maxsize=1 << 20)
def word_hash(word: str) -> int:
    """A stable 64-bit hash of one word.

    Python's own `hash()` is salted differently in every process, which would make the
    signatures (and so the dedup decisions) change from run to run. blake2b is stable
    everywhere; the cache makes the common words free after their first appearance.
    """
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def shingles(text: str, n: int = 5) -> np.ndarray:
    """The set of word n-grams of `text`, each hashed to a uint64, sorted and unique.

    Each word becomes a 64-bit hash; an n-gram combines its words' hashes like a number written
    in base `NGRAM_MULTIPLIER` (wrapping around at 2^64), so word order matters: "the cat sat" and
    "sat the cat" give different shingles. A text shorter than `n` words gives one shingle made of
    all its words (so two different short texts stay different), an empty text gives none.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    tokens = words(text)
    if not tokens:
        return np.empty(0, dtype=np.uint64)
    hashes = np.fromiter(map(word_hash, tokens), dtype=np.uint64, count=len(tokens))
    n = min(n, len(hashes))
    count = len(hashes) - n + 1
    combined = hashes[:count].copy()
    for k in range(1, n):
        combined *= NGRAM_MULTIPLIER
        combined += hashes[k : k + count]
    return np.unique(combined)


def true_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A & B| / |A | B| of two shingle sets (as returned by `shingles`); two empty sets are equal (1.0)."""
    union = len(np.union1d(a, b))
    if union == 0:
        return 1.0
    return len(np.intersect1d(a, b, assume_unique=True)) / union


def jaccard(a: str, b: str, n: int = 5) -> float:
    """The Jaccard similarity of the n-word shingles of two texts (1.0 for two texts without words).

    The measure near copies are labelled with: the site's and the defect planter's near copies
    record it, and `near_dedup` estimates it from MinHash signatures.
    """
    return true_jaccard(shingles(a, n), shingles(b, n))


# ---------------------------------------------------------------------------------------------
# MinHash signatures

MERSENNE_PRIME = np.uint64((1 << 61) - 1)  # p = 2^61 - 1
MAX_HASH = np.uint64((1 << 32) - 1)  # signatures keep 32 bits, as datasketch does
CHUNK = 1 << 15  # shingles hashed at once: 256 KiB of uint64, which stays in the CPU cache


def permutations(num_perm: int = 128, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The parameters (a, b) of `num_perm` random hash functions h(x) = (a*x + b) mod p.

    With a random a in [1, p) and b in [0, p), computed exactly, the family is universal: two
    different inputs collide with probability about 1/p, which is what MinHash needs to stand in
    for random permutations. `universal_hash` computes it the way datasketch does (wrapping at
    2^64 first, keeping 32 bits at the end), which is as good for document-sized sets; datasketch
    2.0 made another scheme ("affine32") its default because the 32 bits saturate on sets of
    millions of elements. Pass the same pair to datasketch as
    ``MinHash(permutations=(a, b), scheme="legacy")`` to get the same signatures.
    """
    if num_perm < 1:
        raise ValueError(f"num_perm must be at least 1, got {num_perm}")
    rng = np.random.default_rng(seed)
    a = rng.integers(1, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)
    return a, b


def universal_hash(
    x: np.ndarray, a: np.uint64, b: np.uint64, out: np.ndarray | None = None, scratch: np.ndarray | None = None
) -> np.ndarray:
    """One MinHash hash function on many shingles: ((a*x + b) mod p), keeping the low 32 bits.

    This is datasketch's legacy arithmetic, bit for bit: a*x + b is computed in uint64, so it
    wraps around at 2^64 first, then goes mod p. The mod needs no division because p is a
    Mersenne prime: 2^61 = 1 (mod p), so y = hi * 2^61 + lo is congruent to hi + lo. That sum is
    below p + 8, so at most one more p comes off (and almost never). Division is the slowest
    integer operation, which is why 2^61 - 1 is the favourite prime of hash functions.

    `out` and `scratch` (uint64 arrays shaped like x) let a caller reuse memory: allocating
    fresh arrays for every function would cost more than the arithmetic itself.
    """
    h = np.multiply(x, a, out=out)  # wraps around at 2^64, as datasketch's does
    h += b
    low = np.bitwise_and(h, MERSENNE_PRIME, out=scratch)
    h >>= np.uint64(61)
    h += low
    h[h >= MERSENNE_PRIME] -= MERSENNE_PRIME
    h &= MAX_HASH
    return h


def minhash_signatures(
    shingle_arrays: list[np.ndarray],
    num_perm: int = 128,
    seed: int = 1,
    perms: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The MinHash signature of every document: a (num_docs, num_perm) uint64 array.

    Entry [d, k] is the minimum of hash function k over the shingles of document d (MAX_HASH for a
    document without shingles). Instead of a loop over documents (what datasketch does), all
    shingles are laid end to end and cut into chunks that fit in the CPU cache. For each chunk
    and each hash function, one `universal_hash` call hashes every shingle and one
    `np.minimum.reduceat` takes the minimum over each document's stretch of the chunk; a
    document cut by a chunk boundary is finished in the next chunk.
    `perms` overrides the (a, b) that `permutations(num_perm, seed)` would draw.
    """
    a, b = perms if perms is not None else permutations(num_perm, seed)
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    lengths = np.array([len(s) for s in shingle_arrays], dtype=np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    signatures = np.full((len(shingle_arrays), len(a)), MAX_HASH, dtype=np.uint64)
    if lengths.sum() == 0:
        return signatures
    flat = np.concatenate([np.asarray(s, dtype=np.uint64) for s in shingle_arrays])
    hashes, scratch = np.empty(CHUNK, dtype=np.uint64), np.empty(CHUNK, dtype=np.uint64)
    for lo in range(0, len(flat), CHUNK):
        hi = min(lo + CHUNK, len(flat))
        # the documents with shingles in [lo, hi): those that end after lo and start before hi
        first, last = np.searchsorted(ends, lo, side="right"), np.searchsorted(starts, hi, side="left")
        docs = np.arange(first, last)
        docs = docs[lengths[docs] > 0]
        segment_starts = np.maximum(starts[docs], lo) - lo
        chunk_minima = np.empty((len(docs), len(a)), dtype=np.uint64)
        for k in range(len(a)):
            h = universal_hash(flat[lo:hi], a[k], b[k], out=hashes[: hi - lo], scratch=scratch[: hi - lo])
            chunk_minima[:, k] = np.minimum.reduceat(h, segment_starts)
        signatures[docs] = np.minimum(signatures[docs], chunk_minima)
    return signatures


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float | np.ndarray:
    """The fraction of equal entries: each one is equal with probability Jaccard(A, B).

    Works on two signatures, or on two (k, num_perm) arrays row by row (returning k estimates).
    """
    return np.mean(np.asarray(sig_a) == np.asarray(sig_b), axis=-1)


# ---------------------------------------------------------------------------------------------
# Locality-sensitive hashing


def collision_probability(similarity: np.ndarray | float, bands: int, rows: int) -> np.ndarray | float:
    """The chance that two documents with this Jaccard similarity share at least one bucket.

    One band matches with probability s^rows (all its rows equal); it fails with 1 - s^rows; all
    `bands` bands fail with (1 - s^rows)^bands. This is the S-curve that LSH draws.
    """
    return 1 - (1 - np.asarray(similarity, dtype=np.float64) ** rows) ** bands


def optimal_bands(
    threshold: float, num_perm: int = 128, false_positive_weight: float = 0.5, points: int = 2001
) -> tuple[int, int]:
    """The (bands, rows) with bands * rows <= num_perm whose S-curve best matches `threshold`.

    As datasketch does: the false-positive area is the integral of the collision probability
    below the threshold (dissimilar pairs that still become candidates), the false-negative area
    is the integral of the miss probability above it (similar pairs that never meet). We pick
    the pair minimising their weighted sum, integrating numerically with the trapezoid rule for
    every (bands, rows) at once. More rows per band make the curve steeper and move it right;
    more bands move it left, so the optimum puts the steep part of the S at the threshold.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be at least 1, got {num_perm}")
    if not 0.0 <= false_positive_weight <= 1.0:
        raise ValueError(f"false_positive_weight must be in [0, 1], got {false_positive_weight}")
    candidates = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)])
    bands, rows = candidates[:, :1], candidates[:, 1:]
    below = np.linspace(0.0, threshold, points)
    above = np.linspace(threshold, 1.0, points)
    false_positive = np.trapezoid(collision_probability(below, bands, rows), below, axis=1)
    false_negative = np.trapezoid(1 - collision_probability(above, bands, rows), above, axis=1)
    error = false_positive_weight * false_positive + (1 - false_positive_weight) * false_negative
    best = int(np.argmin(error))  # the first minimum, in datasketch's order (bands, then rows)
    return int(candidates[best, 0]), int(candidates[best, 1])


def lsh_candidates(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """All pairs (i, j), i < j, that agree on every row of at least one band: a (k, 2) int64 array.

    For each band, `np.unique` over its rows gives each document a bucket number (documents with
    identical values in the band share one). Sorting documents by bucket puts each bucket's
    members side by side, so pairing every document with the one `step` places further on, for
    step = 1, 2, ... while some pair is still in one bucket, lists every pair of every bucket.
    Pairs found in several bands are counted once. A bucket of k documents gives k(k-1)/2 pairs,
    so remove exact copies first (`exact_dedup`), or thousands of copies make millions of pairs.
    """
    num_docs, num_perm = signatures.shape
    if bands < 1 or rows < 1 or bands * rows > num_perm:
        raise ValueError(f"bands * rows must be between 1 and num_perm={num_perm}, got {bands} * {rows}")
    if num_docs < 2:
        return np.empty((0, 2), dtype=np.int64)
    pair_codes = []
    for band in range(bands):
        band_values = signatures[:, band * rows : (band + 1) * rows]
        _, bucket = np.unique(band_values, axis=0, return_inverse=True)
        bucket = bucket.reshape(-1)
        order = np.argsort(bucket, kind="stable")  # stable: document numbers ascend inside a bucket
        sorted_bucket = bucket[order]
        step = 1
        while step < num_docs:
            same = sorted_bucket[step:] == sorted_bucket[:-step]
            if not same.any():
                break
            first, second = order[:-step][same], order[step:][same]
            pair_codes.append(first.astype(np.int64) * num_docs + second)
            step += 1
    if not pair_codes:
        return np.empty((0, 2), dtype=np.int64)
    codes = np.unique(np.concatenate(pair_codes))
    return np.stack([codes // num_docs, codes % num_docs], axis=1)


# ---------------------------------------------------------------------------------------------
# Clusters


class UnionFind:
    """Disjoint sets over 0..n-1, joined pair by pair; each set is named by its smallest member.

    `union` hangs the larger root under the smaller one, so the root of a cluster is its first
    document: the one we keep. `find` compresses paths (every node it visits is re-pointed at
    the root), so long chains are walked only once.
    """

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, x: int, y: int) -> int:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            rx, ry = min(rx, ry), max(rx, ry)
            self.parent[ry] = rx
        return rx

    def groups(self) -> dict[int, list[int]]:
        """Every set with more than one member, as root -> sorted members."""
        members: dict[int, list[int]] = {}
        for x in range(len(self.parent)):
            members.setdefault(self.find(x), []).append(x)
        return {root: group for root, group in members.items() if len(group) > 1}


# ---------------------------------------------------------------------------------------------
# Near-duplicate removal


LSH_FALSE_POSITIVE_WEIGHT = 0.1


def _check_near_params(threshold: float, num_perm: int, ngram: int) -> None:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be strictly between 0 and 1 (a Jaccard similarity), got {threshold}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be at least 2 (128 is usual), got {num_perm}")
    if ngram < 1:
        raise ValueError(f"ngram must be at least 1 (5 words is usual), got {ngram}")


def _candidate_pairs(
    docs: list[Document], threshold: float, num_perm: int, ngram: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """LSH candidate pairs (k, 2) and their estimated Jaccard (k,). Documents without words take no part.

    The bands lean towards recall (`LSH_FALSE_POSITIVE_WEIGHT` = 0.1 instead of datasketch's 0.5):
    a false candidate costs one comparison of two signatures, which verification then rejects,
    while a missed pair leaves a duplicate in the training data. At threshold 0.7 and 128 hash
    functions this gives 20 bands of 6 rows, which makes a candidate of 92% of the pairs at
    Jaccard 0.7 and 99.8% at 0.8 (datasketch's 14 x 9 catches 44% and 87%).
    """
    _check_near_params(threshold, num_perm, ngram)
    shingle_arrays = [shingles(doc.text, ngram) for doc in docs]
    signatures = minhash_signatures(shingle_arrays, num_perm, seed)
    # An empty document's signature is all MAX_HASH: every empty document would share every
    # bucket. They have nothing to compare, so they stay out (exact_dedup handles empty copies).
    with_words = np.flatnonzero([len(s) > 0 for s in shingle_arrays])
    bands, rows = optimal_bands(threshold, num_perm, LSH_FALSE_POSITIVE_WEIGHT)
    pairs = with_words[lsh_candidates(signatures[with_words], bands, rows)]
    jaccard = estimated_jaccard(signatures[pairs[:, 0]], signatures[pairs[:, 1]]) if len(pairs) else np.empty(0)
    return pairs, jaccard


def near_duplicate_pairs(
    docs: list[Document], threshold: float = 0.7, num_perm: int = 128, ngram: int = 5, seed: int = 1
) -> list[tuple[int, int, float]]:
    """Every LSH candidate pair (i, j, estimated Jaccard) with i < j, above the threshold or not.

    The pairs below the threshold are the ones verification throws away; a histogram of all of
    them shows how well the banding separates near copies from chance collisions.
    """
    pairs, jaccard = _candidate_pairs(docs, threshold, num_perm, ngram, seed)
    return [(int(i), int(j), float(s)) for (i, j), s in zip(pairs, jaccard)]


def near_dedup(
    docs: list[Document], threshold: float = 0.7, num_perm: int = 128, ngram: int = 5, seed: int = 1
) -> StepResult:
    """Remove near copies: keep the first document of each cluster, remove the others as "near_dup".

    Candidate pairs whose estimated Jaccard reaches `threshold` are joined with union-find, so
    clusters are transitive: if A is near B and B near C, only A is kept even when A and C differ
    more. That is the usual choice (datatrove and the large web corpora do the same): a chain of
    small edits still comes from one original.
    """
    pairs, jaccard = _candidate_pairs(docs, threshold, num_perm, ngram, seed)
    clusters = UnionFind(len(docs))
    for i, j in pairs[jaccard >= threshold].tolist():
        clusters.union(i, j)
    kept, removed = [], []
    for index, doc in enumerate(docs):
        if clusters.find(index) == index:
            kept.append(doc)
        else:
            removed.append(Removal(doc, "near_dup"))
    return StepResult("near_dedup", kept, removed)
