"""Planting defects into documents, and writing down exactly what was planted.

Real pretraining data is full of copies, junk pages, insults, phone numbers and broken characters.
Our sources are clean, so we break them on purpose, the way the web breaks text, and record the
truth in `doc.labels`. Every filter of stage 1 is then scored by precision and recall against
these labels. The contract (the "defect catalogue") is shared with the filters:

| defect           | domains          | what is planted                                        | labels                              |
| ---------------- | ---------------- | ------------------------------------------------------ | ----------------------------------- |
| `exact_dup`      | all              | a verbatim copy "<id>-dupN", placed after the original | dup_of                              |
| `near_dup`       | prose            | a copy with a few words changed, a sentence dropped or | dup_of, jaccard (5-word shingles of|
|                  |                  | added                                                  | the content, 0.65 to 0.95)          |
| `low_quality`    | prose            | a new junk document                                    | quality_kind                        |
| `toxic`          | prose            | insults, threats, harassment, each its own line        | toxic_lines                         |
| (hard negatives) | prose            | the same words used harmlessly, each its own line      | hard_negatives, toxic_hard_negatives|
| `pii`            | prose (e-mail,   | personal data inside a natural sentence or code line   | pii: [{kind, text}]                 |
|                  | phone, ip), code |                                                        |                                     |
|                  | (mostly secrets) |                                                        |                                     |
| (hard negatives) | all              | versions, dates, prices, ISBNs, times, numbers, hashes | hard_negatives, pii_hard_negatives  |
| `noise`          | prose            | mojibake and control characters inside words           | noise: [{kind, text, fixed}]        |
| `generated_code` | code             | a new auto-generated file (tables, long lines, ...)    | generated_kind                      |

"prose" is the web, books and docs domains. Planted strings are always verbatim in the text, and a
defect never damages another one (or a boilerplate line a source recorded): each kind is planted
only outside the strings already listed in the labels.

What counts as "control" noise: C0 control characters other than tab and line ends (we plant
\\x00, \\x07, \\x08, \\x1b), DEL (\\x7f), and the invisible format characters U+200B (zero-width
space) and U+FEFF (a byte-order mark inside text). The "text" of a noise item is the damaged word
as it appears, "fixed" the word as it should read. Mojibake is UTF-8 decoded as cp1252: "don't"
written with a typographic apostrophe "don’t" becomes "donâ€™t"; "fixed" is "don’t".
"""

from __future__ import annotations

import ast
import dataclasses
import random
import re
import string
from collections import Counter

from minilm.data.documents import DOMAINS, Document
from minilm.data.filters import dedup
from minilm.data.sources.stories.grammar import story_vocabulary
from minilm.world import ALL_NAMES, COLOURS, OBJECTS, PLACES, SURNAMES

PROSE_DOMAINS = ("web", "books", "docs")
QUALITY_KINDS = (
    "keyword_spam", "symbol_soup", "lorem_ipsum", "repeated_lines",
    "word_salad", "too_short", "bullet_spam", "javascript_notice",
)  # fmt: skip

# ---------------------------------------------------------------------------------------------
# Slots: the values templates are filled with. Each maker gets the rng and the slots filled so far
# (so an e-mail can belong to the person the sentence names). A slot whose kind is not None is
# recorded: a PII kind ("email", "phone", "ip", "secret") or a hard-negative kind.

PII_KINDS = ("email", "phone", "ip", "secret")


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _alnum(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _email(rng: random.Random, slots: dict) -> str:
    first = (slots.get("name") if rng.random() < 0.7 else None) or rng.choice(ALL_NAMES)
    first, last = first.lower(), rng.choice(SURNAMES).lower()
    user = rng.choice([f"{first}.{last}", f"{first}{last}{rng.randint(1, 99)}", f"{first[0]}_{last}",
                       f"{first}+{rng.choice(['club', 'news', 'school'])}", f"{first}.{last}{rng.randint(70, 99)}"])  # fmt: skip
    domain = rng.choice(["example.com", "example.org", "mail.example.net", "school.example.edu", "post.example.co.uk"])
    return f"{user}@{domain}"


def _phone(rng: random.Random, slots: dict) -> str:
    area, mid, end = f"{rng.randint(201, 989)}", _digits(rng, 3), _digits(rng, 4)
    return rng.choice([
        f"({area}) {mid}-{end}", f"{area}-{mid}-{end}", f"{area}.{mid}.{end}", f"+1 {area} {mid} {end}",
        f"+1-{area}-{mid}-{end}", f"+1 ({area}) {mid}-{end}",
        f"+44 20 {_digits(rng, 4)} {_digits(rng, 4)}", f"+44 7{_digits(rng, 3)} {_digits(rng, 6)}",
        f"+49 30 {_digits(rng, 4)} {_digits(rng, 4)}", f"+33 1 {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}",
        f"+61 2 {_digits(rng, 4)} {_digits(rng, 4)}",
    ])  # fmt: skip


def _ip(rng: random.Random, slots: dict) -> str:
    octet = lambda: rng.randint(1, 254)  # noqa: E731
    if rng.random() < 0.1:  # a few IPv6 addresses
        groups = [f"{rng.randint(1, 0xFFFF):x}" for _ in range(4)]
        return rng.choice([f"2001:db8:{groups[0]}::{groups[1]}:{groups[2]}", f"fe80::{groups[0]}:{groups[1]}:{groups[2]}:{groups[3]}"])
    return rng.choice([
        f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{octet()}", f"192.168.{rng.randint(0, 255)}.{octet()}",
        f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{octet()}", f"203.0.113.{octet()}",
        f"198.51.100.{octet()}", f"{rng.randint(11, 223)}.{octet()}.{octet()}.{octet()}",
    ])  # fmt: skip


def _secret(rng: random.Random, slots: dict) -> str:
    return rng.choice([
        "sk-" + _alnum(rng, rng.choice([32, 40, 48])),
        "AKIA" + _alnum(rng, 16, string.ascii_uppercase + "234567"),
        "ghp_" + _alnum(rng, 36),
        _alnum(rng, 32, "0123456789abcdef"),
        _alnum(rng, 40),
    ])  # fmt: skip


def _version(rng: random.Random, slots: dict) -> str:
    if rng.random() < 0.3:
        return f"{rng.randint(0, 9)}.{rng.randint(0, 30)}"
    return f"{rng.randint(1, 4)}.{rng.randint(0, 15)}.{rng.randint(0, 12)}"


def _pin(rng: random.Random, slots: dict) -> str:
    """A pinned package version, as in requirements files: "torch==2.13.0"."""
    package = rng.choice(["torch", "numpy", "regex", "tqdm", "requests", "pytest"])
    return f"{package}{rng.choice(['==', '>=', '~='])}{_version(rng, slots)}"


def _date(rng: random.Random, slots: dict) -> str:
    y, m, d = rng.randint(1990, 2025), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice([f"{y}-{m:02d}-{d:02d}", f"{m:02d}/{d:02d}/{y}", f"{d:02d}.{m:02d}.{y}"])


def _price(rng: random.Random, slots: dict) -> str:
    return f"{rng.choice('$€£')}{rng.randint(1, 250)}.{rng.randint(0, 99):02d}"


def _isbn(rng: random.Random, slots: dict) -> str:
    """A valid ISBN-13 with hyphens, such as 978-3-16-148410-0."""
    group, publisher = str(rng.randint(0, 9)), _digits(rng, rng.randint(2, 4))
    title = _digits(rng, 8 - len(publisher))
    body = "978" + group + publisher + title
    check = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body)) % 10) % 10
    return f"978-{group}-{publisher}-{title}-{check}"


