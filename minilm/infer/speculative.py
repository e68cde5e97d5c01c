"""Speculative decoding: a small draft model proposes, the big one checks (Leviathan et al., 2023; Chen et al., 2023).

Decoding one token at a time leaves a big model idle: each step reads every weight from memory to compute a
single position. Reading them once for k + 1 positions costs about the same. So a cheap draft model guesses the
next k tokens, one at a time, and the target model scores all of them in ONE forward pass, which gives its own
distribution p_i at each of the k positions, and one more, p_k, after the last guess. Then `accept_step` walks
along the guesses:

    for i in 0..k-1:  accept x_i with probability min(1, p_i(x_i) / q_i(x_i))        (q_i: the draft's distribution)
                      on the first rejection, sample from normalise(max(0, p_i - q_i)) instead, and stop
    if all k were accepted, sample a bonus token from p_k

Every round returns between 1 and k + 1 tokens for one target call. The rule is exact: each token comes out
distributed as p_i, as if the target had sampled it alone. For a token x, the chance of proposing and accepting it
is q(x) min(1, p(x)/q(x)) = min(p(x), q(x)); a rejection happens with the leftover mass 1 - sum min(p, q) =
sum max(0, p - q), and then x comes with probability max(0, p(x) - q(x)) / sum max(0, p - q). The two add up to
min(p, q) + max(0, p - q) = p. A poor draft costs speed, never quality; the chance of accepting a guess is
sum min(p, q) = 1 - TV(p, q), one minus the total-variation distance between the two models.

Greedy decoding (temperature 0) is the same rule with one-hot p and q: a draft token is accepted exactly when it
is the target's argmax (p/q = 1), otherwise p/q = 0 and max(0, p - q) is the target's argmax again. So greedy
speculative decoding returns exactly the tokens of greedy decoding with the target alone; `speculative_generate`
sends greedy through `accept_step` like sampling, with one-hot distributions.

Both models keep a KV cache. After a round, the positions of rejected guesses are dropped by rewinding
`KVCache.length` (`rewind`): the next forward pass writes over them. Each model's cache always holds every
accepted token but the last, which is fed at the next step together with whatever the model has not seen.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minilm.model.attention import KVCache
from minilm.model.gpt import GPT


@dataclass
class SpeculativeResult:
    """What `speculative_generate` produced, and how much the draft helped.

    `tokens`: the new tokens (without the prompt, and without the end token if one came: `generate`'s convention,
    so fewer than max_new_tokens tokens means an end token stopped it). `proposed`: draft tokens put to the
    target; `accepted`: those it kept. `target_calls` and `draft_calls`: forward passes of each model.
    """

    tokens: list[int]
    proposed: int
    accepted: int
    target_calls: int
    draft_calls: int

    @property
    def acceptance_rate(self) -> float:
        """The share of proposed tokens the target accepted (0.0 when nothing was proposed)."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_target_call(self) -> float:
        """New tokens per forward pass of the target: 1 for plain decoding, up to lookahead + 1 here."""
        return len(self.tokens) / self.target_calls if self.target_calls else 0.0


def accept_step(
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor,
    draft_tokens: Sequence[int],
    generator: torch.Generator | None = None,
) -> list[int]:
    """Decide which of the draft's k tokens to keep: returns the tokens to append, 1 to k + 1 of them.

    `target_probs` (k + 1, V): the target's distribution at each draft position and one after the last;
    `draft_probs` (k, V): the draft's distributions, from which `draft_tokens` (k) were sampled. k may be 0: then
    this samples one token from target_probs[0]. With one-hot rows (temperature 0) it is greedy decoding: keep the
    draft's tokens while they are the target's argmax, then append the target's argmax. `generator` (on the
    device of the probabilities) supplies the random numbers: one per guess judged, one per token drawn.
    """
    k = len(draft_tokens)
    if target_probs.dim() != 2 or target_probs.size(0) != k + 1:
        raise ValueError(
            f"target_probs has shape {tuple(target_probs.shape)}; for {k} draft tokens it must be ({k + 1}, vocab): "
            f"one distribution per draft position and one for the bonus token"
        )
    if draft_probs.shape != (k, target_probs.size(1)):
        raise ValueError(
            f"draft_probs has shape {tuple(draft_probs.shape)}; for {k} draft tokens over the target's vocabulary "
            f"it must be ({k}, {target_probs.size(1)})"
        )
    out: list[int] = []
    for i, token in enumerate(draft_tokens):
        p, q = target_probs[i], draft_probs[i]
        if not 0 <= token < p.size(0) or q[token] <= 0:
            raise ValueError(
                f"draft token {token} at position {i} has no probability under the draft; draft_tokens must be "
                f"sampled from draft_probs (ids 0..{p.size(0) - 1})"
            )
        # Accept when u < p/q, written u * q < p to avoid the division; u is uniform on [0, 1).
        u = torch.rand((), generator=generator, device=p.device)
        if u * q[token] < p[token]:
            out.append(int(token))
            continue
        out.append(_draw(residual_distribution(p, q), generator))
        return out
    out.append(_draw(target_probs[k], generator))  # every guess accepted: one more token, free
    return out


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """What a rejected guess is replaced by: normalise(max(0, p - q)), the mass the target gives beyond the draft.

    A rejection needs p(x) < q(x), so some other token has p > q and the residual has mass; p itself is the
    fallback only against rounding."""
    residual = (p - q).clamp(min=0)
    return residual / residual.sum() if residual.sum() > 0 else p


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(probs, 1, generator=generator))


def probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Next-token distributions (..., V) from logits: softmax(logits / T), or one-hot on the argmax for T = 0."""
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.size(-1)).float()
    return torch.softmax(logits.float() / temperature, dim=-1)


def rewind(cache: KVCache, length: int) -> None:
    """Forget every position of `cache` from `length` on. The stored keys stay where they are, but attention reads
    only the first `cache.length` of them, and the next update writes over them; `key_mask` is rewritten for the
    new positions at the same time (`KVCache.extend_mask`)."""
    if not 0 <= length <= cache.length:
        raise ValueError(f"cannot rewind a cache of {cache.length} positions to {length}; use 0..{cache.length}")
    cache.length = length


def speculative_generate(
    target: GPT,
    draft: GPT,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    *,
    lookahead: int = 4,
    temperature: float = 0.0,
    seed: int = 0,
    end_tokens: Collection[int] = (),
) -> SpeculativeResult:
    """Continue one prompt with `target`, `draft` guessing `lookahead` tokens ahead.

    Greedy (temperature 0) returns exactly the tokens of `generate(target, [prompt_ids], max_new_tokens,
    temperature=0)`; sampling returns tokens distributed as the target's own samples (not the same samples: the
    random numbers are used differently). The last round proposes fewer tokens when fewer are left to write, so
    the context needs to hold the prompt plus max_new_tokens only, as for `generate`.
    """
    if isinstance(prompt_ids, (str, bytes)) or len(prompt_ids) == 0 or isinstance(prompt_ids[0], (list, tuple)):
        raise ValueError("prompt_ids must be one non-empty list of token ids, e.g. [5, 9, 2] (not a list of prompts)")
    prompt = [int(t) for t in prompt_ids]
    _check_arguments(target, draft, prompt, max_new_tokens, lookahead, temperature)
    target_device, draft_device = target.transformer.wte.weight.device, draft.transformer.wte.weight.device
    generator = torch.Generator(device=target_device).manual_seed(seed)
    draft_generator = torch.Generator(device=draft_device).manual_seed(seed + 1)
    end_tokens = set(end_tokens)
    total = len(prompt) + max_new_tokens
    target_cache, draft_cache = KVCache(target.config, 1, total), KVCache(draft.config, 1, total)
    sequence = list(prompt)  # the prompt and every token accepted so far
    result = SpeculativeResult(tokens=[], proposed=0, accepted=0, target_calls=0, draft_calls=0)

    def step(model: GPT, cache: KVCache, ids: list[int], device: torch.device) -> torch.Tensor:
        """Run `ids` through `model` after its cache; the logits of every position, (len(ids), V)."""
        logits, _ = model(torch.tensor([ids], device=device), cache=cache)
        return logits[0]

    modes = target.training, draft.training
    target.eval()
    draft.eval()
    try:
        with torch.no_grad():
            while len(result.tokens) < max_new_tokens:
                k = min(lookahead, max_new_tokens - len(result.tokens) - 1)  # no guesses past the end
                # The draft guesses k tokens, one forward pass each; its first pass also reads what it has not seen.
                guesses: list[int] = []
                draft_probs = []
                pending = sequence[draft_cache.length :]
                for _ in range(k):
                    q = probabilities(step(draft, draft_cache, pending, draft_device)[-1], temperature)
                    guesses.append(_draw(q, draft_generator))
                    draft_probs.append(q)
                    pending = guesses[-1:]
                result.draft_calls += k
                # The target scores all k guesses (and the token after them) in one forward pass.
                logits = step(target, target_cache, sequence[target_cache.length :] + guesses, target_device)
                result.target_calls += 1
                target_probs = probabilities(logits[-(k + 1) :], temperature)
                draft_q = torch.stack(draft_probs).to(target_device) if k else target_probs[:0]
                new = accept_step(target_probs, draft_q, guesses, generator)
                result.proposed += k
                result.accepted += len(new) - 1
                # Both caches keep the accepted tokens only; the last new token is fed at the next round.
                sequence += new
                rewind(target_cache, min(target_cache.length, len(sequence) - 1))
                rewind(draft_cache, min(draft_cache.length, len(sequence) - 1))
                for token in new:
                    if token in end_tokens:
                        return result
                    result.tokens.append(token)
    finally:
        target.train(modes[0])
        draft.train(modes[1])
    return result


def _check_arguments(
    target: GPT, draft: GPT, prompt: list[int], max_new_tokens: int, lookahead: int, temperature: float
) -> None:
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError(
            f"the draft's vocabulary ({draft.config.vocab_size} ids) differs from the target's "
            f"({target.config.vocab_size}); the two models must share one tokenizer, so pick a draft trained with it"
        )
    if not (target.config.causal and draft.config.causal):
        raise ValueError("speculative decoding needs two decoders (GPTConfig.causal=True); an encoder cannot write")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be at least 1")
    if lookahead < 1:
        raise ValueError(f"lookahead={lookahead} must be at least 1 (the number of tokens the draft guesses ahead)")
    if temperature < 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature={temperature} must be a finite number >= 0 (0 means greedy)")
    vocab = target.config.vocab_size
    bad = [t for t in prompt if not 0 <= t < vocab]
    if bad:
        raise ValueError(f"prompt token id {bad[0]} is outside the vocabulary of {vocab} ids (0..{vocab - 1})")
    for name, model in (("target", target), ("draft", draft)):
        context = model.config.context
        if len(prompt) + max_new_tokens > context:
            raise ValueError(
                f"a prompt of {len(prompt)} tokens plus {max_new_tokens} new ones exceeds the {name}'s context of "
                f"{context}; shorten the prompt or ask for at most {context - len(prompt)} tokens"
            )
