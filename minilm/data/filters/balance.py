"""Balancing: what the model sees, in what proportions.

Two kinds of balance matter before pretraining:

* **The domain mixture.** Sources come in whatever sizes they come in; the mixture decides how many
  bytes of each domain the model trains on. Either give the weights directly, or use *temperature
  sampling* (as multilingual models do for languages): a domain with n bytes gets weight
  proportional to n^(1/T). T = 1 keeps the natural shares, large T flattens them towards uniform.
* **Counterfactual balance.** If nurses in the data are nearly always "she" and pilots "he", the
  model learns that association. Counterfactual data substitution (Maudslay et al. 2019) swaps the
  gender words of just enough documents to even each job out; augmentation (Lu et al. 2018, Zmigrod
  et al. 2019) adds swapped copies instead. Both rewrite text and never read the generator's labels.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from typing import Callable

from minilm.data.documents import Document, Edit, Removal, StepResult
from minilm.world import GENDER_PAIRS

# --- the domain mixture -------------------------------------------------------------------------------


def temperature_weights(sizes: dict[str, float], temperature: float) -> dict[str, float]:
    """Mixture weights proportional to size^(1/temperature), summing to 1.

    >>> temperature_weights({"a": 900, "b": 100}, 1.0)
    {'a': 0.9, 'b': 0.1}
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not sizes or any(size < 0 for size in sizes.values()):
        raise ValueError(f"sizes must be a non-empty mapping of non-negative sizes, got {sizes}")
    powered = {domain: size ** (1.0 / temperature) for domain, size in sizes.items()}
    total = sum(powered.values())
    if total == 0:
        raise ValueError("every domain is empty: there is nothing to mix")
    return {domain: round(value / total, 12) for domain, value in powered.items()}


def domain_bytes(docs: list[Document]) -> dict[str, int]:
    """UTF-8 bytes per domain."""
    sizes: Counter = Counter()
    for doc in docs:
        sizes[doc.domain] += len(doc.text.encode("utf-8"))
    return dict(sizes)


def mix_domains(docs: list[Document], weights: dict[str, float], seed: int, max_repeats: int = 4) -> StepResult:
    """Resample documents so that each domain's share of bytes follows `weights`.

    The total stays the size of the largest domain's budget that the data can fill: a domain above its
    share is downsampled (Removal "mixture:downsample"); one below it is repeated, at most `max_repeats`
    times in all (repeats get ids "<id>#r<k>"), since repeating a small source many times overfits it.
    """
    if abs(sum(weights.values()) - 1) > 1e-6 or any(w < 0 for w in weights.values()):
        raise ValueError(f"mixture weights must be non-negative and sum to 1, got {weights}")
    by_domain: dict[str, list[Document]] = defaultdict(list)
    for doc in docs:
        by_domain[doc.domain].append(doc)
    missing = [d for d, w in weights.items() if w > 0 and not by_domain.get(d)]
    if missing:
        raise ValueError(f"mixture asks for domain(s) {missing} but the data has none; set their weight to 0")
    sizes = domain_bytes(docs)
    # The largest total every domain can fill with at most `max_repeats` passes over its data.
    total = min(sizes[d] * max_repeats / w for d, w in weights.items() if w > 0)
    total = min(total, sum(sizes.values()))
    rng = random.Random(seed)
    kept: list[Document] = []
    removed: list[Removal] = []
    for domain, pool in sorted(by_domain.items()):
        budget = weights.get(domain, 0.0) * total
        order = pool[:]
        rng.shuffle(order)
        taken = 0
        for repeat in range(max_repeats):
            for doc in order:
                if taken >= budget:
                    break
                kept.append(doc if repeat == 0 else doc.replace(id=f"{doc.id}#r{repeat}"))
                taken += len(doc.text.encode("utf-8"))
            if taken >= budget:
                break
        used = {d.id.split("#r")[0] for d in kept if d.domain == domain}
        removed.extend(Removal(doc, "mixture:downsample") for doc in pool if doc.id not in used)
    return StepResult("mixture", kept, removed)


# --- counterfactual balance ---------------------------------------------------------------------------