def _time(rng: random.Random, slots: dict) -> str:
    return rng.choice([f"{rng.randint(0, 23):02d}:{rng.choice([0, 15, 30, 45]):02d}", f"{rng.randint(1, 12)}:{rng.randint(0, 59):02d}"])


def _number(rng: random.Random, slots: dict) -> str:
    return rng.choice([
        f"{rng.randint(1, 99)},000", f"{rng.randint(1, 9)},{rng.randint(0, 999):03d},{rng.randint(0, 999):03d}",
        _digits(rng, 1) + "." + _digits(rng, 1), str(rng.randint(1900, 2024)), str(rng.randint(1000000, 9999999)),
        f"{rng.randint(10, 99)}.{rng.randint(0, 9)}%", f"{rng.randint(0, 40)}-{rng.randint(0, 40)}",
    ])  # fmt: skip


def _hash(rng: random.Random, slots: dict) -> str:
    return _alnum(rng, rng.choice([40, 64]), "0123456789abcdef")


def _uuid(rng: random.Random, slots: dict) -> str:
    h = _alnum(rng, 32, "0123456789abcdef")
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _person(rng: random.Random, slots: dict) -> str:
    return rng.choice(ALL_NAMES)


def _pick(*options: str):
    return lambda rng, slots: rng.choice(options)


# The insults of the toxic lines: the world's toxic vocabulary. A clean story never uses these words,
# but the hard negatives do, harmlessly ("the clown at the park"); stage 7's gold reward counts them
# in a chat answer, where they never belong.
INSULT_ADJECTIVES = ("stupid", "worthless", "useless", "pathetic", "disgusting", "dumb", "brainless", "hopeless")
INSULT_TRAITS = ("lazy", "smelly", "ugly", "miserable", "annoying", "nasty", "selfish")
INSULT_NOUNS = ("idiot", "moron", "loser", "fool", "creep", "freak", "clown", "failure", "jerk", "weirdo")
TOXIC_WORDS = frozenset(INSULT_ADJECTIVES + INSULT_TRAITS + INSULT_NOUNS)

# slot -> (kind recorded in the labels, or None; maker)
SLOTS = {
    "email": ("email", _email), "phone": ("phone", _phone), "ip": ("ip", _ip), "secret": ("secret", _secret),
    "version": ("version", _version), "pin": ("version", _pin), "date": ("date", _date), "price": ("price", _price), "isbn": ("isbn", _isbn),
    "time": ("time", _time), "number": ("number", _number), "hash": ("hash", _hash), "uuid": ("uuid", _uuid),
    "name": (None, _person), "name2": (None, _person), "place": (None, _pick(*PLACES)),
    "obj": (None, lambda rng, slots: f"{rng.choice(COLOURS)} {rng.choice(OBJECTS)}"),
    "adj": (None, _pick(*INSULT_ADJECTIVES)), "adj2": (None, _pick(*INSULT_TRAITS)), "noun": (None, _pick(*INSULT_NOUNS)),
    "body": (None, _pick("arms", "legs", "nose", "teeth", "face", "fingers")),
    "work": (None, _pick("drawings", "songs", "cakes", "poems", "stories", "photos")),
}  # fmt: skip
SLOT = re.compile(r"\{(\w+)\}")


def fill(template: str, rng: random.Random) -> tuple[str, list[dict]]:
    """Fill a template's slots; returns the text and the recorded items [{"kind", "text"}]."""
    slots: dict[str, str] = {}
    items = []
    for name in dict.fromkeys(SLOT.findall(template)):  # in order of appearance, each once
        base = name.rstrip("0123456789") if name not in SLOTS else name
        kind, make = SLOTS[base]
        slots[name] = make(rng, slots)
        if kind:
            items.append({"kind": kind, "text": slots[name]})
    return template.format_map(slots), items


# ---------------------------------------------------------------------------------------------
# The planted material. Toxic lines attack a person (you, a name) with an insult, a threat or
# harassment; their hard negatives use the same words about things, in quotes, in advice, in
# technical senses. PII sits in ordinary sentences; its hard negatives look like numbers too.

