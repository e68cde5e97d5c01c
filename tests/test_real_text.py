"""The real-text sample, its hand labels, the measurements on it, and the learned quality filter."""

import math

import numpy as np
import pytest

from minilm.data import real, stage
from minilm.data.documents import DOMAINS
from minilm.data.real import learned

PERMISSIVE = ("MIT", "BSD", "Apache", "ISC", "PSF", "Python Software Foundation")


@pytest.fixture(scope="module")
def items():
    return real.load_sample()


def test_the_sample_loads_with_provenance_and_a_permissive_licence(items):
    assert 150 <= len(items) <= 400
    assert len({item.id for item in items}) == len(items)
    for item in items:
        assert item.domain in DOMAINS and item.text.strip() and item.origin and item.path
        assert any(word in item.licence for word in PERMISSIVE) and "GPL" not in item.licence, item
    assert (real.HERE / "README.md").exists()
    docs = real.as_documents(items)
    assert [d.id for d in docs] == [item.id for item in items] and all(not d.labels for d in docs)


def test_every_decision_the_rules_make_has_a_hand_label(items):
    joined = real.join(real.rule_decisions(items), real.load_labels())
    unlabelled = [d for d, label in joined if label is None]
    assert not unlabelled, f"label these (the rules changed?): {unlabelled[:5]}"
    assert sum(d.filter == "quality" for d, _ in joined) == len(items)  # one quality verdict per item


@pytest.mark.parametrize("k, n, low, high", [(10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (0, 10, 0.0, 0.2775),
                                             (1, 1, 0.2065, 1.0)])
def test_wilson_interval_matches_published_values(k, n, low, high):
    got = real.wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_of_nothing_is_everything():
    assert real.wilson_interval(0, 0) == (0.0, 1.0)


def test_precision_counts_only_fired_and_labelled_decisions():
    D, L = real.Decision, real.Label
    decisions = [D("a", "quality", "", True, "r1"), D("b", "quality", "", True, "r1"), D("c", "quality", "", True, "r1"),
                 D("d", "quality", "", False, "keep"), D("e", "quality", "", True, "r2")]
    labels = [L("a", "quality", "", True), L("b", "quality", "", False), L("d", "quality", "", True)]
    joined = real.join(decisions, labels)
    rows = {p.rule: p for p in real.precision(joined)}
    assert set(rows) == {"r1", "r2"}  # "keep" did not fire
    assert (rows["r1"].fired, rows["r1"].labelled, rows["r1"].right) == (3, 2, 1)
    assert rows["r1"].value == 0.5 and rows["r1"].interval == real.wilson_interval(1, 2)
    assert math.isnan(rows["r2"].value)
    assert [(d.id, label.right) for d, label in real.disagreements(joined)] == [("b", False), ("d", True)]


def test_the_measurements_are_not_part_of_the_stage_fingerprint():
    assert all("real" not in path.parts for path in stage.CODE)
    assert any(path.name == "quality.py" for path in stage.CODE)


# --- the learned filter ---------------------------------------------------------------------------------------


def test_features_are_stable_and_unit_length():
    indices, values = learned.features("The cat sat on the mat. The cat!")
    again = learned.features("The cat sat on the mat. The cat!")
    assert np.array_equal(indices, again[0]) and np.allclose(values, again[1])
    assert np.all(np.diff(indices) > 0) and np.linalg.norm(values) == pytest.approx(1.0)
    assert len(learned.features("")[0]) == 0


def test_sparse_products_equal_the_dense_ones():
    texts = ["one two three", "", "symbols %%% $$$", "one one one two"]
    X = learned.Sparse.from_texts(texts)
    dense = np.zeros((len(texts), learned.DIM))
    for r in range(X.rows):
        dense[r, X.indices[X.indptr[r]:X.indptr[r + 1]]] = X.data[X.indptr[r]:X.indptr[r + 1]]
    rng = np.random.default_rng(0)
    w, g = rng.normal(size=learned.DIM), rng.normal(size=len(texts))
    assert np.allclose(X.dot(w), dense @ w)
    assert np.allclose(X.transpose_dot(g), dense.T @ g)


def _toy(n, rng):
    words = "the a cat dog ran sat on under house garden happy slowly and then was".split()
    good = [" ".join(rng.choice(words, 12)).capitalize() + "." for _ in range(n)]
    junk = ["".join(rng.choice(list("#$%&*@!~^0123456789"), 40)) + " buy cheap " * int(rng.integers(1, 4)) for _ in range(n)]
    return good + junk, [False] * n + [True] * n


def test_fit_learns_a_separable_toy_task_and_lowers_the_loss():
    rng = np.random.default_rng(1)
    texts, junk = _toy(60, rng)
    test_texts, test_junk = _toy(30, rng)
    untrained = learned.QualityClassifier(np.zeros(learned.DIM), 0.0)
    model = learned.fit(texts, junk, steps=100)
    assert learned.log_loss(model.predict_proba(texts), junk) < learned.log_loss(untrained.predict_proba(texts), junk) - 0.1
    assert np.mean(model.predict(test_texts) == np.array(test_junk)) == 1.0
    assert learned.precision_recall(model.predict(test_texts), test_junk) == (30, 30, 30)


def test_a_wrong_gradient_sign_does_not_learn(monkeypatch):
    rng = np.random.default_rng(2)
    texts, junk = _toy(40, rng)
    monkeypatch.setattr(learned, "sigmoid", lambda z: 1.0 / (1.0 + np.exp(np.clip(z, -30, 30))))  # sign error
    model = learned.fit(texts, junk, steps=50)
    assert np.mean(model.predict(texts) == np.array(junk)) < 0.9


def test_the_split_is_stable_and_near_its_share():
    ids = [f"doc-{i}" for i in range(5000)]
    held = [learned.is_held_out(i) for i in ids]
    assert held == [learned.is_held_out(i) for i in ids]
    assert 0.17 < np.mean(held) < 0.23
