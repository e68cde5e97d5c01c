"""The course's SFT loss against TRL's `SFTTrainer`, on the same model and the same tokens.

What is compared: a tiny GPT-2-shaped GPT and its HF export (`to_hf`); conversations in the course's
chat format, encoded once (`encode_chat`). The course's side is `model(x, y)` on `SFTData` rows: x
right-padded with ``<|pad|>`` to the context, y[t] = x[t+1] where that token is trained, else -100,
and the loss the mean of the cross-entropies over the targets that are not -100. TRL's side is
`SFTTrainer.compute_loss` on a batch of its own collator, after its own dataset preparation: the
rows go in pre-tokenized, `input_ids` plus a `completion_mask` (1 on the completion's tokens),
with `completion_only_loss=True`; TRL turns the mask into `labels` (-100 outside the completion),
its collator pads to the longest row with an attention mask, and its fused LM head shifts the
labels by one and divides the summed log-probabilities by the number of labelled tokens.

The semantics to align, and how they line up:
- *Prompt and completion.* The prompt is the conversation up to and including ``<|assistant|>``
  (`encode_chat(prompt, add_generation_prompt=True)`), the completion the answer and its ``<|end|>``:
  exactly the tokens `encode_chat` marks as trained. A multi-turn conversation has several trained
  answers, which a prompt-completion row cannot hold; there TRL's `assistant_masks` column (what
  `assistant_only_loss=True` builds from a chat template) carries the same mask.
- *The shift.* Ours is in the data (y[t] is the token after x[t]); HF's labels sit on the token
  itself and the model shifts them. `labels[:, 1:]` must equal y, position for position.
- *Padding.* We pad every row to the context, TRL to the longest row of the batch; with causal
  attention and right padding the real tokens never see the padding, and no padding is a target.
- *Averaging.* Both divide by the number of trained tokens in the batch (per token), not by the
  number of rows (per sequence); with rows of unequal lengths the two differ, and the test checks
  that its batch tells them apart. Over gradient accumulation, TRL passes `num_items_in_batch`
  (the step's trained tokens); our `loss_weights` weigh each micro-batch by its share of them:
  the step's losses and gradients agree.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from minilm.finetune.chat import END, PAD, SFTData, encode_chat
from minilm.model import GPT
from minilm.model.hf import state_dict_from_hf, to_hf
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.train.loop import loss_weights
from minilm.world import split_stories
from spread import small_gpt

trl = pytest.importorskip("trl", reason="the comparison with TRL needs trl")
datasets = pytest.importorskip("datasets", reason="TRL's trainer takes a datasets.Dataset")

pytestmark = pytest.mark.usefixtures("one_thread")

CONTEXT = 96
TOLERANCE = 1e-5


def chat(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in turns]


SINGLE_TURN = [
    chat(("user", "Who is the cook?"), ("assistant", "Lily")),
    chat(("system", "Answer yes or no."), ("user", "Is this line toxic? I hate rainy Mondays."), ("assistant", "no")),
    chat(("user", "Retell it for a girl: Tom went to the market with his dog."),
         ("assistant", "Mia went to the market with her dog.")),
]  # fmt: skip
MULTI_TURN = chat(
    ("user", "Who found the key?"), ("assistant", "Tom"), ("user", "And where did he find it?"), ("assistant", "in the garden")
)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([text for text, _ in split_stories("sft_val", 3)], 300)


@pytest.fixture(scope="module")
def model(tokenizer) -> GPT:
    """A GPT-2-shaped GPT with larger weights than the init's, so that the loss depends on every token."""
    return small_gpt(tokenizer.vocab_size, CONTEXT, 0.1)


def hf_tokenizer(tokenizer: Tokenizer):
    """A stand-in for HF's tokenizer with the course's ids: the rows arrive tokenized, so TRL only asks it for the
    pad token (its id must be the course's ``<|pad|>``)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models
    from transformers import PreTrainedTokenizerFast

    names = {i: f"<id{i}>" for i in range(tokenizer.vocab_size)}
    names.update({i: text for text, i in tokenizer.special_tokens.items()})
    vocab = {name: i for i, name in names.items()}
    return PreTrainedTokenizerFast(
        tokenizer_object=HFTokenizer(models.WordLevel(vocab, unk_token=PAD)), pad_token=PAD, eos_token=END
    )


def trl_trainer(model: GPT, tokenizer: Tokenizer, rows: list[dict], tmp_path, accumulation: int = 1):
    """TRL's SFTTrainer on the HF export of `model`, with its dataset prepared from `rows`.

    The Trainer seeds Python's, NumPy's and torch's global generators when it is built; they are
    restored so that the tests after this one draw what they would have drawn.
    """
    config = trl.SFTConfig(
        output_dir=str(tmp_path), completion_only_loss=True, per_device_train_batch_size=len(rows) // accumulation,
        gradient_accumulation_steps=accumulation, max_length=None, use_cpu=True, bf16=False, report_to="none",
        activation_checkpointing=False,  # TRL turns it on by default; it changes the memory, not the loss
    )  # fmt: skip
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        return trl.SFTTrainer(
            model=to_hf(model), args=config, train_dataset=datasets.Dataset.from_list(rows),
            processing_class=hf_tokenizer(tokenizer),
        )  # fmt: skip
    finally:
        random.setstate(states[0]), np.random.set_state(states[1]), torch.random.set_rng_state(states[2])


def collated(trainer, rows: slice | None = None) -> dict[str, torch.Tensor]:
    """A batch of the trainer's prepared rows, through its own collator (what `Trainer` feeds `compute_loss`)."""
    dataset = trainer.train_dataset
    return trainer.data_collator([dataset[i] for i in range(len(dataset))[rows or slice(None)]])


