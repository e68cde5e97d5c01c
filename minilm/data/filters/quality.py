"""Quality filtering: rules that tell text worth learning from from junk.

A model learns whatever it reads, so pretraining corpora drop pages that are spam, lists of
keywords, symbol soup, placeholder text or machine-made tables. The rules below are the ones the
big open corpora use, with their published thresholds:

- **Gopher quality** (Rae et al. 2021, appendix A; datatrove's `GopherQualityFilter`): length,
  word length, symbols, bullets, ellipses, alphabetic words and English stop words.
- **Gopher repetition** (same paper, table A1; datatrove's `GopherRepetitionFilter`): repeated
  lines, paragraphs and n-grams, a sign of spam and of broken generators.
- **C4** (Raffel et al. 2020; datatrove's `C4QualityFilter`): keep only lines that end like a
  sentence; drop pages with "lorem ipsum" or a curly bracket, or with too few sentences left.
- **Language**, the old way: English stop words against French, German and Spanish ones (`not_english`).
  The stage now labels each document's language before this step (`language.language_filter`) and
  keeps the languages it trains on, so the rule is kept only to compare with; the stop-word rule of
  Gopher counts the stop words of the document's own language (`GOPHER_STOP_WORDS`).
- **Code** (the Codex, The Stack and StarCoder filters): very long lines, machine-generated files,
  little alphanumeric text, files that are mostly data.

Each rule is a small function that returns the name of the rule when the text fails it, like
"gopher:stop_words", and None when it passes. `quality_filter` runs them in order and records the
first failure. `quality_signals` returns the measured values, for plotting their distributions.
The text of each document is split into words, lines and paragraphs once (`TextStats`), and every
rule reads those.
"""

from __future__ import annotations

import dataclasses
import string
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import regex

from minilm.data.documents import DOMAINS, Document, Edit, Removal, StepResult, check_documents


@dataclass
class QualityConfig:
    """Thresholds of every rule; the defaults are the published ones (our own choices are marked)."""

    # Gopher quality rules
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1  # for "#" and for "..." separately
    max_bullet_line_share: float = 0.9
    max_ellipsis_line_share: float = 0.3
    min_alpha_word_share: float = 0.8
    stop_words: tuple[str, ...] = ("the", "be", "to", "of", "and", "that", "have", "with")
    min_stop_words: int = 2
    # Gopher repetition rules
    max_dup_line_share: float = 0.3
    max_dup_paragraph_share: float = 0.3
    max_dup_line_char_share: float = 0.2
    max_dup_paragraph_char_share: float = 0.2
    max_top_ngram_char_share: tuple[tuple[int, float], ...] = ((2, 0.20), (3, 0.18), (4, 0.16))
    max_dup_ngram_char_share: tuple[tuple[int, float], ...] = (
        (5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10),
    )  # fmt: skip
    # Reference pages repeat by design (every method documents the same parameters, in the same
    # words): at the published limits about one reference page in five would go. They are judged
    # at `docs_repetition_slack` times the limits (our choice; 2% go), which still catches junk.
    docs_repetition_slack: float = 3.0
    # Language (our choice): English must own at least this share of the stop words found
    min_english_share: float = 0.5
    min_words_for_language: int = 20
    # C4 rules
    min_words_per_line: int = 3
    min_sentences: int = 5
    max_word_length: int = 1000
    c4_line_domains: tuple[str, ...] = ("web",)  # our choice, as the two below; see `prose_quality`
    min_sentences_domains: tuple[str, ...] = ("web", "books")
    curly_bracket_domains: tuple[str, ...] = ("web", "books")
    # Code rules (The Stack / StarCoder), and the share of data-literal lines (our choice)
    max_line_length: int = 1000
    max_mean_line_length: float = 100.0
    min_alphanumeric_share: float = 0.25
    max_data_line_share: float = 0.5
    generated_header_lines: int = 10

    def with_repetition_slack(self, factor: float) -> "QualityConfig":
        """A copy with every repetition limit multiplied by `factor`.

        The products are rounded to 12 decimals: in floating point 3 * 0.3 is 0.8999999999999999,
        which would fail a page whose share is exactly 0.9, while a page exactly at a published
        limit passes.
        """

        def scale(limit: float) -> float:
            return round(limit * factor, 12)

        return dataclasses.replace(
            self,
            max_dup_line_share=scale(self.max_dup_line_share),
            max_dup_paragraph_share=scale(self.max_dup_paragraph_share),
            max_dup_line_char_share=scale(self.max_dup_line_char_share),
            max_dup_paragraph_char_share=scale(self.max_dup_paragraph_char_share),
            max_top_ngram_char_share=tuple((n, scale(limit)) for n, limit in self.max_top_ngram_char_share),
            max_dup_ngram_char_share=tuple((n, scale(limit)) for n, limit in self.max_dup_ngram_char_share),
        )