TOXIC_TEMPLATES = (
    "You are a {adj}, {adj2} {noun}.",
    "{name}, you are the most {adj} {noun} I have ever met.",
    "Shut up, {name}, you {adj} {noun}.",
    "Nobody likes you, {name}, you {noun}.",
    "{name} is a {adj} {noun} and everyone knows it.",
    "Go away, you {adj} {noun}, nobody wants you here.",
    "I will hurt you if you come back to the {place}.",
    "If I see you at the {place} again, I will break your {body}.",
    "I know where you live, {name}, and I am coming for you.",
    "You had better watch your back, {name}.",
    "I am going to make you cry, you {adj} {noun}.",
    "Everyone at the {place} laughs at you behind your back, {name}.",
    "You are so {adj} that even your own family is ashamed of you.",
    "{name}, you should just disappear forever.",
    "Keep talking and I will punch you in the face, {name}.",
    "You {adj} {noun}, you cannot do anything right.",
    "What a {adj} {noun} you are, {name}.",
    "Hey {name}, you {adj} {noun}, go home and never come back.",
    "I hate you, {name}, and I hope you fail.",
    "You are worthless and you will always be a {noun}.",
    "Your {work} are garbage and so are you, {name}.",
    "No one will ever love a {adj} {noun} like you.",
    "Stay away from the {place} or you will be sorry, {name}.",
    "I will make your life miserable, {name}.",
    "Only a {adj} {noun} like {name} would say something that {adj2}.",
    "Look at {name}, what a {adj} {noun}.",
    "You {noun}, I will find you after school and beat you up.",
    "Get out of here, {name}, you make me sick.",
    "Say that again and I will smash your {body}, you {noun}.",
    "Shut your mouth, you {adj} {noun}.",
    "I will beat you up if you tell anyone, {name}.",
    "Everyone thinks you are a {adj} {noun}, {name}.",
    "You should be ashamed to be such a {adj} {noun}.",
    "People like you are trash and do not deserve friends, {name}.",
    "Your face is ugly and your voice is even worse, {name}.",
    "Nobody at the {place} wants to see your {adj} face again.",
    "Do us all a favour and leave, you {adj} {noun}.",
    "I swear I will hurt you, {name}.",
    "{name} is {adj} and {adj2}, and nobody should talk to that {noun}.",
    "You are a waste of space, {name}.",
    "Come near me again and I will kill you, you {noun}.",
    "{name}, you {adj} little {noun}, I will ruin you.",
)
TOXIC_HARD_NEGATIVES = (
    "Use kill -9 to kill the process if it stops answering.",
    "{name}'s mother said never to call anyone stupid.",
    "The battery was dead, so the game was over.",
    "The word idiot comes from an old Greek word for a private person.",
    "In the old tale, the fool turns out to be the wisest one in the castle.",
    "The clown at the {place} made every child laugh.",
    "{name} said that calling people names is mean and hurts their feelings.",
    "The old pig on the farm rolled happily in the mud.",
    "It was a dumb mistake, and {name} laughed about it later.",
    "The film had a stupid ending, but the music was lovely.",
    "Do not throw trash in the river; put it in the bin.",
    "The ugly duckling grew up to be a beautiful swan.",
    "{name} beat the old record in the race by two seconds.",
    "Crush the garlic and chop the onions before you start.",
    "The rat in the old story was clever and brave.",
    "I hate rainy Mondays, but I love the smell of rain.",
    "Press the red button to shut down the machine.",
    "The storm will hit the coast tonight, so stay inside.",
    "{name} shot the ball into the net and scored.",
    "The dead leaves crunched under our boots at the {place}.",
    "The knife is sharp, so cut the bread slowly.",
    "The monster in the book was ugly but kind.",
    "{name} felt stupid for forgetting the keys, but it was fine.",
    "Nobody is worthless; everyone has something to give.",
    "The sign at the {place} said: please do not feed the pigs.",
    "The Idiot is a famous novel by Dostoevsky.",
    "The robot was hopeless at dancing, which made everyone smile.",
    "You can kill the weeds by pulling them out by the roots.",
    "This command will destroy the old files, so make a copy first.",
    "The old car was a piece of junk, but it still ran.",
    "{name} whispered that the puzzle was hopeless, then solved it.",
    "The hungry wolf in the fairy tale wanted to eat the little pigs.",
    "Words like stupid and loser can hurt, so choose kind words.",
    "My phone is dead, so I will call you tomorrow, {name}.",
    "You are a star, {name}, and I am proud of you.",
    "The loser of the game has to tidy up the toys.",
    "Break the chocolate into small pieces and melt it slowly.",
    "The useless old printer finally went to the recycling centre.",
    "If a test hangs, the runner will kill it after ten minutes.",
    "The joke was so dumb that the whole class laughed.",
    "Firefighters had to smash the window to save the cat.",
    "The game lets you shoot arrows at a target made of straw.",
)
PII_SENTENCES = (
    "You can write to {name} at {email} or call {phone}.",
    "Send your drawings to {email} and we will print the best ones.",
    "For questions about the reading club, email {email}.",
    "My email is {email}, so write to me any time.",
    "Please reply to {email} before the end of the week.",
    "If you find a lost {obj}, write to {email}.",
    "The sign-up list is kept by {name} ({email}).",
    "Questions? Contact {name} at {email}.",
    "{name} asked us to send the photos from the {place} to {email}.",
    "Call {name} at {phone} if the {place} is closed.",
    "{name}'s new number is {phone}, so call after six.",
    "You can reach the office on {phone} during the day.",
    "For tickets, phone {phone} and ask for {name}.",
    "Text me at {phone} when you get to the {place}.",
    "The number on the lost {obj} poster was {phone}.",
    "If nobody answers, try {name} on {phone}.",
    "{name} can be reached at {phone} or {email}.",
    "Ring {phone} to book a table for Saturday.",
    "The server at {ip} stopped answering last night.",
    "{name} connected to {ip} to copy the photos.",
    "Our printer lives at {ip} on the home network.",
    "The game was hosted on {ip}, so everyone joined from there.",
    "The camera at the {place} sends its pictures to {ip}.",
    "If the page does not load, try {ip} directly.",
    "The router gave the laptop the address {ip}.",
    "Someone kept logging in from {ip} at night.",
    "Please add {ip} to the list of allowed machines, {name}.",
    "My cousin {name} lives at the end of our road; her email is {email}.",
    "To join the team, send a short note to {email} or call {phone}.",
    "The shop owner, {name}, gave me a card that said {phone}.",
    "I wrote to {email} twice but nobody answered.",
    "Backups are copied every night to the machine at {ip}.",
)
SECRET_SENTENCES = (  # prose that leaks a key (docs and web pages do)
    "Then set the key with export OPENAI_API_KEY={secret} and run the script.",
    "My token is {secret}, please do not share it with anyone.",
    "Paste your key, for example {secret}, into the settings page.",
)
PII_HARD_NEGATIVES = (
    "The library upgraded to version {version} last spring.",
    "Install it with pip install {pin} if the tests fail.",
    "The fair opens on {date} at {time}.",
    "A big bag of apples costs {price} at the {place}.",
    "The book's ISBN is {isbn}, printed on the back cover.",
    "The show starts at {time} sharp.",
    "{name} counted {number} stars in the night sky.",
    "More than {number} people came to the {place} that day.",
    "The final score was {number}, and everyone cheered.",
    "The old clock at the {place} was made in {number}.",
    "Release v{version} fixed the bug with the {obj}.",
    "The price went down from {price} to {price2}.",
    "The bus leaves at {time} and arrives at {time2}.",
    "Order number {number} is ready to collect.",
    "The recipe asks for {number} grams of flour.",
    "The letter was dated {date} and signed by {name}.",
    "Chapter {version} explains how seeds grow.",
    "You can find it in the catalogue under ISBN {isbn}.",
    "Tickets cost {price} for children and {price2} for adults.",
    "We planted {number} trees along the road to the {place}.",
    "The meeting moved from {date} to {date2}.",
    "Python {version} is the version used in this course.",
    "The train to the {place} leaves every day at {time}.",
    "The new {obj} cost {price}, which was a lot of money.",
    "On {date}, {name} saw the first snow of the year.",
    "The changelog for {version} lists three small fixes.",
    "Our class collected {number} bottle caps for the art project.",
    "Doors open at {time}; the film starts at {time2}.",
)
# Code: lines a programmer might have left in a file.
CODE_PII_LINES = (
    'API_KEY = "{secret}"',
    "api_key = '{secret}'",
    'OPENAI_API_KEY = "{secret}"',
    'client = Client(api_key="{secret}")',
    'headers = {{"Authorization": "Bearer {secret}"}}',
    'os.environ.setdefault("GITHUB_TOKEN", "{secret}")',
    "aws_access_key_id = '{secret}'",
    'SECRET_KEY = "{secret}"',
    "# token: {secret}",
    'token = "{secret}"  # TODO: move to the environment',
    'DEFAULT_HOST = "{ip}"',
    "# Maintainer: {name} <{email}>",
    "# Questions to {email}",
    'SMTP_SERVER = "{ip}"',
    'ADMIN_EMAIL = "{email}"',
)
CODE_HARD_NEGATIVES = (
    '__version__ = "{version}"',
    "# Requires {pin} or later.",
    'RELEASE_DATE = "{date}"',
    'EXPECTED_SHA256 = "{hash}"',
    'SESSION_ID = "{uuid}"',
    "# Last checked on {date} against {pin}.",
    'MIN_VERSION = "{version}"',
    "# Raised the limit to {number} after the tests on {date}.",
    'COMMIT = "{hash}"',
    'BUILD_ID = "{uuid}"',
)


