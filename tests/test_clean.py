"""Cleaning: each repair on hand-written examples, and the properties the whole step must keep."""

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.data.filters.clean import (
    CleanConfig,
    clean,
    fix_mojibake,
    line_key,
    normalize_unicode,
    normalize_whitespace,
    repair_text,
    repeated_line_boilerplate,
    strip_boilerplate_patterns,
    strip_control_chars,
    strip_licence_blocks,
)
from minilm.data.filters.clean import _chars_of, _cp1252_char
from minilm.data.documents import Document

STORY = (
    "Once upon a time, there was a little girl named Mia. She had a red kite.\n\n"
    "One windy morning, Mia took the kite to the park. “Look, Max!” she said. “The wind is strong today.”\n\n"
    "The string slipped from her hand, and the kite flew away. Mia felt sad, but a kind baker helped her find it.\n"
)


def doc(text, domain="web", id="d1"):
    return Document(id=id, domain=domain, text=text)


# --- Unicode --------------------------------------------------------------------------------


def test_normalize_unicode_composes_but_keeps_compatibility_characters():
    assert normalize_unicode("cafe\u0301") == "caf\u00e9"
    kept = "x² = 5 µs, the ﬁle…"  # NFKC would turn these into "x2", "μs", "file..."
    assert normalize_unicode(kept) == kept


# --- Mojibake -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "broken, fixed",
    [
        ("donâ€™t", "don’t"),
        ("cafÃ©", "café"),
        ("â€œHello,â€\x9d she said.", "“Hello,” she said."),  # cp1252 leaves 0x9D undefined: a C1 char
        ("It costs 5 â‚¬.", "It costs 5 €."),
        ("naÃ¯ve faÃ§ade", "naïve façade"),
        ("ÐŸÑ€Ð¸Ð²ÐµÑ‚", "Привет"),
        ("smile ðŸ˜€", "smile 😀"),
        ("donÃ¢â‚¬â„¢t", "don’t"),  # decoded wrongly twice
        ("Ã\x81frica", "África"),  # latin-1 reading of the byte 0x81
    ],
)
def test_fix_mojibake_repairs_exactly(broken, fixed):
    changes = []
    assert fix_mojibake(broken, changes) == fixed
    assert changes and all(reason == "mojibake" for reason, _, _ in changes)


@pytest.mark.parametrize(
    "text",
    [
        "JOSÉ’S café — “naïve” Ünïcödé façade",  # "É’" would decode to an IPA letter: not mojibake
        "Straße, Ærø, São Paulo, ÀÉÎÕÜ, 10 °C ± 2, © 2024, ½ × ¼",
        "Привет, 你好, 😀, ★ ✓ → €",
        "plain ASCII text, with 'quotes' and symbols #$%",
    ],
)
def test_fix_mojibake_leaves_correct_text_alone(text):
    changes = []
    assert fix_mojibake(text, changes) == text
    assert changes == []


def test_mojibake_byte_classes_include_their_ends():
    # The patterns are built once, at import, from these two helpers: a byte and both its readings.
    assert _cp1252_char(0x80) == "€" and _cp1252_char(0xE9) == "é"
    assert _cp1252_char(0x81) == "\x81"  # undefined in cp1252: passes through as a C1 control character
    continuation = re.compile(f"[{_chars_of(0x80, 0xBF)}]+")
    assert continuation.fullmatch("€\x80¿") and not continuation.fullmatch("À")
    assert re.fullmatch(f"[{_chars_of(0xC2, 0xC2)}]", "Â")


# --- Control characters ---------------------------------------------------------------------


def test_strip_control_chars():
    changes = []
    text = "hel\x00lo\x07 wo\u200brld\ufeff\x1b[31m red\x1b[0m\tend\r\nnext\x85 line \u202e"
    assert strip_control_chars(text, changes) == "hello world red\tend\r\nnext line "
    assert {reason for reason, _, _ in changes} == {"control_chars"}
    assert "\x1b[31m" in [before for _, before, _ in changes]  # the whole colour code, not just ESC
    assert strip_control_chars("tabs\tand\nnewlines stay") == "tabs\tand\nnewlines stay"


# --- Whitespace -----------------------------------------------------------------------------


def test_normalize_whitespace_prose():
    text = "  Hello   there,\tfriend.  \r\n\r\n\r\n\r\n   Second   paragraph.\n\n"
    assert normalize_whitespace(text, "web") == "Hello there, friend.\n\nSecond paragraph.\n"
    assert normalize_whitespace("one\ttab, no double space", "web") == "one tab, no double space"


