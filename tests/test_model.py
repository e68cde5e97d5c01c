"""Tests of the transformer (minilm.model): checked against HF GPT-2, against itself recomputed
without its shortcuts (KV cache, batching, fused attention), and against the published numbers."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from minilm.hardware import autocast
from minilm.model import (
    GPT,
    SIZES,
    GPTConfig,
    KVCache,
    Trace,
    attention_by_hand,
    config_named,
    count_parameters,
    flops_per_token,
    generate,
    make_optimizer,
    mask_tokens,
    memory_estimate,
    parameter_counts,
    sample,
    stream,
)
from minilm.model.gpt import IGNORE_INDEX
from minilm.model.accounting import matmul_parameters, mfu
from minilm.model.attention import causal_mask, repeat_kv
from minilm.model.layers import LayerNorm, RMSNorm, sinusoid_table
from spread import spread_weights

VOCAB = 96


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**changes) -> GPTConfig:
    return GPTConfig(**{**dict(vocab_size=VOCAB, context=48, n_layer=2, n_head=4, n_embd=32), **changes})


def lively(config: GPTConfig, seed: int = 0) -> GPT:
    """A model with large random matrices in its blocks: GPT-2's small initialisation gives near-uniform
    logits and greedy decoding that repeats one token, which would make equality tests too easy to pass.
    (The embeddings keep theirs, so that sinusoidal positions, 0.02 in size, still count.)"""
    return spread_weights(GPT(config, seed=seed), 1.0, seed, keep=("transformer.wte", "transformer.wpe"))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, relative: float = 1e-5) -> None:
    """Equal up to float32 rounding, relative to the largest value (lively models have large logits)."""
    error, scale = (actual - expected).abs().max().item(), expected.abs().max().item()
    assert error <= relative * scale, f"max difference {error:.3g} for values up to {scale:.3g}"


def tokens(shape: tuple[int, ...], seed: int = 0, vocab: int = VOCAB) -> torch.Tensor:
    return torch.randint(vocab, shape, generator=torch.Generator().manual_seed(seed))


VARIANTS = {
    "gpt2": {},
    "sinusoidal": dict(position="sinusoidal"),
    "rope": dict(position="rope"),
    "rmsnorm": dict(norm="rmsnorm"),
    "swiglu": dict(mlp="swiglu"),
    "llama": dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2, tie_weights=False),
    "mqa": dict(n_kv_head=1),
}


# --- the same numbers as Hugging Face's GPT-2 -----------------------------------------------------


def test_matches_hf_gpt2_forward_and_after_one_adamw_step():
    from minilm.model.hf import from_hf, to_hf

    model = GPT(tiny(), seed=1).train()
    hf = to_hf(model).train()
    x, y = tokens((2, 40), seed=2), tokens((2, 40), seed=3)

    ours, loss = model(x, y)
    theirs = hf(x).logits
    assert (ours - theirs).abs().max() <= 1e-5
    hf_loss = F.cross_entropy(theirs.view(-1, VOCAB), y.view(-1))
    assert abs(loss.item() - hf_loss.item()) <= 1e-5

    for net, objective in ((model, loss), (hf, hf_loss)):
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.1)
        objective.backward()
        optimizer.step()
    after_ours, after_theirs = model(x)[0], hf(x).logits
    assert (after_ours - ours).abs().max() > 1e-3  # the step changed the model
    assert (after_ours - after_theirs).abs().max() <= 1e-5

    back = from_hf(to_hf(model))  # the round trip minilm -> HF -> minilm is exact
    assert back.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name


def test_only_gpt2_shaped_models_convert():
    from minilm.model.hf import to_hf

    with pytest.raises(ValueError, match="position='rope'.*norm='rmsnorm'"):
        to_hf(GPT(tiny(position="rope", norm="rmsnorm")))
    with pytest.raises(ValueError, match="n_kv_head=2"):
        to_hf(GPT(tiny(n_kv_head=2)))


# --- attention ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
@pytest.mark.parametrize("causal", [True, False])
def test_attention_by_hand_equals_fused_attention(causal, kv_heads):
    g = torch.Generator().manual_seed(kv_heads)
    q = torch.randn(2, 4, 10, 8, generator=g)
    k, v = torch.randn(2, kv_heads, 10, 8, generator=g), torch.randn(2, kv_heads, 10, 8, generator=g)
    mask = causal_mask(10, 10) if causal else None
    ours, weights = attention_by_hand(q, k, v, mask)
    fused = F.scaled_dot_product_attention(q, repeat_kv(k, 4), repeat_kv(v, 4), is_causal=causal)
    assert (ours - fused).abs().max() < 1e-5
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 10))
    if causal:
        assert weights.triu(diagonal=1).abs().max() == 0  # nothing from the future

    # an arbitrary mask (padding, and the offset causal pattern of a cache) agrees as well
    padding = torch.ones(2, 10, dtype=torch.bool)
    padding[0, :3] = False
    mask = padding[:, None, None, :] & causal_mask(4, 10)
    ours, _ = attention_by_hand(q[:, :, -4:], k, v, mask)
    fused = F.scaled_dot_product_attention(q[:, :, -4:], repeat_kv(k, 4), repeat_kv(v, 4), attn_mask=mask)
    assert (ours - fused).abs().max() < 1e-5


def test_trace_records_attention_and_residual_stream_of_the_layers_asked_for():
    model = lively(tiny(n_layer=3))
    x = tokens((2, 12))
    plain, _ = model(x)
    trace = model.inspect(x)
    assert_close(trace.logits, plain)  # attention by hand computes the same model
    assert sorted(trace.attention) == [0, 1, 2] and sorted(trace.residual) == [0, 1, 2, 3]
    weights = trace.attention[1]
    assert weights.shape == (2, 4, 12, 12)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 12), atol=1e-5)
    assert weights.triu(diagonal=1).abs().max() == 0
    positions = model.transformer.wpe(torch.arange(12))
    assert torch.allclose(trace.residual[0], model.transformer.wte(x) + positions)
    assert_close(trace.residual[1], model.transformer.h[0](trace.residual[0])[0])

    some = Trace(layers={2})
    model(x, trace=some)
    assert list(some.attention) == [2] and list(some.residual) == [2]


# --- KV cache, batching, sampling ---------------------------------------------------------------


@pytest.mark.parametrize("variant", ["gpt2", "rope", "sinusoidal", "llama", "mqa"])
def test_kv_cache_gives_the_logits_and_tokens_of_recomputing(variant):
    model = lively(tiny(**VARIANTS[variant]))
    x = tokens((2, 20), seed=5)
    full, _ = model(x)
    cache = KVCache(model.config, batch_size=2, max_length=20)
    pieces = [model(x[:, :8], cache=cache)[0]] + [model(x[:, t : t + 1], cache=cache)[0] for t in range(8, 20)]
    assert_close(torch.cat(pieces, dim=1), full)

    prompt = [[5, 17, 3, 60, 2]]
    cached = generate(model, prompt, 30, temperature=0)
    recomputed = generate(model, prompt, 30, temperature=0, use_cache=False)
    assert cached == recomputed
    assert len(set(cached[0])) > 3  # a varied continuation, so the equality means something


@pytest.mark.parametrize("variant", ["gpt2", "rope"])
def test_batched_prompts_of_different_lengths_give_the_tokens_of_one_at_a_time(variant):
    model = lively(tiny(**VARIANTS[variant]), seed=3)
    prompts = [[7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [40, 41, 42, 43]]
    alone = [generate(model, [p], 12, temperature=0)[0] for p in prompts]
    assert generate(model, prompts, 12, temperature=0) == alone
    assert generate(model, prompts, 12, temperature=0, use_cache=False) == alone


def test_padding_is_invisible_to_the_real_tokens():
    for causal in (True, False):
        model = lively(tiny(causal=causal))
        x = tokens((1, 10))
        alone, _ = model(x)
        padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), x], dim=1)
        mask = torch.cat([torch.zeros(1, 4, dtype=torch.bool), torch.ones(1, 10, dtype=torch.bool)], dim=1)
        logits, _ = model(padded, padding_mask=mask)
        assert torch.isfinite(logits).all()
        assert_close(logits[:, 4:], alone)


def test_sampling_is_seeded_and_top_k_top_p_restrict_the_choice():
    model = lively(tiny())
    prompt = [[3, 1, 4, 1, 5]]
    one = generate(model, prompt, 20, temperature=1.0, seed=7)
    assert one == generate(model, prompt, 20, temperature=1.0, seed=7)
    assert one != generate(model, prompt, 20, temperature=1.0, seed=8)
    greedy = generate(model, prompt, 20, temperature=0)
    assert generate(model, prompt, 20, top_k=1, seed=9) == greedy
    assert generate(model, prompt, 20, top_p=1e-6, seed=9) == greedy

    logits = torch.log(torch.tensor([[0.05, 0.5, 0.3, 0.15]])).repeat(4000, 1)
    generator = torch.Generator().manual_seed(0)
    assert set(sample(logits, top_k=2, generator=generator).tolist()) == {1, 2}
    assert set(sample(logits, top_p=0.7, generator=generator).tolist()) == {1, 2}  # 0.5 < 0.7 <= 0.8
    counts = torch.bincount(sample(logits, generator=generator), minlength=4) / 4000
    assert (counts - torch.tensor([0.05, 0.5, 0.3, 0.15])).abs().max() < 0.03
    cold = torch.bincount(sample(logits, temperature=0.25, generator=generator), minlength=4) / 4000
    assert cold[1] > 0.85  # low temperature sharpens towards the best token


def test_sampling_refuses_scores_that_are_not_finite_and_accepts_ruled_out_tokens():
    ruled_out = torch.tensor([[float("-inf"), 0.0, 1.0, float("-inf")]])
    assert sample(ruled_out, generator=torch.Generator().manual_seed(0)).item() in (1, 2)
    assert sample(ruled_out, temperature=0).item() == 2
    for bad in (float("nan"), float("inf")):
        logits = torch.tensor([[0.0, 1.0, bad, 2.0]])
        for temperature in (1.0, 0):  # greedy too: argmax would silently pick the NaN
            with pytest.raises(FloatingPointError, match="not finite.*diverged"):
                sample(logits, temperature=temperature)


def test_generation_stops_at_the_stop_token_per_sequence():
    model = lively(tiny())
    prompts = [[3, 1, 4], [9, 9]]
    free = generate(model, prompts, 15, temperature=0)
    stop = free[0][4]
    stopped = generate(model, prompts, 15, temperature=0, stop_token=stop)
    assert stopped[0] == free[0][: free[0].index(stop)]
    assert stopped[1] == (free[1][: free[1].index(stop)] if stop in free[1] else free[1])
    steps = list(stream(model, prompts, 15, temperature=0, stop_token=stop))
    assert steps[free[0].index(stop)][0] == stop and all(step[0] is None for step in steps[free[0].index(stop) + 1 :])
    assert model.training is False


# --- every variant learns; decoder and encoder ------------------------------------------------------


def train_steps(model: GPT, steps: int, batch: callable) -> list[float]:
    optimizer = make_optimizer(model, lr=3e-3, weight_decay=0.0)
    losses = []
    for step in range(steps):
        inputs, targets = batch(step)
        _, loss = model(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# A repeating sequence where each token is followed by different tokens at different places:
# predicting it needs attention to the tokens before, not just the current one.
PERIOD = torch.tensor([5, 9, 5, 2, 9, 7, 2, 5, 11, 7, 9, 2])
REPEATED = PERIOD.repeat(4)[None, :41]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_learns_a_repeating_sequence(variant):
    model = GPT(tiny(**VARIANTS[variant]), seed=0).train()
    losses = train_steps(model, 80, lambda step: (REPEATED[:, :-1], REPEATED[:, 1:]))
    assert losses[0] > 4.0  # about ln(96): knows nothing yet
    # ~1.5 is the best a model can do from the current token alone; below it, it uses the context
    assert losses[-1] < 0.8, losses[::10]


def test_encoder_learns_masked_language_modelling():
    model = GPT(tiny(causal=False, position="rope"), seed=0).train()
    generator = torch.Generator().manual_seed(0)
    mask_token = VOCAB - 1
    losses = train_steps(model, 60, lambda step: mask_tokens(REPEATED.repeat(8, 1), mask_token, VOCAB, generator, 0.3))
    assert min(losses[-5:]) < 0.6 * losses[0], losses[::10]


def test_encoder_sees_the_future_and_decoder_does_not():
    x = tokens((1, 16))
    changed = x.clone()
    changed[0, 10] = (changed[0, 10] + 1) % VOCAB
    for causal in (True, False):
        model = GPT(tiny(causal=causal))  # GPT-2's initialisation: attention spread over every position
        difference = (model(x)[0] - model(changed)[0]).abs().amax(dim=-1)[0]
        assert difference[10:].min() > 1e-3  # the changed token and everything after it see the change
        if causal:
            assert difference[:10].max() == 0  # the past cannot see a future token
        else:
            assert difference[:10].min() > 1e-3


def test_mask_tokens_follows_berts_recipe():
    idx = tokens((64, 64), vocab=50)
    inputs, targets = mask_tokens(idx, mask_token=95, vocab_size=VOCAB, generator=torch.Generator().manual_seed(0))
    chosen = targets != -100
    assert abs(chosen.float().mean().item() - 0.15) < 0.02
    assert torch.equal(targets[chosen], idx[chosen]) and torch.equal(inputs[~chosen], idx[~chosen])
    masked = (inputs[chosen] == 95).float().mean().item()
    kept = (inputs[chosen] == idx[chosen]).float().mean().item()
    assert abs(masked - 0.8) < 0.05 and 0.07 < kept < 0.16  # 10% kept, plus random draws of the same token


# --- bad input: clear errors with the numbers -----------------------------------------------------


def test_bad_input_is_refused_with_the_numbers():
    model = GPT(tiny())
    with pytest.raises(ValueError, match="49 tokens is longer than the context of 48"):
        model(tokens((1, 49)))
    with pytest.raises(ValueError, match=r"token id 96 .*vocabulary of 96 ids \(0..95\)"):
        model(torch.tensor([[1, 2, 96]]))
    with pytest.raises(ValueError, match="token id -1"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match="targets have shape"):
        model(tokens((2, 8)), tokens((2, 7)))
    with pytest.raises(ValueError, match="n_embd=30 does not divide by n_head=4"):
        tiny().replace(n_embd=30)
    with pytest.raises(ValueError, match="n_head=4 does not divide by n_kv_head=3"):
        tiny(n_kv_head=3)
    with pytest.raises(ValueError, match="position='alibi'"):
        tiny(position="alibi")
    with pytest.raises(ValueError, match="40 tokens plus 20 new ones exceeds the context of 48"):
        generate(model, [[1] * 40], 20)
    with pytest.raises(ValueError, match="10 cached positions"):
        cache = KVCache(model.config, 1, 48)
        model(tokens((1, 10)), cache=cache)
        model(tokens((1, 39)), cache=cache)


def test_a_state_dict_from_another_config_is_refused_with_the_shapes():
    model = GPT(tiny())
    wider = GPT(tiny().replace(n_embd=64)).state_dict()
    shapes = r"transformer.wte.weight: checkpoint \(96, 64\), model \(96, 32\)"
    with pytest.raises(ValueError, match=r"n_embd 64 != 32.*" + shapes):
        model.load_state_dict(wider)
    deeper = GPT(tiny().replace(n_layer=3)).state_dict()
    with pytest.raises(ValueError, match="n_layer 3 != 2.*unexpected key"):
        model.load_state_dict(deeper)
    model.load_state_dict(GPT(tiny(), seed=5).state_dict())  # the same config loads


# --- initialisation, precision -------------------------------------------------------------------


def test_initialisation_is_gpt2s_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    model = GPT(GPTConfig(vocab_size=VOCAB, context=16, n_layer=8, n_head=4, n_embd=128), seed=3)
    assert torch.equal(state, torch.get_rng_state())
    block = model.transformer.h[0]
    assert abs(block.attn.c_attn.weight.std().item() - 0.02) < 0.001
    assert abs(block.mlp.c_proj.weight.std().item() - 0.02 / math.sqrt(16)) < 0.0003
    assert block.attn.c_attn.bias.abs().max() == 0 and torch.all(block.ln_1.weight == 1)
    same = GPT(model.config, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), same.parameters()))
    assert not torch.equal(GPT(model.config, seed=4).transformer.wte.weight, model.transformer.wte.weight)
    assert model.transformer.wte.weight is model.output_weight()  # tied


def test_layers_match_their_textbook_definitions():
    x = torch.randn(3, 5, 16)
    norm = RMSNorm(16)
    assert torch.allclose(norm(x), x / x.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt(), atol=1e-6)
    # with gains that are not 1 and an eps that matters (inputs of small variance), as trained models have
    small, gains = 0.01 * x, torch.linspace(0.5, 2.0, 16)
    norm, layer = RMSNorm(16, eps=1e-3), LayerNorm(16, eps=1e-3)
    with torch.no_grad():
        norm.weight.copy_(gains), layer.weight.copy_(gains), layer.bias.fill_(0.25)
    assert torch.allclose(norm(small), small / small.pow(2).mean(-1, keepdim=True).add(1e-3).sqrt() * gains, atol=1e-6)
    centred = small - small.mean(-1, keepdim=True)
    expected = centred / centred.pow(2).mean(-1, keepdim=True).add(1e-3).sqrt() * gains + 0.25
    assert torch.allclose(layer(small), expected, atol=1e-5)
    table = sinusoid_table(50, 16)
    assert math.isclose(table[7, 4].item(), math.sin(7 / 10000 ** (4 / 16)), abs_tol=1e-6)
    assert math.isclose(table[7, 5].item(), math.cos(7 / 10000 ** (4 / 16)), abs_tol=1e-6)


def test_rope_attention_depends_only_on_relative_position():
    model = GPT(tiny(position="rope", n_layer=1))
    rotary = model.rotary
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    from minilm.model.layers import apply_rotary

    def score(p, s):
        return (apply_rotary(q, *rotary(torch.tensor([p]))) * apply_rotary(k, *rotary(torch.tensor([s])))).sum()

    assert torch.allclose(score(5, 2), score(30, 27), atol=1e-5)
    assert not torch.allclose(score(5, 2), score(5, 4), atol=1e-3)


def test_bf16_autocast_runs_close_to_float32():
    model = GPT(tiny())
    x = tokens((2, 16))
    exact, _ = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        approximate, _ = model(x)
        tokens_bf16 = generate(model, [[1, 2, 3]], 5, temperature=0)  # the cache follows the dtype
    assert approximate.dtype == torch.bfloat16
    assert_close(approximate.float(), exact, relative=0.02)  # bfloat16 keeps 8 bits of mantissa
    assert len(tokens_bf16[0]) == 5
    with autocast("cpu"):  # the default: bf16 where the CPU has it, float32 elsewhere
        model(x)


# --- accounting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS) + ["untied_no_bias"])
def test_parameter_count_by_part_equals_the_model(variant):
    changes = dict(tie_weights=False, bias=False) if variant == "untied_no_bias" else VARIANTS[variant]
    config = tiny(**changes)
    counts = parameter_counts(config)
    assert counts["total"] == count_parameters(GPT(config)) == sum(v for k, v in counts.items() if k != "total")
    part_of = {"wte": "token_embedding", "wpe": "position_embedding", "attn": "attention", "mlp": "mlp",
               "ln_1": "norms", "ln_2": "norms", "ln_f": "norms", "lm_head": "lm_head"}
    by_part = dict.fromkeys(["token_embedding", "position_embedding", "attention", "mlp", "norms", "lm_head"], 0)
    for name, parameter in GPT(config).named_parameters():  # a tied head is the embedding: counted there, once
        by_part[next(part for key, part in part_of.items() if key in name.split("."))] += parameter.numel()
    assert counts == {**by_part, "total": counts["total"]}


def test_published_sizes_and_the_6n_rule():
    assert parameter_counts(config_named("gpt2"))["total"] == 124_439_808  # GPT-2 small as released
    assert parameter_counts(config_named("gpt2-medium"))["total"] == 354_823_168
    flops = flops_per_token(config_named("gpt2"), seq_len=1024)
    n = 124_439_808
    assert 6 * n < flops["training"] < 1.2 * 6 * n  # 6N, plus attention's 12 * L * T * C (~15% here)
    assert flops["training"] == 3 * flops["forward"]
    short = flops_per_token(config_named("gpt2"), seq_len=1)
    assert abs(short["training"] / (6 * n) - 1) < 0.01  # without context it is 6N (position embeddings aside)
    with pytest.raises(ValueError, match="no model size named"):
        config_named("gpt5")
    assert set(SIZES) == {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"}


@pytest.mark.parametrize("variant", ["gpt2", "llama"])
def test_flops_per_token_equal_what_pytorch_counts(variant):
    config = tiny(**VARIANTS[variant])
    model = GPT(config)
    x = tokens((2, 32))
    with FlopCounterMode(display=False) as counter:
        model(x, trace=Trace())  # attention by hand: PyTorch does not count the fused CPU kernel
    assert counter.get_total_flops() == flops_per_token(config, seq_len=32)["forward"] * x.numel()


def saved_activation_bytes(model: GPT, x: torch.Tensor, mixed: bool) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass (parameters excluded)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    context = torch.autocast("cpu", dtype=torch.bfloat16) if mixed else torch.autocast("cpu", enabled=False)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), context:
        _, loss = model(x, x)
    return sum(storages.values())


@pytest.mark.parametrize("variant", [*VARIANTS, "rope_mqa"])
@pytest.mark.parametrize("mixed", [False, True])
def test_memory_estimate_counts_every_byte_autograd_saves_per_token(mixed, variant):
    """Exact, per token: the bytes that four more sequences add to what autograd keeps are the bytes the estimate
    adds. What does not grow with the batch (position ids, rotary tables, the loss) stays under 16 KiB."""
    changes = dict(position="rope", n_kv_head=1) if variant == "rope_mqa" else VARIANTS[variant]
    config = GPTConfig(vocab_size=256, context=128, n_layer=2, n_head=4, n_embd=64, **changes)
    model = GPT(config)
    seq_len = 64  # shorter than the context: the estimate must count the length it is given
    small, large = (memory_estimate(config, batch, seq_len, mixed_precision=mixed) for batch in (4, 8))
    measured_small, measured_large = (saved_activation_bytes(model, tokens((batch, seq_len), vocab=256), mixed)
                                      for batch in (4, 8))
    assert large["activations"] - small["activations"] == measured_large - measured_small
    assert large["activations"] == 2 * small["activations"] and large["autocast_copies"] == small["autocast_copies"]
    assert 0 <= measured_small - (small["activations"] + small["autocast_copies"]) < 16 * 1024
    n = count_parameters(model)
    assert (small["weights"], small["gradients"], small["optimizer"]) == (4 * n, 4 * n, 8 * n)
    assert small["autocast_copies"] == (2 * matmul_parameters(config) if mixed else 0)
    assert small["total"] == sum(value for key, value in small.items() if key != "total")


def test_mfu_is_the_training_flops_at_the_length_given_over_the_peak():
    config = tiny()
    for seq_len in (None, config.context // 2):
        flops = flops_per_token(config, seq_len)["training"]
        assert mfu(config, tokens_per_second=1_000.0, peak_flops=4e9, seq_len=seq_len) == pytest.approx(flops * 1_000 / 4e9)
    assert flops_per_token(config)["training"] > flops  # a longer context costs more attention


def test_forward_and_backward_compile_as_one_graph():
    """torch.compile-friendly: no data-dependent Python control flow (fullgraph fails on a graph break)."""
    model = GPT(tiny(**VARIANTS["llama"]))
    x = tokens((2, 16))
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    _, loss = compiled(x, x)
    loss.backward()
    assert torch.allclose(loss, model(x, x)[1])


# --- what the mutation run found untested (tools/mutation.py model) --------------------------------


def test_the_model_and_cache_keep_every_tensor_on_the_models_device_and_dtype(monkeypatch):
    """PyTorch's meta device has shapes and dtypes but no data: a tensor made on the CPU by mistake (a forgotten
    `device=`) fails here, on a CPU-only machine, as it would on a GPU."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # skips the id check: meta has no values
    model = GPT(tiny()).to("meta")
    idx = torch.zeros((2, 5), dtype=torch.long, device="meta")
    padding = torch.ones((2, 5), dtype=torch.bool, device="meta")
    cache = KVCache(model.config, batch_size=2, max_length=10)
    logits, _ = model(idx, padding_mask=padding, cache=cache)
    logits, _ = model(idx[:, :1], cache=cache, last_only=True)
    assert logits.device.type == "meta" and logits.shape == (2, 1, VOCAB)
    assert cache.keys.device.type == cache.values.device.type == cache.key_mask.device.type == "meta"
    trace = model.inspect(idx)  # attention by hand, with its own causal mask
    assert trace.attention[0].device.type == "meta" and trace.attention[0].shape == (2, 4, 5, 5)

    keys = torch.zeros((2, 4, 3, 8), dtype=torch.float64)  # the cache takes the dtype it is given (autocast's)
    cache = KVCache(tiny(), batch_size=2, max_length=10)
    k, v = cache.update(0, keys, keys + 1)
    assert cache.keys.dtype == cache.values.dtype == k.dtype == v.dtype == torch.float64
    assert torch.equal(v, keys + 1) and k.shape == (2, 4, 3, 8)

    inputs, targets = mask_tokens(idx, mask_token=1, vocab_size=VOCAB, generator=torch.Generator().manual_seed(0))
    assert inputs.device.type == targets.device.type == "meta"


