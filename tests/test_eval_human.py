"""Human evaluation (minilm.eval.human): the votes file keeps every vote through a crash and names a bad line, a
round resumes where it stopped, Bradley-Terry gives Chatbot Arena's numbers (scikit-learn's logistic regression)
and recovers strengths it did not see, online Elo depends on the order of the votes, kappa is scikit-learn's,
position bias is found where it was planted and only there, and the widget records what its buttons say. Last,
the checker of the Bradley-Terry exercise passes right fits and fails wrong ones."""

from __future__ import annotations

import functools
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score

import minilm.files
from minilm.eval import human
from minilm.exercises import evaluation as checks

from exercise_checks import assert_fails, nudged, table_tests, tolerance_tests

TRUE = {"base": 900.0, "sft": 1000.0, "dpo": 1100.0, "ppo": 1250.0}  # Bradley-Terry ratings the simulations draw from


def vote(prompt, model_a, model_b, winner, rater="ada", **more) -> dict:
    return {"prompt": prompt, "model_a": model_a, "model_b": model_b, "winner": winner, "rater": rater, **more}


def random_votes(seed: int, count: int, strengths=None, tie=0.15, bad=0.1) -> list[dict]:
    """`count` votes drawn as Bradley-Terry says from `strengths`, with ties and "both bad" at the given rates."""
    strengths = strengths or TRUE
    rng = random.Random(seed)
    votes = []
    for index in range(count):
        left, right = rng.sample(list(strengths), 2)
        draw = rng.random()
        if draw < tie:
            winner = "tie"
        elif draw < tie + bad:
            winner = "both bad"
        else:
            winner = "A" if rng.random() < 1 / (1 + 10 ** ((strengths[right] - strengths[left]) / 400)) else "B"
        votes.append(vote(index, left, right, winner))
    return votes


def arena_ratings(votes: list[dict], C: float = np.inf) -> dict[str, float]:
    """Chatbot Arena's compute_mle_elo (its 2023 notebook): each vote written twice, a tie once won and once lost,
    a logistic regression without intercept on +log(10) / -log(10); ratings 400 * coef + 1000."""
    models = list(dict.fromkeys(name for v in votes for name in (v["model_a"], v["model_b"])))
    column = {name: i for i, name in enumerate(models)}
    doubled = votes + votes
    X = np.zeros((len(doubled), len(models)))
    X[np.arange(len(doubled)), [column[v["model_a"]] for v in doubled]] = math.log(10)
    X[np.arange(len(doubled)), [column[v["model_b"]] for v in doubled]] = -math.log(10)
    Y = np.array([v["winner"] == "A" for v in doubled], dtype=float)
    Y[: len(votes)] += [v["winner"] in ("tie", "both bad") for v in votes]  # a tie: won in the first copy only
    fitted = LogisticRegression(fit_intercept=False, C=C, tol=1e-8, max_iter=10_000).fit(X, Y)
    return dict(zip(models, 400 * fitted.coef_[0] + 1000))


def gap(first: dict[str, float], second: dict[str, float]) -> float:
    assert first.keys() == second.keys()
    return max(abs(first[m] - second[m]) for m in first)


# --- Bradley-Terry -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed, count", [(0, 400), (1, 60), (2, 1500)])
def test_bradley_terry_is_arenas_logistic_regression(seed, count):
    votes = random_votes(seed, count)
    assert {"tie", "both bad"} <= {v["winner"] for v in votes}
    assert gap(human.bradley_terry(votes), arena_ratings(votes)) < 1e-3  # measured: 1.4e-6 at most


@pytest.mark.parametrize("l2", [0.05, 1.0])
def test_the_l2_prior_is_sklearns_penalty_with_c_one_over_twice_l2(l2):
    votes = random_votes(3, 80) + [vote(99, "ppo", "base", "A"), vote(98, "ppo", "sft", "B")]
    unbeaten = [v for v in votes if "ppo" not in (v["model_a"], v["model_b"])] + [vote(1, "ppo", "dpo", "A")] * 3
    for data in (votes, unbeaten):
        assert gap(human.bradley_terry(data, l2=l2), arena_ratings(data, C=1 / (2 * l2))) < 1e-3


