"""Asking a model and scoring its answers: what stage 6 measures, and stage 8 reuses.

A chat model answers in the course's chat format (`minilm.finetune.chat`): the prompt is the
conversation rendered up to ``<|assistant|>``, and the answer is what the model writes until it
writes ``<|end|>``. A base model has never seen those special tokens (pretraining has none of them,
so their embeddings are still random), so it is asked the way one asks any base model: a few
solved examples as plain text, then the question, and the answer is the text up to the next line
(`few_shot_prompt`). Both are greedy: the answer is the model's single most likely reply, so a
score is a property of the model, not of a sampling seed.

Generation is batched: prompts are sorted by length and answered `batch_size` at a time, each
batch's new tokens capped by what the context has left after its longest prompt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from minilm.finetune.chat import END, PAD, Message, encode_chat
from minilm.finetune.tasks import Example, exact_match
from minilm.model.generate import generate
from minilm.model.gpt import GPT
from minilm.tokenizer.tokenizer import Tokenizer



def generate_replies(model: GPT, prompts: Sequence[Sequence[int]], stop_token: int | None, pad_token: int,
                     max_new_tokens: int = 48, batch_size: int = 32) -> list[list[int]]:
    """Greedy continuations of `prompts` (token ids), in their order, each stopped at `stop_token`."""
    context = model.config.context
    too_long = [i for i, p in enumerate(prompts) if len(p) >= context]
    if too_long:
        raise ValueError(f"{len(too_long)} prompt(s) leave no room for an answer in the context of {context} tokens "
                         f"(prompt {too_long[0]} has {len(prompts[too_long[0]])}); shorten them")
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        room = min(max_new_tokens, context - max(len(prompts[i]) for i in rows))
        outputs = generate(model, [prompts[i] for i in rows], room, temperature=0, stop_token=stop_token,
                           pad_token=pad_token)
        for i, output in zip(rows, outputs):
            replies[i] = output
    return replies


def chat_answers(model: GPT, tokenizer: Tokenizer, conversations: Sequence[Sequence[Message]],
                 max_new_tokens: int = 48, batch_size: int = 32) -> list[str]:
    """The assistant's reply to each conversation (which ends with a user turn), in the chat format."""
    prompts = [encode_chat(tokenizer, messages, add_generation_prompt=True)[0] for messages in conversations]
    replies = generate_replies(model, prompts, tokenizer.special_id(END), tokenizer.special_id(PAD),
                               max_new_tokens, batch_size)
    return [tokenizer.decode(reply).strip() for reply in replies]


def few_shot_prompt(shots: Sequence[Example], example: Example) -> str:
    """A plain-text prompt for a base model: solved `shots`, then `example`'s question.

    Each turn is a line: "User: ..." and "Assistant: ..."; a base model continues the pattern, and its
    answer is the rest of the last line.
    """

    def lines(messages: Sequence[Message]) -> list[str]:
        return [f"{m['role'].capitalize()}: {' '.join(m['content'].split())}" for m in messages]

    blocks = ["\n".join(lines(shot.messages)) for shot in shots]
    blocks.append("\n".join(lines(example.prompt) + ["Assistant:"]))
    return "\n\n".join(blocks)


def few_shot_answers(model: GPT, tokenizer: Tokenizer, examples: Sequence[Example], shots: Sequence[Example],
                     k: int = 2, max_new_tokens: int = 24, batch_size: int = 32) -> list[str]:
    """A base model's answers: each example asked after `k` solved shots of its own kind (from `shots`,
    which should come from another split), as many as fit the context, its answer cut at the line's end."""
    by_kind: dict[str, list[Example]] = defaultdict(list)
    for shot in shots:
        by_kind[shot.kind].append(shot)
    prompts = []
    for i, example in enumerate(examples):
        pool = by_kind.get(example.kind) or list(shots)
        chosen = [pool[(i + j) % len(pool)] for j in range(min(k, len(pool)))]
        while True:  # drop shots until the prompt leaves room for an answer
            ids = tokenizer.encode(few_shot_prompt(chosen, example))
            if len(ids) + max_new_tokens <= model.config.context or not chosen:
                break
            chosen = chosen[1:]
        prompts.append(ids[-(model.config.context - 1) :])
    eot = tokenizer.special_id("<|endoftext|>")
    replies = generate_replies(model, prompts, eot, eot, max_new_tokens, batch_size)
    return [tokenizer.decode(reply).split("\n")[0].strip() for reply in replies]


def scores_by_family(examples: Sequence[Example], predictions: Sequence[str]) -> dict[str, float]:
    """Exact match (`minilm.finetune.tasks.exact_match`) of each family, and "all" over every example."""
    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
    hits: dict[str, list[bool]] = defaultdict(list)
    for example, prediction in zip(examples, predictions):
        hit = exact_match(prediction, example.answers)
        hits[example.family].append(hit)
        hits["all"].append(hit)
    return {family: sum(found) / len(found) for family, found in hits.items()}
