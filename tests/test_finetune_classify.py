"""Classification fine-tuning: the word-order task, last-token pooling, what each method trains,
the bag-of-words baseline at chance by construction, and bad input."""

from __future__ import annotations

import random

import pytest
import torch

from minilm.data.sources.stories import writer as stories
from minilm.finetune.classify import (
    LABELS,
    METHODS,
    BagOfWords,
    Classifier,
    Example,
    ClassifierConfig,
    TaskConfig,
    accuracy,
    encode_examples,
    finetune,
    sentences,
    swap_neighbours,
    trainable_parameters,
    word_order_task,
)
from minilm.model.config import GPTConfig
from minilm.model.gpt import GPT
from minilm.tokenizer import Tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_TASK = TaskConfig(train_stories=12, eval_stories=4, max_pairs=120)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([doc.text for doc in stories.iter_stories(40, seed=0)], 300, progress=False)


@pytest.fixture(scope="module")
def task() -> dict[str, list[Example]]:
    return word_order_task(SMALL_TASK)


def tiny_classifier(tokenizer: Tokenizer, seed: int = 0, context: int = 64) -> Classifier:
    config = GPTConfig(vocab_size=tokenizer.vocab_size, context=context, n_layer=2, n_head=2, n_embd=32)
    return Classifier(GPT(config, seed=seed), len(LABELS), tokenizer.special_id("<|pad|>"), seed=seed).eval()


# --- the task ----------------------------------------------------------------------------------


def test_sentences_keep_a_quotation_with_its_speaker():
    story = 'Maya was sad. "Where is my boat?" cried Maya. She looked.\n\nThe end came!'
    assert sentences(story) == ["Maya was sad.", '"Where is my boat?" cried Maya.', "She looked.", "The end came!"]


def test_a_swap_moves_two_inner_plain_words_and_nothing_else():
    rng = random.Random(0)
    for _ in range(50):
        swapped = swap_neighbours("Maya was very sad today.", rng)
        words = swapped.split(" ")
        assert words[0] == "Maya" and words[-1] == "today." and sorted(words) == sorted("Maya was very sad today.".split())
        assert swapped != "Maya was very sad today."
    assert swap_neighbours("She looked.", rng) is None  # no inner pair
    assert swap_neighbours('"We\'ll find Pepper," said Sara.', rng) is None  # only words with punctuation


