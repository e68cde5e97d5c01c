"""What the tests of the exercise checkers (tests/test_exercises_*.py) share: a stub, asserts, the three tests of a
table of answers, and the two tests of a checker's tolerance."""

import functools
import math
import sys

import pytest

from minilm.exercises import ExerciseFailed


def stub(*args):
    """A learner's cell not written yet."""
    raise NotImplementedError("Exercise: write your code here")


def assert_passes(check, answer, capsys, times=1):
    """Run `check(answer)` on the inputs of seeds 0 .. times - 1: each must print one pass line and nothing else.

    Fixed seeds keep the tests repeatable; a learner's run draws a new seed each time."""
    for seed in range(times):
        check(answer, seed=seed)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == times and all(line.startswith("✅") and "passed" in line for line in lines), lines


def assert_fails(check, answer, match=None, seed=0):
    """`check(answer)` must raise ExerciseFailed, with a message that `match` searches if given; returns the message."""
    with pytest.raises(ExerciseFailed, match=match) as failure:
        check(answer, seed=seed)
    return str(failure.value)


def assert_not_solved(check):
    """`check` must fail a stub, saying it is not solved yet."""
    assert_fails(check, stub, match="not solved yet")


def table_tests(table, times, names_input=("on input:",)):
    """The three tests of a table of (checker, right answers, wrong answers), for a test module to bind by their names.

    Right answers pass on `times` seeds; each wrong one fails with ❌, a hint and one of `names_input` in the message;
    a stub is not solved yet.
    """
    rows = pytest.mark.parametrize("check, rights, wrongs", table, ids=[row[0].__name__ for row in table])

    @rows
    def test_right_answers_pass(check, rights, wrongs, capsys):
        for right in rights:
            assert_passes(check, right, capsys, times)

    @rows
    def test_wrong_answers_fail_with_input_and_hint(check, rights, wrongs):
        for wrong in wrongs:
            message = assert_fails(check, wrong)
            assert message.startswith("❌") and "hint:" in message, (wrong.__name__, message)
            assert any(words in message for words in names_input), (wrong.__name__, message)

    @rows
    def test_unsolved_stub_says_not_solved(check, rights, wrongs):
        assert_not_solved(check)

    return test_right_answers_pass, test_wrong_answers_fail_with_input_and_hint, test_unsolved_stub_says_not_solved


# --- a checker that compares numbers: its tolerance, neither loose nor tight ---------------------------------------
# Wrong answers that are far off pass a checker whose tolerance is a thousand times too loose. A right answer nudged
# just outside the tolerance must fail, and nudged well inside it must pass: the tolerance is pinned from both sides.

OUTSIDE, INSIDE = 3.0, 0.3  # how far a nudged answer lands, in units of the checker's tolerance


def nudge(value, rel, abs_=0.0):
    """`value` with every float in it moved away from zero by rel * |x| + abs_: a float, a float tensor, or a dict,
    list or tuple of them. Ints (counts, ids, steps) and anything else stay as they are.

    Against `math.isclose(got, want, rel_tol, abs_tol)` or `torch.isclose(got, want, rtol, atol)`, a right answer
    nudged by 3 x rel_tol is outside the tolerance wherever |want| > abs_tol / rel_tol, nudged by 3 x abs_tol wherever
    |want| < abs_tol / rel_tol, and nudged by 0.3 x both it is inside the tolerance everywhere."""
    if isinstance(value, float):
        return value + math.copysign(rel * abs(value) + abs_, value)
    if isinstance(value, dict):
        return {key: nudge(item, rel, abs_) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(nudge(item, rel, abs_) for item in value)
    torch = sys.modules.get("torch")  # not imported here: the tests of the first notebooks pass no tensors
    if torch is not None and isinstance(value, torch.Tensor) and value.is_floating_point():
        step = rel * value.detach().abs() + abs_
        return value.detach() + torch.where(value.detach() < 0, -step, step)
    return value


def nudged(answer, rel, abs_=0.0):
    """`answer`, with every float it returns nudged (see `nudge`): a right answer off by a known amount."""

    @functools.wraps(answer)
    def off(*args):
        return nudge(answer(*args), rel, abs_)

    return off


def tolerance_tests(table, times=2):
    """The two tests of a table of (checker, make_answer, rel_tol, abs_tol), for a test module to bind by their names.

    `make_answer(rel, abs_)` is a right answer off by rel * |x| + abs_ in what the checker compares with that
    tolerance: ``functools.partial(nudged, right)`` for what it returns, or a function of the test module's own for
    what it leaves elsewhere (gradients in .grad). Nudged OUTSIDE times rel_tol alone, and OUTSIDE times abs_tol alone,
    the answer fails with ❌ and a hint (each part apart: a value of 0 fails on abs_tol whatever rel_tol is, so a nudge
    of both would not notice a rel_tol too loose); nudged INSIDE times both, it passes on `times` seeds. An abs_tol
    that no input comes near (a loss near 0, say) is given as 0. A checker with two tolerances has a row for each, its
    make_answer named for what it nudges.
    """
    def name(check, make):
        return check.__name__ + (f"-{make.__name__}" if hasattr(make, "__name__") else "")

    parts = [part for check, make, rel, abs_ in table for part in ((check, make, rel, 0.0), (check, make, 0.0, abs_))
             if part[2] or part[3]]
    outside = pytest.mark.parametrize("check, make_answer, rel, abs_", parts, ids=[
        name(check, make) + ("-rel_tol" if rel else "-abs_tol") for check, make, rel, abs_ in parts])
    inside = pytest.mark.parametrize("check, make_answer, rel, abs_", table, ids=[name(check, make) for check, make, *_ in table])

    @outside
    def test_an_answer_just_outside_the_tolerance_fails(check, make_answer, rel, abs_):
        message = assert_fails(check, make_answer(OUTSIDE * rel, OUTSIDE * abs_))
        assert message.startswith("❌") and "hint:" in message, message

    @inside
    def test_an_answer_well_inside_the_tolerance_passes(check, make_answer, rel, abs_, capsys):
        assert_passes(check, make_answer(INSIDE * rel, INSIDE * abs_), capsys, times)

    return test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes
