"""DPO (minilm.rlhf.dpo): the answer tokens it scores, its loss and gradients against TRL's `DPOTrainer` on the
same batch, and learning: on pairs that prefer answers with one word, the implicit reward ranks held-out pairs
right and the policy gives that word more probability. (Checkpoints, resume and the divergence guard, which
the three trainers share, are tested in test_rlhf_trainer.py.)"""

from __future__ import annotations

import copy

import pytest
import torch

from minilm.finetune.chat import encode_chat
from minilm.model import GPT, GPTConfig
from minilm.model.hf import state_dict_from_hf, to_hf
from minilm.rlhf.dpo import DPOConfig, DPOObjective, all_answer_logprobs, answer_mask, rows_read, train_dpo
from minilm.rlhf.trainer import batch_rows
from minilm.rlhf.reward_model import encode_pairs
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.world import split_stories
from test_finetune_lora import base_model  # a tiny GPT-2-shaped model with large weights
from test_rlhf_reward_model import CONTEXT, synthetic_pairs  # pairs whose chosen answer says a given word

pytestmark = pytest.mark.usefixtures("one_thread")

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([text for text, _ in split_stories("sft_val", 3)], 300)


def tiny_policy(tokenizer: Tokenizer, seed: int = 0, large: bool = False) -> GPT:
    config = GPTConfig(vocab_size=tokenizer.vocab_size, context=CONTEXT, n_layer=2, n_head=2, n_embd=32)
    return base_model(seed, config) if large else GPT(config, seed=seed).eval()


def dpo_config(**overrides) -> DPOConfig:
    return DPOConfig(**{**dict(beta=0.1, lr=1e-3, steps=60, batch_size=16, eval_every=20, precision="fp32",
                               checkpoint_every=1000), **overrides})  # fmt: skip


# --- what is scored -------------------------------------------------------------------------------


def test_the_answer_mask_is_the_last_answer_as_sft_trains_it(tokenizer):
    pairs = synthetic_pairs(3, seed=0)
    pairs[1]["prompt"] = [{"role": "user", "content": "who sat?"}, {"role": "assistant", "content": "the cat"},
                          {"role": "user", "content": "and then?"}]  # fmt: skip  # an earlier answer is prompt
    data = encode_pairs(tokenizer, pairs, CONTEXT)
    mask = answer_mask(data)
    for i, pair in enumerate(pairs):
        prompt, _ = encode_chat(tokenizer, pair["prompt"], add_generation_prompt=True)
        for side, key in enumerate(("chosen", "rejected")):
            ids, trained = encode_chat(tokenizer, pair["prompt"] + pair[key])
            expected = [t >= len(prompt) for t in range(len(ids))]  # the answer and its <|end|>: what SFT trains last
            assert mask[i, side, : len(ids)].tolist() == expected and not mask[i, side, len(ids) :].any()
            assert all(trained[t] for t in range(len(prompt), len(ids)))
    earlier = encode_chat(tokenizer, pairs[1]["prompt"][:2])[1]
    assert sum(earlier) > 0 and not mask[1, :, : len(earlier)].any()  # SFT trains the earlier answer; DPO does not


