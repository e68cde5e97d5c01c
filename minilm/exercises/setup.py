"""Checkers for the exercises of notebook 00 (setup): presets, atomic writes, fingerprints."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from minilm.exercises import ExerciseFailed, _short, call_learner, check_cases, checker, failure, passed
from minilm.files import fingerprint


def _reference_preset(cuda_available: bool, env_value: str | None) -> str:
    name = env_value or ("gpu" if cuda_available else "cpu")
    if name not in ("ci", "cpu", "gpu"):
        return "ValueError"
    return name


# Names that are almost a preset: a case or a space away, or another device's name.
_UNKNOWN_PRESETS = ["Gpu", "CI", " cpu", "cpu ", "gpus", "cuda", "mps", "default", "none", "0"]


@checker
def check_choose_preset(choose_preset, rng: random.Random) -> None:
    """Exercise 1: the preset rule (environment variable first, then the hardware)."""
    title = "Exercise 1 (choose a preset)"

    def learner(cuda_available, env_value):
        try:
            return call_learner(title, choose_preset, cuda_available, env_value)
        except ExerciseFailed as e:
            if isinstance(e.__cause__, ValueError):
                return "ValueError"
            raise

    values = [None, "", "ci", "cpu", "gpu", "CPU", "tpu", *rng.sample(_UNKNOWN_PRESETS, 3)]
    cases = [(cuda, env) for cuda in (False, True) for env in values]
    check_cases(title, learner, _reference_preset, cases,
                hint="MINILM_PRESET wins when it is set (an empty value counts as unset); unknown names raise ValueError")


def _chunks_then_crash(pieces: list[str]):
    """Stream some text, then fail half-way, like a disk that fills up during a write."""
    yield from pieces
    raise OSError("disk full (simulated)")


def _random_pieces(rng: random.Random) -> list[str]:
    return ["".join(rng.choice("abc xyz\n") for _ in range(rng.randint(1, 50))) for _ in range(rng.randint(1, 5))]


@checker
def check_write_atomically(write_atomically, rng: random.Random) -> None:
    """Exercise 2: a write that crashes half-way must leave the previous file whole."""
    title = "Exercise 2 (write a file atomically)"
    hint = ("write the pieces to a temporary file in the same folder (tempfile.mkstemp(dir=path.parent)), then "
            "os.replace() it onto the target; on an error delete the temporary file and raise the error again")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "notes.txt"
        for write in range(3):
            pieces = _random_pieces(rng)
            call_learner(title, write_atomically, path, iter(pieces))
            want = "".join(pieces)
            got = path.read_text(encoding="utf-8") if path.exists() else None
            if got != want:
                shown = "nothing (there is no file)" if got is None else _short(got)
                raise failure(title, f"the file holds {shown}, expected {_short(want)}",
                              f"chunks={_short(pieces)}, written to {'a new' if write == 0 else 'an existing'} file", hint)
        before = path.read_text(encoding="utf-8")
        pieces = _random_pieces(rng)
        inputs = f"chunks={_short(pieces)} and then an OSError, over a file that holds {_short(before)}"
        try:
            call_learner(title, write_atomically, path, _chunks_then_crash(pieces))
        except ExerciseFailed as failed:
            if not isinstance(failed.__cause__, OSError):
                raise
        else:
            raise failure(title, "the write failed half-way but your function returned as if it had worked; "
                          "the error must reach the caller", inputs, hint)
        if not path.exists() or path.read_text(encoding="utf-8") != before:
            now = _short(path.read_text(encoding="utf-8")) if path.exists() else "nothing (the file is gone)"
            raise failure(title, f"the write failed half-way and the old file is damaged: it holds {now}", inputs, hint)
        leftovers = sorted(p.name for p in Path(folder).iterdir() if p.name != "notes.txt")
        if leftovers:
            raise failure(title, f"files are left behind in the folder: {leftovers}", inputs, hint)
    passed(title, "3 writes and a crash")


def _random_value(rng: random.Random):
    """A number, text (some not ASCII), None, a list, or a path (which JSON cannot encode by itself)."""
    return rng.choice([rng.randint(0, 999), round(rng.random(), 4), rng.choice(["gpt", "bert", "ü"]), None, [1, 2],
                       Path("runs") / rng.choice("ab")])


def _random_config(rng: random.Random) -> dict:
    keys = rng.sample(["layers", "width", "heads", "lr", "seed", "name", "dropout", "steps"], rng.randint(1, 6))
    return {key: _random_value(rng) for key in keys}


@checker
def check_config_fingerprint(config_fingerprint, rng: random.Random) -> None:
    """Exercise 3: a stable fingerprint that ignores key order and changes with any value."""
    title = "Exercise 3 (fingerprint a config)"
    fixed = [{}, {"name": "café", "lr": 3e-4}, {"out": Path("runs") / "a", "layers": [1, 2], "dropout": None}]
    configs = fixed + [_random_config(rng) for _ in range(20)]
    shuffled = [dict(reversed(list(c.items()))) for c in configs]
    check_cases(title, config_fingerprint, fingerprint, [(c,) for c in configs + shuffled],
                hint="json.dumps(config, sort_keys=True, default=str, ensure_ascii=False), sha256, first 16 hex digits")
