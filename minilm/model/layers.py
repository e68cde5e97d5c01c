"""The parts a transformer block is made of, besides attention: norms, MLPs and positions.

Each comes in the variants the course compares, GPT-2's first and a newer one after it:

- norms keep the residual stream at a steady scale: LayerNorm (centre, then scale; GPT-2) and
  RMSNorm (scale only, one reduction fewer; LLaMA);
- MLPs work on each position alone: GELU (GPT-2) and SwiGLU (a gated unit; PaLM, LLaMA);
- positions tell attention where each token sits, which it cannot see on its own: learned absolute
  embeddings (GPT-2), fixed sinusoids (the 2017 Transformer), and rotary embeddings (RoPE: rotate
  queries and keys by an angle proportional to the position, so their dot product depends only on
  the distance between two tokens).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from minilm.model.config import GPTConfig

# --- norms --------------------------------------------------------------------------------------


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's always has one): (x - mean) / std * weight + bias."""

    def __init__(self, dim: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """x / rms(x) * weight: no centring and no bias, which works as well and costs less (Zhang & Sennrich, 2019)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The mean of squares is taken in float32: in bfloat16 it loses too many digits.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight.type_as(x)


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, config.norm_eps)
    return LayerNorm(config.n_embd, config.bias, config.norm_eps)


# --- MLPs ---------------------------------------------------------------------------------------


class MLP(nn.Module):
    """GPT-2's MLP: widen 4x, GELU, project back. GPT-2 uses GELU's tanh approximation ("gelu_new")."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.hidden, bias=config.bias)
        self.c_proj = nn.Linear(config.hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class SwiGLU(nn.Module):
    """A gated MLP (Shazeer, 2020): silu(x W_gate) * (x W_up), then W_down.

    The gate and up projections are one matrix of twice the width, so one matmul computes both.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 2 * config.hidden, bias=config.bias)  # [gate | up]
        self.c_proj = nn.Linear(config.hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.c_fc(x).chunk(2, dim=-1)
        return self.dropout(self.c_proj(F.silu(gate) * up))


def make_mlp(config: GPTConfig) -> nn.Module:
    return SwiGLU(config) if config.mlp == "swiglu" else MLP(config)


# --- positions ----------------------------------------------------------------------------------
# Positions are given as a tensor of integers, (T,) or (B, T), rather than implied by the index in the
# sequence: a cached decoding step sits at position `past`, and a left-padded prompt starts at 0
# after its padding. Each module below turns positions into what the model adds or rotates.


class LearnedPositions(nn.Module):
    """GPT-2's positions: one trained vector per position, added to the token embedding."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(config.context, config.n_embd))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return F.embedding(positions, self.weight)


def sinusoid_table(length: int, dim: int, base: float = 10_000.0) -> torch.Tensor:
    """(length, dim): sin(p / base^(2i/dim)) in even columns, cos in odd ones (Vaswani et al., 2017)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(base) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class SinusoidalPositions(nn.Module):
    """Fixed sinusoids, added like learned positions but with nothing to train.

    Sines and cosines reach 1, and token embeddings start at 0.02 (GPT-2's initialisation): added
    as they are, positions would drown out which token is which. The 2017 Transformer scaled its
    embeddings up by sqrt(n_embd); we scale the sinusoids down to the embeddings' size instead.
    The table is a buffer that is not saved (persistent=False): it is rebuilt from the config.
    """

    scale = 0.02

    def __init__(self, config: GPTConfig):
        super().__init__()
        table = self.scale * sinusoid_table(config.context, config.n_embd)
        self.register_buffer("table", table, persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return F.embedding(positions, self.table)


class RotaryEmbedding(nn.Module):
    """Rotary position embeddings (Su et al., 2021), shared by every attention layer.

    Dimension pair (i, i + head_dim/2) of a query or key at position p is rotated by the angle
    p * theta^(-2i/head_dim). Rotations preserve length and compose by adding angles, so the dot
    product of a query at p and a key at s depends on p - s only: attention sees relative positions.
    (This pairs the two halves of the head, as GPT-NeoX and HF LLaMA do; the paper pairs neighbours.
    The two are the same up to a fixed permutation of the weights.)
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        half = config.head_dim // 2
        inv_freq = config.rope_theta ** (-torch.arange(half, dtype=torch.float32) / half)
        angles = torch.arange(config.context, dtype=torch.float32)[:, None] * inv_freq  # (context, half)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for `positions` (T,) or (B, T), shaped to broadcast over (B, T, heads, head_dim/2)."""
        cos, sin = F.embedding(positions, self.cos), F.embedding(positions, self.sin)
        return cos.unsqueeze(-2), sin.unsqueeze(-2)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x1, x2) of `x` (B, T, heads, head_dim) by the angles whose cos and sin are given."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
