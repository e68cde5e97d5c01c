"""Rollouts (minilm.rlhf.rollout): sampled completions in the layout PPO and GRPO read, their log-probabilities
checked against a token-by-token loop, against `objectives.sequence_logprobs` and against the sampler's own
softmax, and the value model's values."""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch

from minilm.model import GPT, GPTConfig, generate
from minilm.rlhf.objectives import sequence_logprobs
from minilm.rlhf.reward_model import RewardModel
from minilm.rlhf.rollout import Rollout, ValueModel, completion_logprobs, completion_values, sample_completions
from test_finetune_lora import base_model  # a tiny GPT-2-shaped model with large weights

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, STOP, PAD = 24, 5, 0  # a small vocabulary, so that some rows sample the stop token and some do not
CONFIG = GPTConfig(vocab_size=VOCAB, context=32, n_layer=2, n_head=4, n_embd=32)
PROMPTS = [[3, 9, 14], [7, 1, 2, 8, 8, 20, 11], [4], [12, 6, 19, 2, 17]]
MAX_NEW = 12
TOLERANCE = 1e-5
SAMPLER = importlib.import_module("minilm.model.generate")  # the module (the package's `generate` is the function)


def policy(seed: int = 1) -> GPT:
    return base_model(seed, CONFIG)  # weights larger than the init's, so that log-probabilities differ visibly


def rollout(model: GPT, seed: int = 3, temperature: float = 1.0, pad: int = PAD) -> Rollout:
    return sample_completions(model, PROMPTS, MAX_NEW, temperature=temperature, seed=seed, stop_token=STOP, pad_token=pad)


# --- the rollout ----------------------------------------------------------------------------------


def test_layout_masks_and_seed():
    model = policy()
    r = rollout(model)
    assert r.prompt_ids.shape == r.prompt_mask.shape == (4, 7)
    for row, prompt in enumerate(PROMPTS):  # left-padded: every prompt ends in the last column
        assert r.prompt_ids[row, 7 - len(prompt) :].tolist() == prompt and r.prompt_mask[row].sum() == len(prompt)
        assert (r.prompt_ids[row, : 7 - len(prompt)] == PAD).all()
    lengths = r.completion_mask.sum(1)
    assert (r.completion_mask == (torch.arange(r.completion_ids.size(1)) < lengths[:, None])).all()  # right-padded
    assert (r.completion_ids[~r.completion_mask] == PAD).all()
    stopped = r.stopped
    assert stopped.any() and not stopped.all(), "the seed should give rows that stop and rows that run out"
    for row in range(4):
        real = r.completion_ids[row, : lengths[row]].tolist()
        assert real.count(STOP) == int(stopped[row]) and (real[-1] == STOP) == bool(stopped[row])  # the stop token is in
        if not stopped[row]:
            assert len(real) == MAX_NEW
    # Built on the sampler: the same tokens as `generate` with the same seed (which drops the stop token).
    assert r.answers() == generate(model, PROMPTS, MAX_NEW, seed=3, stop_token=STOP, pad_token=PAD)
    again, other = rollout(model), rollout(model, seed=4)
    tensors = [f.name for f in dataclasses.fields(r) if f.name.endswith(("ids", "mask"))]
    assert all(torch.equal(getattr(r, name), getattr(again, name)) for name in tensors)
    assert not torch.equal(r.completion_ids[:, :3], other.completion_ids[:, :3])


def test_sequences_put_each_prompt_before_its_completion_even_when_the_pad_token_is_sampled():
    model = policy()
    common = int(torch.mode(rollout(model).completion_ids[rollout(model).completion_mask]).values)
    r = rollout(model, pad=common)  # the pad id is a token the policy samples: the masks, not the id, say what is real
    assert (r.completion_ids[r.completion_mask] == common).any()
    ids, real = r.sequences()
    for row, prompt in enumerate(PROMPTS):
        completion = r.completion_ids[row, r.completion_mask[row]].tolist()
        n = len(prompt) + len(completion)
        assert ids[row, :n].tolist() == prompt + completion and real[row].sum() == n and real[row, :n].all()
    reward_model = RewardModel(policy(2), pad_id=common)
    with torch.no_grad():
        scores = reward_model.score(ids, real)
        for row in range(4):
            alone = reward_model.score(ids[row : row + 1, : int(real[row].sum())], torch.ones(1, int(real[row].sum())))
            assert abs(scores[row] - alone[0]) < TOLERANCE


# --- log-probabilities ----------------------------------------------------------------------------


