"""The story generator: determinism, the bias knob, facts, grammar, vocabulary, files and book formatting."""

import random
import re
from collections import Counter

import pytest

from minilm.data.sources.stories.books import as_book, with_questions
from minilm.data.sources.stories.grammar import STORY_TEMPLATES, accepts, story_sentences, story_vocabulary, words
from minilm.data.sources.stories.writer import STORY_SEPARATOR, generate_story, iter_stories, measure_speed, write_stories
from minilm.world import JOBS, STEREOTYPED_GENDER


@pytest.fixture(scope="module")
def stories():
    return list(iter_stories(400, seed=11))


def test_same_seed_same_stories_and_different_seeds_differ():
    assert generate_story(5) == generate_story(5)
    assert generate_story(random.Random(5)) == generate_story(5)
    a = [d.text for d in iter_stories(20, seed=1)]
    assert a == [d.text for d in iter_stories(20, seed=1)]
    assert a != [d.text for d in iter_stories(20, seed=2)]
    assert a[:5] == [d.text for d in iter_stories(5, seed=1)]  # a shorter run is a prefix


def test_documents_have_ids_domain_and_facts(stories):
    assert [d.id for d in stories[:3]] == ["books-000000", "books-000001", "books-000002"]
    assert {d.domain for d in stories} == {"books"}
    assert all(d.labels["facts"]["hero"] for d in stories)


@pytest.mark.parametrize("bias", [0.0, 0.6, 1.0])
def test_bias_knob_sets_the_share_of_stereotyped_heroes(bias):
    stereotyped = counted = other_female = other = 0
    for doc in iter_stories(2000, seed=7, bias=bias):
        facts = doc.labels["facts"]
        if facts["job"] in STEREOTYPED_GENDER:
            counted += 1
            stereotyped += facts["gender"] == STEREOTYPED_GENDER[facts["job"]]
        else:
            other += 1
            other_female += facts["gender"] == "female"
    share = stereotyped / counted
    assert abs(share - (0.5 + bias / 2)) < 0.05, (bias, share, counted)
    assert abs(other_female / other - 0.5) < 0.07  # jobs without a stereotype stay balanced


def test_bias_outside_range_is_refused():
    with pytest.raises(ValueError, match="bias"):
        generate_story(1, bias=1.5)


def test_facts_agree_with_the_text(stories):
    for doc in stories:
        text, facts = doc.text, doc.labels["facts"]
        assert facts["job"] in JOBS and facts["gender"] in ("female", "male")
        for key in ("hero", "job", "object", "place", "feeling"):
            assert facts[key] and facts[key] in text, (key, facts[key], text)
        if facts["friend"]:
            assert facts["friend"] in text and facts["friend"] != facts["hero"]
        hero_pronouns = {"female": {"she", "her"}, "male": {"he", "his", "him"}}[facts["gender"]]
        assert hero_pronouns & set(words(text)), text  # the hero's gender is visible in the text
        for qa in facts["qa"]:  # every answer a question-answering stage would ask is in the story
            assert qa["answer"] in text, (qa, text)
    events = Counter(d.labels["facts"]["event"] for d in stories)
    assert len(events) == 7 and min(events.values()) > 20
    lost = [d for d in stories if d.labels["facts"]["event"] == "lost_object"]
    assert all(d.labels["facts"]["lost"] in d.text for d in lost)


def test_shape_paragraphs_and_words(stories):
    paragraphs = Counter(len(d.text.split("\n\n")) for d in stories)
    assert set(paragraphs) <= {3, 4, 5, 6} and len(paragraphs) >= 3
    lengths = [len(d.text.split()) for d in stories]
    assert min(lengths) >= 120 and max(lengths) <= 400


def test_every_generated_sentence_is_accepted(stories):
    sentences = [s for d in stories[:150] for s in story_sentences(d.text)]
    assert len(sentences) > 2000
    assert all(accepts(s) for s in sentences), [s for s in sentences if not accepts(s)][:3]
    joined = " ".join(story_sentences(stories[0].text))
    assert joined == " ".join(stories[0].text.split())  # splitting loses nothing


