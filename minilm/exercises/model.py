"""Checkers for the exercises of notebook 03 (transformer): scaled dot-product attention, rotary positions,
one step of attention with a KV cache, a transformer block, and the model's forward pass.

Each checker draws fresh random inputs (from a new seed every run, named in a failure), runs the learner's
code and the package's own, and passes or fails on the first input where they differ. The inputs are made to
land where a first attempt usually goes wrong: more keys than queries (a mask that must be offset), heads of 64
dimensions (where forgetting the 1/sqrt(d) scale shows), positions that are not 0, 1, 2, ..., configs without
biases or with fewer key/value heads than query heads, and an empty cache. The block and the model are checked
by loading the weights of the package's module, drawn at random (biases and norm gains included, so that a
forgotten one shows), into the learner's module, and comparing what the two compute on the same input.
"""

from __future__ import annotations

import math
import random

import torch
from torch import nn

from minilm.exercises import _short, call_learner, checker, failure, passed, torch_generator
from minilm.model.attention import attention_by_hand, causal_mask
from minilm.model.config import GPTConfig
from minilm.model.gpt import GPT, Block
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


# --- Exercise 2: rotary positions ------------------------------------------------------------------------


def reference_rotate(x: torch.Tensor, positions: torch.Tensor, theta: float = 10_000.0) -> torch.Tensor:
    """The package's rotation of `x` (B, T, heads, head_dim) at `positions` (T,)."""
    batch, length, heads, head_dim = x.shape
    config = GPTConfig(vocab_size=1, context=int(positions.max()) + 1, n_layer=1, n_head=heads,
                       n_embd=heads * head_dim, position="rope", rope_theta=theta)
    cos, sin = RotaryEmbedding(config)(positions)
    return apply_rotary(x, cos, sin)


@checker
def check_rotate(rotate, rng: random.Random) -> None:
    """Exercise 2: rotate each pair (i, i + d/2) of a query or key at position p by p * theta^(-2i/d)."""
    title = "Exercise 2 (rotary positions)"
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


# --- Exercise 3: one step of attention with a KV cache ---------------------------------------------------


@checker
def check_attention_step(attention_step, rng: random.Random) -> None:
    """Exercise 3: append one token's key and value to the cache and attend to every position so far.

    The learner's step decodes whole sequences token by token, from an empty cache; each step's output
    must equal the same position of full causal attention over the sequence, and the cache must hold
    the keys and values of every position so far.
    """
    title = "Exercise 3 (one step of attention with a KV cache)"
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


# --- Exercises 4 and 5: a transformer block and the whole model, against the package's weights ---------------
# The learner's module is built from a config, the package's module of the same config gets random weights, and
# its state dict is loaded into the learner's with strict=True: the same parameter names and shapes, nothing more.
# Both run on the same input, in float32; the outputs must agree within rtol 1e-4 and atol 1e-5, the tolerance of
# float32 sums done in another order (by-hand attention against PyTorch's fused kernel differs by about 1e-6).

BLOCK_RTOL, BLOCK_ATOL = 1e-4, 1e-5


def _random_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Every parameter of `module` drawn afresh, the biases and norm gains too: at GPT-2's initialisation the biases
    are 0 and the gains 1, and an answer that forgot them would agree with the package."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("wte.weight"):
                param.copy_(noise)  # the token embeddings, also the tied head: logits of a few units
            elif name.endswith("wpe.weight"):
                param.copy_(0.5 * noise)
            elif param.dim() >= 2:  # a linear layer's (out, in) matrix: outputs of about the size of its inputs
                param.copy_(noise / math.sqrt(param.shape[1]))
            elif name.endswith("bias"):
                param.copy_(0.2 * noise)
            else:  # a norm's gain
                param.copy_(1.0 + 0.2 * noise)


def _model_configs(rng: random.Random, count: int, whole_model: bool) -> list[GPTConfig]:
    """GPT-2's kind of config, LLaMA's kind, then random mixes of every switch a block (or the model) has."""
    gpt2 = GPTConfig(vocab_size=rng.randint(20, 60), context=16, n_layer=2, n_head=4, n_embd=32)
    llama = GPTConfig(vocab_size=rng.randint(20, 60), context=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                      norm="rmsnorm", mlp="swiglu", bias=False, position="rope", tie_weights=False)
    configs = [gpt2, llama]
    if whole_model:  # the model adds positions: learned, sinusoidal or none (the blocks rotate)
        configs.append(gpt2.replace(position="sinusoidal", tie_weights=False))
    while len(configs) < count:
        n_head = rng.choice([1, 2, 4, 6])
        head_dim = rng.choice([4, 8, 16])
        divisors = [d for d in range(1, n_head + 1) if n_head % d == 0]
        positions = ["learned", "sinusoidal", "rope"] if whole_model else ["learned", "rope"]
        configs.append(GPTConfig(
            vocab_size=rng.randint(10, 80), context=rng.randint(8, 24), n_layer=rng.randint(1, 3) if whole_model else 1,
            n_head=n_head, n_embd=n_head * head_dim, n_kv_head=rng.choice([None, rng.choice(divisors)]),
            mlp_hidden=rng.choice([None, None, rng.randint(1, 6) * 8]), position=rng.choice(positions),
            norm=rng.choice(["layernorm", "rmsnorm"]), mlp=rng.choice(["gelu", "swiglu"]), bias=rng.random() < 0.5,
            tie_weights=rng.random() < 0.5, rope_theta=rng.choice([10_000.0, 100.0]),
        ))
    return configs