def test_two_models_have_the_closed_form_rating_and_a_tie_is_half_a_win():
    wins = [vote(i, "sft", "base", "A") for i in range(3)] + [vote(3, "base", "sft", "A")]  # 3 to 1, sides mixed
    ratings = human.bradley_terry(wins)
    assert ratings["sft"] == pytest.approx(1000 + 200 * math.log10(3), abs=1e-9)
    assert ratings["base"] == pytest.approx(1000 - 200 * math.log10(3), abs=1e-9)
    assert list(ratings) == ["sft", "base"]  # best first
    for outcome in ("tie", "both bad"):  # 3.5 to 1.5
        ratings = human.bradley_terry([*wins, vote(4, "base", "sft", outcome)])
        assert ratings["sft"] - ratings["base"] == pytest.approx(400 * math.log10(3.5 / 1.5), abs=1e-9)
    one_each = [vote(0, "sft", "base", "A"), vote(1, "sft", "base", "B"), *wins]
    two_ties = [vote(0, "sft", "base", "tie"), vote(1, "base", "sft", "tie"), *wins]
    assert gap(human.bradley_terry(one_each), human.bradley_terry(two_ties)) < 1e-9


def test_both_bad_is_a_tie_and_the_order_of_votes_does_not_matter():
    votes = random_votes(4, 300)
    as_ties = [{**v, "winner": "tie"} if v["winner"] == "both bad" else v for v in votes]
    ratings = human.bradley_terry(votes)
    assert gap(ratings, human.bradley_terry(as_ties)) < 1e-9
    assert gap(ratings, human.bradley_terry(votes[::-1])) < 1e-9
    assert sum(ratings.values()) / len(ratings) == pytest.approx(human.INITIAL, abs=1e-9)


def test_an_anchor_pins_one_model_and_keeps_the_gaps():
    votes = random_votes(5, 300)
    centred, pinned = human.bradley_terry(votes), human.bradley_terry(votes, anchor=("sft", 1114.0))
    assert pinned["sft"] == pytest.approx(1114.0, abs=1e-9)
    shift = pinned["sft"] - centred["sft"]
    assert all(pinned[m] == pytest.approx(centred[m] + shift, abs=1e-9) for m in TRUE)
    with pytest.raises(ValueError, match="anchor 'gpt' is not one of the models"):
        human.bradley_terry(votes, anchor=("gpt", 1000.0))


def test_bradley_terry_recovers_the_strengths_the_votes_were_drawn_from():
    plan = human.plan_round(range(500), list(TRUE), seed=0)  # 3000 matchups, each pair 500 times
    rate = human.simulated_rater(lambda prompt, response: TRUE[response] * math.log(10) / 400, noise=1.0, seed=1)
    votes = human.simulate_round(plan, lambda prompt, model: model, rate)
    centre = sum(TRUE.values()) / len(TRUE)  # the votes know only gaps: centre the fit where the truth is
    assert gap(human.bradley_terry(votes, initial=centre), TRUE) < 40  # measured: 7.6
    bootstrap = human.bootstrap_ratings(votes, iterations=200, seed=0, initial=centre)
    for model, truth in TRUE.items():
        assert bootstrap[model]["lower"] < truth < bootstrap[model]["upper"], (model, bootstrap[model])
        assert bootstrap[model]["upper"] - bootstrap[model]["lower"] < 60  # measured: 25 to 35
    assert list(bootstrap) == ["ppo", "dpo", "sft", "base"]


def test_the_bootstrap_is_seeded_and_its_interval_holds_the_estimate():
    votes = random_votes(6, 200)
    first, again = human.bootstrap_ratings(votes, 100, seed=3), human.bootstrap_ratings(votes, 100, seed=3)
    assert first == again and first != human.bootstrap_ratings(votes, 100, seed=4)
    for model, rating in human.bradley_terry(votes).items():
        assert first[model]["lower"] < rating < first[model]["upper"]


def test_the_bootstrap_fits_resamples_of_the_votes_and_takes_their_percentiles():
    votes = random_votes(10, 120)
    rng = np.random.default_rng(7)  # the draws bootstrap_ratings makes with seed 7: one resample of the votes each
    fits = [human.bradley_terry([votes[i] for i in rng.integers(len(votes), size=len(votes))]) for _ in range(40)]
    samples = {model: [fit[model] for fit in fits] for model in TRUE}
    for model, result in human.bootstrap_ratings(votes, 40, seed=7).items():
        lower, median, upper = np.percentile(samples[model], [2.5, 50, 97.5])
        assert result == pytest.approx({"median": median, "lower": lower, "upper": upper}, abs=1e-6)


