"""Self-attention: every position looks at the others and takes a weighted mix of what it finds.

Each head projects the stream into queries, keys and values; position t's output is
softmax(q_t . k_s / sqrt(d)) over the positions s it may see, times the values v_s. A decoder may see
only s <= t (the causal mask), so that predicting the next token cannot peek at it; an encoder
sees every s.

`attention_by_hand` writes this out with plain matrix products, for reading; the model calls
PyTorch's fused `scaled_dot_product_attention`, which computes the same thing without storing the
T x T matrix of weights (a test checks the two agree). Grouped-query attention (Ainslie et al., 2023)
keeps fewer key/value heads than query heads, each shared by a group of query heads: the same model
quality for a fraction of the KV cache, which is what limits how many sequences a server can decode
at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from minilm.model.config import GPTConfig
from minilm.model.layers import apply_rotary


def repeat_kv(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, kv_heads, S, D) -> (B, n_head, S, D): each key/value head repeated for its group of query heads."""
    batch, kv_heads, length, dim = x.shape
    if kv_heads == n_head:
        return x
    group = n_head // kv_heads
    return x[:, :, None].expand(batch, kv_heads, group, length, dim).reshape(batch, n_head, length, dim)


def causal_mask(query_length: int, key_length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, S) booleans, True where query t may see key s. Queries are the last T of the S positions."""
    past = key_length - query_length
    query = torch.arange(past, key_length, device=device)[:, None]
    return query >= torch.arange(key_length, device=device)[None, :]


def attention_by_hand(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention as matrix products: returns (output (B, H, T, D), weights (B, H, T, S)).

    q is (B, H, T, D); k and v are (B, H_kv, S, D) with H_kv dividing H. `mask` is boolean and
    broadcasts to (B, H, T, S): True where a query may look (the convention of
    `scaled_dot_product_attention`); None lets every query see every key.
    """
    k, v = repeat_kv(k, q.size(1)), repeat_kv(v, q.size(1))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, S): how well t matches s
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: no weight on hidden keys
    weights = torch.softmax(scores.float(), dim=-1).type_as(q)  # each row sums to 1
    return weights @ v, weights


class KVCache:
    """Keys and values of every layer for the positions seen so far, so a decoding step computes
    attention for its one new token instead of the whole sequence again.

    Storage for `max_length` positions is allocated once, at the first update, in the dtype and on
    the device of the keys it receives (so it follows autocast), rather than concatenated at every
    step. `key_mask` marks the real tokens among the positions: with a batch of prompts of
    different lengths, the left padding must stay invisible to every later query.
    The model fills a cache in `forward(..., cache=cache)`; `minilm.model.generate` uses it.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_length: int):
        if max_length > config.context:
            raise ValueError(
                f"a KV cache of {max_length} positions exceeds the model's context of {config.context}"
            )
        self.shape = (config.n_layer, batch_size, config.kv_heads, max_length, config.head_dim)
        self.keys: torch.Tensor | None = None  # (layers, B, H_kv, max_length, D)
        self.values: torch.Tensor | None = None
        self.key_mask: torch.Tensor | None = None  # (B, max_length): True for real tokens
        self.length = 0  # positions filled so far, in every layer

    @property
    def batch_size(self) -> int:
        return self.shape[1]

    @property
    def max_length(self) -> int:
        return self.shape[3]

    def extend_mask(self, is_real: torch.Tensor) -> torch.Tensor:
        """Record which of the new positions (B, T) are real tokens; return the mask of all keys (B, length + T)."""
        if self.key_mask is None:
            self.key_mask = torch.ones(self.batch_size, self.max_length, dtype=torch.bool, device=is_real.device)
        end = self.length + is_real.size(1)
        self.key_mask[:, self.length : end] = is_real
        return self.key_mask[:, :end]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's keys and values for the new positions; return those of all positions so far."""
        if self.keys is None:
            self.keys = torch.zeros(self.shape, dtype=k.dtype, device=k.device)
            self.values = torch.zeros(self.shape, dtype=v.dtype, device=v.device)
        start, end = self.length, self.length + k.size(2)
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, count: int) -> None:
        """Called once every layer has stored its keys and values for `count` new positions."""
        self.length += count


class CausalSelfAttention(nn.Module):
    """Multi-head (or grouped-query) self-attention with one fused projection for q, k and v.

    The name is GPT-2's; with `config.causal=False` the same module attends both ways.
    """

    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.layer = layer  # which slot of a KV cache is this layer's
        self.n_head, self.kv_heads, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        self.causal = config.causal
        self.dropout = config.dropout
        qkv_width = (config.n_head + 2 * config.kv_heads) * config.head_dim
        self.c_attn = nn.Linear(config.n_embd, qkv_width, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, C) -> (output (B, T, C), attention weights (B, H, T, S) if asked for, else None).

        `mask` (boolean, broadcasting to (B, H, T, S)) is given when the plain causal or full pattern
        does not do: a cache with earlier positions, or padding. Without one, a decoder uses the fused
        kernel's own causal mask.
        """
        batch, length, width = x.shape
        q, k, v = self.c_attn(x).split(
            [self.n_head * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim], dim=-1
        )
        q = q.view(batch, length, self.n_head, self.head_dim)
        k = k.view(batch, length, self.kv_heads, self.head_dim)
        v = v.view(batch, length, self.kv_heads, self.head_dim)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, D)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)

        if return_weights:
            if mask is None and self.causal:
                mask = causal_mask(length, k.size(2), x.device)
            y, weights = attention_by_hand(q, k, v, mask)
        else:
            weights = None
            y = F.scaled_dot_product_attention(
                q,
                repeat_kv(k, self.n_head),
                repeat_kv(v, self.n_head),
                attn_mask=mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=self.causal and mask is None,
            )
        y = y.transpose(1, 2).reshape(batch, length, width)  # heads side by side again
        return self.resid_dropout(self.c_proj(y)), weights