def test_only_trained_runs_the_head_where_targets_are_trained_with_the_same_loss_and_gradients(monkeypatch):
    model = lively(tiny())
    x = tokens((3, 16))
    targets = x.clone()
    targets[torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) > 0.2] = IGNORE_INDEX
    trained = targets != IGNORE_INDEX
    full_logits, full_loss = model(x, targets)
    full_loss.backward()
    full_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    rows = []
    linear = F.linear

    def watched(x, weight, *args, **kwargs):
        if weight is model.output_weight():
            rows.append(tuple(x.shape))
        return linear(x, weight, *args, **kwargs)

    monkeypatch.setattr(F, "linear", watched)
    logits, loss = model(x, targets, only_trained=True)
    assert rows == [(int(trained.sum()), 32)]  # the head saw the trained positions alone
    assert logits.shape == (int(trained.sum()), VOCAB) and torch.allclose(logits, full_logits[trained], atol=1e-6)
    torch.testing.assert_close(loss, full_loss, rtol=0, atol=1e-6)
    loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, full_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    assert model(x, only_trained=True)[0].shape == full_logits.shape  # without targets: every position


def test_last_only_computes_the_head_for_the_last_position_alone(monkeypatch):
    model = lively(tiny())
    x = tokens((2, 12))
    full, _ = model(x)
    last, _ = model(x, last_only=True)
    assert last.shape == (2, 1, VOCAB) and torch.allclose(last, full[:, -1:], atol=1e-6)
    assert model(x, x, last_only=True)[0].shape == full.shape  # with targets the loss needs every position

    widths = []  # generation runs the output head on one position per sequence, every step
    linear = F.linear

    def watched(x, weight, *args, **kwargs):
        if weight is model.output_weight():
            widths.append(x.size(1))
        return linear(x, weight, *args, **kwargs)

    monkeypatch.setattr(F, "linear", watched)
    for use_cache in (True, False):
        assert len(generate(model, [[1, 2, 3], [4]], 5, temperature=0, use_cache=use_cache)[0]) == 5
    assert widths == [1] * 10