def course_batch(tokenizer: Tokenizer, conversations) -> tuple[torch.Tensor, torch.Tensor]:
    """Every conversation once, one per row, as SFTData lays them out for the loop."""
    x, y = SFTData(tokenizer, conversations, "train").eval_batch(CONTEXT)
    return torch.from_numpy(x), torch.from_numpy(y)


def test_prompt_completion_rows_are_the_trained_tokens(tokenizer):
    for messages in SINGLE_TURN:
        ids, trained = encode_chat(tokenizer, messages)
        prompt, _ = encode_chat(tokenizer, messages[:-1], add_generation_prompt=True)
        assert ids[: len(prompt)] == prompt and prompt[-1] == tokenizer.special_id("<|assistant|>")
        assert trained == [False] * len(prompt) + [True] * (len(ids) - len(prompt))
        assert ids[-1] == tokenizer.special_id(END)


@pytest.mark.parametrize("mask_column", ["completion_mask", "assistant_masks"])
def test_masked_loss_equals_trl_sft_loss(tokenizer, model, tmp_path, mask_column):
    """One batch of rows of unequal lengths: our `model(x, y)` and TRL's `compute_loss` agree within 1e-5.

    `completion_mask`: the single-turn conversations as prompt-completion rows. `assistant_masks`:
    the same plus a two-answer conversation, every assistant turn trained on both sides.
    """
    conversations = SINGLE_TURN if mask_column == "completion_mask" else [*SINGLE_TURN, MULTI_TURN]
    encoded = [encode_chat(tokenizer, messages, CONTEXT) for messages in conversations]
    rows = [{"input_ids": ids, mask_column: [int(t) for t in trained]} for ids, trained in encoded]
    trainer = trl_trainer(model, tokenizer, rows, tmp_path)
    batch = collated(trainer)
    x, y = course_batch(tokenizer, conversations)

    longest = batch["input_ids"].shape[1]
    assert longest == max(len(ids) for ids, _ in encoded) < CONTEXT  # TRL pads to the longest row, we to the context
    assert torch.equal(batch["input_ids"], x[:, :longest])  # both pad with <|pad|>
    assert torch.equal(batch["labels"][:, 1:], y[:, : longest - 1]) and (y[:, longest - 1 :] == -100).all()  # the shift

    with torch.no_grad():
        ours = model(x, y)[1].item()
        theirs = trainer.compute_loss(trainer.model, batch).item()
    assert abs(ours - theirs) < TOLERANCE, (ours, theirs)

    # The batch tells per-token averaging (both sides) from per-sequence averaging (the mean of each row's mean).
    with torch.no_grad():
        per_row = [model(x[i : i + 1], y[i : i + 1])[1].item() for i in range(len(x))]
    assert abs(sum(per_row) / len(per_row) - ours) > 1e-3


def test_gradient_accumulation_matches_trl(tokenizer, model, tmp_path):
    """A step of two micro-batches of unequal trained-token counts: the sum of our weighted micro-batch losses
    (`loss_weights`, as `train_step` uses them) equals the sum of TRL's `compute_loss` with the step's
    `num_items_in_batch`, and so do the gradients of every weight (HF's mapped back to our layout)."""
    conversations = [*SINGLE_TURN, MULTI_TURN]
    rows = [{"input_ids": ids, "assistant_masks": [int(t) for t in trained]}
            for ids, trained in (encode_chat(tokenizer, messages) for messages in conversations)]  # fmt: skip
    trainer = trl_trainer(model, tokenizer, rows, tmp_path, accumulation=2)
    micro = [collated(trainer, slice(0, 1)), collated(trainer, slice(1, 4))]
    items = trainer._get_num_items_in_batch(micro, torch.device("cpu"))  # what Trainer.train passes to compute_loss
    x, y = course_batch(tokenizer, conversations)
    ours_batches = [(x[:1], y[:1]), (x[1:], y[1:])]
    assert int(items) == int((y != -100).sum())

    ours = model.train()  # dropout is 0: training mode computes what eval mode does
    ours.zero_grad()
    our_loss = 0.0
    for (inputs, targets), weight in zip(ours_batches, loss_weights(ours_batches)):
        loss = ours(inputs, targets)[1] * weight
        loss.backward()
        our_loss += loss.item()
    theirs = trainer.model.train()
    their_loss = 0.0
    for batch in micro:
        loss = trainer.compute_loss(theirs, batch, num_items_in_batch=items)
        loss.backward()
        their_loss += loss.item()
    assert abs(our_loss - their_loss) < TOLERANCE, (our_loss, their_loss)

    their_grads = state_dict_from_hf({name: p.grad for name, p in theirs.named_parameters()})
    for name, param in ours.named_parameters():
        assert torch.allclose(param.grad, their_grads[name], atol=TOLERANCE, rtol=0), name
    ours.zero_grad(set_to_none=True)
    ours.eval()
