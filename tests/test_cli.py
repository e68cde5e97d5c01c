"""The command line used carelessly: every mistake ends in one line on stderr that says what is wrong and how
to fix it, a non-zero exit status and no traceback; a mistake found before any stage starts writes nothing.

Most mistakes run `main(argv)` in this process (a subprocess would import PyTorch again for each, 3 s);
a few run ``python -m minilm`` itself, to show what a user sees.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minilm.__main__ import field_value, main
from minilm.cache import Artifact
from minilm.train import loop, stage
from minilm.train.loop import read_log

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_thread")

# (environment, command line, what the one line on stderr says); {tmp} is the test's folder, which holds a file "file"
MISTAKES = [
    ({"MINILM_PRESET": "nope"}, "data", "error: unknown preset 'nope' (from MINILM_PRESET); choose one of ci, cpu, gpu"),
    ({"MINILM_PRESET": "nope"}, "pretrain --set batch_size=4", "unknown preset 'nope' (from MINILM_PRESET)"),
    ({}, "pretrain --set lr=abc", "error: --set lr=abc: expected a finite number, got 'abc' (the ci preset has lr=0.003)"),
    ({}, "pretrain --set lr=nan", "--set lr=nan: expected a finite number, got 'nan'"),
    ({}, "pretrain --set batch_size=abc", "--set batch_size=abc: expected an integer, got 'abc' (the ci preset has batch_size=8)"),
    ({}, "pretrain --set batch_size=True", "--set batch_size=True: expected an integer, got 'True'"),
    ({}, "pretrain --set seed=1.5", "--set seed=1.5: expected an integer, got '1.5' (the ci preset has seed=1337)"),
    ({}, "pretrain --set compile=maybe", "--set compile=maybe: expected true or false, got 'maybe'"),
    ({}, "pretrain --set eval_tokens=all", "--set eval_tokens=all: expected an integer or none, got 'all'"),
    ({}, "pretrain --set precision=bf17", "error: --set: precision='bf17'; choose one of auto, fp32, bf16, fp16"),
    ({}, "pretrain --set objective=mlm", "error: --set: objective='mlm'; choose one of causal, masked"),
    ({}, "pretrain --set n_head=5", "n_embd=64 does not divide by n_head=5: every head gets n_embd / n_head dimensions; "
                                    "pick n_head among the divisors of 64"),
    ({}, "pretrain --set batch_size=0", "--set: TrainConfig.batch_size must be a positive integer, got 0"),
    ({}, "pretrain --set lr=1e-5", "--set: need 0 < min_lr <= lr"),
    ({}, "speedrun --set batchsize=4", "--set batchsize: TrainConfig has no such field; did you mean batch_size? known fields:"),
    ({}, "pretrain --set batch_size", "error: argument --set: 'batch_size' is not NAME=VALUE, e.g. batch_size=8 "
                                      "(see python -m minilm pretrain --help)"),
    ({}, "pretrain --preset laptop", "argument --preset: invalid choice: 'laptop' (choose from 'ci', 'cpu', 'gpu')"),
    ({}, "pretrian", "argument <command>: invalid choice: 'pretrian'"),
    ({}, "data --bogus", "error: unrecognized arguments: --bogus (see python -m minilm --help)"),
    ({"MINILM_HOME": "{tmp}/file"}, "data", "is a file, not a folder: set MINILM_HOME to a folder"),
    ({"MINILM_HOME": "{tmp}/file/home"}, "tokenizer", "/file/home cannot be written (Not a directory): "
                                                      "set MINILM_HOME to a folder you can write in"),
]


def environment(tmp_path: Path, changes: dict[str, str]) -> dict[str, str]:
    """The ci preset and a data folder that does not exist yet, then the row's changes."""
    (tmp_path / "file").write_text("not a folder")
    return {"MINILM_PRESET": "ci", "MINILM_HOME": str(tmp_path / "home"),
            **{name: value.format(tmp=tmp_path) for name, value in changes.items()}}


def assert_one_clear_line(status, stderr: str, message: str) -> None:
    assert status not in (0, None), stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert message in stderr


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    """The exit status and stderr of `main(argv)`, as the interpreter makes them: SystemExit("text") prints the
    text and exits 1. Any other exception propagates, and fails the test, as a traceback would."""
    try:
        status = main(argv)
    except SystemExit as stop:
        status = stop.code
        if isinstance(status, str):
            print(status, file=sys.stderr)
            status = 1
    return status, capsys.readouterr().err


@pytest.mark.parametrize("changes, command, message", MISTAKES, ids=[command for _, command, _ in MISTAKES])
def test_each_mistake_is_one_clear_line_and_writes_nothing(changes, command, message, tmp_path, monkeypatch, capsys):
    for name, value in environment(tmp_path, changes).items():
        monkeypatch.setenv(name, value)
    status, stderr = run_main(command.split(), capsys)
    assert_one_clear_line(status, stderr, message)
    assert [path.name for path in tmp_path.rglob("*")] == ["file"]


