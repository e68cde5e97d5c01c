"""Toxicity: cutting insults, threats and harassment, by words weighed in their context.

Toxicity is a matter of *context*. "kill" is a threat in "I will kill you" and a shell command in
"kill -9 1234"; "idiot" is an insult in "you idiot" and a topic in "the word idiot comes from Greek".
So `toxicity_cues` finds the words that *can* be toxic and then weighs each by what surrounds it:
who it is aimed at, whether someone intends harm, whether it is negated, mentioned, technical or
a line of dialogue in a story. The cues are combined into a score in [0, 1], and `toxicity_filter`
cuts the lines that score above a threshold.

All word lists and patterns are plain data at the top of the module, so a learner can read and change them.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import regex

from minilm.data.documents import Document, Edit, Removal, StepResult, check_documents

# ---------------------------------------------------------------------------------------------------
# Word lists and context words
# ---------------------------------------------------------------------------------------------------

# Nouns that insult the person they name ("you idiot", "Go away, loser."). A noun like this always
# refers to a person, so even without a target it is mildly rude ("some idiot left the door open").
INSULT_NOUNS = frozenset("""
    idiot idiots moron morons loser losers fool fools jerk jerks freak freaks creep creeps clown clowns
    imbecile imbeciles dimwit dimwits halfwit halfwits numbskull numbskulls bonehead boneheads
    coward cowards weirdo weirdos disgrace scum liar liars failure trash garbage rubbish
""".split())

# Adjectives that insult *when they describe a person* ("you are stupid"), but not when they describe
# a thing ("this stupid printer", "a dumb mistake", "the ugly duckling").
INSULT_ADJECTIVES = frozenset("""
    stupid stupider stupidest dumb dumber dumbest worthless pathetic ugly uglier ugliest useless
    disgusting brainless idiotic moronic incompetent hideous gross hopeless
""".split())

# Verbs of violence. They are threats only with a person as the object and someone intending it:
# "I will hurt you" is a threat, "kill the process" and "the storm will destroy the barn" are not.
THREAT_VERBS = frozenset("""
    kill kills killing hurt hurts hurting destroy destroys destroying beat beats beating punch punches
    punching smash smashes smashing crush crushes crushing stab stabs stabbing shoot shoots shooting
    strangle strangles choke chokes break breaks ruin ruins ruining murder
""".split())

HATE_VERBS = frozenset({"hate", "hates", "hating", "despise", "despises"})

# Whom a word is aimed at. The nearest person before an insult decides: "you" makes it an attack on
# the reader, "he"/"Tom" an attack on someone else, "I" self-deprecation, "anyone" a general remark.
SECOND_PERSON = frozenset({"you", "you're", "youre", "u", "ya", "your", "yourself", "yourselves", "y'all"})
FIRST_PERSON = frozenset({"i", "i'm", "me", "myself", "we", "we're", "us", "ourselves", "i've", "i'd"})
THIRD_PERSON = frozenset({"he", "he's", "she", "she's", "they", "they're", "him", "her", "them",
                          "himself", "herself", "themselves"})
GENERIC_PERSON = frozenset({"anyone", "anybody", "someone", "somebody", "people", "others", "everyone",
                            "everybody", "nobody", "one", "kids", "children", "names"})

# Capitalised words that start sentences but are not names (a capitalised word is otherwise taken as
# a name, and a name can be the target of an insult: "Tom is a stupid, useless idiot.").
NOT_NAMES = frozenset("""
    the a an this that these those it it's its my your our their his her there here what when where why
    how who if so and but or then now just all every each some no not never please yes oh well hey
    don't do does did is are was were be been being have has had can could will would should
    let's let go get use calling call say said tell told ask asked
""".split())

# Words after an insult that keep it about a person: "you stupid little boy", "a useless teammate".
PERSON_NOUNS = frozenset("""
    person people kid kids child children boy boys girl girls man men woman women guy guys thing face
    head brain creature baby family mother father mom dad sister brother friend friends
    teammate teammates classmate classmates student students player partner worker human excuse
    failure little old fat dirty silly nasty tiny big lazy