# ---------------------------------------------------------------------------------------------
# Splitting a text once

# Punctuation stripped from the ends of words ("don't," -> "don't"); a token made only of it
# (a dash, "...") is not a word, as in datatrove.
PUNCTUATION = string.punctuation + "“”‘’«»„‚–—…·•¿¡"
_HAS_ALPHA = regex.compile(r"\p{L}")
_PARAGRAPH_BREAK = regex.compile(r"\n[ \t]*\n")
BULLETS = ("•", "-", "*", "‣", "◦", "▪", "●", "–")
ELLIPSES = ("...", "…")


class TextStats:
    """One document split the ways the rules need, so that no rule splits it again.

    `tokens` are the whitespace-separated pieces of the text (the n-gram rules count these);
    `word_counts` counts the words: tokens without surrounding punctuation, lower-cased, with
    punctuation-only tokens left out (the Gopher rules count these). Lines, paragraphs and n-gram
    shares are computed on first use. `document_words` is the word count of the whole document,
    which for a technical document is more than that of its prose (see `without_code_examples`).
    """

    def __init__(self, text: str, document_words: int | None = None):
        self.text = text
        self.tokens = text.split()
        words = [w for w in (t.strip(PUNCTUATION) for t in text.lower().split()) if w]
        self.n_words = len(words)
        self.word_counts = Counter(words)
        self.document_words = self.n_words if document_words is None else document_words
        self._ngram_shares: dict[tuple, dict[str, float]] = {}

    @cached_property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.text.splitlines() if line.strip()]

    @cached_property
    def paragraphs(self) -> list[str]:
        return [p.strip() for p in _PARAGRAPH_BREAK.split(self.text.strip()) if p.strip()]

    def ngram_shares(
        self, top: tuple[int, ...] = (2, 3, 4), duplicated: tuple[int, ...] = (5, 6, 7, 8, 9, 10)
    ) -> dict[str, float]:
        """`ngram_char_shares` of this text, computed once for each choice of n."""
        key = (tuple(top), tuple(duplicated))
        if key not in self._ngram_shares:
            self._ngram_shares[key] = ngram_char_shares(self.tokens, len(self.text), *key)
        return self._ngram_shares[key]


def count_words(text: str) -> int:
    """The number of words in `text`, as `TextStats` counts them."""
    return sum(1 for token in text.split() if token.strip(PUNCTUATION))


# ---------------------------------------------------------------------------------------------
# Measures: each a number computed from a TextStats


def mean_word_length(stats: TextStats) -> float:
    total = sum(len(word) * n for word, n in stats.word_counts.items())
    return total / max(stats.n_words, 1)


def symbol_word_ratio(stats: TextStats, symbols: tuple[str, ...]) -> float:
    return sum(stats.text.count(symbol) for symbol in symbols) / max(stats.n_words, 1)


def line_share(stats: TextStats, test: Callable[[str], bool]) -> float:
    return sum(map(test, stats.lines)) / max(len(stats.lines), 1)


def alpha_word_share(stats: TextStats) -> float:
    alpha = sum(n for word, n in stats.word_counts.items() if word.isalpha() or _HAS_ALPHA.search(word))
    return alpha / max(stats.n_words, 1)


def stop_word_count(stats: TextStats, stop_words: tuple[str, ...]) -> int:
    return sum(stats.word_counts[word] for word in stop_words)


def duplicate_shares(pieces: list[str], text_length: int) -> tuple[float, float]:
    """Share of `pieces` (lines or paragraphs) that repeat an earlier one, and the share of the
    text's characters in those repeats (the first occurrence is not a repeat)."""
    seen: set[str] = set()
    repeats = repeated_chars = 0
    for piece in pieces:
        if piece in seen:
            repeats += 1
            repeated_chars += len(piece)
        else:
            seen.add(piece)
    return repeats / max(len(pieces), 1), repeated_chars / max(text_length, 1)


