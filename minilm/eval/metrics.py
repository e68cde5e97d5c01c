"""The metrics of a benchmark, as lm-evaluation-harness defines them, with their standard errors.

- `acc`: the choice with the highest log-likelihood is the gold one.
- `acc_norm`: the same after dividing each log-likelihood by the choice's length in characters,
  so that a long choice is not penalised for having more tokens to pay for. The two disagree when
  a long right answer loses to a short wrong one on the sum but wins per character.
- exact match: the generated answer equals a reference after normalisation
  (`minilm.finetune.tasks.normalize_answer`: case, punctuation, articles, spaces).
- perplexity and bits per byte from rolling log-likelihoods, pooled over the documents (the sum
  of log-likelihoods over the sum of bytes or words, not a mean of per-document ratios): bits per
  byte does not depend on the tokenizer, so models with different vocabularies compare.

Standard errors: a mean of 0/1 scores gets the analytic one, the sample standard deviation over
the square root of n (lm-eval's `mean_stderr`); a pooled ratio gets a bootstrap (`bootstrap_stderr`).
A 95% interval is about two standard errors either side.
"""

from __future__ import annotations

import math
import random
import re
import statistics
from collections.abc import Callable, Sequence

from minilm.finetune.tasks import exact_match


def choice_index(loglikelihoods: Sequence[float], choices: Sequence[str] | None = None) -> int:
    """The chosen answer: the highest log-likelihood (per character of its choice when `choices` is
    given, as acc_norm does); the first on ties, as numpy's argmax."""
    scores = list(loglikelihoods) if choices is None else [ll / len(c) for ll, c in zip(loglikelihoods, choices)]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def acc(loglikelihoods: Sequence[float], gold: int) -> float:
    """1.0 when the most likely choice is the gold one."""
    return float(choice_index(loglikelihoods) == gold)


def acc_norm(loglikelihoods: Sequence[float], choices: Sequence[str], gold: int) -> float:
    """1.0 when the choice most likely per character is the gold one."""
    return float(choice_index(loglikelihoods, choices) == gold)


def exact_match_score(prediction: str, answers: Sequence[str] | str) -> float:
    """1.0 when the prediction equals an answer after normalisation."""
    return float(exact_match(prediction, answers))


def word_count(text: str) -> int:
    """Words as lm-eval counts them for word perplexity: the pieces between runs of whitespace."""
    return len(re.split(r"\s+", text))


def byte_count(text: str) -> int:
    """The text's length in UTF-8 bytes."""
    return len(text.encode("utf-8"))


def bits_per_byte(loglikelihoods: Sequence[float], texts: Sequence[str]) -> float:
    """Bits the model needs per byte of the texts: -sum(log-likelihood) / sum(bytes) / ln 2."""
    return -sum(loglikelihoods) / sum(byte_count(t) for t in texts) / math.log(2)


def byte_perplexity(loglikelihoods: Sequence[float], texts: Sequence[str]) -> float:
    """exp(-sum(log-likelihood) / sum(bytes)): 2 ** bits_per_byte."""
    return math.exp(-sum(loglikelihoods) / sum(byte_count(t) for t in texts))


def word_perplexity(loglikelihoods: Sequence[float], texts: Sequence[str]) -> float:
    """exp(-sum(log-likelihood) / sum(words))."""
    return math.exp(-sum(loglikelihoods) / sum(word_count(t) for t in texts))


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("the mean of no values is undefined: the task has no documents")
    return sum(values) / len(values)


def mean_stderr(values: Sequence[float]) -> float:
    """The standard error of the mean: sample standard deviation (n - 1) over sqrt(n); 0 for one value."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def bootstrap_stderr(statistic: Callable[[list], float], items: Sequence, iterations: int = 1000,
                     seed: int = 0) -> float:
    """The standard deviation of `statistic` over resamples of `items` drawn with replacement: the
    standard error of a statistic that has no formula for one (a pooled ratio, a perplexity)."""
    if len(items) < 2:
        return 0.0
    rng = random.Random(seed)
    return statistics.stdev(statistic(rng.choices(items, k=len(items))) for _ in range(iterations))


def group_gap(scores: Sequence[float], groups: Sequence[str], first: str, second: str) -> dict:
    """The mean score of each group and the gap first - second, with its standard error (the two groups'
    standard errors of the mean, added in quadrature: independent samples)."""
    a = [s for s, g in zip(scores, groups) if g == first]
    b = [s for s, g in zip(scores, groups) if g == second]
    if not a or not b:
        raise ValueError(f"group_gap needs documents of both groups, got {len(a)} {first!r} and {len(b)} {second!r}")
    return {first: mean(a), second: mean(b), "gap": mean(a) - mean(b),
            "gap_stderr": math.sqrt(mean_stderr(a) ** 2 + mean_stderr(b) ** 2), "n": {first: len(a), second: len(b)}}


def interval(value: float, stderr: float) -> tuple[float, float]:
    """The normal 95% interval: value -/+ 1.96 standard errors."""
    return value - 1.96 * stderr, value + 1.96 * stderr