def test_normalize_whitespace_keeps_code_indentation():
    code = "def f(x):\r\n    if x:   \r\n\treturn  [1,   2]\r\n\r\n\r\n\r\n    return None\r\n"
    expected = "def f(x):\n    if x:\n\treturn  [1,   2]\n\n\n\n    return None\n"
    assert normalize_whitespace(code, "code") == expected
    assert normalize_whitespace(expected, "code") == expected


# One line per kind of whitespace, in prose and in code: (text, domain, tidied).
@pytest.mark.parametrize("text, domain, tidied", [
    ("a  b", "web", "a b"),  # a run of spaces
    ("a\tb", "web", "a b"),  # a tab alone
    ("a \t b", "books", "a b"),  # spaces and tabs mixed
    ("a  b\tc", "code", "a  b\tc"),  # code keeps them inside a line
    ("a  b", "docs", "a  b"),  # and so do technical documents
    ("a \nb", "code", "a\nb"),  # a trailing space
    ("x = 1\t\ny = 2\n", "code", "x = 1\ny = 2\n"),  # a trailing tab, with no trailing space anywhere
    ("a\t", "code", "a"), ("a ", "docs", "a"),  # at the very end
    ("a\r\nb\rc", "web", "a\nb\nc"), ("a\r\nb\rc", "code", "a\nb\nc"),  # Windows and old Mac line ends
    ("  a\n\tb", "web", "a\nb"),  # indentation in prose
    ("  a\n\tb", "code", "  a\n\tb"),  # indentation in code
    ("a\n\n\n\nb", "web", "a\n\nb"),  # blank lines between paragraphs
    ("a\n\n\n\nb", "code", "a\n\n\n\nb"),
    ("\n\nX marks the spot\n\n\n", "web", "X marks the spot\n"),  # blank lines at both ends; X stays
    ("\nX = 1\nY = 2\nX\n\n", "code", "X = 1\nY = 2\nX\n"),
    ("\n\nno newline at the end", "web", "no newline at the end"),
    ("\n\n\n", "web", ""), ("tidy\n", "web", "tidy\n"), ("tidy", "code", "tidy"),
])
def test_normalize_whitespace_each_kind(text, domain, tidied):
    assert normalize_whitespace(text, domain) == tidied
    assert normalize_whitespace(tidied, domain) == tidied  # tidy text is left as it is


def test_clean_preserves_code_byte_for_byte():
    code = 'class A:\n    """Doc."""\n\n    def f(self):\n        return {"a":  1}  # aligned\n\n\n\nx = A()\n'
    result = clean([doc(code, "code")])
    assert result.kept[0].text == code and result.edits == []


# --- Licences and front matter --------------------------------------------------------------

GUTENBERG_BOOK = """The Project MiniLM eBook of Mia and the Kite

This eBook is for the use of anyone anywhere at no cost and with almost no restrictions whatsoever.

Title: Mia and the Kite

Author: Ann Lee

Produced by the Online Distributed Proofreading Team

*** START OF THE PROJECT MINILM EBOOK MIA AND THE KITE ***

Mia and the Kite

by Ann Lee

{story}
[Illustration: Mia]

The End

*** END OF THE PROJECT MINILM EBOOK MIA AND THE KITE ***

Section 1. General Terms of Use and Redistributing Project MiniLM electronic works
"""

PUBLISHER_BOOK = """MIA AND THE KITE

Written by Ann Lee
Illustrated by Bo Chen

Copyright (c) 1999 Acorn House. All rights reserved.
First published in 1999.

{story}
THE END

More stories from Acorn House at www.acornhouse.example.com
"""


@pytest.mark.parametrize("template", [GUTENBERG_BOOK, PUBLISHER_BOOK])
def test_strip_licence_blocks_keeps_only_the_story(template):
    changes = []
    assert strip_licence_blocks(template.format(story=STORY), "books", changes) == STORY.strip()
    assert {reason for reason, _, _ in changes} <= {"licence", "front_matter"}
    assert all(before.strip() for _, before, _ in changes)  # one change per cut line, none blank


def test_strip_licence_blocks_reads_a_book_by_default():
    book = PUBLISHER_BOOK.format(story=STORY)
    assert strip_licence_blocks(book) == strip_licence_blocks(book, "books") == STORY.strip()
    assert strip_licence_blocks(book, "web") != STORY.strip()  # a web page keeps its headings


