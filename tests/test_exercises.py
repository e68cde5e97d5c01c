"""What every checker shares (minilm/exercises/__init__.py): inputs drawn from a seed that a failure names,
and a failure that Jupyter shows as its message, not as a traceback through the checker, while the cell
still counts as an error for nbclient and nbval."""

import ast
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from minilm.exercises import ExerciseFailed
from minilm.exercises.setup import check_guess_losses, check_text_sizes

from exercise_checks import stub

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def wrong_on_long_texts(text, encode):  # right on the short fixed texts, so the message shows a random one
    sizes = {"bytes": len(text.encode("utf-8")), "characters": len(text), "tokens": len(encode(text))}
    return sizes if len(text) <= 16 else {**sizes, "tokens": sizes["tokens"] + 1}


def zero_losses(ids, vocab_size, n_bytes):
    return {"uniform": 0.0, "unigram": 0.0, "uniform_bpb": 0.0, "unigram_bpb": 0.0}


def failure_of(check, answer, **seed) -> ExerciseFailed:
    with pytest.raises(ExerciseFailed) as failure:
        check(answer, **seed)
    return failure.value


def test_a_failure_names_its_seed_and_the_call_that_reproduces_it():
    first = str(failure_of(check_text_sizes, wrong_on_long_texts))
    seed = int(re.search(r"\n   seed (\d+): ", first).group(1))
    assert first.endswith(f"seed {seed}: check_text_sizes(wrong_on_long_texts, seed={seed}) draws the same inputs again")
    assert str(failure_of(check_text_sizes, wrong_on_long_texts, seed=seed)) == first


def test_without_a_seed_each_run_draws_new_inputs():
    messages = {str(failure_of(check_text_sizes, wrong_on_long_texts)) for _ in range(5)}
    assert len(messages) > 1
    assert str(failure_of(check_text_sizes, wrong_on_long_texts, seed=7)) != str(
        failure_of(check_text_sizes, wrong_on_long_texts, seed=8))


def test_the_seed_line_names_the_learners_function_or_a_placeholder():
    assert "check_guess_losses(your_function, seed=3)" in str(failure_of(check_guess_losses, lambda *a: {}, seed=3))


def test_not_solved_yet_has_no_seed_to_show():
    failure = failure_of(check_guess_losses, stub)
    assert "not solved yet" in str(failure) and "seed" not in str(failure)


def test_a_checker_is_called_with_the_answer_and_an_optional_seed():
    parameters = inspect.signature(check_guess_losses).parameters
    assert list(parameters) == ["answer", "seed"] and parameters["seed"].default is None
    assert check_guess_losses.__doc__.startswith("Exercise 2")


def test_the_message_outside_a_kernel_is_the_whole_render():
    failure = failure_of(check_guess_losses, zero_losses, seed=1)
    lines = [ANSI.sub("", line) for line in failure._render_traceback_()]
    assert lines == str(failure).splitlines() and "seed 1:" in lines[-1]


TORCH_RANDOM = {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal",
                "bernoulli", "multinomial", "poisson"}


