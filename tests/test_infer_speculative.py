"""Speculative decoding (`minilm.infer.speculative`): the same tokens as the target alone, fewer target calls.

Three kinds of evidence:

1. *Greedy is exact.* Against `minilm.model.generate.generate(target, [prompt], n, temperature=0)`, token for
   token, for several prompts and lookaheads 1..6, with three drafts: an unrelated random model (it almost never
   guesses right), a noisy copy of the target (it guesses right about half the time, so rounds end at every
   position) and the target itself (every guess accepted: exactly ceil(n / (k + 1)) target calls). And against
   Hugging Face transformers' assisted generation on the same models (5.x).
2. *Sampling is exact in distribution.* On a toy vocabulary of 5 with fixed p (target) and q (draft), the first
   token out of `accept_step` over 20,000 draws follows p (chi-square), while the draft's own tokens fail the same
   test; the share of accepted guesses is 1 - TV(p, q); with q == p every guess is accepted.
3. *The pieces.* `accept_step` by hand on one-hot rows; a rewound KV cache gives the logits of a fresh one; end
   tokens stop generation where `generate`'s stop token does; bad inputs raise with the fix in the message.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from minilm.infer.speculative import (
    SpeculativeResult,
    accept_step,
    probabilities,
    rewind,
    speculative_generate,
)
from minilm.model import GPT, GPTConfig, KVCache, generate
from minilm.model.hf import to_hf
from spread import spread_weights

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 64
CONFIG = GPTConfig(vocab_size=VOCAB, context=64, n_layer=2, n_head=2, n_embd=32)
PROMPTS = ([5], [3, 1, 4, 1, 5], list(range(10, 30)))
NEW = 30
CHI2_DF4_P001 = 18.467  # the chi-square distribution with 4 degrees of freedom exceeds this with probability 0.001


def lively(config: GPTConfig, seed: int) -> GPT:
    """Large random block matrices: varied greedy continuations instead of one token repeated (see test_model)."""
    return spread_weights(GPT(config, seed=seed), 1.0, seed, keep=("transformer.wte", "transformer.wpe"))


@pytest.fixture(scope="module")
def target() -> GPT:
    return lively(CONFIG, seed=0)


@pytest.fixture(scope="module")
def drafts(target) -> dict[str, GPT]:
    stranger = lively(GPTConfig(vocab_size=VOCAB, context=64, n_layer=1, n_head=2, n_embd=16, position="rope"), 1)
    cousin = copy.deepcopy(target)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in cousin.named_parameters():
            if name.startswith("transformer.h") and param.dim() >= 2:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return {"stranger": stranger, "cousin": cousin, "self": target}


# --- greedy: the target's own tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stranger", "cousin", "self"])
def test_greedy_speculative_decoding_gives_the_tokens_of_the_target_alone(target, drafts, name):
    draft = drafts[name]
    rates = []
    for prompt in PROMPTS:
        expected = generate(target, [prompt], NEW, temperature=0)[0]
        assert len(set(expected)) > 5  # a varied continuation, so that the equality means something
        for lookahead in range(1, 7):
            result = speculative_generate(target, draft, prompt, NEW, lookahead=lookahead)
            assert result.tokens == expected, (prompt, lookahead)
            # Each round returns its accepted guesses plus one token of the target's.
            assert result.accepted + result.target_calls == NEW
            assert result.draft_calls == result.proposed
            rates.append(result.acceptance_rate)
            if name == "self":
                assert result.acceptance_rate == 1.0
                assert result.target_calls == math.ceil(NEW / (lookahead + 1))
                assert result.tokens_per_target_call == NEW / result.target_calls
    if name == "stranger":
        assert max(rates) < 0.1  # an unrelated model: the target does nearly all the work, still exactly
    if name == "cousin":
        # Guesses kept and rejected in nearly every run (17 of the 18): rounds end at every position, and the
        # caches roll back often.
        assert min(rates) > 0.15 and sum(0 < rate < 1 for rate in rates) >= 15
    assert target.training is False and draft.training is False


def test_greedy_tokens_equal_hugging_face_assisted_generation(target, drafts):
    """transformers' own speculative decoding (`generate(..., assistant_model=...)`), on the same two models
    converted to GPT2LMHeadModel, the draft guessing a constant `lookahead` tokens ahead."""
    hf_target, hf_draft = to_hf(target).eval(), to_hf(drafts["cousin"]).eval()
    for prompt in PROMPTS[1:]:
        ids = torch.tensor([prompt])
        for lookahead in (2, 5):
            hf_draft.generation_config.update(
                num_assistant_tokens=lookahead, num_assistant_tokens_schedule="constant",
                assistant_confidence_threshold=0.0,
            )  # fmt: skip
            hf = hf_target.generate(
                ids, attention_mask=torch.ones_like(ids), assistant_model=hf_draft, do_sample=False,
                max_new_tokens=NEW, min_new_tokens=NEW, pad_token_id=0, eos_token_id=None,
            )  # fmt: skip
            ours = speculative_generate(target, drafts["cousin"], prompt, NEW, lookahead=lookahead)
            assert ours.tokens == hf[0, len(prompt) :].tolist()


def test_models_in_training_mode_are_left_in_it(target, drafts):
    draft = drafts["cousin"]
    target.train(), draft.train()
    try:
        speculative_generate(target, draft, [1, 2], 5)
        assert target.training and draft.training
    finally:
        target.eval(), draft.eval()


def test_end_tokens_stop_it_where_generate_stops(target, drafts):
    prompt = PROMPTS[1]
    free = generate(target, [prompt], NEW, temperature=0)[0]
    for stop in (free[0], free[6], free[NEW - 1]):  # the first token, one inside, the last
        expected = generate(target, [prompt], NEW, temperature=0, stop_token=stop)[0]
        assert expected == free[: free.index(stop)]
        for draft in drafts.values():
            result = speculative_generate(target, draft, prompt, NEW, lookahead=4, end_tokens={stop, VOCAB - 1})
            assert result.tokens == expected
    absent = next(t for t in range(VOCAB) if t not in free)
    assert speculative_generate(target, drafts["self"], prompt, NEW, end_tokens=[absent]).tokens == free


# --- sampling: the target's distribution -------------------------------------------------------------------------

P = torch.tensor([0.10, 0.40, 0.20, 0.25, 0.05])


def first_tokens(p: torch.Tensor, q: torch.Tensor, draws: int = 20_000, seed: int = 0) -> tuple[list[int], list[int]]:
    """Draw a guess from q, let `accept_step` judge it against p (the bonus row is p too): the draft's guesses and
    the first token out of each step."""
    generator = torch.Generator().manual_seed(seed)
    guesses = torch.multinomial(q, draws, replacement=True, generator=generator).tolist()
    target_probs, draft_probs = torch.stack([p, p]), q[None]
    return guesses, [accept_step(target_probs, draft_probs, [x], generator)[0] for x in guesses]


def chi_square(tokens: list[int], p: torch.Tensor) -> float:
    counts = torch.bincount(torch.tensor(tokens), minlength=p.numel()).double()
    expected = p.double() * len(tokens)
    return float(((counts - expected) ** 2 / expected).sum())


def test_sampling_follows_the_target_even_with_a_very_different_draft():
    q = torch.tensor([0.50, 0.05, 0.10, 0.05, 0.30])
    guesses, firsts = first_tokens(P, q)
    assert chi_square(firsts, P) < CHI2_DF4_P001
    assert chi_square(guesses, P) > 100 * CHI2_DF4_P001  # the same test tells q from p: it has the power
    # A guess is kept with probability sum_x min(p(x), q(x)) = 1 - TV(p, q) = 0.35 here; 3 standard errors of slack.
    kept = sum(g == f for g, f in zip(guesses, firsts)) / len(guesses)  # a replacement never equals the guess
    rate = float(torch.minimum(P, q).sum())
    assert rate == pytest.approx(0.35)
    assert abs(kept - rate) < 3 * math.sqrt(rate * (1 - rate) / len(guesses))


def test_a_draft_equal_to_the_target_is_always_accepted():
    guesses, firsts = first_tokens(P, P.clone())
    assert firsts == guesses
    assert chi_square(firsts, P) < CHI2_DF4_P001


def test_accept_step_returns_the_accepted_guesses_and_one_more_token():
    # Rows where p and q agree completely accept for sure; a row where p gives the guess nothing rejects for sure.
    one_hot = torch.eye(5)
    q = one_hot[[2, 3, 1]]
    assert accept_step(one_hot[[2, 3, 1, 0]], q, [2, 3, 1]) == [2, 3, 1, 0]  # all kept, then the bonus
    assert accept_step(one_hot[[2, 3, 4, 0]], q, [2, 3, 1]) == [2, 3, 4]  # third rejected: the target's token
    assert accept_step(one_hot[[0, 3, 1, 0]], q, [2, 3, 1]) == [0]
    assert accept_step(one_hot[[4]], q[:0], []) == [4]  # no guesses: one token from the target
    # The residual max(0, p - q) never gives back the token just rejected.
    p, q = torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    generator = torch.Generator().manual_seed(0)
    outs = [accept_step(torch.stack([p, p]), q[None], [2], generator)[0] for _ in range(400)]
    assert set(outs) == {1, 2} and 150 < outs.count(2) < 250  # token 2 kept half the time, else token 1


def test_greedy_is_accept_step_on_one_hot_rows():
    """The greedy rule written as a loop ("keep guesses while they are the target's argmax, then its argmax")
    against `accept_step` on `probabilities(logits, 0)`, on random logits where the guesses agree half the time."""
    generator = torch.Generator().manual_seed(1)
    for _ in range(200):
        k = int(torch.randint(0, 6, (), generator=generator))
        target_logits = torch.randn(k + 1, 7, generator=generator)
        best = target_logits.argmax(dim=-1).tolist()
        guesses = [b if torch.rand((), generator=generator) < 0.7 else (b + 1) % 7 for b in best[:k]]
        expected = []
        for guess, b in zip(guesses, best):
            expected.append(b)
            if guess != b:
                break
        else:
            expected.append(best[k])
        draft_probs = F.one_hot(torch.tensor(guesses, dtype=torch.long), 7).float()
        assert accept_step(probabilities(target_logits, 0.0), draft_probs, guesses, generator) == expected


def test_sampled_speculative_decoding_is_seeded_and_accepts_everything_from_the_target_itself(target, drafts):
    # These models' logits are small (the tied head is the 0.02-sized embedding): at temperature 1 both give
    # nearly uniform distributions and the cousin's guesses are nearly always kept. 0.02 makes them sharp.
    prompt, cold = PROMPTS[1], 0.02
    one = speculative_generate(target, drafts["cousin"], prompt, NEW, temperature=cold, seed=3)
    assert one == speculative_generate(target, drafts["cousin"], prompt, NEW, temperature=cold, seed=3)
    assert one.tokens != speculative_generate(target, drafts["cousin"], prompt, NEW, temperature=cold, seed=4).tokens
    assert len(one.tokens) == NEW and 0.2 < one.acceptance_rate < 0.9
    itself = speculative_generate(target, target, prompt, NEW, lookahead=3, temperature=cold, seed=3)
    assert itself.acceptance_rate == 1.0 and itself.target_calls == math.ceil(NEW / 4)


# --- the KV caches ---------------------------------------------------------------------------------------------


def test_a_rewound_cache_gives_the_logits_of_a_fresh_one(target):
    ids = torch.randint(VOCAB, (1, 20), generator=torch.Generator().manual_seed(0))
    kept, dropped, new = ids[:, :8], ids[:, 8:14], ids[:, 14:]
    with torch.no_grad():
        fresh = KVCache(CONFIG, 1, 20)
        target(kept, cache=fresh)
        expected, _ = target(new, cache=fresh)

        cache = KVCache(CONFIG, 1, 20)
        target(torch.cat([kept, dropped], dim=1), cache=cache)
        rewind(cache, 8)
        logits, _ = target(new, cache=cache)
    # Equal up to float32 rounding: the kept keys were computed in a pass of 14 positions instead of 8.
    assert (logits - expected).abs().max() <= 1e-5 * expected.abs().max()
    assert cache.length == 14 and bool(cache.key_mask[:, : cache.length].all())
    with pytest.raises(ValueError, match="cannot rewind a cache of 14 positions to 15; use 0..14"):
        rewind(cache, 15)
    with pytest.raises(ValueError, match="to -1"):
        rewind(cache, -1)


# --- bad input -------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_with_the_fix(target, drafts):
    draft = drafts["stranger"]
    other_vocab = GPT(GPTConfig(vocab_size=VOCAB + 1, context=64, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match=r"draft's vocabulary \(65 ids\) differs from the target's \(64\)"):
        speculative_generate(target, other_vocab, [1], 5)
    encoder = GPT(CONFIG.replace(causal=False))
    with pytest.raises(ValueError, match="needs two decoders"):
        speculative_generate(target, encoder, [1], 5)
    # The context must hold the prompt and the new tokens: 60 + 4 = 64 fits, 60 + 5 does not.
    assert len(speculative_generate(target, draft, [1] * 60, 4, lookahead=6).tokens) == 4
    with pytest.raises(ValueError, match="60 tokens plus 5 new ones exceeds the target's context of 64; .* at most 4"):
        speculative_generate(target, draft, [1] * 60, 5)
    short_draft = lively(GPTConfig(vocab_size=VOCAB, context=32, n_layer=1, n_head=2, n_embd=16), 2)
    with pytest.raises(ValueError, match="exceeds the draft's context of 32"):
        speculative_generate(target, short_draft, [1] * 30, 3)
    for kwargs, message in [
        (dict(max_new_tokens=0), "max_new_tokens=0 must be at least 1"),
        (dict(lookahead=0), "lookahead=0 must be at least 1"),
        (dict(temperature=-0.5), "temperature=-0.5 must be a finite number >= 0"),
        (dict(prompt_ids=[]), "one non-empty list of token ids"),
        (dict(prompt_ids=[[1, 2]]), "not a list of prompts"),
        (dict(prompt_ids=[1, VOCAB]), "prompt token id 64 is outside the vocabulary of 64 ids"),
    ]:
        arguments = dict(prompt_ids=[1, 2], max_new_tokens=5) | kwargs
        with pytest.raises(ValueError, match=message):
            speculative_generate(target, draft, **arguments)
    assert len(speculative_generate(target, draft, [1, VOCAB - 1], 1, lookahead=1).tokens) == 1  # the edges pass


def test_accept_step_rejects_mismatched_shapes_and_impossible_guesses():
    p, q = torch.full((3, 5), 0.2), torch.full((2, 5), 0.2)
    with pytest.raises(ValueError, match=r"for 2 draft tokens it must be \(3, vocab\)"):
        accept_step(p[:2], q, [0, 1])
    with pytest.raises(ValueError, match=r"it must be \(2, 5\)"):
        accept_step(p, torch.full((2, 4), 0.25), [0, 1])
    q_without_4 = torch.tensor([[0.25, 0.25, 0.25, 0.25, 0.0]] * 2)
    with pytest.raises(ValueError, match="draft token 4 at position 1 has no probability under the draft"):
        accept_step(p, q_without_4, [0, 4])
    with pytest.raises(ValueError, match="draft token 5 at position 0"):
        accept_step(p, q, [5, 0])


def test_the_result_reports_rates():
    result = SpeculativeResult(tokens=[1, 2, 3, 4, 5, 6], proposed=8, accepted=4, target_calls=2, draft_calls=8)
    assert result.acceptance_rate == 0.5 and result.tokens_per_target_call == 3.0
    empty = SpeculativeResult(tokens=[1], proposed=0, accepted=0, target_calls=1, draft_calls=0)
    assert empty.acceptance_rate == 0.0 and empty.tokens_per_target_call == 1.0
