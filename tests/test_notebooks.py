"""Both committed notebooks of each stage are generated from one text source, by tools/notebooks.py.

nbval runs the notebooks (see pytest's configuration in pyproject.toml); these tests check that each
committed notebook matches its text source `solutions/NN_name.py`, that the conversion between text
and notebook is exact, that every notebook ends with 3 to 6 self-checking exercises, and that the
committed outputs come from a real run and are fit to commit (no machine paths, one line per progress bar).
"""

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("notebooks_tool", ROOT / "tools" / "notebooks.py")
nbtool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbtool)

SOURCES = sorted((ROOT / "solutions").glob("*.py"))
SOLVED = sorted((ROOT / "solutions").glob("*.ipynb"))
LEARNER = sorted((ROOT / "notebooks").glob("*.ipynb"))
REGENERATE = "edit solutions/{name}.py, then run `python tools/notebooks.py {number} --execute`"


def test_every_text_source_has_its_two_notebooks():
    assert SOURCES, "no text sources found in solutions/"
    names = [p.stem for p in SOURCES]
    assert [p.stem for p in SOLVED] == names, "every solved notebook is generated from solutions/NN_name.py"
    assert [p.stem for p in LEARNER] == names, "every learner's notebook is generated from solutions/NN_name.py"
    for name in names:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+", name), f"{name}: notebooks are named NN_topic"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_notebooks_match_their_text_source(source):
    solved = nbtool.read_source(source)
    for path, expected in ((ROOT / "solutions" / f"{source.stem}.ipynb", solved),
                           (ROOT / "notebooks" / f"{source.stem}.ipynb", nbtool.learner_notebook(solved))):
        committed = nbtool.cell_sources(nbtool.read_notebook(path))
        assert committed == nbtool.cell_sources(expected), (
            f"{path.parent.name}/{path.name} does not match solutions/{source.name}: "
            + REGENERATE.format(name=source.stem, number=source.stem[:2]))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_text_source_round_trips_through_the_notebook(source):
    text = source.read_text(encoding="utf-8")
    ipynb = nbformat.writes(nbtool.text_to_notebook(text))
    assert nbtool.notebook_to_text(nbformat.reads(ipynb, as_version=4)) == text, (
        f"solutions/{source.name} is not in canonical form: `python tools/notebooks.py {source.stem[:2]}` rewrites it")
    header = text.split("# ---\n")[1]
    assert "jupytext_version" not in header and "kernelspec" in header and "format_name: percent" in header


def test_conversion_keeps_tags_markdown_and_layout():
    text = (
        '# %% [markdown]\n# ## A title\n#\n# | a | b |\n# |---|---|\n# | 1 | 2 |\n\n'
        '# %%\n# NBVAL_CHECK_OUTPUT\nprint("same in every preset")\n\n\n'
        '# %% tags=["hide-input"]\ndef f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n\n\n'
        '# %% tags=["check"]\ncheck_f(f)\n'
    )
    nb = nbtool.text_to_notebook(text)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "code"]
    assert nb.cells[0].source == "## A title\n\n| a | b |\n|---|---|\n| 1 | 2 |"
    assert nb.cells[1].source.startswith("# NBVAL_CHECK_OUTPUT\n")
    assert [c.metadata.get("tags") for c in nb.cells] == [None, None, ["hide-input"], ["check"]]
    assert [c.id for c in nb.cells] == ["c000", "c001", "c002", "c003"]
    assert nbtool.notebook_to_text(nb).endswith(text)
    # Blank lines are layout, not content: a source with other spacing makes the same notebook.
    squeezed = nbtool.text_to_notebook(text.replace("\n\n\n", "\n"))
    assert nbtool.cell_sources(squeezed) == nbtool.cell_sources(nb)
    assert all("lines_to_next_cell" not in c.metadata for c in squeezed.cells)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_ends_with_checked_exercises(source):
    solved = nbtool.read_source(source)
    assert 3 <= nbtool.count_exercises(solved) <= 6
    assert source.read_text(encoding="utf-8").count(nbtool.CODE_BEGIN) >= nbtool.count_exercises(solved)
    for cell in solved.cells:
        if nbtool.CHECK_TAG in cell.metadata.get("tags", []):
            assert "check_" in cell.source, "a check cell calls a checker from minilm.exercises"


@pytest.mark.parametrize("path", SOLVED + LEARNER, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_outputs_are_real_and_clean(path):
    nb = nbtool.read_notebook(path)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.get("execution_count") for c in code), f"{path.name}: commit it executed (every code cell run)"
    texts = json.dumps([[{k: v for k, v in o.get("data", {}).items() if not k.startswith("image/")} | {
        k: o[k] for k in ("text", "traceback", "evalue") if k in o} for o in c.outputs] for c in code])
    assert not re.search(r"/(root|home|tmp|work|Users)/|site-packages", texts), f"{path.name}: outputs show a machine path"
    for cell in code:
        assert nbtool.collapse_progress(cell.outputs) == cell.outputs, f"{path.name}: a progress bar takes more than one line"
    assert path.stat().st_size < 1_500_000, f"{path.name}: keep notebooks small (figures as PNG, few hundred KB)"


def test_stub_replaces_answers_and_tags_checks():
    solved = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n", execution_count=3),
        nbformat.v4.new_code_cell("check_f(f)", metadata={"tags": ["check"]}, execution_count=4),
        nbformat.v4.new_markdown_cell("Why?\n<!-- BEGIN SOLUTION -->Because.<!-- END SOLUTION -->"),
    ])
    learner = nbtool.learner_notebook(solved)
    assert learner.cells[0].source == f"def f(x):\n    {nbtool.CODE_STUB}\n"
    assert learner.cells[0].execution_count is None
    assert "tags" not in learner.cells[0].metadata
    assert learner.cells[1].metadata["tags"] == ["check", "raises-exception"]
    assert learner.cells[2].source == f"Why?\n{nbtool.MD_STUB}"
    assert solved.cells[0].source.count("return x + 1") == 1  # the solved notebook is untouched
    with pytest.raises(ValueError, match="never closed"):
        nbtool.strip_code_solutions("### BEGIN SOLUTION\nx = 1\n")


