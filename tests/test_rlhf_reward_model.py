"""The reward model (minilm.rlhf.reward_model): preference pairs encoded in the chat format, its loss and gradients
against TRL's `RewardTrainer` on the same model exported to Hugging Face, and training: a synthetic preference
is learnt to high held-out accuracy, and the same pairs with shuffled labels stay at chance."""

from __future__ import annotations

import random

import pytest
import torch

from minilm.finetune.chat import PAD, encode_chat
from minilm.model import GPT, GPTConfig
from minilm.model.hf import hf_config, state_dict_from_hf, state_dict_to_hf
from minilm.rlhf.objectives import bradley_terry_loss
from minilm.rlhf.reward_model import PromptBatches, RewardConfig, RewardModel, accuracy, encode_pairs, train_reward_model
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.world import split_stories
from test_finetune_lora import base_model  # a tiny GPT-2-shaped model with large weights

pytestmark = pytest.mark.usefixtures("one_thread")

CONTEXT = 80
TOLERANCE = 1e-5
WORDS = ("the a and was to he lake new on that black train in day at liked his always strong felt lived little warm had "
         "were raft but for cart is hill him with long friends saw again time tall very near it who small loved music "
         "soup been frog found cat dog sat ran big red tree park home sun bird said went").split()
SIGNAL = "happy"  # the synthetic annotators prefer the answer that says it


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([text for text, _ in split_stories("sft_val", 3)], 300)


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def synthetic_pairs(n: int, seed: int, shuffled: bool = False, signal: str = SIGNAL) -> list[dict]:
    """Pairs of answers of the same length made of random words; the chosen one says `signal` somewhere, the
    rejected one has another word there. `shuffled`: the labels are swapped at random, so they carry no signal."""
    rng = random.Random(seed)
    swapped = set(rng.sample(range(n), n // 2)) if shuffled else set()  # exactly half: the signal then tells nothing
    others = [word for word in WORDS if word != signal]
    pairs = []
    for i in range(n):
        words = rng.choices(WORDS, k=rng.randint(3, 6))
        at = rng.randrange(len(words) + 1)
        chosen, rejected = [*words[:at], signal, *words[at:]], [*words[:at], rng.choice(others), *words[at:]]
        if i in swapped:
            chosen, rejected = rejected, chosen
        prompt = [{"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(2, 5))) + "?"}]
        pairs.append({"prompt": prompt, "chosen": assistant(" ".join(chosen)), "rejected": assistant(" ".join(rejected))})
    return pairs


def tiny_reward_model(tokenizer: Tokenizer, seed: int = 0, large: bool = False, **options) -> RewardModel:
    """A tiny GPT-2-shaped reward model; `large`: larger weights than the init's (and a larger head), so that
    every token changes the score."""
    config = GPTConfig(vocab_size=tokenizer.vocab_size, context=CONTEXT, n_layer=2, n_head=2, n_embd=32)
    model = RewardModel(base_model(seed, config) if large else GPT(config, seed=seed), tokenizer.special_id(PAD),
                        seed=seed, **options)  # fmt: skip
    if large:
        with torch.no_grad():
            model.head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    return model.eval()


# --- encoding -------------------------------------------------------------------------------------


def test_pairs_are_prompt_plus_answer_in_the_chat_format_right_padded(tokenizer):
    pairs = synthetic_pairs(3, seed=0)
    pairs[1]["margin"] = 0.5
    data = encode_pairs(tokenizer, pairs, CONTEXT)
    pad = tokenizer.special_id(PAD)
    assert data.ids.shape[:2] == (3, 2) and data.margin.tolist() == [0.0, 0.5, 0.0]
    for i, pair in enumerate(pairs):
        for side, key in enumerate(("chosen", "rejected")):
            ids, _ = encode_chat(tokenizer, pair["prompt"] + pair[key])  # TRL's explicit prompt: prompt + answer
            assert data.ids[i, side, : len(ids)].tolist() == ids and data.lengths[i, side] == len(ids)
            assert (data.ids[i, side, len(ids) :] == pad).all()
            assert ids[-1] == tokenizer.special_id("<|end|>")  # the last real token closes the answer
    batch, margin = data.rows(torch.tensor([0, 2]))
    assert batch.shape[-1] == int(data.lengths[[0, 2]].max()) and margin.tolist() == [0.0, 0.0]


def every_pair_of(answers: list[str], prompt: list[dict]) -> list[dict]:
    """The annotators' pairs of one prompt: every two of its answers (the first of each pair chosen)."""
    return [{"prompt": prompt, "chosen": assistant(a), "rejected": assistant(b)}
            for i, a in enumerate(answers) for b in answers[i + 1 :]]  # fmt: skip


def shared_prompt_pairs() -> list[dict]:
    """Pairs of three prompts, with three, two and four answers: 3 + 1 + 6 pairs, each answer in several."""
    return [pair for n, prompt in ((3, "who sat?"), (2, "where?"), (4, "the frog saw the cat?"))
            for pair in every_pair_of(WORDS[:n], [{"role": "user", "content": prompt}])]  # fmt: skip


def test_pairs_of_one_prompt_share_its_number_and_a_batch_is_every_pair_of_its_prompts(tokenizer):
    data = encode_pairs(tokenizer, shared_prompt_pairs(), CONTEXT)
    assert data.prompt.tolist() == [0] * 3 + [1] + [2] * 6
    batches = PromptBatches(data)
    assert len(batches) == 3
    ids, margin = batches.rows(torch.tensor([2, 1]))
    assert ids.shape[:2] == (7, 2) and len(margin) == 7
    assert torch.equal(ids, data.rows(torch.tensor([4, 5, 6, 7, 8, 9, 3]))[0])


def test_an_answer_in_several_pairs_is_scored_once_with_the_loss_and_gradients_of_scoring_each(tokenizer):
    data = encode_pairs(tokenizer, shared_prompt_pairs(), CONTEXT)
    pairs, margin = data.rows(torch.arange(len(data)))
    model = tiny_reward_model(tokenizer, large=True).train()
    scored = []
    original = model.score
    model.score = lambda ids, *rest: scored.append(len(ids)) or original(ids, *rest)
    rewards, loss = model(pairs, margin)
    assert scored == [9]  # 3 + 2 + 4 distinct conversations, of the 20 that the 10 pairs hold
    loss.backward()
    ours = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    each = original(pairs.flatten(0, 1)).view(-1, 2)  # every row scored, as TRL does
    expected = bradley_terry_loss(each[:, 0], each[:, 1], margin)
    expected.backward()
    torch.testing.assert_close(rewards, each, atol=TOLERANCE, rtol=0)
    assert abs(loss.item() - expected.item()) < TOLERANCE
    for name, p in model.named_parameters():
        torch.testing.assert_close(ours[name], p.grad, atol=TOLERANCE, rtol=0, msg=name)
    assert max(g.abs().max() for g in ours.values()) > 100 * TOLERANCE  # the gradients compared are not all ~0


def test_pairs_too_long_or_identical_are_refused_by_name(tokenizer):
    pairs = synthetic_pairs(3, seed=0)
    pairs[2]["chosen"] = assistant(" ".join(["park"] * 100))
    with pytest.raises(ValueError, match=r"pair 2 is \d+ tokens long.*context of 80: drop the pair"):
        encode_pairs(tokenizer, pairs, CONTEXT)
    pairs = synthetic_pairs(3, seed=0)
    pairs[1]["rejected"] = assistant(pairs[1]["chosen"][0]["content"])
    with pytest.raises(ValueError, match="pair 1: chosen and rejected are the same response"):
        encode_pairs(tokenizer, pairs, CONTEXT)
    with pytest.raises(ValueError, match="no preference pairs"):
        encode_pairs(tokenizer, [], CONTEXT)


# --- the model ------------------------------------------------------------------------------------


def test_scores_read_the_last_real_token_and_the_loss_is_bradley_terry(tokenizer):
    model = tiny_reward_model(tokenizer, large=True)
    data = encode_pairs(tokenizer, synthetic_pairs(4, seed=1), CONTEXT)
    pairs, margin = data.rows(torch.arange(4))
    with torch.no_grad():
        rewards, loss = model(pairs, margin + 0.3)
        for i in range(4):
            for side in range(2):
                alone = model.score(pairs[i : i + 1, side, : data.lengths[i, side]])  # no padding at all
                assert abs(rewards[i, side] - alone[0]) < TOLERANCE
    assert abs(loss - bradley_terry_loss(rewards[:, 0], rewards[:, 1], margin + 0.3)) < 1e-6
    with pytest.raises(ValueError, match=r"shape \(batch, 2, tokens\)"):
        model(pairs[:, 0])


def hf_reward_model(model: RewardModel):
    """`GPT2ForSequenceClassification` (what TRL's RewardTrainer loads with num_labels=1) with the reward model's
    weights: the GPT through the GPT-2 export's renaming (`state_dict_to_hf`), the head as its `score`."""
    from transformers import GPT2ForSequenceClassification

    config = hf_config(model.base.config)
    config.num_labels, config.pad_token_id = 1, model.pad_id
    with torch.random.fork_rng(devices=[]):
        hf = GPT2ForSequenceClassification(config)
    state = {name: t for name, t in state_dict_to_hf(model.base.state_dict()).items() if name != "lm_head.weight"}
    state["score.weight"] = model.head.weight.detach().clone()
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all(name.endswith((".attn.bias", ".attn.masked_bias")) for name in missing)
    return hf


@pytest.mark.parametrize("center", [None, 0.05])
def test_loss_and_gradients_equal_trl_reward_trainer(tokenizer, tmp_path, center):
    """TRL's `RewardTrainer`, built on the HF export with the pairs pre-tokenized (its `chosen_ids` / `rejected_ids`
    columns, and a "margin"): its collator's batch holds our ids, and its `compute_loss` our loss and gradients."""
    trl = pytest.importorskip("trl", reason="the comparison with TRL needs trl")
    datasets = pytest.importorskip("datasets", reason="TRL's trainer takes a datasets.Dataset")
    from test_finetune_trl import hf_tokenizer  # the stand-in HF tokenizer with the course's ids

    model = tiny_reward_model(tokenizer, large=True, center_rewards_coefficient=center)
    pairs = synthetic_pairs(5, seed=2)
    for i, pair in enumerate(pairs):
        pair["margin"] = 0.25 * i
    data = encode_pairs(tokenizer, pairs, CONTEXT)
    rows = [{"chosen_ids": data.ids[i, 0, : data.lengths[i, 0]].tolist(),
             "rejected_ids": data.ids[i, 1, : data.lengths[i, 1]].tolist(), "margin": pair["margin"]}
            for i, pair in enumerate(pairs)]  # fmt: skip
    args = trl.RewardConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=len(rows), max_length=None, center_rewards_coefficient=center,
        use_cpu=True, bf16=False, report_to="none",
        activation_checkpointing=False,  # TRL turns it on by default; it changes the memory, not the loss
    )  # fmt: skip
    states = random.getstate(), torch.random.get_rng_state()
    try:  # the Trainer seeds the global generators when it is built
        trainer = trl.RewardTrainer(model=hf_reward_model(model), args=args, train_dataset=datasets.Dataset.from_list(rows),
                                    processing_class=hf_tokenizer(tokenizer))  # fmt: skip
    finally:
        random.setstate(states[0]), torch.random.set_rng_state(states[1])
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    ours_ids, margin = data.rows(torch.arange(len(rows)))
    assert torch.equal(batch["input_ids"], torch.cat([ours_ids[:, 0], ours_ids[:, 1]]))  # chosen rows, then rejected
    assert torch.equal(batch["margin"], margin)

    theirs = trainer.model.train()
    their_loss = trainer.compute_loss(theirs, batch)
    their_loss.backward()
    model.train()
    _, our_loss = model(ours_ids, margin)
    our_loss.backward()
    assert abs(our_loss.item() - their_loss.item()) < TOLERANCE, (our_loss.item(), their_loss.item())

    grads = {name: p.grad for name, p in theirs.named_parameters()}
    torch.testing.assert_close(model.head.weight.grad, grads.pop("score.weight"), atol=TOLERANCE, rtol=0)
    their_base = state_dict_from_hf(grads)
    for name, param in model.base.named_parameters():
        torch.testing.assert_close(param.grad, their_base[name], atol=TOLERANCE, rtol=0, msg=name)


# --- training -------------------------------------------------------------------------------------


def test_a_synthetic_preference_is_learnt_and_shuffled_labels_stay_at_chance(tokenizer):
    held_out = encode_pairs(tokenizer, synthetic_pairs(200, seed=100), CONTEXT)
    config = RewardConfig(steps=120, prompts_per_step=32, lr=3e-3, eval_every=40)
    results = {}
    for shuffled in (False, True):
        model = tiny_reward_model(tokenizer, seed=0)
        train = encode_pairs(tokenizer, synthetic_pairs(600, seed=0, shuffled=shuffled), CONTEXT)
        history = train_reward_model(model, train, config, validation=held_out)
        assert [r["step"] for r in history] == list(range(config.steps))
        assert [r["step"] for r in history if "validation_accuracy" in r] == [39, 79, 119]
        results[shuffled] = (history, accuracy(model, held_out))
    history, learnt = results[False]
    assert learnt > 0.95, learnt
    assert history[-1]["validation_accuracy"] == learnt
    first, last = (sum(r["loss"] for r in part) / 10 for part in (history[:10], history[-10:]))
    assert last < first / 3
    # Shuffled labels: nothing to learn, and held-out accuracy near 0.5. Not closer: the preference is one feature,
    # and a model that learnt nothing of it from the labels still leans one way or the other on it by chance (from
    # its init and the pairs it memorised); over 14 seeds the control scored 0.30 to 0.57, mean 0.47, sd 0.07.
    assert 0.25 < results[True][1] < 0.75, results[True][1]
