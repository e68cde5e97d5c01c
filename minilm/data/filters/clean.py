"""Cleaning: repair broken text, and cut the lines that are not content.

Raw text from the web, from book archives and from source trees arrives damaged in a few
well-known ways, and each has a small repair:

1. `normalize_unicode`: one spelling for each character (NFC), so "é" is always one code point.
2. `fix_mojibake`: undo UTF-8 that was decoded as cp1252 or latin-1 ("donâ€™t" -> "don’t").
3. `strip_control_chars`: drop invisible control, zero-width and bidi characters.
4. `normalize_whitespace`: tidy spaces and blank lines in prose; in code touch only line ends.

Then the lines that are not content go:

5. `repeated_line_boilerplate`: lines that occur in many different documents of a domain. A cookie
   banner or a site footer is repeated on every page, while a real sentence is written once; so
   counting in how many documents each line occurs finds boilerplate that no list of phrases
   foresees. This is the idea behind CCNet's removal of paragraphs repeated across documents
   and C4's removal of repeated three-sentence spans.
6. `strip_boilerplate_patterns`: short lines that match a few well-known notices (cookies,
   newsletters, "All rights reserved", "Click here").
7. `strip_licence_blocks`: book front matter and licences ("*** START OF ... ***", "Produced by",
   copyright paragraphs, title pages) and the licence comment at the top of a source file.

Each function works alone on a string (or a list of documents for step 5), so a notebook can show
them one by one. `clean` runs them all over a corpus and records every cut and repair as an `Edit`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from minilm.data.documents import DOMAINS, Document, Edit, Removal, StepResult

# Domains whose whitespace is meaning: indentation in code, and the code examples, tables and
# indented entries of technical documents. Only line ends are tidied there.
LAYOUT_DOMAINS = ("code", "docs")

# A repair or cut, as (reason, before, after); `clean` turns these into `Edit`s.
Change = tuple[str, str, str]


# ---------------------------------------------------------------------------------------------
# 1. Unicode normalization


def normalize_unicode(text: str) -> str:
    """Compose characters to NFC, so that "e" + combining acute and "é" become the same string.

    Why NFC and not NFKC: NFKC also folds "compatibility" characters into look-alikes ("ﬁ" -> "fi",
    "²" -> "2", "µ" -> "μ", "…" -> "...", full-width "ａ" -> "a"). That changes what a program
    means: in code the string literal "x²" becomes "x2" and "µs" becomes "μs", so a test that
    compares them breaks. NFC only merges different spellings of the same character, which never
    changes meaning.
    """
    if text.isascii():  # the common case, and NFC never changes ASCII
        return text
    return unicodedata.normalize("NFC", text)


# ---------------------------------------------------------------------------------------------
# 2. Mojibake: UTF-8 bytes decoded with a one-byte code page
#
# In UTF-8 a non-ASCII character is a lead byte (0xC2-0xF4) followed by one to three continuation
# bytes (0x80-0xBF). Decoded as cp1252, each byte becomes its own character: "’" (E2 80 99) turns
# into "â€™", "é" (C3 A9) into "Ã©". So mojibake is a lead-byte character followed by the right
# number of continuation-byte characters, and encoding that run back to bytes and decoding it as
# UTF-8 gives the original character. Correct text almost never contains such a run; to be safe
# we also keep a repair only if it yields a character that real text is made of (letters,
# punctuation, symbols, emoji), never a rare one such as an IPA letter or a combining mark.


def _cp1252_char(byte: int) -> str:
    """What `byte` becomes when decoded as cp1252; the five bytes cp1252 leaves undefined pass
    through as C1 control characters, as they do in browsers and in latin-1."""
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        return chr(byte)


# Every character a high byte can turn into, under cp1252 or under latin-1, mapped back to it.
_BYTE_OF = {chr(b): b for b in range(0x80, 0x100)} | {_cp1252_char(b): b for b in range(0x80, 0x100)}


def _chars_of(first: int, last: int) -> str:
    return re.escape("".join(ch for ch, b in _BYTE_OF.items() if first <= b <= last))


_CONT = f"[{_chars_of(0x80, 0xBF)}]"
_LEAD = re.compile(f"[{_chars_of(0xC2, 0xF4)}]")  # a quick test: no lead character, no mojibake
MOJIBAKE = re.compile(
    f"[{_chars_of(0xC2, 0xDF)}]{_CONT}"  # lead of a 2-byte character + 1 continuation
    f"|[{_chars_of(0xE0, 0xEF)}]{_CONT}{{2}}"  # 3-byte character
    f"|[{_chars_of(0xF0, 0xF4)}]{_CONT}{{3}}"  # 4-byte character
)

# Code point ranges a repaired character may fall in: the characters text is actually made of.
_PLAUSIBLE = (
    (0x00A0, 0x024F),  # Latin-1 symbols and accented Latin letters
    (0x0370, 0x03FF),  # Greek
    (0x0400, 0x04FF),  # Cyrillic
    (0x2000, 0x206F),  # general punctuation: ’ “ ” – — … •
    (0x20A0, 0x20CF),  # currency signs: €
    (0x2100, 0x21FF),  # letter-like symbols and arrows: ™ →
    (0x2200, 0x22FF),  # mathematical operators
    (0x2500, 0x27BF),  # box drawing, shapes, dingbats: ★ ✓
    (0x3000, 0x9FFF),  # CJK punctuation, kana and ideographs
    (0xAC00, 0xD7AF),  # Hangul
    (0x1F300, 0x1FAFF),  # emoji
)


def _plausible(ch: str) -> bool:
    code = ord(ch)
    return any(first <= code <= last for first, last in _PLAUSIBLE)


def _repair(run: str) -> str | None:
    """The character `run` was before it was mis-decoded, or None if it is not mojibake."""
    try:
        fixed = bytes(_BYTE_OF[ch] for ch in run).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return fixed if _plausible(fixed) else None


def fix_mojibake(text: str, changes: list[Change] | None = None) -> str:
    """Repair UTF-8 text that was decoded as cp1252 or latin-1, one broken character at a time.

    Text that was mis-decoded twice ("Ã¢â‚¬â„¢") is repaired in two rounds. Correct text is
    returned unchanged. If `changes` is a list, each repair is appended to it.
    """
    if text.isascii() or not _LEAD.search(text):  # mojibake needs a lead character
        return text
    while True:
        repaired = 0

        def repair(match: re.Match) -> str:
            nonlocal repaired
            fixed = _repair(match.group())
            if fixed is None:
                return match.group()
            repaired += 1
            if changes is not None:
                changes.append(("mojibake", match.group(), fixed))
            return fixed

        text = MOJIBAKE.sub(repair, text)
        if not repaired:  # every repair shortens the text, so this loop ends
            return text


# ---------------------------------------------------------------------------------------------
# 3. Control characters

# Terminal colour codes ("\x1b[31m") go whole, not just their escape character.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
# C0 controls except \t, \n and \r (a line end, tidied by `normalize_whitespace`), DEL, C1
# controls, zero-width characters and the byte-order mark, and the bidirectional overrides that
# can make code display differently from how it runs ("Trojan Source", CVE-2021-42574).
CONTROL_CHARS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200d\u2060\ufeff\u202a-\u202e\u2066-\u2069]+"
)


def strip_control_chars(text: str, changes: list[Change] | None = None) -> str:
    """Drop control characters (keeping tab and line ends), zero-width and bidi-override characters."""

    def drop(match: re.Match) -> str:
        if changes is not None:
            changes.append(("control_chars", match.group(), ""))
        return ""

    return CONTROL_CHARS.sub(drop, ANSI_ESCAPE.sub(drop, text))


# ---------------------------------------------------------------------------------------------
# 4. Whitespace

_SPACE_RUNS = re.compile(r"[ \t]{2,}|\t")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_LEADING_SPACE = re.compile(r"^[ \t]+", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def normalize_whitespace(text: str, domain: str = "web") -> str:
    """Tidy whitespace without changing meaning.

    Prose ("web", "books"): runs of spaces and tabs become one space, lines are trimmed, and at
    most one blank line separates paragraphs. Code and technical documents: indentation is
    meaning, so only trailing spaces go. Everywhere: line ends become "\\n", blank lines at the
    start and end go, and a text that ended with a newline ends with exactly one.

    Most texts are already tidy, so each rewrite runs only when a plain substring test (much
    faster than a regex scan) says it has something to do.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if " \n" in text or "\t\n" in text or text.endswith((" ", "\t")):
        text = _TRAILING_SPACE.sub("", text)
    if domain not in LAYOUT_DOMAINS:
        if "  " in text or "\t" in text:
            text = _SPACE_RUNS.sub(" ", text)
        if "\n " in text or text.startswith(" "):
            text = _LEADING_SPACE.sub("", text)
        if "\n\n\n" in text:
            text = _BLANK_RUNS.sub("\n\n", text)
    if not text.startswith("\n") and not text.endswith("\n\n"):
        return text
    ends_with_newline = text.endswith("\n")
    text = text.strip("\n")
    return text + "\n" if ends_with_newline and text else text