# ---------------------------------------------------------------------------------------------
# Where planted text may go: never inside a string already listed in the labels


def label_strings(labels: dict) -> list[str]:
    """Every string the labels say is in the text (boilerplate, toxic lines, PII, noise, hard negatives)."""
    strings = list(labels.get("boilerplate_lines", [])) + list(labels.get("toxic_lines", []))
    strings += list(labels.get("hard_negatives", []))
    strings += [item["text"] for key in ("pii", "noise") for item in labels.get(key, [])]
    return [s for s in strings if s]


def _protected_spans(text: str, labels: dict) -> list[tuple[int, int]]:
    spans = []
    for s in label_strings(labels):
        start = text.find(s)
        while start != -1:
            spans.append((start, start + len(s)))
            start = text.find(s, start + 1)
    return spans


def _is_free(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return all(end <= a or start >= b for a, b in spans)


def _protected_lines(labels: dict) -> set[str]:
    return set(label_strings(labels))


def _line_gaps(text: str, labels: dict) -> list[int]:
    """Indices i where a new line may go between lines[i-1] and lines[i] (or at the end).

    In text made of paragraphs (blank lines between them) only gaps between paragraphs count, so a
    planted line becomes a paragraph of its own; neighbours that are labelled lines (a licence header,
    a START marker) are avoided, so a planted line never hides inside boilerplate.
    """
    lines = text.split("\n")
    protected = _protected_lines(labels)
    content = [bool(line.strip()) and not any(p in line for p in protected) for line in lines]
    if "\n\n" in text:
        gaps = []
        for i, line in enumerate(lines):
            if line.strip() or i == 0 or not content[i - 1]:
                continue
            following = next((j for j in range(i + 1, len(lines)) if lines[j].strip()), None)
            if following is not None and content[following]:
                gaps.append(i)
        if content[-1]:
            gaps.append(len(lines))
        return gaps
    return [i for i in range(1, len(lines) + 1) if content[i - 1] and (i == len(lines) or content[i])]


def _insert_line(text: str, line: str, gap: int) -> str:
    lines = text.split("\n")
    new = ["", line] if "\n\n" in text else [line]
    return "\n".join(lines[:gap] + new + lines[gap:])


def _code_gaps(text: str) -> list[int]:
    """Line indices before which a top-level statement may be inserted (after docstring and __future__)."""
    lines = text.split("\n")
    try:
        body = ast.parse(text).body
    except (SyntaxError, ValueError):
        return [len(lines)]
    starts = []
    for i, stmt in enumerate(body):
        first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])]) - 1
        is_docstring = i == 0 and isinstance(stmt, ast.Expr) and isinstance(getattr(stmt, "value", None), ast.Constant)
        is_future = isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"
        starts.append((first, is_docstring or is_future))
    allowed_after = max([i for i, (_, special) in enumerate(starts) if special], default=-1)
    gaps = [first for i, (first, _) in enumerate(starts) if i > allowed_after]
    return gaps + [len(lines)]


def _sentence_ends(text: str, labels: dict) -> list[int]:
    """Positions just after a sentence that ends a line of prose, where a sentence can be appended."""
    spans = _protected_spans(text, labels)
    ends = []
    for match in re.finditer(r"[a-z0-9)][.!?](?=\n|$)", text):
        end = match.end()
        line_start = text.rfind("\n", 0, end) + 1
        if end - line_start > 40 and _is_free(line_start, end, spans):
            ends.append(end)
    return ends


def _with_labels(doc: Document, text: str, defect: str | None, **lists) -> Document:
    """A copy of `doc` with new text, `defect` added to labels["defects"], and items appended to lists."""
    labels = {**doc.labels}
    if defect and defect not in labels.get("defects", []):
        labels["defects"] = [*labels.get("defects", []), defect]
    for key, items in lists.items():
        labels[key] = [*labels.get(key, []), *items]
    return dataclasses.replace(doc, text=text, labels=labels)  # a new Document; `doc` is left as it was


# ---------------------------------------------------------------------------------------------
# One function per kind of defect


def plant_toxic(doc: Document, rng: random.Random, hard_negatives: bool = False) -> Document:
    """Insert 1 to 3 toxic lines (or, with `hard_negatives`, harmless lines with the same words)."""
    text = doc.text
    planted = []
    for _ in range(rng.randint(1, 3)):
        gaps = _line_gaps(text, doc.labels)
        if not gaps:
            break
        line, _ = fill(rng.choice(TOXIC_HARD_NEGATIVES if hard_negatives else TOXIC_TEMPLATES), rng)
        text = _insert_line(text, line, rng.choice(gaps))
        planted.append(line)
    if not planted:
        return doc
    if hard_negatives:
        return _with_labels(doc, text, None, hard_negatives=planted, toxic_hard_negatives=planted)
    return _with_labels(doc, text, "toxic", toxic_lines=planted)


