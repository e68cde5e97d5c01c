"""Build the real-text sample (`sample.jsonl.gz`) from what one development machine had installed.

Run once, by hand, during development: ``python -m minilm.data.real.build``. The stored sample is
the source of truth: other machines have other files, so this script is kept to show how the sample
was made and to remake it on a machine like that one, not to run in the course.

Every item comes from text that is permissively licensed (MIT, BSD, Apache-2.0, ISC, PSF) and that
the machine already held: the HTML documentation of the Rust toolchain (rustup) and of Node.js,
libxslt's HTML reference, the README of installed Python packages (their METADATA) and Python
source files of those packages. HTML pages go through the course's own extractor
(`extract.extract_text`), as crawled pages do. Long texts are cut at a line boundary
(`MAX_CHARS`), so that the sample stays a few hundred KB.
"""

from __future__ import annotations

import email
import gzip
import json
import random
import sysconfig
from pathlib import Path

from minilm.data.sources import extract

RUST = Path("/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html")
NODE = Path("/usr/share/doc/nodejs")
XSLT = Path("/usr/share/doc/libxslt1-dev/html")
SITE = Path(sysconfig.get_paths()["purelib"])  # the site-packages of the Python that runs this script
OUT = Path(__file__).with_name("sample.jsonl.gz")
MAX_CHARS = 8_000
SEED = 2026

RUST_LICENCE = "MIT OR Apache-2.0 (Rust project documentation)"
NODE_LICENCE = "MIT (Node.js documentation)"
XSLT_LICENCE = "MIT (libxslt)"
PERMISSIVE = ("MIT", "BSD", "Apache", "ISC", "PSF", "Python Software Foundation")
# Source files that say they were generated, or hold data tables: the code rules exist for these.
GENERATED_CODE = ["pygments/lexers/_mapping.py", "idna/idnadata.py", "pygments/lexers/_php_builtins.py",
                  "matplotlib/_cm_listed.py", "pyparsing/unicode.py", "fontTools/agl.py",
                  "babel/languages.py", "pygments/lexers/_lasso_builtins.py"]


def cut(text: str, limit: int = MAX_CHARS) -> tuple[str, bool]:
    """`text` cut at the last line break before `limit` characters; whether it was cut."""
    if len(text) <= limit:
        return text, False
    return text[: text.rfind("\n", 0, limit) + 1 or limit], True


def html_items(root: Path, pattern: str, n: int, rng: random.Random, origin: str, licence: str) -> list[dict]:
    """`n` HTML pages under `root` (glob `pattern`), each through the course's extractor."""
    paths = sorted(p for p in root.glob(pattern) if p.is_file() and p.stat().st_size > 2_000)
    items = []
    for path in rng.sample(paths, min(len(paths), n * 2)):
        text = extract.extract_text(path.read_text(encoding="utf-8", errors="replace"))
        if len(text.split()) < 5:
            continue
        text, truncated = cut(text)
        items.append({"domain": "web", "origin": origin, "path": path.relative_to(root).as_posix(),
                      "licence": licence, "kind": "HTML page, main text extracted", "truncated": truncated, "text": text})
        if len(items) == n:
            break
    return items


def licence_of(metadata: email.message.Message) -> str | None:
    """The licence a package declares, if it is a permissive one."""
    fields = [metadata.get("License-Expression") or "", (metadata.get("License") or "").splitlines()[0] if metadata.get("License") else ""]
    fields += [c.split("::")[-1].strip() for c in metadata.get_all("Classifier", []) if c.startswith("License")]
    for value in fields:
        if value and any(word in value for word in PERMISSIVE) and "GPL" not in value and "MPL" not in value:
            return value
    return None


def package_items(n_readmes: int, n_code: int, rng: random.Random) -> list[dict]:
    """READMEs (METADATA, header included) and source files of permissively licensed packages."""
    packages = {}
    for info in sorted(SITE.glob("*.dist-info")):
        metadata = email.message_from_string((info / "METADATA").read_text(encoding="utf-8", errors="replace"))
        if (licence := licence_of(metadata)) and metadata.get("Name") != "minilm":
            packages[info] = (metadata, licence)
    readmes = []
    for info in rng.sample(sorted(packages), len(packages)):
        text = (info / "METADATA").read_text(encoding="utf-8", errors="replace")
        if len(text) < 1_500:
            continue
        text, truncated = cut(text)
        readmes.append({"domain": "docs", "origin": f"PyPI package {info.name.split('-')[0]}", "path": info.name + "/METADATA",
                        "licence": packages[info][1], "kind": "package README (METADATA)", "truncated": truncated, "text": text})
        if len(readmes) == n_readmes:
            break
    top_levels = {}
    for info, (metadata, licence) in packages.items():
        record = info / "RECORD"
        for line in record.read_text().splitlines() if record.exists() else []:
            path = line.split(",")[0]
            if path.endswith(".py") and "/" in path and "test" not in path and not path.startswith(("..", "__pycache__")):
                top_levels[path] = (info, licence)
    candidates = sorted(p for p in top_levels if 1_000 < (SITE / p).stat().st_size < 400_000 and p not in GENERATED_CODE)
    chosen = [p for p in GENERATED_CODE if p in top_levels] + rng.sample(candidates, n_code)
    code = []
    for path in chosen:
        text, truncated = cut((SITE / path).read_text(encoding="utf-8", errors="replace"))
        info, licence = top_levels[path]
        code.append({"domain": "code", "origin": f"PyPI package {info.name.split('-')[0]}", "path": path,
                     "licence": licence, "kind": "Python source file", "truncated": truncated, "text": text})
    return readmes + code


def build() -> list[dict]:
    rng = random.Random(SEED)
    items = []
    items += html_items(RUST / "book", "ch*.html", 30, rng, "The Rust Programming Language (book)", RUST_LICENCE)
    items += html_items(RUST / "reference", "*.html", 10, rng, "The Rust Reference", RUST_LICENCE)
    items += html_items(RUST / "rust-by-example", "**/*.html", 10, rng, "Rust by Example", RUST_LICENCE)
    items += html_items(RUST / "std", "**/*.html", 20, rng, "Rust standard library API pages", RUST_LICENCE)
    items += html_items(RUST / "cargo", "**/*.html", 10, rng, "The Cargo Book", RUST_LICENCE)
    items += html_items(NODE / "api", "*.html", 25, rng, "Node.js API documentation", NODE_LICENCE)
    items += html_items(XSLT, "*.html", 10, rng, "libxslt HTML reference", XSLT_LICENCE)
    items += package_items(35, 32, rng)
    for k, item in enumerate(items):
        item["id"] = f"real-{k:03d}"
    return items


def main() -> None:
    items = build()
    lines = [json.dumps({key: item[key] for key in ("id", "domain", "origin", "path", "licence", "kind", "truncated", "text")},
                        ensure_ascii=False) for item in items]
    with open(OUT, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:  # mtime 0: same bytes
        f.write(("\n".join(lines) + "\n").encode("utf-8"))
    print(f"{len(items)} items, {OUT.stat().st_size / 1e3:.0f} KB -> {OUT}")


if __name__ == "__main__":
    main()