def ngram_char_shares(tokens: list[str], text_length: int, top=(2, 3, 4), duplicated=range(5, 11)) -> dict[str, float]:
    """Gopher's n-gram repetition measures, as shares of the text's characters.

    - ``top_n``: the characters of the most frequent n-gram times its count (0 when no n-gram
      repeats), for n in `top`;
    - ``dup_n``: the characters of words covered by an n-gram that already occurred earlier, for
      n in `duplicated` (overlapping repeats are counted once).

    Fast because no n-gram is ever built as a string: each token gets an integer id, and each
    n-gram the id of the pair (id of its first n-1 words, id of its last word), found with
    `np.unique`, which counts them by sorting integer arrays in C.
    """
    shares = {f"top_{n}": 0.0 for n in top} | {f"dup_{n}": 0.0 for n in duplicated}
    largest = max((*top, *duplicated), default=1)
    if text_length == 0 or len(tokens) < 2:
        return shares
    vocabulary = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    word_ids = np.fromiter(map(vocabulary.__getitem__, tokens), np.int64, len(tokens))
    if len(vocabulary) == len(tokens):  # every token occurs once: no n-gram can repeat
        return shares
    lengths = np.fromiter(map(len, tokens), np.int64, len(tokens))
    ends = np.concatenate(([0], np.cumsum(lengths)))

    ngram_ids = word_ids
    for n in range(2, min(largest, len(tokens)) + 1):
        keys = ngram_ids[:-1] * len(vocabulary) + word_ids[n - 1 :]
        _, first, ngram_ids, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        if counts.max() < 2:  # no n-gram repeats, so no longer one does either
            break
        if n in top:
            best = np.flatnonzero(counts == counts.max())
            start = first[best].min()  # ties: the one that occurs first, like Counter.most_common
            chars = ends[start + n] - ends[start] + (n - 1)
            shares[f"top_{n}"] = float(counts.max() * chars / text_length)
        if n in duplicated:
            is_repeat = first[ngram_ids] != np.arange(len(ngram_ids))
            starts = np.flatnonzero(is_repeat)
            cover = np.zeros(len(tokens) + 1, np.int64)  # +1 where a repeat starts, -1 after it
            cover[starts] += 1  # (each start occurs once, so plain indexing adds correctly)
            cover[starts + n] -= 1
            covered = np.cumsum(cover[:-1]) > 0
            chars = lengths[covered].sum() + np.count_nonzero(covered[:-1] & covered[1:])  # + inner spaces
            shares[f"dup_{n}"] = float(chars / text_length)
    return shares


# ---------------------------------------------------------------------------------------------
# Language: stop words of English against those of the other languages of the web source.
# Words that are also English words ("die", "an", "son", "no") are left out of the other lists.

STOP_WORDS_BY_LANGUAGE = {
    "en": frozenset(
        "the and of to is was that it with for on you he she they we are have this but not be at from by his her "
        "had were there what when which would their will or an been has him them then than into could".split()
    ),
    "fr": frozenset(
        "le la les des du et est une un que qui dans pour pas sur au aux avec ce cette il elle nous vous ils "
        "sont mais où sa ses leur très plus être avoir fait comme été je tu".split()
    ),
    "de": frozenset(
        "der das und ist nicht ein eine zu den dem mit sich auf für von im es sie wir ihr auch wird sind "
        "war dass aber oder wenn noch nach bei einen einem über ich du ihre werden".split()
    ),
    "es": frozenset(
        "el los las de y que en un una es por con para del al se su sus lo como más pero muy está fue este "
        "esta también hay ya cuando todo yo ella ellos".split()
    ),
}


def language_scores(stats: TextStats) -> dict[str, float]:
    """For each language, the share of the document's words that are its stop words."""
    n = max(stats.n_words, 1)
    counts = stats.word_counts
    return {
        language: sum(counts[word] for word in words.intersection(counts)) / n
        for language, words in STOP_WORDS_BY_LANGUAGE.items()
    }


def english_share(stats: TextStats) -> float | None:
    """English's share of all the stop words found (None when there are none to judge by)."""
    scores = language_scores(stats)
    total = sum(scores.values())
    return scores["en"] / total if total else None


# ---------------------------------------------------------------------------------------------
# Prose rules: each returns the rule's name when the text fails it, None when it passes


def not_english(stats: TextStats, config: QualityConfig) -> str | None:
    if stats.n_words < config.min_words_for_language:
        return None  # too short to judge: the word-count rule will decide
    share = english_share(stats)
    return "lang:not_english" if share is not None and share < config.min_english_share else None


def gopher_word_count(stats: TextStats, config: QualityConfig) -> str | None:
    ok = config.min_words <= stats.document_words <= config.max_words
    return None if ok else "gopher:word_count"


def gopher_mean_word_length(stats: TextStats, config: QualityConfig) -> str | None:
    ok = config.min_mean_word_length <= mean_word_length(stats) <= config.max_mean_word_length
    return None if ok else "gopher:mean_word_length"


def gopher_symbol_ratio(stats: TextStats, config: QualityConfig) -> str | None:
    if symbol_word_ratio(stats, ("#",)) > config.max_symbol_word_ratio:
        return "gopher:hash_ratio"
    if symbol_word_ratio(stats, ELLIPSES) > config.max_symbol_word_ratio:
        return "gopher:ellipsis_ratio"
    return None


def gopher_bullet_lines(stats: TextStats, config: QualityConfig) -> str | None:
    share = line_share(stats, lambda line: line.startswith(BULLETS))
    return "gopher:bullet_lines" if share > config.max_bullet_line_share else None


def gopher_ellipsis_lines(stats: TextStats, config: QualityConfig) -> str | None:
    share = line_share(stats, lambda line: line.endswith(ELLIPSES))
    return "gopher:ellipsis_lines" if share > config.max_ellipsis_line_share else None


def gopher_alpha_words(stats: TextStats, config: QualityConfig) -> str | None:
    return "gopher:alpha_words" if alpha_word_share(stats) < config.min_alpha_word_share else None


# Gopher's eight English stop words, and for Spanish the eight most frequent words of Spanish text (our choice,
# in the spirit of the rule: real prose in the language cannot avoid them).
GOPHER_STOP_WORDS = {
    "en": QualityConfig.stop_words,
    "es": ("de", "la", "que", "el", "en", "y", "a", "los"),
}


def gopher_stop_words(stats: TextStats, config: QualityConfig) -> str | None:
    return "gopher:stop_words" if stop_word_count(stats, config.stop_words) < config.min_stop_words else None


def gopher_duplicate_lines(stats: TextStats, config: QualityConfig) -> str | None:
    share, char_share = duplicate_shares(stats.lines, len(stats.text))
    if share > config.max_dup_line_share:
        return "gopher:dup_line_frac"
    if char_share > config.max_dup_line_char_share:
        return "gopher:dup_line_char_frac"
    return None


def gopher_duplicate_paragraphs(stats: TextStats, config: QualityConfig) -> str | None:
    share, char_share = duplicate_shares(stats.paragraphs, len(stats.text))
    if share > config.max_dup_paragraph_share:
        return "gopher:dup_para_frac"
    if char_share > config.max_dup_paragraph_char_share:
        return "gopher:dup_para_char_frac"
    return None


def _ngram_shares(stats: TextStats, config: QualityConfig) -> dict[str, float]:
    top = tuple(n for n, _ in config.max_top_ngram_char_share)
    duplicated = tuple(n for n, _ in config.max_dup_ngram_char_share)
    return stats.ngram_shares(top, duplicated)


def gopher_top_ngrams(stats: TextStats, config: QualityConfig) -> str | None:
    shares = _ngram_shares(stats, config)
    for n, limit in config.max_top_ngram_char_share:
        if shares[f"top_{n}"] > limit:
            return f"gopher:top_{n}gram"
    return None


def gopher_duplicate_ngrams(stats: TextStats, config: QualityConfig) -> str | None:
    shares = _ngram_shares(stats, config)
    for n, limit in config.max_dup_ngram_char_share:
        if shares[f"dup_{n}"] > limit:
            return f"gopher:dup_{n}gram"
    return None


# In the order they run: the cheap Gopher quality rules, then the repetition rules, whose n-gram
# counting is the most expensive work of this module. (Language comes first too, as in FineWeb, but it
# is a step of its own now: `minilm.data.filters.language.language_filter`.)
PROSE_RULES = (
    gopher_word_count,
    gopher_mean_word_length,
    gopher_symbol_ratio,
    gopher_bullet_lines,
    gopher_ellipsis_lines,
    gopher_alpha_words,
    gopher_stop_words,
    gopher_duplicate_lines,
    gopher_duplicate_paragraphs,
    gopher_top_ngrams,
    gopher_duplicate_ngrams,
)


# ---------------------------------------------------------------------------------------------
# C4 rules

CITATION = regex.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", regex.IGNORECASE)
LOREM_IPSUM = regex.compile(r"lorem ipsum", regex.IGNORECASE)
JAVASCRIPT = regex.compile(r"javascript", regex.IGNORECASE)
POLICY = regex.compile(
    r"terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies", regex.IGNORECASE
)
# A line ends like a sentence: . ! ? or a closing quote (straight or curly, as in dialogue).
TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "”", "’")
_SENTENCE_END = regex.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")


def c4_line_reason(line: str, config: QualityConfig) -> str | None:
    """Why C4 drops this (stripped, citation-free) line, or None if it keeps it."""
    words = line.split()
    if any(len(word) > config.max_word_length for word in words):
        return "c4:long_word"
    if not line.endswith(TERMINAL_PUNCTUATION) or line.endswith(ELLIPSES):
        return "c4:no_terminal_punct"
    if len(words) < config.min_words_per_line:
        return "c4:few_words"
    if JAVASCRIPT.search(line):
        return "c4:javascript"
    if POLICY.search(line):
        return "c4:policy"
    return None


def c4_filter_lines(text: str, config: QualityConfig) -> tuple[str, list[tuple[str, str, str]]]:
    """Keep the lines C4 keeps, with Wikipedia-style citations ("[1]", "[edit]") cut out of them.

    Returns the new text (blank lines stay, so paragraphs stay) and the changes as
    (reason, line before, line after), the after empty for a dropped line.
    """
    kept, changes = [], []
    for line in text.split("\n"):
        stripped = CITATION.sub("", line).strip()
        if not stripped:
            kept.append("")
            continue
        reason = c4_line_reason(stripped, config)
        if reason:
            changes.append((reason, line, ""))
            continue
        if stripped != line.strip():
            changes.append(("c4:citation", line, stripped))
        kept.append(stripped)
    if not changes:  # nothing dropped: return the text exactly as it came
        return text, []
    return regex.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip("\n"), changes


def sentence_count(text: str) -> int:
    """Sentences in `text`, counted as their ends: ". ", "! ", "?" at the end of a line, maybe
    followed by a closing quote or bracket."""
    return len(_SENTENCE_END.findall(text))


def c4_lorem_ipsum(text: str) -> str | None:
    return "c4:lorem_ipsum" if LOREM_IPSUM.search(text) else None


def c4_curly_bracket(text: str) -> str | None:
    return "c4:curly_bracket" if "{" in text else None


def c4_too_few_sentences(text: str, config: QualityConfig) -> str | None:
    return "c4:too_few_sentences" if sentence_count(text) < config.min_sentences else None


# ---------------------------------------------------------------------------------------------
# Technical documents: judge the prose, not the code examples


def without_code_examples(text: str) -> str:
    """The prose of a technical document, with its code examples left out: doctest sessions
    (">>> " lines, "... " continuations and the expected output up to the next blank line),
    fenced blocks (```) and reST literal blocks (the indented block after a line ending in "::").

    Code has statistics of its own (short "words", braces, "#" comments, "..." prompts), so
    judging it by the rules for prose would throw away good reference pages.
    """
    prose = []
    in_fence = in_doctest = False
    literal_indent = None  # indentation of the "::" line whose literal block we are in
    for line in text.split("\n"):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                continue
            literal_indent = None
        if stripped.startswith(">>>"):
            in_doctest = True
            continue
        if in_doctest:
            if stripped:
                continue
            in_doctest = False
        prose.append(line)
        if stripped.endswith("::"):
            literal_indent = indent
    return "\n".join(prose)


# ---------------------------------------------------------------------------------------------
# Prose: all rules for one document


def prose_stats(text: str, domain: str) -> TextStats:
    """The statistics the prose rules read: of the whole text, or for a technical document, of its
    prose (with the word count of the whole page, code included)."""
    if domain == "docs":
        return TextStats(without_code_examples(text), document_words=count_words(text))
    return TextStats(text)


