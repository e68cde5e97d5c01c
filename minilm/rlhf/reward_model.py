"""The reward model: the SFT model with a head that gives a whole answer one score, fit to preference pairs.

People compare answers more reliably than they score them, so the data are pairs (a prompt, the
answer they chose, the one they rejected: `minilm.rlhf.preferences` writes them) and the model learns
a score r(x, y) such that the chosen answer tends to score higher. Bradley-Terry makes that a
likelihood: P(chosen preferred) = sigmoid(r_chosen - r_rejected), and training minimises its
negative log (`objectives.bradley_terry_loss`).

    prompt + answer, in the chat format -> SFT GPT -> final hidden state of the LAST REAL token
                                                   -> linear head (n_embd -> 1, no bias) -> r(x, y)

The last real token is the ``<|end|>`` that closes the answer: in a causal model the only position
that has read the whole conversation. The pooling is stage 6's classifier's
(`minilm.finetune.classify.last_token_states`); the head has no bias because only differences of
rewards enter the loss (a bias would cancel in every pair). Starting from the SFT model rather than
the base model: it already reads the chat format and the kind of answers being compared.

**As TRL does it.** TRL's `RewardTrainer` trains `AutoModelForSequenceClassification` with one label:
for GPT-2 that is `GPT2ForSequenceClassification`, whose `score` head is exactly this one (a linear
layer without bias, read at the rightmost token that is not the pad token). Its collator puts the
chosen rows and then the rejected rows into one batch, right-padded; its loss is
-log sigmoid(r_chosen - r_rejected - margin), a mean over the pairs, plus
`center_rewards_coefficient` * mean((r_chosen + r_rejected)^2) when that is set. Here a batch holds
the pairs as (B, 2, T), chosen at [:, 0] and rejected at [:, 1], and the same loss;
tests/test_rlhf_reward_model.py runs TRL's `RewardTrainer.compute_loss` on the model exported to
Hugging Face and finds the same loss and gradients. The conversation of a pair is its prompt
followed by the answer, as TRL's explicit-prompt format concatenates them before applying the
chat template; here the chat format is the course's (`encode_chat`).

**Two things TRL does differently.** A pair longer than the context: TRL's `max_length` drops it
without a word; `encode_pairs` refuses it, naming it, since a silently smaller data set is a
different experiment. The margin (a column "margin" in TRL's data, asking a larger gap where the
raters were sure, as Llama 2 did) travels with each pair as the second tensor of the batch,
where the training loop puts the targets; 0 where a pair has none, which is exactly the loss
without a margin.

**A prompt at a time.** The annotators compare every two answers to a prompt, so one answer is in
several pairs. Training draws prompts, not pairs: a step takes every pair of the prompts it draws
(`PromptBatches`), and the forward pass scores each distinct conversation of the batch once, however
many pairs it is in. InstructGPT trained its reward model so, for two reasons: K answers cost K
passes instead of K(K-1), and each answer meets all its comparisons in one step instead of being
fit again and again in separate ones, which overfit its model. On this course's `cpu` model the
held-out accuracy was the same as with random pairs and the time a third to a half (the numbers are
beside `RLHFConfig.reward_prompts_per_step`). The loss of a batch is the same mean over its pairs as
TRL's; only the choice of the batch's pairs differs.

Trained with the course's one training step (`minilm.train.loop.train_step`: AdamW, clipping,
the precision policy) on the warmup-cosine schedule, through `train_on_rows` as stage 6's classifier. The measure is held-out
accuracy, the share of pairs whose chosen answer scores higher (TRL logs the same as `accuracy`):
against the annotators' labels its ceiling is `preferences.ceiling_accuracy`, not 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from minilm.finetune.chat import PAD, encode_chat
from minilm.finetune.classify import last_token_states
from minilm.model.gpt import GPT
from minilm.rlhf.objectives import bradley_terry_loss
from minilm.rlhf.preferences import check_pairs
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.train.loop import train_on_rows

# ---------------------------------------------------------------------------------------------
# 1. Preference pairs as padded token ids


@dataclass
class EncodedPairs:
    """Preference pairs as token ids: `ids` (N, 2, T), the chosen conversation at [:, 0] and the
    rejected one at [:, 1], each right-padded with ``<|pad|>``; their `lengths` (N, 2); each
    pair's `margin` (N,), 0 where the pair has none; where each answer starts, `answer_start`
    (N, 2): tokens answer_start to lengths - 1 are the answer's content and the ``<|end|>`` that closes
    it, the tokens `encode_chat` marks as trained in the last assistant turn (what DPO scores); and
    which `prompt` (N,) each pair answers, numbered in order of first appearance (pairs of the same
    prompt messages share a number)."""

    ids: torch.Tensor
    lengths: torch.Tensor
    margin: torch.Tensor
    answer_start: torch.Tensor
    prompt: torch.Tensor

    def __len__(self) -> int:
        return self.ids.size(0)

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, margin) of the pairs in `index`, cropped to their longest conversation: a batch for `train_step`."""
        length = int(self.lengths[index].max())
        return self.ids[index, :, :length], self.margin[index]


