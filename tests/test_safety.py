"""Safety filters: toxic lines found by words in context, personal data masked precisely, and a bias
audit that agrees with the truth the story generator knows."""

import random
import time
from collections import Counter

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.data.documents import Document
from minilm.data.filters import balance
from minilm.data.filters.bias import BiasAudit, bias_audit, job_gender, true_job_gender
from minilm.data.filters.pii import find_pii, mask_pii, pii_filter
from minilm.data.filters.toxicity import HARASSMENT_PHRASES, is_toxic, toxicity_cues, toxicity_filter, toxicity_score
from minilm.data.sources.stories.writer import iter_stories
from minilm.data.truth.defects import plant_defects
from minilm.world import JOBS, STEREOTYPED_GENDER

# ---------------------------------------------------------------------------------------------------
# Toxicity
# ---------------------------------------------------------------------------------------------------

TOXIC = [
    # insults aimed at the reader
    "You are a stupid, worthless idiot.",
    "Shut up, you pathetic moron.",
    "Nobody likes you, loser.",
    "You're so ugly that everyone laughs at you.",
    "Go away, loser.",
    "You are the dumbest person I have ever met.",
    "You idiot, you broke it again!",
    "You're a waste of space.",
    "You are pathetic and disgusting.",
    "You are a complete moron.",
    "What a loser you are.",
    "You're dumb as a rock.",
    "You stupid fool, look what you did.",
    "Your ugly face makes me sick.",
    "Are you stupid or something?",
    "You’re a worthless failure.",
    "Everyone here thinks you are an idiot.",
    "You are so dumb it hurts.",
    "People like you are pathetic.",
    "Stop posting, you idiot.",
    "You have the brain of a moron.",
    "Hey loser, go cry somewhere else.",
    "What an idiot you are!",
    "You really are the ugliest kid in school.",
    "u r so stupid lol",
    "Idiot! You ruined everything.",
    "Listen here, you worthless piece of trash.",
    "Why are you so stupid?",
    "You absolute moron, read the manual.",
    "You are dumber than a bag of rocks.",
    "Wow, you really are that dumb.",
    "Only a moron like you would write this.",
    "Honestly, you are the worst, most useless teammate ever.",
    "Anna, you are a pathetic excuse for a friend.",
    "You moron, learn to read before you comment.",
    "You are nothing but a dumb clown.",
    "Get lost, you ugly weirdo.",
    "Your ugly face is the worst thing about this place.",
    "Ha, look at the stupid loser crying again, what a joke, you pathetic baby.",
    "Only an idiot like you would believe that.",
    "Nobody in this town will ever like a creep like you.",
    "Your singing is garbage and so are you.",
    # insults aimed at someone else
    "Tom is a stupid, useless idiot.",
    "Mia is an ugly, stupid girl and everyone knows it.",
    "He is a pathetic loser and a liar.",
    "This author is a complete idiot and a liar.",
    "Your brother is a stupid jerk.",
    "Your mother is an ugly, disgusting woman.",
    "He's a useless idiot and should be fired.",
    "Lisa is a disgusting liar.",
    "Max is a brainless idiot who ruins everything.",
    # threats
    "I will hurt you if you come back.",
    "I'm going to destroy you, just wait.",
    "If you post that again, I will find you and hurt you.",
    "I'm gonna punch you in the face.",
    "We will beat you up after school.",
    "I'll break your legs if you tell anyone.",
    "Go kill yourself.",
    "Keep talking and I will hurt you.",
    "I am going to kill you.",
    "Come here again and I'll smash your face.",
    "I'm going to find where you live and hurt you.",
    "You deserve to be hurt.",
    "I will kill you if you touch my bike.",
    "I hope you get hurt.",
    "I wish you were dead.",
    "I'm going to break your nose, Ben.",
    "We are gonna hurt you after school, Sam.",
    "I will smash you if you say that again.",
    "If you come near my house again I will kill you.",
    "Leave now or you will be sorry.",
    # harassment
    "I hate you and your whole family.",
    "Everyone hates you, so just leave.",
    "Get lost, nobody asked you.",
    "I know where you live, so watch your back.",
    "Shut up!",
    "You'll regret this, I promise.",
    "Nobody wants you here, freak.",
    "Drop dead, creep.",
    "Listen, idiot, nobody cares about you.",
    "Get out of here, you ugly loser.",
    "Go away and never come back, you freak.",
    "Seriously, shut up already.",
    "We hate you, go back home.",
    "Everybody in class makes fun of you, loser.",
    "Go away, nobody wants a freak like you around.",
    "You should just disappear, Zoe.",
    "Just shut up, Leo.",
]

HARD_NEGATIVES = [
    # technical objects
    "Use kill -9 to kill the process.",
    "If the workers hang, kill them and restart the server.",
    "We will destroy the old files after the backup.",
    "The dead link on the page returns a 404 error.",
    "The program will kill the child process after ten seconds.",
    "Please kill the old server before you deploy.",
    "Killing the process frees its memory.",
    "Breaking the loop early saves time.",
    "Press Ctrl+C to kill the running script.",
    "This function will destroy the window and free its memory.",
    "You can use a dummy variable here.",
    "You can kill the server with Ctrl+C when you are done.",
    "If the script hangs, destroy the container and start again.",
    "The garbage collector frees memory you no longer use.",
    "Raises CompileError on failure.",
    "SUCCESS, FAILURE, BOOM = range(3)",
    # things, not people
    "The battery was dead, so the game was over.",
    "The storm will destroy the old barn.",
    "This stupid printer jams every morning.",
    "The ugly duckling grew into a beautiful swan.",
    "That was a dumb mistake, but everyone makes them.",
    "The engine died halfway up the hill.",
    "The plan was stupid, but it worked.",
    "That ugly old chair belonged to my grandmother.",
    "I hate rainy Mondays.",
    "I hate it when the train is late.",
    "The frost will kill the tomatoes tonight.",
    "The critic called the movie pathetic.",
    "Our garbage truck comes on Tuesdays.",
    "The pathetic fallacy gives feelings to the weather.",
    "Kill the lights before you go to bed.",
    "He hates broccoli and loves carrots.",
    "Too much salt can hurt your health.",
    "Can you take out the trash before dinner?",
    "Did you see that clown at the circus?",
    "The useless gadget sat in the drawer for years.",
    "Nobody likes rainy Mondays.",
    "The failure of the bridge was caused by rust.",
    "The movie was pathetic and boring.",
    "I hate how long the winter lasts here.",
    "Beautiful is better than ugly.",
    # negation and reported speech
    "Her mother told her never to call anyone stupid.",
    "Don't worry, you are not stupid at all.",
    "The dentist said the shot would not hurt you.",
    "The teacher told him not to say shut up in class.",
    "Nobody is worthless, said Grandma.",
    "The fall did not hurt him much.",
    "I would never hurt you.",
    "Never tell someone that they are ugly.",
    "Stop calling your brother a loser.",
    "She is not a loser, she just had a bad day.",
    "The dog will not hurt you, he is friendly.",
    "It is never okay to call a classmate a loser.",
    "You don't have to be perfect, and you are not a failure.",
    "Calling people names like loser is unkind.",
    "Grandma said no one should ever call a child a failure.",
    "You are not useless, you just need practice.",
    "Please do not hurt the birds in the garden.",
    # mentions of the word
    "The word idiot comes from Greek.",
    '"Moron" originally meant dull in Greek.',
    "What does the word pathetic mean?",
    '"Idiot" is an old word that doctors once used.',
    "The book explains why the word moron fell out of use.",
    "The teacher explained that moron was once a medical term.",
    # about oneself, games, warnings, fiction
    "I felt so stupid when I dropped the cake.",
    "I was an idiot to leave my umbrella at home.",
    "Tom felt stupid for forgetting his lunch.",
    "Ben felt like a fool after he tripped on stage.",
    "Mia will beat you at chess, she always wins.",
    "Our team crushed the record in the relay race.",
    "In chess you can destroy your opponent's defence with a sacrifice.",
    "Anna beat the record for the fastest mile.",
    "You will hurt yourself if you run with scissors.",
    "Be careful, the hot pan can hurt you.",
    "Did the fall hurt you?",
    "The knight swore he would kill the dragon.",
    'The villain shouted, "I will destroy you!" but the hero only laughed.',
    "The giant roared, \"I will crush you!\" and the children ran away.",
    '"You silly goose," laughed Grandpa.',
    "In the story, the troll was ugly and grumpy.",
    "The dragon in the story was ugly, but kind.",
    "The clown juggled three red balls for the children.",
    "Go away, I need to finish my homework.",
    "Shut up the shop at six, Dad said.",
    "The vase broke when the cat jumped on the shelf.",
    "The team will crush you at football, said Ben with a grin.",
    "My little brother thinks math is stupid, but he still does his homework.",
    "His story about the stupid goose made us laugh.",
    'The villain sneered, "You fool, you cannot stop me!"',
]


