"""Serving many requests at once: dynamic (continuous) batching.

A decoding step costs about the same for one sequence as for eight: at batch 1 the weights are read
from memory for a single token's worth of arithmetic, and the rest of the step is Python and kernel
launches. So a server decodes every request it has in one batch. Static batching (stage 3's
`generate`) starts a batch together and waits for its longest member: a request that ends after 5
tokens holds its row while another writes 500, and a request that arrives meanwhile waits for all
of them. Dynamic batching (Orca, Yu et al., 2022; vLLM) decides again at every step:

- a finished request leaves at once: its row of the KV cache is dropped;
- a waiting request joins at once: its prompt is run through the model (the prefill, several
  newcomers together, left-padded), its first token comes from the prefill's logits, and its cache
  rows are merged into the running batch, aligned on the right like any left-padded batch.

Rows of different lengths share one cache: each row is padded on the left, the padding is masked out
of attention, and each row's positions count its real tokens only, so a request gets exactly the
tokens it would get alone, whenever it joined and whoever shares its batch (the tests check it).
Each request also has its own random generator (see `sampling.choose`), so a seeded request samples
the same text alone or in a crowd.

`BatchCache` is the KV cache that can do this: drop rows, take new ones, trim columns that have become
padding in every row, and grow. `Engine` runs the loop: `add` queues a request, `step` advances every
request by one token and returns what happened as `Event`s (the text to stream, and why a request
finished), `cancel` lets a client go. A server calls `step` in a loop; `run` does it for a list of
prompts. The engine is not thread-safe: call it from one thread (a server's generation loop).
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import torch

from minilm.infer.sampling import SamplingParams, TextStream, choose
from minilm.model.config import GPTConfig
from minilm.model.generate import left_pad
from minilm.model.gpt import GPT
from minilm.tokenizer import Tokenizer

END_TOKENS = ("<|end|>", "<|endoftext|>")  # the end of a chat turn, the end of a document
FINISH_REASONS = ("stop", "length", "cancelled")  # OpenAI's words


class BatchCache:
    """A KV cache for a batch whose rows come and go; duck-type compatible with `KVCache` for `GPT.forward`.

    Storage is (layers, rows, kv_heads, capacity, head_dim). The columns in use are `start` to
    `start + length`: trimming leading padding moves `start` instead of copying, and storage grows
    (doubling, up to the context) when a step would run past its end. Every row is padded on the left
    and ends in the last column; `key_mask` is False on padding. `real_lengths` (B,) counts each row's
    real tokens: the position of its next token.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_length: int):
        if max_length > config.context:
            raise ValueError(f"a KV cache of {max_length} positions exceeds the model's context of {config.context}")
        self.config = config
        self._rows, self._capacity = batch_size, max_length
        self.keys: torch.Tensor | None = None  # (layers, B, H_kv, capacity, D)
        self.values: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None  # (B, capacity): True for real tokens
        self.real_lengths: torch.Tensor | None = None  # (B,) long
        self.start = 0  # columns before it were trimmed away
        self.length = 0  # columns in use, from `start`

    @property
    def batch_size(self) -> int:
        return self._rows

    @property
    def max_length(self) -> int:
        return self._capacity

    @property
    def key_mask(self) -> torch.Tensor | None:
        """(B, columns from `start`): which keys are real tokens. `[:, :length]` are the columns in use."""
        return None if self._mask is None else self._mask[:, self.start :]

    # --- what GPT.forward calls -------------------------------------------------------------------

    def extend_mask(self, is_real: torch.Tensor) -> torch.Tensor:
        """Record which of the new positions (B, T) are real; return the mask of all keys (B, length + T)."""
        count = is_real.size(1)
        if self._mask is None:
            self._mask = torch.zeros(self._rows, self._capacity, dtype=torch.bool, device=is_real.device)
            self.real_lengths = torch.zeros(self._rows, dtype=torch.long, device=is_real.device)
        self._reserve(count)
        end = self.start + self.length + count
        self._mask[:, end - count : end] = is_real
        self.real_lengths += is_real.sum(dim=1)
        return self._mask[:, self.start : end]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's keys and values for the new positions; return those of all positions so far."""
        if self.keys is None:
            shape = (self.config.n_layer, self._rows, k.size(1), self._capacity, k.size(3))
            self.keys = torch.zeros(shape, dtype=k.dtype, device=k.device)
            self.values = torch.zeros(shape, dtype=v.dtype, device=v.device)
        self._reserve(k.size(2))
        start, end = self.start + self.length, self.start + self.length + k.size(2)
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        return self.keys[layer, :, :, self.start : end], self.values[layer, :, :, self.start : end]

    def advance(self, count: int) -> None:
        """Called once every layer has stored its keys and values for `count` new positions."""
        self.length += count

    # --- what the engine calls --------------------------------------------------------------------

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only `rows` (in that order): finished requests leave the batch. Then trim."""
        rows = list(rows)
        device = self._mask.device if self._mask is not None else "cpu"
        index = torch.tensor(rows, dtype=torch.long, device=device)
        if self.keys is not None:
            self.keys, self.values = self.keys[:, index], self.values[:, index]
        if self._mask is not None:
            self._mask, self.real_lengths = self._mask[index], self.real_lengths[index]
        self._rows = len(rows)
        self.trim()

    def append(self, other: BatchCache) -> None:
        """Take `other`'s rows after ours. The two are aligned on the right, the shorter one padded on the left."""
        if other.batch_size == 0:
            return
        if self._rows == 0 or self.keys is None:
            self.__dict__.update({name: value for name, value in other.__dict__.items() if name != "config"})
            return
        if other.keys is None:
            raise ValueError("cannot append a cache that holds no keys yet; run the newcomers' prefill into it first")
        length = max(self.length, other.length)
        capacity = max(self._capacity, other._capacity, length)
        rows = self._rows + other._rows
        layers, _, heads, _, dim = self.keys.shape
        keys = self.keys.new_zeros(layers, rows, heads, capacity, dim)
        values = self.values.new_zeros(layers, rows, heads, capacity, dim)
        mask = self._mask.new_zeros(rows, capacity)
        for part, first in ((self, 0), (other, self._rows)):
            begin, end = part.start, part.start + part.length
            at, last = slice(length - part.length, length), slice(first, first + part._rows)
            keys[:, last, :, at] = part.keys[:, :, :, begin:end]
            values[:, last, :, at] = part.values[:, :, :, begin:end]
            mask[last, at] = part._mask[:, begin:end]
        self.keys, self.values, self._mask = keys, values, mask
        self.real_lengths = torch.cat([self.real_lengths, other.real_lengths])
        self._rows, self._capacity, self.start, self.length = rows, capacity, 0, length
        self.trim()

    def trim(self) -> int:
        """Drop the leading columns that are padding in every row (a long request left); returns how many."""
        if self._mask is None or self.length == 0:
            return 0
        used = self.key_mask[:, : self.length].any(dim=0)
        first = int(used.long().argmax()) if bool(used.any()) else self.length
        self.start, self.length = self.start + first, self.length - first
        return first

    def _reserve(self, count: int) -> None:
        """Make room for `count` more columns: move the columns in use to the front, growing if needed."""
        if self.start + self.length + count <= self._capacity:
            return
        needed = self.length + count
        capacity = self._capacity
        if needed > capacity:  # double (fewer moves as a request grows), but never past the context
            capacity = max(needed, min(2 * capacity, self.config.context))
        begin, end = self.start, self.start + self.length
        if self.keys is not None:
            keys = self.keys.new_zeros(*self.keys.shape[:3], capacity, self.keys.size(4))
            values = torch.zeros_like(keys)
            keys[:, :, :, : self.length] = self.keys[:, :, :, begin:end]
            values[:, :, :, : self.length] = self.values[:, :, :, begin:end]
            self.keys, self.values = keys, values
        if self._mask is not None:
            mask = self._mask.new_zeros(self._rows, capacity)
            mask[:, : self.length] = self._mask[:, begin:end]
            self._mask = mask
        self.start, self._capacity = 0, capacity


