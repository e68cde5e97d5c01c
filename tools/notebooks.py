"""Build the course's notebooks from their text sources, as teachers do with jupytext and nbgrader.

A teacher edits one text file per notebook, the solved notebook in jupytext's percent format,
``solutions/NN_name.py``; review reads its diff. This tool generates the two notebooks that are
committed beside it:

- ``solutions/NN_name.ipynb``, the solved notebook, cell for cell the text source;
- ``notebooks/NN_name.ipynb``, the learner's notebook: the same with every answer replaced by a stub.

In code cells, each answer sits between two marker lines::

    def mean_word_length(text):
        ### BEGIN SOLUTION
        words = text.split()
        return sum(len(w) for w in words) / len(words)
        ### END SOLUTION

and in markdown cells between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->``. The check
cell after an exercise is tagged ``check`` (``# %% tags=["check"]``); in the learner's notebook it is
also tagged ``raises-exception``, so that the unsolved notebook still runs top to bottom under nbval.

Usage, from the repository root::

    python tools/notebooks.py [NN ...]              # regenerate, keeping the outputs of unchanged cells
    python tools/notebooks.py [NN ...] --execute    # regenerate and run both with MINILM_PRESET=cpu

Without ``--execute`` a text-only edit needs no re-run: a cell whose source did not change keeps its
outputs, and the tool lists the code cells that changed and need executing. With ``--execute`` both
notebooks are run, and their outputs are made fit to commit: each progress bar is collapsed to its
final line and machine paths are removed. tests/test_notebooks.py fails when a committed notebook
does not match its source.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import html
import os
import re
import sys
import sysconfig
import tempfile
from pathlib import Path

import jupytext
import nbformat
from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, NOTEBOOKS = ROOT / "solutions", ROOT / "notebooks"

CODE_BEGIN, CODE_END = "### BEGIN SOLUTION", "### END SOLUTION"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
CODE_STUB = 'raise NotImplementedError("Exercise: write your code here")'
MD_STUB = "*Your answer here.*"
CHECK_TAG, RAISES_TAG = "check", "raises-exception"

TEXT_FORMAT = "py:percent"
# jupytext records the layout of the text (blank lines, markers) in these keys; the notebooks carry
# none of it, so every source has one canonical text form.
LAYOUT_METADATA = ("cell_marker", "lines_to_next_cell", "lines_to_end_of_cell_marker")


# --- text source <-> notebook -------------------------------------------------------------------

def text_to_notebook(text: str) -> NotebookNode:
    """The notebook a percent-format source describes: cells, their tags and metadata, the kernel; no outputs."""
    nb = jupytext.reads(text, fmt=TEXT_FORMAT)
    nb.metadata = {key: nb.metadata[key] for key in ("kernelspec",) if key in nb.metadata}
    for index, cell in enumerate(nb.cells):
        cell.id = f"c{index:03d}"  # stable ids: regenerating a notebook does not change them
        for key in LAYOUT_METADATA:
            cell.metadata.pop(key, None)
    return nb


def notebook_to_text(nb: NotebookNode) -> str:
    """The canonical percent-format text of a notebook; its header holds the kernel and the format only."""
    nb = copy.deepcopy(nb)
    nb.metadata = {key: nb.metadata[key] for key in ("kernelspec",) if key in nb.metadata}
    text = jupytext.writes(nb, fmt=TEXT_FORMAT)
    # The jupytext version is the writer's, not the notebook's: leave it out so that it never shows in a diff.
    return re.sub(r"(?m)^#\s+jupytext_version: .*\n", "", text, count=1)


def read_source(path: Path) -> NotebookNode:
    return text_to_notebook(Path(path).read_text(encoding="utf-8"))


def read_notebook(path: Path) -> NotebookNode:
    return nbformat.read(path, as_version=4)


def write_notebook(path: Path, nb: NotebookNode) -> None:
    Path(path).write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


# --- the learner's notebook ---------------------------------------------------------------------

def strip_code_solutions(source: str) -> str:
    """Replace every marked answer in a code cell by a stub at the marker's indentation."""
    out, inside = [], False
    for line in source.splitlines(keepends=True):
        stripped = line.strip()
        if stripped == CODE_BEGIN:
            if inside:
                raise ValueError(f"nested {CODE_BEGIN!r} in:\n{source}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{CODE_STUB}\n")
        elif stripped == CODE_END:
            if not inside:
                raise ValueError(f"{CODE_END!r} without {CODE_BEGIN!r} in:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{CODE_BEGIN!r} is never closed in:\n{source}")
    return "".join(out)


