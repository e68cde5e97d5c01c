"""Stage 6 data: the story splits, the chat format and its mask, the instruction tasks, contamination, SFTData."""

from __future__ import annotations

import numpy as np
import pytest

from minilm.data.sources.stories.writer import iter_stories
from minilm.data.truth.defects import TOXIC_TEMPLATES
from minilm.finetune.chat import ChatFormatError, SFTData, encode_chat, fingerprint, render_chat
from minilm.finetune.stage import FinetuneConfig
from minilm.finetune.tasks import (
    FAMILIES, REFUSAL, build_examples, contamination, conversation_text, cue, decontaminate, evidence, exact_match,
    normalize_answer, swap_gender, training_texts, unique_prompts,
)  # fmt: skip
from minilm.tokenizer.shards import tokenizer_fingerprint
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.world import STORY_SPLITS, split_stories

CONTEXT = 128


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    texts = [text for text, _ in split_stories("sft_val", 40)]
    return Tokenizer.train(texts, 400)


def chat(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in turns]


# --- the template ------------------------------------------------------------------------------


def test_render_chat_exact_format():
    messages = chat(("system", "Answer yes or no."), ("user", "Is it sunny?"), ("assistant", "yes"))
    assert render_chat(messages) == (
        "<|endoftext|><|system|>Answer yes or no.<|end|><|user|>Is it sunny?<|end|><|assistant|>yes<|end|>"
    )
    assert render_chat(messages[:2], add_generation_prompt=True) == (
        "<|endoftext|><|system|>Answer yes or no.<|end|><|user|>Is it sunny?<|end|><|assistant|>"
    )


def test_encode_chat_is_the_rendered_text(tokenizer):
    messages = chat(("user", "Hi there"), ("assistant", "Hello, Mia."), ("user", "Bye"), ("assistant", "Bye!"))
    ids, trained = encode_chat(tokenizer, messages)
    assert ids == tokenizer.encode(render_chat(messages), allowed_special="all")
    assert len(trained) == len(ids)
    prompt, _ = encode_chat(tokenizer, messages[:3], add_generation_prompt=True)
    assert prompt == tokenizer.encode(render_chat(messages[:3], add_generation_prompt=True), allowed_special="all")


def test_mask_single_turn_token_by_token(tokenizer):
    sp = tokenizer.special_id
    question, answer = tokenizer.encode("Who?"), tokenizer.encode("Mia")
    ids, trained = encode_chat(tokenizer, chat(("user", "Who?"), ("assistant", "Mia")))
    assert ids == [sp("<|endoftext|>"), sp("<|user|>"), *question, sp("<|end|>"), sp("<|assistant|>"), *answer, sp("<|end|>")]
    assert trained == [False, False] + [False] * len(question) + [False, False] + [True] * len(answer) + [True]


def test_mask_multi_turn_with_system(tokenizer):
    messages = chat(("system", "Be brief."), ("user", "A?"), ("assistant", "b"), ("user", "C?"), ("assistant", "d e"))
    ids, trained = encode_chat(tokenizer, messages)
    trained_text = tokenizer.decode([i for i, t in zip(ids, trained) if t])
    assert trained_text == "b<|end|>d e<|end|>"  # both answers and their ends; never a role, system or user token
    untrained = tokenizer.decode([i for i, t in zip(ids, trained) if not t])
    assert untrained == "<|endoftext|><|system|>Be brief.<|end|><|user|>A?<|end|><|assistant|><|user|>C?<|end|><|assistant|>"


