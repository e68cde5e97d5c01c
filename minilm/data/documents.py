"""Documents and the result of one preparation step.

Every source (web, books, docs, code) yields `Document`s, and every preparation step (cleaning,
quality, toxicity, personal data, dedup, balancing) takes a list of them and returns a `StepResult`:
what it kept, what it removed and why, and what it edited inside the documents it kept.
Keeping the removals, not just counting them, is what lets the notebook show examples of both
sides and lets the tests score each filter against the labels the generators planted.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from minilm.files import atomic_write

DOMAINS = ("web", "books", "docs", "code")


@dataclass
class Document:
    """One text of the corpus.

    `labels` is the generator's ground truth (never read by a filter): the defects it planted,
    such as ``{"defects": ["toxic"], "pii": ["ann@example.com"], "dup_of": "books-00012"}``,
    and for stories the facts of the story. Filters see only `text`, `domain` and `source`.
    """

    id: str
    domain: str
    text: str
    source: str = ""
    labels: dict = field(default_factory=dict)

    @property
    def defects(self) -> list[str]:
        return self.labels.get("defects", [])

    def replace(self, **changes) -> "Document":
        """A copy with some fields changed.

        The labels dict is copied (one level), so setting a label on the copy never changes the
        original; labels are treated as values: replace a list, never append to it in place.
        """
        changes.setdefault("labels", dict(self.labels))
        return dataclasses.replace(self, **changes)


@dataclass
class Removal:
    """A document a step dropped, and the rule that dropped it (e.g. ``"gopher:stop_words"``)."""

    doc: Document
    reason: str


@dataclass
class Edit:
    """A piece of text a step cut or replaced inside a kept document."""

    doc_id: str
    reason: str
    before: str
    after: str = ""


@dataclass
class StepResult:
    """What one preparation step did: kept documents, removals and edits, each with a reason."""

    name: str
    kept: list[Document]
    removed: list[Removal] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)

    def removed_by_reason(self) -> Counter:
        return Counter(r.reason for r in self.removed)

    def edits_by_reason(self) -> Counter:
        return Counter(e.reason for e in self.edits)

    def summary(self) -> dict:
        """Counts for tables and manifests."""
        return {
            "step": self.name,
            "kept": len(self.kept),
            "removed": len(self.removed),
            "edits": len(self.edits),
            "removed_by_reason": dict(self.removed_by_reason().most_common()),
            "edits_by_reason": dict(self.edits_by_reason().most_common()),
        }


def check_documents(docs: Iterable[Document], step: str) -> list[Document]:
    """`docs` as a list, after checking that each item is a Document (`step` names the caller in the error)."""
    docs = list(docs)
    for doc in docs:
        if not isinstance(doc, Document):
            raise TypeError(f"{step} takes a list of Document, got {type(doc).__name__}: "
                            "wrap raw text as Document(id=..., domain=..., text=...)")
    return docs


def write_jsonl(path: Path, docs: Iterable[Document]) -> int:
    """Write documents as JSON lines, atomically; returns the number written."""
    count = 0

    def lines() -> Iterator[bytes]:
        nonlocal count
        for doc in docs:
            count += 1
            yield (json.dumps(asdict(doc), ensure_ascii=False) + "\n").encode("utf-8")

    atomic_write(path, lines())
    return count


def read_jsonl(path: Path) -> Iterator[Document]:
    """Stream documents back from a JSON-lines file written by `write_jsonl`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the data stage first (python -m minilm data)")
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                yield Document(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as e:
                raise ValueError(f"{path}:{number} is not a document line ({e}); delete the file and rebuild it") from e
