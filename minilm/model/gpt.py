"""The GPT: a stack of transformer blocks between an embedding and an output head.

    tokens -> token embedding (+ positions) -> [block] x n_layer -> final norm -> logits
    block:  x = x + attention(norm(x));  x = x + mlp(norm(x))

Each block reads the *residual stream* x and adds its result back to it (pre-norm, as GPT-2 does:
the norm sits inside each branch, so the stream itself passes through untouched and gradients flow
straight from the loss to the first layer). The output head turns the final stream into one score
(logit) per vocabulary token; it shares its matrix with the token embedding (weight tying), which
saves parameters and helps small models.

With `config.causal=True` (the default) this is a decoder, trained to predict token t+1 from tokens
0..t. With `causal=False` the same blocks attend both ways: an encoder, trained with masked language
modelling (`mask_tokens`, as BERT was) to fill in tokens hidden from it.

`forward(idx, targets)` returns (logits, loss). For looking inside, pass a `Trace` (or call
`inspect`): it records the attention weights and the residual stream of the layers asked for.
Without one the forward pass records nothing and uses the fused attention kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from minilm.model.attention import CausalSelfAttention, KVCache, causal_mask
from minilm.model.config import GPTConfig
from minilm.model.layers import LearnedPositions, RotaryEmbedding, SinusoidalPositions, make_mlp, make_norm

IGNORE_INDEX = -100  # targets with this value add nothing to the loss (PyTorch's and HF's convention)


@dataclass
class Trace:
    """What a forward pass recorded, for the layers in `layers` (None: every layer).

    `residual[i]` is the residual stream entering block i, (B, T, C): `residual[0]` is the embedding
    and `residual[n_layer]` the stream after the last block (before the final norm).
    `attention[i]` is block i's attention weights, (B, heads, T, S), each row summing to 1.
    """

    layers: set[int] | None = None
    residual: dict[int, torch.Tensor] = field(default_factory=dict)
    attention: dict[int, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None

    def wants(self, layer: int) -> bool:
        return self.layers is None or layer in self.layers


class Block(nn.Module):
    """One transformer block: attention mixes information across positions, the MLP within each."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = make_mlp(config)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attn(self.ln_1(x), rotary, mask, cache, return_weights)
        x = x + attended
        x = x + self.mlp(self.ln_2(x))
        return x, weights


