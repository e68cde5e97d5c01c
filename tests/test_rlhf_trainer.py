"""What DPO, PPO and GRPO share (minilm.rlhf.trainer): which rows each step reads, exact resume from a
checkpoint (weights equal, bit for bit, to an uninterrupted run's), and the divergence guard (a run whose KL or
loss explodes stops with a message naming beta and the learning rate, and keeps its last good checkpoint).
Each on the tiny setups of test_rlhf_dpo.py, test_rlhf_ppo.py and test_rlhf_grpo.py."""

from __future__ import annotations

import copy
import functools
import re

import pytest
import torch

from minilm.rlhf.dpo import train_dpo
from minilm.rlhf.grpo import train_grpo
from minilm.rlhf.ppo import train_ppo
from minilm.rlhf.reward_model import encode_pairs
from minilm.rlhf.trainer import DivergenceError, batch_rows
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.train.checkpoint import CheckpointError, list_checkpoints, load_model, read_checkpoint
from minilm.world import split_stories
from test_rlhf_dpo import dpo_config, signal_pairs, tiny_policy
from test_rlhf_grpo import grpo_config
from test_rlhf_ppo import PROMPTS, contains_target, models, ppo_config
from test_rlhf_reward_model import CONTEXT

pytestmark = pytest.mark.usefixtures("one_thread")


@functools.cache
def dpo_setup():
    tokenizer = Tokenizer.train([text for text, _ in split_stories("sft_val", 3)], 300)
    return tokenizer, encode_pairs(tokenizer, signal_pairs(64, seed=0), CONTEXT)


def run(method: str, out_dir, until_step: int | None = None, resume: bool = True,
        **overrides) -> tuple[list[dict], list[torch.nn.Module]]:  # fmt: skip
    """A short run of `method` from freshly made models (as a new process would make them): (history, trained models)."""
    if method == "dpo":
        tokenizer, pairs = dpo_setup()
        policy = tiny_policy(tokenizer)
        config = dpo_config(**{**dict(steps=6, batch_size=8), **overrides})
        history = train_dpo(policy, copy.deepcopy(policy), pairs, config, out_dir, resume=resume, until_step=until_step)
        return history, [policy]
    policy, reference, value_model = models()
    if method == "ppo":
        config = ppo_config(**{**dict(iterations=6), **overrides})
        history = train_ppo(policy, reference, value_model, contains_target, PROMPTS, config, out_dir, resume=resume,
                            until_step=until_step)  # fmt: skip
        return history, [policy, value_model]
    config = grpo_config(**{**dict(iterations=6, epochs=2, minibatch_size=8), **overrides})
    history = train_grpo(policy, reference, contains_target, PROMPTS, config, out_dir, resume=resume, until_step=until_step)
    return history, [policy]


METHODS = ("dpo", "ppo", "grpo")


def test_batch_rows_read_every_row_once_an_epoch_in_a_new_order_each_epoch():
    epochs = [torch.cat([batch_rows(10, 3, step, seed=0) for step in range(e * 3, e * 3 + 3)]) for e in range(3)]
    for order in epochs:
        assert len(order) == 9 and len(set(order.tolist())) == 9  # 3 batches of 3 distinct rows: one row left out
    assert not torch.equal(epochs[0], epochs[1])
    assert torch.equal(batch_rows(10, 3, 4, seed=0), batch_rows(10, 3, 4, seed=0))  # a function of the step
    assert not torch.equal(batch_rows(10, 3, 4, seed=0), batch_rows(10, 3, 4, seed=1))


