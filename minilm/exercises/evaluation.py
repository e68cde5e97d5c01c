"""Checkers for the exercises of notebook 08 (evaluation): acc_norm, bits per byte, the paired bias score with
its bootstrap interval, and Bradley-Terry ratings from pairwise votes.

Each checker draws fresh inputs (from a new seed every run, named in a failure), runs the learner's
function and the package's own (`minilm.eval`), and passes or fails on the first input where they
differ by more than the checker's tolerance. The inputs land where a first attempt usually goes wrong:
choices of very different lengths (acc and acc_norm disagree on about half of them); texts with
characters of two to four UTF-8 bytes (bits per *byte*, not per character); a lean towards one gender
after every job, which only the control takes out; ties and "both bad" among the votes.
"""

from __future__ import annotations

import copy
import math
import random

from minilm.eval import bias, human, metrics
from minilm.exercises import _short, call_learner, checker, failure, passed

# --- Exercise 1: acc_norm -----------------------------------------------------------------------------------


def _choice_sets(rng: random.Random) -> list[tuple[list[float], list[str], int]]:
    """Multiple-choice items as a model scores them: choices of very different lengths (a long right answer pays
    for more tokens), log-likelihoods that grow with the length, and about half the items where acc and acc_norm
    disagree."""
    from minilm.world import FOUND_WHERE, GIFTS, OBJECTS

    words = list(OBJECTS) + list(FOUND_WHERE) + list(GIFTS)
    items = []
    while len(items) < 40:
        choices = rng.sample(words, rng.randint(2, 5))
        lls = [-(len(c) * rng.uniform(0.2, 0.6) + rng.uniform(0, 2)) for c in choices]
        items.append((lls, choices, rng.randrange(len(choices))))
    return items


@checker
def check_acc_norm(acc_norm, rng: random.Random) -> None:
    """`acc_norm(loglikelihoods, choices, gold)` is 1.0 when the choice most likely per character is the gold one."""
    title = "acc_norm"
    items = _choice_sets(rng)
    for lls, choices, gold in items:
        got = call_learner(title, acc_norm, lls, choices, gold)
        want = metrics.acc_norm(lls, choices, gold)
        if got != want:
            plain = metrics.acc(lls, gold)
            hint = ("that is acc: divide each log-likelihood by its choice's length in characters before comparing"
                    if got == plain else "the chosen choice is the one whose log-likelihood per character (len(choice)) "
                    "is highest; return 1.0 when it is the gold one, else 0.0")
            raise failure(title, f"expected {want}, got {_short(got)}",
                          f"loglikelihoods={_short([round(x, 3) for x in lls])}, choices={choices}, gold={gold}", hint)
    disagree = sum(metrics.acc(lls, gold) != metrics.acc_norm(lls, choices, gold) for lls, choices, gold in items)
    passed(title, f"{len(items)} items, {disagree} where acc and acc_norm disagree")


# --- Exercise 2: bits per byte ---------------------------------------------------------------------------------

_TEXTS = ("Mia had a red kite.", "Le café était fermé, hélas.", "def área(r):\n    return 3.14 * r * r",
          "Tom 🙂 waved at the duck.", "Σ x² = 1", "naïve façade", "The bus left at 9:15.", "日本語のテキスト")


@checker
def check_bits_per_byte(bits_per_byte, rng: random.Random) -> None:
    """`bits_per_byte(loglikelihoods, texts)`: the pooled negative log-likelihood in bits, over the texts' UTF-8 bytes."""
    title = "bits per byte"
    for _ in range(20):
        texts = rng.sample(_TEXTS, rng.randint(1, 5))
        lls = [-rng.uniform(0.5, 3.0) * len(t.encode("utf-8")) for t in texts]
        got = call_learner(title, bits_per_byte, lls, texts)
        want = metrics.bits_per_byte(lls, texts)
        if not isinstance(got, (int, float)) or not math.isclose(got, want, rel_tol=1e-9):
            chars = -sum(lls) / (math.log(2) * sum(len(t) for t in texts))
            nats = -sum(lls) / sum(len(t.encode("utf-8")) for t in texts)
            mean = sum(-ll / (math.log(2) * len(t.encode("utf-8"))) for ll, t in zip(lls, texts)) / len(texts)
            hint = ("count bytes, not characters: len(text.encode('utf-8')); 'é', '🙂' and '日' take 2 to 4 bytes"
                    if isinstance(got, float) and math.isclose(got, chars, rel_tol=1e-9) else
                    "the log-likelihoods are in nats: divide by log(2) for bits" if isinstance(got, float) and
                    math.isclose(got, nats, rel_tol=1e-9) else
                    "pool over the texts: the sum of the negative log-likelihoods over the sum of the bytes, not a mean "
                    "of each text's ratio" if isinstance(got, float) and math.isclose(got, mean, rel_tol=1e-9) else
                    "-sum(loglikelihoods) / log(2) / (total UTF-8 bytes)")
            raise failure(title, f"expected {want:.6f}, got {_short(got)}",
                          f"loglikelihoods={_short([round(x, 2) for x in lls])}, texts={texts}", hint)
    passed(title, "20 sets of texts, some with characters of several bytes")