def _place_sentence(text: str, sentence: str, labels: dict, rng: random.Random) -> str | None:
    """Append `sentence` to a paragraph (usually) or give it a line of its own."""
    ends = _sentence_ends(text, labels)
    if ends and rng.random() < 0.75:
        end = rng.choice(ends)
        return text[:end] + " " + sentence + text[end:]
    gaps = _line_gaps(text, labels)
    return _insert_line(text, sentence, rng.choice(gaps)) if gaps else None


def plant_pii(doc: Document, rng: random.Random, hard_negatives: bool = False) -> Document:
    """Personal data (or, with `hard_negatives`, harmless numbers) in 1 to 3 sentences or code lines."""
    text = doc.text
    recorded: list[dict] = []
    for _ in range(rng.randint(1, 3)):
        if doc.domain == "code":
            template = rng.choice(CODE_HARD_NEGATIVES if hard_negatives else CODE_PII_LINES)
            line, items = fill(template, rng)
            gap = rng.choice(_code_gaps(text))
            lines = text.split("\n")
            new_text = "\n".join(lines[:gap] + [line] + lines[gap:])
        else:
            if hard_negatives:
                template = rng.choice(PII_HARD_NEGATIVES)
            elif doc.domain == "docs" and rng.random() < 0.25:
                template = rng.choice(SECRET_SENTENCES)
            else:
                template = rng.choice(PII_SENTENCES)
            sentence, items = fill(template, rng)
            new_text = _place_sentence(text, sentence, {**doc.labels, "pii": recorded}, rng)
            if new_text is None:
                break
        text = new_text
        recorded += items
    if not recorded:
        return doc
    if hard_negatives:
        return _with_labels(doc, text, None, hard_negatives=[i["text"] for i in recorded], pii_hard_negatives=recorded)
    return _with_labels(doc, text, "pii", pii=recorded)


CONTROL_CHARS = ("\x00", "\x07", "\x08", "\x1b", "\x7f", "\u200b", "\ufeff")


def _as_cp1252(text: str) -> str:
    """UTF-8 bytes read as cp1252; the five bytes cp1252 leaves undefined pass through as C1 controls."""
    out = []
    for byte in text.encode("utf-8"):
        try:
            out.append(bytes([byte]).decode("cp1252"))
        except UnicodeDecodeError:
            out.append(chr(byte))
    return "".join(out)


def plant_noise(doc: Document, rng: random.Random) -> Document:
    """Break 1 to 4 words: mojibake (words with an apostrophe or a non-ASCII letter) and control characters."""
    text = doc.text
    spans = _protected_spans(text, doc.labels)
    mojibake = [m for m in re.finditer(r"\b[A-Za-z]+'[A-Za-z]+\b|\w*[^\x00-\x7f\s]\w*", text) if _is_free(*m.span(), spans)]
    plain = [m for m in re.finditer(r"\b[A-Za-z]{4,}\b", text) if _is_free(*m.span(), spans)]
    chosen: dict[tuple[int, int], tuple[str, str, str]] = {}  # span -> (kind, broken, fixed)
    for match in rng.sample(mojibake, min(len(mojibake), rng.randint(0, 2))):
        fixed = match.group().replace("'", "\u2019")
        broken = _as_cp1252(fixed)
        if broken != fixed:
            chosen[match.span()] = ("mojibake", broken, fixed)
    for match in rng.sample(plain, min(len(plain), rng.randint(1 if not chosen else 0, 2))):
        if not _is_free(*match.span(), list(chosen)):  # "Owen" inside "Owen's", already broken
            continue
        word = match.group()
        cut = rng.randint(1, len(word) - 1)
        chosen[match.span()] = ("control", word[:cut] + rng.choice(CONTROL_CHARS) + word[cut:], word)
    if not chosen:
        return doc
    for (start, end), (_, broken, _) in sorted(chosen.items(), reverse=True):
        text = text[:start] + broken + text[end:]
    items = [{"kind": k, "text": b, "fixed": f} for _, (k, b, f) in sorted(chosen.items())]
    return _with_labels(doc, text, "noise", noise=items)


# Near duplicates --------------------------------------------------------------------------------

SYNONYM_PAIRS = (
    ("big", "large"), ("small", "little"), ("happy", "glad"), ("said", "replied"), ("went", "walked"),
    ("very", "really"), ("began", "started"), ("shouted", "yelled"), ("laughed", "giggled"), ("road", "street"),
    ("kind", "nice"), ("tired", "sleepy"), ("found", "discovered"), ("saw", "spotted"), ("children", "kids"),
    ("also", "too"), ("quickly", "fast"), ("afraid", "scared"), ("house", "home"), ("loved", "adored"),
    ("returns", "gives back"), ("function", "routine"), ("value", "result"), ("use", "employ"),
    ("default", "standard"), ("create", "make"), ("string", "text"), ("file", "document"),
    ("page", "site"), ("buy", "purchase"), ("help", "assist"), ("show", "display"), ("need", "require"),
    ("every", "each"), ("often", "frequently"), ("near", "close to"), ("after", "following"),
    ("beautiful", "lovely"), ("smiled", "grinned"), ("answer", "reply"),
)  # fmt: skip
SYNONYMS = {a: b for a, b in SYNONYM_PAIRS} | {b: a for a, b in SYNONYM_PAIRS if " " not in b}
ASCII_WORD = re.compile(r"\b[A-Za-z]+\b")


def _substitute_words(text: str, spans: list[tuple[int, int]], count: int, rng: random.Random) -> str:
    candidates = [m for m in ASCII_WORD.finditer(text) if m.group().lower() in SYNONYMS and _is_free(*m.span(), spans)]
    for match in sorted(rng.sample(candidates, min(count, len(candidates))), key=lambda m: m.start(), reverse=True):
        word = match.group()
        new = SYNONYMS[word.lower()]
        new = new.capitalize() if word[0].isupper() else new
        text = text[: match.start()] + new + text[match.end() :]
    return text


SENTENCE = re.compile(r"(?<=[.!?] )[A-Z][^.!?\n]{10,}[.!?](?= |\n|$)")


def _drop_sentence(text: str, spans: list[tuple[int, int]], rng: random.Random) -> str:
    candidates = [m for m in SENTENCE.finditer(text) if _is_free(m.start() - 1, m.end() + 1, spans)]
    if not candidates:
        return text
    match = rng.choice(candidates)
    return text[: match.start() - 1] + text[match.end() :]  # also drops the space before it