@dataclass
class Event:
    """What one step did for one request: the token it drew (None when cancelled; an end token is
    reported here but never becomes text), the text that is now safe to show (may be ""), and why the
    request finished ("stop", "length", "cancelled"), or None while it goes on."""

    request_id: int
    token: int | None
    text: str
    finish_reason: str | None


@dataclass
class Completion:
    """A finished request: the generated ids and text (without the end token, the text cut at a stop string)."""

    token_ids: list[int]
    text: str
    finish_reason: str
    prompt_tokens: int


@dataclass(eq=False)
class _Request:
    id: int
    prompt: list[int]
    params: SamplingParams
    generator: torch.Generator
    stream: TextStream
    tokens: list[int] = field(default_factory=list)
    seen: torch.Tensor | None = None  # (vocab,) bools, kept only for a repetition penalty
    finish_reason: str | None = None


class Engine:
    """Generation for many requests at once, with requests joining and leaving between steps.

    The model is put in eval mode and used under `torch.inference_mode()`. `end_tokens` end a request
    ("stop"); by default the tokenizer's "<|end|>" and "<|endoftext|>".
    """

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        *,
        max_batch_size: int = 8,
        end_tokens: Collection[int] | None = None,
    ):
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size={max_batch_size!r} must be an integer of at least 1")
        vocab = model.config.vocab_size
        if tokenizer.vocab_size != vocab:
            raise ValueError(
                f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary has {vocab}; "
                f"use the tokenizer the model was trained with"
            )
        if end_tokens is None:
            specials = getattr(tokenizer, "special_tokens", {})
            end_tokens = [specials[name] for name in END_TOKENS if name in specials]
        self.end_tokens = frozenset(operator.index(t) for t in end_tokens)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.device = model.transformer.wte.weight.device
        self._waiting: collections.deque[_Request] = collections.deque()
        self._running: list[_Request] = []  # in the order of the cache's rows
        self._cache: BatchCache | None = None
        self._next_input: torch.Tensor | None = None  # (B,): the token each running request feeds next
        self._live: dict[int, _Request] = {}  # waiting or running
        self._cancelled: set[int] = set()
        self._issued = 0

    # --- requests ---------------------------------------------------------------------------------

    def add(self, prompt_ids: Sequence[int], params: SamplingParams | None = None) -> int:
        """Queue a request (first come, first served); returns its id. Bad input raises here."""
        params = SamplingParams() if params is None else params
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be a SamplingParams, got {type(params).__name__}")
        if isinstance(prompt_ids, str):
            raise TypeError("add takes token ids; encode the text first (tokenizer.encode(text))")
        prompt = [operator.index(t) for t in prompt_ids]
        config = self.model.config
        if not prompt:
            raise ValueError("the prompt is empty; start it with at least one token (e.g. <|endoftext|>)")
        bad = [t for t in prompt if not 0 <= t < config.vocab_size]
        if bad:
            raise ValueError(
                f"prompt token id {bad[0]} is outside the vocabulary of {config.vocab_size} ids "
                f"(0..{config.vocab_size - 1}); encode the prompt with the model's tokenizer"
            )
        if len(prompt) + params.max_tokens > config.context:
            room = config.context - len(prompt)
            fix = f"ask for max_tokens <= {room}" if room >= 1 else f"shorten it to at most {config.context - 1} tokens"
            raise ValueError(
                f"a prompt of {len(prompt)} tokens plus max_tokens={params.max_tokens} exceeds the model's context "
                f"of {config.context} tokens; shorten the prompt or {fix}"
            )
        # No seed: draw one from PyTorch's global generator (so torch.manual_seed makes a run repeatable).
        seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, ()).item())
        generator = torch.Generator(device=self.device).manual_seed(seed)
        request = _Request(self._issued, prompt, params, generator, TextStream(self.tokenizer, params.stop))
        if params.repetition_penalty != 1.0:
            request.seen = torch.zeros(config.vocab_size, dtype=torch.bool, device=self.device)
            request.seen[prompt] = True
        self._issued += 1
        self._waiting.append(request)
        self._live[request.id] = request
        return request.id

    def cancel(self, request_id: int) -> bool:
        """The request leaves before the next step, whose events end it with "cancelled". Returns False
        when it has already finished (nothing to do); an id never issued raises KeyError."""
        if request_id in self._live:
            self._cancelled.add(request_id)
            return True
        if 0 <= request_id < self._issued:
            return False
        raise KeyError(f"no request has id {request_id}; ids come from Engine.add")

    @property
    def has_work(self) -> bool:
        return bool(self._waiting or self._running)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # --- the loop ---------------------------------------------------------------------------------

    def step(self) -> list[Event]:
        """Admit waiting requests into free rows, then advance every running request by one token."""
        events: list[Event] = []
        with torch.inference_mode():
            if self._cancelled:
                self._drop_cancelled(events)
            free = self.max_batch_size - len(self._running)
            newcomers = [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]
            if self._running:
                logits, _ = self.model(
                    self._next_input[:, None], positions=self._cache.real_lengths[:, None],
                    cache=self._cache, last_only=True,
                )  # fmt: skip
                tokens = self._choose(self._running, logits[:, -1])
                alive = self._record(self._running, tokens, events)
                if len(alive) == len(self._running):
                    self._next_input = tokens
                else:
                    self._keep(alive, tokens)
            if newcomers:
                cache, logits = self._prefill(newcomers)
                tokens = self._choose(newcomers, logits)
                alive = self._record(newcomers, tokens, events)
                if alive:
                    self._join(cache, [newcomers[i] for i in alive], tokens, alive)
        return events

    def run(
        self, prompts: Sequence[Sequence[int] | str], params: SamplingParams | Sequence[SamplingParams] | None = None
    ) -> list[Completion]:
        """Generate for every prompt to the end, batched. A prompt is token ids, or text (encoded with
        every special token allowed, as a rendered chat needs). `params`: one for all, or one per prompt."""
        if self.has_work:
            raise RuntimeError(
                f"run() drives the engine itself, but {self.running + self.waiting} requests are already in it; "
                f"finish or cancel them first, or keep calling step()"
            )
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise TypeError("prompts must be a list of prompts (token-id lists or strings)")
        params = SamplingParams() if params is None else params
        many = params if not isinstance(params, SamplingParams) else [params] * len(prompts)
        if len(many) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(many)} SamplingParams; give one, or one per prompt")
        ids = [p if not isinstance(p, str) else self.tokenizer.encode(p, allowed_special="all") for p in prompts]
        requests = [self._live[self.add(prompt, p)] for prompt, p in zip(ids, many)]
        while self.has_work:
            self.step()
        return [Completion(r.tokens, r.stream.text, r.finish_reason, len(r.prompt)) for r in requests]

    # --- inside a step ----------------------------------------------------------------------------

    def _prefill(self, newcomers: list[_Request]) -> tuple[BatchCache, torch.Tensor]:
        """Run the newcomers' prompts together (left-padded) into a cache of their own: (cache, last logits)."""
        prompts = [r.prompt for r in newcomers]
        idx, is_real = left_pad(prompts, 0, self.device)
        padding_mask = None if bool(is_real.all()) else is_real
        longest = idx.size(1)
        room = min(longest + max(r.params.max_tokens for r in newcomers), self.model.config.context)
        cache = BatchCache(self.model.config, len(newcomers), room)
        logits, _ = self.model(idx, padding_mask=padding_mask, cache=cache, last_only=True)
        return cache, logits[:, -1]

    def _choose(self, requests: list[_Request], logits: torch.Tensor) -> torch.Tensor:
        seen = [r.seen for r in requests] if any(r.seen is not None for r in requests) else None
        return choose(logits, [r.params for r in requests], seen, [r.generator for r in requests])

    def _record(self, requests: list[_Request], tokens: torch.Tensor, events: list[Event]) -> list[int]:
        """Turn each request's new token into an Event; returns the rows that go on."""
        alive = []
        for row, (request, token) in enumerate(zip(requests, tokens.tolist())):
            event = self._advance(request, token)
            events.append(event)
            if event.finish_reason is None:
                alive.append(row)
        return alive

    def _advance(self, request: _Request, token: int) -> Event:
        stream, finish = request.stream, None
        if token in self.end_tokens:
            text, finish = stream.finish(), "stop"
        else:
            request.tokens.append(token)
            text = stream.push(token)
            if stream.stopped:
                finish = "stop"
            elif len(request.tokens) >= request.params.max_tokens:
                text, finish = text + stream.finish(), "length"
            elif request.seen is not None:
                request.seen[token] = True
        if finish is not None:
            self._finish(request, finish)
        return Event(request.id, token, text, finish)

    def _finish(self, request: _Request, reason: str) -> None:
        request.finish_reason = reason
        del self._live[request.id]
        self._cancelled.discard(request.id)

    def _keep(self, rows: list[int], tokens: torch.Tensor) -> None:
        """Only `rows` of the running batch go on, feeding `tokens[rows]` next."""
        self._running = [self._running[i] for i in rows]
        if not rows:
            self._cache, self._next_input = None, None
            return
        self._cache.keep(rows)
        self._next_input = tokens[torch.tensor(rows, device=tokens.device)]

    def _join(self, cache: BatchCache, requests: list[_Request], tokens: torch.Tensor, rows: list[int]) -> None:
        """Newcomers that go on join the running batch (their cache rows after the others')."""
        if len(rows) < cache.batch_size:
            cache.keep(rows)
        tokens = tokens[torch.tensor(rows, device=tokens.device)]
        if self._cache is None:
            self._cache, self._next_input = cache, tokens
        else:
            self._cache.append(cache)
            self._next_input = torch.cat([self._next_input, tokens])
        self._running += requests

    def _drop_cancelled(self, events: list[Event]) -> None:
        cancelled = self._cancelled
        for request in [r for r in self._waiting if r.id in cancelled]:
            self._waiting.remove(request)
            events.append(Event(request.id, None, request.stream.finish(), "cancelled"))
            self._finish(request, "cancelled")
        gone = [r for r in self._running if r.id in cancelled]
        if gone:
            for request in gone:
                events.append(Event(request.id, None, request.stream.finish(), "cancelled"))
                self._finish(request, "cancelled")
            alive = [row for row, r in enumerate(self._running) if r.finish_reason is None]
            self._keep(alive, self._next_input)
