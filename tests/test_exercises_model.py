"""The checkers of notebook 03's exercises: they pass the package's own functions and written-out answers,
and fail, with the input and a hint, on plausible wrong answers and on unsolved stubs."""

import functools
import math

import pytest
import torch

from minilm.exercises import ExerciseFailed
from minilm.exercises import model as checks
from minilm.model import GPTConfig, attention_by_hand, count_parameters
from minilm.model.attention import causal_mask, repeat_kv
from minilm.model.gpt import Block

from exercise_checks import nudge, nudged, table_tests, tolerance_tests


pytestmark = pytest.mark.usefixtures("one_thread")


# --- the package's own functions, shaped like the exercises ---------------------------------------------------


def package_attention(q, k, v, mask=None):
    return attention_by_hand(q, k, v, mask)[0]


def package_block_parameters(config):
    return count_parameters(Block(config, 0))  # the real module's tensors, not the accounting formula


def package_attention_step(q, k_new, v_new, k_cache, v_cache):
    k_cache, v_cache = torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)
    return attention_by_hand(q, k_cache, v_cache)[0], k_cache, v_cache


# --- answers written out, as a learner would (the notebook's solutions) ---------------------------------------


def written_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def written_causal_mask(query_length, key_length):
    past = key_length - query_length
    return torch.ones(query_length, key_length, dtype=torch.bool).tril(diagonal=past)


def written_rotate(x, positions, theta=10_000.0):
    half = x.size(-1) // 2
    inv_freq = theta ** (-torch.arange(half, dtype=torch.float32) * 2 / x.size(-1))
    angles = positions.float()[:, None] * inv_freq  # (T, half)
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]  # broadcast over heads
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def written_block_parameters(config):
    width, head_dim, bias = config.n_embd, config.head_dim, int(config.bias)
    qkv = (config.n_head + 2 * config.kv_heads) * head_dim
    attention = width * qkv + bias * qkv + width * width + bias * width
    up = 2 * config.hidden if config.mlp == "swiglu" else config.hidden
    mlp = width * up + bias * up + config.hidden * width + bias * width
    norm = 2 * width if config.norm == "layernorm" and config.bias else width
    return attention + mlp + 2 * norm


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


def wrong_mask_no_offset(query_length, key_length):  # right only when T == S
    return torch.ones(query_length, key_length, dtype=torch.bool).tril()


def wrong_mask_inverted(query_length, key_length):  # True where the key is hidden
    return ~written_causal_mask(query_length, key_length)


def wrong_mask_as_floats(query_length, key_length):
    return written_causal_mask(query_length, key_length).float()


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


def wrong_block_12_c_squared(config):  # the rule of thumb, not the count
    return 12 * config.n_embd**2


def wrong_block_ignores_kv_heads(config):
    return written_block_parameters(config.replace(n_kv_head=None))


def wrong_block_always_biased_norm(config):
    norm = 2 * config.n_embd if config.norm == "layernorm" else config.n_embd
    return written_block_parameters(config) - 2 * (2 * config.n_embd if config.norm == "layernorm" and config.bias
                                                   else config.n_embd) + 2 * norm


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


CHECKS = [
    (checks.check_attention, [package_attention, written_attention],
     [wrong_attention_unscaled, wrong_attention_mask_after_softmax, wrong_attention_softmax_over_queries]),
    (checks.check_causal_mask, [causal_mask, written_causal_mask],
     [wrong_mask_no_offset, wrong_mask_inverted, wrong_mask_as_floats]),
    (checks.check_rotate, [checks.reference_rotate, written_rotate],
     [wrong_rotate_neighbours, wrong_rotate_ignores_positions, wrong_rotate_backwards]),
    (checks.check_block_parameters, [package_block_parameters, written_block_parameters],
     [wrong_block_12_c_squared, wrong_block_ignores_kv_heads, wrong_block_always_biased_norm]),
    (checks.check_attention_step, [package_attention_step, written_attention_step],
     [wrong_step_forgets_new_token, wrong_step_prepends, wrong_step_tiles_heads, wrong_step_square_mask]),
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


# The checkers that compare numbers with a tolerance: (checker, the right answer nudged, rtol, atol).
TOLERANCES = [
    (checks.check_attention, functools.partial(nudged, package_attention), 1e-4, 1e-5),
    (checks.check_rotate, functools.partial(nudged, checks.reference_rotate), 1e-3, 1e-3),  # float32 sines of large angles
    (checks.check_attention_step, step_output_nudged, 1e-4, 1e-5),
    (checks.check_attention_step, step_cache_nudged, 1e-4, 1e-5),
]
test_an_answer_just_outside_the_tolerance_fails, test_an_answer_well_inside_the_tolerance_passes = (
    tolerance_tests(TOLERANCES))


def test_the_accounting_reference_equals_the_real_block():
    # Exercise 4's reference comes from the accounting formula; it must count what a Block really holds.
    for config in [GPTConfig(n_layer=3, n_head=4, n_embd=64),
                   GPTConfig(n_layer=2, n_head=6, n_kv_head=2, n_embd=96, norm="rmsnorm", mlp="swiglu", bias=False),
                   GPTConfig(n_layer=1, n_head=2, n_embd=32, bias=False, mlp_hidden=40),
                   GPTConfig(n_layer=5, n_head=4, n_kv_head=1, n_embd=64, mlp="swiglu", bias=True)]:
        assert checks.reference_block_parameters(config) == count_parameters(Block(config, 0))


def test_failures_name_the_input_and_the_difference():
    with pytest.raises(ExerciseFailed, match=r"largest difference") as failure:
        checks.check_attention(wrong_attention_unscaled)
    assert "q=(" in str(failure.value) and "float32" in str(failure.value)
    with pytest.raises(ExerciseFailed, match="dtype torch.bool"):
        checks.check_causal_mask(wrong_mask_as_floats)
    with pytest.raises(ExerciseFailed, match="returned k_cache"):
        checks.check_attention_step(wrong_step_prepends)
    with pytest.raises(ExerciseFailed, match=r"return \(output, k_cache, v_cache\)"):
        checks.check_attention_step(lambda q, k, v, kc, vc: q)
    with pytest.raises(ExerciseFailed, match="has shape"):
        checks.check_rotate(lambda x, positions, theta: x[..., :1])
    with pytest.raises(ExerciseFailed, match="raised ZeroDivisionError"):
        checks.check_block_parameters(lambda config: 1 // 0)
