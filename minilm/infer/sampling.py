"""How the next token is chosen, and how the chosen tokens become text on a screen.

The model gives one score (a logit) per token of the vocabulary; a softmax turns them into
probabilities. Choosing the most likely token every time (greedy decoding) is deterministic and tends to
loop; sampling from the full distribution sometimes picks one of the thousands of unlikely tokens and
derails. Each knob below reshapes the distribution before the draw, one idea each, applied in the
order Hugging Face's `generate` applies them:

1. `repetition_penalty` (Keskar et al., 2019, CTRL): every token already in the sequence (prompt
   included) becomes less likely: a positive logit is divided by the penalty, a negative one multiplied;
2. `temperature`: divide the logits by T: below 1 sharpens the distribution, above 1 flattens it,
   and 0 means greedy (the limit T -> 0 puts all the mass on the best token);
3. `top_k`: keep the k most likely tokens only;
4. `top_p` (nucleus sampling, Holtzman et al., 2019): keep the fewest most likely tokens whose
   probabilities add up to at least p: a few tokens when the model is sure, many when it is not;
5. `min_p`: keep the tokens at least min_p times as likely as the best one: the cut moves with the
   model's confidence too, in one comparison.

A filtered token's logit becomes -inf, so the softmax gives it probability 0. The tests show each
function equal to its `transformers` counterpart on the same logits.

Text comes out a token at a time, and a token is a piece of bytes, not always a whole character: an
emoji may be four tokens of one byte each. `TextStream` shows only whole characters, and holds back
any tail that could be the start of a stop string, so that a client never sees text that later turns
out to be part of "\\n\\nUser:" (say) and had to be cut.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

MAX_STOP = 4  # stop strings per request: OpenAI's limit
MAX_STOP_CHARS = 64  # the longest stop string: the held-back tail of a stream is never longer


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded. The defaults sample from the model's own distribution, 64 tokens.

    `seed` makes the draws reproducible: the request gets its own random generator, so it samples the
    same tokens whatever other requests share its batch. `stop` strings end the text (the stop string
    itself is not part of it).
    """

    max_tokens: int = 64
    temperature: float = 1.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0  # 1 = none
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            raise ValueError(f"stop={self.stop!r} must be a list of strings; write stop=[{self.stop!r}]")
        object.__setattr__(self, "stop", tuple(self.stop))  # a list is fine; stored as a tuple (hashable)
        _check_int("max_tokens", self.max_tokens, 1)
        if self.top_k is not None:
            _check_int("top_k", self.top_k, 1)
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer (or None for a random one)")
        if not _is_number(self.temperature) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature={self.temperature!r} must be a finite number >= 0 (0 means greedy)")
        for name in ("top_p", "min_p"):
            value = getattr(self, name)
            if value is not None and (not _is_number(value) or not 0 < value <= 1):
                raise ValueError(f"{name}={value!r} must be in (0, 1] (1 keeps every token), or None")
        penalty = self.repetition_penalty
        if not _is_number(penalty) or not math.isfinite(penalty) or penalty <= 0:
            raise ValueError(
                f"repetition_penalty={penalty!r} must be a finite number > 0 (1 means none, 1.1 to 1.3 is usual)"
            )
        if len(self.stop) > MAX_STOP:
            raise ValueError(f"{len(self.stop)} stop strings given; at most {MAX_STOP} are allowed")
        for text in self.stop:
            if not isinstance(text, str) or not 1 <= len(text) <= MAX_STOP_CHARS:
                raise ValueError(
                    f"stop string {text!r} must be a non-empty string of at most {MAX_STOP_CHARS} characters"
                )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def replace(self, **changes) -> SamplingParams:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(name: str, value, least: int) -> None:
    if not _is_int(value) or value < least:
        raise ValueError(f"{name}={value!r} must be an integer of at least {least}")


# --- the logits processors, one idea each -------------------------------------------------------
# Each takes logits (B, vocab) and returns new ones; a filtered token gets -inf.


