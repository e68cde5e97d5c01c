"""Self-checking exercises.

Each notebook ends with exercises: a stub the learner fills in, then a check cell that calls a
checker from this package, such as ``minilm.exercises.data.check_mean_word_length(my_function)``.
A checker runs the learner's code on random inputs against the package's own reference and prints a
clear pass, or raises `ExerciseFailed` with the failing input and a hint.

The inputs are fresh on every run, so that an answer cannot be fitted to them, yet reproducible: they
are drawn from a seed that a failure names, and ``check_x(my_function, seed=1234)`` draws them again.
In Jupyter a failure shows as its message alone, not as a traceback through the checker, whose source
(hints included) the learner should not be shown before trying.

The stage modules (`minilm.exercises.data`, ...) hold the checkers; this module holds what they share.
"""

from __future__ import annotations

import functools
import random
import re
import secrets
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Iterable

__all__ = ["ExerciseFailed", "check_cases", "checker", "passed"]

_HERE = Path(__file__).resolve().parent


class ExerciseFailed(AssertionError):
    """The learner's answer is not right yet; the message says on which input and gives a hint."""

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show for this failure: the message, and no frame of the checker.

        IPython calls this hook in place of formatting a traceback. Unlike a handler given to
        `set_custom_exc`, whose output the kernel does not send as an error, the cell still ends in an
        "error" output and an execute_reply of status "error", so nbval and nbclient see the failure.
        When the learner's own code crashed, its frames (and only those) come first: they show the line.
        """
        from IPython import get_ipython  # only IPython calls this hook

        shell = get_ipython()
        headline, *rest = str(self).splitlines() or [""]
        red, plain = ("", "") if shell is None or shell.colors.lower() == "nocolor" else ("\x1b[1;31m", "\x1b[0m")
        message = [red + headline + plain, *rest]
        crash = self.__cause__
        learner_tb = _past_checker(crash.__traceback__) if crash is not None else None
        if shell is None or learner_tb is None:
            return message
        try:
            frames = shell.InteractiveTB.structured_traceback(type(crash), crash, learner_tb)
        except Exception:  # show the message anyway: a hook that fails leaves no error output, and nbval passes the cell
            frames = []
        return [*frames, *message]


def _past_checker(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from its first frame outside this package: the learner's code, and what it called."""
    while tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_HERE):
        tb = tb.tb_next
    return tb


def checker(check: Callable[[Callable, random.Random], None]) -> Callable[..., None]:
    """Make `check(answer, rng)` a checker `check(answer, seed=None)` whose inputs are fresh on every run
    and can be drawn again: without a seed it takes a new one; a failure names the seed and the call that
    reproduces it."""

    @functools.wraps(check)
    def run(answer: Callable, seed: int | None = None) -> None:
        seed = secrets.randbelow(1_000_000) if seed is None else seed
        try:
            check(answer, random.Random(seed))
        except ExerciseFailed as failed:
            if not isinstance(failed.__context__, NotImplementedError):  # "not solved yet" is the same on any input
                name = getattr(answer, "__name__", "")
                name = name if name.isidentifier() else "your_function"
                failed.args = (f"{failed}\n   seed {seed}: {check.__name__}({name}, seed={seed}) draws the same inputs again",)
            raise

    del run.__wrapped__  # help() and signature() show (answer, seed=None), the call a learner makes
    return run


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


def torch_generator(rng: random.Random):
    """A torch.Generator seeded from the checker's generator, for tensor inputs."""
    import torch  # here: the checkers of the first notebooks do not need torch

    return torch.Generator().manual_seed(rng.randrange(2**62))


def failure(title: str, problem: str, inputs: str, hint: str) -> ExerciseFailed:
    """The failure a checker raises: what is wrong, on which input, and a hint."""
    return ExerciseFailed(f"❌ {title}: {problem}\n   on input: {inputs}\n   hint: {hint}")


def _short(value: Any, limit: int = 160) -> str:
    """`repr(value)` on one line (a tensor's repr wraps; a string's never holds a raw newline), cut at `limit`."""
    text = re.sub(r"\n\s*", " ", repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