""".split())

# Subjects of "is"/"was" that are people: "your brother is an idiot", "this author is a moron".
PERSON_SUBJECTS = frozenset("""
    person kid child boy girl man woman guy friend brother sister mother father mom dad neighbour
    neighbor boss author writer poster admin moderator player coach user teacher guys
""".split())
COPULAS = frozenset("""
    is was are were am be been being seems seem seemed looks look looked sounds sound acts act became become
""".split())
FEELING_VERBS = frozenset({"felt", "feel", "feels", "feeling"})
POINTING_WORDS = frozenset({"the", "that", "this", "these", "those"})
# Parts of a person: an insult to "your face" is an insult to you.
BODY_WORDS = frozenset({"face", "voice", "hair", "nose", "body", "mind", "brain", "head", "teeth", "breath", "smell"})

# Words after an insult that leave it predicative ("you are stupid and lazy", "dumb as a rock"); any
# other plain word after it is taken as the thing it describes ("a dumb mistake").
LINK_WORDS = frozenset("""
    and or but as too that to of like if when because enough for in at with all again now today anyway
    really inside than it i we they he she lol haha honestly tbh right ok sometimes always ever forever
    here there who
""".split())

# Words that may stand between a subject and its verb "to be": "you *really* are the ugliest".
ADVERBS = frozenset({"really", "truly", "also", "just", "still", "always", "so", "actually", "definitely"})

NEGATIONS = frozenset({"not", "never", "no", "cannot", "nor", "without", "stop"})

# Words that show an insult is being talked about, not used: "the word idiot", "what does moron mean".
MENTION_BEFORE = frozenset({"word", "words", "term", "terms", "say", "saying", "spell", "spelled", "spelling"})
MENTION_AFTER = frozenset({"means", "meant", "mean", "meaning", "comes", "came", "derives", "originally", "rhymes"})

# Someone intends harm: "I will", "I'm going to", "someone should", an imperative "go" ("go kill yourself").
INTENT = regex.compile(
    r"\b(?:i|we)(?:'ll| will| shall|(?:'m|'re| am| are)? (?:going to|gonna)| want to| wanna| swear)\b(?:\s+\S+){0,8}$"
    r"|\b(?:someone|somebody) (?:should|ought to)\b(?:\s+\S+){0,3}$"
    r"|(?:^|\s)(?:go|just|let's)$"
)

# In a sentence about computers or games, violent verbs are technical or playful: "kill them and
# restart the server", "Mia will beat you at chess".
TECHNICAL_WORDS = frozenset("""
    process processes pid thread threads job jobs task tasks server servers daemon signal sigkill sigterm
    container containers worker workers program programs script scripts command terminal session query
    app application tab browser service kernel node pod loop bug build test tests file files cache
    connection socket cpu memory performance battery engine
""".split())
GAME_WORDS = frozenset("""
    game games chess cards race match score record team tournament level boss round quiz contest
    football soccer tennis opponent opponents
""".split())
VIOLENCE_PARTICLES = frozenset({"up", "down", "out", "off", "back", "right", "now", "all"})

# A line of dialogue in a story: a character speaks, the writer is not attacking the reader.
SPEECH_VERBS = frozenset("""
    said says asked shouted yelled cried roared growled whispered laughed screamed called replied
    snapped sneered muttered grumbled answered hissed
