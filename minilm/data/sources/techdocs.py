"""Technical documents, gathered offline from what is installed on this machine.

Real pretraining corpora mix in technical writing (manuals, reference pages, API docs). Every
Python installation ships a small library of it: the language reference topics behind
``help("if")`` (in `pydoc_data.topics`), and the docstrings of the standard library and of the
installed packages. This module turns both into documents of the "docs" domain:

- one document per reference topic, ``source = "pydoc:<topic>"``;
- one document per module, written like a reference page (the module's docstring, then each
  documented function and class with its signature and docstring), ``source = "module:<name>"``.

To read a module's docstrings we must import it, and importing runs code. So we never import the
modules that open windows or browsers or touch the terminal (a deny list), we silence warnings,
and we drop any module that prints while it loads. Every module we pass over is counted with its
reason in the caller's `skipped` counter, so the pipeline can show what was left out and why.

The selection is a seeded shuffle of a sorted list of candidates: the same `n` and `seed` give the
same documents on the same machine (the text itself depends on the installed versions).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import os
import pkgutil
import random
import re
import sys
import sysconfig
import textwrap
import warnings
from collections import Counter
from typing import Iterator

from minilm.data.documents import Document

# Modules we never import, with the reason we count. A name covers its submodules too.
DENIED = {
    "antigravity": "side_effects",  # opens a web browser
    "this": "side_effects",  # prints the Zen of Python
    "idlelib": "gui",
    "tkinter": "gui",
    "turtle": "gui",
    "turtledemo": "gui",
    "readline": "side_effects",  # may write escape codes to the terminal
    "rlcompleter": "side_effects",  # installs itself as the terminal's completer
    "lib2to3": "side_effects",  # writes grammar caches beside itself
    "distutils": "deprecated",  # replaced by setuptools' copy in most environments
    "pydoc_data": "duplicate",  # the reference topics, already used directly
    "xxlimited": "example",  # template extension modules with no real documentation
    "xxlimited_35": "example",
    "xxsubtype": "example",
    "matplotlib.backends": "gui",  # binds to Qt, Tk, GTK, ... when imported
    "tqdm.tk": "gui",
    "tqdm.gui": "gui",
    "numpy.distutils": "deprecated",
    "safetensors.torch": "framework",  # each loads a deep-learning framework: seconds per import
    "safetensors.paddle": "framework",
    "safetensors.tensorflow": "framework",
    "safetensors.flax": "framework",
    "safetensors.mlx": "framework",
}

# Installed packages that get reference pages too, submodules included (skipped if missing).
PACKAGES = ("numpy", "regex", "tqdm", "matplotlib", "tokenizers", "safetensors", "tiktoken", "datasketch")

TEST_PARTS = {"test", "tests", "idle_test", "testing", "conftest"}
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # object reprs change from run to run
_PRINTED: set[str] = set()  # modules seen printing on import: skipped again once they are loaded


def iter_tech_docs(
    n: int,
    seed: int,
    *,
    skipped: Counter | None = None,
    max_chars: int = 12_000,
    min_chars: int = 200,
) -> Iterator[Document]:
    """Yield up to `n` technical documents (reference topics and module reference pages).

    Module pages stop growing at `max_chars` (whole entries only); pages with fewer than
    `min_chars` characters of docstrings are skipped as "too_short". Skips decided by the name
    (private, test, denied) are counted for every candidate; the others for the modules tried.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    skipped = Counter() if skipped is None else skipped
    from pydoc_data.topics import topics

    candidates = [("pydoc", name) for name in sorted(topics)]
    candidates += [("module", name) for name in module_names(skipped)]
    random.Random(seed).shuffle(candidates)

    count = 0
    for kind, name in candidates:
        if count >= n:
            return
        text = topics[name].strip() if kind == "pydoc" else module_page(name, skipped, max_chars, min_chars)
        if text is None:
            continue
        yield Document(id=f"docs-{count:05d}", domain="docs", text=text, source=f"{kind}:{name}")
        count += 1


def module_names(skipped: Counter) -> list[str]:
    """Sorted names of the public modules to document: the standard library and the installed
    `PACKAGES`, with the submodules of every package, found on disk without importing anything."""
    stdlib = sysconfig.get_paths()["stdlib"]
    names = []
    for top in sorted(sys.stdlib_module_names):
        names.append(top)
        if os.path.isfile(os.path.join(stdlib, top, "__init__.py")):
            names += _submodules(top, os.path.join(stdlib, top))
    for top in PACKAGES:
        spec = importlib.util.find_spec(top)
        if spec is None:
            skipped["unavailable"] += 1
            continue
        names.append(top)
        for folder in spec.submodule_search_locations or []:
            names += _submodules(top, folder)

    kept = []
    for name in sorted(set(names)):
        parts = name.split(".")
        prefixes = [".".join(parts[: i + 1]) for i in range(len(parts))]  # a.b.c -> a, a.b, a.b.c
        denied = [DENIED[prefix] for prefix in prefixes if prefix in DENIED]
        if any(part.startswith("_") for part in parts):
            skipped["private"] += 1
        elif any(part in TEST_PARTS or part.startswith("test_") for part in parts):
            skipped["test"] += 1
        elif denied:
            skipped[denied[0]] += 1
        else:
            kept.append(name)
    return kept


