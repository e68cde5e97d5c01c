"""Human evaluation: people compare two answers, and the votes become ratings.

Benchmarks score what can be scored by a rule: a choice's log-likelihood, an exact answer. Whether a
reply is *good* (right, clear, polite, no longer than it needs to be) is what people judge, and people
judge best by comparing: "which of these two is better?" is easier to answer, and answered more
consistently, than "how good is this, from 1 to 10?". Chatbot Arena (Zheng et al., 2023; Chiang et
al., 2024) ranks language models from millions of such votes; this module does the same at the scale
of a course, with the same arithmetic, so that its numbers mean what Arena's mean.

**Votes.** A vote is a dict::

    {"prompt": 7, "model_a": "sft", "model_b": "dpo", "winner": "B", "rater": "ada"}

`model_a` is the model whose response was shown on the left (side A), `model_b` the one on the right,
and `winner` says which *side* won: one of `OUTCOMES`, "A", "B", "tie" or "both bad". Sides are
recorded, not a "swapped" flag: the vote says what the rater saw, and which model won follows from
it (`model_outcome`). The prompt is an id (an int or a str) that the caller maps to its text.

**The votes file** holds one vote per line as JSON (JSON lines). `append_vote` adds a vote by writing
the whole file again to a temporary file and renaming it over the old one (`minilm.files.atomic_write`):
a crash, a full disk or a closed laptop leaves either the file before the vote or the file after it,
never half a line. `read_votes` checks every line and names the file and line of anything wrong; it
never rewrites the file, so no vote is lost by reading. One file has one writer at a time (one file
per rater, or one notebook rating at a time): two processes appending at once could each write the
file without the other's vote.

**A rating round** is a list of matchups (`Matchup`: a prompt and the models shown left and right)
drawn by `plan_round` from a seed, so that the same call gives the same round again. The sides are
drawn at random, because raters prefer one side (see position bias below), and the models are
hidden, because raters prefer a name they know. `remaining(plan, votes)` is the part of the round
not yet voted: a round stopped at any point resumes where it stopped. `RatingWidget` shows a round
in JupyterLab.

**From votes to ratings: Bradley-Terry.** Bradley and Terry (1952) model a comparison of models i
and j as a coin whose odds are the ratio of their strengths: P(i beats j) = 1 / (1 + 10^((R_j -
R_i) / 400)) on the Elo scale, where a gap of 400 points is odds of 10 to 1. `bradley_terry` finds
the ratings that make the votes most likely (maximum likelihood). This is a logistic regression
without an intercept, one feature per model, +log(10) for the model on the left and -log(10) for
the one on the right, the label 1 when the left one won: Arena's `compute_mle_elo` fits it with
scikit-learn, and `bradley_terry` gives the same numbers (to 1e-3 points; the tests compare them)
by Newton's method on the table of wins (`win_matrix`), which needs only numpy.

- *Ties* count as half a win to each side. Arena writes each vote twice and makes a tie one win
  and one loss, which is the same likelihood.
- *"Both bad"* is a tie: neither answer was preferred to the other. Arena's "tie (bothbad)" is a
  tie too. It says something about the prompt, or about both models, that a rating of one model
  against another cannot hold.
- *The anchor.* Only differences of ratings have a meaning: adding 50 to every rating changes no
  probability. By default the ratings are centred on 1000 (their mean is 1000, which is what the
  logistic regression gives when it starts from zero); `anchor=("sft", 1000)` pins one model
  instead, as Arena pins a reference model at a fixed rating so that its leaderboards compare.
- *When no rating exists.* If a model won every vote it took part in, a higher rating always makes
  the votes more likely: the maximum is at infinity (Zermelo, 1929; Hunter, 2004). The same
  happens for a model that lost every vote, and for a group of models never compared with the
  rest. With no regularisation (`l2=0`, Arena's setting) `bradley_terry` says which models and
  raises ValueError. `l2 > 0` adds (l2 / 2) * sum(strength^2) to the negative log-likelihood
  (strengths in units of 400 points): a prior that holds the ratings near the mean, finite for
  any votes. It is scikit-learn's L2 penalty with C = 1 / (2 l2) on Arena's doubled rows.
- *Intervals.* `bootstrap_ratings` fits the ratings again on votes drawn with replacement, as
  Arena's `get_bootstrap_result` does, and gives the median and the 2.5th and 97.5th percentiles.

**Elo, online.** The Elo system (chess, and Arena's first leaderboard) updates two ratings after each
game by k * (result - expected). It is cheap and needs no fit, but the same votes in another order
give other ratings: a win counts for more when it comes early, while the ratings are still close.
Models do not change between votes, so the order carries no information: Bradley-Terry, which
reads all votes at once, gives the same ratings in any order. `elo_order_spread` shows how far the
order alone moves Elo's ratings.

**The raters.** Two checks of the votes themselves:

- *Agreement.* Two raters who judge the same matchups should agree more often than chance. Cohen's
  kappa (`cohen_kappa`) is (observed - chance) / (1 - chance), where chance agreement is what two
  raters who vote at random, each with their own rates of each label, would reach: 1 is perfect
  agreement, 0 no better than chance. `agreement` pairs two raters' votes on the same matchups and
  compares which *model* won, since each may have seen the models on different sides.
- *Position bias.* Raters (people and LLM judges alike) prefer the first or the left answer more
  often than its quality explains. `position_bias` measures the share of decided votes that the
  left side won, over matchups shown in both orders (so that the better model sits on the left as
  often as on the right): 0.5 is unbiased, and the 95% interval says whether a share is told apart
  from it. Randomising the sides (`plan_round` does) cancels the bias out of the ratings on average;
  measuring it says how much noise it adds.

**Simulated raters** stand in for people where there are none (the tests, CI): `simulated_rater`
perceives each response's score through Gumbel noise and prefers the response it perceives as
better. The difference of two Gumbel draws is logistic, so a rater whose score is a model's strength
votes exactly as the Bradley-Terry model says, and the tests check that `bradley_terry` recovers
strengths that they chose. With the gold reward (`minilm.rlhf.gold`) as the score, it rates the
world's answers as the world's people would::

    rate = simulated_rater(lambda prompt, response: gold_reward(examples[prompt], response), noise=0.3)
"""