""".split())

# Whole phrases of harassment: (words the phrase always contains, pattern, weight); see
# `toxicity_cues` for what a weight means. The words let a quick look at a line's words skip every
# pattern that cannot match. Commands count at the start of a clause only: "Shut up!" is a command,
# "told him to shut up" a report.
HARASSMENT_PHRASES: tuple[tuple[str, str, float], ...] = (
    ("shut up", r"(?:^|[,;:.!?]\s*)(?:just |now |oh )?shut up(?=\s*(?:$|[,.!?;:]|you\b|and\b|already\b|now\b))", 0.6),
    ("get lost", r"(?:^|[,;:.!?]\s*)(?:just |now )?get lost\b", 0.55),
    ("get out here", r"(?:^|[,;:.!?]\s*)(?:just |now )?get out of here\b", 0.55),
    ("go away", r"(?:^|[,;:.!?]\s*)(?:just |now )?go away\b", 0.35),
    ("you", r"\b(?:nobody|no one|no-one)(?: \w+){0,2}? (?:likes?|loves?|wants?|cares? about|asked|needs?)"
            r"(?: \w+){0,4}? you\b", 0.8),
    ("you", r"\b(?:everyone|everybody)(?: \w+){0,4}? (?:hates|laughs at|is laughing at|makes fun of) you\b", 0.8),
    ("you", r"\byou should (?:just )?(?:disappear|die|vanish|go away)\b", 0.8),
    ("do and", r"\bdo (?:us|me|everyone|the world) (?:all )?a favou?r and (?:leave|disappear|go away|shut up)\b", 0.6),
    ("life your", r"\bmake your life (?:miserable|hell|a living hell)\b", 0.75),
    ("or sorry", r"\bor (?:else )?you(?:'ll| will) be sorry\b", 0.7),
    ("so are you", r"\b(?:trash|garbage|rubbish|junk|stupid|ugly|pathetic|useless|worthless),? and so are you\b", 0.8),
    ("ashamed of you", r"\bashamed of you\b", 0.45),
    ("waste of", r"\bwaste of (?:space|air|oxygen|skin)\b", 0.8),
    ("i know where you live", r"\bi know where you live\b", 0.85),
    ("watch your back", r"\bwatch your back\b", 0.6),
    ("you", r"\byou(?:'ll| will) (?:regret|pay for) (?:this|it|that)\b", 0.7),
    ("you", r"\b(?:make|making) you (?:pay|suffer|regret it|cry)\b", 0.6),
    ("you", r"\b(?:hope|wish) you (?:die|were dead|get hurt|suffer|rot|disappear)\b", 0.85),
    ("drop dead", r"\bdrop dead\b", 0.85),
    ("go die", r"\bgo die\b", 0.85),
    ("you", r"\byou (?:should|ought to) be ashamed\b", 0.5),
    ("you", r"\byou(?:'re| are) (?:nothing|nobody|a nobody)\b", 0.6),
    ("you belong here", r"\byou (?:don't|do not) belong here\b", 0.6),
    ("me sick", r"\b(?:makes?|making) me sick\b", 0.4),
    ("dead meat", r"\bdead meat\b", 0.7),
    ("you piece of", r"\byou (?:\w+ )?piece of (?:trash|garbage|junk|crap|dirt)\b", 0.8),
    ("you", r"\byou (?:deserve to|should|ought to) (?:be|get) (?:hurt|killed|beaten|punched|crushed|destroyed)\b",
     0.75),
    ("you deserve to", r"\byou deserve to (?:die|suffer)\b", 0.8),
)

TOXIC_THRESHOLD = 0.5  # a line is toxic when its score reaches this
MAX_TOXIC_SHARE = 0.5  # a document with a larger share of toxic lines is dropped whole
FICTION_FACTOR = 0.6  # dialogue in a story is discounted, so only piled-up abuse still counts
CLAUSE_REACH = 12  # how many words back a negation can reach; also keeps a pathological line linear

# ---------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------

_TOKEN = regex.compile(r"\w+(?:'[A-Za-z]+)?|\S")  # words (with "you're", "don't"), and single symbols
_PHRASES = tuple((frozenset(needed.split()), regex.compile(pattern, regex.IGNORECASE), weight)
                 for needed, pattern, weight in HARASSMENT_PHRASES)
_CUE_WORDS = INSULT_NOUNS | INSULT_ADJECTIVES | THREAT_VERBS | HATE_VERBS
_NOT_NAMES = NOT_NAMES | _CUE_WORDS
_KEEPS_PERSON = LINK_WORDS | PERSON_NOUNS | INSULT_NOUNS | INSULT_ADJECTIVES | SECOND_PERSON
_WORDS = re.compile(r"[a-z]+")  # the standard library's `re` splits plain words about 4x faster than `regex`
_QUOTED = regex.compile(r"[\"“”]([^\"“”]+)[\"“”]|(?<![A-Za-z])'(.+?)'(?![A-Za-z])")
_NEGATION_TEXT = regex.compile(r"\b(?:not|never|no|cannot|stop|\w+n't)\b", regex.IGNORECASE)


def _words(text: str) -> set[str]:
    return set(_WORDS.findall(text.lower()))


def _may_be_toxic(words: set[str]) -> bool:
    """A quick look first: a text without a cue word and without all the words of some phrase cannot
    score above 0. Most documents are skipped this way; looking words up in a set is far faster than
    running a regex with a hundred alternatives over the text."""
    return not words.isdisjoint(_CUE_WORDS) or any(needed <= words for needed, _, _ in _PHRASES)


class ToxicCue(NamedTuple):
    """One piece of evidence in a line: the word or phrase, its weight after context, and why."""

    text: str
    start: int
    weight: float
    why: str


class _Tok(NamedTuple):
    text: str
    low: str
    start: int


def _tokens(line: str) -> list[_Tok]:
    return [_Tok(m.group(), m.group().lower(), m.start()) for m in _TOKEN.finditer(line)]


def _sentences(tokens: list[_Tok]) -> list[list[_Tok]]:
    sentences, current = [], []
    for tok in tokens:
        current.append(tok)
        if tok.text in ".!?":
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences


def _is_negated(sent: list[_Tok], i: int) -> bool:
    """A negation earlier in the same clause: "you are *not* stupid", "*never* call anyone stupid".
    "No one" is a subject, not a negation: "no one will ever love a fool like you"."""
    for j in range(i - 1, max(-1, i - CLAUSE_REACH - 1), -1):
        tok = sent[j]
        if tok.text in ",;:" or tok.low == "but":
            return False
        if tok.low == "no" and j + 1 < len(sent) and sent[j + 1].low == "one":
            continue
        if tok.low in NEGATIONS or tok.low.endswith("n't"):
            return True
    return False


def _person(sent: list[_Tok], j: int) -> str | None:
    """Which person token j refers to, if any: "second", "first", "third", "generic"."""
    tok = sent[j]
    if tok.low in SECOND_PERSON:
        return "second"
    if tok.low in FIRST_PERSON:
        return "first"
    if tok.low in THIRD_PERSON:
        return "third"
    if tok.low in GENERIC_PERSON:
        return "generic"
    looks_like_name = tok.text.istitle() and tok.text.isalpha() and tok.low not in _NOT_NAMES
    if looks_like_name and (j > 0 or (j + 1 < len(sent) and sent[j + 1].low in {"is", "was", ","})):
        return "third"  # a name; at the start of a sentence only when followed by "is"/"was" or a comma
    return None


def _target(sent: list[_Tok], i: int) -> str | None:
    """Whom the insult at position i is aimed at: the nearest person before it in the clause.

    A verb "to be" in between names the subject: "*you* are stupid" (second person), "*the plan*
    was stupid" (a thing, no target), "*your brother* is an idiot" (third person). A verb of feeling
    makes it about oneself: "he felt stupid". "like you" right after names the target: "only a fool
    like you", and "the"/"that" after another verb points at someone else: "did you see that idiot?"."""
    if i + 2 < len(sent) and sent[i + 1].low == "like" and _person(sent, i + 2) in ("second", "third"):
        return _person(sent, i + 2)
    for j in range(i - 1, max(-1, i - 7), -1):
        tok = sent[j]
        if tok.text in ";:" or tok.low in {"but", "although", "though", "while", "because", "than"}:
            break  # "better than ugly" compares things
        if tok.low in FEELING_VERBS:
            return "self"
        if (tok.low in POINTING_WORDS and not (j > 0 and sent[j - 1].low in COPULAS)
                and all(t.low in INSULT_ADJECTIVES | ADVERBS or t.text == "," for t in sent[j + 1 : i])):
            return None  # "take out the trash", "see that idiot": someone else, not the subject
        kind = _person(sent, j)
        if kind:
            return kind
        if tok.low in COPULAS and j > 0:
            k = j - 1
            while k > 0 and sent[k].low in ADVERBS:
                k -= 1
            subject = sent[k]
            if subject.low in BODY_WORDS and k > 0:  # "your face is ugly"
                return _person(sent, k - 1)
            return _person(sent, k) or ("third" if subject.low in PERSON_SUBJECTS else None)
    before = sent[i - 1].text if i > 0 else ","  # the start of a sentence reads as a comma
    after = sent[i + 1].text if i + 1 < len(sent) else "."
    if before in ",!" or sent[i - 1].low in {"hey", "oh", "listen"}:
        if after in {",", ".", "!", "?"} and not sent[i].text.isupper():  # not a constant: "SUCCESS, FAILURE, BOOM"
            return "second"  # a vocative: "Go away, loser." "Idiot! You broke it."
    for j in range(i + 1, min(len(sent), i + 3)):
        if sent[j].low in SECOND_PERSON:
            return "second"  # "What a loser you are."
    return None