def seen_tokens(previous_ids: torch.Tensor | Sequence, vocab_size: int) -> torch.Tensor:
    """Which tokens each row has seen, as (B, vocab) booleans, from ids (B, T), or one id list per row
    (rows may differ in length), or one (vocab,) boolean tensor per row (what the engine keeps, adding
    one token per step instead of reading the whole sequence again). (B, vocab) booleans stay as they are."""
    if isinstance(previous_ids, torch.Tensor) and previous_ids.dtype == torch.bool:
        return previous_ids
    if isinstance(previous_ids, torch.Tensor):
        seen = torch.zeros(previous_ids.size(0), vocab_size, dtype=torch.bool, device=previous_ids.device)
        return seen.scatter_(1, previous_ids, True)
    if previous_ids and all(isinstance(r, torch.Tensor) and r.dtype == torch.bool for r in previous_ids):
        return torch.stack(list(previous_ids))
    seen = torch.zeros(len(previous_ids), vocab_size, dtype=torch.bool)
    for row, ids in enumerate(previous_ids):
        if isinstance(ids, torch.Tensor) and ids.dtype == torch.bool:
            seen[row] = ids.cpu()
        else:
            seen[row, torch.as_tensor(list(ids), dtype=torch.long)] = True
    return seen


def apply_repetition_penalty(
    logits: torch.Tensor, previous_ids: torch.Tensor | Sequence[Sequence[int]], penalty: float
) -> torch.Tensor:
    """Make the tokens already seen less likely (penalty > 1) or more (< 1), each once however often seen.

    Dividing a positive logit and multiplying a negative one both push the token down (HF's
    RepetitionPenaltyLogitsProcessor). `previous_ids`: see `seen_tokens`.
    """
    if penalty == 1.0:
        return logits
    seen = seen_tokens(previous_ids, logits.size(-1)).to(logits.device)
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def temperature_scale(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by the temperature: T < 1 sharpens the distribution, T > 1 flattens it (T > 0; 0 is greedy,
    which `choose` does by argmax)."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 to scale logits; greedy decoding is an argmax")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k most likely tokens of each row (and any tied with the k-th), the rest -inf."""
    if k >= logits.size(-1):
        return logits
    kth_best = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_best, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the fewest most likely tokens whose probabilities add up to at least p (the best always stays).

    Said the other way round, as HF computes it: drop the least likely tokens while their total stays
    at most 1 - p. Sorted from least to most likely, a token goes when the mass up to and including it
    is <= 1 - p.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
    mass_so_far = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    dropped = mass_so_far <= 1 - p
    dropped[..., -1] = False  # the most likely token stays, whatever p
    dropped = dropped.scatter(-1, order, dropped)  # back to vocabulary order
    return logits.masked_fill(dropped, float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep the tokens whose probability is at least `min_p` times the best token's (the best always stays)."""
    probs = torch.softmax(logits, dim=-1)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)
    return logits.masked_fill(probs < threshold, float("-inf"))


def process(
    logits: torch.Tensor, params: SamplingParams, previous_ids: torch.Tensor | Sequence[Sequence[int]] | None = None
) -> torch.Tensor:
    """All of `params`' processing, in HF's order, on float32 logits: the distribution a draw samples from.
    For greedy params, only the repetition penalty applies (an argmax follows)."""
    logits = logits.float()
    if params.repetition_penalty != 1.0:
        if previous_ids is None:
            raise ValueError("repetition_penalty needs previous_ids, the tokens seen so far (prompt included)")
        logits = apply_repetition_penalty(logits, previous_ids, params.repetition_penalty)
    if params.greedy:
        return logits
    logits = temperature_scale(logits, params.temperature)
    if params.top_k is not None:
        logits = top_k_filter(logits, params.top_k)
    if params.top_p is not None:
        logits = top_p_filter(logits, params.top_p)
    if params.min_p is not None:
        logits = min_p_filter(logits, params.min_p)
    return logits


