"""GRPO: PPO without a value model, each answer compared with the other answers to its prompt.

DeepSeekMath's method, as TRL 1.16's GRPOTrainer runs it (`objectives` gives the mathematics and
where its fixed point lies). One iteration:

1. *Sample groups.* A batch of prompts (TRL's data loader: shuffled epochs), `num_generations`
   answers to each at temperature 1, seeded by (seed, iteration) so that a resumed run samples the
   same (`trainer.sample_and_score`), scored by `reward_fn(prompt_ids, completion_ids)`.
2. *Advantages* (`objectives.group_advantages`): each answer's score minus its group's mean,
   divided by the group's standard deviation (`scale_rewards`, TRL's "group"). No value model: the
   group's mean is the baseline.
3. *Score the samples*, with no gradient: log pi_ref for the KL term, and log pi_old when the batch
   gets more than one update (with one, pi_old is the policy itself, and TRL skips that pass too).
4. *Update*, `epochs` passes over the batch in minibatches of `minibatch_size` answers (TRL's
   `num_iterations` and `steps_per_generation`; both 1 pass and 1 step by default): the clipped
   surrogate plus beta times the k3 estimate of the KL, normalised as TRL's default
   `loss_type="dapo"` (`objectives.grpo_loss`), one step of the loop's `train_step` each.

**beta > 0, unlike TRL's default.** TRL 1.16 defaults to beta = 0: no KL term and no reference
model, relying on the clip and few updates to stay near the start (as DAPO and Dr. GRPO argue for
reasoning tasks with a verifiable reward). Stage 7 compares the methods on one objective, reward
minus beta KL to the SFT model, against a learned reward model that a free policy can exploit; so
GRPO here keeps the KL term, at 0.04, DeepSeekMath's value and TRL's default in its first GRPO releases.
beta = 0 remains a setting. `use_bias_correction_kl` is TRL's option of that name (see `grpo_loss`).

**What is logged**, per iteration under TRL's names: `reward` (the mean score), `reward_std` (the
mean of the groups' standard deviations), `frac_reward_zero_std` (groups whose answers all scored
alike: they teach nothing), `completions/mean_length`, and averaged over the updates `kl` (the k3
estimate per token), `entropy`, `clip_ratio/region_mean`, `loss`, `grad_norm`; and `lr`. The
divergence guard reads `kl`.

**Where this differs from TRL**: the policy samples at temperature 1 (TRL's default too, but TRL
divides its logits by any other temperature; `rollout` refuses one); the loss's normaliser is the
minibatch's own token count (TRL's `num_items_in_batch` counts the tokens of the whole generation
batch when it accumulates gradients over several steps); no `mask_truncated_completions`, no
importance-sampling correction for a separate inference engine (vLLM), and `scale_rewards` is
"group" or none (TRL also has "batch").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from minilm import hardware
from minilm.model.gpt import GPT
from minilm.rlhf.objectives import entropy_from_logits, group_advantages, grpo_loss, masked_mean
from minilm.rlhf.rollout import Rollout, completion_logits, completion_logprobs, token_logprobs
from minilm.rlhf.trainer import (
    PolicyTrainingConfig,
    RewardFunction,
    Run,
    batch_rows,
    check_reference,
    rollout_rows,
)


@dataclass
class GRPOConfig(PolicyTrainingConfig):
    """A GRPO run; the defaults are TRL 1.16's GRPOConfig's, except beta (see the module docstring), the
    learning rate (TRL's 1e-6 is for models of a billion weights) and the answer length (TRL's 512)."""

    beta: float = 0.04  # the weight of the k3 KL term in the loss
    lr: float = 1e-5
    iterations: int = 100  # batches of groups
    prompts_per_iteration: int = 8
    num_generations: int = 8  # G: answers per prompt
    epsilon: float = 0.2  # the clip of the ratio
    epochs: int = 1  # passes over each batch: TRL's num_iterations (mu in the paper)
    minibatch_size: int | None = None  # answers per optimizer step; None: the whole batch
    scale_rewards: bool = True  # divide by the group's standard deviation (TRL's "group"; False: its "none")
    use_bias_correction_kl: bool = False
    max_new_tokens: int = 64
    stop_token: int | None = None  # the token that ends an answer (the chat format's <|end|>)
    pad_token: int = 0

    def __post_init__(self):
        super().__post_init__()
        if min(self.iterations, self.prompts_per_iteration, self.epochs, self.max_new_tokens) < 1:
            raise ValueError("iterations, prompts_per_iteration, epochs and max_new_tokens must be >= 1")
        if self.num_generations < 2:
            raise ValueError(f"num_generations={self.num_generations}: a group needs at least 2 answers to compare")
        if self.minibatch_size is not None and (self.minibatch_size < 1 or self.answers % self.minibatch_size):
            raise ValueError(f"minibatch_size={self.minibatch_size} must divide the {self.answers} answers of an "
                             "iteration")  # fmt: skip
        if not self.epsilon > 0:
            raise ValueError(f"epsilon={self.epsilon} must be > 0")

    @property
    def answers(self) -> int:
        return self.prompts_per_iteration * self.num_generations


class GRPOObjective(nn.Module):
    """The policy with the iteration's groups and what was computed from them before the updates:
    forward(ids (B, P + C), rows (B,)) -> (the policy's logits, the GRPO loss) on those rows."""

    def __init__(self, policy: GPT, config: GRPOConfig):
        super().__init__()
        self.policy, self.config = policy, config
        self.last: dict[str, float] = {}

    def load(self, rollout: Rollout, old_logprobs: torch.Tensor | None, ref_logprobs, advantages) -> None:
        self.rollout, self.old_logprobs, self.ref_logprobs = rollout, old_logprobs, ref_logprobs
        self.advantages = advantages

    def forward(self, ids: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config, batch = self.config, rollout_rows(self.rollout, ids, rows)
        logits = completion_logits(self.policy, batch)
        logprobs = token_logprobs(logits, batch)
        old = logprobs.detach() if self.old_logprobs is None else self.old_logprobs[rows]
        loss, kl, clip_ratio = grpo_loss(logprobs, old, self.ref_logprobs[rows], self.advantages[rows],
                                         batch.completion_mask, config.epsilon, config.beta,
                                         config.use_bias_correction_kl)  # fmt: skip
        with torch.no_grad():
            entropy = masked_mean(entropy_from_logits(logits), batch.completion_mask)
            self.last = {"kl": kl.item(), "entropy": entropy.item(), "clip_ratio/region_mean": clip_ratio.item()}
        return logits, loss


def train_grpo(
    policy: GPT,
    reference: GPT,
    reward_fn: RewardFunction,
    prompts: Sequence[Sequence[int]],
    config: GRPOConfig,
    out_dir,
    *,
    resume: bool = True,
    until_step: int | None = None,
) -> list[dict]:
    """Train `policy` in place by GRPO on `prompts` (token-id lists, each ending where the answer starts)
    against the frozen `reference`; returns the history, one record per iteration.

    `reward_fn` is PPO's (`ppo.train_ppo`). Checkpoints go to out_dir/checkpoints; a run there continues
    from the newest (`trainer.Run`)."""
    check_reference(policy, reference)
    reference.eval()
    objective = GRPOObjective(policy, config)
    run = Run("grpo", objective, policy, config, config.iterations, out_dir, resume=resume, until_step=until_step)
    size = config.minibatch_size or config.answers
    while run.running:
        iteration = run.step
        chosen = batch_rows(len(prompts), config.prompts_per_iteration, iteration, config.seed)
        groups = [prompts[i] for i in chosen for _ in range(config.num_generations)]  # each group in consecutive rows
        rollout, scores = run.sample_and_score(groups, reward_fn)
        with torch.no_grad(), hardware.autocast(run.device, run.precision):
            ref_logprobs = completion_logprobs(reference, rollout)
            old_logprobs = completion_logprobs(policy, rollout) if config.epochs > 1 or size < config.answers else None
        objective.load(rollout, old_logprobs, ref_logprobs, group_advantages(scores, config.num_generations,
                                                                             config.scale_rewards))  # fmt: skip
        updates = run.update_on_samples(rollout, size, config.epochs)
        group_std = scores.view(-1, config.num_generations).std(1)
        record = {"reward": scores.mean().item(), "reward_std": group_std.mean().item(),
                  "frac_reward_zero_std": (group_std == 0).float().mean().item(),
                  "completions/mean_length": rollout.completion_mask.sum(1).float().mean().item(),
                  **updates}  # fmt: skip
        run.end_step(record, "kl")
    return run.history
