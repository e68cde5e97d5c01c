"""The speedrun: every stage in order, then one report card.

Each stage is called exactly as its notebook and its command call it, so a speedrun after the
notebooks reuses their cached outputs, and a speedrun on a fresh machine builds everything. The
report shows how long each stage's build took (from its manifest, whichever run built it) and,
apart from that, what this run did and how long it took.

A stage adds itself here with two lines: its run, and its section of the report.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from minilm.cache import home
from minilm.presets import preset_name
from minilm.report import stage_times, write_report


def speedrun(preset: str | None = None, force: bool = False, train=None) -> Path:
    """Run every stage that exists with `preset` and write `report.md`; returns the report's path.

    `train` is the pretraining's TrainConfig (default: the preset's)."""
    from minilm.data import report as data_report
    from minilm.finetune import report as finetune_report
    from minilm.finetune import stage as finetune_stage
    from minilm.infer import report as inference_report
    from minilm.infer import stage as inference_stage
    from minilm.data import stage as data_stage
    from minilm.eval import report as eval_report
    from minilm.eval import stage as eval_stage
    from minilm.rlhf import report as rlhf_report
    from minilm.rlhf import stage as rlhf_stage
    from minilm.tokenizer import report as tokenizer_report
    from minilm.tokenizer import stage as tokenizer_stage
    from minilm.train import report as pretrain_report
    from minilm.train import stage as pretrain_stage

    preset = preset_name(preset)
    report_dir = home() / "runs" / preset / "report"
    started = time.perf_counter()

    data = data_stage.run_data_stage(preset, force=force)
    tokenizer = tokenizer_stage.run_tokenizer_stage(preset, force=force, data=data)
    pretrained = pretrain_stage.run_pretrain_stage(preset, force=force, config=train, tokenizer=tokenizer)  # stages 3-5
    finetuned = finetune_stage.run_finetune_stage(preset, force=force, pretrained=pretrained, tokenizer=tokenizer)
    aligned = rlhf_stage.run_rlhf_stage(preset, force=force, finetuned=finetuned, tokenizer=tokenizer)
    evaluated = eval_stage.run_eval_stage(preset, force=force, data=data, tokenizer=tokenizer, pretrained=pretrained,
                                          finetuned=finetuned, aligned=aligned)
    deployed = inference_stage.run_inference_stage(preset, force=force, data=data, tokenizer=tokenizer,
                                                   finetuned=finetuned, aligned=aligned, evaluated=evaluated)

    sections = [
        data_report.report_section(data, report_dir),
        tokenizer_report.report_section(tokenizer, report_dir),
        pretrain_report.report_section(pretrained, report_dir),
        pretrain_report.scaling_section(pretrained, report_dir),
        finetune_report.report_section(finetuned, report_dir),
        rlhf_report.report_section(aligned, report_dir),
        eval_report.report_section(evaluated, report_dir),
        inference_report.report_section(deployed, report_dir),
    ]
    stages = {"1: data": data, "2: tokenizer": tokenizer, "4-5: pretrain": pretrained, "6: finetune": finetuned,
              "7: rlhf": aligned, "8: evaluate": evaluated, "9: inference": deployed}
    built = sum(not artifact.reused for artifact in stages.values())
    times = [{**row, **stage_work(name, stages)} for row, name in zip(stage_times(stages), stages)]
    header = {
        "preset": preset,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()}, {os.cpu_count()} cores",
        "stages": "1 data, 2 tokenizer, 3 the transformer (code, with no run of its own: stage 4 trains it), "
                  "4 pretraining, 5 scaling (stage 4's run, seen from the hardware), 6 fine-tuning, 7 RLHF, "
                  "8 evaluation, 9 inference and deployment",
        "this run": f"{time.perf_counter() - started:,.1f} s (built {built} of the {len(stages)} stages, "
                    f"reused {len(stages) - built} from the cache)",
        "build time of every stage": f"{sum(a.build_seconds for a in stages.values()):,.1f} s",
        "bias, before and after": bias_line(data, evaluated),
        "talk to the model": "python -m minilm chat (in the terminal); python -m minilm serve, then "
                             "http://127.0.0.1:8000 (a chat page, and an OpenAI-compatible API at /v1)",
    }
    return write_report(report_dir / "report.md", header, times, sections)


def stage_work(name: str, stages: dict) -> dict[str, str]:
    """What a stage processed, where its manifest or results record it: text, tokens, and the training FLOPs of
    the stages that train a model (6 N D: N parameters, D tokens trained on, forward and backward)."""
    artifact = stages[name]
    summary = artifact.manifest.get("summary", {})
    if name.startswith("1:"):
        return {"processed": f"{(summary['train_bytes'] + summary['val_bytes']) / 1e6:,.1f} MB of text kept",
                "training FLOPs": "-"}
    if name.startswith("2:"):
        return {"processed": f"{sum(summary['tokens'].values()) / 1e6:,.2f} M tokens encoded", "training FLOPs": "-"}
    if name.startswith("4"):
        return {"processed": f"{summary['tokens'] / 1e6:,.2f} M tokens trained on",
                "training FLOPs": f"{6 * summary['parameters'] * summary['tokens']:.2e}"}
    if name.startswith("6:"):
        tokens = json.loads((artifact.path / "results.json").read_text(encoding="utf-8"))["train_tokens"]
        parameters = stages["4-5: pretrain"].manifest["summary"]["parameters"]
        return {"processed": f"{tokens / 1e6:,.2f} M tokens trained on (SFT)",
                "training FLOPs": f"{6 * parameters * tokens:.2e} (SFT)"}
    return {"processed": "not counted", "training FLOPs": "not counted"}


def bias_line(data, evaluated) -> str:
    """Stage 1's planted bias (the job-gender skew of the stereotyped jobs in the stories) before and after its
    debias step, and stage 8's CrowS-Pairs score of the models trained without and with it."""
    skew = data.manifest["summary"]["bias_skew"]
    probes = json.loads((evaluated.path / "results.json").read_text(encoding="utf-8"))["bias"]
    crows = {name.rsplit("debias ", 1)[-1]: p["crows"] for name, p in probes.items() if "debias" in name}
    shown = "; ".join(f"{name}: {c['share']:.1%} [{c['low']:.1%}, {c['high']:.1%}]" for name, c in crows.items())
    return (f"stage 1's job-gender skew of the stereotyped jobs in the stories {skew['before']:.3f} before its debias "
            f"step, {skew['after']:.3f} after; stage 8's CrowS-Pairs, stereotype preferred (50% unbiased), debias {shown}")