@pytest.mark.parametrize("changes, command, message", [row for row in MISTAKES if row[1] in ("data", "pretrain --set lr=abc")],
                         ids=["MINILM_PRESET=nope", "--set lr=abc", "MINILM_HOME is a file"])
def test_what_the_user_sees(changes, command, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", "minilm", *command.split()], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **environment(tmp_path, changes)})
    assert_one_clear_line(done.returncode, done.stderr, message)
    assert done.stdout == "" and [path.name for path in tmp_path.rglob("*")] == ["file"]


@pytest.mark.skipif(os.name != "posix", reason="folder permissions are POSIX's")
def test_a_read_only_home_is_named_with_the_fix(tmp_path):
    command = [sys.executable, "-m", "minilm", "data"]
    if os.geteuid() == 0:  # root writes in read-only folders, unless it gives up the capability to
        if shutil.which("setpriv") is None:
            pytest.skip("run as root, without setpriv to give up the capability to write anywhere")
        command = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", *command]
    env = environment(tmp_path, {})
    home = Path(env["MINILM_HOME"])
    home.mkdir()
    home.chmod(0o555)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO), **env})
    home.chmod(0o755)
    assert_one_clear_line(done.returncode, done.stderr, f"error: MINILM_HOME={home} cannot be written (Permission denied): "
                                                       f"set MINILM_HOME to a folder you can write in, or fix this one's permissions")
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("field, text, value", [
    ("batch_size", "8", 8), ("batch_size", " 8 ", 8), ("lr", "3e-4", 3e-4), ("lr", "1", 1.0), ("compile", "YES", True),
    ("compile", "0", False), ("compile", "False", False), ("eval_tokens", "None", None), ("eval_tokens", "512", 512),
    ("device", "none", None), ("device", "cpu", "cpu"), ("precision", "bf16", "bf16"),
])
def test_set_values_are_read_by_the_fields_type(field, text, value):
    import typing

    converted = field_value(typing.get_type_hints(loop.TrainConfig)[field], text)
    assert converted == value and type(converted) is type(value)


# --- an interrupted run, started again ------------------------------------------------------------------

TINY = ("--set n_layer=2 --set n_embd=32 --set context=32 --set batch_size=4 --set max_steps=8 --set warmup_steps=2 "
        "--set eval_tokens=512 --set checkpoint_every=4 --set final_samples=1 --set device=cpu --set precision=fp32").split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Artifact:
    from test_train import make_corpus

    return Artifact(make_corpus(tmp_path_factory.mktemp("corpus")), {"key": "corpus"})


@pytest.fixture()
def interrupted(corpus, tmp_path, monkeypatch) -> Path:
    """`python -m minilm pretrain` (of a small model, on a small corpus) killed after its checkpoint at step 4."""
    monkeypatch.setenv("MINILM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MINILM_PRESET", "ci")
    monkeypatch.setenv("TQDM_MININTERVAL", "inf")
    monkeypatch.setattr(stage, "_tokenizer_stage", lambda preset, world: corpus)

    def killed_at_step_4(*args, **kwargs):
        loop.train(*args, **kwargs, until_step=4)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(stage, "train", killed_at_step_4)
        with pytest.raises(KeyboardInterrupt):
            main(["pretrain", *TINY])
    work = tmp_path / "home" / "runs" / "ci" / ".pretrain-work"
    assert (work / "checkpoints" / "step_000004").is_dir()
    return work


def starts(tmp_path: Path) -> list[int]:
    """The steps the finished run started from: 0, then each step it was resumed at."""
    return [r["step"] for r in read_log(tmp_path / "home" / "runs" / "ci" / "pretrain" / "log.jsonl") if r["kind"] == "start"]


def test_a_changed_set_is_refused_rather_than_throwing_the_interrupted_run_away(interrupted, tmp_path, capsys):
    status, stderr = run_main(["pretrain", *TINY, "--set", "lr=0.01"], capsys)
    assert_one_clear_line(status, stderr, "/.pretrain-work/ holds a run interrupted at step_000004 with another config "
                                          "(lr: checkpoint 0.003, now 0.01): run again with the checkpoint's values to "
                                          "resume it, or add --force (force=True) to delete it and start over")
    assert (interrupted / "checkpoints" / "step_000004").is_dir()
    status, _ = run_main(["pretrain", *TINY, "--set", "log_every=2"], capsys)  # how often it logs may change
    assert status == 0 and starts(tmp_path) == [0, 4]


def test_force_starts_the_interrupted_run_over(interrupted, tmp_path, capsys):
    status, _ = run_main(["pretrain", *TINY, "--set", "lr=0.01", "--force"], capsys)
    assert status == 0 and starts(tmp_path) == [0] and not interrupted.exists()


def test_a_corrupt_checkpoint_is_one_line_without_a_traceback(interrupted, capsys):
    weights = interrupted / "checkpoints" / "step_000004" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    status, stderr = run_main(["pretrain", *TINY], capsys)
    assert_one_clear_line(status, stderr, "step_000004 is corrupt: model.safetensors does not match the sha256 recorded "
                                          "in checkpoint.json (truncated copy or disk error); delete the folder")
