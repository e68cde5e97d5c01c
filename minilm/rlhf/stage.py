"""Stage 7 end to end: align the stage-6 chat model with preferences, and judge every method by the gold reward.

    python -m minilm rlhf

`run_rlhf_stage` is what the command line, the speedrun and notebook 07 call. From stage 6's SFT
model (the reference of every method, and the start of every policy) it:

1. draws *prompts*: training prompts about the stories of stage 6's validation split, which no stage
   trains on (stage 6 reads the first few for its validation loss), and stage 6's test questions (unseen stories, decontaminated) for the evaluation; each prompt
   short enough to leave `max_new_tokens` of the context for its answer;
2. samples `responses_per_prompt` answers to each training prompt from the SFT model at temperature 1
   and lets the simulated annotators label every pair (`preferences.label_pairs`); the pairs of a
   held-out share of the prompts are kept apart, to measure the reward model and DPO;
3. trains the *reward model* on the pairs (`reward_model`): held-out accuracy against the annotators'
   labels beside the ceiling their noise allows, and against the gold order, beside a scorer that is not
   trained at all, the SFT model's log-likelihood of each answer (`likelihood_accuracy`);
4. trains four *policies*, each a copy of the SFT model held near it: DPO on the pairs, PPO and GRPO on
   the reward model's score, and GRPO on the gold reward itself (a verifiable reward, as a comparison:
   what the methods could reach if the reward model were perfect);
5. shows *reward hacking*: PPO with a KL penalty of `hacking_beta` (0: none) for longer, measured every
   `hacking_eval_every` iterations on the test prompts by the reward model and by the gold reward;
6. *measures* every model on the test prompts: `eval_samples` answers per prompt sampled at temperature
   1, their gold reward, their reward-model score, their KL to the SFT model, and the gold win rate
   against the SFT model's answers with a bootstrap 95% interval over prompts (`win_rate` says how ties count).

Training never calls the gold reward, except the verifiable-reward GRPO run, which is labelled so.
Each run trains in a work folder beside the stage's (``data/runs/<preset>/.rlhf-work/``): an
interrupted stage continues each run from its last checkpoint. The results (each policy's last
checkpoint, the reward model, the pairs, results.json, samples.json and the figure) move into
``data/runs/<preset>/rlhf/``.
"""

from __future__ import annotations

import copy
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from minilm import hardware
from minilm.cache import Artifact, cached_stage, load_artifact, run_dir
from minilm.files import atomic_write_json
from minilm.finetune.chat import END, PAD, encode_chat
from minilm.finetune.tasks import Example, build_examples
from minilm.model.gpt import GPT
from minilm.presets import config_for, preset_name
from minilm.rlhf import gold, preferences
from minilm.rlhf.dpo import DPOConfig, all_answer_logprobs, train_dpo
from minilm.rlhf.grpo import GRPOConfig, train_grpo
from minilm.rlhf.ppo import PPOConfig, train_ppo
from minilm.rlhf.reward_model import RewardConfig, RewardModel, encode_pairs, train_reward_model
from minilm.rlhf.reward_model import scores as reward_scores
from minilm.rlhf.rollout import Rollout, ValueModel, completion_logprobs, sample_completions
from minilm.rlhf.trainer import CHECKPOINTS
from minilm.train import checkpoint as ckpt

CODE = [*sorted(path for path in Path(__file__).parent.glob("*.py") if path.name not in ("report.py", "bandit.py")),
        Path(__file__).parent.parent / "finetune" / "chat.py", Path(__file__).parent.parent / "finetune" / "tasks.py",
        Path(__file__).parent.parent / "model", Path(__file__).parent.parent / "train" / "loop.py"]
RESULTS, SAMPLES, PAIRS, FIGURE, REWARD_DIR = "results.json", "samples.json", "pairs.jsonl", "rlhf.png", "reward_model"
METHODS = {"DPO": "dpo", "PPO": "ppo", "GRPO": "grpo", "GRPO, gold reward": "grpo_gold"}  # name -> folder
HACKING = "PPO, beta 0"