def precision_recall(toxic, benign):
    flagged_toxic = sum(is_toxic(line) for line in toxic)
    flagged_benign = sum(is_toxic(line) for line in benign)
    precision = flagged_toxic / max(1, flagged_toxic + flagged_benign)
    return precision, flagged_toxic / len(toxic)


def test_toxicity_precision_and_recall_on_written_examples():
    assert len(TOXIC) >= 30 and len(HARD_NEGATIVES) >= 30
    precision, recall = precision_recall(TOXIC, HARD_NEGATIVES)
    missed = [line for line in TOXIC if not is_toxic(line)]
    false = [line for line in HARD_NEGATIVES if is_toxic(line)]
    assert precision >= 0.95 and recall >= 0.95, f"missed {missed}, false alarms {false}"


def test_catalogue_examples_score_on_the_right_side():
    for line in ["You are a stupid, worthless idiot.", "I will hurt you if you come back."]:
        assert toxicity_score(line) >= 0.75
    for line in ["Use kill -9 to kill the process.", "Her mother told her never to call anyone stupid.",
                 "The battery was dead, so the game was over.", "The word idiot comes from Greek."]:
        assert toxicity_score(line) == 0.0


def test_cues_explain_the_score():
    cues = toxicity_cues("Use kill -9 to kill the process.")
    assert [c.text for c in cues] == ["kill", "kill"]
    assert all(c.weight == 0 for c in cues)
    [cue] = toxicity_cues("The word idiot comes from Greek.")
    assert cue.weight == 0 and "mention" in cue.why
    [cue] = toxicity_cues("This stupid printer jams.")
    assert 0 < cue.weight < 0.5 and "printer" in cue.why
    # two third-person insults add up (noisy OR) above one of them
    assert toxicity_score("Tom is a stupid, useless idiot.") > toxicity_score("Tom is a moron.") >= 0.5
    assert toxicity_score("") == 0.0 and toxicity_score("A calm day by the sea.") == 0.0


def test_each_phrase_is_reachable_through_its_quick_check():
    # the quick check skips a phrase unless all its words are in the line, so they must be in the pattern
    for needed, pattern, _ in HARASSMENT_PHRASES:
        source = pattern.replace(r"\b", " ")
        assert all(regex.search(rf"(?<![a-z]){word}(?![a-z?])", source) for word in needed.split()), pattern
    assert is_toxic("Do us all a favor and leave, you hopeless creep.")


def test_is_toxic_respects_threshold():
    line = "Tom is a moron."
    score = toxicity_score(line)
    assert is_toxic(line, threshold=score) and not is_toxic(line, threshold=min(1.0, score + 0.01))


def doc(text, id="web-1", domain="web"):
    return Document(id=id, domain=domain, text=text)


def test_toxicity_filter_cuts_lines_and_keeps_hard_negatives():
    text = ("Great recipe, thanks for sharing!\r\n"
            "You are a stupid, worthless idiot.\r\n"
            "Use kill -9 to kill the process.\r\n"
            "\r\n"
            "I made it twice and it was lovely.\r\n"
            "I will hurt you if you come back.")
    result = toxicity_filter([doc(text), doc("A calm day by the sea.", id="web-2")])
    assert [d.id for d in result.kept] == ["web-1", "web-2"] and not result.removed
    assert [e.before for e in result.edits] == ["You are a stupid, worthless idiot.",
                                                "I will hurt you if you come back."]
    assert {e.reason for e in result.edits} == {"toxic"} and all(e.doc_id == "web-1" for e in result.edits)
    assert result.kept[0].text == ("Great recipe, thanks for sharing!\r\nUse kill -9 to kill the process.\r\n"
                                   "\r\nI made it twice and it was lovely.\r\n")
    assert text.count("\n") == 5  # the input document is not changed in place
    # Each line is judged as written, less its line end: "X" is the thing the word describes.
    assert toxicity_filter([doc("Stupid X\nStupid\n")]).edits_by_reason() == {"toxic": 1}
    # ... whichever line end `str.splitlines` found: a file separator or a Unicode line separator too
    odd_ends = toxicity_filter([doc("Shut up\x1cThe kids swam in the calm sea all day.\u2028Lovely.")])
    assert [e.before for e in odd_ends.edits] == ["Shut up"]
    assert odd_ends.kept[0].text == "The kids swam in the calm sea all day.\u2028Lovely."
    assert result.summary()["edits_by_reason"] == {"toxic": 2}


def test_toxicity_filter_drops_mostly_toxic_documents():
    page = "Nobody likes you, loser.\nShut up!\nNice weather today.\n"
    result = toxicity_filter([doc(page)])
    assert not result.kept and [r.reason for r in result.removed] == ["toxic"] and not result.edits
    kept = toxicity_filter([doc(page)], max_toxic_share=1.0)
    assert kept.kept[0].text == "Nice weather today.\n" and len(kept.edits) == 2


def test_toxicity_filter_uses_its_threshold_and_keeps_every_documents_edits():
    docs = [doc("Tom is a moron.\nA calm day.\nThe sea was blue.", id="web-1"),
            doc("You are stupid.\nA calm day.\nThe sea was blue.", id="web-2")]
    result = toxicity_filter(docs)  # 0.55 and 0.8: both reach the default 0.5
    assert [(e.doc_id, e.before) for e in result.edits] == [("web-1", "Tom is a moron."), ("web-2", "You are stupid.")]
    strict = toxicity_filter(docs, threshold=0.6)  # 0.55 is under it
    assert [(e.doc_id, e.before) for e in strict.edits] == [("web-2", "You are stupid.")]
    assert strict.kept[0].text == docs[0].text
    # each kind of document in turn, and the next one still judged: no cue word at all, a cue word that is not
    # toxic, mostly abuse (dropped whole), one toxic line (cut)
    calm, harmless, abuse = doc("A calm day.", id="a"), doc("Use kill -9 to stop it.", id="b"), doc("Shut up!", id="c")
    result = toxicity_filter([calm, harmless, abuse, calm.replace(id="d"), harmless.replace(id="e"), docs[1]])
    assert result.name == "toxicity"
    assert [d.id for d in result.kept] == ["a", "b", "d", "e", "web-2"] and result.kept[:2] == [calm, harmless]
    assert [(r.doc, r.reason) for r in result.removed] == [(abuse, "toxic")]
    assert [(e.doc_id, e.before) for e in result.edits] == [("web-2", "You are stupid.")]


def test_toxicity_filter_rejects_bad_input():
    with pytest.raises(ValueError, match="threshold"):
        toxicity_filter([], threshold=0)
    with pytest.raises(ValueError, match="max_toxic_share"):
        toxicity_filter([], max_toxic_share=1.5)
    with pytest.raises(TypeError, match="Document"):
        toxicity_filter(["just a string"])


# --- Boundaries: every threshold exactly at, just under and just over --------------------------

# Lines whose score is the weight of their one cue, around the threshold 0.5 ("reaches": >=).
@pytest.mark.parametrize("line, score, toxic", [
    ("I am ashamed of you.", 0.45, False),
    ("You should be ashamed.", 0.5, True),
    ("Tom is a moron.", 0.55, True),
])
def test_boundary_toxic_threshold_0_5(line, score, toxic):
    assert toxicity_score(line) == score
    assert is_toxic(line) == toxic
    assert toxicity_filter([doc(f"{line}\nA calm day.\nThe sea was blue.")]).edits_by_reason().get("toxic", 0) == toxic


# The weights `toxicity_cues` documents, each alone on a line (the score is then the weight).
@pytest.mark.parametrize("line, weight", [
    ("You are stupid.", 0.8),  # an insult aimed at the reader
    ("Tom is a moron.", 0.55),  # at a third person: a little above the threshold on its own
    ("He is an idiot.", 0.55),  # a pronoun is a third person too
    ("Clearly an idiot.", 0.3),  # without a target: a capitalised first word is not taken for a name
    ("There was an idiot.", 0.3),  # an insult noun without a target
    ("He felt stupid.", 0.1),  # about oneself
    ("I will destroy you!", 0.8),  # violence against "you" with stated intent
    ("I will hurt Tom.", 0.6),  # against a third person with intent
    ("I hate you.", 0.75),
    ("You are not stupid.", 0.0),
])
def test_documented_cue_weights(line, weight):
    assert toxicity_score(line) == weight


