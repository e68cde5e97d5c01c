"""Personal data (PII): finding e-mail addresses, phone numbers, IP addresses and secrets, and masking them.

Personal data has *shape*: an e-mail address, a phone number, an IP address, an API key.
Precompiled regular expressions find the shapes; the hard part is precision (a version string
"3.11.7", a date, an ISBN must not be masked), so each pattern says what it accepts and why.
`pii_filter` replaces each find with a placeholder ("<EMAIL>", "<PHONE>", "<IP>", "<SECRET>") and
removes nothing: the text around an address is still good text.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from typing import Iterable, NamedTuple

import regex

from minilm.data.documents import Document, Edit, StepResult, check_documents

# ---------------------------------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------------------------------

EMAIL = regex.compile(r"""
    (?<![\w.%+-])                                   # starts a word: not inside a longer token
    [A-Za-z0-9][A-Za-z0-9._%+-]{0,63}+              # local part: up to 64 characters
    @
    (?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+   # domain labels, each ending in a dot
    [A-Za-z]{2,24}                                  # a top-level domain of letters (so not user@10.0.0.1)
    (?![\w-])
""", regex.VERBOSE)
"""An e-mail address: local@domain.tld. A dotted domain with a letter TLD is required, so Python
decorators ("@property") and "user@localhost" are not matched."""

PHONE_US = regex.compile(r"""
    (?<![\w+.-])                                    # not the tail of a longer number or word
    (?:\+?1[ .-]?)?                                 # optional country code 1
    (?:
        \(\d{3}\)\ ?\d{3}[ .-]\d{4}                 # (555) 123-4567
      | \d{3}(?P<sep>[.-])\d{3}(?P=sep)\d{4}        # 555-123-4567, 555.123.4567: one separator throughout
    )
    (?![\w-]|[.,]\d|:\w)                            # not followed by more digits, a time or an IPv6
""", regex.VERBOSE)
"""A North American number: 3-3-4 digits, with the area code in parentheses or the same separator
("-" or ".") between all groups. Dates (2024-05-01: 4-2-2) and ISBNs (978-3-16-148410-0) have other
group sizes; plain space-separated "100 200 3000" is left alone because tables of numbers look the same."""

PHONE_INTL = regex.compile(r"""
    (?<![\w+)])
    \+\d{1,3}                                       # "+" and a country code
    (?:[ .-]?\(\d{1,4}\))?                          # optional area code in parentheses: +44 (0)20
    [ .-]?\d{1,12}                                  # first group (written compactly: +442079460958)
    (?:(?P<sep>[ .-])\d{2,8}(?:(?P=sep)\d{2,8}){0,3})?   # more groups, one separator throughout
    (?![\w-]|[.,]\d|:\w)
""", regex.VERBOSE)
"""An international number in E.164 style: "+44 20 7946 0958", "+33 1 23 45 67 89", "+81-3-1234-5678".
The leading "+" is required, and `_candidates` checks 8 to 15 digits in all (the E.164 limit), cutting
trailing groups that make it too long ("+44 20 7946 0958 2001" is a number and a year). One separator
throughout also keeps a number from swallowing the next one: "+49 30 1234567 2024-05-01"."""

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = regex.compile(rf"""
    (?<![\w.])                                      # not the tail of a longer dotted number
    (?<!(?i:version|release|build|sections?|chapter|rfc|§)\s{{0,3}}["']?)   # "version 1.2.3.4", "section 8.2.4.44"
    {_OCTET}(?:\.{_OCTET}){{3}}                     # four octets 0-255, no leading zeros
    (?![\w]|\.\d)                                   # not the head of a longer dotted number (1.2.3.4.5)
""", regex.VERBOSE)
"""An IPv4 address: four dot-separated numbers 0-255. Version strings have three parts ("3.11.7") or
are preceded by "version"; all-single-digit "1.2.3.4" (section numbers) is rejected by `_valid_ip`."""

_H = r"[0-9A-Fa-f]{1,4}"
IPV6 = regex.compile(rf"""
    (?<![\w:])
    (?:
        (?:{_H}:){{7}}{_H}                           # full form: eight groups
      | [0-9A-Fa-f]{{4}}(?::{_H}){{0,5}}::(?:{_H}(?::{_H}){{0,5}})?   # compressed: 2001:db8::1, fe80::1
    )
    (?![\w:])
""", regex.VERBOSE)
"""An IPv6 address, full or "::"-compressed. A compressed one must start with a group of four hex digits,
and `_valid_ip` wants a decimal digit in it (2001:, fe80:), so slices "x[1::2]", times "12:30:45" and
C++ names "dead::beef" don't match."""

OPENAI_KEY = regex.compile(r"(?<![\w-])sk-(?:proj-)?[A-Za-z0-9]{32,}+(?![\w-])")
"""An OpenAI-style key: "sk-" and 32 or more letters and digits ("task-..." is excluded by the word start)."""

AWS_KEY = regex.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])")
"""An AWS access key id: "AKIA" (or "ASIA" for temporary keys) and exactly 16 capitals or digits."""

GITHUB_TOKEN = regex.compile(r"(?<![\w])gh[pousr]_[A-Za-z0-9]{36}(?![\w])")
"""A GitHub token: "ghp_" (or gho_, ghu_, ghs_, ghr_) and exactly 36 letters and digits."""

SLACK_TOKEN = regex.compile(r"(?<![\w-])xox[baprs]-[A-Za-z0-9-]{10,}+(?![\w-])")
"""A Slack token: "xoxb-", "xoxp-", ... and dash-separated letters and digits."""

_SECRET_NAME = r"(?i:(?:api|access|private|secret|auth)[_-]?key|apikey|secret|token|passw(?:or)?d|pwd)[\w-]*"
ASSIGNED_SECRET = regex.compile(rf"""
    (?:                                            # each anchor first, then a look back for the name
        [:=](?<={_SECRET_NAME}['"]?[ \t]*[:=])        # api_key = ..., "password": ..., SECRET_KEY: ...
      | ,(?<={_SECRET_NAME}['"][ \t]*,)               # os.environ.setdefault("GITHUB_TOKEN", ...)
      | is(?<={_SECRET_NAME}[ \t]+is)(?=[ \t])        # my token is ...
      | (?<!\w)Bearer(?=[ \t])                       # Authorization: Bearer ...
    )
    [ \t]*
    (?P<quote>['"]?)
    (?P<value>[A-Za-z0-9_\-+/=.!@#$%^&*~]{{8,200}}+)   # the value (masked, not the name)
    (?P=quote)
    (?![^\s,;)\]}}'"])                                # ends the expression
""", regex.VERBOSE)
"""A value given to a name like api_key, aws_access_key_id, SECRET_KEY, auth_token or password, in code,
config, JSON or prose ("my token is ..."), or sent as "Bearer ...". The name is looked for behind each
":", "=", "," or "is", which is much faster than looking for the names everywhere. Only the value is masked
("api_key = '<SECRET>'"), and only if `_valid_secret` finds it secret-like: high entropy, letters and
digits, not a placeholder. So "max_tokens = 1024", 'eos_token = "<|endoftext|>"' and
"tokenizer = AutoTokenizer.from_pretrained(...)" are left alone."""

PII_PATTERNS: tuple[tuple[str, regex.Pattern], ...] = (
    # earlier kinds win when two matches overlap ("api_key = 'sk-...'" is one secret)
    ("secret", OPENAI_KEY), ("secret", AWS_KEY), ("secret", GITHUB_TOKEN), ("secret", SLACK_TOKEN),
    ("secret", ASSIGNED_SECRET), ("email", EMAIL), ("ip", IPV4), ("ip", IPV6),
    ("phone", PHONE_US), ("phone", PHONE_INTL),
)
PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP>", "secret": "<SECRET>"}

# Addresses that name no one: loopback, "any address", broadcast. Masking them would break code and docs.
IP_ALLOWLIST = frozenset({"127.0.0.1", "0.0.0.0", "255.255.255.255", "255.255.255.0"})
SECRET_PLACEHOLDER_WORDS = ("your", "example", "here", "xxxx", "changeme", "placeholder", "dummy",
                            "redacted", "secret>", "<", "${", "{{", "environ", "getenv", "****")
MIN_SECRET_ENTROPY = 3.0  # bits per character; English words and identifiers score lower
MIN_PHONE_DIGITS, MAX_PHONE_DIGITS = 8, 15  # E.164 allows at most 15 digits; fewer than 8 is no full number


def _entropy(text: str) -> float:
    """Shannon entropy in bits per character: how unpredictable the characters of `text` are."""
    counts, n = Counter(text), len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _valid_secret(value: str) -> bool:
    low = value.lower()
    return (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
            and not any(word in low for word in SECRET_PLACEHOLDER_WORDS)
            and _entropy(value) >= MIN_SECRET_ENTROPY)


