"""Checkers for the exercises of notebook 06 (fine-tuning): exact-match scoring, the loss mask of a
conversation, a LoRA layer with its merge, and the classifier's pooling of the last real token.

Each checker draws fresh inputs (from a new seed every run, named in a failure), runs the learner's
code and the package's own, and passes or fails on the first input where they differ. The inputs
are made to land where a first attempt usually goes wrong: answers that differ only by case,
punctuation, articles or spacing, and answers that differ by a word ("to park" is not "park");
conversations with a system message and several assistant turns; a LoRA layer checked after training
(B no longer zero) and after its merge (the change must not be added twice); batches where some rows
are padded and one is not.
"""

from __future__ import annotations

import functools
import random
import string

import torch
from torch import nn

from minilm.exercises import _short, call_learner, checker, failure, passed, torch_generator
from minilm.model.gpt import IGNORE_INDEX

# --- Exercise 1: exact match, SQuAD style ------------------------------------------------------------------

_PUNCTUATION = ".,!?;:'\"-"


def _answer_phrases(rng: random.Random) -> list[str]:
    """Answers as the story world gives them: jobs with their article, places, names, lists of names, feelings."""
    from minilm.world import ALL_NAMES, JOBS, with_article

    names = rng.sample(list(ALL_NAMES), 3)
    return [with_article(rng.choice(list(JOBS))), "to the " + rng.choice(["park", "forest", "beach", "market", "theatre"]),
            names[0], f"{names[0]}, {names[1]}", f"{names[0]} and {names[2]}", rng.choice(["happy", "sad", "scared"]),
            "yes", "no", str(rng.randint(2, 9)), "an apple and the ball", "another day at the theatre"]


def _dress(answer: str, rng: random.Random) -> str:
    """The same answer as a model might write it: other case, punctuation, an article, extra spaces."""
    words = answer.split()
    if rng.random() < 0.4:
        words.insert(0, rng.choice(["the", "The", "a", "A", "an", "An"]))
    text = " ".join(w.upper() if rng.random() < 0.2 else w.capitalize() if rng.random() < 0.3 else w for w in words)
    if rng.random() < 0.5:
        text += rng.choice([".", "!", "?", "...", ".\n"])
    if rng.random() < 0.3:
        text = rng.choice(['"', "'", "“"]) + text + rng.choice(['"', "'", "”"])
    if rng.random() < 0.3:
        text = text.replace(" ", rng.choice(["  ", " \t", "\n"]))
    if rng.random() < 0.3:
        text = rng.choice([" ", "  ", "\n"]) + text + rng.choice([" ", "\n", ""])
    return text


def _change(answer: str, rng: random.Random) -> str:
    """A different answer that looks close: a word added, dropped or changed, or an article inside a word."""
    words = answer.split()
    kind = rng.randrange(4)
    if kind == 0:
        words.append(rng.choice(["today", "too", "there"]))
    elif kind == 1 and len(words) > 1:
        words.pop(rng.choice([i for i, w in enumerate(words) if w.lower() not in ("a", "an", "the")] or [0]))
    elif kind == 2:
        words[-1] = words[-1] + rng.choice(["s", "er"])
    else:
        words = ["the" + words[0].lower(), *words[1:]]  # "thecook": an article glued to a word is not an article
    return _dress(" ".join(words), rng)


def _exact_match_cases(rng: random.Random):
    for _ in range(20):
        phrases = _answer_phrases(rng)
        answer = rng.choice(phrases)
        answers = [answer] + ([rng.choice(phrases)] if rng.random() < 0.4 else [])
        rng.shuffle(answers)
        for _ in range(3):
            prediction = _dress(answer, rng) if rng.random() < 0.55 else _change(answer, rng)
            yield prediction, list(answers)
    yield "", ["a cook"]
    yield "the", ["a"]  # both normalise to nothing: equal
    yield "A   cook!", ("a cook",)


