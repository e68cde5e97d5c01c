"""Rollouts: what PPO, GRPO and the evaluation need from a chat model.

An on-policy method learns from answers the policy writes itself. Each round it samples a batch of
answers to prompts (a *rollout*), scores them, and then needs, for every answer token, three
numbers that `minilm.rlhf.objectives` combines:
- log pi(y_t | x, y_<t) under the policy, under the reference (the SFT model, for the KL penalty),
  and under the policy as it was when it sampled (the "old" policy of PPO's ratio):
  `completion_logprobs`, one forward pass each, with the same function;
- the value V(x, y_<t) of the state before each token, for PPO's advantages (GAE): `completion_values`
  of a `ValueModel`;
- the reward of the whole answer: a `RewardModel` scores `Rollout.sequences()`.

**Layout** (`Rollout`). Prompts are padded on the left, as the sampler (`minilm.model.generate`)
and TRL lay them out: every prompt ends in the same column, so every completion starts in column
P, and the state before completion token t is at column P - 1 + t in every row. Completions are
padded on the right; `completion_mask` is True on the real tokens, the stop token included (its
probability is part of the answer: stopping is a choice the policy learns), False after it.

    prompt_ids       pad pad x0  x1  x2 | y0  y1  <end> pad      completion_ids
    prompt_mask       0   0   1   1   1 |  1   1    1    0       completion_mask

Padding is masked out of attention and not counted in positions (`GPT.forward`): a row gets exactly
the numbers it would get alone. Per-token tensors are (batch, completion tokens), 0 on padding: the
convention of `objectives`.

**Temperature: sample at 1.** `completion_logprobs` are the log-probabilities of the model's own
distribution, softmax(logits), which is what `sample` draws from at temperature 1. Sampled at another
temperature, the tokens come from softmax(logits / T): PPO's ratio, the KL penalty and the policy
gradient would then be computed for a distribution the samples did not come from (the "classic PPO
pitfall"), and nothing says so: training runs, and optimises something else. So a `Rollout` records
its temperature and `completion_logprobs` refuses one sampled at any temperature but 1. (TRL's PPO
and GRPO trainers choose the other consistent option: they divide the logits by their sampling
temperature when they score, so that the tempered model is the policy. One way here: temperature 1.)
No top-k or top-p either, for the same reason: RLHF samples the whole distribution.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minilm.model.generate import left_pad, stream
from minilm.model.gpt import GPT
from minilm.rlhf.reward_model import RewardModel


@dataclass
class Rollout:
    """A batch of sampled completions and their prompts (see the module docstring for the layout).

    `prompt_ids`, `prompt_mask`: (B, P), left-padded; `completion_ids`, `completion_mask`: (B, C),
    right-padded, the mask True up to and including the stop token. `temperature` is the one the
    completions were sampled at, `stop_token` the one that ended them (None: each ran to its length).
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    temperature: float = 1.0
    stop_token: int | None = None

    def __len__(self) -> int:
        return self.completion_ids.size(0)

    @property
    def stopped(self) -> torch.Tensor:
        """(B,) True where the completion ended with the stop token, False where it ran out of tokens
        (TRL's PPO can penalise those: `missing_eos_penalty`)."""
        last = self.completion_ids.gather(1, self.completion_mask.sum(1, keepdim=True) - 1).squeeze(1)
        return last == self.stop_token if self.stop_token is not None else torch.zeros_like(last, dtype=torch.bool)

    def answers(self) -> list[list[int]]:
        """Each completion's tokens without the stop token, as `generate` returns them: what a tokenizer decodes."""
        answers = []
        rows = self.completion_ids.masked_fill(~self.completion_mask, -1).tolist()
        for ids, stopped in zip(rows, self.stopped.tolist()):
            ids = [t for t in ids if t >= 0]
            answers.append(ids[:-1] if stopped else ids)
        return answers

    def sequences(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each prompt followed by its completion, padded on the right: ids (B, T) and which are real (B, T).

        What a reward model reads (`RewardModel.score(*rollout.sequences())`): the last real token
        is the stop token, or the last one sampled. The mask, not the pad id, says what is real,
        since a policy may sample the pad token itself."""
        ids = torch.cat([self.prompt_ids, self.completion_ids], 1)
        real = torch.cat([self.prompt_mask, self.completion_mask], 1)
        order = torch.sort((~real).to(torch.uint8), dim=1, stable=True).indices  # real tokens first, in order
        width = int(real.sum(1).max())
        return ids.gather(1, order)[:, :width], real.gather(1, order)[:, :width]


@torch.no_grad()
def sample_completions(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    stop_token: int | None = None,
    pad_token: int = 0,
) -> Rollout:
    """Sample one completion per prompt (token-id lists) with the KV cache (`minilm.model.generate.stream`).

    Each completion runs until `stop_token` (kept, and in the mask) or `max_new_tokens`. The same
    model, prompts and seed give the same rollout. `temperature=0` gives greedy answers, for
    evaluation; RLHF samples at 1 (see the module docstring).
    """
    steps = list(stream(model, prompts, max_new_tokens, temperature=temperature, seed=seed,
                        stop_token=stop_token, pad_token=pad_token))  # fmt: skip
    device = model.output_weight().device
    sampled = torch.tensor([[-1 if token is None else token for token in step] for step in steps], device=device).T
    completion_mask = sampled >= 0
    prompt_ids, prompt_mask = left_pad(prompts, pad_token, device)
    return Rollout(prompt_ids, prompt_mask, sampled.masked_fill(~completion_mask, pad_token), completion_mask,
                   temperature, stop_token)  # fmt: skip


def _completion_states(base: GPT, rollout: Rollout) -> torch.Tensor:
    """The final hidden state before each completion token, (B, C, n_embd): column P - 1 + t reads token t.

    One forward pass over prompt + completion (without the last token, which predicts nothing here)."""
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1)[:, :-1]
    is_real = torch.cat([rollout.prompt_mask, rollout.completion_mask], 1)[:, :-1].bool()
    hidden = base.hidden_states(ids, padding_mask=None if bool(is_real.all()) else is_real)
    return hidden[:, rollout.prompt_ids.size(1) - 1 :]


def completion_logits(model: GPT, rollout: Rollout) -> torch.Tensor:
    """The logits that predict each completion token, (B, C, vocab) in float32: position t predicts token t.

    What `completion_logprobs` reads, and what a trainer reads the entropy of (`objectives.entropy_from_logits`)
    without a second forward pass. Only a rollout sampled at temperature 1 can be scored (see the module
    docstring)."""
    if rollout.temperature != 1.0:
        raise ValueError(
            f"this rollout was sampled at temperature {rollout.temperature}, but log-probabilities are the model's own "
            "distribution (temperature 1): PPO's ratio and the KL penalty would describe a distribution the tokens "
            "were not drawn from. Sample RLHF rollouts with temperature=1.0 (to score given tokens however they were "
            "drawn, make the Rollout with temperature=1.0: dataclasses.replace(rollout, temperature=1.0))"
        )
    return F.linear(_completion_states(model, rollout), model.output_weight()).float()


def token_logprobs(logits: torch.Tensor, rollout: Rollout) -> torch.Tensor:
    """log softmax(logits) at each completion token, (B, C), 0 on padding: the log-softmax at the one token,
    without the whole (B, C, vocab) of them (TRL's selective_log_softmax)."""
    logprobs = logits.gather(-1, rollout.completion_ids.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    return logprobs.masked_fill(~rollout.completion_mask.bool(), 0.0)


def completion_logprobs(model: GPT, rollout: Rollout) -> torch.Tensor:
    """log model(y_t | x, y_<t) of each completion token, (B, C) in float32, 0 on padding.

    For the policy (with gradients), the reference and the old policy (under `torch.no_grad()`).
    Only a rollout sampled at temperature 1 can be scored (see the module docstring). The model's
    mode is the caller's: RLHF turns dropout off (TRL's `disable_dropout`), or the same tokens get
    other log-probabilities at every pass."""
    return token_logprobs(completion_logits(model, rollout), rollout)


class ValueModel(nn.Module):
    """PPO's critic: the GPT's final hidden state at each position -> a linear head -> V, the reward
    the policy can expect from there to the end of the answer.

    A separate model from the policy (as TRL's PPO, and InstructGPT's: a shared trunk would let the
    value loss pull on the policy's features). `from_reward_model` starts it as TRL's PPO example
    does, as a copy of the reward model read at every position: before training, the value of a state
    is the reward the reward model gives the answer so far, a better first guess than a random head.
    `ValueModel(base)` starts from any GPT (the policy, say) with a new head.
    """

    def __init__(self, base: GPT, seed: int = 0):
        super().__init__()
        self.base = base
        self.head = nn.Linear(base.config.n_embd, 1, bias=False, device=base.output_weight().device)
        with torch.no_grad():
            nn.init.normal_(self.head.weight, 0.0, 0.02, generator=torch.Generator().manual_seed(seed))

    @classmethod
    def from_reward_model(cls, reward_model: RewardModel) -> ValueModel:
        """A value model with a copy of `reward_model`'s weights (its GPT and its head)."""
        value_model = cls(copy.deepcopy(reward_model.base))
        with torch.no_grad():
            value_model.head.weight.copy_(reward_model.head.weight)
        return value_model

    def forward(self, idx: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Ids (B, T) -> the value at every position, (B, T) in float32."""
        return self.head(self.base.hidden_states(idx, padding_mask=padding_mask)).squeeze(-1).float()


def completion_values(value_model: ValueModel, rollout: Rollout) -> torch.Tensor:
    """V of the state before each completion token, (B, C) in float32, 0 on padding: position t is
    V(x, y_<t), the convention of `objectives.gae` (and of TRL's PPO: values[:, P - 1 : -1])."""
    values = value_model.head(_completion_states(value_model.base, rollout)).squeeze(-1).float()
    return values.masked_fill(~rollout.completion_mask.bool(), 0.0)