def encode_pairs(tokenizer: Tokenizer, pairs: Sequence[dict], context: int) -> EncodedPairs:
    """TRL preference pairs (prompt messages, one chosen and one rejected assistant message, an
    optional "margin") as the conversations prompt + chosen and prompt + rejected in the chat format.

    Raises ValueError for what a reward model cannot learn from: a pair whose chosen and rejected
    answers are the same, one that is not a conversation of the chat format (`preferences.check_pairs`),
    and one whose longer conversation does not fit the context.
    """
    check_pairs(pairs)
    if not pairs:
        raise ValueError("no preference pairs to encode")
    pad = tokenizer.special_id(PAD)
    rows, margins, starts, prompts, numbers = [], [], [], [], {}
    for i, pair in enumerate(pairs):
        prompts.append(numbers.setdefault(json.dumps(pair["prompt"], sort_keys=True), len(numbers)))
        encoded = [encode_chat(tokenizer, [*pair["prompt"], *pair[side]]) for side in ("chosen", "rejected")]
        both = [ids for ids, _ in encoded]
        # The answer is the last run of trained tokens: the prompt ends with <|assistant|>, which is not trained.
        starts.append([len(trained) - trained[::-1].index(False) for _, trained in encoded])
        longest = max(len(ids) for ids in both)
        if longest > context:
            raise ValueError(
                f"pair {i} is {longest} tokens long (prompt and its longer answer), {longest - context} more than the "
                f"context of {context}: drop the pair or shorten its prompt (TRL's RewardTrainer drops pairs longer than "
                "max_length without a word), or use a model with a longer context"
            )
        rows.append(both)
        margins.append(float(pair.get("margin", 0.0)))
    width = max(len(ids) for both in rows for ids in both)
    padded = torch.full((len(rows), 2, width), pad, dtype=torch.long)
    for i, both in enumerate(rows):
        for side, ids in enumerate(both):
            padded[i, side, : len(ids)] = torch.tensor(ids)
    lengths = torch.tensor([[len(ids) for ids in both] for both in rows])
    return EncodedPairs(padded, lengths, torch.tensor(margins), torch.tensor(starts), torch.tensor(prompts))


