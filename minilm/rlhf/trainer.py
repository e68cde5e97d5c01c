"""What the three policy trainers (`dpo`, `ppo`, `grpo`) share: a run of updates through the package's one
training step, with checkpoints, exact resume and a guard against divergence.

**The update is the training loop's.** Each trainer wraps what it trains in a small module whose
`forward(ids, rows)` returns (anything, the loss): the signature that `minilm.train.loop.train_step`
calls as `model(inputs, targets)`. `ids` are the token ids the policy reads; `rows` are their row
numbers in the tables the trainer computed before the update (the reference's log-probabilities,
PPO's advantages and old values...), which the module holds. `train_step` then does what it does in
pretraining, SFT and the reward model: the forward pass under the precision policy's autocast,
backward (through the fp16 loss scaler where there is one), clipping of the gradient norm, and an
AdamW step (`make_optimizer`: weight decay on matrices only). Each micro-batch weighs by its number
of targets, here its rows: equal micro-batches weigh equally, as under TRL's gradient accumulation.
The module keeps the step's metrics in `last`, as TRL's trainers keep theirs in `_metrics` from
inside `compute_loss`.

**`Run` does the rest**, the same for the three:

- the *learning rate* of each step from `minilm.train.schedule`: a warmup over the first tenth of
  the steps, then a cosine decay to a tenth of the peak, as `train_on_rows` schedules the reward
  model (TRL's trainers decay linearly to 0, without warmup);
- *checkpoints* every `checkpoint_every` steps and at the last one, written atomically by
  `minilm.train.checkpoint`: the policy's weights as model.safetensors (so `load_model` reads an
  RLHF checkpoint like any other GPT's), and in state.pt the optimizer, the loss scaler, the random
  generators, the history, and any other trained model (PPO's value model);
- *exact resume*: a run restarted in the same folder continues from its newest checkpoint and ends
  with the same weights, bit for bit, as one that never stopped. The weights and AdamW's moments are
  restored, the rate is a function of the step, and every random draw of a step (which rows, which
  samples, which minibatches) comes from a generator seeded by (seed, step, purpose);
- the *divergence guard*. After each step it checks the loss, the gradient norm and the KL to the
  reference (per token: each trainer says what it measures). A non-finite value, or a KL above
  `max_kl`, stops the run with a `DivergenceError` that names beta and the learning rate, the two
  settings that cause it; so does a policy whose next-token scores are no longer finite when the
  next step samples from it (`Run.sample_and_score`). The step's numbers describe the weights the
  step started from, which the last checkpoint may hold: the guard removes every checkpoint from
  that step on, and the newest one left is the last whose weights were measured good. Only the newest checkpoint can be
  unmeasured, so keeping two (`keep_checkpoints` >= 2) always leaves a good one once two are written.

The models stay in eval mode throughout: training mode would only switch dropout on, which RLHF
turns off (TRL's `disable_dropout`), since a policy must give its own samples the same
log-probabilities at every pass.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NoReturn

import torch
from torch import nn

from minilm import hardware
from minilm.model.gpt import GPT, make_optimizer
from minilm.rlhf.rollout import Rollout, sample_completions
from minilm.train import checkpoint as ckpt
from minilm.train.loop import derived_seed, train_step
from minilm.train.schedule import learning_rate

CHECKPOINTS = "checkpoints"
ROWS, SAMPLES, MINIBATCHES = 0, 1, 2  # purposes of derived seeds

# Config fields that may change between a run and its resumption: they change how often the run
# looks or saves, not what a step computes.
LOGISTICS = frozenset({"checkpoint_every", "keep_checkpoints", "eval_every", "max_kl"})

RewardFunction = Callable[[list[list[int]], list[list[int]]], torch.Tensor]


class DivergenceError(RuntimeError):
    """A run whose loss, gradient or KL to the reference has exploded: the message names beta and the learning rate;
    `history` holds the run's records up to and including the step that diverged (to plot how it went)."""

    def __init__(self, message: str, history: list[dict]):
        super().__init__(message)
        self.history = history


