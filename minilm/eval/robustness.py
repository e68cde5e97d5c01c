"""Robustness: CheckList's three kinds of test on the story questions, and HELM's worst-case accuracy.

A benchmark score says how often a model is right on the documents it was given; it does not say
whether the model would still be right if a reader wrote the same question a little differently.
CheckList (Ribeiro et al., 2020) tests a model the way software is tested, with three kinds of test:

- **minimum functionality** (MFT): small templated cases that any model that does the task must get
  right: "Once upon a time, there was a baker named Mia. ... What was Mia's job?" (`templated`);
- **invariance** (INV): a change that must not change the answer, applied to a real question: typos,
  lower case, extra spaces, contractions, other names, an irrelevant sentence (`PERTURBATIONS`); a
  test fails where the model's answer to the changed question differs from its answer to the
  original (right or wrong: CheckList tests consistency, not accuracy);
- **directional expectation** (DIR): a change that must change the answer, here a fact of the
  passage replaced by another of its kind ("Finn was a doctor" -> "Finn was a baker"); a test fails
  where the model still gives the old answer (`changed_fact`).

Each test's failure rate comes with a 95% interval. HELM (Liang et al., 2022) adds the worst case: a
question counts as right only if the model answers it and every perturbed form of it rightly, which is
what a user who writes the same question in their own way can rely on.

The questions are those of the stage's answered story questions (`minilm.eval.tasks.story_questions`),
answered in the model's own words and scored by exact match, as the stage scores them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

from minilm.eval import metrics, tasks
from minilm.finetune.tasks import answer_variants, normalize_answer
from minilm.model.gpt import GPT
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.world import GOOD_FEELINGS, JOB_ACTIONS, JOBS, NAME_SWAPS, NAMES, PLACES, pronouns, with_article

# A question to perturb: {"paragraph", "question", "answers", "group"}; `tasks.answer_doc` renders it.
Question = dict
Perturbation = Callable[[Question, random.Random], "Question | None"]  # None: the change does not apply


def _question(paragraph: str, question: str, answer: str, group: str) -> Question:
    return {"paragraph": paragraph, "question": question, "answers": list(answer_variants(answer)), "group": group}


def story_questions(n_stories: int, fits: tasks.Fits | None = None) -> list[Question]:
    """The answered story questions of the first `n_stories` test stories, as questions to perturb."""
    return [_question(*found) for found in tasks.story_questions(n_stories, fits)]


# ---------------------------------------------------------------------------------------------
# Minimum functionality: templated questions that a reader of the stories answers

TEMPLATES = (  # (passage, question, answer), in the story grammar's words
    ("Once upon a time, there was {a_job} named {hero}. Every morning {he} {action}.", "What was {hero}'s job?", "{a_job}"),
    ("{hero} and {friend} had been friends since they were small.", "Who was {hero}'s friend?", "{friend}"),
    ("One sunny morning, {hero} went to the {place}.", "Where did {hero} go?", "to the {place}"),
    ("It had been a long day, but {hero} felt {feeling}.", "How did {hero} feel at the end?", "{feeling}"),
)


def templated(n: int, seed: int = 0) -> list[Question]:
    """`n` minimum-functionality questions: each template filled with people, jobs, places and feelings drawn
    seeded from the world, in turn."""
    rng = random.Random(seed)
    found = []
    for i in range(n):
        passage, question, answer = TEMPLATES[i % len(TEMPLATES)]
        gender = rng.choice(("female", "male"))
        hero, friend = rng.sample(NAMES[gender], 1)[0], rng.choice(NAMES[rng.choice(("female", "male"))])
        friend = friend if friend != hero else NAME_SWAPS[hero]
        job = rng.choice(JOBS)
        fill = {"hero": hero, "friend": friend, "a_job": with_article(job), "action": rng.choice(JOB_ACTIONS[job]),
                "place": rng.choice(PLACES), "feeling": rng.choice(GOOD_FEELINGS), "he": pronouns(gender)["he"]}
        found.append(_question(passage.format(**fill), question.format(**fill), answer.format(**fill), gender))
    return found


# ---------------------------------------------------------------------------------------------
# Invariance: changes that must not change the answer


def _protected(q: Question) -> set[str]:
    """The words a perturbation leaves alone: the question's and the answers' (a typo in the answer would change it)."""
    return {w.lower() for text in (q["question"], *q["answers"]) for w in re.findall(r"[A-Za-z']+", text)}


def typos(q: Question, rng: random.Random) -> Question | None:
    """Two neighbouring, different letters swapped in about one word in ten of the passage (words of four letters
    or more that neither the question nor the answer uses; the first letter stays), as CheckList's `add_typos`."""
    keep = _protected(q)

    def swappable(word: str) -> list[int]:  # after the first letter, between two different letters
        return [i for i in range(1, len(word) - 1) if word[i] != word[i + 1]]

    words = [m for m in re.finditer(r"[A-Za-z]{4,}", q["paragraph"]) if m.group().lower() not in keep
             and swappable(m.group())]
    if not words:
        return None
    paragraph = q["paragraph"]
    for m in sorted(rng.sample(words, max(1, len(words) // 10)), key=lambda m: m.start(), reverse=True):
        i = m.start() + rng.choice(swappable(m.group()))
        paragraph = paragraph[:i] + paragraph[i + 1] + paragraph[i] + paragraph[i + 2:]
    return {**q, "paragraph": paragraph}


def lower_case(q: Question, rng: random.Random) -> Question | None:
    """The passage and the question in lower case (exact match ignores case, so the answer still counts)."""
    return {**q, "paragraph": q["paragraph"].lower(), "question": q["question"].lower()}


def extra_spaces(q: Question, rng: random.Random) -> Question | None:
    """A second space after about one word in five of the passage."""
    pieces = q["paragraph"].split(" ")
    return {**q, "paragraph": "".join(p + (" " if rng.random() < 0.2 else "") + " " for p in pieces[:-1]) + pieces[-1]}


CONTRACTIONS = (("did not", "didn't"), ("was not", "wasn't"), ("could not", "couldn't"), ("is not", "isn't"),
                ("do not", "don't"), ("it is", "it's"), ("cannot", "can't"), ("I will", "I'll"), ("I am", "I'm"))


def contractions(q: Question, rng: random.Random) -> Question | None:
    """Every expanded form of `CONTRACTIONS` in the passage contracted ("did not" -> "didn't"), or, where there
    is none, every contraction expanded; None where the passage has neither (CheckList's `contractions`)."""
    for forms in (CONTRACTIONS, [(short, long) for long, short in CONTRACTIONS]):
        paragraph = q["paragraph"]
        for long, short in forms:
            paragraph = re.sub(rf"\b{re.escape(long)}\b", short, paragraph)
        if paragraph != q["paragraph"]:
            return {**q, "paragraph": paragraph}
    return None


def other_names(q: Question, rng: random.Random) -> Question | None:
    """Every person's name, in the passage, the question and the answers, replaced by another name of the same
    gender that the passage does not use (CheckList's `change_names`); None where nobody is named. "renamed"
    keeps the names given: when the answer is a name, the same answer is the new name ("Ali" -> "Felix")."""
    text = " ".join((q["paragraph"], q["question"], *q["answers"]))
    named = [name for gender in ("female", "male") for name in NAMES[gender] if re.search(rf"\b{name}\b", text)]
    if not named:
        return None
    swap = {}
    for name in named:
        gender = "female" if name in NAMES["female"] else "male"
        swap[name] = rng.choice([n for n in NAMES[gender] if n not in named and n not in swap.values()])
    pattern = re.compile(r"\b(" + "|".join(named) + r")\b")

    def change(s: str) -> str:
        return pattern.sub(lambda m: swap[m.group()], s)

    return {**q, "paragraph": change(q["paragraph"]), "question": change(q["question"]),
            "answers": [change(a) for a in q["answers"]], "renamed": swap}


IRRELEVANT = ("The sky was grey, and a light wind blew over the roofs.", "Somewhere far away, a train whistled.",
              "The clock on the wall said it was nearly noon.", "A cloud that looked like a fish drifted past.")


def irrelevant_sentence(q: Question, rng: random.Random) -> Question | None:
    """A sentence about nobody in the story added at the end of the passage."""
    return {**q, "paragraph": f"{q['paragraph']} {rng.choice(IRRELEVANT)}"}


PERTURBATIONS: dict[str, Perturbation] = {"typos": typos, "lower case": lower_case, "extra spaces": extra_spaces,
                                          "contractions": contractions, "other names": other_names,
                                          "irrelevant sentence": irrelevant_sentence}


# ---------------------------------------------------------------------------------------------
# Directional expectation: a changed fact must change the answer


def changed_fact(q: Question, others: Sequence[str], rng: random.Random) -> Question | None:
    """The passage with its answer replaced, everywhere it is written, by another answer to the same question
    (`others`, drawn from other stories: "a doctor" -> "a baker"); the changed answer is the new one. None
    where the passage does not write the answer as it is given, or where no other answer fits."""
    old = q["answers"][0]
    written = re.compile(rf"\b{re.escape(old)}\b")
    if not written.search(q["paragraph"]):
        return None
    same_kind = [a for a in others if (a in NAMES["female"]) == (old in NAMES["female"])  # a friend's pronouns stay right
                 and (a in NAMES["male"]) == (old in NAMES["male"])]
    new = [a for a in same_kind if normalize_answer(a) != normalize_answer(old) and not re.search(
        rf"\b{re.escape(a.split()[-1])}\b", q["paragraph"] + " " + q["question"])]
    if not new:
        return None
    answer = rng.choice(new)
    paragraph = q["paragraph"]
    for before, after in zip(answer_variants(old), answer_variants(answer)):  # "to the river", then "The river"
        paragraph = re.sub(rf"\b{re.escape(before)}\b", after, paragraph)
    return {**q, "paragraph": paragraph, "answers": list(answer_variants(answer)), "before": q["answers"]}


def _kind(question: str) -> str:
    """The question without its hero's name: questions of one kind share their answers' pool."""
    return re.sub(r"\b[A-Z][a-z]+\b(?='s| go| feel)", "{hero}", question)


def changed_facts(questions: Sequence[Question], seed: int = 0) -> list[tuple[int, Question]]:
    """(index, changed question) for each question whose fact `changed_fact` can change."""
    rng = random.Random(seed)
    pools: dict[str, list[str]] = {}
    for q in questions:
        pools.setdefault(_kind(q["question"]), []).append(q["answers"][0])
    found = []
    for i, q in enumerate(questions):
        changed = changed_fact(q, sorted(set(pools[_kind(q["question"])])), rng)
        if changed is not None:
            found.append((i, changed))
    return found


# ---------------------------------------------------------------------------------------------
# Running the tests


def answers(model: GPT, tokenizer: Tokenizer, questions: Sequence[Question], chat: bool, max_new_tokens: int = 16,
            batch_size: int = 32) -> tuple[list[str], list[float]]:
    """The model's answers to `questions` and their exact-match scores, asked as the stage asks them."""
    docs = [tasks.answer_doc(q["paragraph"], q["question"], q["answers"], q["group"]) for q in questions]
    r = tasks.run_generation(model, tokenizer, docs, max_new_tokens, batch_size, chat)
    return r["answers"], r["scores"]


def _renamed(answer: str, changed: Question) -> str:
    """The answer with the names that the perturbation changed changed as well: what an invariant model says."""
    swap = changed.get("renamed", {})
    return re.sub(r"\b(" + "|".join(swap) + r")\b", lambda m: swap[m.group()], answer) if swap else answer


def _rate(failures: list[float]) -> dict:
    return {"failure_rate": metrics.mean(failures), "stderr": metrics.mean_stderr(failures), "n": len(failures)}


def _example(before: Question, after: Question, said_before: str, said_after: str) -> dict:
    return {"before": tasks.answer_doc(before["paragraph"], before["question"], before["answers"], "")["chat"],
            "after": tasks.answer_doc(after["paragraph"], after["question"], after["answers"], "")["chat"],
            "answer_before": said_before, "answer_after": said_after}


def run_checklist(model: GPT, tokenizer: Tokenizer, questions: Sequence[Question], n_templated: int, chat: bool,
                  seed: int = 0, fits: tasks.Fits | None = None, max_new_tokens: int = 16, batch_size: int = 32,
                  n_examples: int = 3) -> dict:
    """Every test on one model: the exact match on the original questions, each test's failure rate (with its
    standard error, the number of questions it applied to, the exact match under it, and a few failures), and
    the worst-case exact match over the original and its invariance perturbations (HELM)."""
    rng = random.Random(seed)
    said, right = answers(model, tokenizer, questions, chat, max_new_tokens, batch_size)
    worst = list(right)
    result = {"original": {"exact_match": metrics.mean(right), "stderr": metrics.mean_stderr(right), "n": len(right)},
              "tests": {}}

    mft = templated(n_templated, seed)
    mft_said, mft_right = answers(model, tokenizer, mft, chat, max_new_tokens, batch_size)
    result["tests"]["templated questions"] = {"kind": "MFT", **_rate([1 - r for r in mft_right]),
                                              "exact_match": metrics.mean(mft_right), "examples": [
        _example(q, q, "", s) for q, s, r in zip(mft, mft_said, mft_right) if not r][:n_examples]}

    def usable(changed: Question | None) -> bool:
        return changed is not None and (fits is None or fits(tasks.answer_doc(
            changed["paragraph"], changed["question"], changed["answers"], "")["prompt"] + " " + changed["answers"][0]))

    for name, perturb in PERTURBATIONS.items():
        pairs = [(i, changed) for i, q in enumerate(questions) if usable(changed := perturb(q, rng))]
        if not pairs:
            continue
        after_said, after_right = answers(model, tokenizer, [c for _, c in pairs], chat, max_new_tokens, batch_size)
        failed = [float(normalize_answer(a) != normalize_answer(_renamed(said[i], c))) for (i, c), a in
                  zip(pairs, after_said)]
        for (i, _), r in zip(pairs, after_right):
            worst[i] = min(worst[i], r)
        result["tests"][name] = {"kind": "INV", **_rate(failed), "exact_match": metrics.mean(after_right),
                                 "examples": [_example(questions[i], c, said[i], a) for (i, c), a, f in
                                              zip(pairs, after_said, failed) if f][:n_examples]}

    pairs = [(i, c) for i, c in changed_facts(questions, seed) if usable(c)]
    if pairs:
        after_said, after_right = answers(model, tokenizer, [c for _, c in pairs], chat, max_new_tokens, batch_size)
        failed = [metrics.exact_match_score(a, c["before"]) for (_, c), a in zip(pairs, after_said)]
        result["tests"]["changed fact"] = {"kind": "DIR", **_rate(failed), "exact_match": metrics.mean(after_right),
                                           "examples": [_example(questions[i], c, said[i], a) for (i, c), a, f in
                                                        zip(pairs, after_said, failed) if f][:n_examples]}
    result["worst_case"] = {"exact_match": metrics.mean(worst), "stderr": metrics.mean_stderr(worst), "n": len(worst)}
    return result
