"""The checkers of notebook 00's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import hashlib
import json
import os
import tempfile
from pathlib import Path

from minilm.exercises import setup as checks
from minilm.files import atomic_write, fingerprint

from exercise_checks import assert_fails, table_tests


# --- answers written out, as a learner would (the notebook's solutions) ---------------------------------------


def written_choose_preset(cuda_available, env_value):
    name = env_value or ("gpu" if cuda_available else "cpu")
    if name not in ("ci", "cpu", "gpu"):
        raise ValueError(f"unknown preset {name!r}")
    return name


def written_write_atomically(path, chunks):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def package_write_atomically(path, chunks):
    atomic_write(path, (chunk.encode("utf-8") for chunk in chunks))


def written_config_fingerprint(config):
    text = json.dumps(config, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- plausible wrong answers ------------------------------------------------------------------------------------


def wrong_hardware_first(cuda_available, env_value):  # the GPU wins over the variable
    if cuda_available:
        return "gpu"
    return written_choose_preset(cuda_available, env_value)


def wrong_empty_is_a_name(cuda_available, env_value):  # "" is treated as a preset name, not as unset
    name = "gpu" if env_value is None and cuda_available else "cpu" if env_value is None else env_value
    if name not in ("ci", "cpu", "gpu"):
        raise ValueError(name)
    return name


def wrong_case_insensitive(cuda_available, env_value):  # "CPU" is not a preset
    return written_choose_preset(cuda_available, env_value.strip().lower() if env_value else env_value)


def wrong_no_validation(cuda_available, env_value):  # unknown names pass through
    return env_value or ("gpu" if cuda_available else "cpu")


def wrong_write_in_place(path, chunks):  # a crash half-way leaves half a file
    with open(path, "w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write(chunk)


def wrong_leaves_temporary_file(path, chunks):  # no clean-up on error
    fd, tmp = tempfile.mkstemp(dir=Path(path).parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write(chunk)
    os.replace(tmp, path)


def wrong_hides_the_error(path, chunks):  # the caller believes the write worked
    try:
        written_write_atomically(path, chunks)
    except OSError:
        pass


def wrong_one_line_per_chunk(path, chunks):  # adds a newline after each piece
    written_write_atomically(path, (chunk + "\n" for chunk in chunks))


def wrong_fingerprint_unsorted(config):  # the key order changes the hash
    text = json.dumps(config, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def wrong_fingerprint_ascii(config):  # "ü" written as \u00fc
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def wrong_fingerprint_full_digest(config):  # all 64 hex digits
    text = json.dumps(config, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def wrong_fingerprint_repr(config):  # the dict's repr: depends on the key order, and is not JSON
    return hashlib.sha256(repr(config).encode("utf-8")).hexdigest()[:16]


CHECKS = [
    (checks.check_choose_preset, [written_choose_preset],
     [wrong_hardware_first, wrong_empty_is_a_name, wrong_case_insensitive, wrong_no_validation]),
    (checks.check_write_atomically, [written_write_atomically, package_write_atomically],
     [wrong_write_in_place, wrong_leaves_temporary_file, wrong_hides_the_error, wrong_one_line_per_chunk]),
    (checks.check_config_fingerprint, [written_config_fingerprint, fingerprint],
     [wrong_fingerprint_unsorted, wrong_fingerprint_ascii, wrong_fingerprint_full_digest, wrong_fingerprint_repr]),
]
test_right_answers_pass, test_wrong_answers_fail_with_input_and_hint, test_unsolved_stub_says_not_solved = (
    table_tests(CHECKS, times=5))


def test_each_wrong_answer_is_told_what_is_wrong():
    assert_fails(checks.check_choose_preset, wrong_case_insensitive, match="(?s)'CPU'.*expected: 'ValueError'")
    assert_fails(checks.check_write_atomically, wrong_write_in_place, match="old file is damaged")
    assert_fails(checks.check_write_atomically, wrong_leaves_temporary_file, match=r"left behind in the folder: \['tmp")
    assert_fails(checks.check_write_atomically, wrong_hides_the_error, match="error must reach the caller")
    assert_fails(checks.check_write_atomically, wrong_one_line_per_chunk, match="the file holds")


def test_a_fingerprint_without_default_str_crashes_on_a_path():
    def no_default(config):
        return hashlib.sha256(json.dumps(config, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]

    assert_fails(checks.check_config_fingerprint, no_default, match="(?s)raised TypeError.*PosixPath")


def test_write_checker_keeps_a_crash_that_is_not_the_disk():
    def crashes(path, chunks):
        raise KeyError("oops")

    assert_fails(checks.check_write_atomically, crashes, match="raised KeyError")