from __future__ import annotations

import html
import itertools
import json
import math
import random
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from minilm.eval.metrics import interval, mean, mean_stderr
from minilm.files import atomic_write

OUTCOMES = ("A", "B", "tie", "both bad")  # "A": the left side won, "B": the right side
FIELDS = ("prompt", "model_a", "model_b", "winner", "rater")  # every vote has these; more fields are kept
SCALE, BASE, INITIAL = 400.0, 10.0, 1000.0  # the Elo scale: 400 points are odds of 10 to 1; ratings centre on 1000
EULER_GAMMA = 0.5772156649015329  # the mean of a standard Gumbel draw
ARENA_K = 4.0  # Chatbot Arena's K for online Elo: small, since it sees many votes
REVEAL_L2 = 1.0  # the prior the widget falls back on, when a few votes leave a model unbeaten


# ---------------------------------------------------------------------------------------------
# 1. Votes, and the file that keeps them


class Matchup(NamedTuple):
    """One comparison to rate: a prompt, and the models whose responses are shown left (A) and right (B)."""

    prompt: int | str
    model_a: str
    model_b: str


def _shown(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_vote(vote: Any, models: Sequence[str] | None = None, where: str = "a vote") -> dict:
    """Return `vote` if it is a valid vote, else raise ValueError naming the problem, `where` it is, and the fix.

    `models`, when given, are the models a vote may name: a name outside them is a typo or a model
    left out of the list, and either way its votes would go to the wrong place."""
    if not isinstance(vote, dict):
        raise ValueError(f"{where} is a {type(vote).__name__}, not a vote: write a vote as a dict with the fields "
                         f"{', '.join(FIELDS)}, e.g. {{'prompt': 0, 'model_a': 'sft', 'model_b': 'dpo', "
                         f"'winner': 'A', 'rater': 'ada'}}")
    missing = [field for field in FIELDS if field not in vote]
    if missing:
        raise ValueError(f"{where} has no {', '.join(missing)} ({_shown(vote)}): every vote needs the fields "
                         f"{', '.join(FIELDS)}")
    prompt = vote["prompt"]
    if isinstance(prompt, bool) or not isinstance(prompt, (int, str)):
        raise ValueError(f"{where} has prompt {prompt!r}: a prompt is an id, an int or a str")
    for field in ("model_a", "model_b", "rater"):
        if not isinstance(vote[field], str) or (field != "rater" and not vote[field]):
            raise ValueError(f"{where} has {field} {vote[field]!r}: it must be a "
                             f"{'name, a non-empty str' if field != 'rater' else 'str'}")
    if vote["winner"] not in OUTCOMES:
        raise ValueError(f"{where} has winner {vote['winner']!r}, which is not an outcome: use one of "
                         f"{', '.join(map(repr, OUTCOMES))} ('A' is the left side, model_a; 'B' the right, model_b)")
    if vote["model_a"] == vote["model_b"]:
        raise ValueError(f"{where} compares {vote['model_a']!r} with itself: a matchup shows two different models; "
                         "drop this vote (it says nothing about either)")
    if models is not None:
        for field in ("model_a", "model_b"):
            if vote[field] not in models:
                raise ValueError(f"{where} names {field} {vote[field]!r}, which is not one of the models "
                                 f"{sorted(models)}: correct the name, or add the model to `models`")
    return vote


def check_votes(votes: Sequence[dict], models: Sequence[str] | None = None) -> list[dict]:
    """Every vote checked (`check_vote`), as a list; a failure names the vote's index."""
    if isinstance(votes, (str, bytes, dict)):
        raise ValueError(f"expected a list of votes, got a {type(votes).__name__}: pass read_votes(path) for a file")
    return [check_vote(vote, models, where=f"vote {index}") for index, vote in enumerate(votes)]


def append_vote(path: str | Path, vote: dict, models: Sequence[str] | None = None) -> dict:
    """Add `vote` as the last line of the votes file at `path` (made if missing), atomically; return the vote.

    The file is read and checked first (a damaged file is reported, not written further), then written
    whole, with the new line, to a temporary file that is renamed over the old one: a crash at any moment
    leaves the old file or the new, never a half-written line. Rewriting the whole file costs time in the
    number of votes, which for votes that people give by hand (thousands, not millions) is nothing."""
    check_vote(vote, models, where="the new vote")
    path = Path(path)
    read_votes(path, models)
    old = path.read_bytes() if path.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    line = json.dumps({**{field: vote[field] for field in FIELDS}, **vote}, ensure_ascii=False) + "\n"
    atomic_write(path, old + line.encode("utf-8"))
    return vote


def read_votes(path: str | Path, models: Sequence[str] | None = None, recover: bool = False) -> list[dict]:
    """The votes in the file at `path`, each checked (`check_vote`); none for a file not made yet.

    A line that is not JSON (cut off by a crash of something other than `append_vote`, or broken by
    hand) raises ValueError naming the file and the line. `recover=True` skips such lines instead,
    with a warning that names them: the votes on every other line are read. Other problems (a missing
    field, an unknown outcome or model) always raise: a line that is whole JSON but not a vote was
    written wrong, and skipping it would hide that. Reading never changes the file."""
    path = Path(path)
    if not path.exists():
        return []
    votes, skipped = [], []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):  # not splitlines: U+2028 may sit in a text
        if not raw.strip():
            continue
        try:
            vote = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            if recover:
                skipped.append(number)
                continue
            raise ValueError(
                f"{path} line {number} is cut off or not JSON ({error}): the {len(votes)} "
                f"vote{'' if len(votes) == 1 else 's'} before it {'is' if len(votes) == 1 else 'are'} intact. "
                f"Delete line {number} from the file (it is one vote at most, written only in part), "
                "or read it with recover=True to skip the lines that are not JSON") from None
        votes.append(check_vote(vote, models, where=f"{path} line {number}"))
    if skipped:
        warnings.warn(f"{path}: skipped line(s) {', '.join(map(str, skipped))}, which are not JSON (cut off or "
                      f"broken); read {len(votes)} votes from the other lines. Delete the skipped lines to silence "
                      "this", stacklevel=2)
    return votes