# ---------------------------------------------------------------------------------------------
# 5. Boilerplate: lines repeated across documents

_DIGITS = re.compile(r"\d+")


def line_keys(text: str) -> list[str]:
    """How lines are compared across documents, one key per line of `text`: case, spacing and
    numbers ignored, so that "© 2023 Example" and "© 2024  example" count as the same line.
    (Case and digits are folded on the whole text at once, which is much faster than line by line.)
    """
    return [" ".join(line.split()) for line in _DIGITS.sub("0", text.casefold()).split("\n")]


def line_key(line: str) -> str:
    """The key of one line (see `line_keys`)."""
    return line_keys(line.replace("\n", " "))[0]


def repeated_line_boilerplate(docs: Iterable[Document | str], min_docs: int = 5, min_share: float = 0.0) -> Counter:
    """Lines that occur in at least `min_docs` different documents and in at least `min_share` of
    them, as {line_key: number of documents}.

    A line counts once per document, so a story that repeats its refrain is not boilerplate; a
    cookie notice on every page of a site is. The share matters in a large corpus, where a few
    stories out of thousands may share a stock sentence by chance, while a site footer or a
    licence line is on a good part of all pages.
    """
    if min_docs < 2:
        raise ValueError(f"min_docs must be at least 2 (a line in one document is not repeated), got {min_docs}")
    documents_with = Counter()
    n_docs = 0
    for doc in docs:
        text = doc.text if isinstance(doc, Document) else doc
        documents_with.update(key for key in set(line_keys(text)) if key)
        n_docs += 1
    # The share as a division, not as a count `min_share * n_docs` rounded up: 0.07 * 100 is
    # 7.000000000000001 in floating point, which would ask for 8 documents out of 100, while
    # 7 / 100 is exactly the float 0.07.
    return Counter({key: n for key, n in documents_with.items() if n >= min_docs and n / n_docs >= min_share})