@dataclass
class RLHFConfig:
    """Stage 7: the prompts, the annotators, the reward model, the three methods and how they are measured.

    Each method's fields carry its prefix; what they mean is its config's (`DPOConfig`, `PPOConfig`,
    `GRPOConfig`, `RewardConfig`). The learning rates are larger than TRL's defaults, which suit models of
    a billion weights; the KL weights (beta) are TRL's, but GRPO's (see `minilm.rlhf.grpo`)."""

    # prompts and preference pairs
    # training prompts per task family, about stories of the "sft_val" split. Measured with the cpu preset on one
    # SFT model, at the same number of steps: 150 prompts x 4 answers (1,708 pairs) gave a reward model 0.574
    # accurate on held-out labels (ceiling 0.745), 0.695 on the gold order; 300 x 6 (8,490 pairs) 0.645 (ceiling
    # 0.758), 0.786 on the gold order. The reward model overfits few pairs within an epoch.
    prompts_per_family: int = 300
    heldout_share: float = 0.2  # of those prompts, whose pairs measure the reward model and DPO
    prompt_tokens: int = 91  # the longest prompt kept: the answer and its <|end|> get the rest of the context
    max_new_tokens: int = 36  # the longest clean answer (the refusal, 32 tokens with the cpu tokenizer) and room
    responses_per_prompt: int = 6  # sampled from the SFT model for the annotators: up to 15 pairs per prompt
    annotator_noise: float = 0.1
    annotator_disagree_share: float = 0.1
    annotator_temperature: float = 0.25
    # the reward model
    reward_steps: int = 300
    # prompts per step, each with all its pairs (`reward_model.PromptBatches`). Measured on one build's pairs (9,196
    # of 881 prompts, 3,253 distinct answers), float32 on one thread of a busy machine, seeds 1337 and 1, accuracy
    # against the held-out labels: 32 random pairs a step (as TRL draws them) 0.682 and 0.692, in 285 and 209 s;
    # 10 prompts a step (about 37 distinct answers and 104 pairs) 0.683 and 0.694, in 85 and 105 s. Also 17
    # prompts (the 64 conversations of 32 pairs) 0.692 in 187 s; on twice the prompts, 10 a step, 300 steps 0.693
    # and 600 steps 0.667 (one seed: more passes over the same pairs did not help)
    reward_prompts_per_step: int = 10
    reward_lr: float = 3e-4
    # DPO
    dpo_beta: float = 0.1
    dpo_lr: float = 1e-4
    dpo_steps: int = 150
    dpo_batch_size: int = 16
    # PPO
    ppo_beta: float = 0.05
    ppo_lr: float = 3e-5
    ppo_iterations: int = 30
    ppo_rollout_batch_size: int = 64
    ppo_minibatch_size: int = 32
    ppo_epochs: int = 2
    # GRPO
    grpo_beta: float = 0.04
    grpo_lr: float = 3e-5
    grpo_iterations: int = 30
    grpo_prompts: int = 8
    grpo_generations: int = 8
    # reward hacking: PPO with a small KL weight, for longer
    hacking_beta: float = 0.0
    hacking_lr: float = 3e-4
    hacking_iterations: int = 40
    hacking_eval_every: int = 10
    # measuring
    eval_samples: int = 2  # answers per test prompt and model
    bootstrap: int = 2000  # resamples of the test prompts for the win rate's interval
    seed: int = 1337
    device: str | None = None
    precision: str = "auto"

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, int) and not isinstance(value, bool) and name != "seed" and value < 1:
                raise ValueError(f"RLHFConfig.{name} must be a positive integer, got {value!r}")
        if not 0 < self.heldout_share < 1:
            raise ValueError(f"RLHFConfig.heldout_share={self.heldout_share} must be between 0 and 1 (exclusive): "
                             "the reward model needs pairs to learn from and pairs to be measured on")  # fmt: skip
        if self.responses_per_prompt < 2 or self.eval_samples < 1:
            raise ValueError("responses_per_prompt must be >= 2 (a pair needs two answers)")

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides) -> "RLHFConfig":
        return config_for(cls, "rlhf", preset, **overrides)

    def annotators(self) -> preferences.AnnotatorConfig:
        return preferences.AnnotatorConfig(self.annotator_noise, self.annotator_disagree_share, self.annotator_temperature)

    def reward(self) -> RewardConfig:
        return RewardConfig(steps=self.reward_steps, prompts_per_step=self.reward_prompts_per_step, lr=self.reward_lr,
                            eval_every=max(1, self.reward_steps // 2), seed=self.seed)  # fmt: skip

    def dpo(self) -> DPOConfig:
        return DPOConfig(beta=self.dpo_beta, lr=self.dpo_lr, steps=self.dpo_steps, batch_size=self.dpo_batch_size,
                         eval_every=max(1, self.dpo_steps // 2), **self._common(self.dpo_steps))  # fmt: skip

    def ppo(self, stop_token: int, pad_token: int, hacking: bool = False) -> PPOConfig:
        beta, lr, iterations = ((self.hacking_beta, self.hacking_lr, self.hacking_iterations) if hacking else
                                (self.ppo_beta, self.ppo_lr, self.ppo_iterations))  # fmt: skip
        return PPOConfig(beta=beta, lr=lr, iterations=iterations, rollout_batch_size=self.ppo_rollout_batch_size,
                         minibatch_size=self.ppo_minibatch_size, num_ppo_epochs=self.ppo_epochs,
                         max_new_tokens=self.max_new_tokens, stop_token=stop_token, pad_token=pad_token,
                         **self._common(iterations))  # fmt: skip

    def grpo(self, stop_token: int, pad_token: int) -> GRPOConfig:
        return GRPOConfig(beta=self.grpo_beta, lr=self.grpo_lr, iterations=self.grpo_iterations,
                          prompts_per_iteration=self.grpo_prompts, num_generations=self.grpo_generations,
                          max_new_tokens=self.max_new_tokens, stop_token=stop_token, pad_token=pad_token,
                          **self._common(self.grpo_iterations))  # fmt: skip

    def _common(self, steps: int) -> dict:
        return {"seed": self.seed, "precision": self.precision, "checkpoint_every": max(1, steps // 3)}


# ---------------------------------------------------------------------------------------------
# 1. Prompts


@dataclass
class Prompts:
    """Examples whose prompt fits with room for an answer, and those prompts as token ids (ending with the
    assistant's role token, where the answer starts)."""

    examples: list[Example]
    ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.examples)


def fitting_prompts(examples: Sequence[Example], tokenizer, prompt_tokens: int) -> Prompts:
    """The examples whose prompt (`encode_chat` with the generation prompt) is at most `prompt_tokens` long."""
    kept, ids = [], []
    for example in examples:
        encoded = encode_chat(tokenizer, example.prompt, add_generation_prompt=True)[0]
        if len(encoded) <= prompt_tokens:
            kept.append(example)
            ids.append(encoded)
    if not kept:
        raise ValueError(f"no prompt fits in prompt_tokens={prompt_tokens}: raise it (the context is the limit)")
    return Prompts(kept, ids)


def training_prompts(config: RLHFConfig, tokenizer, context: int) -> Prompts:
    """`prompts_per_family` fitting prompts of every family about the stories of the "sft_val" split, shuffled.

    RLHF's prompts must be about stories that SFT did not train on, or the policy would be rewarded for what
    it memorised; stage 6 reads only the first `val_per_family` of these stories, to measure, never to train.
    The seed differs from stage 6's, so the questions do too."""
    drawn = build_examples("sft_val", 2 * config.prompts_per_family, config.seed + 7, tokenizer, context)
    fitting = fitting_prompts(drawn, tokenizer, config.prompt_tokens)
    examples = []
    for family in gold.JUDGED_FAMILIES:
        examples += [e for e in fitting.examples if e.family == family][: config.prompts_per_family]
    random.Random(config.seed).shuffle(examples)
    return fitting_prompts(examples, tokenizer, config.prompt_tokens)


# ---------------------------------------------------------------------------------------------
# 2. Answers, and what they score


@torch.no_grad()
def sample_answers(model: GPT, prompts: Prompts, tokenizer, max_new_tokens: int, seed: int,
                   precision: str = "fp32") -> tuple[Rollout, list[str]]:
    """One answer per prompt at temperature 1: the rollout (ids, for log-probabilities) and the texts."""
    device = str(model.output_weight().device)
    with hardware.autocast(device, precision):
        rollout = sample_completions(model, prompts.ids, max_new_tokens, seed=seed, stop_token=tokenizer.special_id(END),
                                     pad_token=tokenizer.special_id(PAD))  # fmt: skip
    return rollout, [answer_text(tokenizer, answer) for answer in rollout.answers()]


def answer_text(tokenizer, ids: Sequence[int]) -> str:
    """The text of a sampled answer, its special tokens left out (as TRL decodes completions, with
    skip_special_tokens): a small model now and then samples a role token inside an answer, which no
    message of the chat format may hold."""
    specials = set(tokenizer.special_tokens.values())
    return tokenizer.decode([t for t in ids if t not in specials]).strip()


def reward_model_scorer(reward_model: RewardModel, end: int):
    """A `reward_fn` for PPO and GRPO: the reward model's score of each prompt + completion.

    A completion that never sampled ``<|end|>`` gets one appended, so that the score is read where the
    reward model learnt to read it (the end of an answer); the cut-off text still shows its flaw."""

    @torch.no_grad()
    def score(prompt_ids: list[list[int]], completions: list[list[int]]) -> torch.Tensor:
        rows = [p + c + ([] if c and c[-1] == end else [end]) for p, c in zip(prompt_ids, completions)]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), reward_model.pad_id, dtype=torch.long)
        real = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)], real[i, : len(row)] = torch.tensor(row), True
        device = reward_model.head.weight.device
        return reward_model.score(ids.to(device), real.to(device))

    return score


def gold_scorer(prompts: Prompts, tokenizer):
    """A `reward_fn` that reads the gold reward of each completion: the verifiable reward."""
    by_prompt = {tuple(ids): example for ids, example in zip(prompts.ids, prompts.examples)}

    def score(prompt_ids: list[list[int]], completions: list[list[int]]) -> torch.Tensor:
        texts = [answer_text(tokenizer, c) for c in completions]
        return torch.tensor([gold.gold_reward(by_prompt[tuple(p)], text) for p, text in zip(prompt_ids, texts)])

    return score


@torch.no_grad()
def kl_to_reference(policy: GPT, reference: GPT, rollout: Rollout, precision: str = "fp32") -> torch.Tensor:
    """Each sampled answer's KL to the reference, summed over its tokens: log pi(y|x) - log pi_ref(y|x), (B,).

    Its mean over the policy's own samples estimates KL(pi || pi_ref) per answer (what PPO's
    objective/kl logs)."""
    device = str(policy.output_weight().device)
    with hardware.autocast(device, precision):
        moved = completion_logprobs(policy, rollout) - completion_logprobs(reference, rollout)
    return (moved * rollout.completion_mask).sum(1).float()


def win_rate(gold_model: Sequence[Sequence[float]], gold_sft: Sequence[Sequence[float]], resamples: int,
             seed: int) -> dict:
    """How often the model's answer beats the SFT model's answer to the same prompt on the gold reward (sample j
    against sample j), with a percentile-bootstrap 95% interval from resampling the prompts.

    `gold_model[i][j]` is the gold reward of the model's j-th answer to prompt i. An exact judge ties
    far more often than a person or an LLM judge: two clean, right answers score the same, and most
    answers of both models are that. A tie says that neither answer is better, so `win_rate` counts
    the comparisons that have a winner, wins / (wins + losses); `ties` is their share of all
    comparisons, and `win_rate_ties_half` the rate with ties counted as half a win (AlpacaEval's rule),
    which a high tie share pulls toward 0.5. Where every comparison is a tie, `win_rate` and its
    interval are None.
    """
    outcome = torch.tensor([[1.0 if a > b else -1.0 if a < b else 0.0 for a, b in zip(ours, theirs)]
                            for ours, theirs in zip(gold_model, gold_sft)])  # fmt: skip
    wins, losses = (outcome > 0).float().sum(1), (outcome < 0).float().sum(1)  # per prompt
    count = outcome.numel()
    total_wins, total_losses = wins.sum().item(), losses.sum().item()
    ties = {"wins": total_wins / count, "losses": total_losses / count, "ties": 1 - (total_wins + total_losses) / count,
            "win_rate_ties_half": (total_wins + 0.5 * (count - total_wins - total_losses)) / count}
    if total_wins + total_losses == 0:  # every comparison a tie: no winner to count
        return {"win_rate": None, "low": None, "high": None, **ties}
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(outcome), (resamples, len(outcome)), generator=generator)
    won, lost = wins[rows].sum(1), losses[rows].sum(1)
    rates = won / (won + lost).clamp(min=1)
    low, high = torch.quantile(rates, torch.tensor([0.025, 0.975])).tolist()
    return {"win_rate": total_wins / (total_wins + total_losses), "low": low, "high": high, **ties}


