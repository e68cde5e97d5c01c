"""Code, gathered offline: the Python source files of the local standard library.

Code corpora (The Stack, GitHub dumps) are crawled file by file, and the same chores apply to
our small one: leave out what is not the code we want (installed third-party packages, test
suites), files too large to be useful (generated tables), and files we cannot read as text. Each
file left out is counted with its reason in the caller's `skipped` counter.

The text is kept byte for byte: in Python the indentation is the syntax, so the cleaning steps
that collapse whitespace in prose must never touch it. `source` is the file's path relative to
the standard library folder, e.g. ``json/decoder.py``.

The selection is a seeded shuffle of the sorted list of files: the same `n` and `seed` give the
same documents on the same machine.
"""

from __future__ import annotations

import os
import random
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Iterator

from minilm.data.documents import Document

# Folders that hold installed packages rather than the standard library.
PACKAGE_DIRS = {"site-packages", "dist-packages", "__pycache__"}
TEST_DIRS = {"test", "tests", "idle_test"}


def iter_code_files(
    n: int,
    seed: int,
    *,
    root: str | os.PathLike | None = None,
    max_bytes: int = 100_000,
    skipped: Counter | None = None,
) -> Iterator[Document]:
    """Yield up to `n` Python files of the standard library (or of `root`) as "code" documents.

    Skips counted for every file of the tree: "test" (in a test folder or named ``test_*.py``),
    "too_large" (over `max_bytes`). Counted for the files read: "not_utf8", "empty".
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    skipped = Counter() if skipped is None else skipped
    root = Path(root if root is not None else sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; pass the folder of Python sources as `root`")

    order = python_files(root, max_bytes, skipped)
    random.Random(seed).shuffle(order)
    count = 0
    for relative in order:
        if count >= n:
            return
        try:
            text = (root / relative).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            skipped["not_utf8"] += 1
            continue
        if not text.strip():
            skipped["empty"] += 1
            continue
        yield Document(id=f"code-{count:05d}", domain="code", text=text, source=relative)
        count += 1


def python_files(root: Path, max_bytes: int, skipped: Counter) -> list[str]:
    """Sorted relative paths (with ``/``) of the .py files under `root` worth reading."""
    kept = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in PACKAGE_DIRS)
        folder = Path(folder)
        in_tests = bool(TEST_DIRS.intersection(folder.relative_to(root).parts))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = folder / name
            if in_tests or name.startswith("test_"):
                skipped["test"] += 1
            elif path.stat().st_size > max_bytes:
                skipped["too_large"] += 1
            else:
                kept.append(path.relative_to(root).as_posix())
    return sorted(kept)
