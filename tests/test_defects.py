"""The defect planter: every label is true, every kind is planted where it makes sense, nothing leaks back."""

import ast
import copy
import random
from collections import Counter
from dataclasses import asdict

import pytest

from minilm.data.documents import Document
from minilm.data.filters.dedup import jaccard
from minilm.data.sources.stories.books import as_book
from minilm.data.sources.stories.writer import iter_stories
from minilm.data.truth.defects import (
    CONTROL_CHARS,
    GENERATED_KINDS,
    PII_KINDS,
    PROSE_DOMAINS,
    QUALITY_KINDS,
    _isbn,
    check_labels,
    defect_counts,
    fill,
    make_generated_code,
    make_low_quality,
    plant_defects,
)

CODE = '''"""A small module {i}."""

from __future__ import annotations

import os

LIMIT = {i}


@staticmethod
def double(x):
    """Twice x."""
    return 2 * x


class Box:
    def __init__(self, value):
        self.value = value
'''
DOCS = """json.dumps(obj, *, indent=None)

Serialize obj to a JSON formatted string. If indent is a non-negative integer, array elements and object members will be pretty-printed with that indent level.

The default is None, which selects the most compact representation. Use a separator tuple to change the spacing, and note that the function returns a new string every time it is called.

Changed in version 3.{i}: the function also accepts any object that has a to_json method, which it calls before it encodes the value."""


def corpus() -> list[Document]:
    rng = random.Random(0)
    books = [as_book(d, rng) if i % 3 == 0 else d for i, d in enumerate(iter_stories(300, seed=5))]
    web = [
        Document(f"web-{i:04d}", "web", "Home | Stories | About\n" + d.text.replace("\n\n", "\n"), f"http://127.0.0.1:8000/story/{i}.html")
        for i, d in enumerate(iter_stories(100, seed=6))
    ]
    docs = [Document(f"docs-{i:05d}", "docs", DOCS.format(i=i), f"pydoc:json{i}") for i in range(60)]
    code = [Document(f"code-{i:05d}", "code", CODE.format(i=i), f"Lib/pkg/mod{i}.py") for i in range(80)]
    return books + web + docs + code


@pytest.fixture(scope="module")
def original():
    return corpus()


@pytest.fixture(scope="module")
def planted(original):
    return plant_defects(original, seed=3, rate=0.1)


def test_same_seed_same_result_and_originals_untouched(original, planted):
    before = copy.deepcopy([asdict(d) for d in original])
    again = plant_defects(original, seed=3, rate=0.1)
    assert [asdict(d) for d in again] == [asdict(d) for d in planted]
    assert [asdict(d) for d in original] == before
    assert [asdict(d) for d in plant_defects(original, seed=4, rate=0.1)] != [asdict(d) for d in planted]
    assert plant_defects(original, seed=3, rate=0.0) == original  # nothing to plant: the same documents


def test_every_planted_string_is_verbatim_in_the_text(planted):
    assert all(check_labels(d) == [] for d in planted)
    for doc in planted:
        lines = doc.text.split("\n")
        for line in doc.labels.get("toxic_lines", []) + doc.labels.get("toxic_hard_negatives", []):
            assert line in lines  # each on a line of its own
        for item in doc.labels.get("pii", []) + doc.labels.get("pii_hard_negatives", []):
            assert item["text"] in doc.text
        for item in doc.labels.get("noise", []):
            assert item["text"] in doc.text and item["text"] != item["fixed"]
        for line in doc.labels.get("boilerplate_lines", []):
            assert line in lines  # no defect was planted inside a boilerplate line


def test_every_kind_is_planted_in_the_right_domains(planted):
    counts = defect_counts(planted)
    for kind in ("exact_dup", "near_dup", "low_quality", "toxic", "pii", "noise", "generated_code", "boilerplate"):
        assert counts[kind] > 0, kind
    by_domain = Counter((d.domain, k) for d in planted for k in d.defects)
    for kind in ("toxic", "noise", "near_dup", "low_quality"):
        assert by_domain[("code", kind)] == 0, kind
    assert all(d.domain == "code" for d in planted if "generated_code" in d.defects)
    assert by_domain[("code", "exact_dup")] > 0 and by_domain[("code", "pii")] > 0
    pii_kinds = Counter(i["kind"] for d in planted for i in d.labels.get("pii", []))
    assert set(pii_kinds) == set(PII_KINDS)
    code_pii = Counter(i["kind"] for d in planted if d.domain == "code" for i in d.labels.get("pii", []))
    assert code_pii["secret"] > sum(code_pii.values()) / 2  # code leaks mostly keys
    hard = Counter(i["kind"] for d in planted for i in d.labels.get("pii_hard_negatives", []))
    assert len(hard) >= 5
    assert sum(bool(d.labels.get("toxic_hard_negatives")) for d in planted) > 10


