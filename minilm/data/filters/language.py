"""Language identification: label every document with its language, then balance the languages.

A document's language shows in its letters long before its words are known: "the", "ing " and " th"
are English, "ción", " der " and "eau " are not. Cavnar & Trenkle (1994) ranked the character n-grams
of a text against each language's profile; the same features in a **multinomial naive Bayes**
classifier give a probability instead of a rank:

    log P(language | text) = log P(language) + sum over n-grams g of count(g) * log P(g | language) - const

P(g | language) is g's share of all the n-grams in that language's training text, smoothed by adding
`alpha` to every count (Lidstone; alpha = 1 is Laplace) so that an n-gram never seen in a language does
not veto it outright. "Naive" because it treats the n-grams as independent evidence, which they are not
("th" comes with "the"): the ranking is still good, but the posteriors are overconfident (see `identify`).
Real pipelines use the same idea, larger: fastText's lid.176 (hashed n-grams into a linear model,
176 languages) and Google's CLD3 (a small neural network over n-gram embeddings); FineWeb keeps a page
when fastText's English score is at least 0.65.

The n-grams follow scikit-learn's `CountVectorizer(analyzer="char_wb", lowercase=True)` exactly, so that
`tests/test_language_id.py` can check our posteriors against `MultinomialNB` to 1e-9:
lower-case the text, split it on whitespace, pad each word with one space at each end (" word "), and
take every n-gram of each padded word for n in `ngram_range` (n-grams never cross words; the space
unigram is counted twice per word). A padded word no longer than n is counted once, whole, and stops
the larger n: " a " gives " a " at n = 3 and nothing at n = 4 (scikit-learn's rule, followed here).
N-grams never seen in training carry no weight, as in a vectorizer fitted on the training texts.

Balancing across languages is *temperature sampling*, as for domains (`balance.temperature_weights`):
a language with n bytes gets a share proportional to n^(1/T). mT5 and XLM-R write it n^alpha with
alpha = 1/T = 0.3. Up-sampling a small language means reading its data several times (`repeats`).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from minilm.data.documents import Document, Removal, StepResult, check_documents
from minilm.data.filters.balance import temperature_weights
from minilm.world import LANGUAGES

UNKNOWN = "unknown"


@lru_cache(maxsize=1 << 16)
def _word_ngrams(word: str, low: int, high: int) -> tuple[str, ...]:
    """The char_wb n-grams of one lower-cased word (cached: words repeat far more than texts do)."""
    padded = f" {word} "
    grams: list[str] = []
    for n in range(low, high + 1):
        if n >= len(padded):  # the whole padded word, once, and no larger n (scikit-learn's rule)
            grams.append(padded)
            break
        grams.extend(padded[i:i + n] for i in range(len(padded) - n + 1))
    return tuple(grams)


def char_ngrams(text: str, ngram_range: tuple[int, int] = (1, 3)) -> Counter:
    """Counts of the character n-grams of `text`, padded word by word (the module docstring's convention)."""
    low, high = _check_range(ngram_range)
    counts: Counter = Counter()
    for word, times in Counter(text.lower().split()).items():
        for gram in _word_ngrams(word, low, high):
            counts[gram] += times
    return counts


def _check_range(ngram_range: tuple[int, int]) -> tuple[int, int]:
    low, high = ngram_range
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        raise ValueError(f"ngram_range must be two integers 1 <= low <= high, such as (1, 3); got {ngram_range}")
    return low, high


@dataclass
class LanguageModel:
    """A trained identifier. Languages are sorted (scikit-learn's class order); `log_likelihoods[l, j]` is
    log P(n-gram j | language l), with columns in the order of the sorted `vocabulary`."""

    languages: list[str]
    vocabulary: dict[str, int]
    log_priors: np.ndarray  # (languages,)
    log_likelihoods: np.ndarray  # (languages, n-grams)
    ngram_range: tuple[int, int]
    alpha: float


def _sparse_counts(texts: list[str], vocabulary: dict[str, int], ngram_range: tuple[int, int]):
    """The document x n-gram count matrix as (row, column, count) arrays, sorted by row then column (the
    order in which scikit-learn sums); n-grams outside the vocabulary are dropped.

    Word by word: each distinct word's columns are looked up once, and a word seen k times in a text adds
    its columns with weight k; equal (row, column) pairs are then merged by np.unique.
    """
    low, high = _check_range(ngram_range)
    known: dict[str, np.ndarray] = {}  # word -> the columns of its n-grams that are in the vocabulary
    pieces, rows, times = [], [], []
    for row, text in enumerate(texts):
        for word, count in Counter(text.lower().split()).items():
            if word not in known:
                grams = _word_ngrams(word, low, high)
                known[word] = np.array([vocabulary[g] for g in grams if g in vocabulary], dtype=np.int64)
            pieces.append(known[word])
            rows.append(row)
            times.append(count)
    sizes = np.array([len(piece) for piece in pieces], dtype=np.int64)
    width = max(len(vocabulary), 1)
    keys = np.repeat(np.array(rows, dtype=np.int64), sizes) * width
    keys += np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    cells, where = np.unique(keys, return_inverse=True)
    counts = np.bincount(where, weights=np.repeat(np.array(times, dtype=np.float64), sizes), minlength=len(cells))
    return cells // width, cells % width, counts


def train_identifier(texts: dict[str, list[str]], ngram_range: tuple[int, int] = (1, 3), alpha: float = 1.0,
                     uniform_prior: bool = False) -> LanguageModel:
    """Fit naive Bayes on `texts` (language -> training documents).

    The prior is each language's share of the training documents, as scikit-learn's `fit_prior=True`;
    `uniform_prior=True` gives every language the same prior, for when the training mix says nothing
    about the mix the identifier will meet.
    """
    ngram_range = _check_range(ngram_range)
    if not texts:
        raise ValueError("no languages to train on: pass a dict such as {'en': [...], 'fr': [...]}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0 (1.0 is Laplace smoothing), got {alpha}")
    languages = sorted(texts)
    per_language = [Counter() for _ in languages]
    for counts, language in zip(per_language, languages):
        for text in texts[language]:
            counts.update(char_ngrams(text, ngram_range))
        if not counts:
            raise ValueError(f"language {language!r} has no training text: give it at least one non-empty document")
    vocabulary = {gram: j for j, gram in enumerate(sorted(set().union(*per_language)))}
    matrix = np.zeros((len(languages), len(vocabulary)))
    for row, counts in enumerate(per_language):
        matrix[row, [vocabulary[g] for g in counts]] = list(counts.values())
    smoothed = matrix + alpha
    log_likelihoods = np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True))
    documents = np.array([len(texts[language]) for language in languages], dtype=np.float64)
    log_priors = np.full(len(languages), -np.log(len(languages))) if uniform_prior \
        else np.log(documents) - np.log(documents.sum())
    return LanguageModel(languages, vocabulary, log_priors, log_likelihoods, ngram_range, float(alpha))