def strip_markdown_solutions(source: str) -> str:
    """Replace every marked answer in a markdown cell by a placeholder."""
    pattern = re.compile(re.escape(MD_BEGIN) + r".*?" + re.escape(MD_END), re.DOTALL)
    stripped = pattern.sub(MD_STUB, source)
    if MD_BEGIN in stripped or MD_END in stripped:
        raise ValueError(f"unbalanced solution markers in:\n{source}")
    return stripped


def learner_notebook(solved: NotebookNode) -> NotebookNode:
    """The learner's version of a solved notebook: answers stubbed, check cells expected to fail, no outputs."""
    nb = copy.deepcopy(solved)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_code_solutions(cell.source)
            cell.outputs, cell.execution_count = [], None
            tags = cell.metadata.get("tags", [])
            if CHECK_TAG in tags and RAISES_TAG not in tags:
                cell.metadata["tags"] = [*tags, RAISES_TAG]
        elif cell.cell_type == "markdown":
            cell.source = strip_markdown_solutions(cell.source)
    return nb


def cell_sources(nb: NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    """(type, source, tags) of every cell: what a committed notebook must share with its text source."""
    return [(cell.cell_type, cell.source, tuple(sorted(cell.metadata.get("tags", [])))) for cell in nb.cells]


def count_exercises(nb: NotebookNode) -> int:
    """The number of check cells, one per exercise."""
    return sum(CHECK_TAG in cell.metadata.get("tags", []) for cell in nb.cells)


# --- keeping the outputs of unchanged cells -----------------------------------------------------

def keep_outputs(new: NotebookNode, old: NotebookNode) -> list[int]:
    """Copy into `new` the outputs of `old`'s cells whose type and source are unchanged.

    Cells are aligned as a diff aligns lines, so inserting or deleting a cell keeps the outputs of
    the cells around it. Returns the indices of `new`'s code cells that have no outputs yet.
    """
    keys = lambda nb: [(cell.cell_type, cell.source) for cell in nb.cells]  # noqa: E731
    matcher = difflib.SequenceMatcher(None, keys(old), keys(new), autojunk=False)
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            old_cell, new_cell = old.cells[block.a + offset], new.cells[block.b + offset]
            if new_cell.cell_type == "code":
                new_cell.outputs, new_cell.execution_count = old_cell.outputs, old_cell.execution_count
    if "language_info" in old.metadata:
        new.metadata["language_info"] = old.metadata["language_info"]
    return [i for i, cell in enumerate(new.cells) if cell.cell_type == "code" and cell.execution_count is None and cell.source.strip()]


# --- outputs fit to commit ----------------------------------------------------------------------

# A tqdm bar: "desc:  42%|████▏     | 42/100 [00:05<00:07, 8.1it/s]", or without a total "desc: 42it [00:05, 8.1it/s]".
BAR = re.compile(r"^(?P<desc>.*?)(?::\s*)?\s*(?:\d{1,3}%\|[^|]*\|\s*(?P<n>[\d.]+[kMGTPEZY]?)/\S+|(?P<count>[\d.]+[kMGTPEZY]?)\S*)\s\[\d+:\d\d")
SCALE = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24}


def _bar_position(line: str) -> tuple[str, float] | None:
    """(description, steps done) of a progress-bar line, or None for any other line."""
    match = BAR.match(line)
    if not match:
        return None
    count = match["n"] or match["count"]
    number, scale = (count[:-1], SCALE[count[-1]]) if count[-1] in SCALE else (count, 1)
    try:
        return match["desc"].strip(), float(number) * scale
    except ValueError:  # a lone "."
        return None


