"""Two languages in one model (minilm.train.languages): resampling to a temperature's shares, the loss per
language against an independent cross-entropy, and what an English-only model makes of Spanish."""

from __future__ import annotations

import math
import random

import pytest
import torch

from minilm.data.documents import Document
from minilm.data.sources.stories.writer import generate_parallel_story
from minilm.model.gpt import GPT
from minilm.tokenizer import Tokenizer
from minilm.train.languages import (language_loss, language_shares, language_tradeoff, resample_by_language,
                                    small_config, train_on_texts)

EOT = "<|endoftext|>"
TINY = dict(n_layer=1, n_head=2, n_embd=32, context=32, batch_size=16, max_steps=80, warmup_steps=8)


def stories(n: int, seed: int, spanish_every: int = 5) -> list[Document]:
    """n English stories, and the Spanish translation of one in `spanish_every`, labelled as stage 1 labels them."""
    rng, docs = random.Random(seed), []
    for i in range(n):
        english, spanish, _ = generate_parallel_story(rng)
        docs.append(Document(f"books-{i:06d}", "books", english, labels={"identified": "en"}))
        if i % spanish_every == 0:
            docs.append(Document(f"story-es-{i:06d}", "books", spanish, labels={"identified": "es"}))
    return docs


@pytest.fixture(scope="module")
def corpus() -> list[Document]:
    return stories(150, seed=1)


@pytest.fixture(scope="module")
def tokenizer(corpus) -> Tokenizer:
    return Tokenizer.train([doc.text for doc in corpus], vocab_size=400)


def nbytes(docs) -> int:
    return sum(len(doc.text.encode("utf-8")) for doc in docs)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0, 0.5])
def test_resampling_hits_the_temperatures_shares_within_a_document(corpus, temperature):
    docs = corpus + [Document("web-x", "web", "OK", labels={"identified": "unknown"})]
    en = [d for d in corpus if d.labels["identified"] == "en"]
    es = [d for d in corpus if d.labels["identified"] == "es"]
    size_en, size_es = nbytes(en), nbytes(es)
    # the shares by hand: proportional to size^(1/T)
    share_en = size_en ** (1 / temperature) / (size_en ** (1 / temperature) + size_es ** (1 / temperature))
    mixed = resample_by_language(docs, temperature, max_repeats=20, seed=3)
    mixed_en = [d for d in mixed if d.labels.get("identified") == "en"]
    mixed_es = [d for d in mixed if d.labels.get("identified") == "es"]
    # English, the largest, keeps its data, once; Spanish gets the bytes of its share, to within one document
    assert sorted(d.id for d in mixed_en) == sorted(d.id for d in en)
    target_es = size_en / share_en * (1 - share_en)
    assert abs(nbytes(mixed_es) - target_es) <= max(len(d.text.encode()) for d in es)
    assert [d.id for d in mixed if d.labels.get("identified") == "unknown"] == ["web-x"]  # kept once, outside
    if temperature > 1:  # a small language is read more than once: repeats get their own ids
        assert nbytes(mixed_es) > 1.5 * size_es and any("#l1" in d.id for d in mixed_es)
        assert len({d.id for d in mixed}) == len(mixed)
    if temperature < 1:  # a cold mixture down-samples it
        assert nbytes(mixed_es) < size_es
    if temperature == 1:  # the natural mixture is the data itself
        assert sorted(d.id for d in mixed_es) == sorted(d.id for d in es)
    assert resample_by_language(docs, temperature, 20, seed=3) == mixed  # seeded


def test_resampling_repeats_a_language_at_most_max_repeats_times(corpus):
    es = [d for d in corpus if d.labels["identified"] == "es"]
    mixed = resample_by_language(corpus, 100.0, max_repeats=2, seed=0)  # nearly equal shares: Spanish wants ~5x
    assert nbytes([d for d in mixed if d.labels["identified"] == "es"]) == 2 * nbytes(es)  # two whole passes
    shares = language_shares(mixed)
    assert abs(sum(shares.values()) - 1) < 1e-12 and shares["es"] < 0.45
    with pytest.raises(ValueError, match="max_repeats must be"):
        resample_by_language(corpus, 2.0, max_repeats=0)
    with pytest.raises(ValueError, match="no document has a language"):
        resample_by_language([Document("x", "web", "OK", labels={"identified": "unknown"})], 2.0)