def test_logprobs_equal_a_token_by_token_loop_and_sequence_logprobs():
    model = policy()
    r = rollout(model)
    with torch.no_grad():
        logprobs = completion_logprobs(model, r)
        assert logprobs.shape == r.completion_ids.shape and (logprobs[~r.completion_mask] == 0).all()
        for row, prompt in enumerate(PROMPTS):  # each row alone, no padding, one token at a time
            completion = r.completion_ids[row, r.completion_mask[row]].tolist()
            for t, token in enumerate(completion):
                logits, _ = model(torch.tensor([prompt + completion[:t]]))
                expected = logits[0, -1].log_softmax(-1)[token]
                assert abs(logprobs[row, t] - expected) < TOLERANCE, (row, t)
        # The sum over each completion is objectives.sequence_logprobs of the same model's logits, aligned by hand.
        ids = torch.cat([r.prompt_ids, r.completion_ids], 1)
        logits, _ = model(ids, padding_mask=torch.cat([r.prompt_mask, r.completion_mask], 1))
        prompt_length = r.prompt_ids.size(1)
        aligned = logits[:, prompt_length - 1 : -1]  # the logits at column P - 1 + t predict completion token t
        sums = sequence_logprobs(aligned, r.completion_ids, r.completion_mask)
    torch.testing.assert_close(logprobs.sum(1), sums, atol=TOLERANCE, rtol=0)


def recorded_sampler(monkeypatch) -> list[torch.Tensor]:
    """Record, at every step of the sampler, the log-probability of the token it drew under the softmax it drew from."""
    draws: list[torch.Tensor] = []
    original = SAMPLER.sample

    def sample(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
        token = original(logits, temperature, top_k, top_p, generator)
        draws.append((logits.float() / temperature).log_softmax(-1).gather(1, token[:, None]).squeeze(1))
        return token

    monkeypatch.setattr(SAMPLER, "sample", sample)
    return draws


def test_logprobs_are_the_samplers_own_at_temperature_one(monkeypatch):
    model = policy()
    draws = recorded_sampler(monkeypatch)
    r = rollout(model)
    sampler = torch.stack(draws, 1).masked_fill(~r.completion_mask, 0.0)
    with torch.no_grad():
        torch.testing.assert_close(completion_logprobs(model, r), sampler, atol=TOLERANCE, rtol=0)


def test_a_rollout_sampled_at_another_temperature_is_refused(monkeypatch):
    """The PPO pitfall: tokens drawn from softmax(z / 0.5), scored under softmax(z). The two disagree, so scoring
    is refused."""
    model = policy()
    draws = recorded_sampler(monkeypatch)
    r = rollout(model, temperature=0.5)
    sampler = torch.stack(draws, 1).masked_fill(~r.completion_mask, 0.0)
    with torch.no_grad():
        model_own = completion_logprobs(model, dataclasses.replace(r, temperature=1.0))  # these tokens, scored as given
    assert (sampler - model_own).abs().max() > 0.1
    with pytest.raises(ValueError, match="sampled at temperature 0.5.*temperature=1.0"):
        completion_logprobs(model, r)
    with pytest.raises(ValueError, match="temperature 0"):
        completion_logprobs(model, rollout(model, temperature=0))


def test_policy_logprobs_carry_gradients_and_ignore_padding():
    model = policy()
    r = rollout(model)
    completion_logprobs(model, r).sum().backward()
    assert model.transformer.wte.weight.grad.abs().sum() > 0
    changed = r.completion_ids.clone()
    changed[~r.completion_mask] = 7  # what stands after a stop token changes nothing
    with torch.no_grad():
        torch.testing.assert_close(completion_logprobs(model, dataclasses.replace(r, completion_ids=changed)),
                                   completion_logprobs(model, r), atol=TOLERANCE, rtol=0)  # fmt: skip


# --- values ---------------------------------------------------------------------------------------


def test_values_read_the_state_before_each_token_and_start_as_the_reward_model():
    model = policy()
    r = rollout(model)
    reward_model = RewardModel(policy(2), pad_id=PAD, seed=3)
    value_model = ValueModel.from_reward_model(reward_model)
    assert value_model.base is not reward_model.base
    with torch.no_grad():
        values = completion_values(value_model, r)
        assert values.shape == r.completion_ids.shape and (values[~r.completion_mask] == 0).all()
        for row, prompt in enumerate(PROMPTS):
            completion = r.completion_ids[row, r.completion_mask[row]].tolist()
            alone = value_model(torch.tensor([prompt + completion]))[0]  # the value at every position of the row alone
            expected = alone[len(prompt) - 1 : len(prompt) - 1 + len(completion)]  # V(x, y_<t): before token t
            torch.testing.assert_close(values[row, : len(completion)], expected, atol=TOLERANCE, rtol=0)
        # A copy of the reward model: at the last real token, the value is the reward model's score.
        ids, real = r.sequences()
        at_every_position = value_model(ids, real)
        last = at_every_position[torch.arange(4), real.sum(1) - 1]
        torch.testing.assert_close(last, reward_model.score(ids, real), atol=TOLERANCE, rtol=0)
    completion_values(value_model, r).sum().backward()
    assert value_model.head.weight.grad is not None and reward_model.head.weight.grad is None
