"""The shape of a transformer, in one dataclass.

Every choice the course compares is a field here: how positions are encoded (learned, sinusoidal,
rotary), which norm (LayerNorm, RMSNorm), which MLP (GELU, SwiGLU), how many key/value heads the
attention keeps (grouped-query attention), and whether the model looks only backwards (a decoder,
trained to predict the next token) or both ways (an encoder, trained to fill in masked tokens).
The defaults are GPT-2 small's, so `GPTConfig()` is the model OpenAI released in 2019.

A config is checked when it is made, so a bad shape fails here, with the numbers, rather than as a
reshape error deep inside the first forward pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

POSITIONS = ("learned", "sinusoidal", "rope")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257  # GPT-2's BPE: 50,000 merges + 256 bytes + <|endoftext|>
    context: int = 1024  # the longest sequence the model reads, in tokens
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768  # the width of the residual stream
    n_kv_head: int | None = None  # heads of keys/values: None = n_head (multi-head), 1 = multi-query
    mlp_hidden: int | None = None  # None: 4 * n_embd for GELU, ~8/3 * n_embd for SwiGLU (same parameters)
    position: str = "learned"  # "learned" (GPT-2), "sinusoidal" (the 2017 Transformer), "rope" (LLaMA)
    norm: str = "layernorm"  # "layernorm" (GPT-2) or "rmsnorm" (LLaMA)
    mlp: str = "gelu"  # "gelu" (GPT-2, tanh approximation) or "swiglu" (LLaMA)
    bias: bool = True  # biases in the linear layers and LayerNorm, as GPT-2 has them
    tie_weights: bool = True  # the output head reuses the token embedding matrix
    causal: bool = True  # False: attend both ways (an encoder for masked language modelling)
    dropout: float = 0.0
    norm_eps: float = 1e-5
    rope_theta: float = 10_000.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd={self.n_embd} does not divide by n_head={self.n_head}: every head gets "
                f"n_embd / n_head dimensions; pick n_head among the divisors of {self.n_embd}"
            )
        if self.n_kv_head is not None and (self.n_kv_head < 1 or self.n_head % self.n_kv_head):
            raise ValueError(
                f"n_head={self.n_head} does not divide by n_kv_head={self.n_kv_head}: each key/value "
                f"head serves a whole group of query heads; pick n_kv_head among the divisors of {self.n_head}"
            )
        for name, allowed in (("position", POSITIONS), ("norm", NORMS), ("mlp", MLPS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"GPTConfig.{name}={getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        if self.position == "rope" and self.head_dim % 2:
            raise ValueError(f"rotary positions rotate pairs of dimensions: head_dim={self.head_dim} must be even")
        if self.position == "sinusoidal" and self.n_embd % 2:
            raise ValueError(f"sinusoidal positions pair sines and cosines: n_embd={self.n_embd} must be even")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        if self.mlp_hidden is not None and self.mlp_hidden < 1:
            raise ValueError(f"mlp_hidden={self.mlp_hidden} must be positive (or None for the usual width)")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def hidden(self) -> int:
        """The MLP's inner width. SwiGLU has three matrices instead of two, so 2/3 of 4x keeps the count."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        if self.mlp == "gelu":
            return 4 * self.n_embd
        return 64 * -(-8 * self.n_embd // (3 * 64))  # 8/3 n_embd, rounded up to a multiple of 64

    def replace(self, **changes) -> GPTConfig:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)


# Named sizes. GPT-2's are the published ones; the course's follow its presets (minilm.presets):
# `ci` runs in a second inside tests, `cpu` trains in minutes on a laptop, `gpu` in minutes on one GPU.
# The course's vocabulary size comes from its tokenizer; the values here are defaults to override.
SIZES: dict[str, dict] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),  # 124M parameters
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),  # 1558M
}  # the course's own sizes are the "pretrain" rows of minilm.presets.PRESETS


def config_named(name: str, **overrides) -> GPTConfig:
    """The config of a named size (see `SIZES`), with `overrides` applied: `config_named("gpt2", vocab_size=4096)`."""
    if name not in SIZES:
        raise ValueError(f"no model size named {name!r}; known sizes: {', '.join(SIZES)}")
    return GPTConfig(**{**SIZES[name], **overrides})