def log_posteriors(model: LanguageModel, texts: list[str]) -> np.ndarray:
    """log P(language | text), documents x languages; each row's exponentials sum to 1."""
    rows, cols, counts = _sparse_counts(texts, model.vocabulary, model.ngram_range)
    joint = np.stack([np.bincount(rows, weights=counts * model.log_likelihoods[l, cols], minlength=len(texts))
                      for l in range(len(model.languages))], axis=1) + model.log_priors
    top = joint.max(axis=1, keepdims=True)
    return joint - (top + np.log(np.exp(joint - top).sum(axis=1, keepdims=True)))


def identify(model: LanguageModel, texts: list[str], min_confidence: float = 0.9,
             min_words: int = 3) -> list[tuple[str, float]]:
    """The most probable language of each text and its posterior; "unknown" when the posterior is below
    `min_confidence` or the text has fewer than `min_words` words.

    Why "unknown": naive Bayes always names a language, even for "OK", a surname or a page that is half
    French and half English, and a wrong label is worse than none. A low posterior means the n-grams
    disagree or are too few to tell. But the posterior alone cannot catch short texts: counting
    overlapping n-grams as independent evidence makes it overconfident, so "the" alone is English at
    0.999999999 and one word in two gets a posterior of 1.0 to four decimals. Hence the word count
    too: on the course's generated pages, one word taken at random is identified right 81% of the
    time, two words 96%, three 99.6%. And a long mixed page gets a posterior near 1 for whichever
    language has more of its text: finding mixed pages needs a look at parts of the page (lines).
    """
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence is a probability between 0 and 1, got {min_confidence}")
    posteriors = np.exp(log_posteriors(model, texts))
    best = posteriors.argmax(axis=1)
    labels = []
    for text, b, p in zip(texts, best, posteriors):
        sure = p[b] >= min_confidence and len(text.split()) >= min_words
        labels.append((model.languages[b] if sure else UNKNOWN, float(p[b])))
    return labels


