"""Checkers for the exercises of notebook 08 (evaluation).

Each checker draws fresh inputs (from a new seed every run, named in a failure), runs the learner's
function and the package's own (`minilm.eval`), and passes or fails on the first input where they
differ by more than the checker's tolerance.
"""

from __future__ import annotations

import copy
import math
import random

from minilm.eval import human
from minilm.exercises import _short, call_learner, checker, failure, passed

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
    """Exercise (Bradley-Terry ratings): the maximum-likelihood ratings of a list of votes, on the Elo scale."""
    title = "Exercise (Bradley-Terry ratings from votes)"
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