@checker
def check_exact_match(exact_match, rng: random.Random) -> None:
    """Exercise 1: exact match after SQuAD's normalisation, against any of the answers."""
    from minilm.finetune.tasks import exact_match as reference

    title = "Exercise 1 (exact match, SQuAD style)"
    hint = ("normalise both sides the same way: lowercase, remove every punctuation character (string.punctuation and "
            "the curly quotes ’‘“”), drop the words a, an, the (whole words only), and join the remaining words with one "
            "space; then compare for equality with each answer and return True if any matches")
    count = 0
    for prediction, answers in _exact_match_cases(rng):
        got = call_learner(title, exact_match, prediction, list(answers))
        want = reference(prediction, answers)
        if not isinstance(got, (bool, int)) or bool(got) != want:
            raise failure(title, f"expected {want}, got {_short(got)}",
                          f"prediction={prediction!r}, answers={list(answers)!r}", hint)
        count += 1
    passed(title, f"{count} predictions")


# --- Exercise 2: the loss mask of a conversation ----------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _tokenizer():
    """A small tokenizer trained on a few stories of the world (with the chat's special tokens)."""
    from minilm.tokenizer.tokenizer import Tokenizer
    from minilm.world import split_stories

    return Tokenizer.train([text for text, _ in split_stories("sft_val", 30)], 400)


def _conversations(rng: random.Random):
    """Conversations of the stage's families, and longer ones of several turns with and without a system message."""
    from minilm.finetune.tasks import build_examples

    examples = build_examples("sft_val", 2, seed=rng.randrange(10**6))
    conversations = [e.messages for e in examples]
    sentences = [s for e in examples for m in e.messages for s in m["content"].split("\n") if s.strip()]
    for _ in range(6):
        turns = []
        if rng.random() < 0.5:
            turns.append({"role": "system", "content": rng.choice(["Answer yes or no.", "Be brief.", "You are kind."])})
        for _ in range(rng.randint(1, 4)):
            turns.append({"role": "user", "content": rng.choice(sentences)})
            turns.append({"role": "assistant", "content": rng.choice(sentences)})
        conversations.append(turns)
    rng.shuffle(conversations)
    return conversations


def _chat_targets(tokenizer, messages) -> tuple[list[int], list[int]]:
    from minilm.finetune.chat import encode_chat

    ids, trained = encode_chat(tokenizer, messages)
    targets = [ids[t + 1] if trained[t + 1] else IGNORE_INDEX for t in range(len(ids) - 1)] + [IGNORE_INDEX]
    return ids, targets


def _conversation_shown(messages) -> str:
    return " ".join(f"{m['role']}: {m['content'][:40]!r}" for m in messages)


@checker
def check_chat_targets(chat_targets, rng: random.Random) -> None:
    """Exercise 2: the ids of a conversation in the chat format and its targets, -100 where nothing is trained."""
    title = "Exercise 2 (the loss mask of a conversation)"
    hint = ("ids: <|endoftext|>, then for each message its role token, tokenizer.encode_ordinary(content), <|end|>; "
            "a token is trained when it is an assistant's content or the <|end|> closing an assistant's turn (every "
            "assistant turn, not only the last); targets[t] = ids[t + 1] if token t + 1 is trained, else -100, and the "
            "last position has no next token (-100)")
    tokenizer = _tokenizer()
    count = 0
    for messages in _conversations(rng):
        shown = _conversation_shown(messages)
        got = call_learner(title, chat_targets, tokenizer, [dict(m) for m in messages])
        ids, targets = _chat_targets(tokenizer, messages)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise failure(title, f"return a pair (ids, targets), got {_short(got)}", shown, hint)
        got_ids, got_targets = ([int(i) for i in part] for part in got)
        if got_ids != ids:
            first = next((t for t, (a, b) in enumerate(zip(got_ids, ids)) if a != b), min(len(got_ids), len(ids)))
            raise failure(title, f"the ids differ from position {first} (expected {len(ids)} ids, got {len(got_ids)}): "
                          f"expected {ids[first:first + 6]}..., got {got_ids[first:first + 6]}...", shown, hint)
        if got_targets != targets:
            t = next((t for t, (a, b) in enumerate(zip(got_targets, targets)) if a != b), min(len(got_targets), len(targets)))
            if len(got_targets) != len(targets):
                problem = f"expected {len(targets)} targets (one per id), got {len(got_targets)}"
            else:
                token = tokenizer.decode([ids[t + 1]]) if t + 1 < len(ids) else "(none: the last position)"
                problem = (f"targets[{t}] should be {targets[t]}, got {got_targets[t]}: the next token, {token!r}, "
                           f"{'is' if targets[t] != IGNORE_INDEX else 'is not'} trained")
            raise failure(title, problem, shown, hint)
        count += 1
    passed(title, f"{count} conversations")