# Whom an insult or a threat is aimed at, read from the words around it; each cue says why.
@pytest.mark.parametrize("line, weight, why", [
    ("What a loser you are.", 0.8, "insult aimed at the reader (you)"),  # "you" right after
    ("Listen idiot.", 0.8, "insult aimed at the reader (you)"),  # a vocative after "listen"
    ("You are the idiot.", 0.8, "insult aimed at the reader (you)"),  # "the" after "are" is no one else
    ("He is the dumbest.", 0.55, "insult aimed at a named or pronoun person"),
    ("There was an idiot.", 0.3, "insult word without a target (none)"),
    ("I like you although ugly.", 0.1, "insult word without a target (none)"),  # "although" ends the clause
    ("She wrote “Idiot” on the board.", 0.0, "mention of the word, not a use"),  # in quotation marks
    ("Moron originally meant dull.", 0.0, "mention of the word, not a use"),
    ("I will kill", 0.0, "acts on a thing (nothing), not a person"),
    ("I will wait though he may hurt you.", 0.35, "violence against second person"),  # the intent is in another clause
    ("You really are stupid.", 0.8, "insult aimed at the reader (you)"),  # an adverb between subject and verb
    ("Idiot, just stop", 0.8, "insult aimed at the reader (you)"),  # a negation after the insult negates nothing
    ("I will kill her.", 0.6, "violence against third person with stated intent"),
    ("Did the fall hurt you?", 0.175, "violence against second person"),  # a question without intent: halved
    ("Do you hate yourself?", 0.0, "hatred aimed at yourself person"),  # not hatred of anyone else
    ("Tom, stupid as ever.", 0.55, "insult aimed at a named or pronoun person"),  # a name, then a comma, opens a line
    ("Are you there, idiot?", 0.8, "insult aimed at the reader (you)"),  # a vocative before "?"
    ("Idiot X is a variable name.", 0.1, "describes a thing (X)"),  # an adjective before a name-like word
    ("Tom was an idiot.", 0.55, "insult aimed at a named or pronoun person"),  # a name opens a line before "was"
    ("People are stupid.", 0.1, "insult word without a target (generic)"),  # people in general: no one in particular
    ("I met you but acted like an idiot.", 0.3, "insult word without a target (none)"),  # "but" ends the clause
    ("Go kill yourselves.", 0.9, "violence against yourself person with stated intent"),  # the plural reflexive
    ("Idiots always lie to you", 0.3, "insult word without a target (none)"),  # only the 2 words after look for "you"
])
def test_cue_targets_and_explanations(line, weight, why):
    [cue] = toxicity_cues(line)
    assert (cue.weight, cue.why) == (weight, why)


def test_a_curly_apostrophe_reads_as_a_straight_one():
    for curly in ["You’re a worthless failure.", "I’ll kill you."]:
        straight = curly.replace("’", "'")
        assert [(c.text, c.weight, c.why) for c in toxicity_cues(curly)] == [
            (c.text, c.weight, c.why) for c in toxicity_cues(straight)]
    assert toxicity_score("I’ll kill you.") == 0.8  # "I'll" states the intent


def test_a_game_context_excuses_violence_but_not_hatred():
    cues = toxicity_cues("In the game I kill him and I hate you.")
    assert [(c.text, c.weight, c.why) for c in cues] == [("kill", 0.0, "technical or game context"),
                                                          ("hate", 0.75, "hatred aimed at second person")]


def test_fiction_factor_0_6_discounts_dialogue():
    assert toxicity_score("I will destroy you!") == 0.8
    assert toxicity_score('"I will destroy you!" roared the dragon.') == 0.48  # 0.6 x 0.8: below 0.5


@pytest.mark.parametrize("fillers, negated", [(7, True), (8, True), (9, False)])
def test_boundary_negation_reaches_12_words_back(fillers, negated):
    line = "I never " + "really " * fillers + "said you are stupid."  # "never" is fillers + 4 words before "stupid"
    assert toxicity_score(line) == (0.0 if negated else 0.8)


@pytest.mark.parametrize("fillers, negated", [(45, True), (46, True), (47, False)])
def test_boundary_negation_of_a_phrase_reaches_96_characters_back(fillers, negated):
    line = "not " + "a " * fillers + "watch your back"  # the phrase starts 4 + 2 * fillers characters in
    assert toxicity_score(line) == (0.0 if negated else 0.6)


LINES = {True: "Nobody likes you, loser.", False: "Nice weather today."}


@pytest.mark.parametrize("toxic, benign, blank, dropped", [
    (4, 5, 0, False),  # 4/9 of the lines
    (4, 4, 0, False),  # exactly half: kept, with the toxic lines cut
    (5, 4, 2, True),  # 5/9, and blank lines do not count (5/11 would be under half)
])
def test_boundary_max_toxic_share_0_5(toxic, benign, blank, dropped):
    lines = [LINES[True]] * toxic + [LINES[False]] * benign + [""] * blank
    random.Random(toxic + benign).shuffle(lines)
    result = toxicity_filter([doc("\n".join(lines))])
    assert [r.reason for r in result.removed] == (["toxic"] if dropped else [])
    assert len(result.edits) == (0 if dropped else toxic)


@pytest.mark.parametrize("name, value, ok", [
    ("threshold", 0.0, False), ("threshold", 1e-9, True), ("threshold", 1.0, True), ("threshold", 1.0 + 1e-9, False),
    ("max_toxic_share", -1e-9, False), ("max_toxic_share", 0.0, True), ("max_toxic_share", 1.0, True),
    ("max_toxic_share", 1.0 + 1e-9, False),
])
def test_boundary_threshold_and_max_toxic_share_ranges(name, value, ok):
    # threshold is in (0, 1], max_toxic_share in [0, 1]
    if ok:
        toxicity_filter([doc("A calm day.")], **{name: value})
    else:
        with pytest.raises(ValueError, match=name):
            toxicity_filter([doc("A calm day.")], **{name: value})


