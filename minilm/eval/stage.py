"""Stage 8, evaluation: every model the course trained, by every benchmark, with standard errors.

The models: the pretrained base (stage 4), the SFT and LoRA chat models (stage 6), and the
policies of each preference method (stage 7). The benchmarks (`minilm.eval.tasks`), all on stories
and documents that no model trained on:

- cloze: which object fits where a story names it for the second time (acc, acc_norm);
- story questions as multiple choice (acc, acc_norm), and answered in the model's own words (exact
  match): a base model is asked in plain text ("Question: ... Answer:"), a chat model in the chat
  format, as stage 6 asks it;
- bits per byte on each domain of the data stage's validation documents;
- bits per byte per language: held-out test stories in English and the same stories in Spanish
  (`tasks.language_docs`), so that the card shows what the Spanish share of pretraining bought;
- stage 6's instructions: its test conversations of every task family, rebuilt from its seeded
  config (the same ones stage 6 scored), answered in the chat format (the base model few-shot, as
  stage 6 asks it) and scored by exact match;

with GPT-3's contamination scan of every benchmark against the pretraining corpus. And the bias
planted in stage 1, probed (`minilm.eval.bias`) in two models of stage 4's shape trained on stage
1's stories with its debias step off and on, and in the course's base model. And robustness
(`minilm.eval.robustness`): CheckList's tests on the answered story questions, for every model.
And a round of pairwise ratings of the models' replies to stage 6's instructions (`minilm.eval.human`),
rated by simulated raters who read stage 7's gold reward through noise, as people would rate them,
turned into Bradley-Terry ratings with bootstrap intervals, Elo, agreement and position bias.

The multiple-choice and perplexity benchmarks score every model the same way, through log-
likelihoods, so a chat model is compared with its base on the same footing; `minilm.eval.harness`
computes them as lm-evaluation-harness does (tests/test_eval_harness.py runs lm-eval beside it).
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from minilm import hardware
from minilm.cache import Artifact, cached_stage, code_fingerprint, run_dir
from minilm.eval import bias, robustness, tasks
from minilm.files import atomic_write, atomic_write_json
from minilm.finetune.tasks import conversation_text
from minilm.model.gpt import GPT
from minilm.presets import config_for, preset_name
from minilm.tokenizer.stage import load_tokenizer
from minilm.tokenizer.tokenizer import Tokenizer

CODE = [*sorted(path for path in Path(__file__).parent.glob("*.py") if path.name not in ("report.py", "lm_eval_model.py")),
        *(Path(__file__).parent.parent / "finetune" / name for name in ("answers.py", "chat.py", "tasks.py")),
        Path(__file__).parent.parent / "model", Path(__file__).parent.parent / "world.py",
        Path(__file__).parent.parent / "rlhf" / "gold.py",  # the simulated raters' judgement
        # the bias models: stage 1's stories and debias step, stage 4's loop
        Path(__file__).parent.parent / "data" / "stage.py", Path(__file__).parent.parent / "data" / "filters",
        Path(__file__).parent.parent / "data" / "sources" / "stories", Path(__file__).parent.parent / "train" / "loop.py"]
RESULTS = "results.json"
VOTES = "votes.jsonl"  # the simulated rating round's votes, one JSON object per line (`minilm.eval.human`)
BASE = "base"
INSTRUCTIONS = "instructions"  # stage 6's test conversations


@dataclass
class EvalConfig:
    """What stage 8 measures, and on how much."""

    cloze_stories: int = 1500  # test stories read for the cloze task (about a third name their object twice)
    question_stories: int = 150  # test stories whose questions are asked (up to four each)
    domain_chars: int = 100_000  # validation characters per domain for bits per byte
    language_stories: int = 40  # test stories scored in English and in Spanish (about 3 s a model on cpu)
    max_new_tokens: int = 16
    batch_size: int = 32
    bootstrap_iterations: int = 1000
    # the bias probes (`minilm.eval.bias`): two models of stage 4's shape on stage 1's stories, debias off and on
    bias_stories: int = 6000
    bias_steps: int = 600  # the debiased model at 300 steps: 51.5%, 53.5%, 62.4% in three runs (chance links); at 600: 47.9%
    bias_pairs: int = 1000  # minimal pairs per probe, and BBQ questions
    templated_questions: int = 200  # robustness: CheckList's minimum-functionality questions
    # human evaluation, simulated: every pair of models on each rated prompt, in both orders, by each rater
    rated_prompts: int = 100
    rater_noise: float = 0.3  # the Gumbel noise through which a rater reads the gold reward (a clean answer: 1.5)
    left_bias: float = 1.0  # rater 2 leans to the left answer by a right answer's worth; it flips only close calls
    seed: int = 1337
    device: str | None = None

    def __post_init__(self):
        for name in ("cloze_stories", "question_stories", "domain_chars", "language_stories", "max_new_tokens",
                     "batch_size", "bootstrap_iterations", "bias_stories", "bias_steps", "bias_pairs",
                     "templated_questions", "rated_prompts"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"EvalConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not (self.rater_noise >= 0 and self.left_bias >= 0):
            raise ValueError(f"EvalConfig.rater_noise and left_bias must be 0 or more, got {self.rater_noise!r} and "
                             f"{self.left_bias!r}")

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides) -> "EvalConfig":
        return config_for(cls, "evaluate", preset, **overrides)


def models(pretrained: Artifact, finetuned: Artifact, aligned: Artifact, device: str) -> dict[str, GPT]:
    """Every model to evaluate, by name, in the order of the pipeline (LoRA's adapter merged)."""
    from minilm.finetune.lora import merge_lora
    from minilm.finetune.stage import load_finetuned, load_lora
    from minilm.rlhf.stage import load_policy
    from minilm.train.stage import load_pretrained

    found = {BASE: load_pretrained(pretrained, device), "SFT": load_finetuned(finetuned, device),
             "LoRA": merge_lora(load_lora(finetuned, pretrained, device))}
    for name in ("DPO", "PPO", "GRPO"):
        found[name] = load_policy(aligned, name, device)
    return {name: model.eval() for name, model in found.items()}


def fits_context(tokenizer: Tokenizer, context: int, max_new_tokens: int) -> tasks.Fits:
    """Whether a prompt leaves room for `max_new_tokens` in the models' context."""
    return lambda prompt: len(tokenizer.encode_ordinary(prompt)) < context - max_new_tokens


def benchmarks(config: EvalConfig, tokenizer: Tokenizer, context: int, validation: Path) -> dict[str, list[dict]]:
    """The documents of every benchmark, those whose prompt fits `context` tokens."""

    fits = fits_context(tokenizer, context, config.max_new_tokens)
    found = {"cloze": tasks.cloze_docs(config.cloze_stories, config.seed, fits=fits),
             "questions": tasks.question_docs(config.question_stories, config.seed, fits=fits),
             "answers": tasks.answer_docs(config.question_stories, fits=fits)}
    for domain, docs in tasks.domain_docs(validation, config.domain_chars).items():
        found[f"bpb:{domain}"] = docs
    return found


def instruction_tests(finetuned: Artifact, data: Artifact, tokenizer: Tokenizer, context: int) -> dict:
    """Stage 6's test examples, rebuilt from the config in its manifest (`instruction_data` is seeded, so they are
    the ones stage 6 scored), with its validation examples as the base model's solved shots."""
    from dataclasses import fields

    from minilm.finetune.stage import FinetuneConfig, instruction_data

    config = FinetuneConfig(**{f.name: finetuned.manifest["config"][f.name] for f in fields(FinetuneConfig)})
    built = instruction_data(config, tokenizer, context, data.manifest["config"]["n_stories"])
    return {"test": built["test"], "shots": built["val"], "k": config.shots}


def instructions(model: GPT, tokenizer: Tokenizer, tests: dict, batch_size: int, chat: bool) -> tuple[dict, list[str]]:
    """Exact match on stage 6's test examples, over all and per task family, each with its standard error, and the
    replies: a chat model answers in the chat format, the base model after `tests["k"]` solved shots."""
    from minilm.finetune.answers import chat_answers, few_shot_answers

    test = tests["test"]
    if chat:
        replies = chat_answers(model, tokenizer, [e.prompt for e in test], batch_size=batch_size)
    else:
        replies = few_shot_answers(model, tokenizer, test, tests["shots"], k=tests["k"], batch_size=batch_size)
    hits = [tasks.metrics.exact_match_score(reply, e.answers) for reply, e in zip(replies, test)]

    def score(values: list[float]) -> dict:
        return {"exact_match": tasks.metrics.mean(values), "stderr": tasks.metrics.mean_stderr(values), "n": len(values)}

    families = {f: score([h for h, e in zip(hits, test) if e.family == f]) for f in dict.fromkeys(e.family for e in test)}
    return {**score(hits), "by_family": families}, replies


def contaminated_shares(docs: dict[str, list[dict]], train: Path) -> dict[str, float]:
    """For each benchmark, the share of its documents that share an uncommon 13-gram with the pretraining
    corpus (`tasks.contamination`), in one pass over the corpus."""
    prompts = [tasks.prompt_text(doc) for task_docs in docs.values() for doc in task_docs]
    with open(train, encoding="utf-8") as lines:
        counts = iter(tasks.contamination(prompts, (json.loads(line)["text"] for line in lines)))
    return {name: sum(next(counts) > 0 for _ in task_docs) / len(task_docs) for name, task_docs in docs.items()}


def by_gender(scores: list[float], docs: list[dict]) -> dict:
    """The score on questions about heroines and about heroes, and the gap between them (`metrics.group_gap`)."""
    return tasks.metrics.group_gap(scores, [d["group"] for d in docs], "female", "male")


def evaluate(model: GPT, tokenizer: Tokenizer, docs: dict[str, list[dict]], config: EvalConfig, chat: bool) -> dict:
    """One model's scores on every benchmark, each with its standard error and the number of documents."""
    scores = {}
    for name, task_docs in docs.items():
        if name.startswith("bpb:"):
            r = tasks.run_perplexity(model, tokenizer, task_docs, config.batch_size, config.bootstrap_iterations)
            scores[name] = {"bits_per_byte": r["bits_per_byte"], "stderr": r["bits_per_byte_stderr"], "n": r["n"]}
        elif name == "answers":
            r = tasks.run_generation(model, tokenizer, task_docs, config.max_new_tokens, config.batch_size, chat)
            scores[name] = {"exact_match": r["exact_match"], "stderr": r["exact_match_stderr"], "n": r["n"],
                            "examples": r["answers"][:5], "by_gender": by_gender(r["scores"], task_docs)}
        else:
            r = tasks.run_multiple_choice(model, tokenizer, task_docs, config.batch_size)
            scores[name] = {"acc": r["acc"], "acc_stderr": r["acc_stderr"], "acc_norm": r["acc_norm"],
                            "acc_norm_stderr": r["acc_norm_stderr"], "n": r["n"]}
            if "group" in task_docs[0]:
                scores[name]["by_gender"] = by_gender(r["scores"], task_docs)
    return scores


RATERS = ("rater 1", "rater 2")  # two simulated people; rater 2 leans to the left answer
JUDGE = "gold judge"  # the gold reward itself, without noise: an automatic judge with the raters' rules


def rated_examples(test: list, n: int) -> list[int]:
    """The indices of `n` examples of `test` for the rating round: the families that the gold reward judges in
    turn (`gold.JUDGED_FAMILIES`), each family's examples in their order, so that the round asks as many of each
    (while a family lasts) however many stage 6 drew of each."""
    from minilm.rlhf.gold import JUDGED_FAMILIES

    queues = [[i for i, e in enumerate(test) if e.family == family] for family in JUDGED_FAMILIES]
    turns = (queue[k] for k in range(max(map(len, queues), default=0)) for queue in queues if k < len(queue))
    return list(itertools.islice(turns, n))


def rating_round(tests: dict, replies: dict[str, list[str]], config: EvalConfig) -> tuple[dict, list[dict]]:
    """A simulated round of pairwise ratings and what its votes say: every pair of models on
    `config.rated_prompts` of stage 6's test examples (`rated_examples`: as many of each family that the gold
    reward judges), shown in both orders, voted on by the two raters (`RATERS`) and by the gold judge;
    Bradley-Terry ratings of the raters' votes with bootstrap intervals, online Elo (and how far the order of
    the votes moves it), the raters' agreement with each other and with the judge (Cohen's kappa), each rater's
    position bias, and each model's mean gold reward. Returns the summary and the votes."""
    from minilm.eval import human
    from minilm.rlhf.gold import gold_reward

    chosen = rated_examples(tests["test"], config.rated_prompts)
    examples = [tests["test"][i] for i in chosen]
    names = list(replies)
    plan = human.plan_round(range(len(examples)), names, seed=config.seed, both_orders=True)

    def respond(prompt: int, model: str) -> str:
        return replies[model][chosen[prompt]]

    def score(prompt: int, response: str) -> float:
        return gold_reward(examples[prompt], response)

    raters = {RATERS[0]: human.simulated_rater(score, config.rater_noise, 0.05, 0.5, 0.0, config.seed + 1),
              RATERS[1]: human.simulated_rater(score, config.rater_noise, 0.05, 0.5, config.left_bias, config.seed + 2),
              JUDGE: human.simulated_rater(score, 0.0, 0.05, 0.5, 0.0, config.seed)}  # the raters' rules, no noise
    votes = {name: human.simulate_round(plan, respond, rate, name) for name, rate in raters.items()}
    rated = votes[RATERS[0]] + votes[RATERS[1]]
    summary = {"prompts": len(examples), "models": names, "votes": {name: len(v) for name, v in votes.items()},
               "ratings": human.bradley_terry(rated, names),
               "intervals": human.bootstrap_ratings(rated, config.bootstrap_iterations, config.seed, names),
               "elo": human.elo(rated), "elo_order_spread": human.elo_order_spread(rated, 100, config.seed),
               "agreement": {"rater 1 and rater 2": human.agreement(votes[RATERS[0]], votes[RATERS[1]]),
                             "rater 1 and the gold judge": human.agreement(votes[RATERS[0]], votes[JUDGE])},
               "position_bias": {name: human.position_bias(votes[name]) for name in RATERS},
               "gold": {name: tasks.metrics.mean([score(i, respond(i, name)) for i in range(len(examples))])
                        for name in names}}
    return summary, [vote for name in votes for vote in votes[name]]


DEBIAS_MODES = ("none", "substitute")  # stage 1's debias step off, and its default


def bias_probes(config: EvalConfig, preset: str, tokenizer: Artifact, base: GPT, loaded_tokenizer: Tokenizer,
                force: bool, progress: bool) -> dict:
    """The bias probes on the two models trained on stage 1's stories with the debias step off and on, and
    on the course's base model (trained on all of stage 1's corpus, debiased)."""
    from minilm.tokenizer.stage import TOKENIZER_DIR
    from minilm.train.loop import TrainConfig
    from minilm.train.stage import prepare_work_folder

    preset_config = TrainConfig.from_preset(preset)
    train_config = TrainConfig.from_preset(
        preset, max_steps=config.bias_steps, warmup_steps=min(preset_config.warmup_steps, config.bias_steps // 5),
        eval_every=config.bias_steps, sample_every=config.bias_steps, checkpoint_every=config.bias_steps)
    found = {}
    for mode in DEBIAS_MODES:
        work = run_dir("evaluate", preset).parent / ".evaluate-work" / f"bias-{mode}"
        prepare_work_folder(work, {"config": asdict(train_config), "tokenizer": tokenizer.key, "debias": mode,
                                   "stories": config.bias_stories, "code": code_fingerprint(CODE)}, fresh=force)
        model = bias.train_bias_model(bias.bias_corpus(config.bias_stories, mode), tokenizer.path / TOKENIZER_DIR,
                                      work, train_config, progress)
        found[f"stories, debias {mode}"] = bias.probe(model, loaded_tokenizer, config.bias_pairs,
                                                      config.bootstrap_iterations, config.seed)
        shutil.rmtree(work)  # kept only while unfinished, so that an interrupted run resumes
    found["the course's base model"] = bias.probe(base, loaded_tokenizer, config.bias_pairs,
                                                  config.bootstrap_iterations, config.seed)
    return found


def run_eval_stage(preset: str | None = None, force: bool = False, config: EvalConfig | None = None,
                   data: Artifact | None = None, tokenizer: Artifact | None = None, pretrained: Artifact | None = None,
                   finetuned: Artifact | None = None, aligned: Artifact | None = None, progress: bool = True) -> Artifact:
    """Stage 8, cached: results.json with every model's scores on every benchmark. The artifacts of stages 1,
    2, 4, 6 and 7 default to the cached ones (built first if missing)."""
    from minilm.data.stage import run_data_stage
    from minilm.eval.report import produced
    from minilm.finetune.stage import run_finetune_stage
    from minilm.rlhf.stage import run_rlhf_stage
    from minilm.tokenizer.stage import run_tokenizer_stage
    from minilm.train.stage import run_pretrain_stage

    preset = preset_name(preset)
    config = config or EvalConfig.from_preset(preset)
    data = data or run_data_stage(preset)
    tokenizer = tokenizer or run_tokenizer_stage(preset, data=data)
    pretrained = pretrained or run_pretrain_stage(preset, tokenizer=tokenizer, progress=progress)
    finetuned = finetuned or run_finetune_stage(preset, pretrained=pretrained, tokenizer=tokenizer, progress=progress)
    aligned = aligned or run_rlhf_stage(preset, finetuned=finetuned, tokenizer=tokenizer, progress=progress)

    def build(folder: Path) -> dict:
        device = hardware.pick_device(config.device)
        loaded_tokenizer = load_tokenizer(tokenizer)
        evaluated = models(pretrained, finetuned, aligned, device)
        context = evaluated[BASE].config.context
        docs = benchmarks(config, loaded_tokenizer, context, data.path / "val.jsonl")
        tests = instruction_tests(finetuned, data, loaded_tokenizer, context)
        scanned = {**docs, INSTRUCTIONS: [{"prompt": conversation_text(e.prompt)} for e in tests["test"]]}
        started = time.perf_counter()
        results = {"models": {}, "seconds": {}, "documents": {name: len(d) for name, d in scanned.items()},
                   "order": list(evaluated), "benchmarks": list(scanned),  # the file's keys are sorted
                   "contamination": contaminated_shares(scanned, data.path / "train.jsonl"), "robustness": {},
                   "languages": {}}
        results["seconds"]["contamination scan"] = time.perf_counter() - started
        languages = tasks.language_docs(config.language_stories)
        questions = robustness.story_questions(config.question_stories, fits=fits_context(loaded_tokenizer, context,
                                                                                          config.max_new_tokens))
        replies = {}
        for name, model in tqdm(evaluated.items(), desc="evaluate", unit="model", disable=not progress):
            started = time.perf_counter()
            chat = name != BASE
            results["models"][name] = evaluate(model, loaded_tokenizer, docs, config, chat)
            results["models"][name][INSTRUCTIONS], replies[name] = instructions(model, loaded_tokenizer, tests,
                                                                                config.batch_size, chat)
            results["languages"][name] = tasks.run_languages(model, loaded_tokenizer, languages, config.batch_size,
                                                             config.bootstrap_iterations)
            results["robustness"][name] = robustness.run_checklist(
                model, loaded_tokenizer, questions, config.templated_questions, chat, config.seed,
                fits_context(loaded_tokenizer, context, config.max_new_tokens), config.max_new_tokens, config.batch_size)
            results["seconds"][name] = time.perf_counter() - started
        started = time.perf_counter()
        results["human"], votes = rating_round(tests, replies, config)
        atomic_write(folder / VOTES, "".join(json.dumps(vote) + "\n" for vote in votes))
        results["seconds"]["rating round"] = time.perf_counter() - started
        started = time.perf_counter()
        results["bias"] = bias_probes(config, preset, tokenizer, evaluated[BASE], loaded_tokenizer, force, progress)
        results["seconds"]["bias"] = time.perf_counter() - started
        atomic_write_json(folder / RESULTS, results)
        return {"models": list(evaluated), "documents": results["documents"]}

    return cached_stage("evaluate", asdict(config), build, preset=preset,
                        inputs={"data": data.key, "tokenizer": tokenizer.key, "pretrained": pretrained.key,
                                "finetuned": finetuned.key, "aligned": aligned.key},
                        code=CODE, force=force, produced=produced)  # fmt: skip
