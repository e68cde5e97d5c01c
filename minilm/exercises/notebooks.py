"""Learners' notebooks are generated from the solved ones, as teachers do with nbgrader.

The solved notebook in `solutions/` is the one a teacher edits. In its code cells, each answer sits
between two marker lines::

    def mean_word_length(text):
        ### BEGIN SOLUTION
        words = text.split()
        return sum(len(w) for w in words) / len(words)
        ### END SOLUTION

and in markdown cells between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->``. The learner's
notebook in `notebooks/` is the same notebook with each answer replaced by a stub, and with the
check cells (tagged ``check``) also tagged ``raises-exception``, so that the unsolved notebook still
runs top to bottom under nbval. A test compares the two, so they cannot drift apart.

Run ``python -m minilm.exercises.notebooks`` after editing a solved notebook; add ``--execute`` to
re-run both with the `cpu` preset so that they are committed with their outputs.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import sys
from pathlib import Path

CODE_BEGIN, CODE_END = "### BEGIN SOLUTION", "### END SOLUTION"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
CODE_STUB = 'raise NotImplementedError("Exercise: write your code here")'
MD_STUB = "*Your answer here.*"
CHECK_TAG, RAISES_TAG = "check", "raises-exception"

ROOT = Path(__file__).resolve().parents[2]


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


def learner_notebook(solved: dict) -> dict:
    """The learner's version of a solved notebook (a parsed .ipynb dict): answers stubbed, outputs cleared."""
    nb = copy.deepcopy(solved)
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code":
            cell["source"] = strip_code_solutions(source)
            cell["outputs"], cell["execution_count"] = [], None
            tags = cell.setdefault("metadata", {}).setdefault("tags", [])
            if CHECK_TAG in tags and RAISES_TAG not in tags:
                tags.append(RAISES_TAG)
        elif cell["cell_type"] == "markdown":
            cell["source"] = strip_markdown_solutions(source)
    return nb


def cell_sources(nb: dict) -> list[tuple[str, str, tuple[str, ...]]]:
    """(type, source, tags) of every cell: what must agree between the two versions."""
    rows = []
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        rows.append((cell["cell_type"], source, tuple(sorted(cell.get("metadata", {}).get("tags", [])))))
    return rows


def count_exercises(nb: dict) -> int:
    """The number of check cells, one per exercise."""
    return sum(1 for cell in nb["cells"] if CHECK_TAG in cell.get("metadata", {}).get("tags", []))


def read_notebook(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_notebook(path: Path, nb: dict) -> None:
    from minilm.files import atomic_write

    atomic_write(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def execute(path: Path, preset: str = "cpu", timeout: int = 1800) -> None:
    """Run a notebook top to bottom in its folder with the given preset, and save it with its outputs."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("MINILM_PRESET")
    os.environ["MINILM_PRESET"] = preset
    try:
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("MINILM_PRESET", None)
        else:
            os.environ["MINILM_PRESET"] = env_before
    text = nbformat.writes(nb)
    # A safety net: the committed outputs must not show where this machine keeps the course.
    text = text.replace(str(ROOT), "<course>")
    write_notebook(path, json.loads(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook names or prefixes (default: all), e.g. 01")
    parser.add_argument("--execute", action="store_true", help="re-run both versions with the preset and keep the outputs")
    parser.add_argument("--preset", default="cpu")
    args = parser.parse_args(argv)
    solved_paths = sorted((ROOT / "solutions").glob("*.ipynb"))
    if args.names:
        solved_paths = [p for p in solved_paths if any(p.name.startswith(n) for n in args.names)]
    if not solved_paths:
        print("no solved notebooks match", args.names, file=sys.stderr)
        return 1
    for solved_path in solved_paths:
        learner_path = ROOT / "notebooks" / solved_path.name
        write_notebook(learner_path, learner_notebook(read_notebook(solved_path)))
        print(f"wrote notebooks/{learner_path.name} ({count_exercises(read_notebook(solved_path))} exercises)")
        if args.execute:
            for path in (solved_path, learner_path):
                print(f"executing {path.parent.name}/{path.name} with preset {args.preset} ...", flush=True)
                execute(path, args.preset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