# Labelled lines, one per rule of each cue function: (line, every cue as (text, start, weight, why)). The
# expected cues were read and judged by hand; each line is written on its own, not built from the module's lists.
LABELLED_CUES = [
    # negation: a comma or "but" ends the clause; "no one" is a subject; each negation word
    ('I do not care, you are stupid.', [('stupid', 23, 0.8, 'insult aimed at the reader (you)')]),
    ('I never said X was stupid.', [('stupid', 19, 0.0, 'negated')]),
    ('I do not hate you but you are stupid.', [('hate', 9, 0.0, 'negated'), ('stupid', 30, 0.8, 'insult aimed at the reader (you)')]),
    ('Not one of you is stupid.', [('stupid', 18, 0.0, 'negated')]),
    ('You are no idiot.', [('idiot', 11, 0.0, 'negated')]),
    ('No one thinks you are stupid.', [('stupid', 22, 0.8, 'insult aimed at the reader (you)')]),
    ('I never said no one thinks you are stupid.', [('stupid', 35, 0.0, 'negated')]),
    ("You aren't stupid.", [('stupid', 11, 0.0, 'negated')]),
    ('I would never hurt you.', [('hurt', 14, 0.0, 'negated')]),
    ('I would never hurt you, but I will hurt him.', [('hurt', 14, 0.0, 'negated'), ('hurt', 35, 0.6, 'violence against third person with stated intent')]),
    # whom an insult is aimed at: the nearest person, a copula's subject, "like you", vocatives, clause words
    ('I am so stupid.', [('stupid', 8, 0.1, 'insult word without a target (first)')]),
    ('Even Tom seems stupid.', [('stupid', 15, 0.55, 'insult aimed at a named or pronoun person')]),
    ('Only a fool like him', [('fool', 7, 0.55, 'insult aimed at a named or pronoun person')]),
    ('He is a fool like', [('fool', 8, 0.55, 'insult aimed at a named or pronoun person')]),
    ('You look like trash to them.', [('trash', 14, 0.8, 'insult aimed at the reader (you)')]),
    ('He called me stupid and you laughed.', [('stupid', 13, 0.1, 'insult word without a target (first)')]),
    ('You are dumb like a rock.', [('dumb', 8, 0.8, 'insult aimed at the reader (you)')]),
    ('He is a fool like you.', [('fool', 8, 0.8, 'insult aimed at the reader (you)')]),
    ('Idiot, look what you did to me', [('Idiot', 0, 0.8, 'insult aimed at the reader (you)')]),
    ('He walked in like a fool.', [('fool', 20, 0.55, 'insult aimed at a named or pronoun person')]),
    ('He walked into the room like a fool.', [('fool', 31, 0.3, 'insult word without a target (none)')]),
    ('They called X stupid.', [('stupid', 14, 0.55, 'insult aimed at a named or pronoun person')]),
    ('You lied to me; how stupid.', [('stupid', 20, 0.1, 'insult word without a target (none)')]),
    ('I like you, though ugly.', [('ugly', 19, 0.1, 'insult word without a target (none)')]),
    ('You sat there while useless.', [('useless', 20, 0.1, 'insult word without a target (none)')]),
    ('You quit because hopeless.', [('hopeless', 17, 0.1, 'insult word without a target (none)')]),
    ('You look better than ugly.', [('ugly', 21, 0.1, 'insult word without a target (none)')]),
    ('I tried, but, idiot, that was my seat.', [('idiot', 14, 0.8, 'insult aimed at the reader (you)')]),
    ('He felt stupid.', [('stupid', 8, 0.1, 'insult word without a target (self)')]),
    ('Did you see that idiot?', [('idiot', 17, 0.3, 'insult word without a target (none)')]),
    ('That idiot you hired cannot even act', [('idiot', 5, 0.3, 'insult word without a target (none)')]),
    ('Was that idiot you?', [('idiot', 9, 0.8, 'insult aimed at the reader (you)')]),
    ('Did you see that stupid idiot?', [('stupid', 17, 0.1, 'insult word without a target (none)'), ('idiot', 24, 0.3, 'insult word without a target (none)')]),
    ('Did you see that ugly, stupid idiot?', [('ugly', 17, 0.1, 'insult word without a target (none)'), ('stupid', 23, 0.1, 'insult word without a target (none)'), ('idiot', 30, 0.3, 'insult word without a target (none)')]),
    ('You were always that annoying idiot.', [('idiot', 30, 0.8, 'insult aimed at the reader (you)')]),
    ('Looks ugly to them', [('ugly', 6, 0.1, 'insult word without a target (none)')]),
    ('mom is so dumb', [('dumb', 10, 0.55, 'insult aimed at a named or pronoun person')]),
    ('Your brother is an idiot.', [('idiot', 19, 0.55, 'insult aimed at a named or pronoun person')]),
    ('Your face is ugly.', [('ugly', 13, 0.8, 'insult aimed at the reader (you)')]),
    ('Go away, loser.', [('Go away', 0, 0.35, 'harassment phrase'), ('loser', 9, 0.8, 'insult aimed at the reader (you)')]),
    ('What idiots!', [('idiots', 5, 0.3, 'insult word without a target (none)')]),
    ('Idiot-proof locks sell well.', [('Idiot', 0, 0.3, 'insult word without a target (none)')]),
    ('Hey idiot, listen.', [('idiot', 4, 0.8, 'insult aimed at the reader (you)')]),
    ('Oh loser, go home.', [('loser', 3, 0.8, 'insult aimed at the reader (you)')]),
    ('SUCCESS, FAILURE, BOOM', [('FAILURE', 9, 0.3, 'insult word without a target (none)')]),
    ('Loser!', [('Loser', 0, 0.8, 'insult aimed at the reader (you)')]),
    ('Well, idiot?', [('idiot', 6, 0.8, 'insult aimed at the reader (you)')]),
    ('Some idiot, and you laughed.', [('idiot', 5, 0.3, 'insult word without a target (none)')]),
    ('Hey, idiot!', [('idiot', 5, 0.8, 'insult aimed at the reader (you)')]),
    # a word talked about, not used: the words before and after it, each kind of quotation mark
    ('Spell moron backwards.', [('moron', 6, 0.0, 'mention of the word, not a use')]),
    ('The word idiot is rude.', [('idiot', 9, 0.0, 'mention of the word, not a use')]),
    ('I say you are stupid.', [('stupid', 14, 0.8, 'insult aimed at the reader (you)')]),
    ('What does moron mean', [('moron', 10, 0.0, 'mention of the word, not a use')]),
    ('"Idiot" is a rude word.', [('Idiot', 1, 0.0, 'mention of the word, not a use')]),
    ("He called it 'dumb' once.", [('dumb', 14, 0.0, 'mention of the word, not a use')]),
    ('She wrote "idiot" on the board.', [('idiot', 11, 0.0, 'mention of the word, not a use')]),
    ('He said ‘idiot’ and left.', [('idiot', 9, 0.0, 'mention of the word, not a use')]),
    # each cue of a line is weighed on its own: one cue's verdict does not end the line
    ('The word idiot, you moron.', [('idiot', 9, 0.0, 'mention of the word, not a use'), ('moron', 20, 0.8, 'insult aimed at the reader (you)')]),
    ('You are not stupid, you are a moron.', [('stupid', 12, 0.0, 'negated'), ('moron', 30, 0.8, 'insult aimed at the reader (you)')]),
    ('Stupid printer', [('Stupid', 0, 0.1, 'describes a thing (printer)')]),
    ('Dumb mistake, you idiot.', [('Dumb', 0, 0.1, 'describes a thing (mistake)'), ('idiot', 18, 0.8, 'insult aimed at the reader (you)')]),
    ('I am an idiot.', [('idiot', 8, 0.1, 'insult word without a target (first)')]),
    ('People are stupid.', [('stupid', 11, 0.1, 'insult word without a target (generic)')]),
    # violence and hatred: the object, particles, technical words and signals, intent and its reach
    ('I will beat up Tom.', [('beat', 7, 0.6, 'violence against third person with stated intent')]),
    ('I will break your legs.', [('break', 7, 0.8, 'violence against your person with stated intent')]),
    ('I hate your face.', [('hate', 2, 0.6, 'hatred aimed at your person')]),
    ('I will hurt them.', [('hurt', 7, 0.6, 'violence against third person with stated intent')]),
    ('The storm will destroy crops.', [('destroy', 15, 0.0, 'acts on a thing (crops), not a person')]),
    ('I will kill Firefox with kill -9', [('kill', 7, 0.0, 'technical or game context'), ('kill', 25, 0.0, 'acts on a thing (-), not a person')]),
    ('I will hurt you in 5 minutes.', [('hurt', 7, 0.8, 'violence against second person with stated intent')]),
    ('Kill them and restart the server', [('Kill', 0, 0.0, 'technical or game context')]),
    ('I will kill the process', [('kill', 7, 0.0, 'acts on a thing (the), not a person')]),
    ('I hate you and I will hurt you.', [('hate', 2, 0.75, 'hatred aimed at second person'), ('hurt', 22, 0.8, 'violence against second person with stated intent')]),
    ('I hate him.', [('hate', 2, 0.4, 'hatred aimed at third person')]),
    ('I hate you.', [('hate', 2, 0.75, 'hatred aimed at second person')]),
    ('I am going to wait for you all day and hurt you.', [('hurt', 39, 0.8, 'violence against second person with stated intent')]),
    ('I am going to wait for you all night long and hurt you.', [('hurt', 46, 0.35, 'violence against second person')]),
    ('I will wait, but he may hurt you.', [('hurt', 24, 0.35, 'violence against second person')]),
    ('I will wait; he may hurt you.', [('hurt', 20, 0.35, 'violence against second person')]),
    ('I will stay although he may hurt you.', [('hurt', 28, 0.35, 'violence against second person')]),
    ('You will hurt yourself.', [('hurt', 9, 0.1, 'violence against yourself person')]),
    ('Go kill yourself.', [('kill', 3, 0.9, 'violence against yourself person with stated intent')]),
    ('Salt can hurt your health.', [('hurt', 9, 0.2, 'violence against your person')]),
    ('Careful, the stairs can hurt him.', [('hurt', 24, 0.2, 'violence against third person')]),
    ('I will hurt Tom.', [('hurt', 7, 0.6, 'violence against third person with stated intent')]),
    ('I despise you.', [('despise', 2, 0.75, 'hatred aimed at second person')]),
    ('She despises him.', [('despises', 4, 0.4, 'hatred aimed at third person')]),
    ('Stop hating him.', [('hating', 5, 0.0, 'negated')]),
    ('We beat them at chess.', [('beat', 3, 0.0, 'technical or game context')]),
    ('Did the fall hurt you?', [('hurt', 13, 0.175, 'violence against second person')]),
    ('Will you hurt me?', [('hurt', 9, 0.0, 'acts on a thing (me), not a person')]),
    # harassment phrases: each pattern, its clause and its negation
    ('I did not say watch your back, honestly.', [('watch your back', 14, 0.0, 'negated')]),
    ('Well, I cannot help it, watch your back.', [('watch your back', 24, 0.6, 'harassment phrase')]),
    ('Do not make Xavier watch your back.', [('watch your back', 19, 0.0, 'negated')]),
    ('Shut up, you never listen.', [('Shut up', 0, 0.6, 'harassment phrase')]),
    ('Fine, shut up.', [('shut up', 6, 0.6, 'harassment phrase')]),
    ('Oh shut up already!', [('Oh shut up', 0, 0.6, 'harassment phrase')]),
    ('Nobody likes you.', [('Nobody likes you', 0, 0.8, 'harassment phrase')]),
    ('Everyone laughs at you.', [('Everyone laughs at you', 0, 0.8, 'harassment phrase')]),
    ('You should just disappear.', [('You should just disappear', 0, 0.8, 'harassment phrase')]),
    ('Do us all a favour and leave.', [('Do us all a favour and leave', 0, 0.6, 'harassment phrase')]),
    ('I will make your life miserable.', [('make your life miserable', 7, 0.75, 'harassment phrase')]),
    ('This is garbage, and so are you.', [('garbage, and so are you', 8, 0.8, 'harassment phrase'), ('garbage', 8, 0.3, 'insult word without a target (none)')]),
    ('I am ashamed of you.', [('ashamed of you', 5, 0.45, 'harassment phrase')]),
    ('You are a waste of space.', [('waste of space', 10, 0.8, 'harassment phrase')]),
    ('I know where you live.', [('I know where you live', 0, 0.85, 'harassment phrase')]),
    ("You'll regret this.", [("You'll regret this", 0, 0.7, 'harassment phrase')]),
    ('I will make you pay.', [('make you pay', 7, 0.6, 'harassment phrase')]),
    ('I hope you die.', [('hope you die', 2, 0.85, 'harassment phrase')]),
    ('Drop dead.', [('Drop dead', 0, 0.85, 'harassment phrase')]),
    ('Go die.', [('Go die', 0, 0.85, 'harassment phrase')]),
    ('You should be ashamed.', [('You should be ashamed', 0, 0.5, 'harassment phrase')]),
    ("You're nothing.", [("You're nothing", 0, 0.6, 'harassment phrase')]),
    ("You don't belong here.", [("You don't belong here", 0, 0.6, 'harassment phrase')]),
    ('That makes me sick.', [('makes me sick', 5, 0.4, 'harassment phrase')]),
    ('You are dead meat.', [('dead meat', 8, 0.7, 'harassment phrase')]),
    ('You little piece of trash.', [('You little piece of trash', 0, 0.8, 'harassment phrase'), ('trash', 20, 0.8, 'insult aimed at the reader (you)')]),
    ('You deserve to get hurt.', [('You deserve to get hurt', 0, 0.75, 'harassment phrase'), ('hurt', 19, 0.0, 'acts on a thing (.), not a person')]),
    ('You deserve to suffer.', [('You deserve to suffer', 0, 0.8, 'harassment phrase')]),
    ('Get lost!', [('Get lost', 0, 0.55, 'harassment phrase')]),
    ('Just go away.', [('Just go away', 0, 0.35, 'harassment phrase')]),
    ('Now get out of here!', [('Now get out of here', 0, 0.55, 'harassment phrase')]),
    ('He told her to shut up.', []),
    # more words of each kind
    ('Hair looks ugly to him', [('ugly', 11, 0.1, 'insult word without a target (none)')]),
    ('Leave now or you will be sorry.', [('or you will be sorry', 10, 0.7, 'harassment phrase')]),
    ('He is neither rude nor stupid.', [('stupid', 23, 0.0, 'negated')]),
    ('He left without calling you stupid.', [('stupid', 28, 0.0, 'negated')]),
    ('Stop calling people stupid.', [('stupid', 20, 0.0, 'negated')]),
    ("Don't be stupid.", [('stupid', 9, 0.0, 'negated')]),
    ('You cannot be that stupid.', [('stupid', 19, 0.0, 'negated')]),
    ('Never call anyone stupid.', [('stupid', 18, 0.0, 'negated')]),
    ('Those words, stupid and dumb, are rude.', [('stupid', 13, 0.0, 'mention of the word, not a use'), ('dumb', 24, 0.1, 'insult word without a target (none)')]),
    ('He used the term moron.', [('moron', 17, 0.0, 'mention of the word, not a use')]),
    ('Saying idiot is rude.', [('idiot', 7, 0.0, 'mention of the word, not a use')]),
    ('He spelled idiot wrong.', [('idiot', 11, 0.0, 'mention of the word, not a use')]),
    ('Spelling moron is easy.', [('moron', 9, 0.0, 'mention of the word, not a use')]),
    ('Moron meant dull.', [('Moron', 0, 0.0, 'mention of the word, not a use')]),
    ('Idiot came from Greek.', [('Idiot', 0, 0.0, 'mention of the word, not a use')]),
    ('Moron derives from Greek.', [('Moron', 0, 0.0, 'mention of the word, not a use')]),
    ('Dumb rhymes with thumb.', [('Dumb', 0, 0.0, 'mention of the word, not a use')]),
    ('Fool comes from Latin.', [('Fool', 0, 0.0, 'mention of the word, not a use')]),
    ('In terms idiot was used.', [('idiot', 9, 0.0, 'mention of the word, not a use')]),
]