# --- Exercise 3: a LoRA layer and its merge ----------------------------------------------------------------


def _lora_cases(rng: random.Random):
    generator = torch_generator(rng)
    for _ in range(6):
        n_in, n_out = rng.choice([8, 16, 24, 48]), rng.choice([8, 12, 32, 64])
        rank, alpha = rng.choice([1, 2, 4, 8]), rng.choice([1.0, 4.0, 16.0, 32.0])
        rank = min(rank, n_in, n_out)
        base = nn.Linear(n_in, n_out, bias=rng.random() < 0.7)
        with torch.no_grad():
            for p in base.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
        x = torch.randn(rng.randint(1, 3), rng.randint(1, 5), n_in, generator=generator)
        yield base, rank, alpha, x, generator


@checker
def check_lora(LoRA, rng: random.Random) -> None:
    """Exercise 3: a LoRA layer equal to `minilm.finetune.lora.LoRALinear`: forward, trainable parameters, merge."""
    import copy

    from minilm.finetune.lora import LoRALinear

    title = "Exercise 3 (a LoRA layer and its merge)"
    hint = ("A (rank, in) random and B (out, rank) zeros are the only parameters that learn (freeze the base: "
            "base.requires_grad_(False)); forward = base(x) + (alpha / rank) * x A^T B^T; merge() adds "
            "(alpha / rank) * B @ A to base.weight in place, once, and from then on forward is base(x) alone")
    count = 0
    for base, rank, alpha, x, generator in _lora_cases(rng):
        shown = f"nn.Linear({base.in_features}, {base.out_features}, bias={base.bias is not None}), rank={rank}, alpha={alpha}, x {tuple(x.shape)}"
        original = copy.deepcopy(base)
        with torch.random.fork_rng(devices=[]):  # A is drawn from PyTorch's generator: set from the seed, then restored
            torch.set_rng_state(torch_generator(rng).get_state())
            layer = call_learner(title, LoRA, base, rank, alpha)
        for name, shape in (("lora_A", (rank, base.in_features)), ("lora_B", (base.out_features, rank))):
            value = getattr(layer, name, None)
            if not isinstance(value, nn.Parameter) or tuple(value.shape) != shape:
                raise failure(title, f"layer.{name} must be an nn.Parameter of shape {shape}, got "
                              f"{_short(getattr(value, 'shape', value))}", shown, hint)
        trained = {id(p) for p in layer.parameters() if p.requires_grad}
        if trained != {id(layer.lora_A), id(layer.lora_B)}:
            extra = sum(p.numel() for p in layer.parameters() if p.requires_grad) - layer.lora_A.numel() - layer.lora_B.numel()
            raise failure(title, f"only lora_A and lora_B may require gradients; {extra:+,} trainable weights besides "
                          "them (is the base frozen? are A and B registered as parameters?)", shown, hint)
        with torch.no_grad():
            start = layer(x)
        if not torch.allclose(start, original(x), rtol=1e-5, atol=1e-6):
            raise failure(title, "before training the layer must compute exactly what the base layer computes "
                          "(B starts at zero, so B A = 0)", shown, hint)
        if layer.lora_A.abs().sum() == 0:
            raise failure(title, "lora_A is all zeros: then B receives no gradient and LoRA never learns; draw A at "
                          "random (B starts at zero)", shown, hint)
        reference = LoRALinear(copy.deepcopy(original), rank, alpha)
        with torch.no_grad():  # as after some training: B is no longer zero
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.3)
            reference.lora_A.copy_(layer.lora_A)
            reference.lora_B.copy_(layer.lora_B)
        got, want = layer(x), reference(x)
        if not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
            factor = ((got - original(x)).norm() / (want - original(x)).norm()).item()
            raise failure(title, f"after training (B not zero) the output differs from LoRALinear's: your change is "
                          f"{factor:.4g} times the expected one", shown, hint)
        if not got.requires_grad:
            raise failure(title, "the output does not require gradients: compute it from lora_A and lora_B with torch "
                          "operations (no torch.no_grad(), no .detach())", shown, hint)
        got.sum().backward()
        if layer.lora_A.grad is None or layer.lora_B.grad is None or layer.lora_B.grad.abs().sum() == 0:
            raise failure(title, "lora_A and lora_B must receive gradients from the output", shown, hint)
        call_learner(title, layer.merge)
        reference.merge()
        weight = getattr(getattr(layer, "base", None), "weight", None)
        if weight is None or not torch.allclose(weight, reference.base.weight, rtol=1e-5, atol=1e-6):
            raise failure(title, "after merge(), layer.base.weight must be W + (alpha / rank) * B @ A", shown, hint)
        with torch.no_grad():
            merged = layer(x)
        # W + s B A rounds differently from W x + s (x A^T) B^T: about 1e-6 of the output's size at alpha / rank = 32
        if not torch.allclose(merged, want, rtol=1e-5, atol=1e-5 * want.detach().abs().max().item()):
            raise failure(title, "after merge() the output changed: the change B A is now inside base.weight, so forward "
                          "must not add it a second time", shown, hint)
        count += 1
    passed(title, f"{count} layers")


