"""PPO with a KL penalty: the policy climbs a reward on answers it samples itself, held near the reference.

InstructGPT's method, as TRL's PPOTrainer runs it (trl/experimental/ppo/ppo_trainer.py, `train`, the
last version before TRL 1.16 removed it; `objectives` cites what was followed). One iteration:

1. *Sample.* A batch of prompts (TRL's data loader: shuffled epochs), one answer each at
   temperature 1 (`trainer.sample_and_score`, seeded by (seed, iteration), so that a resumed run
   samples the same), scored by `reward_fn(prompt_ids, completion_ids)`: the stage passes the reward
   model's score, the tests a simple function. `missing_eos_penalty` lowers the score of answers
   that never sampled the stop token, as TRL's option of that name.
2. *Score the samples*, with no gradient: log pi_old (the policy as it sampled), log pi_ref, and
   the value model's V before each token (`rollout.completion_logprobs`, `completion_values`).
3. *Rewards and advantages* (`objectives`): per token -beta (log pi_old - log pi_ref), plus the score
   at the last token (`kl_penalized_rewards`); whitened, keeping their mean, if `whiten_rewards`;
   GAE with gamma and lam (`gae`), whose returns are the value model's targets; the advantages
   whitened over the batch.
4. *Update*, `num_ppo_epochs` passes over the batch in random minibatches: the clipped surrogate
   (`ppo_policy_loss`) plus vf_coef times the clipped value loss (`ppo_value_loss`), one step of
   the loop's `train_step` per minibatch.

**One optimizer for both models**, as TRL's `PolicyAndValueWrapper`: `PolicyAndValue` holds the
policy and the value model, so one loss, pg_loss + vf_coef * vf_loss, one backward pass and one
AdamW step update both, at one learning rate; `vf_coef` sets how much the value model's error
counts. The models share no weights (the value model is a copy of the reward model, or of the SFT
model), so each gradient reaches its own model only; what they share is the step's gradient-norm
clip, which TRL's loop does not apply (it calls `optimizer.step()` without clipping) and which here
bounds the two together (`grad_clip=0` turns it off). Two optimizers would let the value model have
its own rate; TRL does without, and so does this.

**What is logged**, per iteration under TRL's names: `objective/kl` (the KL of the sampled answers
to the reference, summed over tokens), `objective/entropy`, `objective/non_score_reward`,
`objective/scores` (the reward), `objective/rlhf_reward` (score - beta KL, what PPO maximises), then
averaged over the iteration's updates `policy/approxkl_avg`, `policy/clipfrac_avg`,
`policy/entropy_avg`, `loss/policy_avg`, `loss/value_avg`, `val/clipfrac_avg`, `val/ratio`; and
`val/num_eos_tokens`, `lr`, `loss` (the updates' mean total loss), `grad_norm`; and, for the divergence
guard, `objective/kl_per_token`, the sampled answers' KL averaged over their tokens.

**Where this differs from TRL**, besides clipping: padding. TRL writes an invalid log-probability
(1.0) on padding and counts the value of one token past the end; here masks do (see `objectives`:
the same numbers on real tokens). TRL's entropy averages over every position, padding included;
here over real tokens. TRL samples at temperature 0.7 and divides its logits by 0.7 when scoring;
here the policy samples at 1 (`rollout`'s docstring says why). TRL can split a minibatch into
micro-batches for memory (gradient accumulation); here a minibatch is one micro-batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from minilm import hardware
from minilm.model.gpt import GPT
from minilm.rlhf.objectives import (
    entropy_from_logits,
    gae,
    kl_penalized_rewards,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
    rlhf_objective_metrics,
    whiten,
)
from minilm.rlhf.rollout import (
    Rollout,
    ValueModel,
    completion_logits,
    completion_logprobs,
    completion_values,
    token_logprobs,
)
from minilm.rlhf.trainer import (
    PolicyTrainingConfig,
    RewardFunction,
    Run,
    batch_rows,
    check_reference,
    rollout_rows,
)


@dataclass
class PPOConfig(PolicyTrainingConfig):
    """A PPO run; the defaults are TRL's PPOConfig's (beta is its kl_coef), except the learning rate, which
    TRL sets (3e-6) for models of a billion weights."""

    beta: float = 0.05  # the KL penalty per token
    lr: float = 1e-5
    iterations: int = 100  # batches of samples, each followed by num_ppo_epochs passes of updates
    rollout_batch_size: int = 64  # prompts (one answer each) per iteration: TRL's batch_size
    minibatch_size: int = 64  # answers per optimizer step: TRL's mini_batch_size (batch / num_mini_batches)
    num_ppo_epochs: int = 4
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    whiten_rewards: bool = False
    max_new_tokens: int = 53  # TRL's response_length
    stop_token: int | None = None  # the token that ends an answer (the chat format's <|end|>)
    pad_token: int = 0
    missing_eos_penalty: float | None = None  # subtracted from the score of answers that never stopped

    def __post_init__(self):
        super().__post_init__()
        counts = ("iterations", "rollout_batch_size", "minibatch_size", "num_ppo_epochs", "max_new_tokens")
        if min(getattr(self, name) for name in counts) < 1:
            raise ValueError(f"{', '.join(counts)} must be >= 1")
        if self.rollout_batch_size % self.minibatch_size:
            raise ValueError(f"rollout_batch_size={self.rollout_batch_size} must be a multiple of "
                             f"minibatch_size={self.minibatch_size} (TRL's batch_size of num_mini_batches)")  # fmt: skip
        if self.rollout_batch_size < 2:
            raise ValueError("rollout_batch_size must be >= 2: the advantages are whitened over the batch")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1) or self.cliprange <= 0 or self.cliprange_value <= 0:
            raise ValueError("need gamma and lam in [0, 1], cliprange > 0 and cliprange_value > 0")
        if self.missing_eos_penalty is not None and (self.missing_eos_penalty < 0 or self.stop_token is None):
            raise ValueError("missing_eos_penalty must be >= 0 and needs a stop_token (TRL: a positive value)")


class PolicyAndValue(nn.Module):
    """The policy and the value model as one module for one optimizer (TRL's PolicyAndValueWrapper), holding
    the iteration's samples and what was computed from them before the updates.

    forward(ids (B, P + C), rows (B,)) -> (the policy's logits, pg_loss + vf_coef * vf_loss) on those rows."""

    def __init__(self, policy: GPT, value_model: ValueModel, config: PPOConfig):
        super().__init__()
        self.policy, self.value_model, self.config = policy, value_model, config
        self.last: dict[str, float] = {}

    def load(self, rollout: Rollout, logprobs, values, advantages, returns) -> None:
        self.rollout, self.logprobs, self.values = rollout, logprobs, values
        self.advantages, self.returns = advantages, returns

    def forward(self, ids: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config, batch = self.config, rollout_rows(self.rollout, ids, rows)
        mask = batch.completion_mask
        logits = completion_logits(self.policy, batch)
        logprobs = token_logprobs(logits, batch)
        values = completion_values(self.value_model, batch)
        pg_loss, clipfrac, approxkl = ppo_policy_loss(logprobs, self.logprobs[rows], self.advantages[rows], mask,
                                                      config.cliprange)  # fmt: skip
        vf_loss, vf_clipfrac = ppo_value_loss(values, self.values[rows], self.returns[rows], mask,
                                              config.cliprange_value)  # fmt: skip
        with torch.no_grad():
            self.last = {
                "policy/approxkl_avg": approxkl.item(), "policy/clipfrac_avg": clipfrac.item(),
                "policy/entropy_avg": masked_mean(entropy_from_logits(logits), mask).item(),
                "loss/policy_avg": pg_loss.item(), "loss/value_avg": vf_loss.item(),
                "val/clipfrac_avg": vf_clipfrac.item(),
                "val/ratio": masked_mean(torch.exp(logprobs - self.logprobs[rows]), mask).item(),
            }  # fmt: skip
        return logits, pg_loss + config.vf_coef * vf_loss


def train_ppo(
    policy: GPT,
    reference: GPT,
    value_model: ValueModel,
    reward_fn: RewardFunction,
    prompts: Sequence[Sequence[int]],
    config: PPOConfig,
    out_dir,
    *,
    resume: bool = True,
    until_step: int | None = None,
) -> list[dict]:
    """Train `policy` and `value_model` in place by PPO on `prompts` (token-id lists, each ending where the
    answer starts), against the frozen `reference`; returns the history, one record per iteration.

    `reward_fn(prompt_ids, completion_ids)` gets lists of token-id lists (each completion with its stop
    token if it sampled one) and returns one finite score per completion. Checkpoints go to
    out_dir/checkpoints (the policy, and the value model in the state); a run there continues from the
    newest (`trainer.Run`)."""
    check_reference(policy, reference, value_model)
    reference.eval()
    objective = PolicyAndValue(policy, value_model, config)
    run = Run("ppo", objective, policy, config, config.iterations, out_dir, others={"value_model": value_model},
              resume=resume, until_step=until_step)  # fmt: skip
    while run.running:
        iteration = run.step
        chosen = batch_rows(len(prompts), config.rollout_batch_size, iteration, config.seed)
        batch_prompts = [prompts[i] for i in chosen]
        rollout, scores = run.sample_and_score(batch_prompts, reward_fn)
        if config.missing_eos_penalty is not None:
            scores = scores - config.missing_eos_penalty * (~rollout.stopped).float()
        mask = rollout.completion_mask
        with torch.no_grad(), hardware.autocast(run.device, run.precision):
            logprobs, ref_logprobs = completion_logprobs(policy, rollout), completion_logprobs(reference, rollout)
            values = completion_values(value_model, rollout)
        rewards = kl_penalized_rewards(logprobs, ref_logprobs, scores, mask, config.beta)
        if config.whiten_rewards:
            rewards = whiten(rewards, mask, shift_mean=False)
        advantages, returns = gae(rewards, values, mask, config.gamma, config.lam)
        objective.load(rollout, logprobs, values, whiten(advantages, mask), returns)
        updates = run.update_on_samples(rollout, config.minibatch_size, config.num_ppo_epochs)
        record = {**rlhf_objective_metrics(logprobs, ref_logprobs, scores, mask, config.beta), **updates,
                  "objective/kl_per_token": masked_mean(logprobs - ref_logprobs, mask).item(),
                  "val/num_eos_tokens": int(rollout.stopped.sum())}  # fmt: skip
        run.end_step(record, "objective/kl_per_token")
    return run.history