def test_no_rating_exists_when_a_model_won_or_lost_everything_and_the_error_says_which():
    votes = random_votes(7, 60, strengths={"base": 900.0, "sft": 1000.0, "dpo": 1100.0}, bad=0.0)
    unbeaten = votes + [vote(100 + i, "ppo", m, "A") for i, m in enumerate(("base", "sft", "dpo"))]
    with pytest.raises(ValueError, match=r"\['ppo'\] never lost a vote against .* l2=1.0"):
        human.bradley_terry(unbeaten)
    winless = votes + [vote(100, "ppo", "sft", "B"), vote(101, "dpo", "ppo", "A")]
    with pytest.raises(ValueError, match=r"\['ppo'\] never won a vote"):
        human.bradley_terry(winless)
    apart = votes + [vote(100, "ppo", "grpo", "A"), vote(101, "grpo", "ppo", "tie")]
    with pytest.raises(ValueError, match=r"no vote compares \['ppo', 'grpo'\] with"):
        human.bradley_terry(apart)
    with pytest.raises(ValueError, match=r"no vote compares \['grpo'\] with another model"):
        human.bradley_terry(votes, models=["base", "sft", "dpo", "grpo"])
    with pytest.raises(ValueError, match=r"resample \d+ of 50: .*pass l2=1.0"):
        human.bootstrap_ratings(votes[:8], 50)
    ratings = human.bradley_terry(unbeaten, l2=1.0)
    assert next(iter(ratings)) == "ppo" and all(math.isfinite(r) for r in ratings.values())
    assert human.bootstrap_ratings(votes[:8], 50, l2=1.0).keys() == {"base", "sft", "dpo"}


def test_a_model_given_but_never_voted_is_rated_at_the_mean_with_a_prior():
    ratings = human.bradley_terry(random_votes(8, 100), models=[*TRUE, "grpo"], l2=1.0)
    assert ratings["grpo"] == pytest.approx(1000.0, abs=1e-9) and len(ratings) == 5


# --- Elo ---------------------------------------------------------------------------------------------------------


def test_elo_follows_arenas_update():
    ratings = human.elo([vote(0, "sft", "base", "A")])
    assert ratings == {"sft": 1002.0, "base": 998.0}  # k = 4: each moves 4 * (1 - 0.5)
    ratings = human.elo([vote(0, "sft", "base", "A"), vote(1, "base", "sft", "tie")])  # base now on the left
    expected_base = 1 / (1 + 10 ** ((1002 - 998) / 400))
    assert ratings["base"] == pytest.approx(998 + 4 * (0.5 - expected_base), abs=1e-12)
    assert ratings["sft"] == pytest.approx(1002 + 4 * (0.5 - (1 - expected_base)), abs=1e-12)
    assert human.elo([vote(0, "sft", "base", "B")], k=32) == {"base": 1016.0, "sft": 984.0}


def test_elo_depends_on_the_order_of_the_votes_and_bradley_terry_does_not():
    votes = random_votes(9, 300)
    forward, backward = human.elo(votes), human.elo(votes[::-1])
    assert gap(forward, backward) > 1.0
    assert gap(human.bradley_terry(votes), human.bradley_terry(votes[::-1])) < 1e-9
    spread = human.elo_order_spread(votes, shuffles=30, seed=0)
    assert spread.keys() == set(TRUE) and all(high - low > 1.0 for low, high in spread.values())
    assert spread == human.elo_order_spread(votes, shuffles=30, seed=0)
    narrow = human.elo_order_spread(votes, shuffles=30, seed=0, k=1.0)
    assert all(narrow[m][1] - narrow[m][0] < spread[m][1] - spread[m][0] for m in TRUE)


# --- the raters: agreement and position bias ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_kappa_is_sklearns(seed):
    rng = random.Random(seed)
    labels = list(human.OUTCOMES)
    first = [rng.choice(labels) for _ in range(60)]
    second = [a if rng.random() < 0.5 else rng.choice(labels[: 2 + seed % 3]) for a in first]
    assert human.cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second), abs=1e-12)


def test_kappa_is_one_for_identical_labels_zero_for_independent_ones_and_refuses_what_is_undefined():
    assert human.cohen_kappa(["A", "B", "tie", "A"], ["A", "B", "tie", "A"]) == 1.0
    assert human.cohen_kappa(["A", "A", "B", "B"], ["A", "B", "A", "B"]) == 0.0  # the agreement chance gives
    assert human.cohen_kappa(["A", "B"], ["B", "A"]) == -1.0
    for first, second, problem in ((["A"], ["A", "B"], "1 and 2 items"), ([], [], "no items"),
                                   (["tie"] * 3, ["tie"] * 3, "label 'tie'")):
        with pytest.raises(ValueError, match=problem):
            human.cohen_kappa(first, second)


def score_of(prompt, response: str) -> float:
    return TRUE[response] * math.log(10) / 400


