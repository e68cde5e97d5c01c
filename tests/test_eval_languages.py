"""Stage 8's rows per language: bits per byte on held-out test stories in English and the same stories in Spanish,
checked against the writer's parallel stories, a computation by hand, and a model that never read Spanish."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F

from minilm.cache import Artifact
from minilm.data.sources.stories.writer import generate_parallel_story
from minilm.eval import report
from minilm.eval.stage import RESULTS, EvalConfig
from minilm.eval.tasks import LANGUAGE_NAMES, language_docs, run_languages
from minilm.model import GPT, GPTConfig
from minilm.tokenizer import Tokenizer
from minilm.tokenizer.tokenizer import SPECIAL_TOKENS
from minilm.world import STORY_SPLITS, split_stories
from spread import small_gpt

pytestmark = pytest.mark.usefixtures("one_thread")

BYTES = 256 + len(SPECIAL_TOKENS)  # a byte-level tokenizer: no merges, so no language is cut into fewer tokens


@pytest.fixture(scope="module")
def bytes_tokenizer() -> Tokenizer:
    return Tokenizer.train(["Once upon a time."], BYTES)


@pytest.fixture(scope="module")
def english_model(bytes_tokenizer) -> GPT:
    """A tiny GPT trained for a few seconds on English stories of the pretraining split only, never on Spanish."""
    torch.manual_seed(0)
    context, rng = 64, random.Random(0)
    tokens = [t for text, _ in split_stories("pretrain", 60) for t in bytes_tokenizer.encode_ordinary(text + "\n")]
    model = GPT(GPTConfig(vocab_size=BYTES, context=context, n_layer=2, n_head=2, n_embd=48), seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(250):
        starts = [rng.randrange(len(tokens) - context - 1) for _ in range(16)]
        batch = torch.tensor([tokens[s : s + context + 1] for s in starts])
        _, loss = model(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_the_documents_are_the_held_out_stories_in_both_languages():
    docs = language_docs(3)
    assert list(docs) == list(LANGUAGE_NAMES) == ["English", "Spanish"]
    rng = random.Random(STORY_SPLITS["test"])  # the writer's stream of the test split, read independently
    parallel = [generate_parallel_story(rng) for _ in range(3)]
    assert [d["text"] for d in docs["English"]] == [english for english, _, _ in parallel]
    assert [d["text"] for d in docs["Spanish"]] == [spanish for _, spanish, _ in parallel]
    assert all(en["text"] != es["text"] for en, es in zip(docs["English"], docs["Spanish"]))
    with pytest.raises(ValueError, match="n_stories must be a positive integer"):
        language_docs(0)


def test_bits_per_byte_is_the_story_log_likelihood_by_hand():
    """One story per language, scored by one forward pass over the whole story (the model's context holds it)."""
    tokenizer = Tokenizer.train([text for text, _ in split_stories("sft_val", 20)], 400)  # English merges only
    model = small_gpt(tokenizer.vocab_size, 1024, 0.2)
    docs = language_docs(1)
    scores = run_languages(model, tokenizer, docs, batch_size=4, bootstrap_iterations=10)
    by_hand = {}
    for language in LANGUAGE_NAMES:
        text = docs[language][0]["text"]
        ids = [tokenizer.special_id("<|endoftext|>")] + tokenizer.encode_ordinary(text)
        assert len(ids) <= model.config.context
        with torch.no_grad():
            logprobs = F.log_softmax(model(torch.tensor([ids[:-1]]))[0][0].double(), dim=-1)
        nats = -logprobs[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item()
        by_hand[language] = nats / len(text.encode("utf-8")) / math.log(2)
        s = scores[language]
        assert s["bits_per_byte"] == pytest.approx(by_hand[language], rel=1e-4)
        assert s["n"] == 1 and s["bytes"] == len(text.encode("utf-8")) and s["stderr"] == 0.0
    assert scores["gap"]["bits_per_byte"] == pytest.approx(by_hand["Spanish"] - by_hand["English"], rel=1e-3)


def test_a_model_that_read_no_spanish_needs_more_bits_per_spanish_byte(bytes_tokenizer, english_model):
    docs = language_docs(6)
    trained = run_languages(english_model, bytes_tokenizer, docs, batch_size=8, bootstrap_iterations=200)
    # the control: before training, a model is as lost in either language (bytes, so no tokenizer favours one)
    untrained = run_languages(GPT(english_model.config, seed=0).eval(), bytes_tokenizer, docs, 8, 200)
    assert abs(untrained["gap"]["bits_per_byte"]) < 0.1
    assert trained["English"]["bits_per_byte"] < untrained["English"]["bits_per_byte"] - 2  # it learned English
    gap = trained["gap"]
    spanish, english = trained["Spanish"]["bits_per_byte"], trained["English"]["bits_per_byte"]
    assert gap["bits_per_byte"] == pytest.approx(spanish - english)
    assert gap["bits_per_byte"] - 1.96 * gap["stderr"] > 0.3  # Spanish is worse per byte, and the interval says so


def test_the_card_has_an_english_and_a_spanish_row_per_model(bytes_tokenizer, english_model, tmp_path):
    docs = language_docs(4)
    scored = {"English only": run_languages(english_model, bytes_tokenizer, docs, 8, 50),
              "untrained": run_languages(GPT(english_model.config, seed=1).eval(), bytes_tokenizer, docs, 8, 50)}
    (tmp_path / RESULTS).write_text(json.dumps({"order": list(scored), "languages": scored}, sort_keys=True))
    rows = report.language_rows(Artifact(tmp_path, {}))
    assert [(row["model"], row["language"]) for row in rows] == [
        ("English only", "English"), ("English only", "Spanish"), ("untrained", "English"), ("untrained", "Spanish")]
    spanish = scored["English only"]["Spanish"]
    assert rows[1]["bits per byte"] == f"{spanish['bits_per_byte']:.3f} ± {1.96 * spanish['stderr']:.3f}"
    assert rows[1]["stories"] == 4 and rows[0]["minus English (paired)"] == ""
    assert rows[1]["minus English (paired)"].startswith("+")


def test_bad_inputs_are_named(bytes_tokenizer, english_model):
    docs = language_docs(2)
    with pytest.raises(ValueError, match="the same stories in each"):
        run_languages(english_model, bytes_tokenizer, {"English": docs["English"]})
    with pytest.raises(ValueError, match="the same stories in each"):
        run_languages(english_model, bytes_tokenizer, {"English": docs["English"], "Spanish": docs["Spanish"][:1]})
    with pytest.raises(ValueError, match="EvalConfig.language_stories must be a positive integer"):
        EvalConfig(language_stories=0)