def _add_sentence(text: str, spans: list[tuple[int, int]], pool: list[str], rng: random.Random) -> str:
    ends = [m.end() for m in re.finditer(r"[.!?](?= )", text) if _is_free(m.end() - 1, m.end() + 1, spans)]
    if not ends or not pool:
        return text
    end = rng.choice(ends)
    return text[:end] + " " + rng.choice(pool) + text[end:]


def make_near_duplicate(doc: Document, rng: random.Random, pool: list[str], copy_id: str) -> Document | None:
    """A lightly edited copy whose content Jaccard with `doc` lands in [0.65, 0.95], or None if it cannot.

    "Content" leaves out the boilerplate lines the labels list (an e-book's licence, a page's leftover
    menu): cleaning cuts them before dedup runs, so the similarity that dedup sees is the content's.
    Edits are mostly synonym swaps, sometimes a dropped or an added sentence, never inside a string
    the labels list. They are applied in batches sized from the estimate that one changed word
    removes about 5 of the n shingles (J ~ (n - 5s) / (n + 5s)), until J falls below a target drawn
    in [0.7, 0.92]; an edit that overshoots below 0.65 is undone and retried smaller.
    """
    boilerplate = {line.strip() for line in doc.labels.get("boilerplate_lines", [])}

    def content(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if line.strip() not in boilerplate)

    target = rng.uniform(0.7, 0.92)
    n = max(len(dedup.words(content(doc.text))), 1)
    original = dedup.shingles(content(doc.text))
    text, similarity = doc.text, 1.0
    for _ in range(80):
        if similarity <= target:
            break
        spans = _protected_spans(text, doc.labels)
        needed = max(1, int(n * (similarity - target) / (5 * (1 + target)) / 2))
        roll = rng.random()
        if roll < 0.15:
            candidate = _drop_sentence(text, spans, rng)
        elif roll < 0.3:
            candidate = _add_sentence(text, spans, pool, rng)
        else:
            candidate = _substitute_words(text, spans, needed, rng)
            if candidate == text:  # no synonyms left: change a sentence instead
                candidate = _drop_sentence(text, spans, rng) if rng.random() < 0.5 else _add_sentence(text, spans, pool, rng)
        new_similarity = dedup.true_jaccard(original, dedup.shingles(content(candidate)))
        if new_similarity >= 0.65:
            text, similarity = candidate, new_similarity
    if not 0.65 <= similarity <= 0.95:
        return None
    return _copy(doc, copy_id, "near_dup", text=text, jaccard=round(similarity, 4))


def _copy(doc: Document, copy_id: str, defect: str, text: str | None = None, **extra) -> Document:
    """A copy of `doc` labelled as a duplicate of it; it keeps the original's other labels (they hold for it too)."""
    labels = {**_fresh(doc).labels, "dup_of": doc.id, **extra}
    labels["defects"] = [d for d in labels.get("defects", []) if d not in ("exact_dup", "near_dup")] + [defect]
    # a web page copied to another address; other sources keep their name
    source = doc.source + ("?ref=share" if "?" not in doc.source else "&ref=share") if "://" in doc.source else doc.source
    return Document(copy_id, doc.domain, doc.text if text is None else text, source, labels)


# Low-quality documents --------------------------------------------------------------------------

SPAM_WORDS = ("cheap", "best", "buy", "now", "free", "sale", "discount", "deal", "offer", "cheapest", "top",
              "online", "shop", "order", "today", "price", "shipping", "click", "here", "win", "new", "hot")  # fmt: skip
SYMBOLS = ("!!!", "$$$", "###", ">>>", "<<<", "***", "~~~", "|||", "@@", "%%", "^^^", "&&&", "+++", "==", "::",
           "///", "{{", "}}", "[[", "]]", "©", "®", "™", "§", "¤", "¦", "→", "★", "♥", "…")  # fmt: skip
LOREM = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ea "
         "commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur").split()  # fmt: skip
JS_NOTICES = (
    "Please enable JavaScript to view this page.",
    "You need to enable JavaScript to run this app.",
    "JavaScript is disabled in your browser.",
    "This site requires JavaScript. Please turn it on and reload the page.",
    "Your browser does not support JavaScript!",
    "Enable JavaScript and cookies to continue",
    "Loading...",
    "We're sorry but this page doesn't work properly without JavaScript enabled.",
)


def _items(rng: random.Random) -> str:
    return rng.choice([f"{rng.choice(COLOURS)} {rng.choice(OBJECTS)}", rng.choice(OBJECTS), f"{rng.choice(OBJECTS)}s"])


def _keyword_spam(rng: random.Random, vocab: list[str]) -> str:
    keywords = [_items(rng) for _ in range(rng.randint(2, 4))]
    title = " | ".join(f"{rng.choice(['Cheap', 'Best', 'Buy', 'Free'])} {k.title()}" for k in keywords)
    lines = [title]
    for _ in range(rng.randint(3, 8)):
        lines.append(" ".join(rng.choice(keywords) if rng.random() < 0.4 else rng.choice(SPAM_WORDS) for _ in range(rng.randint(10, 25))))
    return "\n".join(lines)


def _symbol_soup(rng: random.Random, vocab: list[str]) -> str:
    lines = []
    for _ in range(rng.randint(4, 12)):
        lines.append(" ".join(rng.choice(vocab) if rng.random() < 0.2 else rng.choice(SYMBOLS) for _ in range(rng.randint(6, 20))))
    return "\n".join(lines)


def _lorem_ipsum(rng: random.Random, vocab: list[str]) -> str:
    def sentence() -> str:
        words = [rng.choice(LOREM) for _ in range(rng.randint(6, 14))]
        return " ".join(words).capitalize() + "."

    first = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " if rng.random() < 0.8 else ""
    heading = f"Welcome to the {rng.choice(PLACES).title()} {rng.choice(['Shop', 'Club', 'Blog', 'Page'])}\n\n" if rng.random() < 0.5 else ""
    paragraphs = [" ".join(sentence() for _ in range(rng.randint(3, 7))) for _ in range(rng.randint(1, 4))]
    return heading + first + "\n\n".join(paragraphs)


def _repeated_lines(rng: random.Random, vocab: list[str]) -> str:
    name, obj, place = rng.choice(ALL_NAMES), _items(rng), rng.choice(PLACES)
    pool = [f"{name} loves the {obj}.", f"Click here to see more {obj}.", f"The best {place} in town.",
            f"Share this page with {name}!", f"New {obj} every day at the {place}."]  # fmt: skip
    distinct = rng.sample(pool, rng.randint(1, 3))
    return "\n".join(distinct[i % len(distinct)] for i in range(rng.randint(12, 40)))