def model_outcome(vote: dict) -> str:
    """Which model won the vote (its name), or "tie" or "both bad": the outcome whichever side each model was on."""
    return {"A": vote["model_a"], "B": vote["model_b"]}.get(vote["winner"], vote["winner"])


def votes_by_rater(votes: Sequence[dict]) -> dict[str, list[dict]]:
    """The votes grouped by rater, each rater's in their order."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for vote in check_votes(votes):
        grouped[vote["rater"]].append(vote)
    return dict(grouped)


# ---------------------------------------------------------------------------------------------
# 2. A rating round that can stop and resume


def plan_round(prompts: Sequence[int | str], models: Sequence[str], pairs_per_prompt: int | None = None,
               seed: int = 0, both_orders: bool = False) -> list[Matchup]:
    """The matchups of a round, in a shuffled order drawn from `seed` (the same call gives the same round).

    For each prompt: every pair of models, or `pairs_per_prompt` pairs drawn at random; each pair with
    its sides drawn at random. `both_orders=True` also shows each pair with the sides swapped, somewhere
    else in the round: what `position_bias` needs to tell a side's pull from a model's quality."""
    models, prompts = list(models), list(prompts)
    if len(set(models)) != len(models) or len(models) < 2:
        raise ValueError(f"a round needs at least two different models, got {models}")
    if len(set(prompts)) != len(prompts):
        repeated = sorted({str(p) for p, n in Counter(prompts).items() if n > 1})
        raise ValueError(f"prompt ids must be unique, {repeated} repeat: to rate a prompt more often, raise "
                         "pairs_per_prompt or plan a second round")
    pairs = list(itertools.combinations(models, 2))
    if pairs_per_prompt is not None and not 1 <= pairs_per_prompt <= len(pairs):
        raise ValueError(f"pairs_per_prompt is {pairs_per_prompt}, but {len(models)} models make {len(pairs)} pairs: "
                         f"use 1 to {len(pairs)}, or None for every pair")
    rng = random.Random(seed)
    plan = []
    for prompt in prompts:
        for first, second in pairs if pairs_per_prompt is None else rng.sample(pairs, pairs_per_prompt):
            left, right = (first, second) if rng.random() < 0.5 else (second, first)
            plan.append(Matchup(prompt, left, right))
            if both_orders:
                plan.append(Matchup(prompt, right, left))
    rng.shuffle(plan)
    return plan


def remaining(plan: Sequence[Matchup], votes: Sequence[dict], rater: str | None = None) -> list[Matchup]:
    """The matchups of `plan` not voted yet (by `rater`, when given), in the plan's order: where a round resumes.

    A vote counts off one matchup with the same prompt and the same models on the same sides; a matchup
    planned twice needs two votes."""
    done = Counter(Matchup(v["prompt"], v["model_a"], v["model_b"])
                   for v in check_votes(votes) if rater is None or v["rater"] == rater)
    todo = []
    for matchup in map(Matchup._make, plan):
        if done[matchup]:
            done[matchup] -= 1
        else:
            todo.append(matchup)
    return todo


def simulate_round(plan: Sequence[Matchup], respond: Callable[[Any, str], str],
                   rate: Callable[[Any, str, str], str], rater: str = "simulated") -> list[dict]:
    """The votes of `rate(prompt, left response, right response)` on every matchup of `plan`, where
    `respond(prompt, model)` gives a model's response: a round rated by a simulated rater."""
    votes = []
    for prompt, model_a, model_b in plan:
        winner = rate(prompt, respond(prompt, model_a), respond(prompt, model_b))
        vote = {"prompt": prompt, "model_a": model_a, "model_b": model_b, "winner": winner, "rater": rater}
        votes.append(check_vote(vote, where=f"the simulated vote on {Matchup(prompt, model_a, model_b)}"))
    return votes


