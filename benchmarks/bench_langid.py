"""Language identification: minilm's naive Bayes versus scikit-learn's, on the same generated documents.

Both sides learn the same model: character 1-3-grams of each word padded with spaces (ours `char_ngrams`,
theirs `CountVectorizer(analyzer="char_wb")`) and multinomial naive Bayes with alpha = 1 (ours
`train_identifier` + `log_posteriors`, theirs `MultinomialNB` + `predict_log_proba`). The script times the
fit and the prediction of each, checks that they give the same posteriors, and scores both against the
generator's truth (each page's `lang`; each story is English, and its translation Spanish).

Documents: English pages (news, blogs, recipes, reviews), stories in English and their Spanish translations, and
French, German and Spanish pages from the town site's generator; the training documents come from one seed, the
test documents from another.
Our word-to-n-grams cache is emptied before every timed run, so no run reuses the previous one's work.

    python benchmarks/bench_langid.py --docs 2000 --repeats 3
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
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline

from minilm.data.filters import language
from minilm.data.filters.language import identification_scores, log_posteriors, train_identifier
from minilm.data.sources.site import content
from minilm.data.sources.stories.writer import iter_stories

ENGLISH_WRITERS = (content.write_news, content.write_blog, content.write_recipe, content.write_review)
FOREIGN = ("fr", "de", "es")


def generated(count: int, seed: int) -> tuple[list[str], list[str]]:
    """About `count` documents, a sixth of each kind (English pages, English stories, their Spanish translations,
    French, German and Spanish pages), and their languages."""
    rng = random.Random(seed)
    per_kind = max(1, count // 6)
    texts, langs = [], []
    for i in range(per_kind):
        for draft in [ENGLISH_WRITERS[i % len(ENGLISH_WRITERS)](rng)] + [content.write_foreign(rng, l) for l in FOREIGN]:
            texts.append("\n".join(content.block_lines(draft.blocks)))
            langs.append(draft.lang)
    for story in iter_stories(per_kind, seed, spanish=True):
        texts += [story.text, story.labels["spanish"]]
        langs += ["en", "es"]
    return texts, langs


def run_ours(train_texts, train_langs, test_texts):
    language._word_ngrams.cache_clear()
    grouped: dict[str, list[str]] = {}
    for text, lang in zip(train_texts, train_langs):
        grouped.setdefault(lang, []).append(text)
    start = time.perf_counter()
    model = train_identifier(grouped, ngram_range=(1, 3), alpha=1.0)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    posteriors = log_posteriors(model, test_texts)
    predict = time.perf_counter() - start
    return {"fit": fit, "predict": predict}, model.languages, posteriors


def run_sklearn(train_texts, train_langs, test_texts):
    pipeline = make_pipeline(CountVectorizer(analyzer="char_wb", ngram_range=(1, 3), lowercase=True),
                             MultinomialNB(alpha=1.0))
    start = time.perf_counter()
    pipeline.fit(train_texts, train_langs)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    posteriors = pipeline.predict_log_proba(test_texts)
    predict = time.perf_counter() - start
    return {"fit": fit, "predict": predict}, list(pipeline.classes_), posteriors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2_000, help="test documents to identify (default 2,000)")
    parser.add_argument("--train-docs", type=int, default=500, help="training documents (default 500)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side; medians are reported")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.docs < 5 or args.train_docs < 5 or args.repeats < 1:
        parser.error("--docs and --train-docs must be at least 5 (one of each kind) and --repeats at least 1")

    train_texts, train_langs = generated(args.train_docs, args.seed)
    test_texts, test_langs = generated(args.docs, args.seed + 1)

    ours_runs, theirs_runs = [], []
    for _ in range(args.repeats):
        ours_times, our_classes, ours = run_ours(train_texts, train_langs, test_texts)
        theirs_times, their_classes, theirs = run_sklearn(train_texts, train_langs, test_texts)
        ours_runs.append(ours_times)
        theirs_runs.append(theirs_times)
    if our_classes != their_classes:
        raise SystemExit(f"class orders differ: {our_classes} vs {their_classes}")
    our_labels = [our_classes[i] for i in ours.argmax(axis=1)]
    their_labels = [their_classes[i] for i in theirs.argmax(axis=1)]
    our_scores = identification_scores(our_labels, test_langs)
    their_scores = identification_scores(their_labels, test_langs)

    def median(runs, phase):
        return statistics.median(run[phase] if phase != "total" else sum(run.values()) for run in runs)

    words = sum(len(t.split()) for t in test_texts)
    counts = {lang: test_langs.count(lang) for lang in sorted(set(test_langs))}
    print(f"## Language identification: minilm vs scikit-learn {version('scikit-learn')}\n")
    print(
        f"{len(test_texts):,} test documents ({', '.join(f'{n} {lang}' for lang, n in counts.items())}; "
        f"{words / len(test_texts):.0f} words each on average), {len(train_texts):,} training documents from "
        f"another seed; character 1-3-grams (char_wb), alpha 1.0, priors from the training documents; "
        f"median of {args.repeats} runs; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}.\n"
    )
    print("| phase | minilm (s) | scikit-learn (s) | ratio (minilm / scikit-learn) |")
    print("| --- | ---: | ---: | ---: |")
    for phase in ("fit", "predict", "total"):
        ours_s, theirs_s = median(ours_runs, phase), median(theirs_runs, phase)
        print(f"| {phase} | {ours_s:.3f} | {theirs_s:.3f} | {ours_s / theirs_s:.2f}x |")
    print()
    print("| agreement | minilm | scikit-learn |")
    print("| --- | ---: | ---: |")
    print(f"| accuracy (generator's truth) | {our_scores['accuracy']:.4f} | {their_scores['accuracy']:.4f} |")
    for lang in counts:
        print(f"| recall {lang} | {our_scores['recall'][lang]:.4f} | {their_scores['recall'][lang]:.4f} |")
    print()
    print(f"Same labels: {sum(a == b for a, b in zip(our_labels, their_labels)):,} of {len(test_texts):,}. "
          f"Largest difference of log posteriors: {np.abs(ours - theirs).max():.3g}.")


if __name__ == "__main__":
    main()