def test_agreement_compares_which_model_won_whatever_side_each_rater_saw_it_on():
    models, prompts = list(TRUE), range(50)
    plan_1, plan_2 = human.plan_round(prompts, models, seed=0), human.plan_round(prompts, models, seed=1)
    sides_1 = {(m.prompt, *sorted(m[1:])): m.model_a for m in plan_1}
    swapped = sum(sides_1[(m.prompt, *sorted(m[1:]))] != m.model_a for m in plan_2)
    assert 100 < swapped < 200  # about half the matchups: comparing sides would find disagreement there

    def votes(plan, rater, **options):
        return human.simulate_round(plan, lambda p, m: m, human.simulated_rater(score_of, **options), rater)

    ada, bo = votes(plan_1, "ada", noise=0.0), votes(plan_2, "bo", noise=0.0)
    assert human.votes_by_rater(bo + ada) == {"bo": bo, "ada": ada}
    exact = human.agreement(ada, bo)
    assert exact == {"matchups": 300, "agreement": 1.0, "kappa": 1.0}
    same = human.agreement(votes(plan_1, "ada", seed=5), votes(plan_1, "bo", seed=5))
    assert same["kappa"] == 1.0
    noisy = human.agreement(votes(plan_1, "ada", seed=5, tie_margin=0.3), votes(plan_2, "bo", seed=6, tie_margin=0.3))
    assert 0.0 < noisy["kappa"] < 0.6 and noisy["agreement"] < 0.7  # measured: kappa 0.34, agreement 0.50
    pairs = {(v["prompt"], *sorted((v["model_a"], v["model_b"]))): human.model_outcome(v)
             for v in votes(plan_2, "bo", seed=6, tie_margin=0.3)}
    first = votes(plan_1, "ada", seed=5, tie_margin=0.3)
    labels = [(human.model_outcome(v), pairs[(v["prompt"], *sorted((v["model_a"], v["model_b"])))]) for v in first]
    assert noisy["kappa"] == pytest.approx(human.cohen_kappa(*zip(*labels)), abs=1e-12)
    with pytest.raises(ValueError, match="share no matchup"):
        human.agreement(votes(plan_1[:10], "ada"), votes(plan_1[10:20], "bo"))


def test_agreement_pairs_repeated_votes_in_order():
    first = [vote(0, "sft", "base", "A"), vote(0, "sft", "base", "B"), vote(1, "sft", "base", "tie")]
    second = [vote(0, "base", "sft", "B"), vote(0, "base", "sft", "B"), vote(2, "sft", "base", "tie")]
    assert human.agreement(first, second) == {"matchups": 2, "agreement": 0.5, "kappa": 0.0}


@pytest.mark.parametrize("left_bias, biased", [(0.0, False), (0.8, True)])
def test_position_bias_is_found_where_planted_and_only_there(left_bias, biased):
    plan = human.plan_round(range(200), list(TRUE), seed=2, both_orders=True)  # 2400 matchups
    rate = human.simulated_rater(score_of, tie_margin=0.2, left_bias=left_bias, seed=3)
    result = human.position_bias(human.simulate_round(plan, lambda p, m: m, rate))
    low, high = result["interval"]
    assert result["matchups"] == 1200 and 1500 < result["decided"] < 2400
    assert low < result["left_share"] < high and high - low < 0.06
    if biased:
        assert low > 0.5 and result["left_share"] > 0.6  # measured: 0.67
    else:
        assert low < 0.5 < high  # measured: 0.51


def test_position_bias_counts_each_order_equally_and_needs_both():
    # a rater who always prefers sft, which sits left in 5 votes and right in 1: each order counts once, so 0.5
    votes = [vote(0, "sft", "base", "A")] * 5 + [vote(0, "base", "sft", "B")]
    assert human.position_bias(votes)["left_share"] == 0.5  # the share of all decided votes would be 5/6
    # two votes of each order; the tie is one of them, but not a decided vote: left won 1 of 3
    votes += [vote(1, "sft", "base", "tie"), vote(1, "sft", "base", "A"), vote(1, "sft", "base", "A"),
              vote(1, "base", "sft", "B"), vote(1, "base", "sft", "B")]
    result = human.position_bias(votes)
    assert result["left_share"] == 2 / 5 and result["decided"] == 5 and result["matchups"] == 2
    assert result["stderr"] == pytest.approx(math.sqrt(0.3 / 5)) and result["interval"] == pytest.approx(
        (0.4 - 1.96 * math.sqrt(0.3 / 5), 0.4 + 1.96 * math.sqrt(0.3 / 5)))
    with pytest.raises(ValueError, match="both_orders=True"):
        human.position_bias([vote(i, "sft", "base", "A") for i in range(5)])


# --- simulated raters --------------------------------------------------------------------------------------------


def test_a_simulated_rater_votes_as_bradley_terry_says():
    rate = human.simulated_rater(score_of, noise=1.0, seed=0)
    share = sum(rate(0, "dpo", "sft") == "A" for _ in range(4000)) / 4000
    assert share == pytest.approx(1 / (1 + 10 ** (-100 / 400)), abs=0.025)  # 0.640; measured 0.630