@pytest.mark.parametrize(
    "messages, add_prompt, words",
    [
        (chat(("robot", "hi"), ("assistant", "x")), False, ["unknown role 'robot'"]),
        (chat(("user", "hi"), ("assistant", "  ")), False, ["empty or missing content"]),
        ([{"role": "user", "content": "hi"}, {"role": "assistant"}], False, ["exactly the keys"]),
        (chat(("user", "hi")), False, ["ends with a user turn", "add_generation_prompt=True"]),
        (chat(("user", "hi"), ("assistant", "x")), True, ["end with the user's turn"]),
        (chat(("user", "a <|end|> b"), ("assistant", "x")), False, ["special-token text '<|end|>'", "remove"]),
        (chat(("user", "hi"), ("assistant", "<|endoftext|>")), False, ["'<|endoftext|>'"]),
        (chat(("user", "hi"), ("user", "again"), ("assistant", "x")), False, ["alternate"]),
        (chat(("user", "hi"), ("system", "late"), ("assistant", "x")), False, ["only the first message"]),
        ([], False, ["non-empty list"]),
    ],
)
def test_bad_conversations_raise_a_clear_error(tokenizer, messages, add_prompt, words):
    for call in (lambda: render_chat(messages, add_prompt), lambda: encode_chat(tokenizer, messages, add_generation_prompt=add_prompt)):
        with pytest.raises(ChatFormatError) as error:
            call()
        assert isinstance(error.value, ValueError)
        for word in words:
            assert word in str(error.value)


def test_too_long_says_by_how_much_and_never_truncates(tokenizer):
    messages = chat(("user", "word " * 50), ("assistant", "ok"))
    n = len(encode_chat(tokenizer, messages)[0])
    assert len(encode_chat(tokenizer, messages, context=n)[0]) == n
    with pytest.raises(ChatFormatError, match=rf"is {n} tokens, 3 more than the context of {n - 3}: shorten"):
        encode_chat(tokenizer, messages, context=n - 3)


# --- splits and examples -----------------------------------------------------------------------


def test_story_splits_are_disjoint_and_pretrain_is_the_data_stage():
    assert len(set(STORY_SPLITS.values())) == len(STORY_SPLITS)
    texts = {split: {text for text, _ in split_stories(split, 400 if split == "pretrain" else 100)} for split in STORY_SPLITS}
    for a in STORY_SPLITS:
        for b in STORY_SPLITS:
            if a < b:
                assert not texts[a] & texts[b], (a, b)
    assert [t for t, _ in split_stories("pretrain", 5)] == [d.text for d in iter_stories(5, 1337)]
    assert split_stories("test", 3) == split_stories("test", 5)[:3]  # a bigger split only adds stories
    with pytest.raises(ValueError, match="unknown story split 'train'"):
        split_stories("train", 1)


def test_examples_are_deterministic_per_seed_and_cover_the_families():
    a, b = build_examples("sft_train", 6, seed=3), build_examples("sft_train", 6, seed=3)
    assert [e.messages for e in a] == [e.messages for e in b] and [e.answers for e in a] == [e.answers for e in b]
    assert [e.messages for e in build_examples("sft_train", 6, seed=4)] != [e.messages for e in a]
    assert [e.family for e in a] == [f for f in FAMILIES for _ in range(6)]
    for e in a:
        render_chat(e.messages)  # valid conversations
        assert e.messages[-1]["role"] == "assistant" and exact_match(e.messages[-1]["content"], e.answers)
        if e.family == "refusal":
            assert e.answers == (REFUSAL,)


def test_scale_gives_a_family_more_examples_and_rejects_bad_scales():
    scaled = build_examples("sft_train", 4, seed=3, scale={"reading": 3})
    assert [e.family for e in scaled] == [f for f in FAMILIES for _ in range(12 if f == "reading" else 4)]
    plain = build_examples("sft_train", 4, seed=3)  # from the same 20 stories, a family's first draws are the same
    assert [e.messages for e in scaled if e.family == "reading"][:4] == [e.messages for e in plain if e.family == "reading"]
    assert [e.messages for e in scaled if e.family != "reading"] == [e.messages for e in plain if e.family != "reading"]
    with pytest.raises(ValueError, match="unknown task family 'readin'.*reading, transform"):
        build_examples("sft_train", 4, scale={"readin": 2})
    with pytest.raises(ValueError, match="scale of 'reading' must be a positive integer"):
        build_examples("sft_train", 4, scale={"reading": 0})
    with pytest.raises(ValueError, match="scale of 'refusal' must be a positive integer"):
        FinetuneConfig(train_scale={"refusal": 1.5})