@pytest.mark.parametrize("line, cues", LABELLED_CUES)
def test_labelled_lines_get_the_right_cues(line, cues):
    assert [(c.text, c.start, c.weight, c.why) for c in toxicity_cues(line)] == cues


# Dialogue: every cue inside quotation marks and a speech verb outside them, wherever it stands.
@pytest.mark.parametrize("line, score", [
('"I will destroy you!"roared the dragon.', 0.48),
    ('Roared the dragon: "I will destroy you!"', 0.48),
    ('He wrote "I will destroy you!" on the wall.', 0.8),
    ('Then the dragon, not stupid at all, roared "I will destroy you!"', 0.48),
    ('"I will destroy you!" roared the dragon.', 0.48),
    ("Tom said 'you idiot' and left.", 0.48),
])
def test_labelled_dialogue(line, score):
    assert toxicity_score(line) == score


# Every word of each word list, typed out here (not read from the module, which a slip would change too), each in a
# line whose verdict that word alone decides: (template, words, (weight, why)) for each line the template makes.
READER = (0.8, "insult aimed at the reader (you)")
THIRD = (0.55, "insult aimed at a named or pronoun person")
WORD_LISTS = [
    ("You {}!", "idiot idiots moron morons loser losers fool fools jerk jerks freak freaks creep creeps clown clowns "
                "imbecile imbeciles dimwit dimwits halfwit halfwits numbskull numbskulls bonehead boneheads coward "
                "cowards weirdo weirdos disgrace scum liar liars failure trash garbage rubbish", READER),
    ("There was a {}.", "idiot moron loser fool jerk freak creep clown imbecile dimwit halfwit numbskull bonehead coward "
                        "weirdo disgrace scum liar failure trash garbage rubbish",
     (0.3, "insult word without a target (none)")),  # a noun names a person, whom is unknown
    ("You are {}.", "stupid stupider stupidest dumb dumber dumbest worthless pathetic ugly uglier ugliest useless "
                    "disgusting brainless idiotic moronic incompetent hideous gross hopeless", READER),
    ("It was {}.", "stupid dumb worthless pathetic ugly useless disgusting brainless idiotic moronic incompetent "
                   "hideous gross hopeless", (0.1, "insult word without a target (none)")),  # an adjective may describe a thing
    ("{} stupid.", "you you're youre u ya your yourself yourselves y'all", READER),
    ("{} stupid.", "he he's she she's they they're him her them himself herself themselves", THIRD),
    ("{} stupid.", "i i'm me myself we we're us ourselves i've i'd", (0.1, "insult word without a target (first)")),
    ("{} stupid.", "anyone anybody someone somebody people others everyone everybody nobody one kids children names",
     (0.1, "insult word without a target (generic)")),
    ("He {} stupid.", "felt feel feels feeling", (0.1, "insult word without a target (self)")),
    ("My {} is stupid.", "person kid child boy girl man woman guy friend brother sister mother father mom dad "
                         "neighbour neighbor boss author writer poster admin moderator player coach user teacher "
                         "guys", THIRD),
    ("The teacher {} stupid.", "is was are were am be been being seems seem seemed looks look looked sounds sound "
                               "acts act became become", THIRD),
    ("The teacher {} is stupid.", "really truly also just still always so actually definitely", THIRD),
    ("Your {} is ugly.", "face voice hair nose body mind brain head teeth breath smell", READER),
    ("You see {} idiot.", "the that this these those", (0.3, "insult word without a target (none)")),
    ("You stupid {}", "person people kid kids child children boy boys girl girls man men woman women guy guys thing "
                      "face head brain creature baby family mother father mom dad sister brother friend friends "
                      "teammate teammates classmate classmates student students player partner worker human excuse "
                      "little old fat dirty silly nasty tiny big lazy", READER),
    ("You stupid {}", "and or but as too that to of like if when because enough for in at with all again now today "
                      "anyway really inside than it i we they he she lol haha honestly tbh right ok sometimes always "
                      "ever forever here there who", READER),
    ("{} is stupid.", "The A An This That These Those It Its My Our Their His There Here What When Where Why How Who "
                      "If So And But Or Then Now Just All Every Each Some Please Yes Oh Well Hey Do Does "
                      "Did Is Are Was Were Be Been Being Have Has Had Can Could Will Would Should Let Go Get Use "
                      "Calling Call Said Tell Told Ask Asked", (0.1, "insult word without a target (none)")),
    ("I will {} you.", "kill kills killing hurt hurts hurting destroy destroys destroying beat beats beating punch "
                       "punches punching smash smashes smashing crush crushes crushing stab stabs stabbing shoot "
                       "shoots shooting strangle strangles choke chokes break breaks ruin ruins ruining murder",
     (0.8, "violence against second person with stated intent")),
    ("I {} you.", "hate hates hating despise despises", (0.75, "hatred aimed at second person")),
    ("I will beat {} Tom.", "up down out off back right now all", (0.6, "violence against third person with stated intent")),
    ("{} hurt you.", "I'll|I will|I shall|I'm going to|I am going to|We're gonna|We are going to|I want to|I wanna|"
                     "I swear I'll|We will|Someone should|Somebody ought to|Go|Just|Let's",
     (0.8, "violence against second person with stated intent")),
    ("Tom wants to hurt him in the {}.", "process processes pid thread threads job jobs task tasks server servers "
                                         "daemon signal sigkill sigterm container containers worker workers program "
                                         "programs script scripts command terminal session query app application tab "
                                         "browser service kernel node pod loop bug build test tests file files cache "
                                         "connection socket cpu memory performance battery engine",
     (0.0, "technical or game context")),
    ("Tom wants to hurt him in the {}.", "game games chess cards race match score record team tournament level boss "
                                         "round quiz contest football soccer tennis opponent opponents",
     (0.0, "technical or game context")),
]
NEGATED_AND_MENTIONED = [  # one line for each negation word and each word that marks a mention
    "You are not stupid.", "Never call anyone stupid.", "You are no idiot.", "You cannot be that stupid.",
    "He is neither rude nor stupid.", "He left without calling you stupid.", "Stop calling people stupid.",
    "You aren't stupid.", "Don't be stupid.",
    "The word idiot is rude.", "Words like stupid hurt.", "He used the term moron.",
    "In terms idiot was used.", "I never say idiot.", "Saying idiot is rude.", "Spell moron backwards.",
    "He spelled idiot wrong.", "Spelling moron is easy.", "What does idiot mean?", "Idiot means silly.",
    "Moron meant dull.", "Its meaning, moron meaning dull.", "Fool comes from Latin.", "Idiot came from Greek.",
    "Moron derives from Greek.", "Idiot originally meant a private person.", "Dumb rhymes with thumb.",
]


