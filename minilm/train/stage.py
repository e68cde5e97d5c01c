"""Stages 4 and 5 end to end: pretrain a model on stage 2's token shards, on one process or several.

    python -m minilm pretrain                                 one process (GPU if found, else CPU)
    torchrun --nproc_per_node=2 -m minilm pretrain            two processes, one per GPU (gloo on CPUs)

`run_pretrain_stage` is what the command line, the speedrun and the notebooks call; it returns the
cached result while its config, its code and the tokenizer stage's output are unchanged.

Training runs in a work folder beside the stage's, ``data/runs/<preset>/.pretrain-work/``, with
its checkpoints: interrupt a run (Ctrl-C, a crash, a killed process) and the next call with the same
config continues from the last checkpoint. A call with another config (or after the tokenizer or the
training code changed) is refused and says what changed, rather than deleting the interrupted run:
its checkpoints may hold hours of training, and a changed setting is more often a slip than a wish to
start over; `force` (``--force``) starts over. When training finishes, the final checkpoint, the log,
the samples and the figure move into ``data/runs/<preset>/pretrain/`` and the work folder is removed.

Under torchrun every process calls `run_pretrain_stage`. Rank 0 owns the cache: it builds the
earlier stages while the others wait, then tells them whether to train (the cache missed) or not.

What the stage shows of its result (the terminal's lines, the report's sections for stages 4 and 5,
the training curves) is in `minilm.train.report`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from minilm.cache import Artifact, cached_stage, code_fingerprint, load_artifact, run_dir, shown_path
from minilm.files import atomic_write_json, fingerprint
from minilm.presets import preset_name
from minilm.train import checkpoint as ckpt
from minilm.train import distributed
from minilm.train.distributed import World
from minilm.train.loop import CHECKPOINTS, LOG, LOGISTICS, TrainConfig, read_log, train

# Any change to the model or to the training code retrains, except to train/report.py, which only shows results.
CODE = [*sorted(path for path in Path(__file__).parent.glob("*.py") if path.name != "report.py"),
        Path(__file__).parent.parent / "model"]
CHECKPOINT_DIR, SAMPLES, FIGURE = "checkpoint", "samples.json", "training.png"
TRAIN, DONE = 1, 0  # what rank 0 tells the other processes


def run_pretrain_stage(
    preset: str | None = None,
    force: bool = False,
    config: TrainConfig | None = None,
    tokenizer: Artifact | None = None,
    progress: bool = True,
) -> Artifact:
    """Stages 4-5, cached: the run folder with checkpoint/, log.jsonl, samples.json and training.png.

    `tokenizer` is stage 2's artifact (default: `run_tokenizer_stage(preset)`, itself cached).
    `force` retrains from scratch, discarding an interrupted run's checkpoints.
    """
    from minilm.train.report import produced

    preset = preset_name(preset)
    config = config or TrainConfig.from_preset(preset)
    with distributed.processes(config.device) as world:
        tokenizer = tokenizer or _tokenizer_stage(preset, world)
        work = run_dir("pretrain", preset).parent / ".pretrain-work"
        if not world.is_main:  # wait for rank 0's word: train with it, or take its cached result
            if distributed.broadcast_int(DONE, world) == TRAIN:
                _train(config, tokenizer, work, world, progress)
                distributed.broadcast_int(DONE, world)
            distributed.barrier(world)
            return load_artifact(run_dir("pretrain", preset))

        def build(folder: Path) -> dict:
            prepare_work_folder(work, work_run(config, tokenizer), fresh=force)
            distributed.broadcast_int(TRAIN, world)
            return _build(config, tokenizer, work, folder, world, progress)

        # On an error nothing more is sent: the others fail the same way (bad data fails everywhere),
        # or torchrun stops them when this process exits.
        # The number of processes is part of the run: each adds batch_size x grad_accum windows to a step.
        run = {**asdict(config), "world_size": world.world_size}
        artifact = cached_stage("pretrain", run, build, preset=preset, inputs={"tokenizer": tokenizer.key},
                                code=CODE, force=force, produced=produced)
        distributed.broadcast_int(DONE, world)
        distributed.barrier(world)  # the others read the artifact only once it is in place
        return artifact


def _tokenizer_stage(preset: str, world: World) -> Artifact:
    """Stage 2's artifact; under torchrun rank 0 builds it (and stage 1) while the others wait."""
    from minilm.tokenizer.stage import run_tokenizer_stage

    if world.is_main:
        artifact = run_tokenizer_stage(preset)
    distributed.barrier(world)
    return artifact if world.is_main else run_tokenizer_stage(preset)


