"""The checkers of notebook 03's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minilm.exercises import ExerciseFailed
from minilm.exercises import model as checks
from minilm.model import GPT, attention_by_hand
from minilm.model.attention import repeat_kv
from minilm.model.gpt import Block
from minilm.model.layers import make_norm, sinusoid_table

from exercise_checks import nudge, nudged, table_tests, tolerance_tests


pytestmark = pytest.mark.usefixtures("one_thread")


# --- the package's own functions, shaped like the exercises ---------------------------------------------------


def package_attention(q, k, v, mask=None):
    return attention_by_hand(q, k, v, mask)[0]


class PackageBlock(Block):  # the package's block, called as the exercise calls it: positions 0..T-1
    def __init__(self, config):
        super().__init__(config, 0)
        self.rotary = [checks.RotaryEmbedding(config)] if config.position == "rope" else None  # a list: no state

    def forward(self, x):
        rotary = self.rotary[0](torch.arange(x.size(1))) if self.rotary else None
        return super().forward(x, rotary)[0]


class PackageGPT(GPT):
    def forward(self, idx):
        return super().forward(idx)[0]


def package_attention_step(q, k_new, v_new, k_cache, v_cache):
    k_cache, v_cache = torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)
    return attention_by_hand(q, k_cache, v_cache)[0], k_cache, v_cache


# --- answers written out, as a learner would (the notebook's solutions) ---------------------------------------


def written_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def written_rotate(x, positions, theta=10_000.0):
    half = x.size(-1) // 2
    inv_freq = theta ** (-torch.arange(half, dtype=torch.float32) * 2 / x.size(-1))
    angles = positions.float()[:, None] * inv_freq  # (T, half)
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # broadcast over heads
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def written_attention_step(q, k_new, v_new, k_cache, v_cache):
    k_cache = torch.cat([k_cache, k_new], dim=2)
    v_cache = torch.cat([v_cache, v_new], dim=2)
    group = q.size(1) // k_cache.size(1)
    k, v = k_cache.repeat_interleave(group, dim=1), v_cache.repeat_interleave(group, dim=1)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    return weights @ v, k_cache, v_cache


# --- plausible wrong answers ------------------------------------------------------------------------------------


def wrong_attention_unscaled(q, k, v, mask=None):  # forgets 1/sqrt(d)
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def wrong_attention_mask_after_softmax(q, k, v, mask=None):  # zeroes weights after the softmax: rows no longer sum to 1
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ v


def wrong_attention_softmax_over_queries(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, -1e9)
    return torch.softmax(scores, dim=-2) @ v


def wrong_rotate_neighbours(x, positions, theta=10_000.0):  # pairs (2i, 2i+1), as the paper does
    half = x.size(-1) // 2
    inv_freq = theta ** (-torch.arange(half, dtype=torch.float32) * 2 / x.size(-1))
    angles = positions.float()[:, None] * inv_freq
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


def wrong_rotate_ignores_positions(x, positions, theta=10_000.0):  # 0, 1, 2, ... instead of the positions given
    return written_rotate(x, torch.arange(x.size(1)), theta)


def wrong_rotate_backwards(x, positions, theta=10_000.0):
    return written_rotate(x, -positions, theta)


def wrong_step_forgets_new_token(q, k_new, v_new, k_cache, v_cache):  # attends to the old cache only
    k, v = repeat_kv(k_cache, q.size(1)), repeat_kv(v_cache, q.size(1))
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    return weights @ v, torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)


def wrong_step_prepends(q, k_new, v_new, k_cache, v_cache):  # the right output, but the cache in the wrong order
    k_cache, v_cache = torch.cat([k_new, k_cache], dim=2), torch.cat([v_new, v_cache], dim=2)
    return attention_by_hand(q, k_cache, v_cache)[0], k_cache, v_cache


def wrong_step_tiles_heads(q, k_new, v_new, k_cache, v_cache):  # heads 0,1,0,1 instead of 0,0,1,1
    k_cache, v_cache = torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)
    group = q.size(1) // k_cache.size(1)
    k, v = k_cache.repeat(1, group, 1, 1), v_cache.repeat(1, group, 1, 1)
    return attention_by_hand(q, k, v)[0], k_cache, v_cache


def wrong_step_square_mask(q, k_new, v_new, k_cache, v_cache):  # a (1, S) mask cut from the top of a square one
    k_cache, v_cache = torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)
    length = k_cache.size(2)
    mask = torch.ones(length, length, dtype=torch.bool).tril()[:1]
    return attention_by_hand(q, k_cache, v_cache, mask)[0], k_cache, v_cache


# --- a transformer block and the model, written out as the notebook's solutions are, and their plausible slips ---


class WrittenBlock(nn.Module):
    """Exercise 4 answered: the skeleton's __init__ and a forward written out, in small steps a wrong answer can
    change one at a time."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.ln_1 = make_norm(config)
        self.attn = nn.ModuleDict(dict(
            c_attn=nn.Linear(config.n_embd, (config.n_head + 2 * config.kv_heads) * config.head_dim, bias=config.bias),
            c_proj=nn.Linear(config.n_embd, config.n_embd, bias=config.bias)))
        self.ln_2 = make_norm(config)
        width = 2 * config.hidden if config.mlp == "swiglu" else config.hidden
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(config.n_embd, width, bias=config.bias),
                                      c_proj=nn.Linear(config.hidden, config.n_embd, bias=config.bias)))

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.feed_forward(self.ln_2(x))

    def heads(self, h):
        c = self.config
        batch, length, _ = h.shape
        q, k, v = self.attn.c_attn(h).split([c.n_head * c.head_dim, c.kv_heads * c.head_dim, c.kv_heads * c.head_dim], -1)
        q, k, v = (t.view(batch, length, -1, c.head_dim) for t in (q, k, v))
        if c.position == "rope":
            positions = torch.arange(length)
            q, k, v = self.rotate(q, positions), self.rotate(k, positions), self.rotate_value(v, positions)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def rotate(self, x, positions):
        return written_rotate(x, positions, self.config.rope_theta)

    def rotate_value(self, v, positions):
        return v

    def share(self, kv, n_head):  # key/value head j serves query heads j*g .. j*g+g-1
        return kv.repeat_interleave(n_head // kv.size(1), dim=1)

    def mask(self, length):
        return torch.ones(length, length, dtype=torch.bool).tril()

    def attention(self, h):
        q, k, v = self.heads(h)
        y = written_attention(q, self.share(k, q.size(1)), self.share(v, q.size(1)), self.mask(h.size(1)))
        return self.attn.c_proj(y.transpose(1, 2).reshape(h.shape))

    def activation(self, h):
        return F.gelu(h, approximate="tanh")

    def gate_and_up(self, h):
        return h.chunk(2, dim=-1)

    def feed_forward(self, h):
        h = self.mlp.c_fc(h)
        if self.config.mlp == "swiglu":
            gate, up = self.gate_and_up(h)
            return self.mlp.c_proj(F.silu(gate) * up)
        return self.mlp.c_proj(self.activation(h))


class BlockPostNorm(WrittenBlock):  # the 2017 Transformer's order: norm after adding
    def forward(self, x):
        x = self.ln_1(x + self.attention(x))
        return self.ln_2(x + self.feed_forward(x))


class BlockExactGelu(WrittenBlock):  # GPT-2 uses GELU's tanh approximation
    def activation(self, h):
        return F.gelu(h)


class BlockTilesKvHeads(WrittenBlock):  # heads 0,1,0,1 instead of 0,0,1,1
    def share(self, kv, n_head):
        return kv.repeat(1, n_head // kv.size(1), 1, 1)


class BlockSeesTheFuture(WrittenBlock):
    def mask(self, length):
        return None


class BlockGateAndUpSwapped(WrittenBlock):
    def gate_and_up(self, h):
        return h.chunk(2, dim=-1)[::-1]


class BlockRotatesValues(WrittenBlock):
    def rotate_value(self, v, positions):
        return self.rotate(v, positions)


class BlockForgetsRope(WrittenBlock):
    def rotate(self, x, positions):
        return x


class BlockWithItsOwnNorms(WrittenBlock):  # nn.LayerNorm whatever the config: a bias that RMSNorm has not
    def __init__(self, config):
        super().__init__(config)
        self.ln_1, self.ln_2 = nn.LayerNorm(config.n_embd), nn.LayerNorm(config.n_embd)


class WrittenGPT(nn.Module):
    """Exercise 5 answered, on the blocks of exercise 4."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            h=nn.ModuleList(WrittenBlock(config) for _ in range(config.n_layer)),
            ln_f=make_norm(config)))
        if config.position == "learned":
            self.transformer["wpe"] = nn.Embedding(config.context, config.n_embd)
        self.lm_head = None if config.tie_weights else nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, idx):
        x = self.transformer.wte(idx) + self.positions(self.first_positions(idx.size(1)))
        for block in self.transformer.h:
            x = block(x)
        return self.final_norm(x) @ self.head().T

    def first_positions(self, length):
        return torch.arange(length)

    def positions(self, positions):
        if self.config.position == "learned":
            return self.transformer.wpe(positions)
        if self.config.position == "sinusoidal":
            return self.sinusoid_scale * sinusoid_table(self.config.context, self.config.n_embd)[positions]
        return 0.0  # rotary: the blocks rotate queries and keys

    sinusoid_scale = 0.02

    def final_norm(self, x):
        return self.transformer.ln_f(x)

    def head(self):
        return self.transformer.wte.weight if self.lm_head is None else self.lm_head.weight


class GPTWithoutFinalNorm(WrittenGPT):
    def final_norm(self, x):
        return x


class GPTAlwaysTied(WrittenGPT):  # reads the embedding matrix even where the config unties the head
    def head(self):
        return self.transformer.wte.weight


class GPTUnscaledSinusoids(WrittenGPT):
    sinusoid_scale = 1.0


class GPTPositionsFromOne(WrittenGPT):
    def first_positions(self, length):
        return (torch.arange(length) + 1).clamp(max=self.config.context - 1)


class GPTWithoutPositions(WrittenGPT):
    def positions(self, positions):
        return 0.0


CHECKS = [
    (checks.check_attention, [package_attention, written_attention],
     [wrong_attention_unscaled, wrong_attention_mask_after_softmax, wrong_attention_softmax_over_queries]),
    (checks.check_rotate, [checks.reference_rotate, written_rotate],
     [wrong_rotate_neighbours, wrong_rotate_ignores_positions, wrong_rotate_backwards]),
    (checks.check_attention_step, [package_attention_step, written_attention_step],
     [wrong_step_forgets_new_token, wrong_step_prepends, wrong_step_tiles_heads, wrong_step_square_mask]),
    (checks.check_block, [PackageBlock, WrittenBlock],
     [BlockPostNorm, BlockExactGelu, BlockTilesKvHeads, BlockSeesTheFuture, BlockGateAndUpSwapped, BlockRotatesValues,
      BlockForgetsRope, BlockWithItsOwnNorms]),
    (checks.check_gpt, [PackageGPT, WrittenGPT],
     [GPTWithoutFinalNorm, GPTAlwaysTied, GPTUnscaledSinusoids, GPTPositionsFromOne, GPTWithoutPositions]),
]
test_right_answers_pass, test_wrong_answers_fail_with_input_and_hint, test_unsolved_stub_says_not_solved = (
    table_tests(CHECKS, times=2))


def step_output_nudged(rel, abs_):  # the caches right, the output off
    def step(q, k_new, v_new, k_cache, v_cache):
        output, k_cache, v_cache = package_attention_step(q, k_new, v_new, k_cache, v_cache)
        return nudge(output, rel, abs_), k_cache, v_cache
    return step


def step_cache_nudged(rel, abs_):  # the output right, the returned caches off
    exact = {}  # the caches it would return: the checker hands back the nudged ones, and they must not drift

    def step(q, k_new, v_new, k_cache, v_cache):
        if k_cache.size(2) == 0:  # a new sequence
            exact["k"], exact["v"] = k_cache, v_cache
        output, exact["k"], exact["v"] = package_attention_step(q, k_new, v_new, exact["k"], exact["v"])
        return output, nudge(exact["k"], rel, abs_), nudge(exact["v"], rel, abs_)
    return step


def nudged_module(module_class, rel, abs_):
    """A module class whose forward returns the right output nudged: the right answer off by a known amount."""
    class Nudged(module_class):
        def forward(self, x):
            return nudge(super().forward(x), rel, abs_)
    Nudged.__name__ = f"{module_class.__name__}Nudged"
    return Nudged


# The checkers that compare numbers with a tolerance: (checker, the right answer nudged, rtol, atol).
TOLERANCES = [
    (checks.check_attention, functools.partial(nudged, package_attention), 1e-4, 1e-5),
    (checks.check_rotate, functools.partial(nudged, checks.reference_rotate), 1e-3, 1e-3),  # float32 sines of large angles
    (checks.check_attention_step, step_output_nudged, 1e-4, 1e-5),
    (checks.check_attention_step, step_cache_nudged, 1e-4, 1e-5),
    (checks.check_block, lambda rel, abs_: nudged_module(WrittenBlock, rel, abs_), checks.BLOCK_RTOL, checks.BLOCK_ATOL),
    (checks.check_gpt, lambda rel, abs_: nudged_module(WrittenGPT, rel, abs_), checks.BLOCK_RTOL, checks.BLOCK_ATOL),
]
test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = (
    tolerance_tests(TOLERANCES))


def test_failures_name_the_input_and_the_difference():
    with pytest.raises(ExerciseFailed, match=r"largest difference") as failure:
        checks.check_attention(wrong_attention_unscaled)
    assert "q=(" in str(failure.value) and "float32" in str(failure.value)
    with pytest.raises(ExerciseFailed, match="returned k_cache"):
        checks.check_attention_step(wrong_step_prepends)
    with pytest.raises(ExerciseFailed, match=r"return \(output, k_cache, v_cache\)"):
        checks.check_attention_step(lambda q, k, v, kc, vc: q)
    with pytest.raises(ExerciseFailed, match="has shape"):
        checks.check_rotate(lambda x, positions, theta: x[..., :1])
    with pytest.raises(ExerciseFailed, match="raised ZeroDivisionError"):
        checks.check_block(lambda config: 1 // 0)


class RenamedBlock(WrittenBlock):  # c_attn called qkv: the package's weights cannot load
    def __init__(self, config):
        super().__init__(config)
        self.attn["qkv"] = self.attn.pop("c_attn")


class GPTKeepsItsTable(WrittenGPT):  # a saved buffer: a key the package's state dict has not
    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("table", sinusoid_table(config.context, config.n_embd))


class GPTReturnsLogitsAndLoss(WrittenGPT):  # as the package's GPT does, not as the exercise asks
    def forward(self, idx):
        return super().forward(idx), None


def test_a_module_that_does_not_fit_the_package_s_weights_or_calls_fails_saying_why():
    names = (r"do not match the package's: missing \['attn.c_attn.bias', 'attn.c_attn.weight'\]; "
             r"not in the package's module \['attn.qkv.bias', 'attn.qkv.weight'\]\n")  # no note about buffers
    with pytest.raises(ExerciseFailed, match=names):
        checks.check_block(RenamedBlock)
    with pytest.raises(ExerciseFailed, match=r"\['table'\] \(a buffer that is not a weight is registered with persistent"):
        checks.check_gpt(GPTKeepsItsTable)
    with pytest.raises(ExerciseFailed, match="must return one tensor"):
        checks.check_gpt(GPTReturnsLogitsAndLoss)