def test_examples_fit_the_context(tokenizer):
    examples = build_examples("sft_train", 8, seed=0, tokenizer=tokenizer, context=CONTEXT)
    assert max(len(encode_chat(tokenizer, e.messages)[0]) for e in examples) <= CONTEXT
    reading = [e for e in examples if e.family == "reading"]
    for e in reading:  # the passage tells the answer
        assert normalize_answer(e.answers[-1]) in normalize_answer(e.messages[0]["content"])


def test_swap_gender():
    assert swap_gender("Tom lost his hat, and he cried.", "Tom", "male") == "Mia lost her hat, and she cried."
    assert swap_gender("Mia hugged her dog.", "Mia", "female") is None  # "her" is him or his: not exact
    assert swap_gender("Mia said she was fine.", "Mia", "female") == "Tom said he was fine."
    assert swap_gender("Tom and Lily ran.", "Tom", "male") is None  # another person


@pytest.mark.parametrize(
    "prediction, answers, expected",
    [
        ("A cook.", ["a cook"], True),
        ("  the   Park ", ["park"], True),
        ("Mia, Tom", ["Mia, Tom"], True),
        ("mia tom", ["Mia, Tom"], True),
        ("to the park", ["park"], False),  # "to" is a word
        ("Lily!", "lily", True),
        ("no", ["yes"], False),
        ("I'm sorry", ["Im sorry"], True),
    ],
)
def test_exact_match_normalises_like_squad(prediction, answers, expected):
    assert exact_match(prediction, answers) is expected


# --- contamination -----------------------------------------------------------------------------


def test_a_reading_passage_tells_what_the_question_asks(tokenizer):
    text = "Mia had a red ball that she loved.\n\nOne day Mia could not find her red ball.\n\nMia and Tom went home."
    assert evidence(text, "What did Mia lose?", "her red ball") == 1  # not the first paragraph, which only names it
    assert evidence(text, "Who was Mia's friend?", "Tom") is None  # going home together does not say "friend"
    assert evidence(text, "What was Mia's job?", "a cook") is None and cue("What was Mia's job?") is None
    town = "In a small town by the lake, there lived a painter called Ethan.\n\nOne day, Ethan went to the lake."
    assert evidence(town, "Where did Ethan go?", "to the lake") == 1  # living by the lake is not going there
    examples = build_examples("sft_train", 40, seed=1, tokenizer=tokenizer, context=CONTEXT)
    asked = [e for e in examples if e.kind == "qa" and cue(e.messages[0]["content"].split("Question: ")[-1])]
    assert len(asked) >= 5
    for e in asked:  # the passage, even when shortened to fit the context, holds the cue
        passage, question = e.messages[0]["content"].split("\n\nQuestion: ")
        assert cue(question).search(passage), (question, passage)


def test_unique_prompts_keeps_the_first_of_each_prompt():
    examples = build_examples("sft_train", 3, seed=0)
    twice = unique_prompts(examples + examples[:4])
    assert twice == unique_prompts(examples) and [id(e) for e in twice[:4]] == [id(e) for e in examples[:4]]


def test_contamination_finds_planted_overlap():
    test = build_examples("test", 4, seed=0)
    planted = conversation_text(test[0].prompt)
    counts = contamination(test, ["an unrelated text", f"some words before. {planted} and after"])
    assert counts[0] > 0
    assert contamination(test[:1], ["an unrelated text"]) == [0]


def test_decontaminated_test_split_shares_no_13_gram_with_training():
    train = build_examples("sft_train", 40, seed=0)
    test = build_examples("test", 20, seed=0)
    texts = training_texts(train, 400)  # the SFT conversations and the ci preset's pretraining stories
    kept, dropped = decontaminate(test, texts)
    assert len(kept) + sum(dropped.values()) == len(test) and len(kept) > 0
    assert contamination(kept, texts) == [0] * len(kept)
    # the held-out toxic lines come from templates no other split uses
    test_toxic = {e.messages[1]["content"] for e in build_examples("test", 40) if e.kind == "toxic"}
    train_toxic = {e.messages[1]["content"] for e in build_examples("sft_train", 40) if e.kind == "toxic"}
    assert test_toxic and train_toxic and not test_toxic & train_toxic
    assert set(TOXIC_TEMPLATES[3::4]).isdisjoint(TOXIC_TEMPLATES[i] for i in range(len(TOXIC_TEMPLATES)) if i % 4 != 3)