def _is_mention(sent: list[_Tok], i: int) -> bool:
    """The word is talked about, not used: "the word idiot", '"Moron" originally meant...'."""
    before = [t.low for t in sent[max(0, i - 2) : i]]
    after = sent[i + 1].low if i + 1 < len(sent) else ""
    quoted = i > 0 and sent[i - 1].text in "\"'“‘" and after in {"\"", "'", "”"}  # "’" was read as "'"
    if quoted or any(w in MENTION_BEFORE for w in before):
        return True
    return after in MENTION_AFTER


def _insult_cues(sent: list[_Tok]) -> list[ToxicCue]:
    cues = []
    for i, tok in enumerate(sent):
        if tok.low not in INSULT_NOUNS and tok.low not in INSULT_ADJECTIVES:
            continue
        if _is_mention(sent, i):
            cues.append(ToxicCue(tok.text, tok.start, 0.0, "mention of the word, not a use"))
            continue
        if _is_negated(sent, i):
            cues.append(ToxicCue(tok.text, tok.start, 0.0, "negated"))
            continue
        if i + 1 < len(sent):
            # "a dumb mistake", "a dummy variable": the word modifies the noun after it
            nxt = sent[i + 1]
            if nxt.text.isalpha() and nxt.low not in _KEEPS_PERSON:
                cues.append(ToxicCue(tok.text, tok.start, 0.1, f"describes a thing ({nxt.text})"))
                continue
        target = _target(sent, i)
        if target == "second":
            cues.append(ToxicCue(tok.text, tok.start, 0.8, "insult aimed at the reader (you)"))
        elif target == "third":
            cues.append(ToxicCue(tok.text, tok.start, 0.55, "insult aimed at a named or pronoun person"))
        else:
            base = 0.3 if tok.low in INSULT_NOUNS else 0.1
            cues.append(ToxicCue(tok.text, tok.start, base if target is None else 0.1,
                                 f"insult word without a target ({target or 'none'})"))
    return cues


