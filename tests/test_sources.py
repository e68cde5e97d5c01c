"""The offline technical-documents and code sources: determinism, counted skips, exact text."""

from __future__ import annotations

import re
import sys
import sysconfig
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from minilm.data.sources.code import iter_code_files
from minilm.data.sources.techdocs import iter_tech_docs, module_page

STOP_WORDS = {"the", "a", "an", "of", "to", "is", "and", "in", "it", "that", "for", "be", "or", "if", "this",
              "are", "as", "with", "by", "on", "not", "from", "which", "returns", "return"}  # fmt: skip
STDLIB = Path(sysconfig.get_paths()["stdlib"])


def english_share(text: str) -> float:
    words = re.findall(r"[a-z]+", text.lower())
    return sum(word in STOP_WORDS for word in words) / max(len(words), 1)


@pytest.fixture(scope="module")
def docs_and_skips():
    skipped = Counter()
    return list(iter_tech_docs(40, seed=3, skipped=skipped)), skipped


# ---------------------------------------------------------------------------------------------
# technical documents


def test_tech_docs_are_deterministic_and_seeded(docs_and_skips):
    docs, _ = docs_and_skips
    again = list(iter_tech_docs(40, seed=3))
    assert [(d.id, d.source, d.text) for d in docs] == [(d.id, d.source, d.text) for d in again]
    other = list(iter_tech_docs(40, seed=4))
    assert [d.source for d in other] != [d.source for d in docs]


def test_tech_docs_mix_reference_topics_and_module_pages(docs_and_skips):
    from pydoc_data.topics import topics

    docs, _ = docs_and_skips
    assert len(docs) == 40 and len({d.id for d in docs}) == 40 and len({d.source for d in docs}) == 40
    assert {d.domain for d in docs} == {"docs"}
    kinds = Counter(d.source.split(":")[0] for d in docs)
    assert set(kinds) == {"pydoc", "module"}
    for doc in docs:
        if doc.source.startswith("pydoc:"):
            assert doc.text == topics[doc.source[len("pydoc:") :]].strip()
        else:
            name = doc.source[len("module:") :]
            assert doc.text.startswith(f"{name} (module)\n")
            assert not any(part.startswith("_") or part in ("test", "tests") for part in name.split("."))


def test_tech_docs_are_non_empty_english(docs_and_skips):
    docs, _ = docs_and_skips
    for doc in docs:
        assert len(doc.text) >= 200, doc.source
        assert english_share(doc.text) > 0.04, doc.source
    assert sum(english_share(d.text) for d in docs) / len(docs) > 0.2
    assert not any(re.search(r" at 0x[0-9a-f]+", d.text) for d in docs)  # no run-specific reprs


def test_tech_docs_count_their_skips_and_never_import_unsafe_modules(docs_and_skips):
    _, skipped = docs_and_skips
    assert skipped["test"] > 0 and skipped["private"] > 0 and skipped["gui"] > 0 and skipped["side_effects"] > 0
    assert "antigravity" not in sys.modules and "idlelib" not in sys.modules and "turtle" not in sys.modules


