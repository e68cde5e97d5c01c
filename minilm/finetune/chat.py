"""The chat format: one template for training, evaluation and serving, and the data SFT trains on.

A pretrained model continues text. To make it answer, we train it on conversations written in a
fixed format, with a loss only on the assistant's words: it learns to write the assistant's turn,
not to imitate the user. The format must be exactly the same when we train, when we evaluate and
when we serve, or the model sees at test time a prompt it was never trained on; so there is one
function that renders it, `render_chat`, and one that encodes it, `encode_chat`.

**The format.** A conversation starts with ``<|endoftext|>`` (the token every pretraining document
starts with, so the model begins from the context it knows); each turn is its role token, its
content, and ``<|end|>``, with nothing in between:

    <|endoftext|><|system|>Answer yes or no.<|end|><|user|>Is this line toxic? I hate rainy Mondays.<|end|><|assistant|>no<|end|>

The roles are ``<|system|>`` (optional, first), ``<|user|>`` and ``<|assistant|>``, alternating from
the user. To ask the model for an answer, render the conversation so far and end with a generation
prompt, ``<|assistant|>`` (`add_generation_prompt=True`); the model writes the content and stops at
``<|end|>``. The role and end tokens are special tokens of the stage-2 tokenizer: text inside a
message can never produce them, and a message that contains their text is refused.

**What is trained.** `encode_chat` returns the ids and a mask: `trained[i]` is True for the
assistant's content tokens and the ``<|end|>`` that closes its turn (so the model learns to stop),
False for ``<|endoftext|>``, the role tokens and the system and user text. In a multi-turn
conversation every assistant turn is trained (TRL's `assistant_only_loss` does the same).

**Batches.** `SFTData` holds the encoded conversations of one split for the training loop:
`batch` draws conversations and returns (x, y) like `TokenShards.batch`, with y = -100 where
the next token is not trained (and on padding); `pack=True` puts several conversations in a row.
"""

from __future__ import annotations

import re
import tempfile
from typing import Sequence

import numpy as np

from minilm.model.gpt import IGNORE_INDEX
from minilm.tokenizer.shards import tokenizer_fingerprint
from minilm.tokenizer.tokenizer import SPECIAL_TOKENS, Tokenizer

BOS = "<|endoftext|>"
PAD = "<|pad|>"
END = "<|end|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}
_SPECIAL_TEXT = re.compile("|".join(re.escape(token) for token in SPECIAL_TOKENS))


class ChatFormatError(ValueError):
    """A conversation that the chat format cannot encode; the message names the problem and the fix."""


# ---------------------------------------------------------------------------------------------
# 1. Checking and rendering


def check_chat(messages: Sequence[Message], add_generation_prompt: bool = False) -> None:
    """Raise ChatFormatError unless `messages` is a conversation the format can hold.

    The rules: each message is {"role", "content"} with a known role and non-empty text without
    special-token text; an optional system message comes first; then user and assistant alternate,
    starting with the user. A conversation to train on ends with the assistant's turn; one to
    continue (`add_generation_prompt=True`) ends with the user's.
    """
    if isinstance(messages, (str, dict)) or not isinstance(messages, Sequence) or not messages:
        raise ChatFormatError(f"a conversation is a non-empty list of {{'role', 'content'}} dicts, got {messages!r:.80}")
    expected = "user"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise ChatFormatError(f"message {i} must be a dict with exactly the keys 'role' and 'content', got {message!r:.80}")
        role, content = message["role"], message["content"]
        if role not in ROLE_TOKENS:
            raise ChatFormatError(f"message {i} has the unknown role {role!r}; the roles are {list(ROLE_TOKENS)}")
        if not isinstance(content, str) or not content.strip():
            raise ChatFormatError(f"message {i} ({role}) has empty or missing content {content!r}: every turn needs text")
        if found := _SPECIAL_TEXT.search(content):
            raise ChatFormatError(
                f"message {i} ({role}) contains the special-token text {found.group()!r} at character {found.start()}: "
                "special tokens are control signals the format writes itself; remove that text from the message"
            )
        if role == "system":
            if i != 0:
                raise ChatFormatError(f"message {i} is a system message: only the first message may be the system's")
            continue
        if role != expected:
            raise ChatFormatError(
                f"message {i} is the {role}'s turn but the {expected}'s was expected: after an optional system "
                "message, user and assistant turns alternate, starting with the user"
            )
        expected = "assistant" if role == "user" else "user"
    last = messages[-1]["role"]
    if add_generation_prompt and last != "user":
        raise ChatFormatError(f"the conversation ends with a {last} turn: to ask for the assistant's answer, end with the user's turn")
    if not add_generation_prompt and last != "assistant":
        raise ChatFormatError(
            f"the conversation ends with a {last} turn, but a conversation to train on ends with the assistant's answer: "
            "add it, or pass add_generation_prompt=True to ask the model for it"
        )