# ---------------------------------------------------------------------------------------------
# 3. Bradley-Terry ratings


def _model_names(votes: Sequence[dict], models: Sequence[str] | None) -> list[str]:
    if models is not None:
        names = list(models)
        if len(set(names)) != len(names):
            raise ValueError(f"models must not repeat a name, got {names}")
        return names
    return list(dict.fromkeys(name for vote in votes for name in (vote["model_a"], vote["model_b"])))


def _scored(votes: Sequence[dict],
            models: Sequence[str] | None) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The model names, and for each vote: the index of its left model, of its right one, and the left one's score
    (1 a win, 0 a loss, 0.5 a tie or both bad)."""
    votes = check_votes(votes, models)
    names = _model_names(votes, models)
    index = {name: i for i, name in enumerate(names)}
    left = np.array([index[v["model_a"]] for v in votes], dtype=np.int64)
    right = np.array([index[v["model_b"]] for v in votes], dtype=np.int64)
    score = np.array([{"A": 1.0, "B": 0.0}.get(v["winner"], 0.5) for v in votes])
    return names, left, right, score


def _wins(size: int, left: np.ndarray, right: np.ndarray, score: np.ndarray,
          weight: np.ndarray | None = None) -> np.ndarray:
    """The table of wins (see `win_matrix`) of votes given as indices and scores, each vote counted `weight` times."""
    wins = np.zeros((size, size))
    weight = np.ones(len(score)) if weight is None else weight
    np.add.at(wins, (left, right), weight * score)
    np.add.at(wins, (right, left), weight * (1 - score))
    return wins


def win_matrix(votes: Sequence[dict], models: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """The models (`models`, or in their order of first appearance) and the table of wins: wins[i, j] is how many
    votes model i won against model j, a tie or "both bad" counting half to each. All Bradley-Terry needs."""
    names, left, right, score = _scored(votes, models)
    return names, _wins(len(names), left, right, score)


def _check_ratings_exist(names: list[str], wins: np.ndarray) -> None:
    """Raise ValueError, naming the models, unless the Bradley-Terry likelihood has a finite maximum.

    It has one exactly when every model, through a chain of wins, beat every other (Hunter, 2004: the
    graph "i beat j at least once" is strongly connected; a tie is an edge both ways)."""
    games = wins + wins.T
    unvoted = [name for name, count in zip(names, games.sum(1)) if count == 0]
    if unvoted:
        raise ValueError(f"no vote compares {unvoted} with another model: their ratings are undefined. Leave them "
                         "out of `models`, collect votes for them, or pass l2=1.0")
    reach = (wins > 0) | np.eye(len(names), dtype=bool)  # reach[i, j]: a chain of wins leads from i to j
    for k in range(len(names)):
        reach |= reach[:, [k]] & reach[[k], :]
    if reach.all():
        return
    unbeaten = reach[:, np.argmin(reach.sum(0))]  # the models with a chain of wins to the model that has fewest such
    winless = reach[np.argmin(reach.sum(1))]  # the models reached from the model that reaches fewest
    group = unbeaten if unbeaten.sum() <= winless.sum() else winless
    members = [name for name, inside in zip(names, group) if inside]
    others = [name for name, inside in zip(names, group) if not inside]
    between = int(games[np.ix_(group, ~group)].sum())
    if between == 0:
        raise ValueError(f"no vote compares {members} with {others}: the two groups' ratings cannot be set against "
                         "each other. Collect votes between them, or pass l2=1.0")
    won = group is unbeaten
    raise ValueError(f"{members} {'never lost' if won else 'never won'} a vote against {others} ({between} votes, "
                     f"none a tie): the likelihood grows without end as their rating moves {'up' if won else 'down'}, "
                     "so no maximum exists. Pass l2=1.0 (a weak prior that keeps every rating finite), or collect "
                     f"more votes, until they have {'lost' if won else 'won'} (or tied) at least once")


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def fit_strengths(wins: np.ndarray, l2: float = 0.0, base: float = BASE, tol: float = 1e-11,
                  max_steps: int = 200) -> np.ndarray:
    """The strengths w (in units of log-base odds, mean 0) that maximise the Bradley-Terry likelihood of `wins`,
    with P(i beats j) = 1 / (1 + base^(w_j - w_i)), less (l2 / 2) * |w|^2; by Newton's method.

    The negative log-likelihood is convex, so Newton's method, each step halved until it lowers the
    loss, reaches its minimum, in a handful of steps from w = 0. Its Hessian is singular along
    (1, ..., 1) without l2 (adding a constant to every strength changes nothing); solving with
    H + 1 1^T instead gives the same step on the subspace of mean 0, where the gradient lies, and
    keeps w there."""
    c, size = math.log(base), len(wins)
    games = wins + wins.T
    ones = np.ones((size, size))

    def loss(w: np.ndarray) -> float:
        return float(-(wins * _log_sigmoid(c * (w[:, None] - w[None, :]))).sum() + 0.5 * l2 * w @ w)

    w = np.zeros(size)
    current = loss(w)
    for _ in range(max_steps):
        beat = np.exp(_log_sigmoid(c * (w[:, None] - w[None, :])))  # beat[i, j] = P(i beats j)
        gradient = -c * (wins - games * beat).sum(1) + l2 * w
        curvature = c * c * games * beat * (1 - beat)
        hessian = np.diag(curvature.sum(1)) - curvature + l2 * np.eye(size)
        step = np.linalg.solve(hessian + ones, -gradient)
        size_of_step = 1.0
        while True:
            candidate = w + size_of_step * step
            after = loss(candidate)
            if after <= current + 1e-4 * size_of_step * gradient @ step or size_of_step < 1e-10:
                break
            size_of_step /= 2
        w, current = candidate, after
        if np.abs(size_of_step * step).max() < tol:
            return w
    raise RuntimeError(f"Newton's method did not converge in {max_steps} steps (last step "
                       f"{np.abs(size_of_step * step).max():.3g}): the votes are too close to having no maximum; "
                       "pass l2")


def _ratings(names: list[str], strengths: np.ndarray, anchor: tuple[str, float] | None, scale: float,
             initial: float) -> np.ndarray:
    ratings = initial + scale * strengths
    if anchor is not None:
        model, rating = anchor
        if model not in names:
            raise ValueError(f"the anchor {model!r} is not one of the models rated, {names}")
        ratings = ratings + rating - ratings[names.index(model)]
    return ratings


def _best_first(names: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    return {name: float(value) for name, value in sorted(zip(names, values), key=lambda item: (-item[1], item[0]))}


def bradley_terry(votes: Sequence[dict], models: Sequence[str] | None = None, *, l2: float = 0.0,
                  anchor: tuple[str, float] | None = None, scale: float = SCALE, base: float = BASE,
                  initial: float = INITIAL) -> dict[str, float]:
    """The maximum-likelihood Bradley-Terry rating of each model, best first, on the Elo scale (see the module
    docstring): the numbers of Chatbot Arena's `compute_mle_elo`.

    A tie counts half a win to each side, and so does "both bad". The ratings' mean is `initial`, or
    `anchor=(model, rating)` pins one model. `models` fixes which models are rated (every vote must name
    two of them; by default, the models the votes name). With `l2=0` (no regularisation, as Arena), votes
    where some model won or lost everything have no maximum, and ValueError says which; `l2 > 0` adds
    (l2 / 2) * sum(w^2) with w = (rating - mean) / scale, which is finite for any votes."""
    if l2 < 0:
        raise ValueError(f"l2 must be 0 (none) or positive, got {l2}")
    names, wins = win_matrix(votes, models)
    if not names:
        raise ValueError("no votes to rate: collect votes first (read_votes(path) gives a file's)")
    if l2 == 0:
        _check_ratings_exist(names, wins)
    return _best_first(names, _ratings(names, fit_strengths(wins, l2, base), anchor, scale, initial))


def bootstrap_ratings(votes: Sequence[dict], iterations: int = 1000, seed: int = 0,
                      models: Sequence[str] | None = None, *, l2: float = 0.0, anchor: tuple[str, float] | None = None,
                      scale: float = SCALE, base: float = BASE,
                      initial: float = INITIAL) -> dict[str, dict[str, float]]:
    """Each model's Bradley-Terry rating with a 95% interval: {"median", "lower", "upper"}, best median first.

    Arena's `get_bootstrap_result`: fit the ratings again on `iterations` resamples of the votes drawn
    with replacement, and take the 2.5th, 50th and 97.5th percentiles of each model's ratings. A resample
    holds fewer distinct votes than the data, so a model can go unbeaten in one even when it lost some
    votes: with few votes, pass l2 (the same for the point estimate, to compare them)."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    names, left, right, score = _scored(votes, models)
    if not names:
        raise ValueError("no votes to rate: collect votes first (read_votes(path) gives a file's)")
    rng = np.random.default_rng(seed)
    samples = np.empty((iterations, len(names)))
    for row in range(iterations):
        counts = np.bincount(rng.integers(len(score), size=len(score)), minlength=len(score)).astype(float)
        wins = _wins(len(names), left, right, score, counts)
        if l2 == 0:
            try:
                _check_ratings_exist(names, wins)
            except ValueError as error:
                raise ValueError(f"resample {row + 1} of {iterations}: {error}") from None
        samples[row] = _ratings(names, fit_strengths(wins, l2, base), anchor, scale, initial)
    lower, median, upper = np.percentile(samples, [2.5, 50.0, 97.5], axis=0)
    order = _best_first(names, median)
    at = {name: i for i, name in enumerate(names)}
    return {name: {"median": float(median[at[name]]), "lower": float(lower[at[name]]), "upper": float(upper[at[name]])}
            for name in order}


