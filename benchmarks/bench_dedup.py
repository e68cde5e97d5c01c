"""MinHash + LSH near-duplicate detection: minilm versus datasketch, on the same input.

Both sides get the same documents, the same shingles (our uint64 hashes, fed to datasketch with
an identity hash function), the same 128 hash functions (our (a, b), passed to datasketch's
legacy scheme) and the same bands and rows, so they must compute the same signatures and find
the same pairs; the script checks that and reports how fast each gets there. Bands and rows are
the ones `near_dedup` uses (`--fp-weight 0.5` gives datasketch's own choice):

- signatures: ours `minhash_signatures` (all documents at once) vs `MinHash.bulk`;
- LSH: ours `lsh_candidates` vs `MinHashLSH` (insert every document, then query every document);
- verification: estimated Jaccard of every candidate pair, kept when >= threshold.

Shingling is shared (done once, not timed on either side). The truth for precision and recall is
every pair (found by either side, or planted by the generator) whose exact Jaccard on shingles
reaches the threshold.

    python benchmarks/bench_dedup.py --docs 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from importlib.metadata import version

import numpy as np
from datasketch import MinHash, MinHashLSH

from minilm.data.filters.dedup import (
    LSH_FALSE_POSITIVE_WEIGHT,
    estimated_jaccard,
    lsh_candidates,
    minhash_signatures,
    optimal_bands,
    permutations,
    shingles,
    true_jaccard,
)

# ---------------------------------------------------------------------------------------------
# Documents with planted near duplicates

SYLLABLES = "ka lo mi ne ru sa ti vo be da fe gi ho ju la ma no pi re so tu ve wi xo ya zu".split()


def synthetic_texts(count: int, rng: random.Random) -> list[str]:
    """Texts of 80-250 words over a 4,000-word Zipf vocabulary, one sentence per line."""
    vocabulary = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(6000)})[:4000]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    texts = []
    for _ in range(count):
        lines, length = [], rng.randint(80, 250)
        while length > 0:
            sentence = rng.choices(vocabulary, weights, k=min(length, rng.randint(6, 16)))
            lines.append(" ".join(sentence).capitalize() + ".")
            length -= len(sentence)
        texts.append("\n".join(lines))
    return texts


def story_texts(count: int, seed: int) -> list[str] | None:
    """Stories from `minilm.data.sources.stories.writer.iter_stories`, or None when that module is missing."""
    try:
        from minilm.data.sources.stories.writer import iter_stories
    except ImportError:
        return None
    return [story.text for story in iter_stories(count, seed)]


def near_copy(text: str, rng: random.Random) -> str:
    """A lightly edited copy: a few words replaced, and a line dropped or repeated."""
    lines = text.split("\n")
    if len(lines) > 2 and rng.random() < 0.5:
        lines.pop(rng.randrange(len(lines)))
    elif rng.random() < 0.5:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))
    tokens = "\n".join(lines).split(" ")
    for _ in range(max(1, int(len(tokens) * rng.uniform(0.0, 0.04)))):
        tokens[rng.randrange(len(tokens))] = rng.choice(["fox", "river", "blue", "seven", "lamp"])
    return " ".join(tokens)


def make_corpus(
    count: int, seed: int, source: str = "auto", dup_fraction: float = 0.15
) -> tuple[list[str], set[tuple[int, int]], str]:
    """`count` texts, `dup_fraction` of them near copies of another; returns texts, planted pairs, source."""
    rng = random.Random(seed)
    originals = count - int(count * dup_fraction)
    texts = story_texts(originals, seed) if source in ("auto", "stories") else None
    if texts is not None:
        source = "stories"
    elif source == "stories":
        raise SystemExit("--source stories needs minilm.data.sources.stories, which is missing; use --source synthetic")
    else:
        texts, source = synthetic_texts(originals, rng), "synthetic"
    planted = set()
    for _ in range(count - originals):
        original = rng.randrange(len(texts))
        planted.add((original, len(texts)))
        texts.append(near_copy(texts[original], rng))
    order = list(range(count))
    rng.shuffle(order)  # copies are not always after their originals
    where = {old: new for new, old in enumerate(order)}
    shuffled = [texts[old] for old in order]
    planted = {tuple(sorted((where[i], where[j]))) for i, j in planted}
    return shuffled, planted, source


# ---------------------------------------------------------------------------------------------
# The two pipelines, phase by phase


def run_ours(shingle_arrays, perms, bands, rows, threshold):
    times = {}
    start = time.perf_counter()
    signatures = minhash_signatures(shingle_arrays, perms=perms)
    times["signatures"] = time.perf_counter() - start

    start = time.perf_counter()
    pairs = lsh_candidates(signatures, bands, rows)
    times["lsh"] = time.perf_counter() - start

    start = time.perf_counter()
    jaccard = estimated_jaccard(signatures[pairs[:, 0]], signatures[pairs[:, 1]])
    found = {(int(i), int(j)) for i, j in pairs[jaccard >= threshold]}
    times["verify"] = time.perf_counter() - start
    candidates = {(int(i), int(j)) for i, j in pairs}
    return times, signatures, candidates, found


def identity(value):
    return value


def run_datasketch(shingle_lists, perms, bands, rows, threshold):
    times = {}
    start = time.perf_counter()
    minhashes = MinHash.bulk(
        shingle_lists, num_perm=len(perms[0]), scheme="legacy", permutations=perms, hashfunc=identity
    )
    times["signatures"] = time.perf_counter() - start

    start = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=len(perms[0]), params=(bands, rows))
    with lsh.insertion_session() as session:
        for key, minhash in enumerate(minhashes):
            session.insert(key, minhash, check_duplication=False)
    candidates = set()
    for i, minhash in enumerate(minhashes):
        candidates.update((i, j) for j in lsh.query(minhash) if j > i)
    times["lsh"] = time.perf_counter() - start

    start = time.perf_counter()
    found = {(i, j) for i, j in candidates if minhashes[i].jaccard(minhashes[j]) >= threshold}
    times["verify"] = time.perf_counter() - start
    return times, minhashes, candidates, found


# ---------------------------------------------------------------------------------------------


def precision_recall(found: set, truth: set) -> tuple[float, float]:
    hits = len(found & truth)
    return (hits / len(found) if found else 1.0), (hits / len(truth) if truth else 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20_000, help="number of documents (default 20,000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side; medians are reported")
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--source",
        choices=("auto", "stories", "synthetic"),
        default="auto",
        help="documents: the course's stories when minilm.data.sources.stories exists (auto), or random Zipf text",
    )
    parser.add_argument(
        "--fp-weight",
        type=float,
        default=LSH_FALSE_POSITIVE_WEIGHT,
        help=f"weight of false positives in the choice of bands and rows (near_dedup: "
        f"{LSH_FALSE_POSITIVE_WEIGHT}, datasketch: 0.5)",
    )
    args = parser.parse_args()
    if args.docs < 2 or args.repeats < 1:
        parser.error("--docs must be at least 2 and --repeats at least 1")

    texts, planted, source = make_corpus(args.docs, args.seed, args.source)
    start = time.perf_counter()
    shingle_arrays = [shingles(text, args.ngram) for text in texts]
    shingle_seconds = time.perf_counter() - start
    shingle_lists = [s.tolist() for s in shingle_arrays]  # datasketch's best input: plain ints
    perms = permutations(args.num_perm, args.seed)
    bands, rows = optimal_bands(args.threshold, args.num_perm, args.fp_weight)

    ours_runs, theirs_runs = [], []
    for _ in range(args.repeats):
        ours = run_ours(shingle_arrays, perms, bands, rows, args.threshold)
        theirs = run_datasketch(shingle_lists, perms, bands, rows, args.threshold)
        ours_runs.append(ours[0])
        theirs_runs.append(theirs[0])
    _, signatures, our_candidates, our_found = ours
    _, minhashes, their_candidates, their_found = theirs
    same_signatures = all(np.array_equal(signatures[i], m.hashvalues) for i, m in enumerate(minhashes))

    checked = our_candidates | their_candidates | planted
    truth = {(i, j) for i, j in checked if true_jaccard(shingle_arrays[i], shingle_arrays[j]) >= args.threshold}
    our_p, our_r = precision_recall(our_found, truth)
    their_p, their_r = precision_recall(their_found, truth)
    union = our_found | their_found
    agreement = len(our_found & their_found) / len(union) if union else 1.0

    def median(runs, phase):
        return statistics.median(run[phase] if phase != "total" else sum(run.values()) for run in runs)

    words = sum(len(t.split()) for t in texts)
    print(f"## MinHash LSH dedup: minilm vs datasketch {version('datasketch')}\n")
    print(
        f"{args.docs:,} documents ({source}, {words / args.docs:.0f} words each on average, "
        f"{len(planted):,} planted near copies), {sum(map(len, shingle_arrays)):,} shingles of {args.ngram} words; "
        f"threshold {args.threshold}, num_perm {args.num_perm}, {bands} bands x {rows} rows "
        f"(false-positive weight {args.fp_weight}); "
        f"median of {args.repeats} runs; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}. Shared shingling (not timed below): "
        f"{shingle_seconds:.2f} s.\n"
    )
    print("| phase | minilm (s) | datasketch (s) | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for phase in ("signatures", "lsh", "verify", "total"):
        ours_s, theirs_s = median(ours_runs, phase), median(theirs_runs, phase)
        print(f"| {phase} | {ours_s:.3f} | {theirs_s:.3f} | {theirs_s / ours_s:.1f}x |")
    print()
    print("| agreement | minilm | datasketch |")
    print("| --- | ---: | ---: |")
    print(f"| candidate pairs | {len(our_candidates):,} | {len(their_candidates):,} |")
    print(f"| pairs with estimated Jaccard >= {args.threshold} | {len(our_found):,} | {len(their_found):,} |")
    print(f"| precision (exact Jaccard >= {args.threshold}) | {our_p:.3f} | {their_p:.3f} |")
    print(f"| recall (of {len(truth):,} true pairs) | {our_r:.3f} | {their_r:.3f} |")
    print()
    print(f"Signatures identical: {'yes' if same_signatures else 'NO'}. "
          f"Jaccard index of the two sets of pairs found: {agreement:.4f}.")


if __name__ == "__main__":
    main()