def test_stream_checks_its_arguments_and_stops_when_every_prompt_has():
    model = lively(tiny())
    with pytest.raises(ValueError, match=r"top_p=1.5 must be in \(0, 1\]"):
        stream(model, [[1, 2]], 5, top_p=1.5)  # raised at the call, before the first step
    with pytest.raises(ValueError, match="top_k=0 must be at least 1"):
        stream(model, [[1, 2]], 5, top_k=0)
    prompts = [[3, 1, 4], [9, 9]]
    free = generate(model, prompts, 15, temperature=0)
    stop = free[0][2]
    steps = list(stream(model, prompts, 15, temperature=0, stop_token=stop))
    expected = max(free[row].index(stop) + 1 if stop in free[row] else 15 for row in range(2))
    assert len(steps) == expected  # no step after the last prompt stopped


def test_block_returns_attention_weights_only_when_asked():
    model = lively(tiny())
    x = torch.randn(2, 6, 32)
    out, weights = model.transformer.h[0](x)
    assert weights is None
    out_with, weights = model.transformer.h[0](x, return_weights=True)
    assert weights.shape == (2, 4, 6, 6)
    assert_close(out, out_with)  # the same block, through attention by hand


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "rope"])
def test_every_position_encoding_tells_an_encoder_the_order_of_its_tokens(position):
    """Attention alone is blind to order: an encoder without positions gives each token the same output wherever
    it stands, so permuting the input only permutes the output. Each encoding must break that."""
    def outputs(config):
        model = lively(config)
        if position == "sinusoidal":  # lively() keeps the embeddings small: make the positions count
            with torch.no_grad():
                model.transformer.wte.weight.mul_(0.1)
        x = tokens((1, 10))
        order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
        return model(x)[0][0, order], model(x[:, order])[0][0]

    permuted, of_permuted = outputs(tiny(causal=False, position=position))
    assert (permuted - of_permuted).abs().max() > 1e-3
    assert ("wpe" in GPT(tiny(position=position)).transformer) == (position != "rope")


