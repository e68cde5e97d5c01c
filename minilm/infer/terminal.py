"""The chat model in a terminal: ``python -m minilm chat``.

A loop: read a line, add it to the conversation, render the conversation in the chat format of stage 6,
let the engine write the answer token by token (each piece shown as it comes), add the answer, repeat.
The model remembers nothing between calls: it sees the whole conversation every turn, which is how every
chat model "remembers". So a long conversation outgrows the context, and the oldest exchanges (a question
and its answer) are dropped to make room for the newest, with a note that says so, as chat front ends do.

``/reset`` starts a new conversation, ``/quit`` (or Ctrl-D) ends; Ctrl-C stops an answer being written, and
at the prompt ends the chat. `chat_loop` takes its input and output as functions (`input`, and one that
writes text), so a test can script a whole conversation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from minilm.finetune.chat import ChatFormatError, Message, encode_chat
from minilm.infer.engine import Engine
from minilm.infer.models import end_tokens
from minilm.infer.sampling import SamplingParams
from minilm.model.gpt import GPT
from minilm.tokenizer.tokenizer import Tokenizer

HELP = "/reset starts a new conversation, /quit (or Ctrl-D) ends"
SHORTEST_PROMPT = 5  # <|endoftext|><|user|>, one token, <|end|><|assistant|>: the least a question takes


def fit_conversation(tokenizer: Tokenizer, messages: list[Message], limit: int) -> tuple[list[int], int]:
    """The ids of `messages` (ending with the user's turn) with the oldest exchanges dropped until they are at
    most `limit` tokens, and how many exchanges were dropped. ChatFormatError when the last question alone is
    too long, or is not a message the chat format can hold."""
    dropped = 0
    while True:
        ids, _ = encode_chat(tokenizer, messages[2 * dropped:], add_generation_prompt=True)
        if len(ids) <= limit:
            return ids, dropped
        if len(messages) - 2 * dropped == 1:
            raise ChatFormatError(f"that message takes {len(ids)} tokens, and {limit} fit beside the room kept for "
                                  "the answer: write a shorter one (or start with a smaller --max-tokens)")
        dropped += 1


def write_answer(engine: Engine, prompt_ids: list[int], params: SamplingParams,
                 write: Callable[[str], object]) -> tuple[str, str]:
    """Generate the answer, writing each piece of text as the engine releases it; returns (text, finish reason).
    Ctrl-C cancels the request (and is raised again once the engine is empty)."""
    request, pieces, reason = engine.add(prompt_ids, params), [], None
    try:
        while reason is None and engine.has_work:
            for event in engine.step():
                write(event.text)
                pieces.append(event.text)
                reason = event.finish_reason
    except KeyboardInterrupt:
        engine.cancel(request)
        while engine.has_work:
            engine.step()
        raise
    return "".join(pieces), reason


def chat_loop(model: GPT, tokenizer: Tokenizer, read: Callable[[str], str] = input,
              write: Callable[[str], object] = sys.stdout.write, *, temperature: float = 0.7, max_tokens: int = 64,
              seed: int | None = None) -> list[Message]:
    """Chat until /quit, end of input or Ctrl-C at the prompt; returns the conversation as it stood at the end.

    `read(prompt)` returns the next line (raising EOFError at the end, as `input` does); `write(text)` shows
    text without adding a newline. `max_tokens` is the longest answer; the conversation keeps the rest of the
    context.
    """
    context = model.config.context
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= context - SHORTEST_PROMPT:
        raise ValueError(f"max_tokens={max_tokens!r} must be between 1 and {context - SHORTEST_PROMPT}: the model's "
                         f"context of {context} tokens holds the question and the answer together")
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    engine = Engine(model, tokenizer, max_batch_size=1, end_tokens=end_tokens(tokenizer))
    conversation: list[Message] = []
    write(f"({HELP})\n")
    while True:
        try:
            line = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return conversation
        if not line:
            continue
        if line == "/quit":
            return conversation
        if line == "/reset":
            conversation = []
            write("(a new conversation)\n")
            continue
        if line.startswith("/"):
            write(f"(unknown command {line.split()[0]}: {HELP})\n")
            continue
        asked = conversation + [{"role": "user", "content": line}]
        try:
            prompt_ids, dropped = fit_conversation(tokenizer, asked, context - max_tokens)
        except ChatFormatError as error:
            write(f"({error})\n")
            continue
        if dropped:
            write(f"(dropped the oldest {dropped} exchange{'s' if dropped > 1 else ''} to fit the model's context of "
                  f"{context} tokens)\n")
            asked = asked[2 * dropped:]
        write("model> ")
        try:
            answer, reason = write_answer(engine, prompt_ids, params, write)
        except KeyboardInterrupt:
            write("\n(stopped; the question is left out of the conversation)\n")
            continue
        write("\n")
        if reason == "length":
            write(f"(the answer reached max_tokens={max_tokens})\n")
        if not answer.strip():
            write("(the model wrote no answer; the question is left out of the conversation)\n")
            conversation = asked[:-1]
            continue
        conversation = asked + [{"role": "assistant", "content": answer}]


def run_chat(preset: str | None = None, checkpoint: str | None = None, temperature: float = 0.7,
             max_tokens: int = 64, device: str | None = None) -> str:
    """`python -m minilm chat`: the best chat model of the cache, in this terminal. Returns a closing line."""
    from minilm import hardware
    from minilm.infer.models import chat_model

    try:
        import readline  # noqa: F401  (line editing and history for `input`, where the platform has it)
    except ImportError:
        pass
    model, tokenizer, which = chat_model(preset, checkpoint, hardware.pick_device(device))
    print(f"chatting with {which}", flush=True)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    chat_loop(model, tokenizer, input, write, temperature=temperature, max_tokens=max_tokens)
    return "chat ended"