def test_a_simulated_rater_ties_says_both_bad_and_leans_as_told():
    by_length = human.simulated_rater(lambda prompt, response: float(len(response)), noise=0.0, tie_margin=1.0,
                                      bad_below=3.0)
    assert [by_length(0, "longer", "long"), by_length(0, "long", "longer"), by_length(0, "long", "longs")] == [
        "A", "B", "tie"]
    assert by_length(0, "ab", "a") == "both bad" and by_length(0, "abc", "a") == "A"
    leaning = human.simulated_rater(lambda prompt, response: 0.0, noise=0.0, left_bias=0.5)
    assert leaning(0, "x", "y") == "A"
    with pytest.raises(ValueError, match="noise and tie_margin must be 0 or more"):
        human.simulated_rater(score_of, noise=-1.0)
    with pytest.raises(ValueError, match="winner 'C'"):
        human.simulate_round([human.Matchup(0, "sft", "base")], lambda p, m: m, lambda p, a, b: "C")


# --- the votes file ----------------------------------------------------------------------------------------------


def test_votes_round_trip_through_the_file_one_json_line_each(tmp_path):
    path = tmp_path / "votes" / "ada.jsonl"
    assert human.read_votes(path) == []
    votes = [vote(0, "sft", "base", "A"), vote("story-7", "dpo", "sft", "both bad", rater="Zoë"),
             vote(2, "base", "dpo", "tie", note="line\u2028separator")]
    for v in votes:
        assert human.append_vote(path, v, models=list(TRUE)) == v
    assert human.read_votes(path, models=list(TRUE)) == votes
    lines = path.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 4 and lines[-1] == "" and [json.loads(line) for line in lines[:3]] == votes
    assert list(json.loads(lines[0])) == list(human.FIELDS)
    path.write_text(lines[0], encoding="utf-8")  # saved by hand without the last newline
    human.append_vote(path, votes[1])
    assert human.read_votes(path) == votes[:2]