_DIGIT = regex.compile(r"\d")
_LAST_GROUP = regex.compile(r"[ .-]\d+$")
_IPV6_HINT = regex.compile(r":[0-9A-Fa-f]{1,4}:")  # every IPv6 address has this or "::"


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def _valid_ip(text: str) -> bool:
    if text in IP_ALLOWLIST:
        return False
    if "." in text:
        return not all(len(part) == 1 for part in text.split("."))  # "1.2.3.4" is a section number
    if "::" in text and not any(c.isdigit() for c in text.split(":")[0]):
        return False  # "dead::beef", "Face::add" are C++ names
    return text.count(":") <= 7


class _Match(NamedTuple):
    kind: str
    start: int
    end: int


def _candidates(text: str) -> Iterable[_Match]:
    # cheap checks that let most texts skip the slower patterns
    has_at, has_digit = "@" in text, _DIGIT.search(text) is not None
    has_ipv6 = "::" in text or _IPV6_HINT.search(text) is not None
    for kind, pattern in PII_PATTERNS:
        if (kind == "email" and not has_at or kind in ("ip", "phone") and not has_digit
                or pattern is IPV6 and not has_ipv6):
            continue
        for m in pattern.finditer(text):
            if pattern is ASSIGNED_SECRET:
                start, end = m.span("value")
                if not m.group("quote"):
                    end = start + len(m.group("value").rstrip(".,"))  # "password=abc123xyz." ends a sentence
                if _valid_secret(text[start:end]):
                    yield _Match(kind, start, end)
            elif kind == "phone":
                start, end = m.span()
                while _digits(text[start:end]) > MAX_PHONE_DIGITS and (last := _LAST_GROUP.search(text, start, end)):
                    end = last.start()  # the match swallowed the next number: cut its last group
                if MIN_PHONE_DIGITS <= _digits(text[start:end]) <= MAX_PHONE_DIGITS:
                    yield _Match(kind, start, end)
            elif kind != "ip" or _valid_ip(m.group()):
                yield _Match(kind, m.start(), m.end())


def find_pii(text: str) -> list[tuple[str, int, int]]:
    """Every piece of personal data in `text`, as (kind, start, end), sorted and non-overlapping.

    Kinds are "email", "phone", "ip", "secret". When two matches overlap the earlier kind in
    PII_PATTERNS wins (a secret over an e-mail over an IP over a phone), then the longer match.
    """
    taken: list[_Match] = []  # kept sorted by start, so a new match needs checking against two neighbours
    starts: list[int] = []
    order = {kind: rank for rank, (kind, _) in enumerate(PII_PATTERNS)}
    for match in sorted(_candidates(text), key=lambda m: (order[m.kind], m.start - m.end, m.start)):
        k = bisect.bisect_left(starts, match.start)
        if (k > 0 and taken[k - 1].end > match.start) or (k < len(taken) and taken[k].start < match.end):
            continue
        taken.insert(k, match)
        starts.insert(k, match.start)
    return [tuple(m) for m in taken]


def mask_pii(text: str) -> tuple[str, list[tuple[str, int, int]]]:
    """Replace each piece of personal data with its placeholder ("<EMAIL>", "<PHONE>", "<IP>",
    "<SECRET>"); returns the masked text and what was found (spans in the original text).
    Masking is idempotent: the placeholders match no pattern, so masking twice changes nothing more."""
    found = find_pii(text)
    pieces, last = [], 0
    for kind, start, end in found:
        pieces += [text[last:start], PLACEHOLDERS[kind]]
        last = end
    pieces.append(text[last:])
    return "".join(pieces), found


def pii_filter(docs: list[Document]) -> StepResult:
    """Mask personal data in every document (one Edit per replacement, reason "pii:<kind>").
    Nothing is removed: the text around an address is still good text."""
    result = StepResult("pii", kept=[])
    for doc in check_documents(docs, "pii_filter"):
        masked, found = mask_pii(doc.text)
        if not found:
            result.kept.append(doc)
            continue
        result.edits += [Edit(doc.id, f"pii:{kind}", doc.text[start:end], PLACEHOLDERS[kind])
                         for kind, start, end in found]
        result.kept.append(doc.replace(text=masked))
    return result
