"""Checkers for the exercises of notebook 00 (setup): presets, atomic writes, fingerprints."""

from __future__ import annotations

import tempfile
from pathlib import Path

from minilm.exercises import ExerciseFailed, call_learner, check_cases, fresh_rng, passed
from minilm.files import fingerprint


def _reference_preset(cuda_available: bool, env_value: str | None) -> str:
    name = env_value or ("gpu" if cuda_available else "cpu")
    if name not in ("ci", "cpu", "gpu"):
        return "ValueError"
    return name


def check_choose_preset(choose_preset) -> None:
    """Exercise 1: the preset rule (environment variable first, then the hardware)."""
    title = "Exercise 1 (choose a preset)"

    def learner(cuda_available, env_value):
        try:
            return call_learner(title, choose_preset, cuda_available, env_value)
        except ExerciseFailed as e:
            if isinstance(e.__cause__, ValueError):
                return "ValueError"
            raise

    cases = [(cuda, env) for cuda in (False, True) for env in (None, "", "ci", "cpu", "gpu", "tpu", "CPU")]
    check_cases(title, learner, _reference_preset, cases,
                hint="MINILM_PRESET wins when it is set (an empty value counts as unset); unknown names raise ValueError")


def _chunks_then_crash(pieces: list[str]):
    """Stream some text, then fail half-way, like a disk that fills up during a write."""
    yield from pieces
    raise OSError("disk full (simulated)")


def check_write_atomically(write_atomically) -> None:
    """Exercise 2: a write that crashes half-way must leave the previous file whole."""
    title = "Exercise 2 (write a file atomically)"
    rng = fresh_rng()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "notes.txt"
        for _ in range(3):
            pieces = ["".join(rng.choice("abc xyz\n") for _ in range(rng.randint(1, 50))) for _ in range(rng.randint(1, 5))]
            text = "".join(pieces)
            call_learner(title, write_atomically, path, iter(pieces))
            if path.read_text(encoding="utf-8") != text:
                raise ExerciseFailed(f"❌ {title}: the file does not hold the text that was written")
        before = path.read_text(encoding="utf-8")
        try:
            write_atomically(path, _chunks_then_crash(["new text ", "that never ", "arrives"]))
        except NotImplementedError:
            raise ExerciseFailed(f"❌ {title}: not solved yet.") from None
        except OSError:
            pass
        else:
            raise ExerciseFailed(f"❌ {title}: a failed write must raise its error, not hide it")
        if not path.exists() or path.read_text(encoding="utf-8") != before:
            raise ExerciseFailed(
                f"❌ {title}: the write failed half-way and the old file is gone or damaged.\n"
                "   hint: write to a temporary file in the same folder, then os.replace() it onto the target"
            )
        leftovers = [p.name for p in Path(folder).iterdir() if p.name != "notes.txt"]
        if leftovers:
            raise ExerciseFailed(f"❌ {title}: the failed write left files behind: {leftovers}; delete the temporary file on error")
    passed(title)


def _random_config(rng):
    keys = rng.sample(["layers", "width", "heads", "lr", "seed", "name", "dropout", "steps"], rng.randint(1, 6))
    return {k: rng.choice([rng.randint(0, 999), round(rng.random(), 4), rng.choice(["gpt", "bert", "ü"]), None, [1, 2]]) for k in keys}


def check_config_fingerprint(config_fingerprint) -> None:
    """Exercise 3: a stable fingerprint that ignores key order and changes with any value."""
    title = "Exercise 3 (fingerprint a config)"
    rng = fresh_rng()
    configs = [_random_config(rng) for _ in range(20)]
    shuffled = [dict(reversed(list(c.items()))) for c in configs]
    check_cases(title, config_fingerprint, fingerprint, [(c,) for c in configs + shuffled],
                hint="json.dumps(config, sort_keys=True, default=str, ensure_ascii=False), sha256, first 16 hex digits")