def _same_bar(before: str, after: str) -> bool:
    """Whether `after` redraws the progress bar `before` (same description, count not going down)."""
    a, b = _bar_position(before), _bar_position(after)
    return a is not None and b is not None and a[0] == b[0] and b[1] >= a[1]


def _last_states(line: str) -> list[str]:
    """The last state of each progress bar drawn on one line with carriage returns.

    A terminal shows only what follows the last carriage return; here a bar ends where it is cleared
    (a blank state) or where another bar starts, and each keeps its last state.
    """
    states, current = [], None
    for part in line.split("\r"):
        part = part.rstrip()
        if not part.strip():
            if current is not None:
                states.append(current)
            current = None
            continue
        if current is not None and _bar_position(current) and _bar_position(part) and not _same_bar(current, part):
            states.append(current)
        current = part
    return states + ([current] if current is not None else [])


def collapse_progress_text(text: str) -> str:
    """A stream's text with one line per progress bar: the last state of each, and no line printed twice in a row."""
    lines: list[str] = []
    pieces = text.split("\n")
    for index, piece in enumerate(pieces):
        states = _last_states(piece) if "\r" in piece else [piece]
        for line in states:
            if not (lines and line == lines[-1] and _bar_position(line)):
                lines.append(line)
        if "\r" in piece and index == len(pieces) - 1 and lines:
            lines.append("")  # the last bar's line ends like every other line
    return "\n".join(lines)


def _widget_bar_text(output: NotebookNode, widgets: dict) -> str:
    """The final line of a tqdm widget bar (an ipywidgets HBox of text, progress, text), from the saved widget state."""
    model_id = output.data["application/vnd.jupyter.widget-view+json"].get("model_id")
    fallback = output.data.get("text/plain", "")
    box = widgets.get(model_id, {}).get("state", {})
    children = [widgets.get(str(child).removeprefix("IPY_MODEL_"), {}).get("state", {}) for child in box.get("children", [])]
    if len(children) != 3 or "max" not in children[1]:
        return fallback
    left, bar, right = children
    done = min(max(bar.get("value", 0) / (bar["max"] or 1), 0.0), 1.0)
    cells = round(done * 10)
    text = f"{left.get('value', '')}|{'█' * cells}{' ' * (10 - cells)}|{right.get('value', '')}"
    return html.unescape(text).replace("\u2007", " ")  # tqdm pads with figure spaces and escapes HTML


def _join_streams(outputs: list[NotebookNode]) -> list[NotebookNode]:
    """Successive stream outputs of one name joined into one, as a notebook shows them."""
    joined: list[NotebookNode] = []
    for output in outputs:
        if output.output_type == "stream" and joined and joined[-1].output_type == "stream" and joined[-1].name == output.name:
            joined[-1] = nbformat.v4.new_output("stream", name=output.name, text=joined[-1].text + output.text)
        else:
            joined.append(output)
    return joined


def collapse_progress(outputs: list[NotebookNode], widgets: dict | None = None) -> list[NotebookNode]:
    """A cell's outputs with each progress bar as one line of text: a widget bar becomes its final
    line, and the carriage-return redraws of a text bar come down to its last state."""
    outputs = [
        nbformat.v4.new_output("stream", name="stderr", text=_widget_bar_text(output, widgets or {}) + "\n")
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {}) else copy.deepcopy(output)
        for output in outputs
    ]
    for _ in range(2):  # dropping a stream that came down to nothing can bring two of one name together
        outputs = _join_streams(outputs)
        for output in outputs:
            if output.output_type == "stream":
                output.text = collapse_progress_text(output.text)
        outputs = [output for output in outputs if output.output_type != "stream" or output.text]
    return outputs


def machine_paths() -> list[tuple[str, str]]:
    """(path, placeholder) for where this machine keeps the course, Python, its packages and temporary files; longest first."""
    paths = {
        str(ROOT): "<course>",
        sysconfig.get_paths()["purelib"]: "<packages>",
        sysconfig.get_paths()["platlib"]: "<packages>",
        sys.prefix: "<python>",
        sys.base_prefix: "<python>",
        tempfile.gettempdir(): "<tmp>",
        str(Path.home()): "~",
    }
    return sorted(((path, name) for path, name in paths.items() if len(Path(path).parts) > 1), key=lambda item: -len(item[0]))