def test_splits_are_paired_balanced_and_disjoint(task):
    for examples in task.values():
        assert examples and len(examples) % 2 == 0
        assert [e.label for e in examples] == ["written", "swapped"] * (len(examples) // 2)
        for written, swapped in zip(examples[0::2], examples[1::2]):
            assert sorted(written.text.split()) == sorted(swapped.text.split()) and written.text != swapped.text
    texts = {split: {e.text for e in examples if e.label == "written"} for split, examples in task.items()}
    assert not texts["train"] & texts["validation"] and not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    written_anywhere = set().union(*texts.values())
    assert not any(e.text in written_anywhere for examples in task.values() for e in examples if e.label == "swapped")
    assert word_order_task(SMALL_TASK) == task  # seeded


def test_twins_have_the_same_tokens(tokenizer, task):
    data = encode_examples(tokenizer, task["train"], context=64)
    for i in range(0, len(data), 2):
        a, b = (data.ids[j, : data.lengths[j]].sort().values for j in (i, i + 1))
        assert torch.equal(a, b)


# --- the baseline: at chance by construction ------------------------------------------------------


def test_bag_of_words_is_at_chance_on_the_word_order_task(tokenizer, task):
    pad = tokenizer.special_id("<|pad|>")
    train, test = (encode_examples(tokenizer, task[split], context=64) for split in ("train", "test"))
    bag = BagOfWords(train, pad)
    assert torch.equal(bag.counts(train).sum(dim=1), train.lengths.float())  # every real token counted once
    bag.fit(train, steps=100)
    assert bag.accuracy(test) == 0.5 and bag.accuracy(train) == 0.5  # each pair: same input, opposite labels
    # ... while on a task that words do answer, it learns: "written" iff the sentence names a cat
    labelled = [Example(e.text, "written" if " cat" in e.text else "swapped") for e in task["train"]]
    data = encode_examples(tokenizer, labelled, context=64)
    bag = BagOfWords(data, pad)
    bag.fit(data, steps=200)
    assert bag.accuracy(data) > 0.95


# --- pooling ------------------------------------------------------------------------------------


def test_hidden_states_are_what_the_head_reads():
    model = GPT(GPTConfig(vocab_size=50, context=16, n_layer=2, n_head=2, n_embd=16)).eval()
    idx = torch.randint(50, (2, 9), generator=torch.Generator().manual_seed(0))
    logits, _ = model(idx)
    assert torch.allclose(model.hidden_states(idx) @ model.output_weight().T, logits, atol=1e-6)


def test_pooling_reads_the_last_real_token_and_ignores_padding(tokenizer):
    classifier = tiny_classifier(tokenizer)
    pad = classifier.pad_id
    row = torch.tensor(tokenizer.encode("Maya was very sad."))
    n = len(row)
    idx = torch.full((2, n + 4), pad)
    idx[0, :n] = row
    idx[1, : n - 1] = row[:-1]
    with torch.no_grad():
        logits, _ = classifier(idx)
        alone, _ = classifier(row[None])
        assert torch.allclose(logits[0], alone[0], atol=1e-6)  # padding on the right changes nothing
        changed = idx.clone()
        changed[1, n - 1] = row[-1]  # a padding position becomes real: row 1 now reads it
        assert torch.allclose(classifier(changed)[0][1], alone[0], atol=1e-6)
        other = idx.clone()
        other[0, n - 1] = (row[-1] + 1) % tokenizer.vocab_size  # the last real token changes: the logits do
        assert not torch.allclose(classifier(other)[0][0], logits[0])
        earlier = idx.clone()
        earlier[0, 0] = (row[0] + 1) % tokenizer.vocab_size  # so do earlier tokens: the last one has seen them
        assert not torch.allclose(classifier(earlier)[0][0], logits[0])


def test_padding_on_the_left_or_rows_of_padding_only_are_refused(tokenizer):
    classifier = tiny_classifier(tokenizer)
    pad = classifier.pad_id
    with pytest.raises(ValueError, match="padding must be on the right"):
        classifier(torch.tensor([[pad, 5, 6]]))
    with pytest.raises(ValueError, match="row 1 holds only padding"):
        classifier(torch.tensor([[5, 6, pad], [pad, pad, pad]]))


# --- training -----------------------------------------------------------------------------------


def test_probe_trains_only_the_head_and_leaves_the_base_as_it_was(tokenizer, task):
    classifier = tiny_classifier(tokenizer)
    before = {name: p.clone() for name, p in classifier.base.state_dict().items()}
    head = classifier.head.weight.clone()
    finetune(classifier, encode_examples(tokenizer, task["train"], 64), ClassifierConfig("probe", steps=5, lr=1e-2))
    assert all(torch.equal(before[name], p) for name, p in classifier.base.state_dict().items())
    assert not torch.equal(head, classifier.head.weight)
    assert trainable_parameters(classifier) == 32 * len(LABELS) + len(LABELS)


def test_last_block_trains_the_last_block_norm_and_head(tokenizer):
    classifier = tiny_classifier(tokenizer)
    METHODS["last_block"](classifier)
    names = [name for name, p in classifier.named_parameters() if p.requires_grad]
    assert {name.split(".")[2] if name.startswith("base") else "head" for name in names} == {"h", "ln_f", "head"}
    assert all(name.startswith(("base.transformer.h.1.", "base.transformer.ln_f.", "head.")) for name in names)
    METHODS["full"](classifier)
    assert trainable_parameters(classifier) == sum(p.numel() for p in classifier.parameters())


def test_full_finetuning_learns_an_order_task_a_bag_of_words_cannot(tokenizer):
    """A tiny model from scratch learns which of two words comes first: the loss falls, accuracy beats chance."""
    rng = random.Random(0)
    pairs = [("cat", "dog"), ("boat", "kite"), ("red", "blue"), ("sun", "rain")]
    examples = []
    for _ in range(200):
        a, b = rng.choice(pairs)
        examples += [Example(f"The {a} and the {b}.", "written"), Example(f"The {b} and the {a}.", "swapped")]
    data = encode_examples(tokenizer, examples, context=32)
    classifier = tiny_classifier(tokenizer)
    losses = finetune(classifier, data, ClassifierConfig("full", steps=60, batch_size=16, lr=3e-3))
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    assert accuracy(classifier, data) > 0.9


def test_training_is_seeded(tokenizer, task):
    data = encode_examples(tokenizer, task["train"], 64)
    runs = [finetune(tiny_classifier(tokenizer), data, ClassifierConfig("full", steps=3)) for _ in range(2)]
    assert runs[0] == runs[1]


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_refused_clearly(tokenizer):
    with pytest.raises(ValueError, match="example 1 has an empty text"):
        encode_examples(tokenizer, [Example("Maya was sad.", "written"), Example("", "written")], 32)
    with pytest.raises(ValueError, match=r"longer than the model's context of 8"):
        encode_examples(tokenizer, [Example("Maya was very sad and she looked under every bench.", "written")], 8)
    with pytest.raises(ValueError, match=r"label 'spam', which is not one of \('swapped', 'written'\)"):
        encode_examples(tokenizer, [Example("Maya was sad.", "spam")], 32)
    with pytest.raises(ValueError, match="no examples"):
        encode_examples(tokenizer, [], 32)
    with pytest.raises(ValueError, match="unknown method 'adapters'"):
        finetune(tiny_classifier(tokenizer), encode_examples(tokenizer, [Example("Maya was sad.", "written")], 32),
                 ClassifierConfig("adapters"))  # fmt: skip
    with pytest.raises(ValueError, match="at least 2 classes"):
        Classifier(tiny_classifier(tokenizer).base, 1, 0)


def test_lora_trains_the_adapters_and_the_head_only(tokenizer):
    classifier = tiny_classifier(tokenizer)
    before = {k: v.clone() for k, v in classifier.base.state_dict().items()}
    data = encode_examples(tokenizer, [Example("Maya was sad.", "written"), Example("Maya sad was.", "swapped")], 32)
    finetune(classifier, data, ClassifierConfig("lora", steps=3, batch_size=2, lr=1e-2))
    trained = {name for name, p in classifier.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in name or name.startswith("head.") for name in trained)
    after = {k.replace(".base.", "."): v for k, v in classifier.base.state_dict().items() if "lora_" not in k}
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the base's own weights never move
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in classifier.named_parameters() if "lora_B" in n)