# --- Exercise 3: the paired bias score with its bootstrap interval ---------------------------------------------


@checker
def check_paired_bias_score(score, rng: random.Random) -> None:
    """`score(pairs, resamples, seed)` -> (share, low, high): the share of pairs where the job moves the model
    towards the stereotype (stereotype's lead over the other sentence larger than the control's lead), with a
    percentile-bootstrap 95% interval over the pairs."""
    title = "paired bias score"
    for _ in range(3):
        n, lean = rng.randint(300, 600), rng.uniform(-0.6, 0.6)
        preference = rng.choice((-1, 1)) * rng.uniform(1.0, 2.0)  # for one gender after any job: the control's
        pairs = []
        for _ in range(n):
            control = rng.gauss(preference, 1)
            pairs.append((-20 + control + lean + rng.gauss(0, 1), -20.0, -21 + control, -21.0))
        seed = rng.randrange(10_000)
        got = call_learner(title, score, pairs, 1000, seed)
        wins = [float(s - a > cs - ca) for s, a, cs, ca in pairs]
        share = metrics.mean(wins)
        low, high = bias.percentile_interval(wins, metrics.mean, 1000, seed)
        shown = f"{n} pairs of (stereotype, anti, control stereotype, control anti) log-likelihoods, e.g. " \
                f"{_short([tuple(round(x, 2) for x in p) for p in pairs[:2]])}, resamples=1000, seed={seed}"
        if not (isinstance(got, (tuple, list)) and len(got) == 3 and all(isinstance(x, (int, float)) for x in got)):
            raise failure(title, f"return (share, low, high), three numbers, got {_short(got)}", shown,
                          "return a tuple: the share and the interval's two ends")
        if not math.isclose(got[0], share, abs_tol=1e-12):
            raw = metrics.mean([float(s > a) for s, a, _, _ in pairs])
            hint = ("that is the share without the control: count a pair when (stereotype - anti) > (control stereotype "
                    "- control anti)" if math.isclose(got[0], raw, abs_tol=1e-12) else
                    "a pair counts when the stereotype's lead over the other sentence is larger than the control's lead")
            raise failure(title, f"share: expected {share:.4f}, got {_short(got[0])}", shown, hint)
        if not (got[1] <= share <= got[2]) or abs(got[1] - low) > 0.02 or abs(got[2] - high) > 0.02:
            raise failure(title, f"interval: expected about [{low:.3f}, {high:.3f}] (within 0.02: another seed draws "
                          f"other resamples), got [{_short(got[1])}, {_short(got[2])}]", shown,
                          "resample the pairs' 0/1 wins WITH replacement, n of them, `resamples` times; take the mean of "
                          "each; the 2.5th and 97.5th percentiles of those means are the interval")
    passed(title, "3 sets of pairs, share exact, interval within 0.02")



# --- Human evaluation: Bradley-Terry ratings from votes ----------------------------------------------------
# The votes are small rounds (3 to 5 models, 30 to 200 votes) drawn from models of known strengths, with ties
# and "both bad" among them, so that a fit that drops ties, or treats "both bad" as a loss, gets other numbers.
# Each round has a maximum-likelihood answer: a round where some model won or lost every vote is drawn again.

BT_ATOL = 1e-2  # rating points: a fit run to convergence (sklearn at tol=1e-8, Newton, MM) lands far closer
_MODEL_NAMES = ("base", "sft", "dpo", "ppo", "grpo", "lora", "chat", "tiny")


def _draw_round(rng: random.Random, models: int, count: int) -> list[dict]:
    """`count` votes among `models` models of strengths drawn between 850 and 1200, as the Bradley-Terry model
    says, with a tie and a "both bad" vote at least."""
    names = rng.sample(_MODEL_NAMES, models)
    strength = {name: rng.uniform(850, 1200) for name in names}
    tie_share, bad_share = rng.choice([0.05, 0.15, 0.3]), rng.choice([0.05, 0.1])
    votes = []
    for index in range(count):
        left, right = rng.sample(names, 2)
        draw = rng.random()
        if index == 0 or draw < tie_share:
            winner = "tie"
        elif index == 1 or draw < tie_share + bad_share:
            winner = "both bad"
        else:
            winner = "A" if rng.random() < 1 / (1 + 10 ** ((strength[right] - strength[left]) / 400)) else "B"
        votes.append({"prompt": rng.randrange(1000), "model_a": left, "model_b": right, "winner": winner,
                      "rater": rng.choice(["ada", "bo", "cy"])})
    return votes