def without_machine_paths(value, paths: list[tuple[str, str]]):
    """`value` (an output's text, or a structure of them) with every machine path replaced by its placeholder."""
    if isinstance(value, str):
        for path, placeholder in paths:
            value = re.sub(re.escape(path) + r"(?![\w.-])", lambda _: placeholder, value)
        return value
    if isinstance(value, list):
        return [without_machine_paths(item, paths) for item in value]
    if isinstance(value, dict):
        return type(value)({key: value[key] if key.startswith("image/") else without_machine_paths(value[key], paths) for key in value})
    return value


def clean_outputs(nb: NotebookNode) -> None:
    """Make an executed notebook fit to commit: one line per progress bar, no machine paths, no timings or widget state."""
    widgets = nb.metadata.pop("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    paths = machine_paths()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [without_machine_paths(output, paths) for output in collapse_progress(cell.outputs, widgets)]


# --- running ------------------------------------------------------------------------------------

def execute(nb: NotebookNode, folder: Path, timeout: int = 1800) -> None:
    """Run a notebook top to bottom in `folder` (the preset comes from MINILM_PRESET), then clean its outputs."""
    import nbclient

    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(folder)}}).execute()
    clean_outputs(nb)


def changed_lines(text: str, cells: list[int]) -> str:
    """Where the given cells start in the text source, for a teacher to find them."""
    markers = [number for number, line in enumerate(text.splitlines(), 1) if line.startswith("# %%")]
    return ", ".join(str(markers[i]) if i < len(markers) else f"cell {i}" for i in cells)


def build(source: Path, run: bool) -> bool:
    """Write the solved and the learner's notebook of one text source, executed or keeping the outputs that still hold.
    Returns whether a code cell is left to execute."""
    text = source.read_text(encoding="utf-8")
    solved = text_to_notebook(text)
    canonical = notebook_to_text(solved)
    if canonical != text:
        source.write_text(canonical, encoding="utf-8")
        print(f"{source.relative_to(ROOT)}: rewritten in jupytext's canonical form (blank lines between cells)")
    name, left_to_run = source.with_suffix(".ipynb").name, False
    for folder, nb in ((SOLUTIONS, solved), (NOTEBOOKS, learner_notebook(solved))):
        path = folder / name
        where = path.relative_to(ROOT)
        if run:
            print(f"executing {where} with MINILM_PRESET={os.environ['MINILM_PRESET']} ...", flush=True)
            execute(nb, folder)
            write_notebook(path, nb)
            print(f"wrote {where}, executed ({count_exercises(solved)} exercises)")
            continue
        stale = keep_outputs(nb, read_notebook(path)) if path.exists() else [
            i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell.source.strip()]
        clean_outputs(nb)
        write_notebook(path, nb)
        left_to_run |= bool(stale)
        if stale:
            cells = "1 code cell changed and needs" if len(stale) == 1 else f"{len(stale)} code cells changed and need"
            print(f"wrote {where}: {cells} executing (at line {changed_lines(canonical, stale)} of {source.relative_to(ROOT)})")
        else:
            print(f"wrote {where}: every cell kept its outputs")
    return left_to_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook numbers or name prefixes (default: all), e.g. 01")
    parser.add_argument("--execute", action="store_true", help="run both notebooks and write them with their outputs")
    parser.add_argument("--preset", default="cpu", help="MINILM_PRESET for --execute (default: cpu)")
    args = parser.parse_args(argv)
    sources = sorted(SOLUTIONS.glob("[0-9][0-9]_*.py"))
    if args.names:
        sources = [p for p in sources if any(p.name.startswith(n) for n in args.names)]
    if not sources:
        print(f"no text source in solutions/ matches {args.names}", file=sys.stderr)
        return 1
    if args.execute:
        os.environ["MINILM_PRESET"] = args.preset  # the kernels inherit it
    left_to_run = [build(source, args.execute) for source in sources]
    if any(left_to_run):
        print("the changed cells have no outputs until you run this again with --execute")
    return 0


if __name__ == "__main__":
    sys.exit(main())
