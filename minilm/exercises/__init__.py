"""Self-checking exercises.

Each notebook ends with exercises: a stub the learner fills in, then a check cell that calls a
checker from this package, such as ``minilm.exercises.data.check_mean_word_length(my_function)``.
A checker runs the learner's code on fresh random inputs against the package's own reference and
prints a clear pass, or raises `ExerciseFailed` with the failing input and a hint.

The stage modules (`minilm.exercises.data`, ...) hold the checkers; this module holds what they share.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterable

__all__ = ["ExerciseFailed", "check_cases", "passed"]


class ExerciseFailed(AssertionError):
    """The learner's answer is not right yet; the message says on which input and gives a hint."""


def passed(title: str, detail: str = "") -> None:
    """Print the pass line every checker ends with."""
    print(f"✅ {title}: passed{' (' + detail + ')' if detail else ''}")


def call_learner(title: str, fn: Callable, *args) -> Any:
    """Call the learner's function, turning 'not written yet' and crashes into clear failures."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise ExerciseFailed(f"❌ {title}: not solved yet. Replace `raise NotImplementedError` in the cell above with your code.") from None
    except ExerciseFailed:
        raise
    except Exception as e:  # the learner's code crashed: show where, on which input
        shown = ", ".join(_short(a) for a in args)
        raise ExerciseFailed(f"❌ {title}: your function raised {type(e).__name__}: {e}\n   on input: {shown}") from e


def check_cases(
    title: str,
    learner: Callable,
    reference: Callable,
    cases: Iterable[tuple],
    *,
    same: Callable[[Any, Any], bool] = lambda a, b: a == b,
    hint: str = "",
) -> None:
    """Compare `learner(*case)` with `reference(*case)` on every case; pass, or fail on the first difference."""
    count = 0
    for case in cases:
        got = call_learner(title, learner, *case)
        want = reference(*case)
        if not same(got, want):
            shown = ", ".join(_short(a) for a in case)
            raise ExerciseFailed(
                f"❌ {title}: wrong answer\n   on input: {shown}\n   expected: {_short(want)}\n   got:      {_short(got)}"
                + (f"\n   hint: {hint}" if hint else "")
            )
        count += 1
    passed(title, f"{count} cases")


def fresh_rng(seed: int | None = None) -> random.Random:
    """A random generator for fresh inputs: a new draw each run unless a seed is given."""
    return random.Random(seed)


def torch_generator(rng: random.Random):
    """A torch.Generator seeded from the checker's fresh draw, for tensor inputs."""
    import torch  # here: the checkers of the first notebooks do not need torch

    return torch.Generator().manual_seed(rng.randrange(2**62))


def failure(title: str, problem: str, inputs: str, hint: str) -> ExerciseFailed:
    """The failure a checker raises: what is wrong, on which input, and a hint."""
    return ExerciseFailed(f"❌ {title}: {problem}\n   on input: {inputs}\n   hint: {hint}")


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