def measure(model: GPT, reference: GPT, reward_model: RewardModel, prompts: Prompts, tokenizer, config: RLHFConfig,
            precision: str, samples: int | None = None) -> dict:
    """`samples` (default `config.eval_samples`) answers per prompt, and for each its gold reward, reward-model score and KL to the reference.

    The j-th answers of every model are sampled with the same seed, so the comparison of sample j is
    paired as far as the models agree."""
    scorer = reward_model_scorer(reward_model, tokenizer.special_id(END))
    texts, golds, scores, kls = [], [], [], []
    for j in range(samples or config.eval_samples):
        rollout, answers = sample_answers(model, prompts, tokenizer, config.max_new_tokens, config.seed + j, precision)
        completions = [ids[real].tolist() for ids, real in zip(rollout.completion_ids, rollout.completion_mask)]
        texts.append(answers)
        golds.append([gold.gold_reward(e, a) for e, a in zip(prompts.examples, answers)])
        scores.append(scorer(prompts.ids, completions).tolist())
        kls.append(kl_to_reference(model, reference, rollout, precision).tolist())
    by_prompt = [list(column) for column in zip(*golds)]
    flat = [value for sample in golds for value in sample]
    return {"texts": [list(column) for column in zip(*texts)], "gold": by_prompt,
            "gold_mean": sum(flat) / len(flat), "best_share": sum(value == gold.BEST for value in flat) / len(flat),
            "rm_score": sum(map(sum, scores)) / len(flat), "kl": sum(map(sum, kls)) / len(flat)}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 3. The stage