def identification_scores(predicted: list[str], truth: list[str]) -> dict:
    """Accuracy, per-language precision and recall, and confusion counts of predicted labels against the truth.

    "unknown" counts as a wrong answer (it lowers the true language's recall) but is no language of its
    own: its share is "unknown_rate". A language never predicted has precision 0. The confusion is
    {true language: {predicted label: count}}.
    """
    if len(predicted) != len(truth):
        raise ValueError(f"predicted has {len(predicted)} labels and truth {len(truth)}: pass one label per document")
    if not truth:
        raise ValueError("no labels to score: pass at least one document's prediction and truth")
    confusion: dict[str, Counter] = {}
    for guess, true in zip(predicted, truth):
        confusion.setdefault(true, Counter())[guess] += 1
    languages = sorted((set(truth) | set(predicted)) - {UNKNOWN})
    precision, recall = {}, {}
    for language in languages:
        hits = confusion.get(language, Counter())[language]
        guessed = sum(row[language] for row in confusion.values())
        precision[language] = hits / guessed if guessed else 0.0
        recall[language] = hits / truth.count(language) if language in confusion else 0.0
    return {"accuracy": sum(g == t for g, t in zip(predicted, truth)) / len(truth), "documents": len(truth),
            "unknown_rate": predicted.count(UNKNOWN) / len(truth), "precision": precision, "recall": recall,
            "confusion": {true: dict(row) for true, row in sorted(confusion.items())}}


def temperature_shares(sizes: dict[str, float], temperature: float) -> dict[str, float]:
    """Each language's share of the training mix, proportional to size^(1/temperature).

    T = 1 keeps the natural shares, T = inf gives every language the same share; mT5 and XLM-R sample with
    exponent alpha = 1/T = 0.3 (T about 3.3). The same formula as the domain mixture, so it is reused.
    """
    return temperature_weights(sizes, temperature)


def repeats(sizes: dict[str, float], shares: dict[str, float], total: float) -> dict[str, float]:
    """How many times each language's data is read (epochs) when `total` bytes are drawn with `shares`.

    share * total / size: below 1 the language is down-sampled, above 1 its documents are seen again
    and again, which is the price of up-sampling a small language (repeated data is worth less each
    time and a model can memorise it; Muennighoff et al. 2023 find about 4 epochs nearly as good as new data).
    """
    if set(sizes) != set(shares):
        raise ValueError(f"sizes and shares must name the same languages, got {sorted(sizes)} and {sorted(shares)}")
    if not total > 0:
        raise ValueError(f"total must be a positive number of bytes, got {total}")
    if any(share < 0 for share in shares.values()) or abs(sum(shares.values()) - 1) > 1e-6:
        raise ValueError(f"shares must be non-negative and sum to 1 (see temperature_shares), got {shares}")
    empty = [language for language, share in shares.items() if share > 0 and not sizes[language] > 0]
    if empty:
        raise ValueError(f"language(s) {empty} have a share but no data: give them data or a share of 0")
    return {language: shares[language] * total / sizes[language] if shares[language] > 0 else 0.0
            for language in sizes}


