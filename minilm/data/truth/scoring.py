"""Scoring every filter against the truth the generators planted.

A filter is only as good as its measured precision (of what it flagged, how much was a real defect)
and recall (of the real defects, how many it flagged). Each step is scored on its own input, so a
defect that an earlier step already removed is neither a hit nor a miss of a later one.

Where is the truth known? Everything in the web pages and the stories was written by our generators,
and so was every defect planted into the real documentation and code. But the real Python docs and
standard-library code are not ours: an author's e-mail address in a real module is real personal
data, and a real module may really be auto-generated. Flags in such real text are therefore counted
apart, as `unlabelled`, and shown in the notebook, instead of being called right or wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from minilm.data.documents import Document, StepResult

# The quality step answers for two kinds of planted documents; the language step for pages in a language the
# course does not train on.
QUALITY_DEFECTS = ("low_quality", "generated_code")
LANGUAGE_DEFECTS = ("foreign",)


@dataclass
class Score:
    """Precision and recall of one step on one kind of defect.

    precision = hits / flagged (flags in text whose truth is known), recall = found / planted.
    For most steps hits and found are the same number; the quality step answers for three kinds
    at once, so its precision is shared by the three and its recall is per kind.
    """

    defect: str
    step: str
    planted: int  # defects present in the step's input
    found: int  # planted defects the step flagged
    flagged: int  # flags in text whose truth is known
    hits: int  # of those, flags that were planted defects
    unlabelled: int = 0  # flags in real text, where the truth is not known

    @property
    def precision(self) -> float:
        return self.hits / self.flagged if self.flagged else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.planted if self.planted else 1.0

    def row(self) -> dict:
        return {**asdict(self), "precision": round(self.precision, 4), "recall": round(self.recall, 4)}


def is_generated(doc: Document) -> bool:
    """True when every word of the document came from our generators (so its labels are the whole truth)."""
    base = doc.id.split("#")[0]
    return doc.domain in ("web", "books") or "-lowq-" in base or base.startswith("code-gen-")


def score_dedup(step_input: list[Document], result: StepResult, defect: str, kinds: tuple[str, ...]) -> Score:
    """Score a dedup step: copies of `kinds` count as planted while their original is still present.

    Near dedup answers for exact copies too when the exact pass missed them (a page whose copy
    differs by a reply form is no longer byte-identical after extraction).
    """
    present = {doc.id for doc in step_input}
    planted = {doc.id for doc in step_input if set(kinds) & set(doc.defects) and doc.labels.get("dup_of") in present}
    flagged = hits = unlabelled = 0
    for removal in result.removed:
        if removal.doc.id in planted:
            flagged += 1
            hits += 1
        elif is_generated(removal.doc):
            flagged += 1
        else:
            unlabelled += 1
    return Score(defect, result.name, len(planted), hits, flagged, hits, unlabelled)


def score_quality(step_input: list[Document], result: StepResult) -> list[Score]:
    """The quality step answers for junk and generated documents: shared precision, recall per kind."""
    kinds = QUALITY_DEFECTS
    junk = {doc.id for doc in step_input if set(doc.defects) & set(kinds)}
    removed = {r.doc.id for r in result.removed}
    hits = sum(1 for r in result.removed if r.doc.id in junk)
    flagged = sum(1 for r in result.removed if r.doc.id in junk or is_generated(r.doc))
    unlabelled = len(result.removed) - flagged
    scores = []
    for kind in kinds:
        planted = [doc.id for doc in step_input if kind in doc.defects]
        found = sum(1 for doc_id in planted if doc_id in removed)
        scores.append(Score(kind, result.name, len(planted), found, flagged, hits, unlabelled))
    return scores


def score_removals(step_input: list[Document], result: StepResult, defect: str) -> Score:
    """Score a step that removes whole documents of one planted kind (the language step: foreign pages)."""
    planted = {doc.id for doc in step_input if defect in doc.defects}
    flagged = sum(1 for r in result.removed if r.doc.id in planted or is_generated(r.doc))
    hits = sum(1 for r in result.removed if r.doc.id in planted)
    return Score(defect, result.name, len(planted), hits, flagged, hits, len(result.removed) - flagged)


def score_lines(step_input: list[Document], result: StepResult, defect: str, label: str, reasons: tuple[str, ...]) -> Score:
    """Score a step that cuts or replaces pieces of text (lines, spans) against a label list of strings.

    A flagged piece is a hit when it is a planted string, or lies inside one (a repair of three broken
    characters inside a planted damaged word), or holds one (a cut line around a planted phone number).
    Flags inside planted junk documents are not scored: a junk page has no right or wrong lines.
    """
    by_id = {doc.id: doc for doc in step_input}
    planted = {doc.id: _label_strings(doc, label) for doc in step_input}
    flags: list[tuple[str, str]] = [(e.doc_id, e.before) for e in result.edits if e.reason.startswith(reasons)]
    for removal in result.removed:
        if removal.reason.startswith(reasons):  # a dropped document flags all of its lines
            flags += [(removal.doc.id, line) for line in removal.doc.text.splitlines() if line.strip()]
    flagged = hits = unlabelled = 0
    found: set[tuple[str, str]] = set()
    for doc_id, text in flags:
        doc = by_id[doc_id]
        if "low_quality" in doc.defects:
            continue
        for piece in _pieces(text):
            match = _match(piece, planted[doc_id])
            if match is not None:
                flagged += 1
                hits += 1
                found.add((doc_id, match))
            elif is_generated(doc) or _is_hard_negative(doc, piece):
                flagged += 1
            else:
                unlabelled += 1
    total = sum(len(v) for v in planted.values())
    return Score(defect, result.name, total, len(found), flagged, hits, unlabelled)


def score_repairs(step_input: list[Document], result: StepResult) -> Score:
    """Score the repair of broken text: a planted item is repaired when its broken form is gone from the output.

    Flags are the repairs made (a mojibake run, a control character); a flag is a hit when it lies inside
    a planted broken word.
    """
    output = {doc.id: doc.text for doc in result.kept}
    by_id = {doc.id: doc for doc in step_input}
    planted = [(doc.id, item) for doc in step_input if "low_quality" not in doc.defects for item in doc.labels.get("noise", [])]
    found = sum(1 for doc_id, item in planted if doc_id in output and item["text"] not in output[doc_id])
    flagged = hits = unlabelled = 0
    for edit in result.edits:
        if not edit.reason.startswith(("mojibake", "control")) or "low_quality" in by_id[edit.doc_id].defects:
            continue
        if any(edit.before in item["text"] for item in by_id[edit.doc_id].labels.get("noise", [])):
            flagged += 1
            hits += 1
        elif is_generated(by_id[edit.doc_id]):
            flagged += 1
        else:
            unlabelled += 1
    return Score("noise", result.name, len(planted), found, flagged, hits, unlabelled)


def _label_strings(doc: Document, label: str) -> set[str]:
    if "low_quality" in doc.defects:
        return set()
    items = doc.labels.get(label, [])
    return {(item["text"] if isinstance(item, dict) else item).strip() for item in items} - {""}


def _match(piece: str, truth: set[str]) -> str | None:
    if piece in truth:
        return piece
    return next((t for t in truth if piece in t or t in piece), None)


def _pieces(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()] or [text]


def _is_hard_negative(doc: Document, piece: str) -> bool:
    negatives = doc.labels.get("hard_negatives", [])
    return any(piece in (n["text"] if isinstance(n, dict) else n) for n in negatives)


def score_pipeline(gathered: list[Document], steps: list[StepResult]) -> list[Score]:
    """Score every step of `minilm.data.stage.prepare` on the defects it is responsible for."""
    inputs = {}
    current = gathered
    for step in steps:
        inputs[step.name] = current
        current = step.kept
    scores: list[Score] = []
    if "clean" in inputs:
        step = _step(steps, "clean")
        scores.append(score_lines(inputs["clean"], step, "boilerplate", "boilerplate_lines", ("licence", "front_matter", "boilerplate")))
        scores.append(score_repairs(inputs["clean"], step))
    if "language" in inputs:
        scores.append(score_removals(inputs["language"], _step(steps, "language"), "foreign"))
    if "quality" in inputs:
        scores += score_quality(inputs["quality"], _step(steps, "quality"))
    if "toxicity" in inputs:
        scores.append(score_lines(inputs["toxicity"], _step(steps, "toxicity"), "toxic", "toxic_lines", ("toxic",)))
    if "pii" in inputs:
        scores.append(score_lines(inputs["pii"], _step(steps, "pii"), "pii", "pii", ("pii",)))
    if "exact_dedup" in inputs:
        scores.append(score_dedup(inputs["exact_dedup"], _step(steps, "exact_dedup"), "exact_dup", ("exact_dup",)))
    if "near_dedup" in inputs:
        scores.append(score_dedup(inputs["near_dedup"], _step(steps, "near_dedup"), "near_dup", ("near_dup", "exact_dup")))
    return scores


def _step(steps: list[StepResult], name: str) -> StepResult:
    return next(s for s in steps if s.name == name)