def test_make_optimizer_decays_matrices_only_and_asks_for_the_multi_tensor_kernel_on_cpu():
    model = GPT(tiny())
    optimizer = make_optimizer(model, lr=1e-3, weight_decay=0.1)
    matrices, vectors = optimizer.param_groups
    assert matrices["weight_decay"] == 0.1 and vectors["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in matrices["params"]) and all(p.dim() < 2 for p in vectors["params"])
    assert len(matrices["params"]) + len(vectors["params"]) == len(list(model.parameters()))
    assert optimizer.defaults["foreach"] is True and optimizer.defaults["fused"] is False


def test_load_state_dict_keeps_the_non_strict_mode_and_says_how_many_keys_are_missing():
    model = GPT(tiny())
    partial = {name: t for name, t in GPT(tiny(), seed=2).state_dict().items() if not name.startswith("transformer.h.1")}
    result = model.load_state_dict(partial, strict=False)  # what fine-tuning from a shallower model does
    assert result.missing_keys and all(name.startswith("transformer.h.1") for name in result.missing_keys)
    assert torch.equal(model.transformer.wte.weight, partial["transformer.wte.weight"])
    missing = len(result.missing_keys)
    with pytest.raises(ValueError, match=rf"\(checkpoint vs model: n_layer 1 != 2\).*{missing} missing key\(s\), e\.g\. "):
        model.load_state_dict(partial)
    wide = GPT(tiny().replace(n_embd=64, vocab_size=80)).state_dict()
    with pytest.raises(ValueError, match=r"\(checkpoint vs model: vocab_size 80 != 96, n_embd 64 != 32\)"):
        model.load_state_dict(wide)


def test_bad_shapes_and_dtypes_are_refused_with_what_was_given():
    model = GPT(tiny())
    with pytest.raises(ValueError, match=r"integer dtype; got \(2, 3\) torch.float32"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"integer dtype; got \(6,\) torch.int64"):
        model(torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"padding_mask has shape \(2, 7\) but idx has \(2, 8\)"):
        model(tokens((2, 8)), padding_mask=torch.ones(2, 7, dtype=torch.bool))


def test_hf_conversion_refuses_what_gpt2_cannot_express():
    transformers = pytest.importorskip("transformers", reason="the Hugging Face comparison needs transformers")
    from minilm.model.hf import config_from_hf, hf_config, state_dict_from_hf, to_hf

    for changes, named in ((dict(mlp="swiglu"), "mlp='swiglu'"), (dict(bias=False), "bias=False"),
                           (dict(tie_weights=False), "tie_weights=False"), (dict(causal=False), "causal=False")):
        with pytest.raises(ValueError, match=re.escape(named)):
            to_hf(GPT(tiny(**changes)))
    base = dict(vocab_size=VOCAB, n_positions=48, n_layer=2, n_head=4, n_embd=32)
    with pytest.raises(ValueError, match=r"activation_function='relu'.*\(gelu_new or gelu_pytorch_tanh\) converts"):
        config_from_hf(transformers.GPT2Config(**base, activation_function="relu"))
    for unusual in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        with pytest.raises(ValueError, match=unusual):
            config_from_hf(transformers.GPT2Config(**base, **{unusual: True}))
    # n_inner of 4 x n_embd is GPT-2's default spelled out: the same config as leaving it unset
    assert config_from_hf(transformers.GPT2Config(**base, n_inner=128)) == config_from_hf(transformers.GPT2Config(**base))
    assert hf_config(tiny()).bos_token_id == hf_config(tiny()).eos_token_id == VOCAB - 1
    # checkpoints saved by older transformers hold each layer's causal mask as a buffer: dropped on the way in
    state = to_hf(GPT(tiny())).state_dict()
    state["transformer.h.0.attn.bias"] = torch.ones(1, 1, 48, 48, dtype=torch.bool)
    state["transformer.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    assert set(state_dict_from_hf(state)) == set(GPT(tiny()).state_dict())


def test_generation_refuses_bad_prompts_and_settings_with_the_fix():
    model = lively(tiny())
    with pytest.raises(ValueError, match=r"^prompts must be a non-empty list of token-id lists, e.g. \[\[5, 9, 2\]\] for one prompt$"):
        generate(model, [5, 9, 2], 4)  # one prompt, not wrapped in a list
    for bad in ([], torch.tensor([[5, 9, 2]])):
        with pytest.raises(ValueError, match="prompts must be a non-empty list of token-id lists"):
            generate(model, bad, 4)
    with pytest.raises(ValueError, match=r"^every prompt needs at least one token \(start empty prompts with a begin-of-text token\)$"):
        generate(model, [[1], []], 4)
    with pytest.raises(ValueError, match=r"prompt token id 96 is outside the vocabulary of 96 ids \(0..95\)"):
        generate(model, [[1, 96]], 4)
    with pytest.raises(ValueError, match=r"temperature=-0.5 must be >= 0 \(0 means greedy\)"):
        generate(model, [[1]], 4, temperature=-0.5)
    with pytest.raises(ValueError, match="max_new_tokens=0 must be at least 1"):
        generate(model, [[1]], 0)


def test_documented_defaults_sample_at_temperature_1_and_initialise_from_seed_0():
    model = GPT(tiny())
    with torch.no_grad():  # logits spread enough for the temperature to change the draws, not so much that it cannot
        model.transformer.wte.weight.mul_(10)
    default = generate(model, [[3, 1, 4]], 24, seed=5)
    assert default == generate(model, [[3, 1, 4]], 24, seed=5, temperature=1.0)
    assert default != generate(model, [[3, 1, 4]], 24, seed=5, temperature=2.0)
    assert all(torch.equal(a, b) for a, b in zip(GPT(tiny()).parameters(), GPT(tiny(), seed=0).parameters()))


def test_load_state_dict_can_assign_the_given_tensors():
    model, state = GPT(tiny()), GPT(tiny(), seed=3).state_dict()
    model.load_state_dict(state, assign=True)  # no copy: the model takes the tensors themselves (meta-device loading)
    assert model.transformer.wte.weight.data_ptr() == state["transformer.wte.weight"].data_ptr()


def test_hf_config_carries_dropout_eps_and_the_attention_kernel_asked_for():
    transformers = pytest.importorskip("transformers", reason="the Hugging Face comparison needs transformers")
    from minilm.model.hf import config_from_hf, hf_config

    hf = transformers.GPT2Config(vocab_size=VOCAB, n_positions=48, n_layer=2, n_head=4, n_embd=32,
                                 resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1, layer_norm_epsilon=1e-6)
    config = config_from_hf(hf)
    assert (config.dropout, config.norm_eps) == (0.1, 1e-6)
    assert hf_config(tiny(), attn_implementation="eager")._attn_implementation == "eager"


def test_config_refuses_odd_rope_heads_and_empty_mlps_at_their_boundaries():
    with pytest.raises(ValueError, match="rotary positions rotate pairs of dimensions: head_dim=3 must be even"):
        tiny(position="rope", n_embd=12, n_head=4)  # 3 dimensions per head: RoPE rotates pairs
    tiny(position="learned", n_embd=12, n_head=4)  # odd heads are fine without RoPE
    tiny(position="rope", n_embd=16, n_head=4)
    with pytest.raises(ValueError, match=r"mlp_hidden=0 must be positive \(or None for the usual width\)"):
        tiny(mlp_hidden=0)
    assert GPT(tiny(mlp_hidden=1)).transformer.h[0].mlp.c_fc.out_features == 1  # the smallest MLP there is


def test_rotary_tables_are_rebuilt_from_the_config_not_saved():
    state = GPT(tiny(position="rope")).state_dict()
    assert not any("rotary" in name or name.endswith((".cos", ".sin")) for name in state)
    assert set(state) == set(GPT(tiny(position="learned")).state_dict()) - {"transformer.wpe.weight"}


def test_hf_conversion_carries_the_mlp_width_and_refuses_untied_embeddings():
    transformers = pytest.importorskip("transformers", reason="the Hugging Face comparison needs transformers")
    from minilm.model.hf import config_from_hf, hf_config

    assert hf_config(tiny(mlp_hidden=48)).n_inner == 48
    with pytest.raises(ValueError, match="^the HF model has untied input and output embeddings; GPT-2 ties them$"):
        config_from_hf(transformers.GPT2Config(vocab_size=VOCAB, n_positions=48, n_layer=2, n_head=4, n_embd=32,
                                               tie_word_embeddings=False))


def test_config_and_cache_refusals_say_what_is_allowed():
    with pytest.raises(ValueError, match=r"^GPTConfig.position='alibi'; choose one of learned, sinusoidal, rope$"):
        tiny(position="alibi")
    with pytest.raises(ValueError, match=r"^dropout=1.0 must be in \[0, 1\)$"):
        tiny(dropout=1.0)
    tiny(dropout=0.0)
    with pytest.raises(ValueError, match="^a KV cache of 49 positions exceeds the model's context of 48$"):
        KVCache(tiny(), batch_size=1, max_length=49)
    KVCache(tiny(), batch_size=1, max_length=48)