def run_rlhf_stage(
    preset: str | None = None,
    force: bool = False,
    config: RLHFConfig | None = None,
    finetuned: Artifact | None = None,
    tokenizer: Artifact | None = None,
    progress: bool = True,
) -> Artifact:
    """Stage 7, cached: the run folder with each policy, the reward model, the pairs, results.json and the figure.

    `finetuned` is stage 6's artifact and `tokenizer` stage 2's (default: both from the cache, built if missing)."""
    from minilm.finetune.stage import run_finetune_stage
    from minilm.rlhf.report import produced
    from minilm.tokenizer.stage import run_tokenizer_stage

    preset = preset_name(preset)
    config = config or RLHFConfig.from_preset(preset)
    finetuned = finetuned or run_finetune_stage(preset, tokenizer=tokenizer, progress=progress)
    tokenizer = tokenizer or run_tokenizer_stage(preset)
    work = run_dir("rlhf", preset).parent / ".rlhf-work"

    def build(folder: Path) -> dict:
        return _build(config, finetuned, tokenizer, preset, work, folder, force)

    return cached_stage("rlhf", asdict(config), build, preset=preset,
                        inputs={"finetuned": finetuned.key, "tokenizer": tokenizer.key}, code=CODE, force=force,
                        produced=produced)  # fmt: skip