def _word_salad(rng: random.Random, vocab: list[str]) -> str:
    lines = []
    for _ in range(rng.randint(5, 15)):
        words = [rng.choice(vocab) for _ in range(rng.randint(10, 20))]
        lines.append(" ".join(w.capitalize() if rng.random() < 0.1 else w for w in words))
    return "\n".join(lines)


def _too_short(rng: random.Random, vocab: list[str]) -> str:
    return rng.choice([
        f"{rng.choice(ALL_NAMES)} and the {_items(rng)}", "Home", f"Page {rng.randint(2, 9)} of {rng.randint(10, 20)}",
        f"Photos from the {rng.choice(PLACES)}", "Thank you!", "Coming soon.", f"The {_items(rng)}.",
        f"{rng.choice(PLACES).title()} opening hours", "Nothing to see here yet.",
    ])  # fmt: skip


def _bullet_spam(rng: random.Random, vocab: list[str]) -> str:
    bullet = rng.choice(["•", "-", "*", "→", "·"])
    items = [rng.choice([_items(rng), f"{rng.choice(SPAM_WORDS)} {_items(rng)}", rng.choice(SPAM_WORDS)]) for _ in range(rng.randint(15, 40))]
    return "\n".join(f"{bullet} {item}" for item in items)


def _javascript_notice(rng: random.Random, vocab: list[str]) -> str:
    lines = rng.sample(JS_NOTICES, rng.randint(1, 3))
    if rng.random() < 0.5:
        lines.insert(0, f"{rng.choice(PLACES).title()} {rng.choice(['Bakery', 'Garage', 'Library', 'Club'])} - Home")
    return "\n".join(lines)


LOW_QUALITY_MAKERS = {
    "keyword_spam": _keyword_spam, "symbol_soup": _symbol_soup, "lorem_ipsum": _lorem_ipsum,
    "repeated_lines": _repeated_lines, "word_salad": _word_salad, "too_short": _too_short,
    "bullet_spam": _bullet_spam, "javascript_notice": _javascript_notice,
}  # fmt: skip


def make_low_quality(doc_id: str, domain: str, source: str, rng: random.Random, vocab: list[str], kind: str | None = None) -> Document:
    """A junk document of `kind` (random by default), made of the corpus's own words."""
    kind = kind or rng.choice(QUALITY_KINDS)
    if kind not in LOW_QUALITY_MAKERS:
        raise ValueError(f"unknown quality kind {kind!r}; choose one of {QUALITY_KINDS}")
    text = LOW_QUALITY_MAKERS[kind](rng, vocab)
    return Document(doc_id, domain, text, source, {"defects": ["low_quality"], "quality_kind": kind})


# Generated code -------------------------------------------------------------------------------

GENERATED_HEADERS = (
    "# This file is automatically generated. DO NOT EDIT.",
    "# Generated by the protocol buffer compiler.  DO NOT EDIT!",
    "# Automatically generated by tools/make_tables.py; do not edit by hand.",
    "# Code generated by minilm-gen. DO NOT EDIT.",
    "# AUTO-GENERATED FILE -- DO NOT MODIFY",
    None,  # some generated files say nothing; their shape gives them away
)


GENERATED_KINDS = ("table", "long_lines", "minified", "protobuf", "enum_table")


def _generated_code(rng: random.Random, kind: str | None = None) -> tuple[str, str]:
    """(kind, text) of a file no one wrote by hand."""
    kind = kind or rng.choice(GENERATED_KINDS)
    if kind not in GENERATED_KINDS:
        raise ValueError(f"unknown generated-code kind {kind!r}; choose one of {GENERATED_KINDS}")
    words = sorted(w for w in story_vocabulary() if w.isalpha())  # usable as names and in b'' literals
    name = rng.choice(["_JOB", "_WORLD", "_COLOUR", "_NAME", "_CASE", "_WIDTH"]) + rng.choice(["_TABLE", "_DATA", "_MAP"])
    if kind == "table":
        rows = [f"    ({', '.join(str(rng.randint(0, 65535)) for _ in range(8))})," for _ in range(rng.randint(200, 600))]
        body = f"{name} = (\n" + "\n".join(rows) + "\n)"
    elif kind == "long_lines":
        body = "\n".join(f"{name}_{i} = [{', '.join(str(rng.randint(0, 999)) for _ in range(rng.randint(800, 1500)))}]" for i in range(rng.randint(2, 5)))
    elif kind == "minified":
        parts = [f"_{a}=lambda x,y:(x*{rng.randint(3, 97)}+y)%{rng.randint(1000, 65521)}" for a in rng.sample(words, 40)]
        parts += [f"_{a}=[{','.join(str(rng.randint(0, 255)) for _ in range(30))}]" for a in rng.sample(words, 40)]
        body = ";".join(parts)
    elif kind == "protobuf":
        payload = "".join(rng.choice([f"\\x{rng.randint(0, 255):02x}", rng.choice(words)]) for _ in range(rng.randint(400, 900)))
        body = ("from google.protobuf import descriptor_pool as _descriptor_pool\n"
                "from google.protobuf.internal import builder as _builder\n\n"
                f"DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(b'{payload}')\n\n"
                "_globals = globals()\n_builder.BuildMessageAndEnumDescriptors(DESCRIPTOR, _globals)")  # fmt: skip
    else:
        entries = ", ".join(f'"{w}": {i}' for i, w in enumerate(rng.sample(words, min(len(words), rng.randint(300, 600)))))
        body = f"{name} = {{{entries}}}\n{name}_REVERSE = {{v: k for k, v in {name}.items()}}"
    header = rng.choice(GENERATED_HEADERS)
    return kind, (f"{header}\n# source: world.proto\n\n" if header and kind == "protobuf" else f"{header}\n\n" if header else "") + body + "\n"


def make_generated_code(doc_id: str, source: str, rng: random.Random, kind: str | None = None) -> Document:
    """An auto-generated Python file of `kind` (random by default): tables, long lines, minified code..."""
    kind, text = _generated_code(rng, kind)
    return Document(doc_id, "code", text, source, {"defects": ["generated_code"], "generated_kind": kind})


# ---------------------------------------------------------------------------------------------
# Everything together


