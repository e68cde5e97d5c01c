"""Book formatting: a story wrapped as an e-book, with the front matter and licence a cleaner must strip.

Real book corpora (Project Gutenberg and its like) come with a title page, a producer's credits,
START/END markers and a licence around every text. `as_book` wraps a story in one of five such
layouts and records every added line as boilerplate, so that the cleaning step of stage 1 can be
scored on what it strips.
"""

from __future__ import annotations

import random

from minilm.data.documents import Document
from minilm.world import GENDERS, MONTHS, NAMES, SURNAMES

PRODUCERS = (
    "the Project MiniLM Online Proofreading Team",
    "{person} and the Online Distributed Proofreading Team",
    "{person}, {person2} and the Project MiniLM volunteers",
    "{person} (This file was produced from images generously made available by the Little Lamp Library.)",
)
PRESSES = ("Little Lamp Press", "Bluebird Books", "Puddle Lane Publishing", "Acorn House")
LICENCE_LINES = (
    "This eBook is for the use of anyone anywhere at no cost and with almost no restrictions whatsoever.",
    "You may copy it, give it away or re-use it under the terms of the Project MiniLM License included with this eBook or online at www.minilm.example.org.",
    "If you are not located in the United States, you will have to check the laws of the country where you are located before using this eBook.",
    "Updated editions will replace the previous one--the old editions will be renamed.",
    "Creating the works from print editions not protected by copyright law means that no one owns a copyright in these works.",
    "Project MiniLM eBooks are often created from several printed editions, all of which are confirmed as not protected by copyright.",
    "Section 1. General Terms of Use and Redistributing Project MiniLM electronic works",
    "Most people start at our website which has the main search facility: www.minilm.example.org",
    "This website includes information about Project MiniLM, including how to make donations to the Project MiniLM Literary Archive Foundation.",
)


def with_questions(doc: Document, rng: random.Random | int, n: int = 3) -> Document:
    """The story as a graded reader prints it: a few reading questions after the text, each with its answer.

    Children's readers often end with questions like these, and for a language model they are the
    first text that asks it to read: the answer must be found in the story above, not guessed from
    what stories usually say. The questions and answers are the story's own facts (`facts["qa"]`),
    so they are always right; they are content, not boilerplate, and the cleaner keeps them.
    """
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    qa = doc.labels.get("facts", {}).get("qa") or []
    if not qa:
        return doc
    asked = rng.sample(qa, min(n, len(qa)))
    lines = [f"Question: {item['question']} Answer: {item['answer']}." for item in asked]
    return doc.replace(text=doc.text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")


def _title(facts: dict, rng: random.Random) -> str:
    hero = facts["hero"]
    options = [f"{hero}'s Big Day", f"{hero} the {facts['job'].title()}", f"A Story About {hero}"]
    if facts["object"]:
        options.append(f"{hero} and the {facts['object'].title()}")
    if facts["place"]:
        options.append(f"A Day at the {facts['place'].title()}")
    return rng.choice(options)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(NAMES[rng.choice(GENDERS)])} {rng.choice(SURNAMES)}"


def as_book(doc: Document, rng: random.Random | int) -> Document:
    """Wrap a story in book formatting (front matter, START/END markers, licence) to be stripped later.

    Five layouts, so that a cleaner needs general rules (markers, lines repeated across books,
    short unpunctuated lines at the top) rather than one string. Every added non-blank line is
    listed in labels["boilerplate_lines"]; blank separator lines are not listed.
    """
    rng = rng if isinstance(rng, random.Random) else random.Random(rng)
    facts = doc.labels.get("facts") or {"hero": "Someone", "job": "writer", "object": None, "place": None}
    title = _title(facts, rng)
    author, person, person2 = _person(rng), _person(rng), _person(rng)
    producer = rng.choice(PRODUCERS).format(person=person, person2=person2)
    press = rng.choice(PRESSES)
    year = rng.randint(1890, 2023)
    ebook = rng.randint(1000, 79999)
    date = f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(1996, 2024)}"
    licence = rng.sample(LICENCE_LINES, rng.randint(2, 5))
    paragraphs = doc.text.split("\n\n")
    if rng.random() < 0.3 and len(paragraphs) > 2:  # an illustration between two paragraphs
        where = rng.randint(1, len(paragraphs) - 1)
        caption = rng.choice([f"[Illustration: {facts['hero']}]", "[Illustration]", f"[Illustration: {title}]"])
        paragraphs.insert(where, caption)
    story = "\n\n".join(paragraphs)
    upper = title.upper()

    layout = rng.randrange(5)
    if layout == 0:  # the full archive header and footer
        head = [f"The Project MiniLM eBook of {title}", "", *licence[:2], "", f"Title: {title}", "", f"Author: {author}", "",
                f"Release date: {date} [eBook #{ebook}]", "", "Language: English", "", f"Produced by {producer}", "",
                f"*** START OF THE PROJECT MINILM EBOOK {upper} ***", "", title, "", f"by {author}", ""]  # fmt: skip
        tail = ["", f"*** END OF THE PROJECT MINILM EBOOK {upper} ***", "", *licence]
    elif layout == 1:  # title page, then short markers
        head = [title, f"by {author}", "", f"Produced by {producer}", "", f"*** START OF THIS PROJECT MINILM EBOOK {upper} ***", ""]
        tail = ["", f"*** END OF THIS PROJECT MINILM EBOOK {upper} ***", "",
                f"End of the Project MiniLM EBook of {title}, by {author}", "", *licence]  # fmt: skip
    elif layout == 2:  # a publisher's book: no markers at all
        head = [upper, "", f"Written by {author}", f"Illustrated by {person}", "",
                f"Copyright (c) {year} {press}. All rights reserved.", f"First published in {year}.", ""]  # fmt: skip
        tail = ["", "THE END", "", f"More stories from {press} at www.{press.lower().replace(' ', '')}.example.com"]
    elif layout == 3:  # a transcriber's edition with a full licence section
        head = [f"*** START OF THE PROJECT MINILM EBOOK {upper} ***", "", f"Produced by {producer}", "",
                "[Transcriber's Note: Obvious printing errors have been corrected.]", "", title, "", f"By {author}", ""]  # fmt: skip
        tail = ["", f"End of Project MiniLM's {title}, by {author}", "", "*** START: FULL LICENSE ***", "", *licence,
                "", "*** END: FULL LICENSE ***"]  # fmt: skip
    else:  # a story in a collection
        head = [f"STORIES FOR YOUNG READERS, VOLUME {rng.randint(1, 12)}", "", f"{title.upper()}", f"by {author}", ""]
        tail = ["", f"[End of {title}]", "", f"Transcribed by {producer}", *licence[:1]]
    text = "\n".join(head) + "\n" + story + "\n" + "\n".join(tail) + "\n"
    added = [line for line in head + tail if line]
    added += [p for p in paragraphs if p.startswith("[Illustration")]
    labels = {**doc.labels}
    labels["defects"] = [*labels.get("defects", []), *([] if "boilerplate" in labels.get("defects", []) else ["boilerplate"])]
    labels["boilerplate_lines"] = [*labels.get("boilerplate_lines", []), *added]
    return doc.replace(text=text, labels=labels)

