"""Benchmarks from the story world, on held-out stories, and running them through the harness.

A task is a list of documents (plain dicts, so that they can be written as JSON lines and read by
lm-evaluation-harness as well) and a kind:

- **multiple choice** (`{"context", "choices", "gold"}`): one log-likelihood request per choice,
  `(context, " " + choice)` (lm-eval's default target delimiter is a space); scored by acc and
  acc_norm.
- **perplexity** (`{"text"}`): one rolling log-likelihood per text; scored by bits per byte, byte
  and word perplexity, pooled over the texts.
- **generation** (`{"prompt", "answers"}`): the greedy answer up to the end of the line, scored by
  exact match after normalisation against any of the answers.

The cloze task asks which object fits where a story mentions its hero's object for the second
time: "Finn had a black umbrella that he loved very much. ... Finn opened his black ___". The
answer is in the story, so a model that reads its context does better than one that only knows
which objects are common; the three wrong choices are other objects of the world.

Perplexity per domain reads the data stage's validation documents (stories, web pages, technical
documents, code), which no model trained on: bits per byte shows what the model learned of each.
Perplexity per language reads held-out test stories told in English and, the same stories, in
Spanish (`language_docs`): bits per byte on each shows what the Spanish share of pretraining bought.

The story questions ask what stage 6's reading family asks ("What was Finn's job?"), after the
paragraph that tells it, in plain text that a base model can read: as multiple choice (the wrong
choices are the answers to the same question in other stories) and as generation.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from minilm.eval import harness, metrics
from minilm.finetune.answers import chat_answers
from minilm.finetune.tasks import COMMON_NGRAM_DOCUMENTS, answer_variants, evidence, ngrams
from minilm.model.gpt import GPT
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.world import OBJECTS, split_stories

TARGET_DELIMITER = " "


Fits = Callable[[str], bool]  # whether a prompt fits the models' context (documents that do not are left out)


def cloze_docs(n_stories: int, seed: int = 0, n_choices: int = 4, fits: Fits | None = None) -> list[dict]:
    """Multiple-choice documents from the first `n_stories` test stories whose object is named twice:
    the story from the paragraph of the first naming up to the second, the object's noun among
    `n_choices` nouns, the gold index."""
    rng = random.Random(seed)
    docs = []
    for text, facts in split_stories("test", n_stories):
        noun = next(o for o in sorted(OBJECTS, key=len, reverse=True) if facts["object"].endswith(o))
        mentions = [m.start() for m in re.finditer(rf"\b{re.escape(noun)}\b", text)]
        if len(mentions) < 2:
            continue
        context = text[text.rfind("\n\n", 0, mentions[0]) + 1 : mentions[1]].strip()
        if fits is not None and not fits(context):
            continue
        choices = rng.sample([o for o in OBJECTS if o != noun], n_choices - 1)
        gold = rng.randrange(n_choices)
        choices.insert(gold, noun)
        docs.append({"context": context, "choices": choices, "gold": gold})
    return docs


# the questions that most stories answer (the others are about rarer events)
QUESTIONS = ("What was {hero}'s job?", "How did {hero} feel at the end?", "Where did {hero} go?", "Who was {hero}'s friend?")


def _names(text: str, word: str) -> bool:
    """Whether `text` has `word` as a whole word: a wrong choice the prompt names could be argued for."""
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


def _question_prompt(paragraph: str, question: str) -> str:
    return f"{paragraph}\n\nQuestion: {question}\nAnswer:"


def story_questions(n_stories: int, fits: Fits | None = None) -> list[tuple[str, str, str, str]]:
    """(paragraph, question, answer, the hero's gender) for each of `QUESTIONS` that a paragraph of the first
    `n_stories` test stories answers (`minilm.finetune.tasks.evidence`), and whose prompt `fits`."""
    found = []
    for text, facts in split_stories("test", n_stories):
        for qa in facts["qa"]:
            if qa["question"] not in {q.format(hero=facts["hero"]) for q in QUESTIONS}:
                continue
            where = evidence(text, qa["question"], qa["answer"])
            paragraph = None if where is None else text.split("\n\n")[where]
            if paragraph and (fits is None or fits(_question_prompt(paragraph, qa["question"]) + " " + qa["answer"])):
                found.append((paragraph, qa["question"], qa["answer"], facts["gender"]))
    return found


def question_docs(n_stories: int, seed: int = 0, n_choices: int = 4, fits: Fits | None = None) -> list[dict]:
    """Multiple-choice story questions: the paragraph, the question, and its answer among answers to the same
    question in other stories; "group" is the hero's gender, for the gap between the groups."""
    rng = random.Random(seed)
    found = story_questions(n_stories, fits)
    kind = {q: next(i for i, t in enumerate(QUESTIONS) if re.fullmatch(re.escape(t).replace(r"\{hero\}", r"\w+"), q))
            for _, q, _, _ in found}
    pools = [sorted({a for _, q, a, _ in found if kind[q] == i}) for i in range(len(QUESTIONS))]
    docs = []
    for paragraph, question, answer, group in found:
        prompt = _question_prompt(paragraph, question)
        others = [a for a in pools[kind[question]] if a != answer and not _names(prompt, a.split()[-1])]
        if len(others) < n_choices - 1:
            continue
        choices = rng.sample(others, n_choices - 1)
        gold = rng.randrange(n_choices)
        choices.insert(gold, answer)
        docs.append({"context": prompt, "choices": choices, "gold": gold, "group": group})
    return docs


def answer_doc(paragraph: str, question: str, answers: Sequence[str], group: str) -> dict:
    """A question to be answered in the model's own words and scored by exact match against any of `answers`:
    the plain prompt for a base model, and the user's message for a chat model ("chat", as stage 6's reading
    family asks it)."""
    return {"prompt": _question_prompt(paragraph, question), "chat": f"{paragraph}\n\nQuestion: {question}",
            "answers": list(answers), "group": group}


def answer_docs(n_stories: int, fits: Fits | None = None) -> list[dict]:
    """The same story questions, to be answered in the model's own words (`answer_doc`)."""
    return [answer_doc(paragraph, question, answer_variants(answer), group)
            for paragraph, question, answer, group in story_questions(n_stories, fits)]


def domain_docs(validation: str | Path, max_chars: int = 100_000) -> dict[str, list[dict]]:
    """Perplexity documents per domain from the data stage's `val.jsonl`: each domain's documents in file
    order, until `max_chars` characters (so that the stories do not take all the time)."""
    by_domain: dict[str, list[dict]] = {}
    size: dict[str, int] = {}
    with open(validation, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                doc = json.loads(line)
                domain, text = doc["domain"], doc["text"]
            except (json.JSONDecodeError, KeyError) as error:
                raise ValueError(f"{validation}, line {number}: not a document with a domain and a text ({error}); "
                                 "rebuild the data stage (python -m minilm data --force)") from None
            if text and size.get(domain, 0) < max_chars:
                by_domain.setdefault(domain, []).append({"text": text})
                size[domain] = size.get(domain, 0) + len(text)
    return by_domain


LANGUAGE_NAMES = ("English", "Spanish")  # the languages the story world is told in (world.LANGUAGES), in order


def language_docs(n_stories: int) -> dict[str, list[dict]]:
    """Perplexity documents of the first `n_stories` held-out test stories, told in each of `LANGUAGE_NAMES`.

    The stories are parallel (`split_stories(..., spanish=True)`: the Spanish text translates the English one
    sentence for sentence), so the two languages' documents hold the same content, and a difference in their
    bits per byte is what the model knows of each language, not of different stories."""
    if not isinstance(n_stories, int) or n_stories < 1:
        raise ValueError(f"n_stories must be a positive integer, got {n_stories!r}")
    stories = split_stories("test", n_stories, spanish=True)
    return {"English": [{"text": text} for text, _ in stories],
            "Spanish": [{"text": facts["spanish"]} for _, facts in stories]}


def run_languages(model: GPT, tokenizer: Tokenizer, docs: dict[str, list[dict]], batch_size: int = 32,
                  bootstrap_iterations: int = 1000) -> dict:
    """Bits per byte on the same stories in each language (`language_docs`), each with its bootstrap standard
    error and its numbers of stories and bytes, and the Spanish minus the English figure ("gap").

    Per byte, so that the two languages are compared on the same footing whatever the tokenizer makes of them
    (Spanish is longer, and a tokenizer trained mostly on English cuts it into more tokens). The stories being
    parallel, the gap's standard error comes from a paired bootstrap: resampling whole story pairs keeps each
    story's difficulty in both languages, so the interval is that of the difference alone."""
    if set(docs) != set(LANGUAGE_NAMES) or len(docs["English"]) != len(docs["Spanish"]):
        raise ValueError(f"run_languages needs as many {' and '.join(LANGUAGE_NAMES)} documents, the same stories in "
                         f"each (language_docs makes them), got {({k: len(v) for k, v in docs.items()})}")
    scores, lls = {}, {}
    for language in LANGUAGE_NAMES:
        r = run_perplexity(model, tokenizer, docs[language], batch_size, bootstrap_iterations)
        lls[language] = r["loglikelihoods"]
        scores[language] = {"bits_per_byte": r["bits_per_byte"], "stderr": r["bits_per_byte_stderr"], "n": r["n"],
                            "bytes": sum(metrics.byte_count(doc["text"]) for doc in docs[language])}
    pairs = [(en_ll, en["text"], es_ll, es["text"])
             for en_ll, en, es_ll, es in zip(lls["English"], docs["English"], lls["Spanish"], docs["Spanish"])]

    def gap(sample: list) -> float:
        return (metrics.bits_per_byte([p[2] for p in sample], [p[3] for p in sample])
                - metrics.bits_per_byte([p[0] for p in sample], [p[1] for p in sample]))

    scores["gap"] = {"bits_per_byte": gap(pairs), "stderr": metrics.bootstrap_stderr(gap, pairs, bootstrap_iterations)}
    return scores


def prompt_text(doc: dict) -> str:
    """What a document shows the model: its context, prompt or text."""
    return doc.get("context") or doc.get("prompt") or doc.get("text", "")


def contamination(prompts: Sequence[str], train_texts: Iterable[str], n: int = 13,
                  max_documents: int | None = COMMON_NGRAM_DOCUMENTS) -> list[int]:
    """For each prompt, how many of its word n-grams occur in the training texts (0 = clean).

    GPT-3's scan, as lm-eval's decontamination runs it and stage 6 does for its chat examples
    (`minilm.finetune.tasks.contamination`): an n-gram found in more than `max_documents` training
    documents is common phrasing (here the fixed sentences of the story templates), not a leak, and
    is not counted. Only the prompts' n-grams are counted in the training texts, so the memory is
    the prompts', however large the corpus."""
    wanted = [ngrams(prompt, n) for prompt in prompts]
    documents: Counter = Counter()
    every = set().union(*wanted)
    for text in train_texts:
        documents.update(ngrams(text, n) & every)
    limit = max_documents or float("inf")
    return [sum(1 for gram in grams if 0 < documents[gram] <= limit) for grams in wanted]


def _encodable(text: str) -> bool:
    """Whether `text` is valid Unicode, which UTF-8 (and so a byte-level tokenizer) can encode: no lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_task(path: str | Path, kind: str) -> list[dict]:
    """The documents of a task file, one JSON object per line (as `minilm.eval.lm_eval_model.write_task` writes
    them), checked (`check_docs`): a line that is not JSON, a cut-off last line among them, is named with its
    number and the fix, and so is a document that the task's kind cannot score."""
    docs = []
    with open(path, encoding="utf-8", errors="surrogateescape") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError as error:
                cut = "" if line.endswith("\n") else " (the file ends mid-line: it was cut off while being written)"
                raise ValueError(f"{path}, line {number}: not a JSON document{cut}: {error}; write the file again "
                                 "with write_task, or delete that line") from None
    try:
        check_docs(docs, kind)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return docs


def check_docs(docs: Sequence[dict], kind: str) -> None:
    """Raise ValueError naming the first document that the task's kind cannot score."""
    fields = {"multiple_choice": ("context", "choices", "gold"), "perplexity": ("text",),
              "generation": ("prompt", "answers")}
    if kind not in fields:
        raise ValueError(f"unknown task kind {kind!r}; the kinds are {sorted(fields)}")
    if not docs:
        raise ValueError(f"the {kind} task has no documents")
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise ValueError(f"document {i} of the {kind} task is not a JSON object with fields, got {doc!r:.60}")
        missing = [f for f in fields[kind] if f not in doc]
        if missing:
            raise ValueError(f"document {i} of the {kind} task has no {', '.join(missing)} field (it has "
                             f"{', '.join(sorted(doc)) or 'none'})")
        for field in fields[kind]:
            for text in doc[field] if isinstance(doc[field], list) else [doc[field]]:
                if isinstance(text, str) and not _encodable(text):
                    raise ValueError(f"document {i}'s {field} holds text that no tokenizer can encode (a lone "
                                     f"surrogate, {text.encode('utf-8', 'backslashreplace')[:60]!r}, as a JSON "
                                     "\\ud800 escape without its pair makes): fix or drop it")
        if kind == "perplexity" and not doc["text"]:
            raise ValueError(f"document {i} of the perplexity task has an empty text: drop it")
        if kind == "generation" and (not doc["answers"] or any(not a for a in doc["answers"])):
            raise ValueError(f"document {i} of the generation task has an empty answer: every answer must be text")
        if kind == "multiple_choice":
            choices = doc["choices"]
            if len(choices) < 2 or any(not c for c in choices):
                raise ValueError(f"document {i} needs two or more non-empty choices, got {choices!r}")
            if len(set(choices)) != len(choices):
                raise ValueError(f"document {i} has duplicate choices {choices!r}: the gold one would be ambiguous")
            if not isinstance(doc["gold"], int) or not 0 <= doc["gold"] < len(choices):
                raise ValueError(f"document {i}'s gold must be an index into its {len(choices)} choices, "
                                 f"got {doc['gold']!r}")


def run_multiple_choice(model: GPT, tokenizer: Tokenizer, docs: Sequence[dict], batch_size: int = 32) -> dict:
    """acc and acc_norm with their standard errors, and each document's log-likelihoods."""
    check_docs(docs, "multiple_choice")
    requests = [(doc["context"], TARGET_DELIMITER + choice) for doc in docs for choice in doc["choices"]]
    scores = iter(harness.loglikelihood(model, tokenizer, requests, batch_size))
    per_doc = [[next(scores)[0] for _ in doc["choices"]] for doc in docs]
    accs = [metrics.acc(lls, doc["gold"]) for lls, doc in zip(per_doc, docs)]
    norms = [metrics.acc_norm(lls, doc["choices"], doc["gold"]) for lls, doc in zip(per_doc, docs)]
    return {"acc": metrics.mean(accs), "acc_stderr": metrics.mean_stderr(accs), "acc_norm": metrics.mean(norms),
            "acc_norm_stderr": metrics.mean_stderr(norms), "loglikelihoods": per_doc, "n": len(docs), "scores": accs}


def run_perplexity(model: GPT, tokenizer: Tokenizer, docs: Sequence[dict], batch_size: int = 32,
                   bootstrap_iterations: int = 1000) -> dict:
    """Bits per byte (with a bootstrap standard error over documents), byte and word perplexity, and
    each document's log-likelihood."""
    check_docs(docs, "perplexity")
    texts = [doc["text"] for doc in docs]
    lls = harness.loglikelihood_rolling(model, tokenizer, texts, batch_size)
    pairs = list(zip(lls, texts))

    def pooled_bits_per_byte(sample: list) -> float:
        return metrics.bits_per_byte([ll for ll, _ in sample], [t for _, t in sample])

    return {"bits_per_byte": metrics.bits_per_byte(lls, texts),
            "bits_per_byte_stderr": metrics.bootstrap_stderr(pooled_bits_per_byte, pairs, bootstrap_iterations),
            "byte_perplexity": metrics.byte_perplexity(lls, texts),
            "word_perplexity": metrics.word_perplexity(lls, texts), "loglikelihoods": lls, "n": len(docs)}


def run_generation(model: GPT, tokenizer: Tokenizer, docs: Sequence[dict], max_new_tokens: int = 16,
                   batch_size: int = 32, chat: bool = False) -> dict:
    """Exact match of the greedy answers with its standard error, and the answers: a base model continues the
    plain prompt up to the end of the line; a chat model (`chat`) answers the user's message ("chat") in the
    chat format, as stage 6 asks it."""
    check_docs(docs, "generation")
    if chat:
        conversations = [[{"role": "user", "content": doc["chat"]}] for doc in docs]
        answers = chat_answers(model, tokenizer, conversations, max_new_tokens, batch_size)
    else:
        answers = harness.generate_until(model, tokenizer, [(doc["prompt"], ["\n"]) for doc in docs], max_new_tokens,
                                         batch_size)
    scores = [metrics.exact_match_score(a, doc["answers"]) for a, doc in zip(answers, docs)]
    return {"exact_match": metrics.mean(scores), "exact_match_stderr": metrics.mean_stderr(scores),
            "answers": answers, "n": len(docs), "scores": scores}