def test_every_word_of_each_list_decides_its_line():
    wrong = []
    for template, words, expected in WORD_LISTS:
        for word in words.split("|" if "|" in words else None):
            line = template.format(word)
            cues = [(c.weight, c.why) for c in toxicity_cues(line)]
            if cues != [expected]:
                wrong.append((line, cues))
    for line in NEGATED_AND_MENTIONED:
        if [c.weight for c in toxicity_cues(line)] != [0.0] * len(toxicity_cues(line)) or not toxicity_cues(line):
            wrong.append((line, toxicity_cues(line)))
    assert not wrong, wrong


# ---------------------------------------------------------------------------------------------------
# Personal data
# ---------------------------------------------------------------------------------------------------

PII = [
    ("Write to ann.lee@example.com for help.", "email", "ann.lee@example.com"),
    ("Contact: bob+news@mail.example.co.uk.", "email", "bob+news@mail.example.co.uk"),
    ("<j_smith99@uni-example.org>", "email", "j_smith99@uni-example.org"),
    ("Call (555) 123-4567 today.", "phone", "(555) 123-4567"),
    ("Call 555-123-4567 now", "phone", "555-123-4567"),
    ("Phone: 555.123.4567", "phone", "555.123.4567"),
    ("Ring +44 20 7946 0958 after six.", "phone", "+44 20 7946 0958"),
    ("Tel +1 (555) 123-4567.", "phone", "+1 (555) 123-4567"),
    ("Call 1-800-555-0199 for support", "phone", "1-800-555-0199"),
    ("Paris office: +33 1 23 45 67 89", "phone", "+33 1 23 45 67 89"),
    ("Tokyo: +81-3-1234-5678.", "phone", "+81-3-1234-5678"),
    ("Berlin +49 30 1234567", "phone", "+49 30 1234567"),
    ("compact +442079460958 works", "phone", "+442079460958"),
    ("Login from 192.168.1.23 failed.", "ip", "192.168.1.23"),
    ("server at 203.0.113.45:8080", "ip", "203.0.113.45"),
    ("IP 10.0.0.255.", "ip", "10.0.0.255"),
    ("v6 2001:db8:85a3::8a2e:370:7334 here", "ip", "2001:db8:85a3::8a2e:370:7334"),
    ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "ip", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("link-local fe80::1ff:fe23:4567:890a%eth0", "ip", "fe80::1ff:fe23:4567:890a"),
    ("key sk-abcdefghijklmnopqrstuvwxyz123456 ok", "secret", "sk-abcdefghijklmnopqrstuvwxyz123456"),
    ("AWS AKIAIOSFODNN7EXAMPLE key", "secret", "AKIAIOSFODNN7EXAMPLE"),
    ("token ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "secret", "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"),
    ("slack xoxb-123456789012-abcdefABCDEF", "secret", "xoxb-123456789012-abcdefABCDEF"),
    ("api_key = 'f3A9kQ2zL8xP1mN7'", "secret", "f3A9kQ2zL8xP1mN7"),
    ('"password": "S3cr3tP@ss!"', "secret", "S3cr3tP@ss!"),
    ("export GITHUB_TOKEN=9f8e7d6c5b4a3f2e1d0c", "secret", "9f8e7d6c5b4a3f2e1d0c"),
    ("SECRET_KEY: zq81KmW0pXa3.", "secret", "zq81KmW0pXa3"),
    ("aws_access_key_id = 'a27b46de986a6560331e7a34ddcec45e'", "secret", "a27b46de986a6560331e7a34ddcec45e"),
    ('os.environ.setdefault("GITHUB_TOKEN", "1RENHkhQWFSx8iRLdLI")', "secret", "1RENHkhQWFSx8iRLdLI"),
    ('headers = {"Authorization": "Bearer 9b8f052616b97fc83cfa"}', "secret", "9b8f052616b97fc83cfa"),
    ("My password is Tr0ub4dor&3x, keep it safe.", "secret", "Tr0ub4dor&3x"),
]

PII_HARD_NEGATIVES = [
    "Python 3.11.7 is out.", "pip install torch==2.13.0", "On 2024-05-01 we met.", "It costs $12.50.",
    "ISBN 978-3-16-148410-0", "ISBN 0-306-40615-2", "Lunch at 12:30.", "The repo has 10,000 stars.",
    "at 12:30:45 sharp", "version 1.2.3.4 released", "see section 1.2.3.4", "x = a[1::2]",
    "@property", "user@localhost", "max_tokens = 1024", 'eos_token = "<|endoftext|>"',
    "tokenizer = AutoTokenizer.from_pretrained('gpt2')", "api_key = os.environ['API_KEY']",
    "api_key = 'your-api-key-here'", "password = '<SECRET>'", "MAC 00:1a:2b:3c:4d:5e",
    "ids 100 200 3000", "Pi is 3.14159265", "risk-adjusted-return-on-capital-calculations-for-banks",
    "host='127.0.0.1'", "temperature +15 today", "order #12345678", "1.5e-10 is small",
    "Call 555-0199.", "std::vector<int>", "dead::beef", "2024-05-01T12:30:00Z",
    "coordinates 48.8566, 2.3522", "width=1024 height=768", "token = next_token",
    "sha 3f2a9c1e", "PID 12345 exited", "step 1-2-3", "+/- 0.5", "In 2023, 1,234,567 people came.",
    "The token is important here.", 'x = foo(token, "abc123def456")', "The Bearer 12 apples story",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8", "id 123e4567-e89b-12d3-a456-426614174000",
    "Quantize(Decimal('+35236450.6'))", "dead::beef", "Face::add", "see sections 8.2.4.44",
]


@pytest.mark.parametrize("text,kind,expected", PII)
def test_each_kind_is_found_with_exact_span(text, kind, expected):
    start = text.index(expected)
    assert find_pii(text) == [(kind, start, start + len(expected))]
    masked, found = mask_pii(text)
    assert masked == text[:start] + f"<{kind.upper()}>" + text[start + len(expected):]
    assert found == find_pii(text)


@pytest.mark.parametrize("text", PII_HARD_NEGATIVES)
def test_hard_negatives_are_untouched(text):
    assert find_pii(text) == [] and mask_pii(text) == (text, [])


# A value with a placeholder word in it, in any case, is a template, not a secret; the same value with the
# word swapped for other characters is one (so the word, not the entropy, decides).
@pytest.mark.parametrize("word", ["your", "YOUR_API_KEY", "example", "Example", "here", "HERE", "xxxx", "XXXX",
                                  "changeme", "ChangeMe", "placeholder", "PLACEHOLDER", "dummy", "Dummy",
                                  "redacted", "REDACTED", "environ", "getenv", "****"])
def test_secret_placeholders_are_not_secrets(word):
    assert find_pii(f'api_key = "{word}-9f3KqZwLp7"') == []
    assert find_pii(f'api_key = "Tr8vMn-9f3KqZwLp7"') == [("secret", 11, 28)]


def test_an_ipv6_address_needs_a_decimal_digit():
    # eight groups of hex letters are a word game ("hexspeak"), not an address; one decimal digit makes it one
    assert find_pii("cafe:babe:dead:beef:cafe:babe:dead:beef") == []
    assert find_pii("cafe:babe:dead:beef:cafe:babe:dead:be01") == [("ip", 0, 39)]
    # a compressed one needs a decimal digit in its first group, and at most 7 colons (8 groups) in all
    assert find_pii("Ping fe80::1 now.") == [("ip", 5, 12)]  # "::" alone, no ":group:" in it
    assert find_pii("x = dead::be01 + 2") == []  # a C++ name, with digits elsewhere in the text
    assert find_pii("2001:db8:1:2:3::5:6") == [("ip", 0, 19)]
    assert find_pii("2001:db8:1:2:3:4::5:6") == []


def test_several_kinds_in_one_text_and_overlaps():
    text = ("Mail ann@example.com or call +44 20 7946 0958.\n"
            "OPENAI_API_KEY = \"sk-abcdefghijklmnopqrstuvwxyz123456\"  # from 10.1.2.3")
    masked, found = mask_pii(text)
    assert [k for k, _, _ in found] == ["email", "phone", "secret", "ip"]  # the key is one secret, once
    assert masked == ("Mail <EMAIL> or call <PHONE>.\n"
                      "OPENAI_API_KEY = \"<SECRET>\"  # from <IP>")
    # Two secrets over the same value: the longer one wins, so no tail of the value is left showing.
    token = "ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"  # a GitHub token inside a longer assigned value
    assert mask_pii(f"token = {token}/x9")[0] == "token = <SECRET>"


def test_a_phone_number_does_not_swallow_the_next_number():
    for text, phone in [("+44 20 7946 0958 2001:db8::1", "+44 20 7946 0958"),
                        ("+49 30 1234567 2024-05-01", "+49 30 1234567"),
                        ("+49 30 1234567 10,000 stars", "+49 30 1234567"),
                        ("call 555-123-4567 at 12:30", "555-123-4567")]:
        assert find_pii(text)[0] == ("phone", 0 if text[0] == "+" else 5, (0 if text[0] == "+" else 5) + len(phone))


def test_masking_is_idempotent_on_examples():
    for text, _, _ in PII:
        once, _ = mask_pii(text)
        assert mask_pii(once) == (once, [])


FILLER = st.sampled_from(["the", "cat", "3.11.7", "2024-05-01", "$12.50", "12:30", "10,000", "call", "at",
                          "(", ")", ",", ".", "\n", "v2", "ISBN 978-3-16-148410-0", "torch==2.13.0"])


ASSIGNED = [(text, expected) for text, kind, expected in PII if kind == "secret" and regex.search(r"[=:,]| is ", text)]
PLANTED = [(expected, expected) for _, _, expected in PII if expected not in dict(ASSIGNED).values()] + ASSIGNED


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(FILLER.map(lambda f: (f, None)), st.sampled_from(PLANTED)), max_size=12))
def test_masking_is_idempotent_and_masks_every_planted_value(pieces):
    text = " ".join(piece for piece, _ in pieces)
    once, found = mask_pii(text)
    assert mask_pii(once) == (once, [])
    for _, private in pieces:
        if private:
            assert private not in once
    assert all(0 <= a < b <= len(text) for _, a, b in found)