def prose_quality(
    text: str, domain: str = "web", config: QualityConfig | None = None
) -> tuple[str | None, str, list[tuple[str, str, str]]]:
    """Run the prose rules on one text: (first failed rule or None, text after C4's line filter,
    line changes as (reason, before, after)).

    The order: "lorem ipsum" (cheap, and junk anywhere), then `PROSE_RULES`, then C4. Which C4
    rules apply where:
    - the line filter (sentence-like lines of at least 3 words, at least 5 sentences left) is
      made for web pages, where the lines without punctuation are menus and buttons. In a book it
      would cut headings and short dialogue ("No!"), in a technical document signatures,
      headings and parameter lists; so it runs on `c4_line_domains` only;
    - "at least 5 sentences" runs on web pages (after the line filter) and on books, where it
      catches word salad: a text with no sentence in it (`min_sentences_domains`). A reference
      entry may rightly be a signature and one sentence;
    - the curly-bracket rule would wipe out technical documents, whose examples are full of
      dicts and sets, so it runs on `curly_bracket_domains` only.
    Technical documents are judged on their prose (`prose_stats`), with more room for repetition
    (`QualityConfig.docs_repetition_slack`).
    """
    config = config or QualityConfig()
    stats = prose_stats(text, domain)
    if domain == "docs":
        config = config.with_repetition_slack(config.docs_repetition_slack)
    if reason := c4_lorem_ipsum(text):  # the cheapest and most specific rule first
        return reason, text, []
    for rule in PROSE_RULES:
        if reason := rule(stats, config):
            return reason, text, []
    dropped: list[tuple[str, str, str]] = []
    if domain in config.c4_line_domains:
        text, dropped = c4_filter_lines(text, config)
    if domain in config.curly_bracket_domains and (reason := c4_curly_bracket(text)):
        return reason, text, dropped
    if domain in config.min_sentences_domains and (reason := c4_too_few_sentences(text, config)):
        return reason, text, dropped
    return None, text, dropped


# ---------------------------------------------------------------------------------------------
# Code rules

GENERATED = regex.compile(
    r"auto-?generated|automatically\s+generated|do\s+not\s+edit|don'?t\s+edit"
    r"|(?:file|module|code)\s+(?:is|was|has\s+been)\s+(?:\w+\s+)?generated"
    r"|generated\s+(?:by|from|with)\s+\S+\.(?:py|txt|json|proto|ya?ml|xml|in)\b",
    regex.IGNORECASE,
)
_LITERAL = regex.compile(
    r"""[rRbBuUfF]{0,2}(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")"""  # a string
    r"|[-+]?(?:0[xXoObB][0-9a-fA-F_]+|\d[\d_]*\.?\d*(?:[eE][-+]?\d+)?[jJ]?)"  # a number
    r"|\b(?:True|False|None)\b"
)
_COMMENT = regex.compile(r"\s+#.*$")
_NON_ALNUM = regex.compile(r"[^\p{L}\p{N}]+")


def is_data_line(line: str) -> bool:
    """A line made only of literals and separators, like a row of a table: ``0x00c6, 0x00c7,``
    or ``'AElig': 198,`` (a trailing comment allowed)."""
    if '"""' in line or "'''" in line:  # a docstring, not data
        return False
    line = _COMMENT.sub("", line)
    rest, found = _LITERAL.subn("", line)
    return found > 0 and not rest.strip(" \t,:;()[]{}")


def code_signals(text: str, config: QualityConfig | None = None) -> dict[str, float]:
    """The measured values the code rules compare with their thresholds."""
    config = config or QualityConfig()
    lines = text.splitlines() or [""]
    code_lines = [line for line in lines if line.strip()] or [""]
    header = "\n".join(lines[: config.generated_header_lines])
    return {
        "max_line_length": max(map(len, lines)),
        "mean_line_length": sum(map(len, lines)) / len(lines),
        "alphanumeric_share": len(_NON_ALNUM.sub("", text)) / max(len(text), 1),
        "generated_marker": float(bool(GENERATED.search(header))),
        "data_line_share": sum(map(is_data_line, code_lines)) / len(code_lines),
    }


def code_generated(signals: dict, config: QualityConfig) -> str | None:
    return "code:generated" if signals["generated_marker"] else None