def reference_loss(model: GPT, tokenizer: Tokenizer, texts: list[str], predictions: int | None = None):
    """Sum of nats, predictions and sum of nats on text tokens, window by window, with log-softmax by hand."""
    ids = []
    for text in texts:  # the Python encoder, not tiktoken's
        ids += [tokenizer.special_id(EOT)] + tokenizer.encode_ordinary(text)
    ids = ids if predictions is None else ids[:predictions + 1]
    eot, context, total, count, on_text = tokenizer.special_id(EOT), model.config.context, 0.0, 0, 0.0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, context):
            window = ids[start:start + context + 1]
            logits = model(torch.tensor([window[:-1]]))[0][0].double()
            log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
            for position, target in enumerate(window[1:]):
                nats = -float(log_probs[position, target])
                total, count = total + nats, count + 1
                on_text += nats if target != eot else 0.0
    return total, count, on_text


def test_language_loss_equals_an_independent_cross_entropy(corpus, tokenizer):
    model = GPT(small_config(**TINY).model_config(tokenizer.vocab_size), seed=4).eval()
    texts = [d.text for d in corpus if d.labels["identified"] == "es"][:6]
    total, count, on_text = reference_loss(model, tokenizer, texts)
    result = language_loss(model, tokenizer, texts, batch_size=5)
    assert result["tokens"] == count and result["bytes"] == sum(len(t.encode()) for t in texts)
    assert result["loss"] == pytest.approx(total / count, rel=1e-5)
    assert result["bits_per_byte"] == pytest.approx(on_text / (math.log(2) * result["bytes"]), rel=1e-5)
    assert not model.training
    cut = language_loss(model, tokenizer, texts, max_tokens=100)  # the stream's first 100 predictions
    first_total, first_count, _ = reference_loss(model, tokenizer, texts, predictions=100)  # the last window is short
    assert cut["tokens"] == first_count == 100 and cut["loss"] == pytest.approx(first_total / 100, rel=1e-5)
    with pytest.raises(ValueError, match="no texts to evaluate"):
        language_loss(model, tokenizer, [])


def test_a_model_trained_on_english_only_finds_spanish_harder(corpus, tokenizer):
    english = [d.text for d in corpus if d.labels["identified"] == "en"]
    model = train_on_texts(english[:-10], tokenizer, small_config(**TINY))
    held_out = stories(12, seed=9, spanish_every=1)
    en = language_loss(model, tokenizer, [d.text for d in held_out if d.labels["identified"] == "en"])
    es = language_loss(model, tokenizer, [d.text for d in held_out if d.labels["identified"] == "es"])
    assert en["loss"] < math.log(tokenizer.vocab_size) - 1.0  # it learned English: a fresh model is at ln V
    # per token and per byte (which the tokenizer's cutting of each language does not change), Spanish is harder
    assert es["loss"] > en["loss"] + 0.3 and es["bits_per_byte"] > en["bits_per_byte"] + 0.5


def test_tradeoff_trains_two_mixtures_and_measures_each_language(corpus, tokenizer):
    val = stories(20, seed=8, spanish_every=2)
    rows = language_tradeoff(corpus, val, tokenizer, temperatures=(1.0, 5.0), config=small_config(**TINY),
                             max_eval_tokens=2_000)
    natural, tempered = rows
    assert [row["T"] for row in rows] == [1.0, 5.0] and natural["mixture"] == "natural"
    assert natural["share of Spanish"] == pytest.approx(language_shares(corpus)["es"])
    assert natural["Spanish read (times)"] == 1.0 and tempered["Spanish read (times)"] > 2
    assert tempered["share of Spanish"] > natural["share of Spanish"] + 0.15
    # more Spanish, less English, for the same tokens: each language's loss moves its own way
    assert tempered["val loss es"] < natural["val loss es"] and tempered["val loss en"] > natural["val loss en"]
    with pytest.raises(ValueError, match=r"no \['es'\] documents"):
        language_tradeoff(corpus, [d for d in val if d.labels["identified"] == "en"], tokenizer)