class GPT(nn.Module):
    def __init__(self, config: GPTConfig, seed: int = 0):
        super().__init__()
        self.config = config
        # Building the layers draws from PyTorch's global generator; fork it so that making a model
        # leaves the caller's random state alone. The weights themselves come from `seed`.
        with torch.random.fork_rng(devices=[]):
            self.transformer = nn.ModuleDict(
                dict(
                    wte=nn.Embedding(config.vocab_size, config.n_embd),
                    drop=nn.Dropout(config.dropout),
                    h=nn.ModuleList(Block(config, layer) for layer in range(config.n_layer)),
                    ln_f=make_norm(config),
                )
            )
            if config.position == "learned":
                self.transformer["wpe"] = LearnedPositions(config)
            elif config.position == "sinusoidal":
                self.transformer["wpe"] = SinusoidalPositions(config)
            self.rotary = RotaryEmbedding(config) if config.position == "rope" else None
            # Tied: the head is the embedding matrix itself (no second copy, one key in the state dict).
            self.lm_head = None if config.tie_weights else nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.init_weights(seed)

    def init_weights(self, seed: int = 0) -> None:
        """GPT-2's initialisation: N(0, 0.02) for matrices and embeddings, zero biases, unit norm gains.

        The projections that write into the residual stream (attn.c_proj, mlp.c_proj) get
        0.02 / sqrt(2 * n_layer): the stream is a sum of 2 * n_layer such writes, so its variance at
        the top stays the same however deep the model is.
        """
        generator = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, param in self.named_parameters():
            with torch.no_grad():
                if param.dim() >= 2:
                    std = residual_std if name.endswith("c_proj.weight") else 0.02
                    nn.init.normal_(param, 0.0, std, generator=generator)
                elif name.endswith("bias"):
                    param.zero_()
                else:  # the gains of LayerNorm / RMSNorm
                    param.fill_(1.0)

    def output_weight(self) -> torch.Tensor:
        return self.transformer.wte.weight if self.lm_head is None else self.lm_head.weight

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        positions: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        trace: Trace | None = None,
        last_only: bool = False,
        only_trained: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token ids (B, T) -> (logits (B, T, vocab), mean cross-entropy against `targets` or None).

        Targets equal to -100 are ignored (for masked language modelling, and for padding).
        Optional, for generation and inspection:
        - `padding_mask` (B, T): False for padding tokens, which no query will see;
        - `positions` (T,) or (B, T): each token's position; by default 0, 1, 2, ... counting real
          tokens only, and continuing after those already in `cache`;
        - `cache`: a `KVCache` to read earlier keys and values from and append this step's to;
        - `trace`: a `Trace` to record attention weights and residual streams into;
        - `last_only`: compute logits for the last position only (all a sampler needs);
        - `only_trained` (with `targets`): compute the head only where the target is not ignored, and
          return those logits alone, (n, vocab). The loss is the same; the work is less where most
          targets are ignored: fine-tuning trains on the assistant's tokens only (a sixth of a row),
          and the head over a 4,096-token vocabulary is about half of a small model's work per token.
          Training uses it; compiled training does not (the number of positions changes each batch,
          where a compiled graph wants fixed shapes).
        """
        if targets is not None and targets.shape != idx.shape:
            raise ValueError(f"targets have shape {tuple(targets.shape)} but idx has {tuple(idx.shape)}")
        x = self.hidden_states(idx, positions=positions, padding_mask=padding_mask, cache=cache, trace=trace)
        if last_only and targets is None:
            x = x[:, -1:]
        if only_trained and targets is not None:
            trained = targets != IGNORE_INDEX
            x, targets = x[trained], targets[trained]
        logits = F.linear(x, self.output_weight())
        if trace is not None:
            trace.logits = logits
        if targets is None:
            return logits, None
        # The loss in float32 even under autocast: log-softmax over the vocabulary needs the digits.
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return logits, loss

    def hidden_states(
        self,
        idx: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        trace: Trace | None = None,
    ) -> torch.Tensor:
        """Token ids (B, T) -> the final stream after the final norm (B, T, n_embd): what the head reads.

        `forward` is this followed by the output head; a new head (a classifier's, say) reads it
        directly. The keyword arguments are `forward`'s.
        """
        past = cache.length if cache is not None else 0
        self._check_input(idx, padding_mask, past)
        length = idx.size(1)
        if positions is None:
            positions = self._positions(idx, padding_mask, cache)

        x = self.transformer.wte(idx)
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(positions)
        x = self.transformer.drop(x)
        rotary = self.rotary(positions) if self.rotary is not None else None
        mask = self._attention_mask(idx, padding_mask, cache)

        for layer, block in enumerate(self.transformer.h):
            recording = trace is not None and trace.wants(layer)
            if recording:
                trace.residual[layer] = x
            x, weights = block(x, rotary, mask, cache, return_weights=recording)
            if recording:
                trace.attention[layer] = weights
        if trace is not None and trace.wants(self.config.n_layer):
            trace.residual[self.config.n_layer] = x
        if cache is not None:
            cache.advance(length)
        return self.transformer.ln_f(x)

    @torch.no_grad()
    def inspect(self, idx: torch.Tensor, layers: set[int] | None = None) -> Trace:
        """Run `idx` (B, T) and return what every layer (or those in `layers`) did: see `Trace`."""
        trace = Trace(layers=layers)
        self(idx, trace=trace)
        return trace

    def _positions(self, idx: torch.Tensor, padding_mask: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
        """0, 1, 2, ... for the real tokens (padding repeats its neighbour's), after those in `cache`."""
        past = cache.length if cache is not None else 0
        if padding_mask is None and (cache is None or cache.key_mask is None):
            return torch.arange(past, past + idx.size(1), device=idx.device)  # (T,): the same for every row
        is_real = padding_mask if padding_mask is not None else torch.ones_like(idx, dtype=torch.bool)
        before = cache.key_mask[:, :past].sum(dim=1, keepdim=True) if cache is not None and past else 0
        return before + (is_real.long().cumsum(dim=1) - 1).clamp(min=0)

    def _attention_mask(
        self, idx: torch.Tensor, padding_mask: torch.Tensor | None, cache: KVCache | None
    ) -> torch.Tensor | None:
        """The (B, 1, T, S) mask of who may see whom, or None when the fused kernel's own pattern does."""
        if padding_mask is None and cache is None:
            return None  # causal (decoder) or full (encoder): scaled_dot_product_attention knows both
        length = idx.size(1)
        key_is_real = padding_mask if padding_mask is not None else torch.ones_like(idx, dtype=torch.bool)
        if cache is not None:
            key_is_real = cache.extend_mask(key_is_real)
        keys = key_is_real.size(1)
        mask = key_is_real[:, None, None, :]  # (B, 1, 1, S)
        if self.config.causal:
            mask = mask & causal_mask(length, keys, idx.device)
        # Every query may see itself. This only matters for padding queries, which would otherwise see
        # nothing: softmax over nothing but -inf is NaN, and NaN would spread through later layers.
        itself = torch.arange(keys - length, keys, device=idx.device)[:, None] == torch.arange(keys, device=idx.device)
        return mask | itself

    def _check_input(self, idx: torch.Tensor, padding_mask: torch.Tensor | None, past: int) -> None:
        """Clear errors for input that would otherwise fail deep inside (or silently, on a GPU)."""
        config = self.config
        if idx.dim() != 2 or idx.dtype.is_floating_point or idx.dtype == torch.bool:
            raise ValueError(
                f"idx must hold token ids, shape (batch, time) and an integer dtype; got {tuple(idx.shape)} {idx.dtype}"
            )
        length = idx.size(1)
        if past + length > config.context:
            already = f" after {past} cached positions" if past else ""
            raise ValueError(
                f"a sequence of {length} tokens{already} is longer than the context of {config.context} "
                f"tokens; crop it to the last {config.context - past} (idx[:, -{config.context - past}:]) "
                f"or use a model with a larger context"
            )
        if padding_mask is not None and padding_mask.shape != idx.shape:
            raise ValueError(f"padding_mask has shape {tuple(padding_mask.shape)} but idx has {tuple(idx.shape)}")
        # Reading the ids back costs a sync on a GPU, and a compiled graph cannot raise: skip it there.
        if not torch.compiler.is_compiling():
            outside = (idx < 0) | (idx >= config.vocab_size)
            if outside.any():
                row, column = (int(i) for i in outside.nonzero()[0])
                raise ValueError(
                    f"token id {int(idx[row, column])} (batch row {row}, position {column}) is outside the "
                    f"vocabulary of {config.vocab_size} ids (0..{config.vocab_size - 1}); the tokenizer and "
                    f"GPTConfig.vocab_size must agree"
                )

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's, but a state dict from a different config fails with the shapes that differ."""
        if strict:
            check_state_dict(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def check_state_dict(model: GPT, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise ValueError naming every key and shape where `state_dict` does not fit `model`."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    given = {name: tuple(t.shape) for name, t in state_dict.items()}
    problems = [
        f"{name}: checkpoint {given[name]}, model {shape}"
        for name, shape in expected.items()
        if name in given and given[name] != shape
    ]
    missing, unexpected = sorted(expected.keys() - given.keys()), sorted(given.keys() - expected.keys())
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
    if not problems:
        return
    hints = []
    if "transformer.wte.weight" in given:
        vocab, width = given["transformer.wte.weight"]
        if vocab != model.config.vocab_size:
            hints.append(f"vocab_size {vocab} != {model.config.vocab_size}")
        if width != model.config.n_embd:
            hints.append(f"n_embd {width} != {model.config.n_embd}")
    layers = {int(name.split(".")[2]) for name in given if name.startswith("transformer.h.")}
    if layers and len(layers) != model.config.n_layer:
        hints.append(f"n_layer {len(layers)} != {model.config.n_layer}")
    hint = f" (checkpoint vs model: {', '.join(hints)})" if hints else ""
    raise ValueError(
        f"the state dict was made for a different GPTConfig{hint}; build the model with the checkpoint's "
        f"config. Differences: " + "; ".join(problems[:8])
    )


# --- masked language modelling ------------------------------------------------------------------


def mask_tokens(
    idx: torch.Tensor, mask_token: int, vocab_size: int, generator: torch.Generator, rate: float = 0.15
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's recipe: pick `rate` of the positions to predict; of those, 80% become `mask_token`,
    10% a random token and 10% stay as they are (so the model cannot learn that only [MASK] matters).

    Returns (inputs, targets); targets are -100 wherever there is nothing to predict.
    """
    draw = torch.rand(idx.shape, generator=generator, device=idx.device)
    chosen = draw < rate
    targets = torch.where(chosen, idx, torch.full_like(idx, IGNORE_INDEX))
    inputs = torch.where(chosen & (draw < 0.8 * rate), torch.full_like(idx, mask_token), idx)
    random_tokens = torch.randint(vocab_size, idx.shape, generator=generator, device=idx.device)
    inputs = torch.where(chosen & (draw >= 0.8 * rate) & (draw < 0.9 * rate), random_tokens, inputs)
    return inputs, targets


# --- training helpers ---------------------------------------------------------------------------


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.95)
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only (not on biases and norm gains, which
    set scales rather than store knowledge); the fused kernel on CUDA, the multi-tensor one elsewhere."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    on_cuda = all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=on_cuda, foreach=None if on_cuda else True)