# The world's gendered word pairs, both ways. "her" is ambiguous (him or his): the word after it decides.
_TO_MALE = {f: m for f, m in GENDER_PAIRS}
_TO_FEMALE = {m: f for f, m in GENDER_PAIRS if f != "hers"}
_TO_FEMALE["his"] = "her"
_TO_FEMALE["him"] = "her"
_WORD = re.compile(r"[A-Za-z]+")
# Words after which "her" is an object ("gave her the ball"), not a possessive ("her ball").
_NOT_A_NOUN_NEXT = {"a", "an", "the", "to", "and", "or", "but", "that", "this", "with", "in", "on", "at", "up",
                    "down", "back", "out", "off", "again", "too", "so", "very", "for", "from", "about", "how", "what",
                    "why", "when", "where", "if", "because", "as", "all", "some", "one", "into", "over", "under"}


def swap_gender(text: str, names: dict[str, str]) -> str:
    """Swap every gendered word and every name in `names` (a mapping both ways) for its counterpart.

    Capitalisation is kept. "her" becomes "his" before a noun and "him" elsewhere; "his" becomes "her".
    """
    tokens = list(_WORD.finditer(text))
    out, last = [], 0
    for i, match in enumerate(tokens):
        word = match.group(0)
        lower = word.lower()
        if word in names:
            new = names[word]
        elif lower == "her":
            following = text[match.end():match.end() + 1]
            next_word = tokens[i + 1].group(0).lower() if i + 1 < len(tokens) else ""
            is_possessive = following == " " and next_word and next_word not in _NOT_A_NOUN_NEXT
            new = "his" if is_possessive else "him"
        elif lower in _TO_MALE:
            new = _TO_MALE[lower]
        elif lower in _TO_FEMALE:
            new = _TO_FEMALE[lower]
        else:
            continue
        if lower == word.lower() and word[0].isupper() and new[0].islower():
            new = new[0].upper() + new[1:]
        out.append(text[last:match.start()])
        out.append(new)
        last = match.end()
    out.append(text[last:])
    return "".join(out)


def swapped_labels(labels: dict, names: dict[str, str]) -> dict:
    """The generator's truth after a gender swap: the story's facts now name the other gender.

    The swap decides nothing from the labels; it only keeps them true, so that later stages
    (questions about stories, bias evaluation) still see the right answers.
    """
    if "facts" not in labels:
        return labels
    flip = {"female": "male", "male": "female"}

    def swap(key: str, value):
        if key.endswith("gender") and value in flip:
            return flip[value]
        if isinstance(value, str):
            return swap_gender(value, names)
        if isinstance(value, list):
            return [swap(key, item) for item in value]
        if isinstance(value, dict):
            return {k: swap(k, v) for k, v in value.items()}
        return value

    return {**labels, "facts": swap("facts", labels["facts"]), "counterfactual": True}


def counterfactual_balance(
    docs: list[Document],
    job_gender: Callable[[str], tuple[str, str] | None],
    names: dict[str, str],
    seed: int,
    method: str = "substitute",
) -> StepResult:
    """Even out each job's gender by swapping the gender of just enough documents.

    `job_gender(text)` reads a document's main job and gender from its text (the bias audit's
    reading, never the labels), or None. For each job with more documents of one gender than the
    other, half the difference is swapped ("substitute": rewritten in place) or all of it copied
    with the gender swapped ("augment": the copies are added). Returns the edits made.
    """
    if method not in ("substitute", "augment", "none"):
        raise ValueError(f"method must be 'substitute', 'augment' or 'none', got {method!r}")
    if method == "none":
        return StepResult("counterfactual", list(docs))
    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for index, doc in enumerate(docs):
        reading = job_gender(doc.text)
        if reading:
            job, gender = reading
            groups[job][gender].append(index)
    rng = random.Random(seed)
    chosen: list[int] = []
    for job in sorted(groups):
        female, male = groups[job]["female"], groups[job]["male"]
        majority = female if len(female) > len(male) else male
        gap = abs(len(female) - len(male))
        count = gap // 2 if method == "substitute" else gap
        chosen.extend(rng.sample(majority, count))
    kept = list(docs)
    edits: list[Edit] = []
    for index in sorted(chosen):
        doc = docs[index]
        swapped = doc.replace(text=swap_gender(doc.text, names), labels=swapped_labels(doc.labels, names))
        if method == "substitute":
            kept[index] = swapped
        else:
            kept.append(swapped.replace(id=f"{doc.id}#cf"))
        edits.append(Edit(doc.id, f"counterfactual:{method}", doc.text[:120], swapped.text[:120]))
    return StepResult("counterfactual", kept, [], edits)