def test_scrambled_and_inconsistent_sentences_are_rejected(stories):
    rng = random.Random(0)
    sentences = [s for d in stories[:80] for s in story_sentences(d.text) if len(s.split()) >= 4]
    rejected = 0
    for sentence in sentences:
        tokens = sentence.split()
        shuffled = tokens[:]
        while shuffled == tokens:
            rng.shuffle(shuffled)
        rejected += not accepts(" ".join(shuffled))
    assert rejected / len(sentences) > 0.95
    assert accepts("Tom was a good pilot, and everyone in town knew him.")
    assert not accepts("Mia was a good pilot, and everyone in town knew him.")  # name and pronoun disagree
    assert not accepts("Every morning she baked warm bread for the whole city.")  # a word the world lacks
    assert not accepts("Tom thanked Tom for his help.")  # the friend is never the hero
    assert not accepts("")


def test_vocabulary_covers_every_word_and_is_small(stories):
    vocabulary = story_vocabulary()
    used = Counter(w for d in stories for w in words(d.text))
    assert set(used) <= vocabulary, set(used) - vocabulary
    assert 400 < len(vocabulary) < 1500
    assert {"pilot", "she", "he", "mia", "mia's", "don't", "police", "officer"} <= vocabulary
    assert len(used) > 0.6 * len(vocabulary)  # most of the vocabulary really occurs


def test_templates_are_single_sentences():
    for role, templates in STORY_TEMPLATES.items():
        for template in templates:
            assert template[-1] in ".!?", (role, template)
            assert not re.search(r"[.!?]\s", template), (role, template)  # one split unit each


def test_write_stories_streams_whole_stories_atomically(tmp_path):
    path = tmp_path / "stories.txt"
    info = write_stories(path, 60_000, seed=3)
    data = path.read_bytes()
    assert info["bytes"] == len(data) >= 60_000
    stories = data.decode("utf-8").split(STORY_SEPARATOR)
    assert stories[-1] == "" and len(stories) - 1 == info["stories"]
    assert len(data) - 60_000 < len(stories[-2].encode()) + len(STORY_SEPARATOR) + 1  # stops at the first story past n_bytes
    assert stories[0] == generate_story(random.Random(3), 0.8)[0]
    write_stories(tmp_path / "again.txt", 60_000, seed=3)
    assert (tmp_path / "again.txt").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    with pytest.raises(ValueError, match="n_bytes"):
        write_stories(tmp_path / "x.txt", 0, seed=1)


def test_as_book_records_every_added_line(stories):
    rng = random.Random(4)
    first_lines = set()
    markers = 0
    for doc in stories[:60]:
        book = as_book(doc, rng)
        assert doc.labels.get("defects") is None  # the original is untouched
        assert "boilerplate" in book.labels["defects"] and book.labels["facts"] == doc.labels["facts"]
        lines = book.text.split("\n")
        boilerplate = set(book.labels["boilerplate_lines"])
        assert boilerplate <= set(lines)
        stripped = "\n".join(line for line in lines if line not in boilerplate)
        assert re.sub(r"\n{3,}", "\n\n", stripped).strip() == doc.text  # cutting them gives the story back
        first_lines.add(re.sub(r"[^A-Za-z ]", "", lines[0]).split()[0])
        markers += "*** START OF" in book.text
    assert len(first_lines) >= 4  # several layouts
    assert 10 < markers < 60  # some books have markers, some do not


def test_reading_questions_are_the_storys_own_facts(stories):
    rng = random.Random(5)
    for doc in stories[:40]:
        reader = with_questions(doc, rng)
        story, questions = reader.text.rstrip("\n").rsplit("\n\n", 1)
        assert story == doc.text and reader.labels == doc.labels  # the story itself is untouched
        lines = questions.split("\n")
        assert len(lines) == min(3, len(doc.labels["facts"]["qa"])) and len(set(lines)) == len(lines)
        facts = {f"Question: {qa['question']} Answer: {qa['answer']}." for qa in doc.labels["facts"]["qa"]}
        assert set(lines) <= facts  # each line is one of the story's questions with its right answer
    no_facts = stories[0].replace(labels={})
    assert with_questions(no_facts, rng) is no_facts  # nothing to ask: the story is left as it is


def test_generator_speed_is_reported():
    rate = measure_speed(2000)
    print(f"\nstory generator: {rate:,.0f} stories/s on one core")
    assert rate > 500
