"""Writing text with a trained model: predict a token, append it, repeat.

Two things make this fast. The KV cache: a token's keys and values never change once computed, so
each step runs the model on the one new token and reads the earlier ones from the cache, instead of
recomputing the whole sequence (quadratic work becomes linear). And batching: prompts of different
lengths are padded on the left, so that every sequence's next token lands in the same column; the
padding is masked out of attention, and each sequence's positions start at 0 on its first real token,
so a prompt gets exactly the tokens it would get alone.

How the next token is chosen:
- greedy (`temperature=0`): the most likely token, every time;
- `temperature`: divide the logits before the softmax: below 1 sharpens, above 1 flattens;
- `top_k`: sample among the k most likely tokens only;
- `top_p` (nucleus sampling): among the fewest tokens whose probabilities add up to p.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from minilm.model.attention import KVCache
from minilm.model.gpt import GPT


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose one token per row of `logits` (B, vocab); returns (B,) token ids.

    Scores of -inf are tokens ruled out; a NaN or +inf score means the model's weights have blown up, and
    is a FloatingPointError here rather than a wrong token or an unreadable error from `torch.multinomial`."""
    if not bool((logits < float("inf")).all()):  # false for NaN as well as for +inf
        raise FloatingPointError("the model's next-token scores are not finite (NaN or +inf): its weights have "
                                 "diverged or overflowed; sample from a model whose weights and scores are finite")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth_best = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens more likely than it already hold p of the mass (the best one stays).
        dropped = probs.cumsum(dim=-1) - probs > top_p
        sorted_logits = sorted_logits.masked_fill(dropped, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def stream(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_token: int | None = None,
    seed: int = 0,
    use_cache: bool = True,
    pad_token: int = 0,
) -> Iterator[list[int | None]]:
    """Generate for a batch of prompts, one step at a time: each step yields the new token of every
    prompt (the stop token included), or None for a prompt that has already stopped.

    `use_cache=False` recomputes the whole sequence at every step (for comparison: same tokens, slower).
    Bad arguments raise here, before the first step.
    """
    _check_arguments(model, prompts, max_new_tokens, temperature, top_k, top_p)
    return _steps(model, prompts, max_new_tokens, temperature, top_k, top_p, stop_token, seed, use_cache, pad_token)


def left_pad(
    prompts: Sequence[Sequence[int]], pad_token: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts as one batch padded on the left, so that every prompt ends in the last column: the
    ids (B, longest) and which of them are real tokens (B, longest), bool."""
    batch, longest = len(prompts), max(len(p) for p in prompts)
    idx = torch.full((batch, longest), pad_token, dtype=torch.long, device=device)
    is_real = torch.zeros((batch, longest), dtype=torch.bool, device=device)
    for row, prompt in enumerate(prompts):
        idx[row, longest - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        is_real[row, longest - len(prompt) :] = True
    return idx, is_real


def _steps(model, prompts, max_new_tokens, temperature, top_k, top_p, stop_token, seed, use_cache, pad_token):
    device = model.transformer.wte.weight.device
    batch, longest = len(prompts), max(len(p) for p in prompts)
    idx, is_real = left_pad(prompts, pad_token, device)
    padding_mask = None if bool(is_real.all()) else is_real  # no mask at all lets attention use its fastest path
    generator = torch.Generator(device=device).manual_seed(seed)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    cache = KVCache(model.config, batch, longest + max_new_tokens) if use_cache else None

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits, _ = model(idx, padding_mask=padding_mask, cache=cache, last_only=True)
            for step in range(max_new_tokens):
                token = sample(logits[:, -1], temperature, top_k, top_p, generator)
                yield [None if done else int(t) for t, done in zip(token.tolist(), finished.tolist())]
                if stop_token is not None:
                    finished |= token == stop_token
                if step == max_new_tokens - 1 or bool(finished.all()):
                    return
                token = token.where(~finished, torch.full_like(token, pad_token))
                if use_cache:  # the model reads the rest from the cache, positions included
                    logits, _ = model(token[:, None], cache=cache, last_only=True)
                else:
                    idx = torch.cat([idx, token[:, None]], dim=1)
                    if padding_mask is not None:
                        padding_mask = torch.cat([padding_mask, torch.ones_like(token[:, None], dtype=torch.bool)], 1)
                    logits, _ = model(idx, padding_mask=padding_mask, last_only=True)
    finally:
        model.train(was_training)


def generate(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_token: int | None = None,
    seed: int = 0,
    use_cache: bool = True,
    pad_token: int = 0,
) -> list[list[int]]:
    """The new tokens of each prompt (without the prompt, and without the stop token if one came).

    `generate(model, [[1, 2, 3], [4]], 20, temperature=0)` continues both prompts greedily, in one batch.
    """
    outputs: list[list[int]] = [[] for _ in prompts]
    steps = stream(
        model, prompts, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        stop_token=stop_token, seed=seed, use_cache=use_cache, pad_token=pad_token,
    )  # fmt: skip
    for tokens in steps:
        for output, token in zip(outputs, tokens):
            if token is not None and token != stop_token:
                output.append(token)
    return outputs


def _check_arguments(model, prompts, max_new_tokens, temperature, top_k, top_p) -> None:
    if isinstance(prompts, torch.Tensor) or not prompts or isinstance(prompts[0], int):
        raise ValueError("prompts must be a non-empty list of token-id lists, e.g. [[5, 9, 2]] for one prompt")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (start empty prompts with a begin-of-text token)")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be at least 1")
    longest, context = max(len(p) for p in prompts), model.config.context
    if longest + max_new_tokens > context:
        raise ValueError(
            f"a prompt of {longest} tokens plus {max_new_tokens} new ones exceeds the context of {context}; "
            f"shorten the prompt or ask for at most {context - longest} tokens"
        )
    vocab = model.config.vocab_size
    bad = [t for p in prompts for t in p if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"prompt token id {bad[0]} is outside the vocabulary of {vocab} ids (0..{vocab - 1})")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 means greedy)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k={top_k} must be at least 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p} must be in (0, 1]")