def code_long_lines(signals: dict, config: QualityConfig) -> str | None:
    return "code:long_lines" if signals["max_line_length"] > config.max_line_length else None


def code_mean_line_length(signals: dict, config: QualityConfig) -> str | None:
    return "code:mean_line_length" if signals["mean_line_length"] > config.max_mean_line_length else None


def code_alphanumeric(signals: dict, config: QualityConfig) -> str | None:
    return "code:alphanumeric" if signals["alphanumeric_share"] < config.min_alphanumeric_share else None


def code_data_lines(signals: dict, config: QualityConfig) -> str | None:
    return "code:data_lines" if signals["data_line_share"] > config.max_data_line_share else None


CODE_RULES = (code_generated, code_long_lines, code_mean_line_length, code_alphanumeric, code_data_lines)


def code_quality(text: str, config: QualityConfig | None = None) -> str | None:
    """The first code rule this source file fails, or None."""
    config = config or QualityConfig()
    signals = code_signals(text, config)
    for rule in CODE_RULES:
        if reason := rule(signals, config):
            return reason
    return None


# ---------------------------------------------------------------------------------------------
# Signals and the step


def quality_signals(text: str, domain: str = "web", config: QualityConfig | None = None) -> dict[str, float]:
    """Every value the rules measure on `text`, for plotting distributions across a corpus."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; use one of {DOMAINS}")
    config = config or QualityConfig()
    if domain == "code":
        return code_signals(text, config)
    stats = prose_stats(text, domain)
    line_dups = duplicate_shares(stats.lines, len(stats.text))
    paragraph_dups = duplicate_shares(stats.paragraphs, len(stats.text))
    share = english_share(stats)
    return {
        "words": stats.document_words,
        "mean_word_length": mean_word_length(stats),
        "hash_ratio": symbol_word_ratio(stats, ("#",)),
        "ellipsis_ratio": symbol_word_ratio(stats, ELLIPSES),
        "bullet_line_share": line_share(stats, lambda line: line.startswith(BULLETS)),
        "ellipsis_line_share": line_share(stats, lambda line: line.endswith(ELLIPSES)),
        "alpha_word_share": alpha_word_share(stats),
        "stop_words": stop_word_count(stats, config.stop_words),
        "english_share": 1.0 if share is None else share,
        "dup_line_share": line_dups[0],
        "dup_line_char_share": line_dups[1],
        "dup_paragraph_share": paragraph_dups[0],
        "dup_paragraph_char_share": paragraph_dups[1],
        **{f"{name}gram_char_share": value for name, value in _ngram_shares(stats, config).items()},
        "sentences": sentence_count(text),
        "terminal_line_share": line_share(stats, lambda line: line.endswith(TERMINAL_PUNCTUATION)),
    }


def quality_filter(docs: list[Document], config: QualityConfig | None = None) -> StepResult:
    """Drop the documents that fail a rule (with the first rule they fail as the reason), and
    apply C4's line filter to the web pages that stay (each dropped line an `Edit`).

    Prose rules for "web", "books" and "docs" (see `prose_quality`), code rules for "code". A document
    that the language step labelled (`labels["identified"]`) is held to the stop words of its language.
    """
    config = config or QualityConfig()
    by_language = {language: dataclasses.replace(config, stop_words=words) if language != "en" else config
                   for language, words in GOPHER_STOP_WORDS.items()}
    result = StepResult(name="quality", kept=[])
    for doc in check_documents(docs, "quality_filter"):
        if not isinstance(doc.text, str):
            raise TypeError(f"document {doc.id!r} has text of type {type(doc.text).__name__}, not str")
        if doc.domain not in DOMAINS:
            raise ValueError(f"document {doc.id!r} has unknown domain {doc.domain!r}; use one of {DOMAINS}")
        if doc.domain == "code":
            reason, text, dropped = code_quality(doc.text, config), doc.text, []
        else:
            language_config = by_language.get(doc.labels.get("identified", "en"), config)
            reason, text, dropped = prose_quality(doc.text, doc.domain, language_config)
        if reason:
            result.removed.append(Removal(doc, reason))
            continue
        result.edits += [Edit(doc.id, why, before, after) for why, before, after in dropped]
        result.kept.append(doc if text == doc.text else doc.replace(text=text))
    return result