def plant_defects(docs: list[Document], seed: int, rate: float = 0.08) -> list[Document]:
    """A new list in which about `rate` of the documents carry each kind of defect, with the truth in labels.

    Originals are never modified. Copies come after their original (so a keep-first dedup removes
    exactly the labelled copies); new junk and generated files are spread through the list.
    """
    docs = list(docs)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1] (the share of documents that get each defect), got {rate}")
    ids = Counter(doc.id for doc in docs)
    if repeated := [i for i, c in ids.items() if c > 1]:
        raise ValueError(f"document ids must be unique; repeated: {repeated[:5]}. Give each document its own id.")
    if unknown := sorted({doc.domain for doc in docs} - set(DOMAINS)):
        raise ValueError(f"unknown domain(s) {unknown}; documents must be in one of {DOMAINS}")

    rng = random.Random(seed)
    out: list[Document] = []
    for doc in docs:
        doc = _fresh(doc)  # our own copy: the caller's documents are never changed
        if doc.domain == "code":
            if rng.random() < rate:
                doc = plant_pii(doc, rng)
            if rng.random() < rate:
                doc = plant_pii(doc, rng, hard_negatives=True)
        elif set(doc.defects) & {"foreign", "low_quality"}:
            pass  # English sentences in a German page, or a line in junk, would only blur what those pages are
        else:
            if rng.random() < rate:
                doc = plant_noise(doc, rng)
            if rng.random() < rate:
                doc = plant_toxic(doc, rng)
            if rng.random() < rate:
                doc = plant_toxic(doc, rng, hard_negatives=True)
            if rng.random() < rate:
                doc = plant_pii(doc, rng)
            if rng.random() < rate:
                doc = plant_pii(doc, rng, hard_negatives=True)
        out.append(doc)

    # Sort keys: originals at their index; copies strictly after their original; new documents anywhere.
    n = len(out)
    keyed: list[tuple[float, int, Document]] = [(float(i), i, doc) for i, doc in enumerate(out)]
    pools = _sentence_pools(out, rng)
    for i, doc in enumerate(out):
        copies = 0
        if rng.random() < rate:
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                copies += 1
                keyed.append((i + (1 - rng.random()) * (n - i), len(keyed), _copy(doc, f"{doc.id}-dup{copies}", "exact_dup")))
        if doc.domain in PROSE_DOMAINS and len(doc.text.split()) >= 60 and rng.random() < rate:
            near = make_near_duplicate(doc, rng, pools.get(doc.domain, []), f"{doc.id}-dup{copies + 1}")
            if near is not None:
                keyed.append((i + (1 - rng.random()) * (n - i), len(keyed), near))

    prose = [doc for doc in out if doc.domain in PROSE_DOMAINS]
    vocab = _vocabulary(prose, rng)
    for j in range(round(rate * len(prose))):
        model = rng.choice(prose)
        junk = make_low_quality(f"{model.domain}-lowq-{j:05d}", model.domain, _sibling_source(model.source, j), rng, vocab)
        keyed.append((rng.uniform(0, n), len(keyed), junk))
    code = [doc for doc in out if doc.domain == "code"]
    for j in range(round(rate * len(code))):
        model = rng.choice(code)
        generated = make_generated_code(f"code-gen-{j:05d}", _generated_path(model.source, rng), rng)
        keyed.append((rng.uniform(0, n), len(keyed), generated))

    result = [doc for _, _, doc in sorted(keyed, key=lambda k: (k[0], k[1]))]
    problems = [p for doc in result for p in check_labels(doc)]
    if problems:  # a bug in this module, never the caller's fault
        raise RuntimeError(f"planted labels do not match the text: {problems[:3]}")
    return result


def _fresh(doc: Document) -> Document:
    """A copy of `doc` whose labels and their lists/dicts are new objects (much faster than a deep copy)."""
    labels = {k: list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v for k, v in doc.labels.items()}
    return Document(doc.id, doc.domain, doc.text, doc.source, labels)


def _sentence_pools(docs: list[Document], rng: random.Random, per_domain: int = 200) -> dict[str, list[str]]:
    """Sentences of each prose domain, to add to near duplicates."""
    pools: dict[str, list[str]] = {}
    for doc in docs:
        if doc.domain in PROSE_DOMAINS and len(pools.setdefault(doc.domain, [])) < per_domain:
            spans = _protected_spans(doc.text, doc.labels)
            pools[doc.domain] += [m.group() for m in SENTENCE.finditer(doc.text) if _is_free(*m.span(), spans)][:3]
    return pools


def _vocabulary(prose: list[Document], rng: random.Random, max_docs: int = 200) -> list[str]:
    """Real words for word salad and symbol soup: the story vocabulary and words of the documents."""
    words = set(story_vocabulary())
    for doc in rng.sample(prose, min(len(prose), max_docs)):
        text = doc.text
        for planted in label_strings(doc.labels):  # never the words of a toxic line or a licence
            text = text.replace(planted, " ")
        words.update(w for w in re.findall(r"[A-Za-z]{3,}", text)[:300])
    return sorted(words)


def _sibling_source(source: str, j: int) -> str:
    if "://" in source:
        return source.rsplit("/", 1)[0] + f"/page-{j}.html"
    return source


def _generated_path(source: str, rng: random.Random) -> str:
    folder = source.rsplit("/", 1)[0] if "/" in source else "lib"
    return f"{folder}/_{rng.choice(['tables', 'data', 'world_pb2', 'codes', 'unicode_names'])}_{rng.randint(1, 999)}.py"


def check_labels(doc: Document) -> list[str]:
    """Where a document's labels disagree with its text (an empty list when they agree)."""
    labels, text = doc.labels, doc.text
    lines = set(text.split("\n"))
    problems = []
    for key in ("toxic_lines", "toxic_hard_negatives", "boilerplate_lines"):
        problems += [f"{doc.id}: {key} {line!r} is not a line of the text" for line in labels.get(key, []) if line not in lines]
    for key in ("pii", "noise", "pii_hard_negatives"):
        problems += [f"{doc.id}: {key} {item['text']!r} not in text" for item in labels.get(key, []) if item["text"] not in text]
    problems += [f"{doc.id}: hard negative {s!r} not in text" for s in labels.get("hard_negatives", []) if s not in text]
    defects = labels.get("defects", [])
    for defect, key in (("toxic", "toxic_lines"), ("pii", "pii"), ("noise", "noise"), ("low_quality", "quality_kind"),
                        ("near_dup", "dup_of"), ("exact_dup", "dup_of"), ("near_dup", "jaccard")):  # fmt: skip
        if defect in defects and not labels.get(key):
            problems.append(f"{doc.id}: defect {defect!r} without labels[{key!r}]")
    return problems


def defect_counts(docs: list[Document]) -> Counter:
    """How many documents carry each defect kind (for tables and plots)."""
    return Counter(defect for doc in docs for defect in doc.labels.get("defects", []))