def _object_of(sent: list[_Tok], i: int) -> tuple[str | None, _Tok | None]:
    """The person a verb at position i acts on: "hurt *you*", "beat *you* up", "destroy *Tom*"."""
    j = i + 1
    while j < len(sent) and sent[j].low in VIOLENCE_PARTICLES:
        j += 1
    if j >= len(sent):
        return None, None
    tok = sent[j]
    if tok.low in {"yourself", "yourselves"}:
        return "yourself", tok
    if tok.low == "your":
        return "your", tok  # "I'll break your legs", but also "salt can hurt your health"
    if tok.low in SECOND_PERSON:
        return "second", tok
    if tok.low in {"him", "her", "them"} or (tok.text.istitle() and tok.text.isalpha() and tok.low not in NOT_NAMES):
        return "third", tok
    return None, tok


def _violence_cues(sent: list[_Tok]) -> list[ToxicCue]:
    words = {t.low for t in sent}
    signal_flag = any(a.text == "-" and b.text.isdigit() for a, b in zip(sent, sent[1:]))  # kill -9
    technical = bool(words & TECHNICAL_WORDS) or signal_flag
    playful = bool(words & GAME_WORDS)
    question = sent[-1].text == "?"
    cues = []
    for i, tok in enumerate(sent):
        is_threat, is_hate = tok.low in THREAT_VERBS, tok.low in HATE_VERBS
        if not (is_threat or is_hate):
            continue
        target, obj = _object_of(sent, i)
        if target is None:
            what = obj.text if obj else "nothing"
            cues.append(ToxicCue(tok.text, tok.start, 0.0, f"acts on a thing ({what}), not a person"))
            continue
        if _is_negated(sent, i):
            cues.append(ToxicCue(tok.text, tok.start, 0.0, "negated"))
            continue
        if is_hate:
            weight = {"second": 0.75, "your": 0.6, "third": 0.4}.get(target, 0.0)
            cues.append(ToxicCue(tok.text, tok.start, weight, f"hatred aimed at {target} person"))
            continue
        if technical or playful:
            cues.append(ToxicCue(tok.text, tok.start, 0.0, "technical or game context"))
            continue
        window = []
        for t in reversed(sent[max(0, i - 10) : i]):  # back to the start of the clause, at most 10 words
            if t.low in {"but", ";", "although", "though"}:
                break
            window.insert(0, t.low)
        intent = bool(INTENT.search(" ".join(window)))
        if target == "yourself":
            weight = 0.9 if intent else 0.1  # "go kill yourself" versus "you will hurt yourself"
        else:
            weight = {("second", True): 0.8, ("your", True): 0.8, ("third", True): 0.6,
                      ("second", False): 0.35, ("your", False): 0.2, ("third", False): 0.2}[(target, intent)]
        if question and not intent:
            weight /= 2  # "Did the fall hurt you?"
        why = f"violence against {target} person" + (" with stated intent" if intent else "")
        cues.append(ToxicCue(tok.text, tok.start, weight, why))
    return cues


