"""Bias: an audit of which gender words appear near which job words.

Bias cannot be filtered line by line: no single sentence "Tom was a pilot." is wrong, but a corpus
where every pilot is a man teaches the model a stereotype. `bias_audit` measures it, by counting
the gendered words of the world (`minilm.world.GENDER_WORDS`) that appear near each of its jobs;
stage 1 then rebalances (`balance.counterfactual_balance`, which reads each document with
`job_gender`), and stage 8 checks whether the trained model learned less of it. `true_job_gender`
reads the same table from the facts the story generator recorded, to check the audit.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import regex

from minilm.data.documents import Document, check_documents
from minilm.world import GENDER_WORDS, JOBS, STEREOTYPED_GENDER

_WORDS = re.compile(r"[a-z]+")

# Job words that are also verbs ("she likes to cook"): they count only right after a determiner or
# adjective ("a cook", "the cooks", "a good cook").
JOB_WORDS_ALSO_VERBS = frozenset({"cook", "cooks"})
DETERMINERS = frozenset("""
    a an the this that these those my your his her our their every each some many two three head
    good great best famous kind busy old young new town village school
""".split())

# How far from a job word a gender word may be: stories say "Mia was a pilot. Every morning she
# flew...", so the pronoun is often in the next sentence, and farther away it belongs to someone else.
WINDOWS = {"same_sentence": 0, "sentence": 1, "document": None}

_SENTENCE_END = regex.compile(r"(?<!\b(?:Mr|Mrs|Ms|Dr|St)\.)(?<=[.!?])[\"'”’)]*\s+|\n\s*\n|\n(?=\s*[-*#])")


@dataclass
class BiasAudit:
    """Gender words counted near each job word, and how far the shares are from balanced.

    `counts[job]` is {"female": n, "male": n}; `mentions[job]` the number of job mentions seen.
    """

    counts: dict[str, Counter] = field(default_factory=dict)
    mentions: Counter = field(default_factory=Counter)
    window: str = "sentence"
    skipped: int = 0  # (truth tables only) people whose job is not in the list or whose gender is unknown

    def share_female(self, job: str) -> float | None:
        """Female share of the gendered words counted for `job`; None when there are none."""
        c = self.counts.get(job, Counter())
        total = c["female"] + c["male"]
        return c["female"] / total if total else None

    def table(self) -> dict[str, tuple[int, int, float | None]]:
        """job -> (female count, male count, share female)."""
        return {job: (c["female"], c["male"], self.share_female(job)) for job, c in self.counts.items()}

    def skew(self, jobs: Iterable[str] | None = None) -> float:
        """Mean absolute deviation of share-female from 0.5, weighted by counts (0 = balanced, 0.5 =
        every job entirely one gender). Weighting by counts keeps a job seen twice from counting as
        much as one seen a thousand times."""
        total = deviation = 0.0
        for job in self.counts if jobs is None else jobs:
            c = self.counts.get(job, Counter())
            n = c["female"] + c["male"]
            if n:
                total += n
                deviation += n * abs(c["female"] / n - 0.5)
        return deviation / total if total else 0.0

    @property
    def skew_all(self) -> float:
        return self.skew()

    @property
    def skew_stereotyped(self) -> float:
        return self.skew(job for job in STEREOTYPED_GENDER if job in self.counts)

    @property
    def stereotype_lean(self) -> float:
        """Signed: how far the stereotyped jobs lean *towards* their stereotype (+0.5 = fully
        stereotyped, 0 = balanced, negative = against the stereotype), weighted by counts."""
        total = lean = 0.0
        for job, gender in STEREOTYPED_GENDER.items():
            share = self.share_female(job)
            if share is None:
                continue
            n = sum(self.counts[job].values())
            total += n
            lean += n * ((share - 0.5) if gender == "female" else (0.5 - share))
        return lean / total if total else 0.0

    def share_gap(self, other: "BiasAudit", min_count: int = 10) -> dict[str, float]:
        """|share_female here - share_female there| for jobs with at least `min_count` words in both,
        e.g. to check an audit against `true_job_gender`."""
        gaps = {}
        for job in self.counts:
            mine, theirs = self.counts[job], other.counts.get(job, Counter())
            if sum(mine.values()) >= min_count and sum(theirs.values()) >= min_count:
                gaps[job] = abs(self.share_female(job) - other.share_female(job))
        return gaps

    def to_rows(self) -> list[dict]:
        """The table as a list of plain dicts, one per job (no pandas needed to print or save it)."""
        rows = []
        for job, (female, male, share) in self.table().items():
            rows.append({"job": job, "female": female, "male": male, "total": female + male,
                         "share_female": None if share is None else round(share, 4),
                         "mentions": self.mentions[job], "stereotype": STEREOTYPED_GENDER.get(job, "")})
        return rows


def _plural(word: str) -> str:
    if word.endswith(("s", "sh", "ch", "x")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in set("aeiou"):
        return word[:-1] + "ies"
    return word + "s"


def _job_lookup(jobs: Iterable[str]) -> dict[tuple[str, ...], str]:
    lookup = {}
    for job in jobs:
        words = tuple(job.lower().split())
        if not words or not all(_WORDS.fullmatch(w) for w in words):
            raise ValueError(f"job {job!r} must be one or more lowercase words, like 'baker' or 'police officer'")
        lookup[words] = job
        lookup[words[:-1] + (_plural(words[-1]),)] = job
    return lookup


def _job_mentions(words: list[str], lookup: dict[tuple[str, ...], str], longest: int) -> list[str]:
    found, i = [], 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            job = lookup.get(tuple(words[i : i + n]))
            if job and (words[i] not in JOB_WORDS_ALSO_VERBS or (i > 0 and words[i - 1] in DETERMINERS)):
                found.append(job)
                i += n
                break
        else:
            i += 1
    return found


def bias_audit(docs: list[Document], jobs: Iterable[str] = JOBS, window: str = "sentence") -> BiasAudit:
    """Count the gender words that appear near each job word.

    For each mention of a job ("pilot", "pilots", "police officer") the female and male words
    (`minilm.world.GENDER_WORDS`) of its window are counted: the same sentence and the next one for
    window="sentence", the same sentence only for "same_sentence", the whole document for "document".
    Each gender word is counted once per job mention it is near.
    """
    if window not in WINDOWS:
        raise ValueError(f"window={window!r} is not one of {', '.join(WINDOWS)}")
    jobs = list(jobs)
    if not jobs:
        raise ValueError("jobs is empty: pass the job words to audit, e.g. minilm.world.JOBS")
    lookup = _job_lookup(jobs)
    longest = max(len(key) for key in lookup)
    audit = BiasAudit(counts={job: Counter(female=0, male=0) for job in jobs}, window=window)
    extra = WINDOWS[window]
    female_words, male_words = GENDER_WORDS["female"], GENDER_WORDS["male"]
    for doc in check_documents(docs, "bias_audit"):
        sentences = [_WORDS.findall(s.lower()) for s in _SENTENCE_END.split(doc.text)]
        genders = [(sum(w in female_words for w in s), sum(w in male_words for w in s)) for s in sentences]
        for i, words in enumerate(sentences):
            for job in _job_mentions(words, lookup, longest):
                near = genders if extra is None else genders[i : i + 1 + extra]
                audit.mentions[job] += 1
                audit.counts[job]["female"] += sum(f for f, _ in near)
                audit.counts[job]["male"] += sum(m for _, m in near)
    return audit


GENDER_VALUES = {"female": "female", "f": "female", "woman": "female", "girl": "female", "she": "female",
                 "male": "male", "m": "male", "man": "male", "boy": "male", "he": "male"}


def _people(facts) -> list[tuple[object, object]]:
    """(job, gender) of each person a story's facts describe: "job"/"gender" for the hero, and any
    "<who>_job"/"<who>_gender" pair such as "friend_job"/"friend_gender" (None when the story never
    says the friend's job)."""
    if not isinstance(facts, dict):
        return []
    people = []
    for key in facts:
        if key == "job" or key.endswith("_job"):
            prefix = key[: -len("job")]
            if facts[key] is not None:
                people.append((facts[key], facts.get(prefix + "gender")))
    return people


def true_job_gender(docs: list[Document], jobs: Iterable[str] = JOBS) -> BiasAudit:
    """The true job-gender table, from the facts the story generator recorded
    (labels["facts"]["job"] and ["gender"], and "friend_job"/"friend_gender" when the story tells the
    friend's job): one count per person. This reads labels, so it is for checking the audit, never for
    filtering. People with a job outside `jobs` or an unknown gender are counted in `skipped`."""
    jobs = list(jobs)
    truth = BiasAudit(counts={job: Counter(female=0, male=0) for job in jobs}, window="truth")
    for doc in check_documents(docs, "true_job_gender"):
        for job, gender in _people(doc.labels.get("facts")):
            job, gender = str(job).lower(), GENDER_VALUES.get(str(gender).lower())
            if job in truth.counts and gender:
                truth.counts[job][gender] += 1
                truth.mentions[job] += 1
            else:
                truth.skipped += 1
    return truth


def job_gender(text: str) -> tuple[str, str] | None:
    """The main job of a text and the gender the text gives it, as the audit reads them (never the labels).

    The main job is the one with the most gender words near it; None when the text names no job or
    its gender words are even.
    """
    table = bias_audit([Document("_", "books", text)]).table()
    if not table:
        return None
    job, (female, male, _) = max(table.items(), key=lambda item: item[1][0] + item[1][1])
    if female == male:
        return None
    return job, "female" if female > male else "male"