# ---------------------------------------------------------------------------------------------
# 4. Online Elo, and why it depends on the order of the votes


def elo(votes: Sequence[dict], k: float = ARENA_K, scale: float = SCALE, base: float = BASE,
        initial: float = INITIAL) -> dict[str, float]:
    """Ratings by the Elo system, best first: each model starts at `initial`; after each vote, in the order given,
    both models move by k * (result - expected), where a tie or "both bad" is a result of 0.5 (Arena's
    `compute_online_elo`). The same votes in another order give other ratings: see `elo_order_spread`."""
    ratings: dict[str, float] = {}
    for vote in check_votes(votes):
        a, b = vote["model_a"], vote["model_b"]
        rating_a, rating_b = ratings.setdefault(a, initial), ratings.setdefault(b, initial)
        expected_a = 1 / (1 + base ** ((rating_b - rating_a) / scale))
        expected_b = 1 / (1 + base ** ((rating_a - rating_b) / scale))
        result_a = {"A": 1.0, "B": 0.0}.get(vote["winner"], 0.5)
        ratings[a] = rating_a + k * (result_a - expected_a)
        ratings[b] = rating_b + k * (1 - result_a - expected_b)
    return _best_first(list(ratings), list(ratings.values()))


def elo_order_spread(votes: Sequence[dict], shuffles: int = 100, seed: int = 0,
                     **elo_options) -> dict[str, tuple[float, float]]:
    """The lowest and highest Elo rating of each model over `shuffles` random orders of the same votes.

    Every order is the same evidence, so any spread is the method's, not the models': Bradley-Terry
    gives one answer for all of them. The spread shrinks as k does, and the ratings then move slowly."""
    votes = check_votes(votes)
    rng = random.Random(seed)
    seen: dict[str, list[float]] = defaultdict(list)
    for _ in range(shuffles):
        for model, rating in elo(rng.sample(votes, len(votes)), **elo_options).items():
            seen[model].append(rating)
    return {model: (min(ratings), max(ratings)) for model, ratings in seen.items()}