def render_chat(messages: Sequence[Message], add_generation_prompt: bool = False) -> str:
    """The conversation as text in the course's chat format (see the module docstring)."""
    check_chat(messages, add_generation_prompt)
    text = BOS + "".join(ROLE_TOKENS[m["role"]] + m["content"] + END for m in messages)
    return text + ROLE_TOKENS["assistant"] if add_generation_prompt else text


# ---------------------------------------------------------------------------------------------
# 2. Encoding


def encode_chat(
    tokenizer: Tokenizer, messages: Sequence[Message], context: int | None = None, add_generation_prompt: bool = False
) -> tuple[list[int], list[bool]]:
    """The ids of `render_chat(messages, add_generation_prompt)` and which of them are trained targets.

    Each content is encoded on its own, as ordinary text, between its special tokens: the ids are
    those of the rendered text encoded with every special token allowed. With `context`, a
    conversation of more tokens raises ChatFormatError (nothing is truncated silently).
    """
    check_chat(messages, add_generation_prompt)
    ids, trained = [tokenizer.special_id(BOS)], [False]
    end = tokenizer.special_id(END)
    for message in messages:
        content = tokenizer.encode_ordinary(message["content"])
        is_answer = message["role"] == "assistant"
        ids += [tokenizer.special_id(ROLE_TOKENS[message["role"]]), *content, end]
        trained += [False] + [is_answer] * (len(content) + 1)
    if add_generation_prompt:
        ids.append(tokenizer.special_id(ROLE_TOKENS["assistant"]))
        trained.append(False)
    if context is not None and len(ids) > context:
        raise ChatFormatError(
            f"the conversation is {len(ids)} tokens, {len(ids) - context} more than the context of {context}: "
            "shorten its messages (a shorter passage, fewer turns) or use a model with a longer context"
        )
    return ids, trained


def fingerprint(tokenizer: Tokenizer) -> str:
    """The tokenizer's fingerprint as the token shards record it (`shards.tokenizer_fingerprint` of its saved files)."""
    with tempfile.TemporaryDirectory() as folder:
        return tokenizer_fingerprint(tokenizer.save(folder))


# ---------------------------------------------------------------------------------------------
# 3. Batches for the training loop