def test_rate_is_about_right(original, planted):
    prose = sum(d.domain in PROSE_DOMAINS for d in original)
    for kind in ("toxic", "pii", "noise"):
        share = sum(kind in d.defects for d in planted if "dup_of" not in d.labels) / prose
        assert 0.04 < share < 0.2, (kind, share)
    low = sum("low_quality" in d.defects for d in planted)
    assert low == round(0.1 * prose)


def test_copies_follow_their_original(planted):
    position = {d.id: i for i, d in enumerate(planted)}
    by_id = {d.id: d for d in planted}
    assert len(position) == len(planted)  # ids stay unique
    copies = [d for d in planted if "dup_of" in d.labels]
    assert copies
    for doc in copies:
        original = by_id[doc.labels["dup_of"]]
        assert doc.id.startswith(original.id + "-dup") and position[doc.id] > position[original.id]
        if "exact_dup" in doc.defects:
            assert doc.text == original.text
        else:
            assert "near_dup" in doc.defects
            assert 0.65 <= doc.labels["jaccard"] <= 0.95
            boilerplate = {line.strip() for line in original.labels.get("boilerplate_lines", [])}

            def content(text):
                return "\n".join(line for line in text.splitlines() if line.strip() not in boilerplate)

            assert doc.labels["jaccard"] == pytest.approx(jaccard(content(original.text), content(doc.text)), abs=1e-4)


def test_toxic_and_pii_material_is_varied(planted):
    toxic = {line for d in planted for line in d.labels.get("toxic_lines", [])}
    negatives = {line for d in planted for line in d.labels.get("toxic_hard_negatives", [])}
    pii = {i["text"] for d in planted for i in d.labels.get("pii", [])}
    assert len(toxic) > 20 and len(negatives) > 10 and len(pii) > 30
    assert not toxic & negatives


def test_noise_items_are_real_mojibake_and_control_characters(planted):
    items = [i for d in planted for i in d.labels.get("noise", [])]
    kinds = Counter(i["kind"] for i in items)
    assert kinds["mojibake"] > 0 and kinds["control"] > 0
    for item in items:
        if item["kind"] == "control":
            assert sum(item["text"].count(c) for c in CONTROL_CHARS) == 1
            assert "".join(c for c in item["text"] if c not in CONTROL_CHARS) == item["fixed"]
        else:
            assert item["fixed"].encode("utf-8").decode("cp1252", errors="replace") == item["text"]


def test_code_still_parses_after_planting(planted):
    for doc in planted:
        if doc.domain == "code" and "generated_code" not in doc.defects:
            ast.parse(doc.text)
    for kind in GENERATED_KINDS:
        doc = make_generated_code("code-gen-x", "Lib/_tables.py", random.Random(kind), kind)
        assert doc.labels == {"defects": ["generated_code"], "generated_kind": kind}
        ast.parse(doc.text)  # generated files are valid Python, just not written by hand
        assert max(map(len, doc.text.split("\n"))) > 1000 or doc.text.count("\n") > 150


def test_each_low_quality_kind(planted):
    vocab = ["garden", "kite", "the", "red", "happy", "walked", "river", "bread"]
    texts = {k: make_low_quality("x", "web", "", random.Random(k), vocab, kind=k).text for k in QUALITY_KINDS}
    assert "lorem" in texts["lorem_ipsum"].lower()
    assert "JavaScript" in texts["javascript_notice"] or "Loading" in texts["javascript_notice"]
    assert len(texts["too_short"].split()) < 15
    assert not any(c in texts["word_salad"] for c in ".!?")
    lines = texts["repeated_lines"].split("\n")
    assert len(set(lines)) <= 3 < len(lines)
    assert all(line[:1] in "•-*→·" for line in texts["bullet_spam"].split("\n"))
    planted_kinds = {d.labels["quality_kind"] for d in planted if "low_quality" in d.defects}
    assert len(planted_kinds) >= 6
    with pytest.raises(ValueError, match="quality kind"):
        make_low_quality("x", "web", "", random.Random(0), vocab, kind="nonsense")


def test_fill_records_slots_and_makes_valid_isbns():
    text, items = fill("Write to {name} at {email} or call {phone} before {date}.", random.Random(1))
    assert [i["kind"] for i in items] == ["email", "phone", "date"]
    assert all(i["text"] in text for i in items)
    for seed in range(20):
        digits = [int(c) for c in _isbn(random.Random(seed), {}) if c.isdigit()]
        assert len(digits) == 13 and sum(d * (1 if i % 2 == 0 else 3) for i, d in enumerate(digits)) % 10 == 0


def test_bad_input_is_refused_with_a_clear_error(original):
    with pytest.raises(ValueError, match="unique"):
        plant_defects(original[:2] + original[:1], seed=1)
    with pytest.raises(ValueError, match="rate"):
        plant_defects(original, seed=1, rate=1.5)
    with pytest.raises(ValueError, match="domain"):
        plant_defects([Document("a", "poetry", "text")], seed=1)