@pytest.fixture
def fake_modules(tmp_path, monkeypatch):
    (tmp_path / "minilm_fake_printer.py").write_text('print("hello from import")\n')
    (tmp_path / "minilm_fake_broken.py").write_text("raise RuntimeError('cannot load here')\n")
    (tmp_path / "minilm_fake_bare.py").write_text("def f(x):\n    return x\n")
    (tmp_path / "minilm_fake_ref.py").write_text(textwrap.dedent('''
        """A small module that shows how reference pages are written for the corpus."""
        import os

        SENTINEL = object()

        def scale(values, factor=2, *, env=os.environ, marker=SENTINEL, folder="/home/ann/data"):
            """Multiply every value by the factor and return a new list of the results."""
            return [v * factor for v in values]

        def undocumented(x):
            return x

        class Counter:
            """Count the things that you add to it, one at a time, in a running total."""

            def add(self, thing):
                """Add one thing to the running total kept by this counter."""

            def _private(self):
                """Not part of the reference."""
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m.startswith("minilm_fake_")]:
        del sys.modules[name]


def test_module_page_reads_like_a_reference(fake_modules):
    skipped = Counter()
    page = module_page("minilm_fake_ref", skipped, min_chars=50)
    assert page.startswith("minilm_fake_ref (module)\n========================\n\nA small module")
    assert "Functions\n---------\n\nscale(values, factor=2, *, env=..., marker=..., folder=...)\n    Multiply" in page
    assert "class Counter()\n    Count the things" in page
    assert "    Counter.add(self, thing)\n        Add one thing" in page
    assert "undocumented" not in page and "_private" not in page
    assert "HOME" not in page and "/home/ann" not in page  # no environment or paths from defaults
    assert skipped == Counter()
    assert module_page("minilm_fake_ref", skipped, max_chars=200, min_chars=50).count("Counter.add") == 0


def test_module_page_skips_are_counted(fake_modules):
    skipped = Counter()
    assert module_page("minilm_fake_printer", skipped) is None
    assert module_page("minilm_fake_printer", skipped) is None  # loaded now, but still skipped
    assert module_page("minilm_fake_broken", skipped) is None
    assert module_page("minilm_fake_bare", skipped) is None
    assert module_page("minilm_fake_missing", skipped) is None
    assert module_page("minilm_fake_ref", skipped, min_chars=10_000) is None
    assert skipped == Counter(prints=2, import_error=1, undocumented=1, unavailable=1, too_short=1)


# ---------------------------------------------------------------------------------------------
# code


def test_code_files_are_deterministic_exact_and_not_tests():
    skipped = Counter()
    files = list(iter_code_files(25, seed=5, skipped=skipped))
    again = list(iter_code_files(25, seed=5))
    assert [(d.source, d.text) for d in files] == [(d.source, d.text) for d in again]
    assert [d.source for d in iter_code_files(25, seed=6)] != [d.source for d in files]
    assert len(files) == 25 and {d.domain for d in files} == {"code"} and len({d.id for d in files}) == 25
    for doc in files:
        parts = doc.source.split("/")
        assert doc.source.endswith(".py") and not parts[-1].startswith("test_")
        assert not {"test", "tests", "idle_test", "site-packages"} & set(parts)
        assert doc.text.encode("utf-8") == (STDLIB / doc.source).read_bytes()
    assert skipped["test"] > 100  # the standard library's own test suite


def test_code_skips_on_a_small_tree(tmp_path):
    files = {
        "a.py": b"def f():\n\treturn 1\n",
        "pkg/__init__.py": b"",
        "pkg/b.py": b"class B:\r\n    x = 'caf\xc3\xa9'\r\n",
        "pkg/tests/t.py": b"assert True\n",
        "test/helper.py": b"x = 1\n",
        "test_top.py": b"x = 1\n",
        "idlelib/idle_test/z.py": b"x = 1\n",
        "site-packages/foo/foo.py": b"x = 1\n",
        "big.py": b"x = 1\n" * 100,
        "latin.py": b"name = 'caf\xe9'\n",
        "notes.txt": b"not python\n",
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    skipped = Counter()
    docs = list(iter_code_files(100, seed=0, root=tmp_path, max_bytes=300, skipped=skipped))
    assert sorted(d.source for d in docs) == ["a.py", "pkg/b.py"]
    texts = {d.source: d.text for d in docs}
    assert texts == {"a.py": "def f():\n\treturn 1\n", "pkg/b.py": "class B:\r\n    x = 'café'\r\n"}
    assert skipped == Counter(test=4, too_large=1, not_utf8=1, empty=1)
    assert len(list(iter_code_files(1, seed=0, root=tmp_path, max_bytes=300))) == 1


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="n must be >= 0"):
        list(iter_code_files(-1, seed=0))
    with pytest.raises(ValueError, match="n must be >= 0"):
        list(iter_tech_docs(-1, seed=0))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        list(iter_code_files(1, seed=0, root=tmp_path / "missing"))


def test_module_pages_do_not_depend_on_the_string_hash_seed():
    """numpy builds `__all__` from sets, whose order changes with PYTHONHASHSEED from run to run."""
    import hashlib
    import os
    import subprocess

    script = (
        "from collections import Counter; from minilm.data.sources.techdocs import module_page; "
        "print(module_page('numpy', Counter()))"
    )
    pages = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        root = Path(__file__).parent.parent
        result = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        pages.append(hashlib.sha256(result.stdout.encode()).hexdigest())
    assert pages[0] == pages[1]