# --- the steps of stage 1 -----------------------------------------------------------------------------


def language_filter(docs: list[Document], model: LanguageModel, keep: tuple[str, ...] = LANGUAGES,
                    min_confidence: float = 0.9) -> StepResult:
    """Label every document with its language; remove those identified as a language not in `keep`.

    Each kept document gains labels["identified"] (a language, or "unknown") and labels["identified_score"]
    (the posterior of the most probable language). Only a confident label removes a document: an
    "unknown" one stays, since a wrong deletion loses good text for good while the later steps still judge
    it. Code is not judged (it is labelled "unknown" with score 0): its words are identifiers and keywords,
    and a corpus of code is sorted by programming language instead.
    """
    if not keep:
        raise ValueError("keep names no language: pass the languages to train on, such as ('en', 'es')")
    result = StepResult(name="language", kept=[])
    prose = [doc for doc in check_documents(docs, "language_filter") if doc.domain != "code"]
    labels = dict(zip((doc.id for doc in prose), identify(model, [doc.text for doc in prose], min_confidence)))
    for doc in docs:
        label, score = labels.get(doc.id, (UNKNOWN, 0.0))
        doc = doc.replace(labels={**doc.labels, "identified": label, "identified_score": round(score, 6)})
        if label != UNKNOWN and label not in keep:
            result.removed.append(Removal(doc, f"lang:{label}"))
        else:
            result.kept.append(doc)
    return result


def language_bytes(docs: list[Document]) -> dict[str, int]:
    """UTF-8 bytes per identified language (labels["identified"]; documents never labelled count as "unknown")."""
    sizes: Counter = Counter()
    for doc in docs:
        sizes[doc.labels.get("identified", UNKNOWN)] += len(doc.text.encode("utf-8"))
    return dict(sizes)


def mix_languages(docs: list[Document], temperature: float, seed: int, max_repeats: int = 4) -> StepResult:
    """Up-sample the smaller languages to their temperature shares (`temperature_shares`) of the labelled bytes.

    The largest language keeps all its documents, once: the budget is its bytes divided by its share, and
    each other language is read as many times as its share asks (whole passes over its shuffled documents,
    then part of one), at most `max_repeats` times in all; copies get ids "<id>#l<k>". Documents labelled
    "unknown" (code, very short texts) are kept once and take no part. Why up-sample rather than cut the
    large language: a small model's first language should not pay for its second (mT5 and XLM-R, with a
    hundred languages and a fixed budget, cut the large ones too).
    """
    if max_repeats < 1:
        raise ValueError(f"max_repeats must be at least 1 (one pass over each language), got {max_repeats}")
    sizes = {lang: n for lang, n in language_bytes(docs).items() if lang != UNKNOWN and n > 0}
    result = StepResult(name="languages", kept=[d for d in docs if d.labels.get("identified", UNKNOWN) == UNKNOWN])
    if not sizes:
        return StepResult(name="languages", kept=list(docs))
    shares = temperature_shares(sizes, temperature)
    largest = max(sizes, key=lambda lang: (sizes[lang], lang))
    budget = sizes[largest] / shares[largest]
    rng = random.Random(seed)
    for lang in sorted(sizes):
        pool = [d for d in docs if d.labels.get("identified") == lang]
        if lang == largest:
            result.kept += pool
            continue
        target = round(min(shares[lang] * budget, max_repeats * sizes[lang]))  # whole bytes: T = 1 reads each once
        order = pool[:]
        rng.shuffle(order)
        taken, used = 0, set()
        for repeat in range(max_repeats):
            for doc in order:
                if taken >= target:
                    break
                result.kept.append(doc if repeat == 0 else doc.replace(id=f"{doc.id}#l{repeat}"))
                used.add(doc.id)
                taken += len(doc.text.encode("utf-8"))
        result.removed += [Removal(doc, "languages:downsample") for doc in pool if doc.id not in used]
    return result
