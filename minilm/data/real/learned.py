"""A learned quality filter beside the rules: logistic regression on hashed n-grams, in numpy.

The rules of `minilm.data.filters.quality` were written by hand. The other way, used by GPT-3, the
Pile and FineWeb-Edu, is to *learn* a filter: label examples of good and bad text, fit a classifier,
and drop what it scores as bad. Here the labels are the planted ones (a document is junk when the
generator planted it as low quality, another language or generated code), so the classifier learns whatever tells the
generator's junk apart, and we can see how far that carries to real text.

- `features()` turns a text into hashed features: its words and word pairs, and the character
  3-grams of its words, each hashed into one of `DIM` buckets (the "hashing trick": no vocabulary to
  store), counted, log-scaled and normalised to length 1, so that long and short texts compare;
- `fit()` trains logistic regression by full-batch gradient descent with L2 regularisation and
  classes weighted to count equally (junk is a few percent of the corpus);
- `QualityClassifier.predict_proba()` gives each text's probability of being junk.

A sparse matrix is three arrays (CSR): the nonzero values `data`, their columns `indices`, and
`indptr`, where row r's entries are `data[indptr[r]:indptr[r + 1]]`. That is all `fit` needs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from minilm.data.truth.scoring import LANGUAGE_DEFECTS, QUALITY_DEFECTS

DIM = 2**18  # hash buckets
MAX_CHARS = 3_000  # a document's first characters are enough to judge it, and keep training fast
_WORD = re.compile(r"\w+|[^\w\s]")


def _bucket(token: str) -> int:
    """A stable hash (Python's `hash()` changes between processes) into [0, DIM)."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little") % DIM


def features(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The hashed features of `text`: (bucket indices, values), unique indices, L2 norm 1."""
    tokens = _WORD.findall(text[:MAX_CHARS].lower())
    grams = [f"w:{t}" for t in tokens] + [f"b:{a} {b}" for a, b in zip(tokens, tokens[1:])]
    for token in tokens:
        padded = f"<{token}>"
        grams += [f"c:{padded[i:i + 3]}" for i in range(len(padded) - 2)]
    if not grams:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    indices, counts = np.unique(np.fromiter((_bucket(g) for g in grams), dtype=np.int64, count=len(grams)),
                                return_counts=True)
    values = np.log1p(counts)
    return indices, values / np.linalg.norm(values)


@dataclass
class Sparse:
    """Rows of hashed features in CSR form."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @classmethod
    def from_texts(cls, texts: list[str]) -> "Sparse":
        rows = [features(text) for text in texts]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(i) for i, _ in rows])
        indices = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, dtype=np.int64)
        data = np.concatenate([v for _, v in rows]) if rows else np.zeros(0)
        return cls(indptr, indices, data)

    @property
    def rows(self) -> int:
        return len(self.indptr) - 1

    def dot(self, weights: np.ndarray) -> np.ndarray:
        """X @ w: for each row, the sum of its values times their weights."""
        products = self.data * weights[self.indices]
        sums = np.add.reduceat(products, self.indptr[:-1]) if len(products) else np.zeros(self.rows)
        return np.where(np.diff(self.indptr) > 0, sums, 0.0)  # reduceat gives an empty row the next value

    def transpose_dot(self, per_row: np.ndarray) -> np.ndarray:
        """X.T @ g: each feature gathers the per-row values of the rows it appears in."""
        row_of_entry = np.repeat(np.arange(self.rows), np.diff(self.indptr))
        return np.bincount(self.indices, weights=self.data * per_row[row_of_entry], minlength=DIM)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


@dataclass
class QualityClassifier:
    """Weights and bias of a logistic regression; `predict_proba` gives P(junk | text)."""

    weights: np.ndarray
    bias: float
    threshold: float = 0.5

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return sigmoid(Sparse.from_texts(texts).dot(self.weights) + self.bias)

    def predict(self, texts: list[str]) -> np.ndarray:
        """True where the classifier would drop the text."""
        return self.predict_proba(texts) >= self.threshold


def fit(texts: list[str], junk: list[bool], steps: int = 300, lr: float = 2.0, l2: float = 1e-4) -> QualityClassifier:
    """Logistic regression by full-batch gradient descent on the class-weighted log loss.

    Each class weighs half of the loss, so the few junk documents are not drowned by the many good
    ones. The gradient of the mean weighted log loss is X.T @ (weight * (p - y)) for the weights and
    sum(weight * (p - y)) for the bias, plus `l2 * w` for the regularisation.
    """
    X = Sparse.from_texts(texts)
    y = np.asarray(junk, dtype=float)
    positives = max(y.sum(), 1.0)
    negatives = max(len(y) - y.sum(), 1.0)
    sample_weight = np.where(y == 1, 0.5 / positives, 0.5 / negatives)
    w, b = np.zeros(DIM), 0.0
    for _ in range(steps):
        error = sample_weight * (sigmoid(X.dot(w) + b) - y)
        w -= lr * (X.transpose_dot(error) + l2 * w)
        b -= lr * error.sum()
    return QualityClassifier(w, float(b))


def log_loss(probabilities: np.ndarray, junk: list[bool]) -> float:
    """Mean log loss, for checking that training lowers it."""
    y = np.asarray(junk, dtype=float)
    p = np.clip(probabilities, 1e-12, 1 - 1e-12)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def is_held_out(doc_id: str, share: float = 0.2) -> bool:
    """A stable split by document id: about `share` of the documents are held out."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=4).digest(), "little") < share * 2**32


def planted_junk(doc) -> bool:
    """The planted label the classifier learns: what the language and quality steps should drop, as section 5
    scores it (`scoring.LANGUAGE_DEFECTS` and `QUALITY_DEFECTS`: another language, low-quality text, generated code)."""
    return any(defect in LANGUAGE_DEFECTS + QUALITY_DEFECTS for defect in doc.defects)


def training_set(docs, max_good: int = 2_500, seed: int = 0) -> tuple[list, list]:
    """The documents to train on and to test on: the held-out split (`is_held_out`) is the test set;
    the rest is the training set, all its junk and at most `max_good` good documents (a seeded
    sample), because the good ones are many and alike and training time grows with them."""
    train = [d for d in docs if not is_held_out(d.id)]
    test = [d for d in docs if is_held_out(d.id)]
    junk = [d for d in train if planted_junk(d)]
    good = [d for d in train if not planted_junk(d)]
    if len(good) > max_good:
        picked = set(np.random.default_rng(seed).choice(len(good), max_good, replace=False).tolist())
        good = [d for i, d in enumerate(good) if i in picked]
    return junk + good, test


def precision_recall(predicted, truth) -> tuple[int, int, int]:
    """(true positives, predicted positives, actual positives)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    return int((predicted & truth).sum()), int(predicted.sum()), int(truth.sum())