@dataclass
class PolicyTrainingConfig:
    """What each trainer's config holds besides its method's own fields: the optimisation, the hardware,
    the checkpoints and the divergence guard. Weight decay 0 and clipping at 1 are TRL's defaults."""

    beta: float = 0.1  # the weight of the KL to the reference in the objective (each method sets its own default)
    lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    seed: int = 0
    precision: str = "auto"  # "auto" (bf16 where native, fp16 on older GPUs, else fp32), "fp32", "bf16", "fp16"
    checkpoint_every: int = 50  # steps (DPO) or iterations (PPO, GRPO) between checkpoints
    keep_checkpoints: int = 2  # at least 2: the guard may remove the newest (see the module docstring)
    max_kl: float = 10.0  # nats per token: a policy further from the reference has diverged

    def __post_init__(self):
        if not self.lr > 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(f"need lr > 0, weight_decay >= 0 and grad_clip >= 0; got lr={self.lr}, "
                             f"weight_decay={self.weight_decay}, grad_clip={self.grad_clip}")  # fmt: skip
        if self.precision not in hardware.PRECISIONS:
            raise ValueError(f"precision={self.precision!r}; choose one of {', '.join(hardware.PRECISIONS)}")
        if self.checkpoint_every < 1 or self.keep_checkpoints < 2:
            raise ValueError(
                f"need checkpoint_every >= 1 and keep_checkpoints >= 2 (the divergence guard removes a checkpoint "
                f"whose weights diverged, and the one before must remain); got {self.checkpoint_every}, "
                f"{self.keep_checkpoints}"
            )
        if not self.max_kl > 0:
            raise ValueError(f"max_kl={self.max_kl} must be > 0 (nats per token)")
        if self.beta < 0:
            raise ValueError(f"beta={self.beta} must be >= 0")


# ---------------------------------------------------------------------------------------------
# 1. Checking what a trainer is given


def check_reference(policy: GPT, reference: GPT, value_model: nn.Module | None = None) -> None:
    """Refuse a reference (or value model) that cannot stand beside the policy."""
    if reference is policy:
        raise ValueError("the reference is the policy itself: it would move with every update and the KL would stay 0; "
                         "pass a frozen copy (copy.deepcopy(policy) before training)")  # fmt: skip
    vocab = policy.config.vocab_size
    for name, model in (("reference", reference), ("value model", getattr(value_model, "base", None))):
        if model is not None and model.config.vocab_size != vocab:
            raise ValueError(
                f"the {name} has a vocabulary of {model.config.vocab_size} tokens and the policy {vocab}: they were "
                f"made with different tokenizers, so the same ids mean different tokens to them. Use the SFT model the "
                f"policy starts from (and, for the value model, the reward model trained on its tokenizer)"
            )


def check_scores(scores, count: int) -> torch.Tensor:
    """A reward function's output as a float32 tensor of `count` finite scores, or a clear error."""
    scores = torch.as_tensor(scores, dtype=torch.float32).detach().cpu()
    if scores.shape != (count,):
        raise ValueError(f"reward_fn returned a tensor of shape {tuple(scores.shape)} for {count} completions; "
                         f"it must return one score per completion, shape ({count},)")  # fmt: skip
    bad = (~torch.isfinite(scores)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"reward_fn returned {scores[bad[0]].item()} for completion {bad[0]} ({len(bad)} of {count} scores are "
            f"not finite): a reward must be a finite number. Check the reward model's weights for NaN, or the "
            f"reward function for a division by zero or a log of 0"
        )
    return scores


# ---------------------------------------------------------------------------------------------
# 2. Which rows each step reads, and the samples of on-policy methods


