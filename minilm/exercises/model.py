"""Checkers for the exercises of notebook 03 (transformer): scaled dot-product attention, the causal
mask, rotary positions, the parameters of a block, and one step of attention with a KV cache.

Each checker draws fresh random tensors (from a new seed every run, named in a failure), runs the
learner's function and the package's own, and passes or fails on the first input where they differ. The
inputs are made to land where a first attempt usually goes wrong: more keys than queries (a mask that
must be offset), heads of 64 dimensions (where forgetting the 1/sqrt(d) scale shows), positions that
are not 0, 1, 2, ..., configs without biases or with fewer key/value heads than query heads, and an
empty cache.
"""

from __future__ import annotations

import numbers
import random

import torch

from minilm.exercises import ExerciseFailed, _short, call_learner, checker, failure, passed, torch_generator
from minilm.model.accounting import parameter_counts
from minilm.model.attention import attention_by_hand, causal_mask
from minilm.model.config import SIZES, GPTConfig
from minilm.model.layers import RotaryEmbedding, apply_rotary

# --- shared helpers ----------------------------------------------------------------------------------


def _summary(value) -> str:
    """A tensor as its shape and dtype (and, for a small boolean one, its values); anything else as its repr."""
    if isinstance(value, torch.Tensor):
        text = f"{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
        if value.dtype == torch.bool and value.numel() <= 64:
            text += " " + _short(value.int().tolist(), 300)
        elif not value.dtype.is_floating_point and value.numel() <= 16:
            text += " " + _short(value.tolist())
        return text
    return _short(value)


def _inputs(**named) -> str:
    return ", ".join(f"{name}={_summary(value)}" for name, value in named.items())