def work_run(config: TrainConfig, tokenizer: Artifact) -> dict:
    """What an unfinished run in the work folder must match to be continued: config, tokenizer, code."""
    return {
        "config": {k: v for k, v in asdict(config).items() if k not in LOGISTICS},
        "tokenizer": tokenizer.key,
        "code": code_fingerprint(CODE),
    }


def prepare_work_folder(work: Path, run: dict, fresh: bool = False) -> None:
    """Keep an interrupted run of the same `run` (`work_run`), to resume it, and refuse one of another.

    A work folder without a checkpoint holds nothing to lose and is replaced; `fresh` replaces any.
    """
    marker = work / "run.json"
    if work.exists() and not fresh:
        try:
            before = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = {}
        if fingerprint(before) == fingerprint(run):  # compared as JSON, as it is stored
            return
        newest = ckpt.latest_checkpoint(work / CHECKPOINTS)
        if newest is not None:
            raise ckpt.CheckpointError(
                f"{shown_path(work)}/ holds a run interrupted at {newest.name} with {'; '.join(changes(before, run))}: "
                f"run again with the checkpoint's values to resume it, or add --force (force=True) to delete it and start over"
            )
    if work.exists():
        shutil.rmtree(work)
    atomic_write_json(marker, run)


def changes(before: dict, now: dict) -> list[str]:
    """What differs between two `work_run`s, in words."""
    if "config" not in before:
        return ["settings that were not recorded (its run.json is missing, or from an older minilm)"]
    found = []
    if differences := ckpt.config_differences(before["config"], now["config"]):
        found.append(f"another config ({'; '.join(differences)})")
    if before.get("tokenizer") != now["tokenizer"]:
        found.append("another tokenizer (stage 2 was rebuilt since)")
    if before.get("code") != now["code"]:
        found.append("other training or model code")
    return found


def _train(config: TrainConfig, tokenizer: Artifact, work: Path, world: World, progress: bool) -> dict:
    from minilm.tokenizer.stage import load_tokenizer, open_shards

    return train(config, open_shards(tokenizer, "train"), open_shards(tokenizer, "val"), load_tokenizer(tokenizer),
                 work, world=world, resume=True, progress=progress)


def _build(config: TrainConfig, tokenizer: Artifact, work: Path, folder: Path, world: World, progress: bool) -> dict:
    """Train (or continue training) in the work folder, then move the results into the stage's folder."""
    from minilm.train.report import plot_training

    started = time.perf_counter()
    summary = _train(config, tokenizer, work, world, progress)
    final = ckpt.latest_checkpoint(work / CHECKPOINTS)
    shutil.move(str(final), str(folder / CHECKPOINT_DIR))
    shutil.move(str(work / LOG), str(folder / LOG))
    samples = summary.pop("samples", [])
    atomic_write_json(folder / SAMPLES, {"samples": samples, "quality": summary.get("quality")})
    plot_training(read_log(folder / LOG), folder / FIGURE)
    shutil.rmtree(work, ignore_errors=True)
    summary["samples"] = samples[:3]
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary


def load_pretrained(artifact: Artifact, device: str = "cpu"):
    """The pretrained GPT of stage 4's artifact, on `device` (for SFT, evaluation, generation)."""
    return ckpt.load_model(artifact.path / CHECKPOINT_DIR, device)