# --- SFTData -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tokenizer) -> SFTData:
    return SFTData(tokenizer, [e.messages for e in build_examples("sft_train", 6, 0, tokenizer, CONTEXT)], "sft_train")


def test_sft_data_attributes(tokenizer, data, tmp_path):
    assert data.split == "sft_train" and data.vocab_size == tokenizer.vocab_size == 400
    assert data.tokenizer_fingerprint == tokenizer_fingerprint(tokenizer.save(tmp_path)) == fingerprint(tokenizer)


def test_sft_batch_layout(tokenizer, data):
    x, y = data.batch(8, CONTEXT, np.random.default_rng(0))
    assert x.shape == y.shape == (8, CONTEXT) and x.dtype == y.dtype == np.int64
    pad = tokenizer.special_id("<|pad|>")
    for row_x, row_y in zip(x, y):
        length = int((row_x != pad).sum())
        assert (row_x[length:] == pad).all() and (row_y[length - 1 :] == -100).all()
        ids, trained = encode_chat(tokenizer, _conversation_of(tokenizer, row_x[:length]))
        assert row_x[:length].tolist() == ids
        expected = [ids[t + 1] if trained[t + 1] else -100 for t in range(length - 1)]
        assert row_y[: length - 1].tolist() == expected
    a, b = data.batch(8, CONTEXT, np.random.default_rng(1)), data.batch(8, CONTEXT, np.random.default_rng(1))
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()


def _conversation_of(tokenizer, ids) -> list[dict]:
    """Parse a row back into messages (the inverse of encode_chat, for the test)."""
    text = tokenizer.decode(ids.tolist()).removeprefix("<|endoftext|>")
    messages = []
    for turn in text.split("<|end|>")[:-1]:
        role = turn[2 : turn.index("|>")]
        messages.append({"role": role, "content": turn[turn.index("|>") + 2 :]})
    return messages


def test_sft_rank_shares_are_disjoint(data):
    rows = [{tuple(r) for r in data.batch(64, CONTEXT, np.random.default_rng(0), rank, 2)[0]} for rank in (0, 1)]
    assert rows[0] and rows[1] and not rows[0] & rows[1]
    with pytest.raises(ValueError, match="rank"):
        data.batch(2, CONTEXT, np.random.default_rng(0), rank=2, world_size=2)


def test_sft_pack_puts_several_conversations_per_row(tokenizer, data):
    packed = SFTData(tokenizer, [e.messages for e in build_examples("sft_train", 6, 0, tokenizer, CONTEXT)], "sft_train", pack=True)
    x, y = packed.batch(8, 2 * CONTEXT, np.random.default_rng(0))  # the tiny tokenizer's conversations are long
    bos, pad = tokenizer.special_id("<|endoftext|>"), tokenizer.special_id("<|pad|>")
    assert x.shape == (8, 2 * CONTEXT) and (x == bos).sum(axis=1).min() > 1
    assert (x != pad).sum() > (data.batch(8, 2 * CONTEXT, np.random.default_rng(0))[0] != pad).sum()
    starts = np.flatnonzero(x[0] == bos)
    assert (y[0][starts[1:] - 1] == -100).all()  # the token before the next conversation is not a target
    for row_x, row_y in zip(x, y):  # no target is another conversation's token, and BOS is never a target
        assert not (row_y == bos).any() and (row_y[row_x == pad] == -100).all()


def test_sft_eval_batch_and_too_long(tokenizer, data):
    x, y = data.eval_batch(CONTEXT)
    assert x.shape == (len(data), CONTEXT)
    x2, _ = data.eval_batch(CONTEXT)
    assert (x == x2).all()
    small_x, small_y = data.eval_batch(CONTEXT, max_tokens=60)
    assert 1 <= len(small_x) < len(data) and (small_y != -100).sum() <= max(60, (small_y[0] != -100).sum())
    with pytest.raises(ChatFormatError, match="longer than the context of 16"):
        data.batch(2, 16, np.random.default_rng(0))
