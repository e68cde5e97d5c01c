"""Asking a language model the three questions that lm-evaluation-harness asks, with its semantics.

Every benchmark in the field reduces to three kinds of request (EleutherAI's lm-evaluation-harness,
`lm_eval.api.model.LM`, names them so):

- **loglikelihood** `(context, continuation)`: how likely is the continuation after the context,
  as a sum of log-probabilities of its tokens, and is it the greedy one (every token the model's
  single most likely)? A multiple-choice question is one request per choice; the choice with the
  highest log-likelihood is the model's answer.
- **rolling loglikelihood** `text`: the log-likelihood of a whole text, however long, scored in
  windows of the model's context. Perplexity and bits per byte come from it.
- **generate until** `(context, stop strings)`: the greedy continuation, cut at the first stop
  string. Scored by exact match.

The details decide whether a number means what the field's number means, so they follow
lm-eval's exactly (and `tests/test_eval_harness.py` runs lm-eval itself beside this module):

- Spaces at the end of a context move to the start of the continuation, and the continuation's
  tokens are those of `context + continuation` after the context's own tokens: BPE puts a space in
  front of the word that follows it, so "Q: Who? A:" + " Tom" is scored on the token " Tom".
- An empty context becomes the end-of-text token, which the model saw in front of every document.
- A request longer than the context window keeps its last tokens.
- Rolling windows: the first window predicts its tokens after the end-of-text token; each later
  window predicts the next `context` tokens and keeps as many earlier tokens as fit in front of
  them. Every token is predicted exactly once.

Requests are scored in batches: rows padded on the right, so that a causal model's logits for the
real tokens are exactly those it computes alone (a query never looks right), sorted by length so
that little padding is computed. Generation is greedy, batched, with the KV cache, as stage 6
answers its questions (`minilm.finetune.answers.generate_replies`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from minilm.finetune.answers import generate_replies
from minilm.finetune.chat import PAD
from minilm.model.gpt import GPT
from minilm.tokenizer.tokenizer import Tokenizer

END_OF_TEXT = "<|endoftext|>"
TokenPair = tuple[list[int], list[int]]  # (context ids, continuation ids)


def encode_pair(tokenizer: Tokenizer, context: str, continuation: str) -> TokenPair:
    """The context's and the continuation's token ids, as lm-eval splits them.

    Trailing spaces of the context join the continuation; the continuation's ids are what follows
    the context's ids in the ids of the whole text. An empty context is the end-of-text token.
    """
    if not context:
        ids = tokenizer.encode_ordinary(continuation)
        end = tokenizer.special_id(END_OF_TEXT)
        return ([end], ids) if not ids or ids[0] != end else (ids[:1], ids[1:])
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode_ordinary(context + continuation)
    context_ids = tokenizer.encode_ordinary(context)
    return context_ids, whole[len(context_ids):]


def rolling_windows(tokens: Sequence[int], prefix_token: int, context: int) -> list[TokenPair]:
    """`tokens` cut into windows that a model of `context` positions scores in turn: (context ids,
    predicted ids) pairs, every token predicted once, each with as many tokens before it as fit.

    >>> rolling_windows([1, 2, 3, 4, 5], prefix_token=0, context=3)
    [([0], [1, 2, 3]), ([2, 3], [4, 5])]
    """
    tokens, windows, done = list(tokens), [], 0
    while done < len(tokens):
        end = min(done + context, len(tokens))
        predicted = tokens[done:end]
        # the model reads `context` tokens and predicts the ones after each: the window's input ends one
        # before `end`, and starts `context` before that (the prefix token stands before the first)
        window = ([prefix_token] + tokens)[max(0, end - context) : end]
        windows.append((window[: len(window) - len(predicted) + 1], predicted))
        done = end
    return windows


def score_tokens(model: GPT, pairs: Sequence[TokenPair], batch_size: int = 32) -> list[tuple[float, bool]]:
    """For each (context ids, continuation ids): the continuation's summed log-probability after the
    context, and whether every one of its tokens was the model's most likely. Batched, in order.

    A pair longer than the model's context keeps its last `context + 1` tokens (the continuation
    must fit)."""
    context = model.config.context
    rows = []
    for i, (context_ids, continuation_ids) in enumerate(pairs):
        if not continuation_ids:
            raise ValueError(f"request {i} has an empty continuation: there is nothing to score")
        if len(continuation_ids) > context:
            raise ValueError(f"request {i}'s continuation has {len(continuation_ids)} tokens, more than the "
                             f"model's context of {context}: score it as a rolling log-likelihood instead")
        if not context_ids:
            raise ValueError(f"request {i} has no context token: pass at least the end-of-text token")
        rows.append(((list(context_ids) + list(continuation_ids))[-(context + 1):][:-1], list(continuation_ids)))
    results: list[tuple[float, bool]] = [(0.0, False)] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    device = model.transformer.wte.weight.device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                longest = max(len(rows[i][0]) for i in batch)
                idx = torch.zeros((len(batch), longest), dtype=torch.long, device=device)
                for row, i in enumerate(batch):
                    idx[row, : len(rows[i][0])] = torch.tensor(rows[i][0])
                logprobs = F.log_softmax(model(idx)[0].float(), dim=-1)
                for row, i in enumerate(batch):
                    inputs, targets = rows[i]
                    positions = torch.arange(len(inputs) - len(targets), len(inputs), device=device)
                    token_logprobs = logprobs[row, positions]
                    target = torch.tensor(targets, device=device)
                    results[i] = (float(token_logprobs.gather(1, target[:, None]).sum()),
                                  bool((token_logprobs.argmax(-1) == target).all()))
    finally:
        model.train(was_training)
    return results


def loglikelihood(model: GPT, tokenizer: Tokenizer, requests: Sequence[tuple[str, str]],
                  batch_size: int = 32) -> list[tuple[float, bool]]:
    """(log-likelihood, is greedy) of each (context, continuation) request, as lm-eval's
    `loglikelihood` defines them."""
    return score_tokens(model, [encode_pair(tokenizer, c, x) for c, x in requests], batch_size)


def loglikelihood_rolling(model: GPT, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 32) -> list[float]:
    """The log-likelihood of each whole text, scored in rolling windows of the model's context
    (lm-eval's `loglikelihood_rolling`). An empty text scores 0: there is nothing in it to predict."""
    end = tokenizer.special_id(END_OF_TEXT)
    windows = [rolling_windows(tokenizer.encode_ordinary(text), end, model.config.context) for text in texts]
    scores = iter(score_tokens(model, [w for text_windows in windows for w in text_windows], batch_size))
    return [sum(next(scores)[0] for _ in text_windows) for text_windows in windows]


def generate_until(model: GPT, tokenizer: Tokenizer, requests: Sequence[tuple[str, Sequence[str]]],
                   max_new_tokens: int = 32, batch_size: int = 32) -> list[str]:
    """The greedy continuation of each context, cut before the first of its stop strings (lm-eval's
    `generate_until`; the end-of-text token always stops). A context longer than the window keeps
    its last tokens, leaving room for `max_new_tokens`."""
    keep = model.config.context - max_new_tokens
    if keep < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in a context of "
                         f"{model.config.context} tokens")
    end = tokenizer.special_id(END_OF_TEXT)
    prompts = [(tokenizer.encode_ordinary(context) or [end])[-keep:] for context, _ in requests]
    replies = generate_replies(model, prompts, end, tokenizer.special_id(PAD), max_new_tokens, batch_size)
    return [cut_at_stops(tokenizer.decode(reply), stops) for reply, (_, stops) in zip(replies, requests)]


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first occurrence of any stop string (all of it when none occurs)."""
    cut = min((text.find(stop) for stop in stops if stop and stop in text), default=len(text))
    return text[:cut]