def strip_lines(text: str, keys: set | Counter, reason: str, changes: list[Change] | None = None) -> str:
    """Cut the lines whose `line_key` is in `keys`."""
    kept = []
    for line, key in zip(text.split("\n"), line_keys(text)):
        if key and key in keys:
            if changes is not None:
                changes.append((reason, line, ""))
        else:
            kept.append(line)
    return "\n".join(kept)


# ---------------------------------------------------------------------------------------------
# 6. Boilerplate: well-known notices

BOILERPLATE_PATTERNS = re.compile(
    r"""
      \b(?:we|this\s+(?:site|website|page))\s+uses?\s+cookies\b
    | \baccept\s+(?:all\s+)?cookies\b
    | \bcookie\s+(?:policy|settings|preferences|consent|notice)\b
    | \b(?:subscribe|sign\s+up)\s+(?:to|for)\s+(?:our|the)\s+newsletter\b
    | \ball\s+rights\s+reserved\b
    | \bclick\s+here\b
    | ^\s*share\s+this\s+(?:story|article|post|page|recipe)\b
    | ^\s*follow\s+us\s+on\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
# One word of each pattern: a plain substring test on them is much faster than the regex, and
# most texts contain none of them.
BOILERPLATE_WORDS = ("cookie", "newsletter", "reserved", "click", "share", "follow")


def strip_boilerplate_patterns(text: str, max_words: int = 40, changes: list[Change] | None = None) -> str:
    """Cut short lines that match a well-known notice (cookies, newsletter, "all rights reserved",
    "click here", "share this story"). A long paragraph that merely mentions one stays."""
    lowered = text.lower()
    if not any(word in lowered for word in BOILERPLATE_WORDS):
        return text
    kept = []
    for line in text.split("\n"):
        if BOILERPLATE_PATTERNS.search(line) and len(line.split()) <= max_words:
            if changes is not None:
                changes.append(("boilerplate:pattern", line, ""))
        else:
            kept.append(line)
    return "\n".join(kept)


# ---------------------------------------------------------------------------------------------
# 7. Licences and front matter

# Project Gutenberg wraps each book in markers; the real text lies between them.
BOOK_START = re.compile(r"^[ \t]*\*{3}[ \t]*START OF\b.*$", re.MULTILINE | re.IGNORECASE)
BOOK_END = re.compile(r"^[ \t]*\*{3}[ \t]*END OF\b.*$", re.MULTILINE | re.IGNORECASE)
# Lines about the edition rather than the story, wherever they stand.
PRODUCED_BY = re.compile(
    r"^[ \t]*(?:Produced|Prepared|Transcribed|Digiti[sz]ed|E-?text prepared)\s+by\b", re.IGNORECASE
)
EDITORIAL_NOTE = re.compile(
    r"^[ \t]*\[(?:Illustration|Transcriber|Editor|Footnote|End of)\b[^\n]*\][ \t]*$", re.IGNORECASE
)
# Catalogue fields of book front matter ("Title: ...", "Release Date: ...").
FRONT_MATTER_FIELD = re.compile(
    r"(?:Title|Author|Release Date|Posting Date|Language|Character set encoding|Credits|Illustrator"
    r"|Translator|Editor|Most recently updated|E-?Book\s*#?\s*\d*)\s*:",
    re.IGNORECASE,
)
LICENCE = re.compile(
    r"\b(?:copyright|licen[cs]e[ds]?|all rights reserved|public domain|e-?books?|terms of (?:use|service)"
    r"|permission is hereby granted|redistribut\w*|without (?:any )?warranty|spdx-license-identifier)\b"
    r"|©|\(c\)\s*\d{4}",
    re.IGNORECASE,
)
# The last words of a book and the archive's markers: "THE END", "End of ...", "*** ... ***".
END_MARKER = re.compile(r"^\W*(?:the\s+)?end\b|^\s*\*{3}.*\*{3}\s*$", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_TERMINAL = (".", "!", "?", '"', "'", "”", "’", ":", ";")


def _is_heading(line: str) -> bool:
    """A title, a byline or a chapter heading: a short line that is not a sentence."""
    line = line.strip()
    return len(line.split()) <= 10 and not line.endswith(_TERMINAL)


def _paragraph_kind(paragraph: str) -> str:
    """"licence", "front_matter" (catalogue fields), "heading" (only headings and end markers),
    "blank" or "content"."""
    lines = [line for line in paragraph.split("\n") if line.strip()]
    if not lines:
        return "blank"
    if LICENCE.search(paragraph):
        return "licence"
    if all(FRONT_MATTER_FIELD.match(line.strip()) for line in lines):
        return "front_matter"
    if all(_is_heading(line) or END_MARKER.match(line) for line in lines):
        return "heading"
    return "content"


def _cut_lines(lines: list[str], reason: str, changes: list[Change]) -> None:
    changes.extend((reason, line, "") for line in lines if line.strip())


def _strip_edge_paragraphs(paragraphs: list[str], cut_headings: bool, changes: list[Change]) -> list[str]:
    """Cut licence and front-matter paragraphs from the start of `paragraphs` (and headings too if
    `cut_headings`), stepping over the headings it keeps, up to the first paragraph of content."""
    kept = []
    for index, paragraph in enumerate(paragraphs):
        kind = _paragraph_kind(paragraph)
        if kind == "content":
            return kept + paragraphs[index:]
        if kind in ("licence", "front_matter") or (kind == "heading" and cut_headings):
            _cut_lines(paragraph.split("\n"), "licence" if kind == "licence" else "front_matter", changes)
        elif kind == "heading":
            kept.append(paragraph)
    return kept


def strip_licence_blocks(text: str, domain: str = "books", changes: list[Change] | None = None) -> str:
    """Cut licences and book front matter, keeping the content.

    Prose: everything up to a "*** START OF ... ***" marker and from an "*** END OF ... ***" marker
    on; "Produced by ..." lines and editorial notes ("[Illustration: ...]"); and, at the top and
    at the bottom, the paragraphs that are a licence or copyright notice or catalogue fields
    ("Title: ..."). In a book the title page goes too: the short unpunctuated lines around the
    story (title, byline, "THE END"); on a web page such headings stay.
    Code: the comment block at the top of a file when it is a licence (a shebang and an encoding
    line stay). If `changes` is a list, each cut line is appended to it as a change.
    """
    if domain == "code":
        return _strip_code_licence(text, changes)
    cut: list[Change] = []
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if BOOK_START.match(line)]
    if starts:
        _cut_lines(lines[: starts[-1] + 1], "licence", cut)
        lines = lines[starts[-1] + 1 :]
    ends = [i for i, line in enumerate(lines) if BOOK_END.match(line)]
    if ends:
        _cut_lines(lines[ends[0] :], "licence", cut)
        lines = lines[: ends[0]]
    notes = [line for line in lines if PRODUCED_BY.match(line) or EDITORIAL_NOTE.match(line)]
    if notes:
        _cut_lines(notes, "front_matter", cut)
        lines = [line for line in lines if not (PRODUCED_BY.match(line) or EDITORIAL_NOTE.match(line))]

    books = domain == "books"
    paragraphs = _PARAGRAPH_BREAK.split("\n".join(lines))
    paragraphs = _strip_edge_paragraphs(paragraphs, books, cut)
    paragraphs = _strip_edge_paragraphs(paragraphs[::-1], books, cut)[::-1]
    if not cut:  # nothing to cut: return the text exactly as it came
        return text
    if changes is not None:
        changes.extend(cut)
    return "\n\n".join(p.strip("\n") for p in paragraphs if p.strip())


def _strip_code_licence(text: str, changes: list[Change] | None) -> str:
    lines = text.split("\n")
    start = 0
    while start < len(lines) and (lines[start].startswith("#!") or re.match(r"#.*coding[:=]", lines[start])):
        start += 1  # the shebang and the encoding declaration are instructions to Python: keep them
    end = start
    while end < len(lines) and lines[end].lstrip().startswith("#"):
        end += 1
    block = lines[start:end]
    if not block or not LICENCE.search("\n".join(block)):
        return text
    if changes is not None:
        _cut_lines(block, "licence", changes)
    rest = lines[end:]
    while rest and not rest[0].strip():  # the blank lines that separated the licence from the code
        rest = rest[1:]
    return "\n".join(lines[:start] + rest)


# ---------------------------------------------------------------------------------------------
# The step


def repair_text(text: str, domain: str, fix_encoding: bool = True, changes: list[Change] | None = None) -> str:
    """Steps 1-4 on one text: Unicode, mojibake, control characters, whitespace.

    Dropping a control character or composing a character can bring two halves of a mojibake
    sequence together, so we repeat until nothing changes (twice for almost every text), which
    makes the repair idempotent: repairing repaired text changes nothing.
    """
    while True:
        before = text
        text = normalize_unicode(text)
        if fix_encoding:
            text = fix_mojibake(text, changes)
        text = strip_control_chars(text, changes)
        text = normalize_whitespace(text, domain)
        if text == before:
            return text


@dataclass
class CleanConfig:
    """Where each cleaning rule runs, and the thresholds of the boilerplate rules."""

    # A line is boilerplate when it is on at least `repeated_line_min_docs` documents of its domain
    # and on at least this share of them. The shares are measured on this course's corpus: a
    # site's menus and footers are on nearly every page, while its articles share section headings
    # ("Ingredients", "Verdict") and stock sentences on up to a sixth of the pages; archive licence
    # lines are on about one book in ten, and no story sentence on more than one in two hundred.
    # Code and reference pages are left out: their shared lines ("Parameters",
    # `if __name__ == "__main__":`) are content. Cleaning twice changes nothing, with one
    # exception: documents that cleaning empties leave the corpus, which lowers the share's bar,
    # so a second pass may cut a line that was just below it.
    repeated_line_min_docs: int = 5
    repeated_line_min_share: dict[str, float] = field(default_factory=lambda: {"web": 0.2, "books": 0.02})
    # The notice patterns: not on reference pages, where "Set the cookie policy of the jar" is content.
    pattern_domains: tuple[str, ...] = ("web", "books")
    max_boilerplate_words: int = 40
    licence_domains: tuple[str, ...] = ("web", "books", "code")
    # Not in code, whose string literals may hold such sequences on purpose (a test of a codec).
    mojibake_domains: tuple[str, ...] = ("web", "books", "docs")


def clean(docs: list[Document], config: CleanConfig | None = None) -> StepResult:
    """Repair every document, cut licences and boilerplate lines, and drop documents left empty.

    The order: repairs (`repair_text`), lines repeated across documents, notice patterns, licence
    and front matter, whitespace again. Each cut or repair is an `Edit`; see `CleanConfig` for
    which rule runs on which domain.
    """
    config = config or CleanConfig()
    _check_documents(docs)
    changes: dict[str, list[Change]] = {doc.id: [] for doc in docs}
    texts = {
        doc.id: repair_text(doc.text, doc.domain, doc.domain in config.mojibake_domains, changes[doc.id])
        for doc in docs
    }

    for domain, min_share in config.repeated_line_min_share.items():
        group = [doc for doc in docs if doc.domain == domain]
        repeated = repeated_line_boilerplate((texts[doc.id] for doc in group), config.repeated_line_min_docs, min_share)
        if repeated:
            for doc in group:
                texts[doc.id] = strip_lines(texts[doc.id], repeated, "boilerplate:repeated_line", changes[doc.id])

    result = StepResult(name="clean", kept=[])
    for doc in docs:
        text, doc_changes = texts[doc.id], changes[doc.id]
        if doc.domain in config.pattern_domains:
            text = strip_boilerplate_patterns(text, config.max_boilerplate_words, doc_changes)
        if doc.domain in config.licence_domains:
            text = strip_licence_blocks(text, doc.domain, doc_changes)
        text = normalize_whitespace(text, doc.domain)
        if not text.strip():
            result.removed.append(Removal(doc, "empty_after_cleaning"))
            continue
        result.edits += [Edit(doc.id, reason, before, after) for reason, before, after in doc_changes]
        result.kept.append(doc if text == doc.text else doc.replace(text=text))
    return result


def _check_documents(docs: list[Document]) -> None:
    """Fail before any work on input that is not a list of well-formed documents."""
    if isinstance(docs, (str, Document)):
        raise TypeError("clean() takes a list of Documents; wrap a single document in a list")
    seen = set()
    for position, doc in enumerate(docs):
        if not isinstance(doc, Document):
            raise TypeError(f"item {position} is a {type(doc).__name__}, not a Document")
        if not isinstance(doc.text, str):
            raise TypeError(
                f"document {doc.id!r} has text of type {type(doc.text).__name__}; "
                "text must be a str (decode bytes with .decode('utf-8') first)"
            )
        if doc.domain not in DOMAINS:
            raise ValueError(f"document {doc.id!r} has unknown domain {doc.domain!r}; use one of {DOMAINS}")
        if doc.id in seen:
            raise ValueError(f"document id {doc.id!r} occurs twice; ids must be unique")
        seen.add(doc.id)