def test_strip_licence_blocks_markers_on_the_first_and_last_lines():
    book = "*** START OF THE PROJECT MINILM EBOOK MIA ***\n" + STORY + "*** END OF THE PROJECT MINILM EBOOK MIA ***"
    changes = []
    assert strip_licence_blocks(book, "books", changes) == STORY.strip()
    lines = book.split("\n")
    assert [before for _, before, _ in changes] == [lines[0], lines[-1]]  # each marker cut once


def test_strip_licence_blocks_cuts_catalogue_fields_and_editorial_notes_on_any_page():
    first, rest = STORY.split("\n\n", 1)
    page = "Title: Mia and the Kite\nAuthor: Ann Lee\n\n" + first + "\n[Illustration: Mia]\n\n" + rest
    changes = []
    assert strip_licence_blocks(page, "web", changes) == STORY.strip()
    assert changes == [("front_matter", "[Illustration: Mia]", ""), ("front_matter", "Title: Mia and the Kite", ""),
                       ("front_matter", "Author: Ann Lee", "")]


def test_strip_licence_blocks_web_keeps_headings_and_cuts_footer():
    page = "How to Fly a Kite\n\n" + STORY + "\nCopyright © 2024 Kite Club. Terms of use apply.\n"
    assert strip_licence_blocks(page, "web") == "How to Fly a Kite\n\n" + STORY.strip()


def test_strip_licence_blocks_keeps_the_indentation_of_a_code_example():
    example = "Fly a kite from Python:\n\n    import kites\n    kites.fly(wind=3)\n\nThe call returns when it lands."
    page = example + "\n\nCopyright © 2024 Kite Club. Terms of use apply.\n"
    assert strip_licence_blocks(page, "docs") == example  # only the blank lines around paragraphs go


def test_strip_licence_blocks_leaves_text_without_licence_untouched():
    text = "A Title\n\n\n" + STORY + "\n\n\nThe End\n"
    assert strip_licence_blocks(text, "web") == text


def test_strip_licence_blocks_code():
    code = (
        "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n# Copyright (C) 2001 Python Software Foundation\n"
        "# Licensed to PSF under a Contributor Agreement.\n\n"
        '"""Tools."""\n\n# A normal comment.\nimport os\n'
    )
    expected = '#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n"""Tools."""\n\n# A normal comment.\nimport os\n'
    assert strip_licence_blocks(code, "code") == expected
    plain = "# Helpers for the parser.\nimport os\n"
    assert strip_licence_blocks(plain, "code") == plain


# --- Boilerplate ----------------------------------------------------------------------------


def test_strip_boilerplate_patterns():
    page = (
        "We use cookies to improve your experience. Accept all cookies.\n"
        + STORY
        + "Subscribe to our newsletter!\nShare this story\n© 2024 Kite Club. All rights reserved.\n"
    )
    changes = []
    assert strip_boilerplate_patterns(page, changes=changes) == STORY
    assert len(changes) == 4 and {r for r, _, _ in changes} == {"boilerplate:pattern"}


def test_strip_boilerplate_patterns_keeps_content_that_mentions_the_words():
    text = "Mia baked cookies with her grandmother. They decided to share the cookies and follow the recipe.\n"
    assert strip_boilerplate_patterns(text) == text
    long_line = "This long paragraph explains " + "why every site asks you to accept cookies and " * 10 + "more."
    assert strip_boilerplate_patterns(long_line) == long_line


COLOURS = "red blue green yellow purple orange pink white black brown grey gold".split()
PLACES = "hill beach park farm lake field river school garden bridge tower market".split()


def web_site(n_pages=12):
    """Pages of one site: a shared menu, banner and footer around unique articles."""
    pages = []
    for i in range(n_pages):
        body = f"Article: the {COLOURS[i]} kite flew over the {PLACES[i]} on a windy day."
        footer = f"© {2000 + i} Kite Club"  # the year changes: still the same line
        pages.append(doc(f"Home | Kites | About\nJoin the kite club today\n\n{body}\n\n{footer}", "web", f"web-{i}"))
    return pages


def test_repeated_line_boilerplate_finds_lines_shared_across_documents():
    pages = web_site()
    pages.append(doc("A refrain.\nA refrain.\nA refrain.\nA refrain.\nA refrain.\nA refrain.", "web", "song"))
    pages.append(doc("Article: the blue kite flew over the beach on a windy day.", "web", "copy"))
    repeated = repeated_line_boilerplate(pages, min_docs=5)
    expected = ["Home | Kites | About", "Join the kite club today", "© 2024 kite club"]
    assert set(repeated) == {line_key(line) for line in expected}
    assert repeated[line_key("Home | Kites | About")] == 12
    with pytest.raises(ValueError, match="min_docs"):
        repeated_line_boilerplate(pages, min_docs=1)