# ---------------------------------------------------------------------------------------------
# 5. The raters: agreement, and position bias


def cohen_kappa(labels_a: Sequence, labels_b: Sequence) -> float:
    """Cohen's kappa of two raters' labels for the same items: (observed - chance) / (1 - chance).

    Observed is the share of items with the same label; chance is the agreement of two raters who drew
    labels at random at the rates each used, sum over labels of p_a(label) * p_b(label). 1 is perfect
    agreement, 0 is chance, below 0 worse than chance. Undefined (ValueError) when both raters gave every
    item one and the same label: then chance agreement is already 1."""
    labels_a, labels_b = list(labels_a), list(labels_b)
    if len(labels_a) != len(labels_b):
        raise ValueError(f"the raters labelled {len(labels_a)} and {len(labels_b)} items: kappa compares the labels of "
                         "the same items, one from each rater")
    if not labels_a:
        raise ValueError("kappa of no items is undefined: pass the two raters' labels of the same items")
    n = len(labels_a)
    agreed = sum(a == b for a, b in zip(labels_a, labels_b))
    counts_a, counts_b = Counter(labels_a), Counter(labels_b)
    chance = sum(counts_a[label] * counts_b[label] for label in counts_a)  # times n^2, in integers: exact
    if chance == n * n:
        raise ValueError(f"both raters gave every item the label {labels_a[0]!r}: agreement by chance is already 1, "
                         "so kappa is undefined. Compare them on items where the labels vary")
    return (agreed * n - chance) / (n * n - chance)


def agreement(votes_1: Sequence[dict], votes_2: Sequence[dict]) -> dict:
    """How two raters' votes on the same matchups agree: {"matchups", "agreement", "kappa"}.

    A matchup is the same prompt with the same two models, on whichever sides each rater saw them; each
    vote becomes the model that won, or "tie" or "both bad" (`model_outcome`), so that "A" with x on the
    left and "B" with x on the right agree. A matchup voted several times pairs the first votes of both
    raters, then the second ones, and so on; matchups that only one rater voted are left out."""
    outcomes: list[dict] = [defaultdict(list), defaultdict(list)]
    for side, votes in zip(outcomes, (votes_1, votes_2)):
        for vote in check_votes(votes):
            side[(vote["prompt"], *sorted((vote["model_a"], vote["model_b"])))].append(model_outcome(vote))
    pairs = [pair for key in outcomes[0] for pair in zip(outcomes[0][key], outcomes[1].get(key, []))]
    if not pairs:
        raise ValueError("the two raters share no matchup (the same prompt and the same two models): give them the "
                         "same round (plan_round with the same seed)")
    first, second = zip(*pairs)
    return {"matchups": len(pairs), "agreement": sum(a == b for a, b in pairs) / len(pairs),
            "kappa": cohen_kappa(first, second)}