def unseeded_draws(source: str) -> list[str]:
    """Calls that draw from a global generator: random.choice(...), np.random.*, torch.rand*(...) without generator=."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, owner = node.func.attr, ast.unparse(node.func.value)
        keywords = {keyword.arg for keyword in node.keywords}
        if (owner == "random" and name not in ("Random", "SystemRandom")
                or owner in ("np.random", "numpy.random")
                or owner == "torch" and (name in TORCH_RANDOM and "generator" not in keywords or name == "manual_seed")
                or name in ("uniform_", "normal_", "random_", "bernoulli_", "exponential_") and "generator" not in keywords):
            found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_unseeded_draws_are_found():
    source = "random.choice(x)\nnp.random.rand(3)\ntorch.randn(2, 3)\nt.normal_()\ntorch.manual_seed(0)"
    assert len(unseeded_draws(source)) == 5
    assert unseeded_draws("random.Random(seed)\nrng.choice(x)\ntorch.randn(2, generator=g)\ntorch.Generator()") == []


@pytest.mark.parametrize("module", ["setup", "data", "tokenizer", "model", "pretraining", "scaling", "finetuning", "rlhf", "evaluation"])
def test_checkers_draw_every_input_from_their_seed(module):
    source = (ROOT / "minilm" / "exercises" / f"{module}.py").read_text(encoding="utf-8")
    assert unseeded_draws(source) == []


# --- in a real kernel ---------------------------------------------------------------------------------------

CELLS = [
    "from minilm.exercises.setup import check_guess_losses\n"
    "def wrong(ids, vocab_size, n_bytes):\n    return {'uniform': 0.0, 'unigram': 0.0, 'uniform_bpb': 0.0, 'unigram_bpb': 0.0}\n"
    "def stub(ids, vocab_size, n_bytes):\n    raise NotImplementedError('Exercise: write your code here')\n"
    "def crashes(ids, vocab_size, n_bytes):\n    counts = ids.tolist()\n    return counts[10**6]  # the learner's line",
    "check_guess_losses(wrong)",
    "check_guess_losses(stub)",
    "check_guess_losses(crashes)",
    "from minilm.exercises.setup import reference_guess_losses\ncheck_guess_losses(reference_guess_losses)",
]


def run_notebook(cells: list[str]):
    """Execute `cells` in a fresh kernel; return the notebook and the indices of cells whose reply was an error."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    errors = []
    client = NotebookClient(notebook, timeout=120, allow_errors=True, resources={"metadata": {"path": str(ROOT)}},
                            on_cell_error=lambda cell, cell_index, execute_reply: errors.append(cell_index))
    client.execute()
    return notebook, errors


def error_text(cell) -> str:
    (error,) = [output for output in cell.outputs if output.output_type == "error"]
    assert error.ename == "ExerciseFailed"
    return ANSI.sub("", "\n".join(error.traceback))


def test_in_a_kernel_a_failure_shows_its_message_and_no_checker_frame():
    notebook, errors = run_notebook(CELLS)
    assert errors == [1, 2, 3]  # the execute_reply's status is "error": nbclient stops a notebook there

    wrong = error_text(notebook.cells[1])
    assert wrong.startswith("❌ Exercise 2 (the loss of a guess): wrong")
    assert re.search(r"seed \d+: check_guess_losses\(wrong, seed=\d+\)", wrong)
    not_solved = error_text(notebook.cells[2])
    assert not_solved.startswith("❌") and "not solved yet" in not_solved and "NotImplementedError(" not in not_solved
    crash = error_text(notebook.cells[3])  # the learner's own frame, then the message
    assert "counts[10**6]  # the learner's line" in crash and "IndexError" in crash
    assert crash.rstrip().splitlines()[-3].startswith("❌ Exercise 2 (the loss of a guess): your function raised IndexError")
    for text in (wrong, not_solved, crash):
        assert "exercises" not in text and "call_learner" not in text and "check_cases" not in text, text
    assert "passed" in notebook.cells[4].outputs[0].text


def test_nbval_passes_a_failing_check_tagged_raises_exception_and_fails_an_untagged_one(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(CELLS[0]),
        nbformat.v4.new_code_cell(CELLS[1], metadata={"tags": ["raises-exception"]}),  # a learner's notebook
        nbformat.v4.new_code_cell(CELLS[1]),  # a solved notebook whose check fails
    ])
    path = tmp_path / "check.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", path.name],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "1 failed, 2 passed" in result.stdout, result.stdout + result.stderr
    assert "check.ipynb::Cell 2" in result.stdout and "Exercise 2 (the loss of a guess): wrong" in result.stdout


def test_an_input_is_shown_on_one_line_though_its_repr_wraps():
    failure = failure_of(check_guess_losses, lambda ids, vocab_size, n_bytes: ids[10**6], seed=0)
    (shown,) = [line for line in str(failure).splitlines() if line.lstrip().startswith("on input:")]
    assert "\n" in repr(torch.full((49,), 3)), "torch no longer wraps a 49-number tensor: pick a longer input"
    assert "tensor([" in shown and "])" in shown