def test_repeated_line_boilerplate_share_threshold():
    pages = web_site(12)
    assert repeated_line_boilerplate(pages, min_docs=5, min_share=0.5)  # on every page
    assert not repeated_line_boilerplate(pages, min_docs=5, min_share=1.01)


def test_clean_cuts_repeated_lines_and_records_edits():
    result = clean(web_site())
    assert len(result.kept) == 12
    for page in result.kept:
        assert page.text.startswith("Article") and "\n" not in page.text.strip()
    assert result.edits_by_reason()["boilerplate:repeated_line"] == 12 * 3


# --- The step -------------------------------------------------------------------------------


def test_clean_repairs_and_records_edits():
    broken = "Mia didnâ€™t stop at the cafÃ©.\x07 She ran\u200b home.\n"
    result = clean([doc(broken, "books")])
    assert result.kept[0].text == "Mia didn’t stop at the café. She ran home.\n"
    edits = [(e.doc_id, e.reason, e.before, e.after) for e in result.edits]
    assert edits == [
        ("d1", "mojibake", "â€™", "’"),
        ("d1", "mojibake", "Ã©", "é"),
        ("d1", "control_chars", "\x07", ""),
        ("d1", "control_chars", "\u200b", ""),
    ]


def test_clean_leaves_clean_documents_alone():
    story = doc(STORY, "books")
    result = clean([story])
    assert result.kept[0] is story and result.edits == [] and result.removed == []


def test_clean_removes_documents_left_empty():
    result = clean([doc("\x00\x01\u200b  \n\n", "web", "junk"), doc(STORY, "web", "ok")])
    assert [r.reason for r in result.removed] == ["empty_after_cleaning"]
    assert result.removed[0].doc.id == "junk" and [d.id for d in result.kept] == ["ok"]


def test_clean_rejects_bad_input_with_the_document_id():
    with pytest.raises(TypeError, match="web-7.*bytes"):
        clean([doc(STORY), Document(id="web-7", domain="web", text=b"raw bytes")])
    with pytest.raises(ValueError, match="unknown domain"):
        clean([Document(id="x", domain="poems", text="A poem.")])
    with pytest.raises(TypeError, match="list of Documents"):
        clean(doc(STORY))
    with pytest.raises(ValueError, match="twice"):
        clean([doc(STORY), doc(STORY)])
    with pytest.raises(TypeError, match="^item 1 is a str, not a Document$"):  # which item, and what it is
        clean([doc(STORY), "raw text"])


# --- Properties -----------------------------------------------------------------------------

DOMAINS = st.sampled_from(["web", "books", "docs", "code"])
# Random text with a bias towards what cleaning acts on: whitespace, controls, mojibake pieces.
NASTY = st.sampled_from(
    ["  ", "\t", "\n", "\n\n\n", "\r\n", "\x00", "\x1b[1m", "\u200b", "Ã", "©", "â€", "™", "\x9d", "e\u0301"]
)
RANDOM_TEXT = st.lists(st.one_of(st.text(max_size=12), NASTY), max_size=25).map("".join)


@settings(max_examples=150, deadline=None)
@given(RANDOM_TEXT, DOMAINS)
def test_repair_is_idempotent_and_never_grows(text, domain):
    text = unicodedata.normalize("NFC", text)  # NFC may lengthen a few rare characters: start from it
    once = repair_text(text, domain)
    assert repair_text(once, domain) == once
    assert len(once) <= len(text)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(RANDOM_TEXT, DOMAINS), min_size=1, max_size=8))
def test_clean_is_idempotent_and_never_grows(items):
    docs = [Document(id=f"d{i}", domain=domain, text=text) for i, (text, domain) in enumerate(items)]
    # Without the share threshold: dropping empty documents lowers a share's bar (see CleanConfig).
    config = CleanConfig(repeated_line_min_docs=2, repeated_line_min_share={"web": 0.0, "books": 0.0})
    first = clean(docs, config)
    second = clean(first.kept, config)
    assert [d.text for d in second.kept] == [d.text for d in first.kept]
    assert second.edits == [] and second.removed == []
    for before, after in zip([d for d in docs if d.id in {k.id for k in first.kept}], first.kept):
        assert len(after.text) <= len(unicodedata.normalize("NFC", before.text))


WORDS = st.sampled_from("Mia the kite flew over café naïve don’t “Look!” Ünïcödé 42 and a park €5 😀 Привет".split())
SENTENCE = st.lists(WORDS, min_size=3, max_size=12).map(lambda words: " ".join(words) + ".")
PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=4).map(" ".join)
CLEAN_TEXT = st.lists(PARAGRAPH, min_size=1, max_size=5).map(lambda ps: "\n\n".join(ps) + "\n")


