"""How good is the text a model writes? Two measures we can compute exactly, because we wrote the stories.

The stories of stage 1 come from a generator with a fixed vocabulary and a fixed set of sentence
templates (`minilm.data.sources.stories.grammar`). So for a sample of generated text we can ask:

- **vocabulary**: the share of its words that the story world has (a model that writes "bakker" or
  "the the" has not learned the words yet);
- **grammar**: the share of its sentences that the story grammar accepts, word for word (a sentence
  only counts when the generator could have written exactly it, so this is strict: agreement,
  pronouns, word order and punctuation must all be right).

A model early in training scores near 0 on grammar while its loss is already falling; a model that
writes recognisable stories scores above 0.9 on both. (Stories of the training data themselves
score about 0.96 on grammar: a few sentences, such as e-book titles, are not in the grammar.)
The last sentence of a sample is usually cut off by the token budget; an unfinished last sentence
is left out rather than counted as wrong.
"""

from __future__ import annotations

import re

from minilm.data.sources.stories.grammar import accepts, story_sentences, story_vocabulary, words

# The ways the generator's stories begin: samples start here, so they are stories and not web pages.
STORY_PROMPTS = ("Once upon a time", "There once was", "Long ago, in", "This is a story about", "In a small town")
COMPLETE = re.compile(r"[.!?][\"']?$")


def complete_sentences(text: str) -> list[str]:
    """The sentences of `text`, without a last one that stops mid-way."""
    sentences = story_sentences(text)
    if sentences and not COMPLETE.search(sentences[-1].rstrip()):
        sentences = sentences[:-1]
    return sentences


def text_quality(texts: list[str], examples: int = 5) -> dict:
    """The vocabulary and grammar shares over `texts` (see the module's docstring), with counts and
    up to `examples` rejected sentences and unknown words, to look at."""
    vocabulary = story_vocabulary()
    n_words = n_known = n_sentences = n_accepted = 0
    rejected: list[str] = []
    unknown: dict[str, None] = {}  # an ordered set
    for text in texts:
        for sentence in complete_sentences(text):
            n_sentences += 1
            if accepts(sentence):
                n_accepted += 1
            elif len(rejected) < examples:
                rejected.append(sentence)
            for word in words(sentence):
                n_words += 1
                if word in vocabulary:
                    n_known += 1
                elif len(unknown) < examples:
                    unknown[word] = None
    return {
        "vocabulary": n_known / n_words if n_words else 0.0,
        "grammar": n_accepted / n_sentences if n_sentences else 0.0,
        "words": n_words,
        "sentences": n_sentences,
        "rejected": rejected,
        "unknown_words": list(unknown),
    }