def _compare_tensor(title: str, got, want: torch.Tensor, inputs: str, hint: str, what: str = "the output",
                    atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Fail unless `got` is a tensor of `want`'s shape whose values are close to `want`'s."""
    if not isinstance(got, torch.Tensor):
        raise failure(title, f"{what} must be a torch.Tensor, got {_short(got)}", inputs, hint)
    if tuple(got.shape) != tuple(want.shape):
        raise failure(title, f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}", inputs, hint)
    got_float = got.detach().to(torch.float64)
    want_float = want.detach().to(torch.float64)
    wrong = ~torch.isclose(got_float, want_float, atol=atol, rtol=rtol)
    if bool(wrong.any()):
        index = tuple(int(i) for i in wrong.nonzero()[0])
        diff = (got_float - want_float).abs().nan_to_num(float("inf")).max().item()
        raise failure(
            title,
            f"{what} is wrong: the largest difference is {diff:.3g}; at index {index} "
            f"expected {want_float[index].item():.6g}, got {got_float[index].item():.6g}",
            inputs, hint,
        )


# --- Exercise 1: scaled dot-product attention ----------------------------------------------------------


def _random_mask(generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    """A random boolean mask in which every query sees at least one key (else softmax has nothing to weigh)."""
    mask = torch.rand(shape, generator=generator) < 0.6
    sees_nothing = ~mask.any(dim=-1, keepdim=True)
    first_key = torch.zeros(shape, dtype=torch.bool)
    first_key[..., 0] = True
    return mask | (sees_nothing & first_key)


def _attention_cases(rng: random.Random) -> list[tuple]:
    generator = torch_generator(rng)
    cases = []
    for k in range(40):
        batch, heads, dim = rng.randint(1, 3), rng.choice([1, 2, 4]), rng.choice([1, 2, 8, 16, 64, 64])
        queries = rng.randint(1, 7)
        keys = queries if k % 3 == 0 else queries + rng.randint(0, 6)
        scale = rng.choice([1.0, 1.0, 3.0])  # larger values: a missing 1/sqrt(d) shows even for small d
        q = scale * torch.randn(batch, heads, queries, dim, generator=generator)
        key = scale * torch.randn(batch, heads, keys, dim, generator=generator)
        value = torch.randn(batch, heads, keys, dim, generator=generator)
        kind = k % 4
        if kind == 0:
            mask = None
        elif kind == 1:
            mask = causal_mask(queries, keys)  # (T, S): the last T of S positions
        elif kind == 2:
            mask = _random_mask(generator, (batch, 1, queries, keys))  # one mask for every head
        else:
            mask = _random_mask(generator, (batch, heads, queries, keys))
        cases.append((q, key, value, mask))
    return cases


@checker
def check_attention(attention, rng: random.Random) -> None:
    """Exercise 1: softmax(q k^T / sqrt(d), masked) v, as `minilm.model.attention_by_hand` computes it."""
    title = "Exercise 1 (scaled dot-product attention)"
    hint = ("scores = q @ k.transpose(-2, -1) / sqrt(d) with d = q.size(-1); where the mask is False set the score "
            "to -inf (scores.masked_fill(~mask, float('-inf'))) *before* the softmax over the keys (dim=-1); "
            "then weights @ v")
    cases = _attention_cases(rng)
    for q, k, v, mask in cases:
        got = call_learner(title, attention, q.clone(), k.clone(), v.clone(), None if mask is None else mask.clone())
        want, _ = attention_by_hand(q, k, v, mask)
        _compare_tensor(title, got, want, _inputs(q=q, k=k, v=v, mask=mask), hint)
    passed(title, f"{len(cases)} cases")


# --- Exercise 2: the causal mask -------------------------------------------------------------------------


@checker
def check_causal_mask(make_causal_mask, rng: random.Random) -> None:
    """Exercise 2: the (T, S) booleans of who may see whom, the T queries being the last of S positions."""
    title = "Exercise 2 (the causal mask)"
    hint = ("query i sits at position i + (S - T) (the queries are the last T of the S positions) and may see "
            "the keys at positions 0 .. i + (S - T), itself included; True means 'may see'")
    cases = [(1, 1), (4, 4), (1, 5), (3, 7)] + [
        (t, t + rng.choice([0, 0, rng.randint(1, 9)])) for t in (rng.randint(1, 12) for _ in range(30))
    ]
    for queries, keys in cases:
        inputs = f"query_length={queries}, key_length={keys}"
        got = call_learner(title, make_causal_mask, queries, keys)
        want = causal_mask(queries, keys)
        if not isinstance(got, torch.Tensor) or got.dtype != torch.bool:
            raise failure(title, f"return a torch.Tensor of booleans (dtype torch.bool), got {_summary(got)}", inputs, hint)
        if tuple(got.shape) != (queries, keys):
            raise failure(title, f"the mask has shape {tuple(got.shape)}, expected {(queries, keys)}", inputs, hint)
        if not torch.equal(got, want):
            raise ExerciseFailed(
                f"❌ {title}: wrong mask\n   on input: {inputs}\n   expected (1 = may see):\n{_rows(want)}\n"
                f"   got:\n{_rows(got)}\n   hint: {hint}")
    passed(title, f"{len(cases)} cases")


def _rows(mask: torch.Tensor, limit: int = 8) -> str:
    lines = ["     " + "".join(str(v) for v in row) for row in mask.int().tolist()[:limit]]
    if mask.size(0) > limit:
        lines.append("     ...")
    return "\n".join(lines)


# --- Exercise 3: rotary positions ------------------------------------------------------------------------


def reference_rotate(x: torch.Tensor, positions: torch.Tensor, theta: float = 10_000.0) -> torch.Tensor:
    """The package's rotation of `x` (B, T, heads, head_dim) at `positions` (T,)."""
    batch, length, heads, head_dim = x.shape
    config = GPTConfig(vocab_size=1, context=int(positions.max()) + 1, n_layer=1, n_head=heads,
                       n_embd=heads * head_dim, position="rope", rope_theta=theta)
    cos, sin = RotaryEmbedding(config)(positions)
    return apply_rotary(x, cos, sin)


@checker
def check_rotate(rotate, rng: random.Random) -> None:
    """Exercise 3: rotate each pair (i, i + d/2) of a query or key at position p by p * theta^(-2i/d)."""
    title = "Exercise 3 (rotary positions)"
    generator = torch_generator(rng)
    hint = ("split the last dimension into halves x1, x2 (pair i is (x1[i], x2[i])); angle[p, i] = p * theta ** (-2 * i / d) "
            "for i = 0 .. d/2 - 1; return cat(x1 * cos - x2 * sin, x1 * sin + x2 * cos); use the given positions, "
            "not 0, 1, 2, ...")
    cases = []
    for k in range(30):
        batch, length, heads, dim = rng.randint(1, 2), rng.randint(1, 6), rng.choice([1, 2, 3]), rng.choice([2, 4, 8, 16, 32])
        if k % 3 == 0:
            positions = torch.arange(length)
        elif k % 3 == 1:
            start = rng.randint(1, 200)  # a chunk decoded after `start` cached positions
            positions = torch.arange(start, start + length)
        else:
            positions = torch.tensor([rng.randint(0, 250) for _ in range(length)])
        theta = rng.choice([10_000.0, 10_000.0, 500_000.0, 100.0])
        cases.append((torch.randn(batch, length, heads, dim, generator=generator), positions, theta))
    for x, positions, theta in cases:
        got = call_learner(title, rotate, x.clone(), positions.clone(), theta)
        want = reference_rotate(x, positions, theta)
        # Angles reach a few hundred radians: float32 sines agree to about 1e-4 however they are computed.
        _compare_tensor(title, got, want, _inputs(x=x, positions=positions) + f", theta={theta:g}", hint, atol=1e-3, rtol=1e-3)
    passed(title, f"{len(cases)} cases")


# --- Exercise 4: the parameters of a block ---------------------------------------------------------------


def reference_block_parameters(config: GPTConfig) -> int:
    """Parameters of one transformer block (two norms, attention, MLP), from `minilm.model.accounting`."""
    counts = parameter_counts(config)
    per_norm = counts["norms"] // (2 * config.n_layer + 1)
    return (counts["attention"] + counts["mlp"]) // config.n_layer + 2 * per_norm


def _block_configs(rng: random.Random) -> list[GPTConfig]:
    gpt2 = [GPTConfig(**SIZES[name]) for name in ("gpt2", "gpt2-medium", "gpt2-xl")]
    llama_like = GPTConfig(n_layer=16, n_head=32, n_kv_head=8, n_embd=2048, norm="rmsnorm", mlp="swiglu",
                           bias=False, position="rope", tie_weights=False)
    configs = gpt2 + [llama_like, GPTConfig(n_layer=2, n_head=4, n_embd=64, bias=False)]
    for _ in range(40):
        n_head = rng.choice([1, 2, 3, 4, 6, 8, 12])
        n_embd = n_head * rng.choice([8, 16, 32, 64])
        divisors = [d for d in range(1, n_head + 1) if n_head % d == 0]
        configs.append(GPTConfig(
            vocab_size=rng.choice([512, 4096, 50257]), n_layer=rng.randint(1, 24), n_head=n_head, n_embd=n_embd,
            n_kv_head=rng.choice([None, None, rng.choice(divisors)]),
            mlp_hidden=rng.choice([None, None, None, rng.randint(1, 10) * 32]),
            norm=rng.choice(["layernorm", "rmsnorm"]), mlp=rng.choice(["gelu", "swiglu"]), bias=rng.random() < 0.6,
            position=rng.choice(["learned", "rope"]) if (n_embd // n_head) % 2 == 0 else "learned",
        ))
    return configs


def _config_summary(config: GPTConfig) -> str:
    shown = ("n_embd", "n_head", "n_kv_head", "mlp", "mlp_hidden", "norm", "bias", "n_layer", "vocab_size")
    return "GPTConfig(" + ", ".join(f"{name}={getattr(config, name)!r}" for name in shown) + f") [hidden={config.hidden}]"


@checker
def check_block_parameters(block_parameters, rng: random.Random) -> None:
    """Exercise 4: the parameters of one transformer block, from its config alone."""
    title = "Exercise 4 (the parameters of a block)"
    hint = ("count ln_1, attention (c_attn makes q for n_head heads and k, v for kv_heads heads of head_dim each; "
            "c_proj is n_embd x n_embd), ln_2 and the MLP (config.hidden wide; SwiGLU has gate and up: twice the "
            "first matrix); a bias is one number per output and exists only when config.bias; LayerNorm has a "
            "weight (and a bias when config.bias), RMSNorm only a weight; the embeddings are not in a block")
    configs = _block_configs(rng)
    for config in configs:
        got = call_learner(title, block_parameters, config)
        want = reference_block_parameters(config)
        if isinstance(got, bool) or not isinstance(got, numbers.Integral) or got != want:
            raise ExerciseFailed(
                f"❌ {title}: wrong count\n   on input: {_config_summary(config)}\n"
                f"   expected: {want:,}\n   got:      {f'{got:,}' if isinstance(got, numbers.Integral) else _short(got)}\n"
                f"   hint: {hint}")
    passed(title, f"{len(configs)} configs, GPT-2's and LLaMA's shapes included")


# --- Exercise 5: one step of attention with a KV cache ---------------------------------------------------


@checker
def check_attention_step(attention_step, rng: random.Random) -> None:
    """Exercise 5: append one token's key and value to the cache and attend to every position so far.

    The learner's step decodes whole sequences token by token, from an empty cache; each step's output
    must equal the same position of full causal attention over the sequence, and the cache must hold
    the keys and values of every position so far.
    """
    title = "Exercise 5 (one step of attention with a KV cache)"
    generator = torch_generator(rng)
    hint = ("k_cache = torch.cat([k_cache, k_new], dim=2) (the same for v): the new position goes last; the new "
            "query is the last position, so it may see every key and needs no mask; with fewer key/value heads "
            "than query heads, key/value head j serves query heads j*g .. j*g+g-1 (g = heads // kv_heads): "
            "k.repeat_interleave(g, dim=1)")
    sequences = 0
    for k in range(12):
        batch, dim, length = rng.randint(1, 3), rng.choice([4, 8, 16, 64]), rng.randint(2, 9)
        # Grouped-query heads where grouping in the wrong order shows: 4 query heads on 2 key/value heads, 6 on 2 or 3.
        heads, kv_heads = [(rng.choice([1, 2, 4]), None), (4, 2), (rng.choice([2, 6]), 1), (6, rng.choice([2, 3]))][k % 4]
        kv_heads = kv_heads or heads
        q = torch.randn(batch, heads, length, dim, generator=generator)
        keys = torch.randn(batch, kv_heads, length, dim, generator=generator)
        values = torch.randn(batch, kv_heads, length, dim, generator=generator)
        full, _ = attention_by_hand(q, keys, values, causal_mask(length, length))
        k_cache = torch.zeros(batch, kv_heads, 0, dim)
        v_cache = torch.zeros(batch, kv_heads, 0, dim)
        for t in range(length):
            inputs = (f"step {t} of a sequence of {length} (a cache of {t} position{'s' if t != 1 else ''}): "
                      + _inputs(q=q[:, :, t:t + 1], k_new=keys[:, :, t:t + 1], v_new=values[:, :, t:t + 1],
                                k_cache=k_cache, v_cache=v_cache))
            result = call_learner(title, attention_step, q[:, :, t:t + 1].clone(), keys[:, :, t:t + 1].clone(),
                                  values[:, :, t:t + 1].clone(), k_cache, v_cache)
            if not isinstance(result, (tuple, list)) or len(result) != 3:
                raise failure(title, f"return (output, k_cache, v_cache), got {_short(result)}", inputs, hint)
            output, k_cache, v_cache = result
            _compare_tensor(title, k_cache, keys[:, :, : t + 1], inputs, hint, what="the returned k_cache")
            _compare_tensor(title, v_cache, values[:, :, : t + 1], inputs, hint, what="the returned v_cache")
            _compare_tensor(title, output, full[:, :, t:t + 1], inputs, hint,
                            what="the output (compared with full causal attention at this position)")
        sequences += 1
    passed(title, f"{sequences} sequences decoded token by token, grouped-query heads included")