def choose(
    logits: torch.Tensor,
    params: SamplingParams | Sequence[SamplingParams],
    previous_ids: torch.Tensor | Sequence | None = None,
    generators: Sequence[torch.Generator | None] | None = None,
) -> torch.Tensor:
    """The next token of each row of `logits` (B, vocab): (B,) ids, on the logits' device.

    `params`: one SamplingParams for every row, or one per row. `previous_ids` (needed only with a
    repetition penalty): the ids seen so far, (B, T), or one id list (or (vocab,) boolean tensor) per
    row. `generators`: one per row (None: PyTorch's global generator), so a row's draws depend on its
    own generator alone, not on which other rows share the batch.

    Rows that ask for the same processing are processed together, usually the whole batch at once.
    """
    batch = logits.size(0)
    params = [params] * batch if isinstance(params, SamplingParams) else list(params)
    generators = [None] * batch if generators is None else list(generators)
    if len(params) != batch or len(generators) != batch:
        raise ValueError(
            f"{batch} rows of logits need {batch} params and generators: got {len(params)} and {len(generators)}"
        )
    groups: dict[tuple, list[int]] = {}
    for row, p in enumerate(params):
        groups.setdefault((p.repetition_penalty, p.temperature, p.top_k, p.top_p, p.min_p), []).append(row)
    if len(groups) == 1:  # the usual case: no gathering and scattering of rows
        return _choose_rows(logits, params[0], previous_ids, generators)
    tokens = torch.empty(batch, dtype=torch.long, device=logits.device)
    for rows in groups.values():
        previous = None
        if previous_ids is not None and params[rows[0]].repetition_penalty != 1.0:
            previous = previous_ids[rows] if isinstance(previous_ids, torch.Tensor) else [previous_ids[r] for r in rows]
        index = torch.tensor(rows, device=logits.device)
        tokens[index] = _choose_rows(logits[index], params[rows[0]], previous, [generators[r] for r in rows])
    return tokens


def _choose_rows(logits, params, previous_ids, generators) -> torch.Tensor:
    logits = process(logits, params, previous_ids)
    if params.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits, dim=-1)
    if all(g is None for g in generators):
        return torch.multinomial(probs, num_samples=1).squeeze(-1)
    draws = [torch.multinomial(probs[row : row + 1], 1, generator=g) for row, g in enumerate(generators)]
    return torch.cat(draws).squeeze(-1)


# --- streaming text -----------------------------------------------------------------------------


class TextStream:
    """Turns token ids, pushed one at a time, into text that is safe to show.

    Two things are held back: the bytes of a character not yet complete (UTF-8's incremental
    decoder keeps them), and the longest tail of the text that could be the beginning of a stop
    string. When a stop string appears, the text is cut before it and `stopped` becomes True. The
    pieces returned by `push` and `finish`, joined, are the decoded text cut at the first stop string
    (invalid bytes become U+FFFD, as `Tokenizer.decode` makes them). `text` is everything shown so far.
    """

    def __init__(self, tokenizer, stop: Sequence[str] = ()):
        if isinstance(stop, str):
            raise ValueError(f"stop={stop!r} must be a list of strings; write stop=[{stop!r}]")
        if any(not isinstance(s, str) or not s for s in stop):
            raise ValueError(f"stop strings must be non-empty strings, got {list(stop)!r}")
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.stopped = False
        self.text = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # decoded, but could be the start of a stop string

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now safe to show (often "", never after `stopped`)."""
        if self.stopped:
            return ""
        return self._release(self._decoder.decode(self.tokenizer.decode_token(token_id)))

    def finish(self) -> str:
        """Generation ended for another reason (end token, length): return everything held back."""
        if self.stopped:
            return ""
        released = self._release(self._decoder.decode(b"", final=True))
        if self.stopped:
            return released
        rest, self._pending = self._pending, ""
        self.text += rest
        return released + rest

    def _release(self, new: str) -> str:
        pending = self._pending + new
        if not self.stop:
            self.text += pending
            return pending
        found = [i for i in (pending.find(s) for s in self.stop) if i >= 0]
        if found:
            self.stopped = True
            self._pending = ""
            shown = pending[: min(found)]
        else:
            held = _longest_stop_prefix(pending, self.stop)
            shown, self._pending = pending[: len(pending) - held], pending[len(pending) - held :]
        self.text += shown
        return shown


def _longest_stop_prefix(text: str, stops: Sequence[str]) -> int:
    """The length of the longest end of `text` that is the beginning of one of `stops` (0 if none)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest
