"""Stage 9 end to end: the chat model made fast, shrunk, and carried out of the course, each step measured.

    python -m minilm inference

`run_inference_stage` is what the command line, the speedrun and notebook 09 call. It takes the chat
model that stage 8's raters rated best (stage 7's DPO, PPO or GRPO policy, or stage 6's SFT model) and:
1. times *generation*: the same greedy tokens without and with the KV cache, and through the engine
   (`minilm.infer.engine`) at batch 1 and at batch 8, with the time to the first token. Every speed run
   generates `speed_tokens` past any end token, so that each one does the same work;
2. makes a *draft* model from the chat model's first `draft_layers` blocks (with its embedding, final norm and
   head: an early exit, as LayerSkip drafts are made) and trains it briefly on the chat model's own greedy
   answers to stage 6's training prompts (sequence-level distillation: the draft learns to say what the chat
   model says), then measures *speculative decoding* with it on stage 6's test prompts: the tokens equal the
   chat model's alone, the share of drafted tokens accepted, the chat model's forward passes per token, and
   the wall-clock speed-up, for each lookahead;
3. *quantizes* the weights to int8 (and rounds them to bfloat16, for comparison): the bytes, the tokens
   per second, the bits per byte on each domain's validation text, and the answers to the test prompts
   against float32's;
4. *exports* the model as a Hugging Face folder and loads it back with `transformers`: the tokenizer's ids
   on the validation text, the chat template's ids and the greedy answers must equal minilm's.

The draft model and the export are kept in the stage's folder (``data/runs/<preset>/inference/``) beside
results.json: `python -m minilm serve` and `chat` serve the same chat model, and vLLM or llama.cpp read the
export.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from minilm import hardware
from minilm.cache import Artifact, cached_stage, run_dir
from minilm.eval import metrics, tasks
from minilm.eval.harness import loglikelihood_rolling
from minilm.files import atomic_write_json
from minilm.finetune.chat import END, PAD, encode_chat
from minilm.finetune.tasks import Example, build_examples
from minilm.infer.engine import Engine
from minilm.infer.sampling import SamplingParams
from minilm.model.accounting import count_parameters
from minilm.model.generate import generate
from minilm.model.gpt import GPT, IGNORE_INDEX
from minilm.presets import config_for, preset_name
from minilm.tokenizer.tokenizer import Tokenizer

SERVING = ("report.py", "server.py", "terminal.py", "models.py")  # what serves the model, and no measurement reads
CODE = [*sorted(path for path in Path(__file__).parent.glob("*.py") if path.name not in SERVING),
        Path(__file__).parent.parent / "model", Path(__file__).parent.parent / "finetune" / "chat.py",
        Path(__file__).parent.parent / "finetune" / "tasks.py", Path(__file__).parent.parent / "train" / "loop.py"]
RESULTS = "results.json"
DRAFT_DIR = "draft"  # the draft model's checkpoint
EXPORT_DIR = "hf"  # the chat model as a Hugging Face folder
CHAT_MODELS = ("DPO", "PPO", "GRPO", "SFT")  # the candidates, in the order a tie is broken


@dataclass
class InferenceConfig:
    """What stage 9 measures, and on how much."""

    speed_prompts: int = 8  # stage 6's test prompts that every speed is measured on (the batch of 8 takes them all)
    speed_tokens: int = 48  # new tokens per prompt in the speed runs, end tokens ignored
    repeats: int = 3  # each timing is the median of this many runs
    # the draft model: the chat model's first blocks, trained on the chat model's answers. A separate small model
    # trained from scratch would need thousands of steps (5 minutes for 1,500 here: the head over 4,096 tokens
    # dominates) to be worth drafting with; the chat model's own first block starts close to it
    draft_layers: int = 1
    draft_prompts_per_family: int = 100  # stage 6's training prompts per family, answered by the chat model
    draft_steps: int = 300
    draft_batch_size: int = 16
    draft_lr: float = 3e-4  # measured on 40 test prompts, lookahead 1 and 4: untrained 80% and 60% accepted; 300 steps
    # on every token at 1e-3, 85% and 60%; on the answers only at 1e-3, 88% and 73%; at 3e-4, 92% and 76%
    lookaheads: tuple[int, ...] = (1, 2, 3, 4, 6)
    speculative_prompts: int = 60  # stage 6's test prompts answered speculatively, for each lookahead
    max_new_tokens: int = 32  # the longest answer to a test prompt (they are a few words)
    # quantization
    quality_chars: int = 50_000  # validation characters per domain for bits per byte, at each precision
    answer_prompts_per_family: int = 40  # test prompts per family answered by the float, bfloat16 and int8 models
    # the export
    export_prompts: int = 20  # test prompts whose greedy answers transformers must reproduce
    seed: int = 1337
    device: str | None = None

    def __post_init__(self):
        for name in ("speed_prompts", "speed_tokens", "repeats", "draft_layers", "draft_prompts_per_family",
                     "draft_steps", "draft_batch_size", "speculative_prompts", "max_new_tokens", "quality_chars",
                     "answer_prompts_per_family", "export_prompts"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"InferenceConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lookaheads or any(not isinstance(k, int) or k < 1 for k in self.lookaheads):
            raise ValueError(f"InferenceConfig.lookaheads must be positive integers, got {self.lookaheads!r}")
        self.lookaheads = tuple(self.lookaheads)

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides) -> "InferenceConfig":
        return config_for(cls, "inference", preset, **overrides)


# ---------------------------------------------------------------------------------------------
# 1. The model


def best_chat_model(ratings: dict[str, float]) -> str:
    """The chat model that the raters of stage 8 rated highest (Bradley-Terry), among `CHAT_MODELS`.

    A tie goes to the model named first in `CHAT_MODELS`."""
    rated = [name for name in CHAT_MODELS if name in ratings]
    if not rated:
        raise ValueError(f"none of the chat models {CHAT_MODELS} has a rating in {sorted(ratings)}")
    return max(rated, key=lambda name: (ratings[name], -CHAT_MODELS.index(name)))


def load_chat_model(name: str, finetuned: Artifact, aligned: Artifact, device: str = "cpu") -> GPT:
    """Stage 7's policy `name` ("DPO", "PPO", "GRPO"), or stage 6's SFT model, in eval mode."""
    from minilm.finetune.stage import load_finetuned
    from minilm.rlhf.stage import load_policy

    model = load_finetuned(finetuned, device) if name == "SFT" else load_policy(aligned, name, device)
    return model.eval()


def prompt_ids(tokenizer: Tokenizer, examples: Sequence[Example]) -> list[list[int]]:
    """Each example's conversation without its answer, in the chat format, ending with the assistant's role token."""
    return [encode_chat(tokenizer, e.prompt, add_generation_prompt=True)[0] for e in examples]


def greedy_answers(model: GPT, tokenizer: Tokenizer, prompts: list[list[int]], max_new_tokens: int):
    """The engine's greedy completions of `prompts`, each at most `max_new_tokens` long and within the context."""
    room = [SamplingParams(max_tokens=min(max_new_tokens, model.config.context - len(p)), temperature=0)
            for p in prompts]
    return Engine(model, tokenizer, max_batch_size=32).run(prompts, room)


# ---------------------------------------------------------------------------------------------
# 2. Speed


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """The median wall-clock time of `repeats` calls of `run` (after one untimed call that warms the caches)."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def speeds(model: GPT, tokenizer: Tokenizer, prompts: list[list[int]], config: InferenceConfig, pad: int) -> dict:
    """Tokens per second of greedy generation: `generate` without and with the KV cache at batch 1, and the
    engine at batch 1 and at batch `len(prompts)`; the engine's time to the first token at batch 1."""
    n = config.speed_tokens
    one = prompts[0]
    greedy = SamplingParams(max_tokens=n, temperature=0)
    single_engine = Engine(model, tokenizer, max_batch_size=1, end_tokens=())
    batch_engine = Engine(model, tokenizer, max_batch_size=len(prompts), end_tokens=())

    def first_token() -> None:
        engine = Engine(model, tokenizer, max_batch_size=1, end_tokens=())
        engine.add(one, SamplingParams(max_tokens=1, temperature=0))
        engine.step()

    timings = [
        ("no cache, batch 1", n, lambda: generate(model, [one], n, temperature=0, use_cache=False, pad_token=pad)),
        ("KV cache, batch 1", n, lambda: generate(model, [one], n, temperature=0, pad_token=pad)),
        ("engine, batch 1", n, lambda: single_engine.run([one], greedy)),
        (f"engine, batch {len(prompts)}", n * len(prompts), lambda: batch_engine.run(prompts, greedy)),
    ]
    rows = []
    for name, tokens, run in timings:
        seconds = median_seconds(run, config.repeats)
        rows.append({"generation": name, "tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds})
    same = (generate(model, [one], n, temperature=0, use_cache=False, pad_token=pad)
            == generate(model, [one], n, temperature=0, pad_token=pad)
            == [single_engine.run([one], greedy)[0].token_ids])
    return {"rows": rows, "time_to_first_token_ms": 1000 * median_seconds(first_token, config.repeats),
            "prompt_tokens": len(one), "new_tokens": n, "same_tokens": same}


# ---------------------------------------------------------------------------------------------
# 3. The draft model and speculative decoding


class DistillationRows:
    """Conversations answered by the chat model, as rows for `train_on_rows`: the draft learns the answers' tokens
    (what it will be asked to guess), the prompts only read; padding ignored."""

    def __init__(self, conversations: list[list[int]], answer_starts: list[int], context: int, pad: int):
        self.inputs = torch.full((len(conversations), context), pad, dtype=torch.long)
        self.targets = torch.full((len(conversations), context), IGNORE_INDEX, dtype=torch.long)
        for row, (ids, start) in enumerate(zip(conversations, answer_starts)):
            ids = ids[: context + 1]
            self.inputs[row, : len(ids) - 1] = torch.tensor(ids[:-1])
            targets = torch.tensor(ids[1:])
            targets[: max(start - 1, 0)] = IGNORE_INDEX  # position i predicts token i + 1: the answer from start - 1
            self.targets[row, : len(ids) - 1] = targets

    def __len__(self) -> int:
        return len(self.inputs)

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]


def early_exit(model: GPT, layers: int) -> GPT:
    """A copy of `model` that keeps only its first `layers` blocks: the same embedding, final norm and head, so its
    guesses start close to the model's own."""
    if not 1 <= layers < model.config.n_layer:
        raise ValueError(f"draft_layers={layers}: a draft keeps 1 to {model.config.n_layer - 1} of the model's "
                         f"{model.config.n_layer} blocks")
    draft = copy.deepcopy(model)
    draft.transformer.h = draft.transformer.h[:layers]
    draft.config = model.config.replace(n_layer=layers)
    return draft


def train_draft(model: GPT, tokenizer: Tokenizer, examples: Sequence[Example],
                config: InferenceConfig) -> tuple[GPT, dict]:
    """The chat model's early exit, trained on its greedy answers to `examples`; returns it and how training went."""
    from minilm.train.loop import train_on_rows

    end, pad = tokenizer.special_id(END), tokenizer.special_id(PAD)
    prompts = prompt_ids(tokenizer, examples)
    started = time.perf_counter()
    answers = greedy_answers(model, tokenizer, prompts, config.max_new_tokens)
    conversations = [p + a.token_ids + [end] for p, a in zip(prompts, answers)]
    answered = time.perf_counter() - started
    draft = early_exit(model, config.draft_layers)
    rows = DistillationRows(conversations, [len(p) for p in prompts], model.config.context, pad)
    started = time.perf_counter()
    losses = train_on_rows(draft, rows, config.draft_steps, config.draft_batch_size, config.draft_lr,
                           weight_decay=0.1, seed=config.seed)
    return draft.eval(), {"conversations": len(conversations), "answer_seconds": answered,
                          "train_seconds": time.perf_counter() - started, "first_loss": losses[0],
                          "last_loss": statistics.mean(losses[-50:]), "parameters": count_parameters(draft),
                          "target_parameters": count_parameters(model), "layers": config.draft_layers}


def speculative(target: GPT, draft: GPT, prompts: list[list[int]], config: InferenceConfig, end: int,
                pad: int) -> dict:
    """Greedy speculative decoding of `prompts` at each lookahead: the tokens must equal the target's own; the
    acceptance rate, the target's forward passes per generated token, and the speed-up in wall-clock time."""
    from minilm.infer.speculative import speculative_generate

    budgets = [min(config.max_new_tokens, target.config.context - len(p) - max(config.lookaheads)) for p in prompts]
    kept = [(p, n) for p, n in zip(prompts, budgets) if n >= 1]

    def plain() -> list[list[int]]:
        return [generate(target, [p], n, temperature=0, stop_token=end, pad_token=pad)[0] for p, n in kept]

    reference = plain()
    plain_seconds = median_seconds(plain, config.repeats)
    tokens = sum(len(r) + (len(r) < n) for r, (_, n) in zip(reference, kept))  # an end token is generated too
    found = {"prompts": len(kept), "tokens": tokens, "plain_seconds": plain_seconds, "by_lookahead": []}
    for k in config.lookaheads:
        results = []

        def run() -> None:
            results.clear()
            results.extend(speculative_generate(target, draft, p, n, lookahead=k, temperature=0, end_tokens=(end,))
                           for p, n in kept)

        seconds = median_seconds(run, config.repeats)
        same = all([t for t in r.tokens if t != end] == ref for r, ref in zip(results, reference))
        proposed, accepted = sum(r.proposed for r in results), sum(r.accepted for r in results)
        target_calls = sum(r.target_calls for r in results)
        found["by_lookahead"].append({
            "lookahead": k, "same_tokens": same, "acceptance_rate": accepted / max(proposed, 1),
            "target_calls_per_token": target_calls / tokens, "seconds": seconds, "speedup": plain_seconds / seconds})
    return found


# ---------------------------------------------------------------------------------------------
# 4. Quantization


def bits_per_byte(model: GPT, tokenizer: Tokenizer, docs: dict[str, list[dict]]) -> dict[str, float]:
    """Bits per byte on each domain's validation documents (lm-evaluation-harness's rolling log-likelihood)."""
    found = {}
    for domain, domain_docs in docs.items():
        texts = [doc["text"] for doc in domain_docs]
        found[domain] = metrics.bits_per_byte(loglikelihood_rolling(model, tokenizer, texts), texts)
    return found


def answers(model: GPT, tokenizer: Tokenizer, prompts: list[list[int]], max_new_tokens: int) -> list[str]:
    return [c.text.strip() for c in greedy_answers(model, tokenizer, prompts, max_new_tokens)]


def quantization(model: GPT, tokenizer: Tokenizer, docs: dict[str, list[dict]], examples: Sequence[Example],
                 config: InferenceConfig, speed_prompt: list[int], pad: int) -> dict:
    """The model in float32, in bfloat16, and with int8 weights (multiplying float32 or bfloat16 activations): the
    bytes of its weights, greedy tokens per second at batch 1, bits per byte on each domain, and its answers to
    `examples` (exact match, and the share equal to float32's answers)."""
    from minilm.infer.quantize import quantize_model, weight_bytes

    variants = {"float32": model, "bfloat16": copy.deepcopy(model).to(torch.bfloat16),
                "int8 weights, float32 activations": quantize_model(model),
                "int8 weights, bfloat16 activations": quantize_model(model, torch.bfloat16)}
    prompts = prompt_ids(tokenizer, examples)
    rows, reference = [], None
    for name, variant in variants.items():
        n = config.speed_tokens
        seconds = median_seconds(lambda: generate(variant, [speed_prompt], n, temperature=0, pad_token=pad),
                                 config.repeats)
        replies = answers(variant, tokenizer, prompts, config.max_new_tokens)
        reference = reference or replies
        hits = [metrics.exact_match_score(reply, e.answers) for reply, e in zip(replies, examples)]
        rows.append({"weights": name, "bytes": weight_bytes(variant), "tokens_per_second": n / seconds,
                     "bits_per_byte": bits_per_byte(variant, tokenizer, docs), "exact_match": metrics.mean(hits),
                     "exact_match_stderr": metrics.mean_stderr(hits),
                     "same_answers_as_float32": statistics.mean(a == b for a, b in zip(replies, reference))})
    return {"rows": rows, "answers": len(examples),
            "bf16_native": hardware.bf16_native(model.transformer.wte.weight.device)}


# ---------------------------------------------------------------------------------------------
# 5. The export


def export_checks(model: GPT, tokenizer: Tokenizer, folder: Path, docs: dict[str, list[dict]],
                  examples: Sequence[Example], max_new_tokens: int, end: int) -> dict:
    """Export `model` to `folder` and load it back with transformers: do its tokenizer, chat template and greedy
    answers equal minilm's? Counts of what was compared and of what differed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from minilm.infer.export import export_hf

    hf_logging.disable_progress_bar()  # loading a model this small needs no bar
    hf_logging.set_verbosity_error()  # nor the warning that a validation document is longer than the context
    started = time.perf_counter()
    export_hf(model, tokenizer, folder)
    hf_tokenizer = AutoTokenizer.from_pretrained(folder)
    hf_model = AutoModelForCausalLM.from_pretrained(folder).eval()
    texts = [doc["text"] for domain_docs in docs.values() for doc in domain_docs]
    different_ids = sum(hf_tokenizer(text, add_special_tokens=False)["input_ids"] != tokenizer.encode_ordinary(text)
                        for text in texts)
    prompts = prompt_ids(tokenizer, examples)
    rendered = [hf_tokenizer.apply_chat_template(e.prompt, tokenize=True, add_generation_prompt=True) for e in examples]
    rendered = [r["input_ids"] if isinstance(r, dict) or hasattr(r, "keys") else r for r in rendered]
    different_chats = sum(list(r) != p for r, p in zip(rendered, prompts))
    different_answers = 0
    for p in prompts:
        n = min(max_new_tokens, model.config.context - len(p))
        ours = generate(model, [p], n, temperature=0, stop_token=end)[0]
        with torch.no_grad():
            theirs = hf_model.generate(torch.tensor([p]), max_new_tokens=n, do_sample=False, eos_token_id=end,
                                       pad_token_id=tokenizer.special_id(PAD))[0, len(p):].tolist()
        different_answers += ours != [t for t in theirs if t != end]
    files = sorted(path.name for path in folder.iterdir())
    return {"texts": len(texts), "texts_with_different_ids": different_ids, "chats": len(prompts),
            "chats_with_different_ids": different_chats, "answers": len(prompts),
            "different_answers": different_answers, "files": files, "architecture": hf_model.config.architectures,
            "bytes": sum(path.stat().st_size for path in folder.iterdir()), "seconds": time.perf_counter() - started}


# ---------------------------------------------------------------------------------------------
# The stage


def run_inference_stage(preset: str | None = None, force: bool = False, config: InferenceConfig | None = None,
                        data: Artifact | None = None, tokenizer: Artifact | None = None,
                        finetuned: Artifact | None = None, aligned: Artifact | None = None,
                        evaluated: Artifact | None = None, progress: bool = True) -> Artifact:
    """Stage 9, cached: results.json with the speeds, the draft and speculative decoding, quantization and the
    export's checks; the draft's checkpoint and the Hugging Face folder beside it. The artifacts of stages 1, 2,
    6, 7 and 8 default to the cached ones (built first if missing)."""
    from minilm.data.stage import run_data_stage
    from minilm.eval.stage import run_eval_stage
    from minilm.finetune.stage import run_finetune_stage
    from minilm.infer.report import produced
    from minilm.rlhf.stage import run_rlhf_stage
    from minilm.tokenizer.stage import load_tokenizer, run_tokenizer_stage

    preset = preset_name(preset)
    config = config or InferenceConfig.from_preset(preset)
    data = data or run_data_stage(preset)
    tokenizer = tokenizer or run_tokenizer_stage(preset, data=data)
    finetuned = finetuned or run_finetune_stage(preset, tokenizer=tokenizer, progress=progress)
    aligned = aligned or run_rlhf_stage(preset, finetuned=finetuned, tokenizer=tokenizer, progress=progress)
    evaluated = evaluated or run_eval_stage(preset, data=data, tokenizer=tokenizer, finetuned=finetuned,
                                            aligned=aligned, progress=progress)

    def build(folder: Path) -> dict:
        from minilm.eval.report import results as eval_results
        from minilm.train import checkpoint as ckpt

        device = hardware.pick_device(config.device)
        loaded_tokenizer = load_tokenizer(tokenizer)
        end, pad = loaded_tokenizer.special_id(END), loaded_tokenizer.special_id(PAD)
        name = best_chat_model(eval_results(evaluated)["human"]["ratings"])
        model = load_chat_model(name, finetuned, aligned, device)
        context = model.config.context
        results = {"model": name, "parameters": count_parameters(model), "device": device, "seconds": {}}

        started = time.perf_counter()
        test = build_examples("test", config.answer_prompts_per_family, config.seed, loaded_tokenizer, context)
        short = [p for p in prompt_ids(loaded_tokenizer, test) if len(p) + config.speed_tokens <= context]
        if len(short) < config.speed_prompts:
            raise ValueError(f"only {len(short)} test prompts leave room for speed_tokens={config.speed_tokens} in "
                             f"the context of {context}: lower InferenceConfig.speed_tokens")
        results["speed"] = speeds(model, loaded_tokenizer, short[: config.speed_prompts], config, pad)
        results["seconds"]["speed"] = time.perf_counter() - started

        started = time.perf_counter()
        train_prompts = build_examples("sft_train", config.draft_prompts_per_family, config.seed, loaded_tokenizer,
                                       context)
        draft, results["draft"] = train_draft(model, loaded_tokenizer, train_prompts, config)
        ckpt.save_checkpoint(folder / DRAFT_DIR, 0, draft, {}, {"method": "draft"})
        spread = test[:: max(1, len(test) // config.speculative_prompts)][: config.speculative_prompts]  # all families
        spoken = prompt_ids(loaded_tokenizer, spread)
        results["speculative"] = speculative(model, draft, spoken, config, end, pad)
        results["seconds"]["draft and speculative decoding"] = time.perf_counter() - started

        started = time.perf_counter()
        docs = tasks.domain_docs(data.path / "val.jsonl", config.quality_chars)
        results["quantization"] = quantization(model, loaded_tokenizer, docs, test, config, short[0], pad)
        results["seconds"]["quantization"] = time.perf_counter() - started

        results["export"] = export_checks(model, loaded_tokenizer, folder / EXPORT_DIR, docs,
                                          test[: config.export_prompts], config.max_new_tokens, end)
        results["seconds"]["export"] = results["export"]["seconds"]
        atomic_write_json(folder / RESULTS, results)
        rows = results["speed"]["rows"]
        return {"model": name, "speedup": rows[1]["tokens_per_second"] / rows[0]["tokens_per_second"]}

    return cached_stage("inference", asdict(config), build, preset=preset,
                        inputs={"data": data.key, "tokenizer": tokenizer.key, "finetuned": finetuned.key,
                                "aligned": aligned.key, "evaluated": evaluated.key},
                        code=CODE, force=force, produced=produced)  # fmt: skip


def load_draft(artifact: Artifact, device: str = "cpu") -> GPT:
    """Stage 9's draft model."""
    from minilm.train import checkpoint as ckpt

    return ckpt.load_model(artifact.path / DRAFT_DIR, device).eval()


def cached_run(preset: str | None = None) -> Path:
    """Where stage 9's folder is for `preset` (built or not)."""
    return run_dir("inference", preset_name(preset))