def position_bias(votes: Sequence[dict]) -> dict:
    """The share of decided votes ("A" or "B") that the left side won, with its standard error and 95% interval.

    Counted over matchups shown in both orders, the same number of votes from each order (the first ones),
    so that each model sits on the left as often as on the right and a better model's wins cancel out:
    an unbiased rater's share is 0.5 whatever the models. Returns {"left_share", "stderr", "interval",
    "decided", "matchups"}; the interval is the normal one (`metrics.interval`) of a mean of 0/1 scores."""
    orders: dict[tuple, tuple[list, list]] = defaultdict(lambda: ([], []))
    for vote in check_votes(votes):
        first, second = sorted((vote["model_a"], vote["model_b"]))
        orders[(vote["prompt"], first, second)][vote["model_a"] != first].append(vote)
    left_won, matchups = [], 0
    for one_way, other_way in orders.values():
        shown = min(len(one_way), len(other_way))
        matchups += shown > 0
        decided = [v for v in one_way[:shown] + other_way[:shown] if v["winner"] in ("A", "B")]
        left_won += [float(v["winner"] == "A") for v in decided]
    if not left_won:
        raise ValueError(f"no decided vote on a matchup shown in both orders ({matchups} such matchups): plan the "
                         "round with plan_round(..., both_orders=True), so that each model is seen on both sides")
    share, stderr = mean(left_won), mean_stderr(left_won)
    return {"left_share": share, "stderr": stderr, "interval": interval(share, stderr), "decided": len(left_won),
            "matchups": matchups}


# ---------------------------------------------------------------------------------------------
# 6. Simulated raters


def simulated_rater(score: Callable[[Any, str], float], noise: float = 1.0, tie_margin: float = 0.0,
                    bad_below: float | None = None, left_bias: float = 0.0,
                    seed: int = 0) -> Callable[[Any, str, str], str]:
    """A rater, `rate(prompt, left_response, right_response) -> outcome`, that stands in for a person.

    It perceives each response's `score(prompt, response)` plus `noise` times a Gumbel draw less its mean
    (Euler's constant), so that "both bad" is judged on the score itself, not on one the noise raised;
    "both bad" when both perceptions are below `bad_below` (if given); else it compares left - right + `left_bias`:
    "tie" within `tie_margin` of 0, else the side ahead. Since the difference of two Gumbel draws is
    logistic, P("A") = sigmoid((score_left - score_right + left_bias) / noise) when there is no margin
    and no "both bad": with scores in natural-log units (a rating times ln(10) / 400) and noise 1, that
    is the Bradley-Terry model. `left_bias` > 0 is a rater who leans to the left side; noise 0 always
    picks the higher score. Two identical responses are perceived once, as one text: a tie (or "both bad"),
    as a person would call them, where two draws of noise would pick a side at random. Two raters made with
    the same arguments vote alike."""
    if noise < 0 or tie_margin < 0:
        raise ValueError(f"noise and tie_margin must be 0 or more, got noise={noise}, tie_margin={tie_margin}")
    rng = random.Random(seed)

    def gumbel() -> float:
        uniform = (rng.getrandbits(53) + 0.5) / 2**53  # strictly between 0 and 1: both logs are finite
        return -math.log(-math.log(uniform)) - EULER_GAMMA  # mean 0: on average, a score is perceived as it is

    def rate(prompt: Any, left: str, right: str) -> str:
        seen_left = score(prompt, left) + noise * gumbel()
        seen_right = seen_left if right == left else score(prompt, right) + noise * gumbel()
        if bad_below is not None and seen_left < bad_below and seen_right < bad_below:
            return "both bad"
        if right == left:  # the same text twice: a tie, whatever the noise or the lean
            return "tie"
        gap = seen_left - seen_right + left_bias
        if abs(gap) <= tie_margin:
            return "tie"
        return "A" if gap > 0 else "B"

    return rate


# ---------------------------------------------------------------------------------------------
# 7. The widget