class PromptBatches:
    """`EncodedPairs` a prompt at a time, for `train_on_rows`: its rows are the prompts, and a batch
    of them is every pair of those prompts (as many as they have: a step's batch varies in size)."""

    def __init__(self, pairs: EncodedPairs):
        order = torch.argsort(pairs.prompt, stable=True)
        self.pairs = pairs
        self.prompts = torch.split(order, torch.bincount(pairs.prompt).tolist())  # every number has a pair

    def __len__(self) -> int:
        return len(self.prompts)

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, margin) of every pair of the prompts in `index`: a batch for `train_step`."""
        return self.pairs.rows(torch.cat([self.prompts[i] for i in index.tolist()]))


# ---------------------------------------------------------------------------------------------
# 2. The model


class RewardModel(nn.Module):
    """The GPT with a scalar head read at each conversation's last real token (`pad_id` marks padding).

    `center_rewards_coefficient` (TRL's `RewardConfig` option of that name) adds c * mean((r_chosen +
    r_rejected)^2) to the loss: Bradley-Terry fixes the rewards only up to a constant, and this pulls
    them toward mean 0, so that the scores of different prompts compare (and PPO's reward does not
    start far from 0). It changes what the scores mean, so the model carries it.
    """

    def __init__(self, base: GPT, pad_id: int, center_rewards_coefficient: float | None = None, seed: int = 0):
        super().__init__()
        self.base, self.pad_id = base, pad_id
        self.center_rewards_coefficient = center_rewards_coefficient
        self.head = nn.Linear(base.config.n_embd, 1, bias=False, device=base.output_weight().device)
        with torch.no_grad():  # as HF initialises GPT2ForSequenceClassification's `score`: N(0, 0.02)
            nn.init.normal_(self.head.weight, 0.0, 0.02, generator=torch.Generator().manual_seed(seed))

    def score(self, ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The reward of each right-padded conversation in `ids` (B, T): (B,) in float32.

        The real tokens are those that are not `pad_id`, or those where `padding_mask` is True (a
        policy may sample the pad token itself, which `Rollout.sequences` keeps as real)."""
        is_real = ids != self.pad_id if padding_mask is None else padding_mask.bool()
        return self.head(last_token_states(self.base, ids, is_real)).squeeze(-1).float()

    def forward(self, pairs: torch.Tensor, margin: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs (B, 2, T) -> (rewards (B, 2): chosen, rejected; the Bradley-Terry loss).

        One pass over the distinct conversations among the 2B: an answer in several pairs of the batch
        (a prompt's answers are compared with each other) is scored once, and its score serves each of
        them, so the loss and its gradients are those of scoring all 2B, as TRL does. The signature is
        the training loop's (inputs, targets): `train_step` trains a reward model on `EncodedPairs.rows` batches."""
        if pairs.dim() != 3 or pairs.size(1) != 2:
            raise ValueError(f"pairs must have shape (batch, 2, tokens): chosen at [:, 0], rejected at [:, 1]; "
                             f"got {tuple(pairs.shape)}")  # fmt: skip
        distinct, where = torch.unique(pairs.flatten(0, 1), dim=0, return_inverse=True)
        rewards = self.score(distinct)[where].view(-1, 2)
        loss = bradley_terry_loss(rewards[:, 0], rewards[:, 1], margin, self.center_rewards_coefficient)
        return rewards, loss


# ---------------------------------------------------------------------------------------------
# 3. Training and evaluation


@dataclass
class RewardConfig:
    """A reward model's training. TRL trains one epoch at lr 1e-4; a model this small, on pairs this
    short, learns faster at a larger rate."""

    steps: int = 300
    prompts_per_step: int = 10  # each with every pair of its answers (`PromptBatches`)
    lr: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_every: int = 50  # steps between validation accuracies (and at the last step)
    seed: int = 0


@torch.no_grad()
def scores(model: RewardModel, data: EncodedPairs, batch_size: int = 128) -> torch.Tensor:
    """The rewards of every pair's two answers, (N, 2) in float32 on the CPU: chosen at [:, 0], rejected at [:, 1]."""
    was_training = model.training
    model.eval()
    rewards = []
    for start in range(0, len(data), batch_size):
        pairs, _ = data.rows(torch.arange(start, min(start + batch_size, len(data))))
        rewards.append(model(pairs.to(model.head.weight.device))[0])
    model.train(was_training)
    return torch.cat(rewards).cpu()


def accuracy(model: RewardModel, data: EncodedPairs, batch_size: int = 128) -> float:
    """The share of the pairs whose chosen answer scores strictly higher than the rejected one."""
    rewards = scores(model, data, batch_size)
    return float((rewards[:, 0] > rewards[:, 1]).float().mean())


def train_reward_model(
    model: RewardModel,
    pairs: EncodedPairs,
    config: RewardConfig,
    validation: EncodedPairs | None = None,
    precision: str = "fp32",
) -> list[dict]:
    """Fit every weight of `model` to `pairs` with the loop's `train_on_rows` (`train_step` on the
    warmup-cosine schedule), `config.prompts_per_step` random prompts a step with all their pairs
    (`PromptBatches`); returns the history.

    One record per step: "step", "lr" and "loss", and "validation_accuracy" every `eval_every` steps
    and at the last one when `validation` is given.
    """
    if len(pairs) < 1 or config.steps < 1:
        raise ValueError(f"nothing to train: {len(pairs)} pairs, {config.steps} steps")
    history: list[dict] = []

    def record(step: int, lr: float, loss: float) -> None:
        history.append({"step": step, "lr": lr, "loss": loss})
        if validation is not None and ((step + 1) % config.eval_every == 0 or step == config.steps - 1):
            history[-1]["validation_accuracy"] = accuracy(model, validation)

    model.requires_grad_(True)
    train_on_rows(model, PromptBatches(pairs), config.steps, config.prompts_per_step, config.lr,
                  weight_decay=config.weight_decay, grad_clip=config.grad_clip, seed=config.seed, precision=precision,
                  after_step=record)  # fmt: skip
    return history
