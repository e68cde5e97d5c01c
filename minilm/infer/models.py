"""Which model to chat with: the course's best chat model, taken from the cache (nothing is built here).

Stage 8's simulated raters compared every model's answers in pairs, and Bradley-Terry ratings turned their
votes into one number per model. We serve the best rated among stage 7's policies (DPO, PPO, GRPO) and
stage 6's SFT model, by the rule stage 9 uses (`minilm.infer.stage.best_chat_model`), so that `python -m
minilm serve` and `chat` answer with the model that stage 9 measured. Without stage 8's ratings (not built,
or built on an older stage 7) we take DPO; without stage 7, stage 6's SFT model. The tokenizer is always
stage 2's, and a model is served only with the tokenizer it was trained with.

Building the stages takes minutes to hours, so this module never starts one: when the cache lacks what it
needs, `ModelNotFoundError` says which command builds it.
"""

from __future__ import annotations

from pathlib import Path

from minilm.cache import Artifact, load_artifact, run_dir
from minilm.model.gpt import GPT
from minilm.presets import preset_name
from minilm.tokenizer.tokenizer import Tokenizer

FALLBACK = "DPO"  # stage 7's policy served when stage 8 has not rated them


class ModelNotFoundError(FileNotFoundError):
    """The cache lacks the model or the tokenizer asked for; the message names the command that builds it."""


def end_tokens(tokenizer: Tokenizer) -> list[int]:
    """The tokens that end a chat model's answer: every special token. <|end|> closes the assistant's turn,
    <|endoftext|> a document, and a role token would start a turn that is not the model's to write. So an
    answer never holds special-token text, and can go back into the conversation as it is (`check_chat`
    refuses such text)."""
    return sorted(tokenizer.special_tokens.values())


def _cached(stage: str, preset: str, builds: str) -> Artifact:
    artifact = load_artifact(run_dir(stage, preset))
    if artifact is None:
        raise ModelNotFoundError(f"the {preset} preset has no {builds} in the cache ({run_dir(stage, preset)}): "
                                 f"run `python -m minilm speedrun --preset {preset}` (or `python -m minilm {stage} "
                                 f"--preset {preset}`) first")
    return artifact


def _same_tokenizer(artifact: Artifact, tokenizer: Artifact, stage: str, preset: str) -> None:
    """Refuse a model trained with another tokenizer than the one cached now (stage 2 was rebuilt since)."""
    if artifact.manifest.get("inputs", {}).get("tokenizer") != tokenizer.key:
        raise ModelNotFoundError(f"the cached {stage} stage of the {preset} preset was trained with another tokenizer "
                                 f"than the one cached now: run `python -m minilm {stage} --preset {preset}` again")


def rated_choice(preset: str, aligned: Artifact) -> tuple[str, str]:
    """The chat model to serve, by stage 8's ratings of `aligned` (stage 7's artifact), and why."""
    from minilm.infer.stage import best_chat_model

    evaluated = load_artifact(run_dir("evaluate", preset))
    if evaluated is None:
        return FALLBACK, "stage 8 has not rated the models"
    if evaluated.manifest.get("inputs", {}).get("aligned") != aligned.key:
        return FALLBACK, "stage 8 rated an older build of stage 7"
    from minilm.eval.report import results

    ratings = results(evaluated)["human"]["ratings"]
    name = best_chat_model(ratings)
    return name, f"the best Bradley-Terry rating in stage 8, {ratings[name]:.0f}"


def chat_model(preset: str | None = None, checkpoint: str | Path | None = None,
               device: str = "cpu") -> tuple[GPT, Tokenizer, str]:
    """The chat model to serve, in eval mode on `device`, with its tokenizer and a line that says which it is.

    `checkpoint`: a checkpoint folder (or a folder of them, the newest is taken) to serve instead, with the
    preset's tokenizer. Raises ModelNotFoundError when the cache lacks what is needed.
    """
    from minilm.finetune.stage import load_finetuned
    from minilm.rlhf.stage import load_policy
    from minilm.tokenizer.stage import load_tokenizer
    from minilm.train.checkpoint import load_model

    preset = preset_name(preset)
    tokenizer_artifact = _cached("tokenizer", preset, "tokenizer (stage 2)")
    tokenizer = load_tokenizer(tokenizer_artifact)
    if checkpoint is not None:
        if not Path(checkpoint).is_dir():
            raise ModelNotFoundError(f"--checkpoint {checkpoint}: no such folder; pass a checkpoint folder "
                                     "(step_NNNNNN) or a folder of them")
        model = load_model(checkpoint, device)
        if model.config.vocab_size != tokenizer.vocab_size:
            raise ModelNotFoundError(f"the checkpoint's vocabulary has {model.config.vocab_size} tokens, the "
                                     f"{preset} preset's tokenizer {tokenizer.vocab_size}: pass the --preset it was "
                                     "trained with")
        return model.eval(), tokenizer, f"the checkpoint {checkpoint}, with the {preset} preset's tokenizer"
    if load_artifact(run_dir("rlhf", preset)) is None:
        finetuned = _cached("finetune", preset, "chat model (stage 6 or 7)")
        _same_tokenizer(finetuned, tokenizer_artifact, "finetune", preset)
        return (load_finetuned(finetuned, device).eval(), tokenizer,
                f"stage 6's SFT model ({preset} preset; stage 7 is not built)")
    aligned = _cached("rlhf", preset, "aligned models (stage 7)")
    _same_tokenizer(aligned, tokenizer_artifact, "rlhf", preset)
    name, why = rated_choice(preset, aligned)
    if name == "SFT":
        finetuned = _cached("finetune", preset, "SFT model (stage 6)")
        _same_tokenizer(finetuned, tokenizer_artifact, "finetune", preset)
        return load_finetuned(finetuned, device).eval(), tokenizer, f"stage 6's SFT model ({preset} preset): {why}"
    return load_policy(aligned, name, device).eval(), tokenizer, f"stage 7's {name} policy ({preset} preset): {why}"