def _phrase_cues(line: str, words: set[str]) -> list[ToxicCue]:
    cues = []
    for needed, pattern, weight in _PHRASES:
        if not needed <= words:
            continue
        for m in pattern.finditer(line):
            reach = max(0, m.start() - 8 * CLAUSE_REACH)  # about CLAUSE_REACH words back
            clause_start = max(reach, max(line.rfind(c, reach, m.start()) for c in ",;:.!?") + 1)
            negated = _NEGATION_TEXT.search(line, clause_start, m.start())
            text = m.group().lstrip(",;:.!? ")
            cues.append(ToxicCue(text, m.end() - len(text), 0.0 if negated else weight,
                                 "negated" if negated else "harassment phrase"))
    return cues


def _is_dialogue(line: str, cues: list[ToxicCue]) -> bool:
    """Every cue sits inside quotation marks and a speech verb stands outside them."""
    spans = [m.span() for m in _QUOTED.finditer(line)]
    if not spans or not cues:
        return False
    outside = "".join(line[a:b] for a, b in zip([0] + [e for _, e in spans], [s for s, _ in spans] + [len(line)]))
    if _words(outside).isdisjoint(SPEECH_VERBS):
        return False
    return all(any(a <= c.start < b for a, b in spans) for c in cues if c.weight > 0)


