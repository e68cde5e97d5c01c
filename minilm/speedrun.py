"""The speedrun: every stage in order, then one report card.

Each stage is called exactly as its notebook and its command call it, so a speedrun after the
notebooks reuses their cached outputs, and a speedrun on a fresh machine builds everything.
A stage adds itself here with two lines: its run, and its section of the report.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from minilm.cache import home
from minilm.presets import preset_name
from minilm.report import Section, write_report


def speedrun(preset: str | None = None, force: bool = False, train=None) -> Path:
    """Run every stage that exists with `preset` and write `report.md`; returns the report's path.

    `train` is the pretraining's TrainConfig (default: the preset's)."""
    from minilm.data import report as data_report
    from minilm.data import stage as data_stage
    from minilm.tokenizer import stage as tokenizer_stage
    from minilm.train import stage as pretrain_stage

    preset = preset_name(preset)
    report_dir = home() / "runs" / preset / "report"
    sections: list[Section] = []
    timings: list[tuple] = []  # (stage, seconds, artifact)

    started = time.perf_counter()
    data = data_stage.run_data_stage(preset, force=force)
    timings.append(("data", time.perf_counter() - started, data))
    sections.append(data_report.report_section(data, report_dir))

    started = time.perf_counter()
    tokenizer = tokenizer_stage.run_tokenizer_stage(preset, force=force, data=data)
    timings.append(("tokenizer", time.perf_counter() - started, tokenizer))
    sections.append(tokenizer_stage.report_section(tokenizer, report_dir))

    started = time.perf_counter()
    pretrained = pretrain_stage.run_pretrain_stage(preset, force=force, config=train, tokenizer=tokenizer)
    timings.append(("pretrain", time.perf_counter() - started, pretrained))
    sections.append(pretrain_stage.report_section(pretrained, report_dir))

    header = {
        "preset": preset,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.system()}, {os.cpu_count()} cores",
        "stages": ", ".join(
            f"{name} ({seconds:.1f} s{', reused a build of ' + str(a.manifest['seconds']) + ' s' if a.reused else ''})"
            for name, seconds, a in timings
        ),
        "total time": f"{sum(s for _, s, _ in timings):.1f} s",
    }
    return write_report(report_dir / "report.md", header, sections)
