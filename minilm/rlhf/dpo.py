"""DPO: the policy trained directly on preference pairs, with no reward model and no sampling.

`objectives.dpo_loss` says why it works: with the implicit reward beta log pi(y|x) / pi_ref(y|x), the
Bradley-Terry likelihood of the pairs trains the policy toward the KL-regularised optimum. What this
module adds is what a language model needs around that loss, as TRL's `DPOTrainer` does it:

1. *The answer's log-probability.* log pi(y|x) is the sum over the answer's tokens of their
   log-probabilities: the answer's content and the ``<|end|>`` that closes it, the tokens that SFT
   trains (`encode_chat`'s mask of the last assistant turn, recorded by `encode_pairs` as
   `EncodedPairs.answer_start`). The prompt is context only. TRL's `completion_mask` marks the same
   tokens, and its loss sums over them likewise.
2. *The reference, once.* The reference model is frozen, so its log-probabilities of the pairs are
   computed once before training (TRL's `precompute_ref_log_probs`), and the held-out pairs' too. Only
   the pairs that the run's steps will read are computed (`rows_read`; the batches are a function of
   the step): stage 7's cpu run reads about 2,400 of its 8,490 pairs.
3. *The step.* `DPOObjective` is the module the loop's `train_step` trains: it reads a batch of pairs
   (chosen and rejected in one forward pass, as TRL concatenates them) and returns the mean loss.
   `minilm.rlhf.trainer.Run` supplies the schedule, the checkpoints, exact resume and the divergence
   guard.

**What is logged**, per step under TRL's names: `rewards/chosen`, `rewards/rejected` (the mean
implicit rewards of the batch), `rewards/accuracies` (how often the chosen one is higher),
`rewards/margins`, `logps/chosen`, `logps/rejected` (the policy's summed log-probabilities), and
`loss`, `lr`, `grad_norm`. Every `eval_every` steps and at the end, the same on the held-out pairs
with TRL's `eval_` prefix: `eval_rewards/accuracies` is the held-out preference accuracy of the
implicit reward, the number to compare with the reward model's accuracy.

**The divergence guard's KL.** DPO samples nothing, so it has no estimate of KL(pi || pi_ref). It
guards the closest thing it sees: `logps/abs_ratio_per_token`, the mean over the batch's answer
tokens of |log pi - log pi_ref| summed per answer, i.e. how far the policy's log-probabilities of
these answers have moved from the reference's, per token. DPO can drive the rejected answers'
log-probabilities down without bound; a run where they fall by more than `max_kl` nats per token
has stopped modelling language.

tests/test_rlhf_objectives.py checks `dpo_loss` against TRL's `DPOTrainer._compute_loss` on a tiny
GPT exported to Hugging Face; tests/test_rlhf_dpo.py checks this module's loss on a batch of encoded
pairs against the same TRL code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from minilm import hardware
from minilm.model.gpt import GPT
from minilm.rlhf.objectives import dpo_loss, dpo_metrics, sequence_logprobs
from minilm.rlhf.reward_model import EncodedPairs
from minilm.rlhf.trainer import PolicyTrainingConfig, Run, batch_rows, check_reference


@dataclass
class DPOConfig(PolicyTrainingConfig):
    """A DPO run. beta 0.1 is TRL's default; TRL's learning rate (1e-6) suits models of a billion weights
    trained for an epoch of tens of thousands of pairs, and moves the course's small models too slowly."""

    beta: float = 0.1
    lr: float = 1e-5
    steps: int = 200
    batch_size: int = 8  # pairs per step (TRL's per_device_train_batch_size)
    eval_every: int = 50  # steps between held-out evaluations (and at the last step)

    def __post_init__(self):
        super().__post_init__()
        if not self.beta > 0:
            raise ValueError(f"beta={self.beta}: DPO needs beta > 0 (at 0 every implicit reward is 0, the loss is "
                             "constant and nothing is learnt)")  # fmt: skip
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError(f"steps, batch_size and eval_every must be >= 1; got {self.steps}, {self.batch_size}, "
                             f"{self.eval_every}")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 1. The log-probability of each answer


def answer_mask(pairs: EncodedPairs) -> torch.Tensor:
    """(N, 2, T) bool: True on each answer's tokens, from `answer_start` to the conversation's end."""
    positions = torch.arange(pairs.ids.size(-1))
    return (positions >= pairs.answer_start.unsqueeze(-1)) & (positions < pairs.lengths.unsqueeze(-1))


def answer_logprobs(model: GPT, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log model(answer | prompt) of each conversation in `ids` (B, 2, T): (B, 2), the sum over the tokens in `mask`.

    One forward pass over the 2B conversations. The logits at position t predict token t + 1, so the
    token at t + 1 counts where mask[t + 1] does. Right padding needs no attention mask: in a causal
    model no real token attends to the padding after it."""
    flat_ids, flat_mask = ids.flatten(0, 1), mask.flatten(0, 1)
    logits, _ = model(flat_ids)
    return sequence_logprobs(logits[:, :-1].float(), flat_ids[:, 1:], flat_mask[:, 1:]).view(-1, 2)


@torch.no_grad()
def all_answer_logprobs(model: GPT, pairs: EncodedPairs, precision: str, batch_size: int = 64,
                        rows: torch.Tensor | None = None) -> torch.Tensor:
    """`answer_logprobs` of every pair, (N, 2) on the model's device, in batches (the reference's, once).

    With `rows`, only those pairs are computed and the others are NaN: a run that reads a few thousand
    of many more pairs needs the reference's log-probabilities of those alone."""
    device = str(model.output_weight().device)
    mask = answer_mask(pairs)
    wanted = torch.arange(len(pairs)) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    out = torch.full((len(pairs), 2), float("nan"), device=device)
    for start in range(0, len(wanted), batch_size):
        index = wanted[start : start + batch_size]
        ids, _ = pairs.rows(index)
        with hardware.autocast(device, precision):
            out[index.to(device)] = answer_logprobs(model, ids.to(device), mask[index, :, : ids.size(-1)].to(device)).float()
    return out