def test_pii_filter_records_one_edit_per_replacement():
    docs = [doc("Ask ann@example.com or bob@example.org from 192.168.0.7.", id="web-1"),
            doc("Nothing private here, version 3.11.7.", id="web-2")]
    result = pii_filter(docs)
    assert [d.text for d in result.kept] == ["Ask <EMAIL> or <EMAIL> from <IP>.", docs[1].text]
    assert [(e.reason, e.before, e.after) for e in result.edits] == [
        ("pii:email", "ann@example.com", "<EMAIL>"), ("pii:email", "bob@example.org", "<EMAIL>"),
        ("pii:ip", "192.168.0.7", "<IP>")]
    assert docs[0].text.startswith("Ask ann@")  # the input is not changed in place
    assert not result.removed


def test_patterns_stay_linear_on_hostile_input():
    hostile = ["a" * 100_000 + "@", "1-" * 50_000, "+1 " * 30_000, "1." * 50_000, "api_key=" * 20_000,
               "ab:" * 30_000, " ".join(f"10.0.{i % 250}.{i % 199 + 1} a@b.co" for i in range(20_000))]
    start = time.perf_counter()
    for text in hostile:
        mask_pii(text)
    toxicity_filter([doc("you idiot " * 5_000 + "\n" + "nobody likes you " * 3_000)])
    assert time.perf_counter() - start < 5.0


# --- Boundaries: every length and value limit of the patterns, exactly at, under and over --------

def alnum(n, seed=0):
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(n))


@pytest.mark.parametrize("text, found", [
    # an OpenAI key: "sk-" and at least 32 letters and digits
    ("key sk-" + "a1" * 15 + "b end", False), ("key sk-" + "a1" * 16 + " end", True),
    ("key sk-" + "a1" * 16 + "c end", True),
    # an AWS key id: "AKIA" and exactly 16 capitals or digits
    ("AWS AKIA" + "ABCDEFGH1234567 end", False), ("AWS AKIA" + "ABCDEFGH12345678 end", True),
    ("AWS AKIA" + "ABCDEFGH123456789 end", False),
    # a GitHub token: "ghp_" and exactly 36
    ("token ghp_" + "A1" * 17 + "B end", False), ("token ghp_" + "A1" * 18 + " end", True),
    ("token ghp_" + "A1" * 18 + "C end", False),
    # a Slack token: "xoxb-" and at least 10
    ("slack xoxb-123456789 end", False), ("slack xoxb-1234567890 end", True), ("slack xoxb-12345678901 end", True),
    # an assigned secret: a value of 8 to 200 characters (7 characters never reach the entropy bar:
    # log2(7) < 3), with an entropy of at least 3 bits per character
    ("api_key = 'aabcd1234'", False),  # 2.95 bits
    ("api_key = 'abcd1234'", True),  # 8 different characters: exactly 3 bits
    ("api_key = 'abcd12345'", True),  # 3.17 bits
    (f"password = {alnum(199)}", True), (f"password = {alnum(200)}", True), (f"password = {alnum(201)}", False),
    # IPv4: every part at most 255
    ("IP 192.168.1.254 end", True), ("IP 192.168.1.255 end", True), ("IP 192.168.1.256 end", False),
    ("IP 255.168.1.1 end", True), ("IP 256.168.1.1 end", False),
    # four one-digit parts are a section number, one part of two digits makes an address
    ("Read 1.2.3.4 first", False), ("Read 1.2.3.40 first", True), ("Read 10.2.3.4 first", True),
    # an e-mail address: a top-level domain of 2 to 24 letters, a local part of at most 64 characters
    ("mail a@b.c end", False), ("mail a@b.co end", True),
    ("mail a@b." + "c" * 24 + " end", True), ("mail a@b." + "c" * 25 + " end", False),
    ("mail " + "a" * 64 + "@b.co end", True), ("mail " + "a" * 65 + "@b.co end", False),
    # an international phone number: at least 8 digits
    ("Call +1234567 now", False), ("Call +12345678 now", True), ("Call +123456789 now", True),
])
def test_boundary_pattern_limits(text, found):
    assert bool(find_pii(text)) == found, find_pii(text)


@pytest.mark.parametrize("number, phone", [
    ("+123 4567 8901 234", "+123 4567 8901 234"),  # 14 digits
    ("+123 4567 8901 2345", "+123 4567 8901 2345"),  # 15, the E.164 limit
    ("+123 4567 8901 23456", "+123 4567 8901"),  # 16: the last group is another number
])
def test_boundary_phone_numbers_have_at_most_15_digits(number, phone):
    text = f"Call {number} now"
    assert find_pii(text) == [("phone", 5, 5 + len(phone))]


# ---------------------------------------------------------------------------------------------------
# Bias audit
# ---------------------------------------------------------------------------------------------------

FEMALE, MALE = ["Mia", "Lily", "Anna", "Zoe", "Ruby"], ["Tom", "Ben", "Sam", "Leo", "Max"]
PRONOUNS = {"female": dict(s="she", o="her", p="her"), "male": dict(s="he", o="him", p="his")}
OPENINGS = ["{name} was a {job}.", "Once upon a time, there was a {job} named {name}.",
            "{name} worked as a {job} in the village."]
FOLLOWS = ["Every morning {s} went to work early.", "{S} loved {p} job very much.",
           "People often thanked {o} for {p} help.", "{S} was happy and kind."]
FILLERS = ["The sun was bright over the hills.", "Then it began to rain.", "At night the stars came out.",
           "A little dog barked at the birds."]


def template_stories(n, share_stereotyped, seed=0):
    """Stories whose hero has the stereotyped gender of the job with probability `share_stereotyped`."""
    rng = random.Random(seed)
    docs = []
    for k in range(n):
        job = rng.choice(JOBS)
        stereotype = STEREOTYPED_GENDER.get(job)
        if stereotype is None:
            gender = rng.choice(["female", "male"])
        else:
            other = "male" if stereotype == "female" else "female"
            gender = stereotype if rng.random() < share_stereotyped else other
        name = rng.choice(FEMALE if gender == "female" else MALE)
        p = PRONOUNS[gender]
        fill = dict(p, S=p["s"].capitalize())
        sentences = [rng.choice(OPENINGS).format(name=name, job=job), rng.choice(FOLLOWS).format(**fill)]
        sentences += rng.sample(FILLERS, 2) + [rng.choice(FOLLOWS).format(**fill)]
        docs.append(Document(f"books-{k:04d}", "books", " ".join(sentences),
                             labels={"facts": {"hero": name, "gender": gender, "job": job}}))
    return docs