@pytest.mark.parametrize("method", METHODS)
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(method, tmp_path):
    """Stop after 3 of 6 steps (a checkpoint at steps 2 and 3), start a new run in the same folder from freshly made
    models: it continues from step 3, and its weights (the value model's too) and history equal, bit for bit, those
    of a run that never stopped. Each step's samples, rows and minibatches are functions of (seed, step)."""
    whole, whole_models = run(method, tmp_path / "whole", checkpoint_every=2)
    first, _ = run(method, tmp_path / "split", until_step=3, checkpoint_every=2)
    assert len(first) == 3 and [p.name for p in list_checkpoints(tmp_path / "split" / "checkpoints")] == ["step_000002", "step_000003"]
    resumed, resumed_models = run(method, tmp_path / "split", checkpoint_every=2)
    assert resumed == whole and len(whole) == 6
    for a, b in zip(whole_models, resumed_models):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), name
    # A different training config is refused; how often it saves may change.
    with pytest.raises(CheckpointError, match="another config .*lr: checkpoint 0.001, now 0.002"):
        run(method, tmp_path / "split", lr=2e-3)
    again, _ = run(method, tmp_path / "split", checkpoint_every=3)  # finished: nothing left to do
    assert again == whole
    # resume=False starts over: the old checkpoints go, and a run to step 2 leaves only its own.
    fresh, _ = run(method, tmp_path / "split", until_step=2, resume=False, checkpoint_every=2)
    assert fresh == whole[:2] and [p.name for p in list_checkpoints(tmp_path / "split" / "checkpoints")] == ["step_000002"]


# Settings under which each method's KL per token climbs past max_kl after a few good steps. Measured, per step:
# DPO's |log ratio| per token 0, 0.05, 0.12, 0.10, 0.39, 0.77, 1.19 (stops at step 7); PPO's KL per token 0, 0.02,
# 0.09, 0.15, 0.29, 0.53 (step 6); GRPO's 0, 0.01, 0.10, 0.33, 0.76 (step 5). DPO keeps beta 0.1: at beta 0 its
# loss is constant and nothing moves.
EXPLODING = {
    "dpo": dict(beta=0.1, lr=0.02, max_kl=1.0, steps=40),
    "ppo": dict(beta=0.0, lr=2e-3, max_kl=0.3, iterations=40),
    "grpo": dict(beta=0.0, lr=5e-3, max_kl=0.5, iterations=40, epochs=1, minibatch_size=None),
}


@pytest.mark.parametrize("method", METHODS)
def test_a_run_whose_kl_explodes_stops_naming_beta_and_the_learning_rate_and_keeps_its_last_good_checkpoint(method, tmp_path):
    """A large learning rate, and no KL penalty where the method allows it: the policy runs from the reference until
    its KL per token passes max_kl. The run stops there with a DivergenceError that names beta and lr; the checkpoint
    holding the weights whose KL was too large is removed, and the one before it, whose KL was measured below
    max_kl, is kept and loads."""
    settings = EXPLODING[method]
    with pytest.raises(DivergenceError, match=rf"beta={settings['beta']} and learning rate lr={settings['lr']}") as caught:
        run(method, tmp_path, checkpoint_every=1, **settings)
    message = str(caught.value)
    step = int(re.search(r"diverged at step (\d+) of 40", message).group(1))
    assert "the KL to the reference is" in message and f"max_kl={settings['max_kl']})" in message
    assert step >= 3, "the test needs a run that trains a few good steps before it diverges"
    kept = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in kept] == [f"step_{step - 2:06d}"]  # of the two newest, step - 1 held the diverged weights
    assert f"The last good checkpoint is kept: {kept[-1]}" in message
    assert all(torch.isfinite(w).all() for w in load_model(kept[-1]).state_dict().values())
    # The error's history ends with the step that diverged; the step before it measured the kept weights, below max_kl.
    history = caught.value.history
    assert [r["step"] for r in history] == list(range(1, step + 1))
    guarded = {"dpo": "logps/abs_ratio_per_token", "ppo": "objective/kl_per_token", "grpo": "kl"}[method]
    assert f"({guarded}; max_kl=" in message
    assert history[-1][guarded] > settings["max_kl"] >= max(r[guarded] for r in history[:-1])
    _, state, _ = read_checkpoint(kept[-1])
    assert state["history"] == history[: step - 2]


def test_a_run_that_explodes_at_once_leaves_no_checkpoint_and_says_so(tmp_path):
    """An absurd learning rate: the first update wrecks the weights (some 1e29 each), so the second step's sampling
    meets scores that are not finite; the checkpoint of step 1 holds those weights, is removed, and none is left."""
    with pytest.raises(DivergenceError, match=r"diverged at step 2 of 20: sampling failed .*not finite.*lr=1e\+30.*"
                                              r"No checkpoint was written before it"):  # fmt: skip
        run("grpo", tmp_path, iterations=20, lr=1e30, beta=0.04, checkpoint_every=1, epochs=1, minibatch_size=None)
    assert list_checkpoints(tmp_path / "checkpoints") == []