class SFTData:
    """The encoded conversations of one split, in batches for the training loop.

    `batch` returns (x, y) as `TokenShards.batch` does: int64 arrays (n, context), y[t] the target
    for position t. Here y[t] = x[t+1] only where that token is trained (`encode_chat`'s mask), and
    -100 (`IGNORE_INDEX`, which the model's loss skips) elsewhere; rows are right-padded with
    ``<|pad|>``. A conversation fits in a row when it has at most `context` tokens.

    `pack=False`: one conversation per row. `pack=True`: conversations are laid end to end in a row
    while they fit (a conversation is never split), so there is less padding. Attention then
    crosses their boundaries: a later conversation can attend to the earlier ones in its row (no
    block-diagonal mask). We accept that as pretraining does for its windows across documents: each
    conversation starts with ``<|endoftext|>``, which the pretrained model already reads as "a new
    text begins", the loss of every answer is still only on its own tokens, and no target is ever
    a token of another conversation. The cost is a small mismatch with serving, where a
    conversation starts fresh; TRL's padding-free packing avoids it with per-conversation
    position ids and a varlen attention kernel, which our model does not have.
    """

    def __init__(self, tokenizer: Tokenizer, conversations: Sequence[Sequence[Message]], split: str, pack: bool = False):
        if not conversations:
            raise ValueError(f"the {split} split has no conversations to train on")
        self.split, self.pack = split, pack
        self.vocab_size: int = tokenizer.vocab_size
        self.tokenizer_fingerprint: str = fingerprint(tokenizer)
        self.pad_id = tokenizer.special_id(PAD)
        encoded = [encode_chat(tokenizer, messages) for messages in conversations]
        self.ids = [np.array(ids, dtype=np.int64) for ids, _ in encoded]
        # targets[i][t] = ids[t + 1] where that token is trained, else -100: the y of a row holding conversation i
        self.targets = [np.where(mask[1:], ids[1:], IGNORE_INDEX).astype(np.int64) for ids, mask in encoded]
        self.lengths = np.array([len(ids) for ids in self.ids])

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"SFTData({self.split!r}, conversations={len(self)}, tokens={int(self.lengths.sum()):,}, pack={self.pack})"

    def _check_fits(self, context: int) -> None:
        if context < 2:
            raise ValueError(f"context must be >= 2, got {context}")
        too_long = np.flatnonzero(self.lengths > context)
        if len(too_long):
            longest = int(self.lengths.max())
            raise ChatFormatError(
                f"{len(too_long)} of the {len(self)} {self.split} conversations are longer than the context of {context} "
                f"(conversation {too_long[0]} and others; the longest is {longest} tokens, {longest - context} too many): "
                "build the examples for this context (shorter passages) or train with a longer context"
            )

    def _rows(self, conversations: Sequence[int], n_rows: int, context: int, pack: bool) -> tuple[np.ndarray, np.ndarray]:
        """Lay out conversations in `n_rows` rows of `context` tokens, padded on the right.

        Without `pack`, conversation k fills row k. With `pack`, each row takes the first waiting
        conversation, then every later waiting one that still fits (first fit, in drawn order).
        """
        x = np.full((n_rows, context), self.pad_id, dtype=np.int64)
        y = np.full_like(x, IGNORE_INDEX)
        waiting = list(conversations)
        for row in range(n_rows):
            used, taken = 0, []
            for k, i in enumerate(waiting):
                length = int(self.lengths[i])
                if used + length <= context:
                    x[row, used : used + length] = self.ids[i]
                    y[row, used : used + length - 1] = self.targets[i]
                    used += length
                    taken.append(k)
                if not pack or context - used < self.lengths.min():
                    break
            waiting = [i for k, i in enumerate(waiting) if k not in set(taken)]
        return x, y

    def batch(
        self, n: int, context: int, generator: np.random.Generator, rank: int = 0, world_size: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """`n` rows of conversations drawn with `generator` from this rank's share: (x, y), int64 (n, context).

        The conversations are cut into `world_size` contiguous, nearly equal shares, as
        `TokenShards.part` cuts the token stream, so no two ranks train on the same conversation.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1 and world_size >= 1, got rank={rank}, world_size={world_size}")
        self._check_fits(context)
        start, stop = rank * len(self) // world_size, (rank + 1) * len(self) // world_size
        if stop == start:
            raise ValueError(f"the {self.split} split has {len(self)} conversations: none for rank {rank} of {world_size}")
        if not self.pack:
            return self._rows(generator.integers(start, stop, size=n).tolist(), n, context, pack=False)
        # Packed: enough draws to fill n rows even with the shortest conversations (the rest are not used).
        per_row = context // int(self.lengths[start:stop].min()) + 1
        draws = generator.integers(start, stop, size=n * per_row).tolist()
        return self._rows(draws, n, context, pack=True)

    def eval_batch(self, context: int, max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every conversation of the split once, one per row, in order: (x, y) for the validation loss.

        With `max_tokens`, evenly spaced conversations whose trained targets add up to at most
        `max_tokens` (at least one conversation). Deterministic: the same rows on every call.
        """
        self._check_fits(context)
        chosen = list(range(len(self)))
        if max_tokens is not None:
            targets = np.array([(t != IGNORE_INDEX).sum() for t in self.targets])
            keep = max(1, min(len(self), int(max_tokens // max(1.0, targets.mean()))))
            chosen = np.linspace(0, len(self) - 1, keep).round().astype(int).tolist()
            while len(chosen) > 1 and targets[chosen].sum() > max_tokens:
                chosen = chosen[:-1]
        return self._rows(chosen, len(chosen), context, pack=False)