def test_loss_and_gradients_equal_trl_dpo_trainer(tokenizer):
    """TRL's `DPOTrainer._compute_loss` (precomputed reference log-probs, the sigmoid loss) on the HF export of the
    policy, with the batch laid out as its collator does: chosen rows then rejected rows, right-padded, an attention
    mask, and `completion_mask` on the answer tokens. Our module's loss and gradients on the same pairs are equal."""
    trl_utils = pytest.importorskip("trl.trainer.utils")
    dpo_trainer = pytest.importorskip("trl.trainer.dpo_trainer")
    from test_rlhf_objectives import trainer_stand_in

    policy, reference = tiny_policy(tokenizer, seed=1, large=True), tiny_policy(tokenizer, seed=2, large=True)
    data = encode_pairs(tokenizer, synthetic_pairs(5, seed=3), CONTEXT)
    beta, rows = 0.3, torch.arange(5)
    ids, _ = data.rows(rows)
    mask = answer_mask(data)
    reference_logps = all_answer_logprobs(reference, data, "fp32")

    hf = to_hf(policy).train()
    trl_utils.add_fused_lm_head(hf, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    trainer = trainer_stand_in(model=hf, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
                               loss_types=["sigmoid"], loss_weights=[1.0], beta=beta, use_weighting=False)  # fmt: skip
    lengths = data.lengths[rows]
    inputs = {
        "input_ids": torch.cat([ids[:, 0], ids[:, 1]]),
        "attention_mask": (torch.arange(ids.size(-1)) < torch.cat([lengths[:, 0], lengths[:, 1]]).unsqueeze(1)).long(),
        "completion_mask": torch.cat([mask[rows, 0], mask[rows, 1]])[:, : ids.size(-1)].long(),
        "ref_chosen_logps": reference_logps[:, 0], "ref_rejected_logps": reference_logps[:, 1],
    }  # fmt: skip
    their_loss = dpo_trainer.DPOTrainer._compute_loss(trainer, hf, inputs, return_outputs=False)
    their_loss.backward()

    objective = DPOObjective(policy, mask, reference_logps, beta)
    _, our_loss = objective(ids, rows)
    our_loss.backward()
    assert abs(our_loss.item() - their_loss.item()) < TOLERANCE, (our_loss.item(), their_loss.item())
    assert 0.0 < objective.last["rewards/accuracies"] < 1.0  # the pairs are not all ranked alike
    their_grads = state_dict_from_hf({name: p.grad for name, p in hf.named_parameters()})
    for name, param in policy.named_parameters():
        torch.testing.assert_close(param.grad, their_grads[name], atol=TOLERANCE, rtol=0, msg=name)


# --- learning -------------------------------------------------------------------------------------

SIGNAL = "was"  # one token of the tokenizer (" was"), unlike "happy"


def signal_pairs(n: int, seed: int) -> list[dict]:
    return synthetic_pairs(n, seed, signal=SIGNAL)


def first_difference_logprobs(model: GPT, data) -> torch.Tensor:
    """log model(token) of the chosen answer's and the rejected answer's token at the first position where the two
    differ (SIGNAL, against the first token of another word), after the same prefix: (N, 2)."""
    ids = data.ids
    position = (ids[:, 0] != ids[:, 1]).float().argmax(1)
    rows = torch.arange(len(data))
    with torch.no_grad():
        logits, _ = model(ids[:, 0])
    logprobs = logits[rows, position - 1].log_softmax(-1)
    return torch.stack([logprobs[rows, ids[rows, 0, position]], logprobs[rows, ids[rows, 1, position]]], 1)


def test_the_reference_is_computed_for_exactly_the_pairs_the_run_reads(tokenizer):
    data = encode_pairs(tokenizer, synthetic_pairs(40, seed=3), CONTEXT)
    config = dpo_config(steps=3, batch_size=4)
    read = rows_read(len(data), config)
    expected = sorted({int(i) for step in range(3) for i in batch_rows(len(data), 4, step, config.seed)})
    assert read.tolist() == expected and len(read) == 12  # three batches of four, within one epoch of 40 pairs
    reference = tiny_policy(tokenizer, seed=1)
    everything = all_answer_logprobs(reference, data, "fp32")
    some = all_answer_logprobs(reference, data, "fp32", rows=read)
    torch.testing.assert_close(some[read], everything[read], rtol=0, atol=1e-5)  # other batches, other padding
    others = torch.ones(len(data), dtype=torch.bool)
    others[read] = False
    assert some[others].isnan().all() and not everything.isnan().any()


def test_dpo_learns_a_preference_the_implicit_reward_ranks_held_out_pairs(tokenizer, tmp_path):
    """Pairs whose chosen answer says "was" where the rejected one has another word. After 60 steps (2.3 s) the
    implicit reward ranks held-out pairs right (measured: eval_rewards/accuracies 1.0, 1.0 and 0.98 at steps 20, 40
    and 60; before training every implicit reward is 0, and the loss ln 2), with margins 0.70 and eval_loss 0.42;
    where the pairs differ, the policy's log-probability of " was" rose by 0.63 nats on average (in 97% of the
    pairs) and the other word's fell by 0.59. Both implicit rewards fall (-0.38 and -1.08): DPO widens the gap
    mostly by lowering the rejected answer, as it is known to. With the loss's sign flipped by hand, the accuracy
    is 0 and this test fails."""
    train = encode_pairs(tokenizer, signal_pairs(256, seed=0), CONTEXT)
    held_out = encode_pairs(tokenizer, signal_pairs(64, seed=100), CONTEXT)
    assert len(tokenizer.encode_ordinary(" " + SIGNAL)) == 1
    policy = tiny_policy(tokenizer)
    reference = copy.deepcopy(policy)
    history = train_dpo(policy, reference, train, dpo_config(), tmp_path, validation=held_out)

    assert [r["step"] for r in history] == list(range(1, 61))
    assert [r["step"] for r in history if "eval_rewards/accuracies" in r] == [20, 40, 60]
    for name in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                 "logps/rejected", "loss", "lr", "grad_norm"):  # fmt: skip
        assert name in history[-1]
    assert history[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-4)  # the policy starts as the reference
    assert history[-1]["eval_rewards/accuracies"] > 0.9
    assert min(r["rewards/accuracies"] for r in history[-10:]) > 0.9
    assert history[-1]["eval_rewards/margins"] > 0.4 and history[-1]["eval_loss"] < 0.55

    change = first_difference_logprobs(policy, held_out) - first_difference_logprobs(reference, held_out)
    assert change[:, 0].mean() > 0.3, change.mean(0)  # "happy" is more likely where the pairs differ
    assert change[:, 1].mean() < -0.2, change.mean(0)  # the rejected word less
    # The checkpoint holds the trained policy.
    from minilm.train.checkpoint import load_model

    trained = load_model(tmp_path / "checkpoints")
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), policy.state_dict().values()))


def test_bad_input_is_refused_by_name(tokenizer, tmp_path):
    data = encode_pairs(tokenizer, synthetic_pairs(8, seed=0), CONTEXT)
    policy = tiny_policy(tokenizer)
    small = GPT(GPTConfig(vocab_size=200, context=CONTEXT, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="reference has a vocabulary of 200 tokens and the policy 300"):
        train_dpo(policy, small, data, dpo_config(steps=2), tmp_path)
    with pytest.raises(ValueError, match="outside the policy's vocabulary of 200"):
        train_dpo(small, copy.deepcopy(small), data, dpo_config(steps=2), tmp_path)
    with pytest.raises(ValueError, match="the reference is the policy itself"):
        train_dpo(policy, policy, data, dpo_config(steps=2), tmp_path)
    with pytest.raises(ValueError, match="a batch of 16 rows from 8"):
        train_dpo(policy, copy.deepcopy(policy), data, dpo_config(steps=2), tmp_path)
    with pytest.raises(ValueError, match="keep_checkpoints >= 2"):
        dpo_config(keep_checkpoints=1)