# --- Exercise 4: the classifier's pooling of the last real token ------------------------------------------


def _pooling_cases(rng: random.Random):
    generator = torch_generator(rng)
    for _ in range(8):
        batch, length, width = rng.randint(1, 6), rng.randint(1, 12), rng.choice([3, 8, 16])
        pad_id = rng.randrange(50)
        lengths = [rng.randint(1, length) for _ in range(batch)]
        lengths[rng.randrange(batch)] = length  # one row without padding
        ids = torch.full((batch, length), pad_id)
        for row, n in enumerate(lengths):
            real = torch.randint(50, (n,), generator=generator)
            real[real == pad_id] = (pad_id + 1) % 50
            ids[row, :n] = real
        hidden = torch.randn(batch, length, width, generator=generator)
        yield hidden, ids, pad_id, lengths


@checker
def check_last_token_pooling(pool_last, rng: random.Random) -> None:
    """Exercise 4: each row's hidden state at its last real token, under right padding."""
    title = "Exercise 4 (pooling the last real token)"
    hint = ("the real tokens come first: a row's length is the number of ids that are not pad_id, and its last real "
            "token is at position length - 1; pick hidden[row, length - 1] for every row (torch.arange(B) for the rows)")
    count = 0
    for hidden, ids, pad_id, lengths in _pooling_cases(rng):
        shown = f"hidden {tuple(hidden.shape)}, ids {ids.tolist()}, pad_id={pad_id}"
        got = call_learner(title, pool_last, hidden.clone(), ids.clone(), pad_id)
        want = hidden[torch.arange(len(lengths)), torch.tensor(lengths) - 1]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
            raise failure(title, f"return a tensor of shape {tuple(want.shape)} (one state per row), got "
                          f"{_short(getattr(got, 'shape', got))}", shown, hint)
        for row in range(len(lengths)):
            if not torch.equal(got[row], want[row]):
                position = [t for t in range(hidden.size(1)) if torch.equal(hidden[row, t], got[row])]
                where = f"the state at position {position[0]}" if position else "a state of no single position"
                raise failure(title, f"row {row} (length {lengths[row]}): expected the state at position "
                              f"{lengths[row] - 1}, got {where}", shown, hint)
        count += 1
    passed(title, f"{count} batches")