def _describe(config: GPTConfig, whole_model: bool) -> str:
    shown = ["n_embd", "n_head", "n_kv_head", "norm", "mlp", "mlp_hidden", "bias", "position"]
    if config.position == "rope":
        shown.append("rope_theta")
    if whole_model:
        shown = ["vocab_size", "context", "n_layer", *shown, "tie_weights"]
    return "GPTConfig(" + ", ".join(f"{name}={getattr(config, name)!r}" for name in shown) + ")"


def _load_package_weights(title: str, module, reference: nn.Module, shown: str, hint: str) -> None:
    """Load `reference`'s state dict into the learner's `module` (strict), failing with the names that differ."""
    if not isinstance(module, nn.Module):
        raise failure(title, f"your class must make a torch.nn.Module, got {_short(module)}", shown, hint)
    want = {name: tuple(t.shape) for name, t in reference.state_dict().items()}
    got = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    problems = [f"{name} has shape {got[name]}, the package's {want[name]}"
                for name in want if name in got and got[name] != want[name]]
    missing, unexpected = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
    if missing:
        problems.append(f"missing {missing[:4]}{' ...' if len(missing) > 4 else ''}")
    if unexpected:
        buffers = set(unexpected) - {name for name, _ in module.named_parameters()}
        problems.append(f"not in the package's module {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}"
                        + (" (a buffer that is not a weight is registered with persistent=False)" if buffers else ""))
    if problems:
        raise failure(title, "your module's parameters do not match the package's: " + "; ".join(problems), shown,
                      "keep the names and shapes of the skeleton's __init__; the package's names are "
                      + ", ".join(sorted(want)[:6]) + (" ..." if len(want) > 6 else ""))
    call_learner(title, module.load_state_dict, reference.state_dict())
    module.eval()


def _compare_outputs(title: str, module, reference_output: torch.Tensor, given: torch.Tensor, shown: str, hint: str,
                     what: str) -> None:
    with torch.no_grad():
        got = call_learner(title, module, given.clone())
    if isinstance(got, (tuple, list)):
        raise failure(title, f"forward must return one tensor, {what}, not a {type(got).__name__}", shown, hint)
    _compare_tensor(title, got, reference_output, shown, hint, what=what, atol=BLOCK_ATOL, rtol=BLOCK_RTOL)


@checker
def check_block(TransformerBlock, rng: random.Random) -> None:
    """Exercise 4: a transformer block whose output equals `minilm.model.gpt.Block`'s, with its weights loaded."""
    title = "Exercise 4 (a transformer block)"
    hint = ("pre-norm: x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x)). attn: c_attn(h) splits into q (n_head * "
            "head_dim), k and v (kv_heads * head_dim each), each viewed as (B, T, heads, head_dim); with position "
            "'rope' rotate q and k at positions 0..T-1 (your rotate, config.rope_theta); (B, heads, T, head_dim); "
            "key/value head j serves query heads j*g .. j*g+g-1 (repeat_interleave); causal attention; heads side "
            "by side again, (B, T, n_embd), then c_proj. mlp: gelu with approximate='tanh' between c_fc and c_proj; "
            "SwiGLU: c_fc's output is [gate | up], c_proj(silu(gate) * up)")
    generator = torch_generator(rng)
    configs = _model_configs(rng, 12, whole_model=False)
    for config in configs:
        reference = Block(config, 0).eval()
        _random_weights(reference, generator)
        module = call_learner(title, TransformerBlock, config)
        _load_package_weights(title, module, reference, _describe(config, False), hint)
        for _ in range(2):
            batch, length = rng.randint(1, 3), rng.randint(1, config.context)
            x = torch.randn(batch, length, config.n_embd, generator=generator)
            rotary = RotaryEmbedding(config)(torch.arange(length)) if config.position == "rope" else None
            with torch.no_grad():
                want, _ = reference(x, rotary)
            shown = f"{_describe(config, False)}, x={_summary(x)}"
            _compare_outputs(title, module, want, x, shown, hint, what="the block's output")
    passed(title, f"{len(configs)} configs, GPT-2's and LLaMA's kinds included, "
                  f"within rtol {BLOCK_RTOL:g} and atol {BLOCK_ATOL:g}")


@checker
def check_gpt(TransformerModel, rng: random.Random) -> None:
    """Exercise 5: the model's forward pass, token ids to logits, equal to `minilm.model.GPT`'s with its weights loaded."""
    title = "Exercise 5 (the model's forward pass)"
    hint = ("x = transformer.wte(idx); add the positions 0..T-1: transformer.wpe(positions) when position is "
            "'learned', 0.02 * sinusoid_table(config.context, config.n_embd)[positions] when 'sinusoidal', nothing "
            "when 'rope' (the blocks rotate); every block of transformer.h in turn; transformer.ln_f; then the head: "
            "x @ W.T with W = transformer.wte.weight when tied (lm_head is None), lm_head.weight when not. Check "
            "exercise 4 first: the model is only as right as its blocks")
    generator = torch_generator(rng)
    configs = _model_configs(rng, 10, whole_model=True)
    for config in configs:
        reference = GPT(config).eval()
        _random_weights(reference, generator)
        module = call_learner(title, TransformerModel, config)
        _load_package_weights(title, module, reference, _describe(config, True), hint)
        for _ in range(2):
            batch, length = rng.randint(1, 3), rng.randint(1, config.context)
            idx = torch.randint(config.vocab_size, (batch, length), generator=generator)
            with torch.no_grad():
                want, _ = reference(idx)
            shown = f"{_describe(config, True)}, idx={_summary(idx)}"
            _compare_outputs(title, module, want, idx, shown, hint, what="the output (the logits)")
    passed(title, f"{len(configs)} configs: learned, sinusoidal and rotary positions, tied and untied heads; "
                  f"logits within rtol {BLOCK_RTOL:g} and atol {BLOCK_ATOL:g}")