def load_policy(artifact: Artifact, name: str, device: str = "cpu") -> GPT:
    """The policy that stage 7 trained by method `name` (a key of `METHODS`, or `HACKING`)."""
    folder = {**METHODS, HACKING: "hacking"}[name]
    return ckpt.load_model(artifact.path / folder / CHECKPOINTS, device)


def load_reward_model(artifact: Artifact, device: str = "cpu") -> RewardModel:
    """Stage 7's reward model: its GPT (a checkpoint) and its head."""
    from safetensors.torch import load_file

    newest = ckpt.latest_checkpoint(artifact.path / REWARD_DIR)
    base = ckpt.load_model(newest, device)
    head = load_file(newest / "head.safetensors", device=device)
    model = RewardModel(base, int(head["pad_id"]))
    model.head.weight.data.copy_(head["weight"])
    return model


def _build(config: RLHFConfig, finetuned: Artifact, tokenizer_artifact: Artifact, preset: str, work: Path,
           folder: Path, fresh: bool) -> dict:
    from minilm.data.stage import DataConfig
    from minilm.finetune.stage import FinetuneConfig, instruction_data, load_finetuned
    from minilm.rlhf.report import plot_rlhf
    from minilm.tokenizer.stage import load_tokenizer

    started, timings = time.perf_counter(), {}
    if fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    device = hardware.pick_device(config.device)
    precision = hardware.choose_precision(device, config.precision)
    tokenizer = load_tokenizer(tokenizer_artifact)
    end, pad = tokenizer.special_id(END), tokenizer.special_id(PAD)
    sft = load_finetuned(finetuned, device).eval()
    context = sft.config.context
    if config.prompt_tokens + config.max_new_tokens + 1 > context:  # + 1: the <|end|> the reward model reads
        raise ValueError(f"prompt_tokens + max_new_tokens + 1 = {config.prompt_tokens + config.max_new_tokens + 1} "
                         f"exceeds the model's context of {context} (the 1 is the <|end|> that closes an answer cut "
                         f"off at max_new_tokens): lower one of them")  # fmt: skip

    # 1. prompts
    clock = time.perf_counter()
    train_prompts = training_prompts(config, tokenizer, context)
    finetune_config = FinetuneConfig.from_preset(preset)
    test = instruction_data(finetune_config, tokenizer, context, DataConfig.from_preset(preset).n_stories)["test"]
    judged = [e for e in test if e.family in gold.JUDGED_FAMILIES]  # translation is scored by stage 6, not the rubric
    test_prompts = fitting_prompts(judged, tokenizer, config.prompt_tokens)
    heldout = max(1, round(config.heldout_share * len(train_prompts)))

    # 2. the SFT model's answers, labelled in pairs
    responses = [[] for _ in range(len(train_prompts))]
    for k in range(config.responses_per_prompt):
        _, answers = sample_answers(sft, train_prompts, tokenizer, config.max_new_tokens, config.seed + 100 + k, precision)
        for i, answer in enumerate(answers):
            responses[i].append(answer)
    annotators = config.annotators()
    labelled, skipped = [], {}
    for part, rows in (("train", range(heldout, len(train_prompts))), ("heldout", range(heldout))):
        pairs, skips = preferences.label_pairs([train_prompts.examples[i] for i in rows], [responses[i] for i in rows],
                                               annotators, seed=config.seed + len(labelled))  # fmt: skip
        fitting = [pair for pair in pairs if _pair_length(tokenizer, pair) <= context]
        skips["too long"] = len(pairs) - len(fitting)  # an answer whose text encodes longer than it was sampled
        labelled.append(fitting)
        skipped[part] = dict(skips)
    train_pairs, heldout_pairs = labelled
    for part, pairs in (("training", train_pairs), ("held-out", heldout_pairs)):
        if not pairs:
            raise ValueError(f"the SFT model's answers to the {part} prompts make no pair of two different answers "
                             f"(skipped: {skipped}): raise prompts_per_family or responses_per_prompt")  # fmt: skip
    preferences.save_pairs(folder / PAIRS, train_pairs)
    preferences.save_pairs(folder / f"heldout_{PAIRS}", heldout_pairs)
    timings["prompts and pairs"] = time.perf_counter() - clock

    # 3. the reward model
    clock = time.perf_counter()
    encoded_train, encoded_heldout = (encode_pairs(tokenizer, pairs, context) for pairs in (train_pairs, heldout_pairs))
    reward_model = RewardModel(copy.deepcopy(sft), pad, seed=config.seed)
    reward_history = train_reward_model(reward_model, encoded_train, config.reward(), validation=encoded_heldout,
                                        precision=precision)  # fmt: skip
    reward_model.eval().requires_grad_(False)
    reward_results = {"train_pairs": len(train_pairs), "heldout_pairs": len(heldout_pairs), "skipped": skipped,
                      "history": reward_history,
                      **reward_model_accuracy(reward_model, heldout_pairs, annotators, tokenizer, context),
                      "likelihood": likelihood_accuracy(sft, heldout_pairs, annotators, tokenizer, context, precision)}  # fmt: skip
    _save_reward_model(reward_model, folder / REWARD_DIR)
    timings["reward model"] = time.perf_counter() - clock

    # 4. the policies, each from the SFT model, against it as the reference
    reference = copy.deepcopy(sft).requires_grad_(False)
    rm_scorer = reward_model_scorer(reward_model, end)
    histories, policies = {}, {"SFT": sft}
    for name, slug in METHODS.items():
        clock = time.perf_counter()
        policy, out = copy.deepcopy(sft), work / slug
        if name == "DPO":
            histories[name] = train_dpo(policy, reference, encoded_train, config.dpo(), out, validation=encoded_heldout)
        elif name == "PPO":
            value_model = ValueModel.from_reward_model(reward_model).requires_grad_(True)
            histories[name] = train_ppo(policy, reference, value_model, rm_scorer, train_prompts.ids,
                                        config.ppo(end, pad), out)  # fmt: skip
        else:
            scorer = rm_scorer if name == "GRPO" else gold_scorer(train_prompts, tokenizer)
            histories[name] = train_grpo(policy, reference, scorer, train_prompts.ids, config.grpo(end, pad), out)
        policies[name] = policy.eval()
        timings[name] = time.perf_counter() - clock

    # 5. reward hacking: PPO with little or no KL penalty, measured as it goes
    clock = time.perf_counter()
    hacker = copy.deepcopy(sft)
    value_model = ValueModel.from_reward_model(reward_model).requires_grad_(True)
    hacking_config = config.ppo(end, pad, hacking=True)
    hacking_curve = [_hacking_point(0, sft, reference, reward_model, test_prompts, tokenizer, config, precision)]
    for until in [*range(config.hacking_eval_every, config.hacking_iterations, config.hacking_eval_every),
                  config.hacking_iterations]:  # every eval_every iterations, and at the last one
        hacking_history = train_ppo(hacker, reference, value_model, rm_scorer, train_prompts.ids, hacking_config,
                                    work / "hacking", until_step=until)  # fmt: skip
        hacking_curve.append(_hacking_point(until, hacker, reference, reward_model, test_prompts, tokenizer, config,
                                            precision))  # fmt: skip
    histories[HACKING] = hacking_history
    policies[HACKING] = hacker.eval()
    timings["reward hacking"] = time.perf_counter() - clock

    # 6. every model on the test prompts
    clock = time.perf_counter()
    measured = {name: measure(model, reference, reward_model, test_prompts, tokenizer, config, precision)
                for name, model in policies.items()}  # fmt: skip
    models = {}
    for name, m in measured.items():
        models[name] = {key: m[key] for key in ("gold_mean", "best_share", "rm_score", "kl")}
        if name != "SFT":
            models[name].update(win_rate(m["gold"], measured["SFT"]["gold"], config.bootstrap, config.seed))
    timings["evaluation"] = time.perf_counter() - clock

    for name, slug in {**METHODS, HACKING: "hacking"}.items():  # each policy's last checkpoint, alone
        newest = ckpt.latest_checkpoint(work / slug / CHECKPOINTS)
        shutil.copytree(newest, folder / slug / CHECKPOINTS / newest.name)
    samples = [{"family": e.family, "messages": e.prompt, "expected": e.answers[0],
                **{name: measured[name]["texts"][i][0] for name in measured}}
               for i, e in enumerate(test_prompts.examples)]  # fmt: skip
    random.Random(config.seed).shuffle(samples)
    atomic_write_json(folder / SAMPLES, {"samples": samples})
    results = {"models": models, "order": list(models), "reward_model": reward_results, "histories": histories,
               "hacking": hacking_curve, "prompts": {"train": len(train_prompts) - heldout, "heldout": heldout,
                                                     "test": len(test_prompts)},
               "timings": timings}  # fmt: skip
    atomic_write_json(folder / RESULTS, results)
    plot_rlhf(results, folder / FIGURE)
    shutil.rmtree(work, ignore_errors=True)
    def rounded(value):
        return None if value is None else round(value, 3)

    return {"gold_win_rate": {name: [rounded(m["win_rate"]), rounded(m["low"]), rounded(m["high"])]
                              for name, m in models.items() if "win_rate" in m},
            "reward_model_accuracy": [rounded(reward_results["accuracy"]), rounded(reward_results["ceiling"])],
            "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip


def _pair_length(tokenizer, pair: dict) -> int:
    return max(len(encode_chat(tokenizer, [*pair["prompt"], *pair[side]])[0]) for side in ("chosen", "rejected"))


def gold_ordered(pairs: list[dict]) -> list[dict]:
    """The pairs that have a gold order (gold rewards not tied), as the annotators labelled them: the pairs both
    accuracies below are counted on (a tie has no right answer to get)."""
    return [pair for pair in pairs if pair["gold_chosen"] != pair["gold_rejected"]]


def reward_model_accuracy(reward_model: RewardModel, pairs: list[dict], annotators: preferences.AnnotatorConfig,
                          tokenizer, context: int) -> dict:
    """The reward model's accuracy on the held-out pairs that have a gold order (gold rewards not tied): against
    the annotators' labels, beside the ceiling their noise allows (`preferences.ceiling_accuracy`) and the
    labels' own agreement with the gold order; against the gold order itself (ceiling 1); and both again for
    each kind of pair ("by_kind", `preferences.accuracy_by_kind`: a right answer against a wrong one, two right
    answers, two wrong ones), which shows what the reward model has learnt to tell apart."""
    ordered = gold_ordered(pairs)
    if not ordered:
        return {"ordered_heldout_pairs": 0, "accuracy": None, "ceiling": None, "label_agreement": None,
                "gold_order_accuracy": None, "by_kind": []}  # fmt: skip
    rewards = reward_scores(reward_model, encode_pairs(tokenizer, ordered, context))
    by_kind = preferences.accuracy_by_kind(ordered, rewards[:, 0].tolist(), rewards[:, 1].tolist(), annotators)
    overall = by_kind[-1]  # the row of all the pairs
    return {"ordered_heldout_pairs": len(ordered), "accuracy": overall["accuracy"], "ceiling": overall["ceiling"],
            "label_agreement": preferences.label_agreement(ordered),
            "gold_order_accuracy": overall["gold_order_accuracy"], "by_kind": by_kind}  # fmt: skip


def likelihood_accuracy(model: GPT, pairs: list[dict], annotators: preferences.AnnotatorConfig, tokenizer, context: int,
                        precision: str = "fp32") -> dict:
    """The scorer a reward model must beat, untrained: each answer's summed log-probability under `model`
    (the SFT model), log pi(y | x), on the held-out pairs that have a gold order.

    The SFT model has read the passages and learnt the clean answers, and a longer answer has more tokens to
    pay for, so its likelihood already prefers right, short answers. It knows nothing of what the annotators
    want beyond what the demonstrations showed. Returns its "accuracy" against the labels, its
    "gold_order_accuracy" and both "by_kind", counted as `reward_model_accuracy` counts them (a tie is a miss)."""
    ordered = gold_ordered(pairs)
    if not ordered:
        return {"accuracy": None, "gold_order_accuracy": None, "by_kind": []}
    logps = all_answer_logprobs(model, encode_pairs(tokenizer, ordered, context), precision).cpu()
    by_kind = preferences.accuracy_by_kind(ordered, logps[:, 0].tolist(), logps[:, 1].tolist(), annotators)
    return {"accuracy": by_kind[-1]["accuracy"], "gold_order_accuracy": by_kind[-1]["gold_order_accuracy"],
            "by_kind": by_kind}  # fmt: skip


def _hacking_point(iteration: int, policy: GPT, reference: GPT, reward_model: RewardModel, prompts: Prompts, tokenizer,
                   config: RLHFConfig, precision: str) -> dict:
    """One point of the reward-hacking curve: the policy's gold reward, reward-model score and KL, and a sample."""
    m = measure(policy, reference, reward_model, prompts, tokenizer, config, precision, samples=1)
    return {"iteration": iteration, "gold": m["gold_mean"], "rm_score": m["rm_score"], "kl": m["kl"],
            "best_share": m["best_share"], "sample": m["texts"][0][0]}  # fmt: skip


def _save_reward_model(model: RewardModel, folder: Path) -> None:
    """The reward model's GPT as a checkpoint `load_model` reads, and its head beside it, both safetensors."""
    from safetensors.torch import save_file

    newest = ckpt.save_checkpoint(folder, 0, model.base, {}, {"method": "reward_model"})
    save_file({"weight": model.head.weight.detach().cpu().contiguous(), "pad_id": torch.tensor(model.pad_id)},
              str(newest / "head.safetensors"))  # fmt: skip