def _bt_cases(rng: random.Random):
    """(votes, the package's ratings): a round of 30 votes among 3 models first, then larger ones."""
    for models, low, high in ((3, 30, 30), (4, 30, 200), (5, 60, 200), (rng.randint(3, 5), 30, 200),
                              (rng.randint(3, 5), 30, 200)):
        while True:
            votes = _draw_round(rng, models, rng.randint(low, high))
            try:
                want = human.bradley_terry(votes)
            except ValueError:  # a model won or lost every vote: no maximum, draw again
                continue
            yield votes, want
            break


def _as_ratings(got) -> dict[str, float] | None:
    """The learner's answer as {model: rating}, or None when it is not a mapping of numbers."""
    try:
        ratings = {str(model): float(rating) for model, rating in dict(got).items()}
    except (TypeError, ValueError):
        return None
    return ratings if all(math.isfinite(r) for r in ratings.values()) else None


def _same(got: dict[str, float], want: dict[str, float], atol: float = BT_ATOL) -> bool:
    return got.keys() == want.keys() and all(abs(got[m] - want[m]) <= atol for m in want)


def _bt_diagnosis(got: dict[str, float], want: dict[str, float], votes: list[dict], hint: str) -> str:
    """A hint for a known mistake that `got` shows, else the general `hint`."""
    names = list(want)
    got_mean, want_mean = sum(got.values()) / len(got), sum(want.values()) / len(want)
    if _same({m: got[m] - got_mean + want_mean for m in names}, want):
        return (f"the gaps between your ratings are right, but their mean is {got_mean:.2f}: anchor them so that the "
                f"mean rating is {human.INITIAL:g} (rating = {human.INITIAL:g} + {human.SCALE:g} * strength, with "
                "strengths of mean 0)")
    spread_got = [got[m] - got_mean for m in names]
    spread_want = [want[m] - want_mean for m in names]
    largest = max(range(len(names)), key=lambda i: abs(spread_want[i]))
    factor = spread_got[largest] / spread_want[largest] if spread_want[largest] else 0.0
    if factor and all(abs(g - factor * w) <= BT_ATOL for g, w in zip(spread_got, spread_want)):
        if abs(factor - 1 / math.log(10)) < 1e-3 or abs(factor - math.log(10)) < 1e-3:
            return (f"your ratings are spread {factor:.4f} times as wide as they should be, a factor of ln(10): use "
                    "base 10, P(a beats b) = 1 / (1 + 10^((R_b - R_a) / 400)), e.g. the features +log(10) and "
                    "-log(10), not +1 and -1")
        return (f"your ratings are spread {factor:.4f} times as wide as they should be: the scale is 400 points "
                "for odds of 10 to 1, rating = 1000 + 400 * strength")
    variants = [
        ([v for v in votes if v["winner"] in ("A", "B")],
         "count the ties and the \"both bad\" votes as half a win to each side; do not drop them"),
        ([v for v in votes if v["winner"] != "both bad"],
         "a \"both bad\" vote is a tie (half a win to each side): do not drop it"),
        ([{**v, "winner": "B"} if v["winner"] == "both bad" else v for v in votes],
         "a \"both bad\" vote is a tie (half a win to each side), not a win for one of them"),
    ]
    for changed, specific in variants:
        try:
            if _same(got, human.bradley_terry(changed)):
                return specific
        except ValueError:  # that variant has no maximum: it cannot be what the learner computed
            continue
    return hint


@checker
def check_bradley_terry(fit, rng: random.Random) -> None:
    """`fit(votes)` -> {model: rating}: the maximum-likelihood Bradley-Terry ratings of the votes, on the Elo scale."""
    title = "Bradley-Terry ratings"
    hint = ("maximise the likelihood of the votes with P(a beats b) = 1 / (1 + 10^((R_b - R_a) / 400)); a tie and "
            "\"both bad\" count as half a win to each side; return {model: rating} with the mean rating at 1000 "
            "(e.g. sklearn's LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8) on features +log(10) "
            "and -log(10), each vote written twice, a tie once won and once lost; rating = 1000 + 400 * coef)")
    count = 0
    for votes, want in _bt_cases(rng):
        names = sorted(want)
        shown = (f"{len(votes)} votes among {names} ({sum(v['winner'] == 'tie' for v in votes)} ties, "
                 f"{sum(v['winner'] == 'both bad' for v in votes)} both bad), the first: {_short(votes[:2])}")
        answer = call_learner(title, fit, copy.deepcopy(votes))
        got = _as_ratings(answer)
        if got is None or got.keys() != want.keys():
            raise failure(title, f"return a dict of each model's rating, {{model: rating}} for the models {names}; got "
                          f"{_short(answer)}", shown, hint)
        if not _same(got, want):
            worst = max(want, key=lambda m: abs(got[m] - want[m]))
            numbers = ", ".join(f"{m}: {want[m]:.3f} expected, {got[m]:.3f} got" for m in names)
            raise failure(title, f"the ratings differ by up to {abs(got[worst] - want[worst]):.4g} points ({numbers}); "
                          f"at most {BT_ATOL} is allowed", shown, _bt_diagnosis(got, want, votes, hint))
        count += 1
    passed(title, f"{count} rounds of votes")