def _submodules(package: str, path: str) -> list[str]:
    names = []
    for info in pkgutil.iter_modules([path]):
        name = f"{package}.{info.name}"
        names.append(name)
        if info.ispkg:
            names += _submodules(name, os.path.join(path, info.name))
    return names


def safe_import(name: str, skipped: Counter):
    """Import a module quietly; None (with a counted reason) if it fails or prints while loading."""
    if name in _PRINTED:
        skipped["prints"] += 1
        return None
    output = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        skipped["unavailable" if e.name == name else "import_error"] += 1
        return None
    except (Exception, SystemExit):  # a module may fail in any way on this platform
        skipped["import_error"] += 1
        return None
    if output.getvalue():
        _PRINTED.add(name)
        skipped["prints"] += 1
        return None
    return module


def module_page(name: str, skipped: Counter, max_chars: int = 12_000, min_chars: int = 200) -> str | None:
    """A module's reference page: its docstring, then its documented functions and classes.

    None (counted) when the module cannot be imported, or when its docstrings hold fewer than
    `min_chars` characters: a page of bare signatures teaches a model little English.
    """
    module = safe_import(name, skipped)
    if module is None:
        return None
    doc = _doc(module)
    title = f"{name} (module)"
    page = [title, "=" * len(title), ""] + ([doc, ""] if doc else [])
    size, prose = len(doc), len(doc)
    functions, classes = [], []
    for member_name, member in _public_members(module):
        if inspect.isclass(member):
            classes.append(_class_entry(member_name, member))
        elif inspect.isroutine(member):
            functions.append(_function_entry(member_name, member))
    for heading, entries in (("Functions", functions), ("Classes", classes)):
        section = ["", heading, "-" * len(heading), ""]
        for text, entry_prose in entries:
            if not entry_prose:
                continue
            if size + len(text) > max_chars:
                break
            section += [text, ""]
            size, prose = size + len(text), prose + entry_prose
        if len(section) > 4:
            page += section
    if prose == 0:
        skipped["undocumented"] += 1
        return None
    if prose < min_chars:
        skipped["too_short"] += 1
        return None
    return ADDRESS.sub("", "\n".join(page).strip()) + "\n"


def _public_members(module) -> list[tuple[str, object]]:
    """The members a reader of the module's reference would look up.

    `__all__` when the module declares it, else the public names defined in the module itself
    (re-exports from elsewhere are documented on their own page), in alphabetical order: some
    modules build `__all__` from a set, whose order changes from run to run. We read
    `vars(module)` rather than `getattr`, so that no lazy attribute loader runs.
    """
    namespace = vars(module)
    public = namespace.get("__all__")
    if isinstance(public, (list, tuple, set, frozenset)):
        names = {name for name in public if isinstance(name, str) and name in namespace}
    else:
        names = {
            name
            for name, value in namespace.items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
        }
    return [(name, namespace[name]) for name in sorted(names)]


def _function_entry(name: str, function) -> tuple[str, int]:
    """The entry of one function, and how many characters of docstring it holds (0: no entry)."""
    doc = _doc(function)
    if not doc:
        return "", 0
    return f"{name}{_signature(function)}\n{textwrap.indent(doc, '    ')}", len(doc)


def _class_entry(name: str, cls) -> tuple[str, int]:
    """The entry of one class with its documented public methods, and its docstring characters."""
    doc = _doc(cls)
    lines = [f"class {name}{_signature(cls)}"] + ([textwrap.indent(doc, "    ")] if doc else [])
    prose = len(doc)
    for method_name, method in sorted(vars(cls).items()):
        if method_name.startswith("_"):
            continue
        if isinstance(method, (staticmethod, classmethod)):
            method = method.__func__
        if inspect.isroutine(method):
            text, method_prose = _function_entry(f"{name}.{method_name}", method)
            if method_prose:
                lines += ["", textwrap.indent(text, "    ")]
                prose += method_prose
    return "\n".join(lines), prose


def _doc(obj) -> str:
    """The object's own docstring, cleaned (never the one it inherits from `object`)."""
    try:
        doc = obj.__doc__
    except Exception:
        return ""
    if not isinstance(doc, str):
        return ""
    if inspect.isclass(obj) and doc == object.__doc__:
        return ""
    return inspect.cleandoc(doc).strip()


def _signature(obj) -> str:
    """``(a, b=1, *, key=...)``: long or machine-specific default values are shown as ``...``.

    A default such as ``os.environ`` would otherwise copy this machine's environment (and any
    secret in it) into the corpus.
    """
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    parameters = []
    for parameter in signature.parameters.values():
        if parameter.default is not parameter.empty:
            if not _shown_default(parameter.default):
                parameter = parameter.replace(default=_Elided())
        parameters.append(parameter)
    try:
        return str(signature.replace(parameters=parameters, return_annotation=signature.empty))
    except (TypeError, ValueError):
        return "(...)"


def _shown_default(value) -> bool:
    """Whether a default value is short, stable and free of this machine's paths."""
    try:
        shown = repr(value)
    except Exception:
        return False
    looks_like_path = isinstance(value, os.PathLike) or (isinstance(value, str) and "/" in value and len(value) > 1)
    return len(shown) <= 40 and not ADDRESS.search(shown) and not looks_like_path


class _Elided:
    def __repr__(self) -> str:
        return "..."
