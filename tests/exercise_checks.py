"""What the tests of the exercise checkers (tests/test_exercises_*.py) share: a stub, asserts, three tests."""

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