def batch_rows(count: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """The rows (of `count`) that step `step` reads: consecutive slices of a shuffled order of all rows,
    shuffled anew each epoch, as TRL's data loader (shuffle=True, drop_last=True). A function of the
    step, so that a resumed run reads the same rows."""
    if not 1 <= batch_size <= count:
        raise ValueError(f"a batch of {batch_size} rows from {count}: need 1 <= batch size <= the number of rows")
    epoch, index = divmod(step, count // batch_size)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(derived_seed(seed, epoch, ROWS)))
    return order[index * batch_size : (index + 1) * batch_size]


def minibatches(count: int, size: int, epochs: int, seed: int, step: int) -> Iterator[torch.Tensor]:
    """The minibatches of an on-policy step: `epochs` passes over `count` rows, each pass in a new random
    order cut into slices of `size` (TRL's PPO and GRPO draw a permutation per epoch likewise)."""
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(derived_seed(seed, step, MINIBATCHES, epoch))
        yield from torch.randperm(count, generator=generator).split(size)


@torch.no_grad()
def sample_and_score(
    policy: GPT, prompts: Sequence[Sequence[int]], reward_fn: RewardFunction, config, step: int, precision: str
) -> tuple[Rollout, torch.Tensor]:
    """Sample one completion per prompt at temperature 1 (`rollout.sample_completions`, seeded by (seed,
    step)) and score it: `reward_fn(prompt_ids, completion_ids)` gets the prompts and the completions as
    token-id lists, each completion with its stop token if it sampled one, and returns one score each."""
    device = str(policy.output_weight().device)
    with hardware.autocast(device, precision):
        seed = derived_seed(config.seed, step, SAMPLES)
        rollout = sample_completions(policy, prompts, config.max_new_tokens, seed=seed, stop_token=config.stop_token,
                                     pad_token=config.pad_token)  # fmt: skip
    completions = [ids[real].tolist() for ids, real in zip(rollout.completion_ids, rollout.completion_mask)]
    scores = check_scores(reward_fn([list(p) for p in prompts], completions), len(prompts))
    return rollout, scores.to(device)


def rollout_rows(rollout: Rollout, ids: torch.Tensor, rows: torch.Tensor) -> Rollout:
    """The rows `rows` of `rollout`, whose prompt and completion ids (side by side) are `ids`: a minibatch to score."""
    prompt_length = rollout.prompt_ids.size(1)
    return Rollout(ids[:, :prompt_length], rollout.prompt_mask[rows], ids[:, prompt_length:],
                   rollout.completion_mask[rows], rollout.temperature, rollout.stop_token)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 3. The run: schedule, update, guard, checkpoints, resume


class Run:
    """The state of one training run of a policy: optimizer, scaler, step, history, checkpoints.

    `objective` is the module `train_step` trains (its trainable weights are the optimizer's);
    `policy` the GPT whose weights the checkpoints hold as model.safetensors; `others` more trained
    models saved in state.pt (PPO's value model). A run in an `out_dir` with checkpoints continues
    from the newest (`resume=False` deletes them and starts over); `until_step` stops early, after a
    checkpoint, to continue later.
    """

    def __init__(
        self,
        method: str,
        objective: nn.Module,
        policy: GPT,
        config: PolicyTrainingConfig,
        steps: int,
        out_dir,
        *,
        others: dict[str, nn.Module] | None = None,
        resume: bool = True,
        until_step: int | None = None,
    ):
        self.method, self.objective, self.policy, self.config, self.steps = method, objective, policy, config, steps
        self.others = others or {}
        self.device = str(policy.output_weight().device)
        self.precision = hardware.choose_precision(self.device, config.precision)
        hardware.allow_tf32(self.device)
        for model in (objective, *self.others.values()):
            model.eval()  # dropout off (see the module docstring)
        self.optimizer = make_optimizer(objective, config.lr, config.weight_decay)
        self.scaler = hardware.grad_scaler(self.device, self.precision)
        self.folder = Path(out_dir) / CHECKPOINTS
        self.meta = {"method": method, "config": asdict(config)}
        self.step, self.history = 0, []
        if not resume:
            shutil.rmtree(self.folder, ignore_errors=True)
        elif (newest := ckpt.latest_checkpoint(self.folder)) is not None:
            self._restore(newest)
        self.last_step = steps if until_step is None else min(until_step, steps)

    @property
    def running(self) -> bool:
        return self.step < self.last_step

    def lr(self) -> float:
        return learning_rate(self.step, self.config.lr, self.steps // 10, self.steps, self.config.lr / 10)

    def update(self, ids: torch.Tensor, rows: torch.Tensor) -> tuple[float, float]:
        """One optimizer step on the rows `rows` (token ids `ids`); returns (loss, gradient norm before clipping)."""
        loss, norm = train_step(self.objective, self.optimizer, self.scaler, [(ids, rows)], self.lr(),
                                self.config.grad_clip, self.device, self.precision)  # fmt: skip
        return loss.item(), norm.item()

    def update_on_samples(self, rollout: Rollout, minibatch_size: int, epochs: int) -> dict[str, float]:
        """The updates of an on-policy step (PPO's, GRPO's): `epochs` passes over the rows of `rollout` in random
        minibatches of `minibatch_size`, one `update` each; returns the mean over the updates of the objective's
        metrics, the loss and the gradient norm (TRL's `*_avg` metrics)."""
        ids, updates = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1), []
        for rows in minibatches(len(rollout), minibatch_size, epochs, self.config.seed, self.step):
            loss, grad_norm = self.update(ids[rows.to(ids.device)], rows)
            updates.append({**self.objective.last, "loss": loss, "grad_norm": grad_norm})
        return {name: sum(update[name] for update in updates) / len(updates) for name in updates[0]}

    def end_step(self, record: dict[str, float], kl_name: str) -> None:
        """Check the step's numbers (the guard reads the loss, the gradient norm and the KL per token,
        `record[kl_name]`), add them to the history, and checkpoint when due."""
        record = {"step": self.step + 1, "lr": self.lr(), **record}
        self._guard(record, kl_name)
        self.history.append(record)
        self.step += 1
        if self.step % self.config.checkpoint_every == 0 or self.step == self.last_step:
            self._save()

    def _guard(self, record: dict[str, float], kl_name: str) -> None:
        config, loss, grad_norm, kl = self.config, record["loss"], record["grad_norm"], record[kl_name]
        reasons = []
        if not math.isfinite(loss):
            reasons.append(f"the loss is {loss}")
        if not math.isfinite(kl) or kl > config.max_kl:
            reasons.append(f"the KL to the reference is {kl:.4g} nats per token ({kl_name}; max_kl={config.max_kl})")
        if not math.isfinite(grad_norm) and self.precision != "fp16":  # fp16's scaler skips such steps itself
            reasons.append(f"the gradient norm is {grad_norm}")
        if reasons:
            self._diverged(reasons, record)

    def sample_and_score(self, prompts: Sequence[Sequence[int]],
                         reward_fn: RewardFunction) -> tuple[Rollout, torch.Tensor]:
        """This step's `sample_and_score` from the policy. Weights wrecked by the last update can give scores that are
        no longer finite (`minilm.model.generate.sample`): that is a divergence too, caught before the guard sees it."""
        try:
            return sample_and_score(self.policy, prompts, reward_fn, self.config, self.step, self.precision)
        except FloatingPointError as error:
            self._diverged([f"sampling failed ({error})"], {"step": self.step + 1, "lr": self.lr()})

    def _diverged(self, reasons: list[str], record: dict) -> NoReturn:
        """Remove the checkpoints whose weights may be the diverged ones and raise the `DivergenceError`."""
        config = self.config
        for path in ckpt.list_checkpoints(self.folder):  # their weights are those the numbers above describe, or later
            if int(ckpt.STEP_FOLDER.fullmatch(path.name).group(1)) >= self.step:
                shutil.rmtree(path)
        kept = ckpt.latest_checkpoint(self.folder)
        raise DivergenceError(
            f"{self.method} diverged at step {self.step + 1} of {self.steps}: {'; '.join(reasons)}, with beta="
            f"{config.beta} and learning rate lr={config.lr}. Lower the learning rate, or raise beta (the KL "
            f"penalty that holds the policy near the reference), and start over (resume=False). "
            + (f"The last good checkpoint is kept: {kept}" if kept else "No checkpoint was written before it."),
            self.history + [record],
        )

    def _save(self) -> None:
        state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "rng": ckpt.rng_state(),
                 "history": self.history,
                 "models": {name: model.state_dict() for name, model in self.others.items()}}  # fmt: skip
        ckpt.save_checkpoint(self.folder, self.step, self.policy, state, self.meta, keep=self.config.keep_checkpoints)

    def _restore(self, path: Path) -> None:
        weights, state, meta = ckpt.read_checkpoint(path)
        fresh = "or start over (resume=False)"
        if meta.get("method") != self.method:
            raise ckpt.CheckpointError(f"checkpoint {path} was written by {meta.get('method')!r} training, not "
                                       f"{self.method!r}: use another out_dir, {fresh}")  # fmt: skip
        differences = ckpt.config_differences(meta["model"], asdict(self.policy.config))
        differences += ckpt.config_differences(meta["config"], self.meta["config"], ignore=LOGISTICS)
        if differences:
            raise ckpt.CheckpointError(f"checkpoint {path} was made by a run with another config "
                                       f"({'; '.join(differences)}); use that config to resume, {fresh}")  # fmt: skip
        self.policy.load_state_dict(weights)
        for name, model in self.others.items():
            model.load_state_dict(state["models"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.set_rng_state(state["rng"])
        self.step, self.history = int(state["step"]), list(state["history"])
