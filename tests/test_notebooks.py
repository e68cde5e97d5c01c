"""The learners' notebooks are exactly the solved ones with the answers taken out.

nbval runs both sets (see pytest's configuration in pyproject.toml); these tests check that they
have not drifted apart, that every notebook ends with 3 to 6 self-checking exercises, and that the
committed outputs were produced by a real run and show no machine paths.
"""

import json
import re
from pathlib import Path

import pytest

from minilm.exercises import notebooks as nbtool

ROOT = Path(__file__).resolve().parents[1]
SOLVED = sorted((ROOT / "solutions").glob("*.ipynb"))
LEARNER = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_has_a_solved_twin():
    assert SOLVED, "no solved notebooks found"
    assert [p.name for p in LEARNER] == [p.name for p in SOLVED]
    for path in LEARNER:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), f"{path.name}: notebooks are named NN_topic.ipynb"


@pytest.mark.parametrize("solved_path", SOLVED, ids=lambda p: p.name)
def test_learner_notebook_is_generated_from_solved(solved_path):
    solved = nbtool.read_notebook(solved_path)
    learner = nbtool.read_notebook(ROOT / "notebooks" / solved_path.name)
    assert nbtool.cell_sources(learner) == nbtool.cell_sources(nbtool.learner_notebook(solved)), (
        f"notebooks/{solved_path.name} drifted from solutions/{solved_path.name}: "
        "edit the solved notebook, then run `python -m minilm.exercises.notebooks --execute`"
    )


@pytest.mark.parametrize("solved_path", SOLVED, ids=lambda p: p.name)
def test_notebook_ends_with_checked_exercises(solved_path):
    solved = nbtool.read_notebook(solved_path)
    assert 3 <= nbtool.count_exercises(solved) <= 6
    text = json.dumps(solved["cells"])
    assert text.count(nbtool.CODE_BEGIN) >= nbtool.count_exercises(solved)
    for cell in solved["cells"]:
        if nbtool.CHECK_TAG in cell.get("metadata", {}).get("tags", []):
            assert "check_" in "".join(cell["source"]), "a check cell calls a checker from minilm.exercises"


@pytest.mark.parametrize("path", SOLVED + LEARNER, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_outputs_are_real_and_clean(path):
    nb = nbtool.read_notebook(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert all(c.get("execution_count") for c in code), f"{path.name}: commit it executed (every code cell run)"
    outputs = json.dumps([c["outputs"] for c in code])
    assert not re.search(r"/(root|home|tmp|work|Users)/|site-packages", outputs), f"{path.name}: outputs show a machine path"
    assert path.stat().st_size < 1_500_000, f"{path.name}: keep notebooks small (figures as PNG, few hundred KB)"


def test_stub_replaces_answers_and_tags_checks():
    solved = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 3,
             "source": "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"},
            {"cell_type": "code", "metadata": {"tags": ["check"]}, "outputs": [], "execution_count": 4, "source": "check_f(f)"},
            {"cell_type": "markdown", "metadata": {}, "source": "Why?\n<!-- BEGIN SOLUTION -->Because.<!-- END SOLUTION -->"},
        ]
    }
    learner = nbtool.learner_notebook(solved)
    assert learner["cells"][0]["source"] == f"def f(x):\n    {nbtool.CODE_STUB}\n"
    assert learner["cells"][0]["execution_count"] is None
    assert learner["cells"][1]["metadata"]["tags"] == ["check", "raises-exception"]
    assert learner["cells"][2]["source"] == f"Why?\n{nbtool.MD_STUB}"
    assert solved["cells"][0]["source"].count("return x + 1") == 1  # the solved notebook is untouched
    with pytest.raises(ValueError, match="never closed"):
        nbtool.strip_code_solutions("### BEGIN SOLUTION\nx = 1\n")