@pytest.mark.parametrize("share", [0.9, 0.5])
def test_audit_recovers_the_planted_skew(share):
    docs = template_stories(800, share)
    audit, truth = bias_audit(docs), true_job_gender(docs)
    assert truth.skipped == 0 and sum(truth.mentions.values()) == 800
    assert abs(audit.skew_stereotyped - truth.skew_stereotyped) < 0.03
    assert abs(audit.skew_all - truth.skew_all) < 0.03
    assert abs(audit.stereotype_lean - truth.stereotype_lean) < 0.03
    assert max(audit.share_gap(truth).values()) < 0.1
    if share == 0.9:
        assert audit.stereotype_lean > 0.3 and audit.share_female("nurse") > 0.8 > 0.2 > audit.share_female("pilot")
    else:
        assert abs(audit.stereotype_lean) < 0.06


def test_the_next_sentence_matters():
    docs = [Document("b", "books", "Mia was a pilot. Every morning she flew high. The end came, and he smiled.")]
    assert bias_audit(docs).table()["pilot"] == (1, 0, 1.0)
    assert bias_audit(docs, window="same_sentence").table()["pilot"] == (0, 0, None)
    assert bias_audit(docs, window="document").table()["pilot"] == (1, 1, 0.5)
    with pytest.raises(ValueError, match="window"):
        bias_audit(docs, window="paragraph")
    with pytest.raises(ValueError, match="jobs is empty"):
        bias_audit(docs, jobs=[])
    with pytest.raises(ValueError, match="lowercase words"):
        bias_audit(docs, jobs=["Pilot!"])


def test_job_words_plurals_titles_and_verbs():
    docs = [Document("b", "books", "The police officers waved. They said she was brave.\n\n"
                                   "Mr. Brown was a nurse. Nurses like him are rare.\n\n"
                                   "She likes to cook. Her brother cooks too. The cook was a woman.")]
    audit = bias_audit(docs)
    assert audit.mentions["police officer"] == 1 and audit.table()["police officer"] == (1, 0, 1.0)
    assert audit.mentions["nurse"] == 2 and audit.counts["nurse"]["male"] == 3  # mr, him; him again
    assert audit.mentions["cook"] == 1 and audit.table()["cook"] == (1, 0, 1.0)  # only "the cook" is a job


def test_rows_and_truth_of_friends():
    docs = [Document("b", "books", "x", labels={"facts": {"job": "pilot", "gender": "female",
                                                          "friend_job": "nurse", "friend_gender": "male"}}),
            Document("c", "books", "y", labels={"facts": {"job": "pilot", "gender": "female", "friend_job": None,
                                                          "friend_gender": "male"}}),
            Document("d", "books", "z", labels={"facts": {"job": "astronaut", "gender": "female"}}),
            Document("e", "web", "no facts")]
    truth = true_job_gender(docs)
    assert truth.table()["pilot"] == (2, 0, 1.0) and truth.table()["nurse"] == (0, 1, 0.0)
    assert truth.window == "truth"  # the labels, not a window of text
    assert truth.skipped == 1
    rows = truth.to_rows()
    assert [r["job"] for r in rows] == list(JOBS)
    assert rows[JOBS.index("pilot")] == {"job": "pilot", "female": 2, "male": 0, "total": 2,
                                                 "share_female": 1.0, "mentions": 2, "stereotype": "male"}
    assert truth.share_female("baker") is None
    assert truth.stereotype_lean == pytest.approx(-(2 * 0.5 + 1 * 0.5) / 3)  # both lean against the stereotype


def test_job_gender_reads_the_main_job_from_the_text():
    assert job_gender("Mia was a pilot. Every morning she flew, and she loved it. Tom was a baker.") == ("pilot", "female")
    assert job_gender("The pilot and the nurse met.") is None  # no gender words near any job
    assert job_gender("A quiet day by the sea.") is None


@pytest.mark.parametrize("text, reading", [
    ("Mia was a pilot. She and her dog flew. Then he came.", ("pilot", "female")),  # 2 to 0 (he is too far)
    ("Mia was a pilot. She and he flew.", None),  # 1 to 1: a tie names no gender
    ("Mia was a pilot. She and he and his dog flew.", ("pilot", "male")),  # 1 to 2
])
def test_boundary_job_gender_tie(text, reading):
    assert job_gender(text) == reading


@pytest.mark.parametrize("count, compared", [(9, False), (10, True), (11, True)])
def test_boundary_share_gap_min_count_10(count, compared):
    audit = BiasAudit(counts={"pilot": Counter(female=count, male=0)})
    truth = BiasAudit(counts={"pilot": Counter(female=5, male=15)})
    assert audit.share_gap(truth) == ({"pilot": 0.75} if compared else {})
    assert truth.share_gap(audit) == audit.share_gap(truth)


def test_skew_weights_each_job_by_its_count():
    audit = BiasAudit(counts={"pilot": Counter(female=1, male=3), "nurse": Counter(female=2, male=2),
                              "baker": Counter(female=0, male=0)})
    assert audit.skew(["pilot"]) == 0.25  # a share of 0.25 is 0.25 from balanced
    assert audit.skew() == pytest.approx(4 * 0.25 / 8)  # the balanced nurse counts 4 words of 8
    assert audit.skew(["baker", "astronaut"]) == 0.0  # no words, or a job never audited: balanced
    assert BiasAudit().skew() == 0.0


def test_plurals_of_job_words_ending_in_y():
    docs = [Document("b", "books", "The secretaries were busy. She smiled. The monkeys were not.")]
    audit = bias_audit(docs, jobs=["secretary", "monkey"])
    assert audit.mentions == Counter({"secretary": 1, "monkey": 1})
    assert audit.table()["secretary"] == (1, 0, 1.0)


# ---------------------------------------------------------------------------------------------------
# Against the generators of the sources
# ---------------------------------------------------------------------------------------------------


def test_filters_find_what_the_defect_generator_planted():
    docs = plant_defects(list(iter_stories(120, seed=5)), seed=5, rate=0.4)
    toxic = [line for d in docs for line in d.labels.get("toxic_lines", [])]
    benign = [line for d in docs for line in d.labels.get("toxic_hard_negatives", [])]
    assert len(toxic) >= 30 and len(benign) >= 30
    precision, recall = precision_recall(toxic, benign)
    assert precision >= 0.95 and recall >= 0.95
    masked = {d.id: d.text for d in pii_filter(docs).kept}
    planted = [(d.id, item["text"]) for d in docs for item in d.labels.get("pii", [])]
    lookalikes = [(d.id, item["text"]) for d in docs for item in d.labels.get("pii_hard_negatives", [])]
    assert len(planted) >= 30 and len(lookalikes) >= 30
    assert sum(text not in masked[i] for i, text in planted) / len(planted) >= 0.95
    assert all(text in masked[i] for i, text in lookalikes)


def test_audit_agrees_with_the_story_generator():
    docs = list(iter_stories(600, seed=2))
    audit, truth = bias_audit(docs), true_job_gender(docs)
    assert truth.skipped == 0
    assert abs(audit.skew_stereotyped - truth.skew_stereotyped) < 0.05
    assert abs(audit.skew_all - truth.skew_all) < 0.05
    assert audit.stereotype_lean > 0.25  # the generator's default bias is visible


def test_a_cue_right_after_the_closing_quote_is_not_inside_the_dialogue():
    inside = 'She said, "you idiot" and left.'
    after = 'She said, "hello"idiot and left.'  # the cue starts where the quoted span ends: outside it
    assert toxicity_score(inside) < toxicity_score(after)


@pytest.mark.parametrize("step", [toxicity_filter, pii_filter, bias_audit, true_job_gender])
def test_each_safety_step_names_itself_when_given_raw_text(step):
    with pytest.raises(TypeError, match=f"^{step.__name__} takes a list of Document, got str: wrap raw text"):
        step(["you idiot"])


# --- Balance: the domain mixture ----------------------------------------------------------------


def test_temperature_weights_of_sizes_that_already_sum_to_one():
    # Sizes may be shares rather than bytes: powered shares summing to 1 are a valid mixture, not "empty".
    assert balance.temperature_weights({"books": 1.0}, 1.0) == {"books": 1.0}
    assert balance.temperature_weights({"books": 0.25, "web": 0.75}, 1.0) == {"books": 0.25, "web": 0.75}
    with pytest.raises(ValueError, match="every domain is empty: there is nothing to mix"):
        balance.temperature_weights({"books": 0, "web": 0}, 2.0)