@settings(max_examples=100, deadline=None)
@given(CLEAN_TEXT, st.sampled_from(["web", "books", "docs"]))
def test_clean_text_is_byte_identical(text, domain):
    result = clean([doc(text, domain)])
    assert result.kept[0].text == text and result.edits == []


# --- Boundaries: every threshold exactly at, one step under and one step over ------------------


def name_of(i):
    """A word for each number, since digits are folded in line keys ("Page 1" and "Page 2" are one line)."""
    letters = ""
    while True:
        i, r = divmod(i, 26)
        letters += "abcdefghijklmnopqrstuvwxyz"[r]
        if not i:
            return "q" + letters


def corpus_with_line(domain, n_docs, k, line="Visit the shop on the corner today."):
    """`n_docs` documents of their own sentences, `k` of them with `line` as well."""
    return [doc(f"The story of {name_of(i)} is told here.\n" + (line if i < k else f"It ends with {name_of(i)}."),
                domain, f"{domain}-{i}") for i in range(n_docs)]


def is_cut(result, line="Visit the shop on the corner today."):
    return any(e.reason == "boilerplate:repeated_line" and e.before == line for e in result.edits)


# (domain, corpus size, documents with the line, cut): CleanConfig's defaults are at least 5 documents
# (the binding bar in a small corpus) and at least 0.2 of the web pages or 0.02 of the books.
@pytest.mark.parametrize("domain, n_docs, k, cut", [
    ("web", 10, 4, False), ("web", 10, 5, True), ("web", 10, 6, True),  # min_docs 5 (0.2 x 10 is only 2)
    ("web", 40, 7, False), ("web", 40, 8, True), ("web", 40, 9, True),  # share 0.2 of 40 is 8
    ("books", 300, 5, False), ("books", 300, 6, True), ("books", 300, 7, True),  # 0.02 of 300 is 6
])
def test_boundary_repeated_line_defaults(domain, n_docs, k, cut):
    assert is_cut(clean(corpus_with_line(domain, n_docs, k))) == cut


@pytest.mark.parametrize("k, counted", [(6, False), (7, True), (8, True)])
def test_boundary_repeated_line_share_is_exact(k, counted):
    # 0.07 * 100 is 7.000000000000001 in floating point: a line on 7 of 100 documents is on 0.07 of them
    docs = corpus_with_line("web", 100, k)
    assert (line_key("Visit the shop on the corner today.") in repeated_line_boilerplate(docs, 2, 0.07)) == counted


@pytest.mark.parametrize("min_docs, ok", [(1, False), (2, True)])
def test_boundary_repeated_line_min_docs_must_be_2(min_docs, ok):
    docs = corpus_with_line("web", 4, 2)
    if ok:
        assert repeated_line_boilerplate(docs, min_docs) == {line_key("Visit the shop on the corner today."): 2}
    else:
        with pytest.raises(ValueError, match="min_docs"):
            repeated_line_boilerplate(docs, min_docs)


@pytest.mark.parametrize("n_words, cut", [(39, True), (40, True), (41, False)])
def test_boundary_max_boilerplate_words_40(n_words, cut):
    notice = " ".join(["Click here to read"] + ["more"] * (n_words - 4)) + "."
    assert len(notice.split()) == n_words
    result = clean([doc(STORY + notice + "\n", "web")])
    assert (notice not in result.kept[0].text) == cut
    assert [e.reason for e in result.edits] == (["boilerplate:pattern"] if cut else [])


@pytest.mark.parametrize("n_words, cut", [(9, True), (10, True), (11, False)])
def test_boundary_heading_of_a_book_is_at_most_10_words(n_words, cut):
    title = " ".join(["Kite"] * n_words)  # no full stop: a heading, if it is short
    text = strip_licence_blocks(f"{title}\n\n{STORY}", "books")
    assert text == (STORY.strip() if cut else f"{title}\n\n{STORY}")


def test_code_made_only_of_a_shebang_and_an_encoding_line_is_kept_whole():
    text = "#!/usr/bin/env python\n# -*- coding: utf-8 -*-"  # the declarations run to the last line
    assert strip_licence_blocks(text, domain="code") == text


def test_line_keys_fold_case_spacing_and_digits_and_read_as_the_line():
    assert line_key("© 2023  Example\tSite") == line_key("© 2024 example site") == "© 0 example site"
    assert line_key("Chapter 12") != line_key("Chapter Twelve")
