"""Stage 1's rules on real text, where nobody planted anything.

The filters of stage 1 are scored against labels planted by the generators that were written
alongside them (`minilm.data.truth.scoring`): the filters were tuned until they found what the
generators plant, so those scores are upper bounds. This package measures the same rules on a small
sample of real text that the course carries (`sample.jsonl.gz`, see README.md beside it: HTML
documentation pages, package READMEs and Python source files, all permissively licensed), against
labels given by hand (`labels.jsonl`).

It is a measurement shown beside the pipeline, not a step of it: nothing here changes what stage 1
produces, and `stage.CODE` leaves this folder out of the stage's fingerprint.

- `load_sample()` reads the items, `as_documents()` turns them into `Document`s;
- `rule_decisions()` runs the rules on every item and lists each decision they make: a quality
  verdict per item (the first rule it fails, or keep), each line the toxicity rule cuts, each piece
  of personal data the PII rule masks;
- `load_labels()` reads the hand labels, `join()` pairs each decision with its label;
- `precision()` and `wilson_interval()` measure each rule; `disagreements()` lists where rule and
  label differ.
"""

from __future__ import annotations

import gzip
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from minilm.data.documents import Document
from minilm.data.filters import pii, quality, toxicity

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "sample.jsonl.gz"
LABELS = HERE / "labels.jsonl"
FILTERS = ("quality", "toxicity", "pii")


@dataclass(frozen=True)
class RealItem:
    """One real text and where it comes from."""

    id: str
    domain: str  # "web", "docs" or "code": which rules apply, as in stage 1
    origin: str  # the work it comes from, e.g. "The Rust Reference"
    path: str  # the file inside that work
    licence: str
    kind: str  # "HTML page, main text extracted", "package README (METADATA)", "Python source file"
    truncated: bool  # cut at a line boundary to keep the sample small
    text: str


def load_sample(path: Path = SAMPLE) -> list[RealItem]:
    """The real sample, in its stored order."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [RealItem(**json.loads(line)) for line in f if line.strip()]


def as_documents(items: list[RealItem]) -> list[Document]:
    """The items as stage-1 documents (their labels empty: the filters never read labels anyway)."""
    return [Document(item.id, item.domain, item.text, source=f"{item.origin}: {item.path}") for item in items]


@dataclass(frozen=True)
class Decision:
    """One decision a rule made on one item.

    For "quality", one per item: `fired` when a rule drops it (`reason` is the rule), `target` is "".
    For "toxicity", one per line the rule cuts (`target` is the line); for "pii", one per match
    (`target` is the matched text, `reason` "pii:<kind>"). Those two fire whenever they appear.
    """

    id: str
    filter: str
    target: str
    fired: bool
    reason: str


def quality_reason(text: str, domain: str) -> str | None:
    """The first stage-1 quality rule `text` fails, as `quality.quality_filter` decides."""
    if domain == "code":
        return quality.code_quality(text)
    return quality.prose_quality(text, domain)[0]


def rule_decisions(items: list[RealItem]) -> list[Decision]:
    """Every decision of stage 1's quality, toxicity and PII rules on the items."""
    decisions = []
    for item in items:
        reason = quality_reason(item.text, item.domain)
        decisions.append(Decision(item.id, "quality", "", reason is not None, reason or "keep"))
        for line in item.text.splitlines():
            if line.strip() and toxicity.is_toxic(line):
                decisions.append(Decision(item.id, "toxicity", line.strip(), True, "toxic"))
        for kind, start, end in pii.find_pii(item.text):
            decisions.append(Decision(item.id, "pii", item.text[start:end], True, f"pii:{kind}"))
    return decisions


@dataclass(frozen=True)
class Label:
    """What a person reading the item said the right decision was.

    `right` is the decision the reader wants: for "quality", True means "drop this document"; for
    "toxicity", True means "this line is toxic"; for "pii", True means "this is personal data (a real
    person's or machine's address, number or key)". `note` says why, in a few words.
    """

    id: str
    filter: str
    target: str
    right: bool
    note: str = ""


def load_labels(path: Path = LABELS) -> list[Label]:
    """The hand labels, one per line of `labels.jsonl`."""
    with open(path, encoding="utf-8") as f:
        return [Label(**json.loads(line)) for line in f if line.strip()]


def join(decisions: list[Decision], labels: list[Label]) -> list[tuple[Decision, Label | None]]:
    """Each decision with its label (None when nobody labelled it, e.g. after a rule changed)."""
    by_key = {(label.id, label.filter, label.target): label for label in labels}
    return [(d, by_key.get((d.id, d.filter, d.target))) for d in decisions]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% for z = 1.96).

    Unlike the normal approximation p ± z·sqrt(p(1-p)/n), it stays inside [0, 1] and does not shrink
    to nothing when p is 0 or 1, which matters with the few dozen labels a person can give by hand.
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Precision:
    """Of the `fired` decisions of one rule that carry a label, how many were right."""

    rule: str
    fired: int
    labelled: int
    right: int

    @property
    def value(self) -> float:
        return self.right / self.labelled if self.labelled else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.right, self.labelled)

    def row(self) -> dict:
        low, high = self.interval
        return {"rule": self.rule, "fired": self.fired, "labelled": self.labelled, "right": self.right,
                "precision": round(self.value, 3), "95% interval": f"{low:.2f} – {high:.2f}"}


def precision(joined: list[tuple[Decision, Label | None]], key=lambda d: d.reason) -> list[Precision]:
    """Precision per rule (grouped by `key` of the decision), of the decisions that fired."""
    groups: dict[str, list[Label | None]] = defaultdict(list)
    for decision, label in joined:
        if decision.fired:
            groups[key(decision)].append(label)
    return [Precision(rule, len(labels), sum(l is not None for l in labels), sum(l is not None and l.right for l in labels))
            for rule, labels in sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))]


def disagreements(joined: list[tuple[Decision, Label | None]]) -> list[tuple[Decision, Label]]:
    """The labelled decisions where rule and reader differ: fired but wrong, or (quality) kept but should go."""
    return [(d, label) for d, label in joined if label is not None and d.fired != label.right]