class RatingWidget:
    """A rating round in JupyterLab: a prompt, two anonymous responses (A left, B right), four buttons.

    Each click appends the vote to the votes file (`append_vote`: atomic) and shows the next matchup; a
    widget made again on the same file skips what `rater` has voted (`remaining`). `prompts` maps a
    prompt id to its text, `responses` a (prompt id, model) pair to the model's response. The model
    names stay hidden until the round is over, or until `reveal()` (the "Reveal" button), which shows
    which models the last matchup compared and the ratings of the votes so far; revealing part-way
    tells the rater which model writes how, so do it at the end. The buttons call `vote(outcome)`,
    which a test (or a notebook without a browser) can call as well.

        widget = RatingWidget("votes/ada.jsonl", plan_round(prompt_ids, ["sft", "dpo"], seed=0),
                              prompts, responses, rater="ada")
        widget  # the last line of a cell shows it
    """

    LABELS: ClassVar[dict[str, str]] = {"A": "A is better", "B": "B is better", "tie": "Tie", "both bad": "Both bad"}

    def __init__(self, path: str | Path, plan: Sequence[Matchup], prompts: Mapping[Any, str],
                 responses: Mapping[tuple[Any, str], str], rater: str = "me"):
        import ipywidgets as widgets  # here: the rest of the module runs without a notebook

        self.path, self.plan, self.rater = Path(path), [Matchup._make(m) for m in plan], rater
        self.prompts, self.responses = prompts, responses
        missing = [key for m in self.plan for key in ((m.prompt, m.model_a), (m.prompt, m.model_b))
                   if key not in responses]
        missing += [m.prompt for m in self.plan if m.prompt not in prompts]
        if missing:
            raise ValueError(f"the plan needs texts that are missing (found now, not half-way through the round): "
                             f"{_shown(sorted(set(missing), key=str))}; `prompts` maps a prompt id to its text and "
                             "`responses` a (prompt id, model) pair to the model's response")
        self.todo = remaining(self.plan, read_votes(self.path), rater)
        self.last: Matchup | None = None

        self.progress = widgets.Label()
        self.prompt = widgets.HTML()
        self.left, self.right = widgets.HTML(), widgets.HTML()
        self.buttons = [widgets.Button(description=label) for label in self.LABELS.values()]
        for button, outcome in zip(self.buttons, self.LABELS):
            button.on_click(lambda _, outcome=outcome: self._click(outcome))
        self.reveal_button = widgets.Button(description="Reveal")
        self.reveal_button.on_click(lambda _: self.reveal())
        self.revealed = widgets.HTML()
        sides = [widgets.VBox([widgets.HTML(f"<b>{side}</b>"), text], layout=widgets.Layout(width="50%"))
                 for side, text in (("A", self.left), ("B", self.right))]
        self.box = widgets.VBox([self.progress, self.prompt, widgets.HBox(sides),
                                 widgets.HBox([*self.buttons, self.reveal_button]), self.revealed])
        self._show()

    @property
    def current(self) -> Matchup | None:
        """The matchup on screen; None once the round is over."""
        return self.todo[0] if self.todo else None

    def _show(self) -> None:
        matchup, total = self.current, len(self.plan)
        for button in self.buttons:
            button.disabled = matchup is None
        if matchup is None:
            self.progress.value = f"all {total} rated"
            self.prompt.value = self.left.value = self.right.value = ""
            self.reveal()
            return
        self.progress.value = f"{total - len(self.todo) + 1} of {total}"

        def text(value: str) -> str:
            return f"<div style='white-space: pre-wrap'>{html.escape(value)}</div>"

        self.prompt.value = text(self.prompts[matchup.prompt])
        self.left.value = text(self.responses[(matchup.prompt, matchup.model_a)])
        self.right.value = text(self.responses[(matchup.prompt, matchup.model_b)])

    def vote(self, outcome: str) -> dict:
        """Record `outcome` (one of OUTCOMES) for the matchup on screen, and show the next one; return the vote."""
        matchup = self.current
        if matchup is None:
            raise ValueError(f"the round is over (all {len(self.plan)} matchups rated): plan a new round to vote again")
        vote = append_vote(self.path, {"prompt": matchup.prompt, "model_a": matchup.model_a,
                                       "model_b": matchup.model_b, "winner": outcome, "rater": self.rater})
        self.todo.pop(0)
        self.last = matchup
        self._show()
        return vote

    def _click(self, outcome: str) -> None:
        try:
            self.vote(outcome)
        except ValueError as error:  # a click has no cell output to show an error in: show it in the widget
            self.revealed.value = f"<b>Not recorded:</b> {html.escape(str(error))}"

    def reveal(self) -> str:
        """Show (and return) which models the last matchup compared, which models each of the rater's votes
        compared, and the Bradley-Terry ratings of all the file's votes so far."""
        lines = [] if self.last is None else [f"Last matchup: A was {self.last.model_a}, B was {self.last.model_b}."]
        votes = read_votes(self.path)
        if not votes:
            lines.append("No votes yet.")
        else:
            mine = [v for v in votes if v["rater"] == self.rater]
            lines.append(f"Your {len(mine)} votes:")
            lines += [f"  prompt {v['prompt']}: A {v['model_a']}, B {v['model_b']}: {v['winner']}" for v in mine]
            try:
                ratings, note = bradley_terry(votes), ""
            except ValueError:  # a few votes often leave a model unbeaten: no maximum-likelihood rating yet
                ratings = bradley_terry(votes, l2=REVEAL_L2)
                note = f" (with a weak prior, l2={REVEAL_L2}: too few votes for the plain fit)"
            lines.append(f"Bradley-Terry ratings of {len(votes)} votes{note}:")
            lines += [f"  {model}: {rating:.0f}" for model, rating in ratings.items()]
        text = "\n".join(lines)
        self.revealed.value = f"<pre>{html.escape(text)}</pre>"
        return text

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)