def test_a_crash_while_appending_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "votes.jsonl"
    human.append_vote(path, vote(0, "sft", "base", "A"))
    human.append_vote(path, vote(1, "sft", "base", "B"))
    before = path.read_bytes()

    def crash(source, target):
        raise OSError("the disk is full")

    monkeypatch.setattr(minilm.files.os, "replace", crash)
    with pytest.raises(OSError, match="disk is full"):
        human.append_vote(path, vote(2, "sft", "base", "tie"))
    monkeypatch.undo()
    assert path.read_bytes() == before and len(human.read_votes(path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["votes.jsonl"]  # no temporary file left behind


GOOD = [vote(0, "sft", "base", "A"), vote(1, "dpo", "sft", "tie")]


def write_lines(path: Path, lines: list[str]) -> bytes:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path.read_bytes()


@pytest.mark.parametrize("bad, problem", [
    ('{"prompt": 2, "model_a": "sft", "model_b": "ba',
     r"line 3 is cut off or not JSON .* the 2 votes before it are intact\. Delete line 3"),
    (json.dumps({"prompt": 2, "model_a": "sft", "model_b": "base", "rater": "ada"}), r"line 3 has no winner"),
    (json.dumps(vote(2, "sft", "base", "A is better")), r"line 3 has winner 'A is better', which is not an outcome"),
    (json.dumps(vote(2, "sft", "sfd", "A")), r"line 3 names model_b 'sfd', which is not one of the models"),
    (json.dumps(vote(2, "sft", "sft", "A")), r"line 3 compares 'sft' with itself"),
    (json.dumps(vote([2], "sft", "base", "A")), r"line 3 has prompt \[2\]: a prompt is an id"),
    ("[1, 2]", r"line 3 is a list, not a vote"),
])
def test_every_bad_line_is_named_with_its_fix_and_the_file_is_left_alone(tmp_path, bad, problem):
    path = tmp_path / "votes.jsonl"
    before = write_lines(path, [json.dumps(v) for v in GOOD] + [bad])
    with pytest.raises(ValueError, match=f"votes.jsonl {problem}"):
        human.read_votes(path, models=list(TRUE))
    with pytest.raises(ValueError, match=problem):  # a damaged file is not written further
        human.append_vote(path, vote(3, "sft", "base", "A"), models=list(TRUE))
    assert path.read_bytes() == before


def test_recover_reads_every_vote_but_the_broken_lines_and_warns(tmp_path):
    path = tmp_path / "votes.jsonl"
    before = write_lines(path, [json.dumps(GOOD[0]), "not json", json.dumps(GOOD[1]), '{"prompt": 3, "mod'])
    with pytest.raises(ValueError, match="line 2 is cut off or not JSON .* the 1 vote before it is intact"):
        human.read_votes(path)
    with pytest.warns(UserWarning, match=r"skipped line\(s\) 2, 4, .* read 2 votes"):
        assert human.read_votes(path, recover=True) == GOOD
    assert path.read_bytes() == before
    path.write_bytes(before.replace(b"not json", b'{"prompt": 5, "winner": "A"}'))
    with pytest.raises(ValueError, match="line 2 has no model_a, model_b, rater"):  # whole JSON, not a vote: raises
        human.read_votes(path, recover=True)


def test_a_bad_vote_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "votes.jsonl"
    human.append_vote(path, GOOD[0])
    before = path.read_bytes()
    for bad, problem in ((vote(1, "sft", "base", "C"), "the new vote has winner 'C'"),
                         (vote(1, "ppo", "ppo", "A"), "compares 'ppo' with itself"),
                         ({"prompt": 1}, "has no model_a, model_b, winner, rater"),
                         ("A", "is a str, not a vote")):
        with pytest.raises(ValueError, match=problem):
            human.append_vote(path, bad)
    with pytest.raises(ValueError, match="'grpo', which is not one of the models"):
        human.append_vote(path, vote(1, "grpo", "sft", "A"), models=list(TRUE))
    assert path.read_bytes() == before


def test_the_ratings_check_their_votes_too():
    with pytest.raises(ValueError, match="vote 1 has winner 'left'"):
        human.bradley_terry([GOOD[0], vote(1, "sft", "base", "left")])
    with pytest.raises(ValueError, match="vote 0 names model_a 'sft', which is not one of the models"):
        human.bradley_terry(GOOD, models=["base", "dpo"])
    with pytest.raises(ValueError, match="expected a list of votes"):
        human.elo(GOOD[0])
    with pytest.raises(ValueError, match="no votes to rate"):
        human.bradley_terry([])


# --- a round that stops and resumes ------------------------------------------------------------------------------


def test_a_round_is_drawn_from_its_seed_with_every_pair_and_random_sides():
    plan = human.plan_round(range(40), list(TRUE), seed=0)
    assert plan == human.plan_round(range(40), list(TRUE), seed=0) != human.plan_round(range(40), list(TRUE), seed=1)
    assert len(plan) == 240 and all(isinstance(m, human.Matchup) for m in plan)
    assert {(m.prompt, frozenset(m[1:])) for m in plan} == {
        (p, frozenset(pair)) for p in range(40) for pair in [("base", "sft"), ("base", "dpo"), ("base", "ppo"),
                                                             ("sft", "dpo"), ("sft", "ppo"), ("dpo", "ppo")]}
    left_first = sum(list(TRUE).index(m.model_a) < list(TRUE).index(m.model_b) for m in plan)
    assert 90 < left_first < 150  # sides drawn at random, not in the order the models were given
    assert [m.prompt for m in plan] != sorted(m.prompt for m in plan)  # shuffled
    some = human.plan_round(range(40), list(TRUE), pairs_per_prompt=2, seed=0)
    assert len(some) == 80 and len({frozenset(m[1:]) for m in some}) == 6
    both = human.plan_round(range(10), list(TRUE), seed=0, both_orders=True)
    assert len(both) == 120 and {(m.prompt, m.model_b, m.model_a) for m in both} == set(both)


@pytest.mark.parametrize("arguments, problem", [
    ((range(3), ["sft"]), "at least two different models"),
    ((range(3), ["sft", "sft"]), "at least two different models"),
    (([0, 1, 0], ["sft", "base"]), r"prompt ids must be unique, \['0'\] repeat"),
    ((range(3), ["sft", "base", "dpo"], 4), "pairs_per_prompt is 4, but 3 models make 3 pairs"),
])
def test_a_round_refuses_what_it_cannot_plan(arguments, problem):
    with pytest.raises(ValueError, match=problem):
        human.plan_round(*arguments)


def test_a_round_resumes_where_it_stopped(tmp_path):
    path = tmp_path / "votes.jsonl"
    plan = human.plan_round(range(5), list(TRUE), seed=4)
    rate = human.simulated_rater(score_of, seed=0)
    for matchup in plan[:7]:  # stopped after 7 votes
        human.append_vote(path, human.simulate_round([matchup], lambda p, m: m, rate, rater="ada")[0])
    human.append_vote(path, vote(plan[9].prompt, plan[9].model_a, plan[9].model_b, "A", rater="bo"))
    human.append_vote(path, vote(plan[8].prompt, plan[8].model_b, plan[8].model_a, "A"))  # sides swapped: another
    votes = human.read_votes(path)
    assert human.remaining(plan, votes, rater="ada") == plan[7:]  # bo's vote and the swapped one count for nothing
    assert human.remaining(plan, votes) == plan[7:9] + plan[10:]
    twice = [plan[0], plan[1], plan[0]]
    assert human.remaining(twice, votes[:1]) == [plan[1], plan[0]]  # a matchup planned twice needs two votes


# --- the widget --------------------------------------------------------------------------------------------------


@pytest.fixture
def round_texts():
    plan = human.plan_round([0, "q1"], ["sft", "dpo", "base"], seed=3)
    prompts = {0: "Who is Mia?", "q1": "Where did Tom go <quickly>?"}
    responses = {(p, m): f"reply {i} to {p}" for i, (p, m) in enumerate((p, m) for p in prompts
                                                                         for m in ("sft", "dpo", "base"))}
    return plan, prompts, responses


def test_the_widget_records_each_click_and_a_new_widget_resumes(tmp_path, round_texts):
    plan, prompts, responses = round_texts
    path = tmp_path / "votes.jsonl"
    widget = human.RatingWidget(path, plan, prompts, responses, rater="ada")
    first = plan[0]
    assert widget.current == first and widget.progress.value == "1 of 6"
    assert responses[(first.prompt, first.model_a)] in widget.left.value
    assert responses[(first.prompt, first.model_b)] in widget.right.value
    shown = widget.prompt.value + widget.left.value + widget.right.value + widget.progress.value + widget.revealed.value
    assert not any(model in shown for model in ("sft", "dpo", "base"))  # the models stay hidden
    widget.buttons[0].click()  # "A is better"
    widget.vote("tie")
    with pytest.raises(ValueError, match="winner 'C'"):
        widget.vote("C")
    widget._click("C")  # a button's error shows in the widget: a click has no cell output
    assert "Not recorded:" in widget.revealed.value and "winner &#x27;C&#x27;" in widget.revealed.value
    assert human.read_votes(path) == [vote(first.prompt, first.model_a, first.model_b, "A"),
                                      vote(plan[1].prompt, plan[1].model_a, plan[1].model_b, "tie")]
    assert widget.current == plan[2] and widget.progress.value == "3 of 6"
    assert [b.description for b in widget.buttons] == ["A is better", "B is better", "Tie", "Both bad"]
    assert widget.box._model_id == widget._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"]

    resumed = human.RatingWidget(path, plan, prompts, responses, rater="ada")
    assert resumed.current == plan[2] and resumed.progress.value == "3 of 6"
    if plan[2].prompt == "q1":
        assert "&lt;quickly&gt;" in resumed.prompt.value
    assert human.RatingWidget(path, plan, prompts, responses, rater="bo").current == plan[0]  # bo has not voted
    for outcome in ("B", "both bad", "A", "B"):
        resumed.vote(outcome)
    assert resumed.current is None and resumed.progress.value == "all 6 rated"
    assert all(button.disabled for button in resumed.buttons)
    assert f"A was {plan[5].model_a}, B was {plan[5].model_b}" in resumed.revealed.value
    for m, outcome in zip(plan, ("A", "tie", "B", "both bad", "A", "B")):
        assert f"prompt {m.prompt}: A {m.model_a}, B {m.model_b}: {outcome}\n" in resumed.reveal() + "\n"
    assert "Bradley-Terry ratings of 6 votes" in resumed.revealed.value
    with pytest.raises(ValueError, match="the round is over"):
        resumed.vote("A")
    assert len(human.read_votes(path)) == 6


def test_the_widget_reveals_on_demand_and_checks_its_texts_first(tmp_path, round_texts):
    plan, prompts, responses = round_texts
    widget = human.RatingWidget(tmp_path / "votes.jsonl", plan, prompts, responses)
    assert widget.reveal() == "No votes yet."
    widget.vote("A")
    text = widget.reveal()
    assert text.startswith(f"Last matchup: A was {plan[0].model_a}, B was {plan[0].model_b}.")
    assert "weak prior" in text and f"{plan[0].model_a}: " in text  # one vote: no plain maximum yet
    missing = {key: value for key, value in responses.items() if key != (plan[3].prompt, "dpo")}
    with pytest.raises(ValueError, match=rf"missing .*\({plan[3].prompt!r}, 'dpo'\)"):
        human.RatingWidget(tmp_path / "other.jsonl", plan, prompts, missing)


# --- the exercise checker ----------------------------------------------------------------------------------------


def package_fit(votes):
    return human.bradley_terry(votes)


def mm_fit(votes):
    """Hunter's (2004) MM algorithm, written out: gamma_i <- wins_i / sum_j games_ij / (gamma_i + gamma_j)."""
    models = sorted({m for v in votes for m in (v["model_a"], v["model_b"])})
    wins = {m: 0.0 for m in models}
    games: dict[tuple[str, str], float] = {}
    for v in votes:
        a, b = v["model_a"], v["model_b"]
        score = {"A": 1.0, "B": 0.0}.get(v["winner"], 0.5)
        wins[a] += score
        wins[b] += 1 - score
        for key in ((a, b), (b, a)):
            games[key] = games.get(key, 0.0) + 1
    gamma = {m: 1.0 for m in models}
    for _ in range(100_000):
        new = {i: wins[i] / sum(n / (gamma[i] + gamma[j]) for (k, j), n in games.items() if k == i) for i in models}
        centre = math.exp(sum(math.log(g) for g in new.values()) / len(new))
        new = {m: g / centre for m, g in new.items()}
        done = max(abs(math.log(new[m] / gamma[m])) for m in models) < 1e-12
        gamma = new
        if done:
            break
    return {m: 1000 + 400 * math.log10(g) for m, g in gamma.items()}


def arena_fit(votes):
    return arena_ratings(votes)


def win_rate_fit(votes):
    """A plausible shortcut: the share of votes won, on a 400-point scale around 1000."""
    models = sorted({m for v in votes for m in (v["model_a"], v["model_b"])})
    share = {m: [] for m in models}
    for v in votes:
        score = {"A": 1.0, "B": 0.0}.get(v["winner"], 0.5)
        share[v["model_a"]].append(score)
        share[v["model_b"]].append(1 - score)
    return {m: 1000 + 400 * (sum(s) / len(s) - 0.5) for m, s in share.items()}


def ties_dropped(votes):
    return human.bradley_terry([v for v in votes if v["winner"] in ("A", "B")])


def both_bad_dropped(votes):
    return human.bradley_terry([v for v in votes if v["winner"] != "both bad"])


def natural_log(votes):
    return human.bradley_terry(votes, base=math.e)


def first_model_at_1000(votes):
    return human.bradley_terry(votes, anchor=(votes[0]["model_a"], 1000.0))


def names_in_a_list(votes):
    return list(human.bradley_terry(votes).values())


RIGHTS = [package_fit, mm_fit, arena_fit]
WRONGS = [win_rate_fit, ties_dropped, both_bad_dropped, natural_log, first_model_at_1000, names_in_a_list]

test_right_answers_pass, test_wrong_answers_fail_with_input_and_hint, test_unsolved_stub_says_not_solved = table_tests(
    [(checks.check_bradley_terry, RIGHTS, WRONGS)], times=2)

test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = tolerance_tests(
    [(checks.check_bradley_terry, functools.partial(nudged, package_fit), 0.0, checks.BT_ATOL)])


@pytest.mark.parametrize("wrong, hint", [
    (ties_dropped, "count the ties"), (both_bad_dropped, "do not drop it"), (natural_log, "a factor of ln(10)"),
    (first_model_at_1000, "mean rating is 1000"),
    (names_in_a_list, "return a dict of each model's rating, {model: rating} for the models ['base', 'grpo', 'ppo']; got ["),
    (win_rate_fit, "maximise the likelihood"),
])
def test_the_checker_names_the_mistake(wrong, hint):
    assert hint in assert_fails(checks.check_bradley_terry, wrong, seed=1)


def test_the_checkers_rounds_are_small_with_ties_and_both_bad_and_drawn_from_the_seed():
    rounds = list(checks._bt_cases(random.Random(0)))
    assert rounds == list(checks._bt_cases(random.Random(0)))
    assert len(rounds) == 5 and len(rounds[0][0]) == 30
    for votes, want in rounds:
        assert 3 <= len(want) <= 5 and 30 <= len(votes) <= 200
        assert {"tie", "both bad"} <= {v["winner"] for v in votes}


def test_a_simulated_raters_noise_has_mean_zero_so_both_bad_is_judged_on_the_score():
    rate = human.simulated_rater(lambda prompt, response: 0.0, noise=1.0, bad_below=0.0, seed=3)
    outcomes = [rate(0, "left", "right") for _ in range(20_000)]
    # each perception is below 0 with probability P(Gumbel < gamma) = exp(-exp(-gamma)) = 0.570; both: 0.325
    assert abs(outcomes.count("both bad") / len(outcomes) - math.exp(-math.exp(-human.EULER_GAMMA)) ** 2) < 0.01


def test_a_simulated_rater_calls_two_identical_answers_a_tie_whatever_its_noise_and_lean():
    rate = human.simulated_rater(lambda prompt, response: len(response), noise=5.0, left_bias=2.0, seed=4)
    assert {rate(0, "a cook", "a cook") for _ in range(200)} == {"tie"}
    assert {rate(0, "a cook", "a baker") for _ in range(200)} >= {"A", "B"}
    judge = human.simulated_rater(lambda prompt, response: len(response), noise=5.0, bad_below=3, seed=4)
    assert {judge(0, "no", "no") for _ in range(200)} == {"tie", "both bad"}  # perceived once: both bad, or neither