def toxicity_cues(line: str) -> list[ToxicCue]:
    """Every word or phrase in `line` that can be toxic, each weighed by its context.

    A weight is the probability that this cue alone makes the line toxic:
    - an insult aimed at the reader ("you idiot", "you are stupid", "Go away, loser.") weighs 0.8;
      at a third person ("Tom is an idiot") 0.55, a little above the threshold on its own;
      without a target 0.3 for a noun (it names a person, but whom?) and 0.1 for an adjective,
      which may describe a thing; about oneself ("I felt stupid") 0.1.
    - a violent verb weighs 0.8 against "you" with stated intent ("I will hurt you"), 0.6 against a
      third person with intent, and less without intent; 0 when it acts on a thing ("kill the process"),
      in a technical or game sentence, or negated ("I would never hurt you").
    - "hate" aimed at "you" weighs 0.75; a harassment phrase ("nobody likes you") has its own weight.
    - negated ("you are not stupid") or mentioned ("the word idiot") insults weigh 0.
    """
    line = line.replace("’", "'")
    words = _words(line)
    cues = _phrase_cues(line, words)
    if not words.isdisjoint(_CUE_WORDS):
        for sent in _sentences(_tokens(line)):
            cues += _insult_cues(sent)
            cues += _violence_cues(sent)
    return sorted(cues, key=lambda c: c.start)


def toxicity_score(line: str) -> float:
    """How likely `line` is toxic, in [0, 1].

    The cue weights are combined as independent pieces of evidence (a "noisy OR"): the line is
    non-toxic only if every cue fails, so score = 1 - prod(1 - weight). Two weak cues make a strong
    one, and no single mild word decides alone. Dialogue in a story ('"I will destroy you!" roared the
    dragon.') is a character speaking, so its score is multiplied by FICTION_FACTOR.
    """
    line = line.replace("’", "'")
    if not _may_be_toxic(_words(line)):
        return 0.0
    cues = toxicity_cues(line)
    survive = math.prod(1.0 - c.weight for c in cues)
    score = 1.0 - survive
    if _is_dialogue(line, cues):
        score *= FICTION_FACTOR
    return round(score, 4)


def is_toxic(line: str, threshold: float = TOXIC_THRESHOLD) -> bool:
    """Whether `line` scores at least `threshold` (see `toxicity_score`)."""
    return toxicity_score(line) >= threshold


def toxicity_filter(docs: list[Document], threshold: float = TOXIC_THRESHOLD,
                    max_toxic_share: float = MAX_TOXIC_SHARE) -> StepResult:
    """Cut toxic lines (Edit reason "toxic"); drop a document whose share of toxic lines is above
    `max_toxic_share` (Removal reason "toxic"), because a page that is mostly abuse has little left
    worth keeping once the abuse is cut. The share counts non-blank lines only.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold={threshold} must be in (0, 1]; the published default is {TOXIC_THRESHOLD}")
    if not 0.0 <= max_toxic_share <= 1.0:
        raise ValueError(f"max_toxic_share={max_toxic_share} must be in [0, 1]; the default is {MAX_TOXIC_SHARE}")
    result = StepResult("toxicity", kept=[])
    for doc in check_documents(docs, "toxicity_filter"):
        if not _may_be_toxic(_words(doc.text)):
            result.kept.append(doc)
            continue
        lines = doc.text.splitlines(keepends=True)
        bare = doc.text.splitlines()  # without their breaks, which may be more than "\r\n" ("\x1c", "\u2028"...)
        toxic = [i for i, line in enumerate(bare) if line.strip() and is_toxic(line, threshold)]
        if not toxic:
            result.kept.append(doc)
            continue
        share = len(toxic) / sum(1 for line in lines if line.strip())
        if share > max_toxic_share:
            result.removed.append(Removal(doc, "toxic"))
            continue
        cut = set(toxic)
        result.edits += [Edit(doc.id, "toxic", bare[i]) for i in toxic]
        result.kept.append(doc.replace(text="".join(line for i, line in enumerate(lines) if i not in cut)))
    return result