def rows_read(count: int, config: "DPOConfig") -> torch.Tensor:
    """The pairs (of `count`) that a run of `config` reads in its `steps` steps (`batch_rows`), sorted."""
    return torch.unique(torch.cat([batch_rows(count, config.batch_size, step, config.seed) for step in range(config.steps)]))


def check_pairs_fit(model: GPT, pairs: EncodedPairs) -> None:
    """Refuse pairs the policy cannot read: ids of another tokenizer, or conversations longer than its context."""
    vocab, context = model.config.vocab_size, model.config.context
    if int(pairs.ids.max()) >= vocab:
        raise ValueError(f"the pairs hold token id {int(pairs.ids.max())}, outside the policy's vocabulary of {vocab}: "
                         "they were encoded with another tokenizer; encode them with the policy's")  # fmt: skip
    if int(pairs.lengths.max()) > context:
        raise ValueError(f"a pair is {int(pairs.lengths.max())} tokens long, more than the policy's context of "
                         f"{context}: encode_pairs with context={context}")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 2. The module train_step trains


class DPOObjective(nn.Module):
    """The policy with the pairs' answer masks and the reference's log-probabilities (`rows` index both):
    forward(ids (B, 2, T), rows (B,)) -> (the policy's log-probabilities (B, 2), the mean DPO loss)."""

    def __init__(self, policy: GPT, mask: torch.Tensor, reference_logps: torch.Tensor, beta: float):
        super().__init__()
        self.policy, self.mask, self.reference_logps, self.beta = policy, mask, reference_logps, beta
        self.last: dict[str, float] = {}

    def forward(self, ids: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.mask[rows, :, : ids.size(-1)]
        logps, reference = answer_logprobs(self.policy, ids, mask), self.reference_logps[rows]
        losses, chosen_rewards, rejected_rewards = dpo_loss(logps[:, 0], logps[:, 1], reference[:, 0], reference[:, 1],
                                                            self.beta)  # fmt: skip
        with torch.no_grad():
            moved = (logps - reference).abs().sum() / mask.sum()
            self.last = {**dpo_metrics(chosen_rewards, rejected_rewards), "logps/chosen": logps[:, 0].mean().item(),
                         "logps/rejected": logps[:, 1].mean().item(),
                         "logps/abs_ratio_per_token": moved.item()}  # fmt: skip
        return logps, losses.mean()


@torch.no_grad()
def evaluate(policy: GPT, pairs: EncodedPairs, reference_logps: torch.Tensor, beta: float, precision: str) -> dict:
    """The loss and TRL's reward metrics on held-out pairs, under TRL's `eval_` names."""
    logps = all_answer_logprobs(policy, pairs, precision)
    losses, chosen, rejected = dpo_loss(logps[:, 0], logps[:, 1], reference_logps[:, 0], reference_logps[:, 1], beta)
    metrics = {"loss": losses.mean().item(), **dpo_metrics(chosen, rejected)}
    return {f"eval_{name}": value for name, value in metrics.items()}


# ---------------------------------------------------------------------------------------------
# 3. Training


def train_dpo(
    policy: GPT,
    reference: GPT,
    pairs: EncodedPairs,
    config: DPOConfig,
    out_dir,
    *,
    validation: EncodedPairs | None = None,
    resume: bool = True,
    until_step: int | None = None,
) -> list[dict]:
    """Train `policy` in place by DPO on `pairs` against the frozen `reference`; returns the history, one
    record per step (see the module docstring), with the held-out metrics where `validation` is given.

    Checkpoints go to out_dir/checkpoints; a run there continues from the newest (`Run`)."""
    check_reference(policy, reference)
    for data in (pairs, validation):
        if data is not None:
            check_pairs_fit(policy, data)
    device = str(policy.output_weight().device)
    precision = hardware.choose_precision(device, config.precision)
    reference.eval()
    reference_logps = all_answer_logprobs(reference, pairs, precision, rows=rows_read(len(pairs), config))
    objective = DPOObjective(policy, answer_mask(pairs).to(device), reference_logps, config.beta)
    held_out = all_answer_logprobs(reference, validation, precision) if validation is not None else None
    run = Run("dpo", objective, policy, config, config.steps, out_dir, resume=resume, until_step=until_step)
    while run.running:
        rows = batch_rows(len(pairs), config.batch_size, run.step, config.seed)
        ids, _ = pairs.rows(rows)
        loss, grad_norm = run.update(ids, rows)
        record = {"loss": loss, "grad_norm": grad_norm, **objective.last}
        if validation is not None and ((run.step + 1) % config.eval_every == 0 or run.step + 1 == config.steps):
            record.update(evaluate(policy, validation, held_out, config.beta, run.precision))
        run.end_step(record, "logps/abs_ratio_per_token")
    return run.history