def test_unchanged_cells_keep_their_outputs():
    old = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("x = 1", execution_count=1),
        nbformat.v4.new_code_cell("print(x)", execution_count=2, outputs=[nbformat.v4.new_output("stream", text="1\n")]),
        nbformat.v4.new_code_cell("print(x + 1)", execution_count=3, outputs=[nbformat.v4.new_output("stream", text="2\n")]),
    ])
    new = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A new title"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("y = 2"),  # inserted
        nbformat.v4.new_code_cell("print(x)"),
        nbformat.v4.new_code_cell("print(x + 2)"),  # changed
    ])
    assert nbtool.keep_outputs(new, old) == [2, 4]
    assert [c.get("execution_count") for c in new.cells] == [None, 1, None, 2, None]
    assert new.cells[3].outputs[0].text == "1\n"


def _stream(text, name="stderr"):
    return nbformat.v4.new_output("stream", name=name, text=text)


def test_progress_bars_collapse_to_their_last_state():
    bar = "train: {p:3d}%|{b:10}| {n}/200 [00:0{n_s}<00:00, 40.00it/s]"
    state = lambda n: bar.format(p=n // 2, b="█" * (n // 20), n=n, n_s=n // 40)  # noqa: E731
    outputs = [
        _stream("\r" + state(0)), _stream("\r" + state(80)), _stream("\r" + state(160)),
        _stream("\r" + state(200) + "\n"),  # leave=True: the final state, then a new line
        _stream("trained in 5 s\n", name="stdout"),
        # leave=False: cleared at the end, after two bars drawn on one line; the last state of each stays
        _stream("\rwidth 16:  50%|█████     | 1/2 [00:01<00:01, 1.00it/s]\rwidth 16: 100%|██████████| 2/2 [00:02<00:00, 1.00it/s]"
                "\r                    \r\rwidth 32:  50%|█████     | 1/2 [00:01<00:01, 1.00it/s]\r                    \r"),
        _stream("\r"),
        _stream("done\n", name="stdout"),
        # the same final line printed twice, and a bar without a total redrawn
        _stream("tokenizing: 1.20Mtok [00:05, 240ktok/s]\rtokenizing: 2.40Mtok [00:10, 240ktok/s]\n"
                "eval: 100%|██████████| 4/4 [00:01<00:00, 4.00it/s]\neval: 100%|██████████| 4/4 [00:01<00:00, 4.00it/s]\n"),
    ]
    collapsed = nbtool.collapse_progress(outputs)
    assert [(o.name, o.text) for o in collapsed] == [
        ("stderr", state(200) + "\n"),
        ("stdout", "trained in 5 s\n"),
        ("stderr", "width 16: 100%|██████████| 2/2 [00:02<00:00, 1.00it/s]\nwidth 32:  50%|█████     | 1/2 [00:01<00:01, 1.00it/s]\n"),
        ("stdout", "done\n"),
        ("stderr", "tokenizing: 2.40Mtok [00:10, 240ktok/s]\neval: 100%|██████████| 4/4 [00:01<00:00, 4.00it/s]\n"),
    ]
    assert nbtool.collapse_progress(collapsed) == collapsed  # already clean stays as it is
    plain = [_stream("step 1: loss 2.0\nstep 2: loss 2.0\n", name="stdout"), _stream("\n\n", name="stdout")]
    assert [o.text for o in nbtool.collapse_progress(plain)] == ["step 1: loss 2.0\nstep 2: loss 2.0\n\n\n"]


def test_widget_progress_bar_becomes_its_final_line():
    widget = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "box", "version_major": 2, "version_minor": 0},
        "text/plain": "train:   0%|          | 0/200 [00:00<?, ?it/s]",
    })
    state = {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_left", "IPY_MODEL_bar", "IPY_MODEL_right"]}},
        "left": {"model_name": "HTMLModel", "state": {"value": "train:\u2007100%"}},
        "bar": {"model_name": "FloatProgressModel", "state": {"value": 200, "max": 200, "bar_style": "success"}},
        "right": {"model_name": "HTMLModel", "state": {"value": "\u2007200/200\u2007[00:05&lt;00:00,\u200740.00it/s]"}},
    }
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("train()", outputs=[widget], execution_count=1)])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state, "version_major": 2, "version_minor": 0}}
    nbtool.clean_outputs(nb)
    assert "widgets" not in nb.metadata
    assert [(o.output_type, o.name, o.text) for o in nb.cells[0].outputs] == [
        ("stream", "stderr", "train: 100%|██████████| 200/200 [00:05<00:00, 40.00it/s]\n")]


def test_machine_paths_are_removed_from_outputs():
    paths = [(str(ROOT), "<course>"), ("/home/someone", "~")]
    output = nbformat.v4.new_output("stream", text=f"wrote {ROOT}/data/runs/cpu/stage\nread /home/someone/x and /home/someoneelse\n")
    assert nbtool.without_machine_paths(output, paths).text == "wrote <course>/data/runs/cpu/stage\nread ~/x and /home/someoneelse\n"
    image = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR/home/someone/w==", "text/plain": "/home/someone"})
    assert nbtool.without_machine_paths(image, paths).data == {"image/png": "iVBOR/home/someone/w==", "text/plain": "~"}
