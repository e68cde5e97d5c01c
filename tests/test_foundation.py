"""Presets, the artifact cache and atomic writes: the ground every stage stands on."""

import dataclasses
import logging
import os
import re
import time
from pathlib import Path

import pytest

from minilm import cache, presets
from minilm.files import atomic_write, atomic_write_json, fingerprint


@dataclasses.dataclass
class ToyConfig:
    size: int = 3
    word: str = "hi"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_HOME", str(tmp_path))
    return tmp_path


def counting_build(calls):
    def build(folder: Path) -> dict:
        calls.append(folder)
        (folder / "out.txt").write_text("x" * 3)
        return {"bytes": 3}

    return build


def test_preset_choice(monkeypatch):
    monkeypatch.setenv("MINILM_PRESET", "ci")
    assert presets.preset_name() == "ci"
    assert presets.preset_name("gpu") == "gpu"
    monkeypatch.delenv("MINILM_PRESET")
    assert presets.preset_name() in ("cpu", "gpu")
    monkeypatch.setenv("MINILM_PRESET", "laptop")
    with pytest.raises(ValueError, match="unknown preset 'laptop'.*ci, cpu, gpu"):
        presets.preset_name()


def test_config_for_applies_preset_then_overrides(monkeypatch):
    monkeypatch.setitem(presets.PRESETS, "toy", {"ci": {"size": 1}, "cpu": {"size": 2}})
    assert presets.config_for(ToyConfig, "toy", "ci") == ToyConfig(size=1)
    assert presets.config_for(ToyConfig, "toy", "cpu", word="yo") == ToyConfig(size=2, word="yo")
    assert presets.config_for(ToyConfig, "toy", "gpu") == ToyConfig()
    with pytest.raises(TypeError, match="no field"):
        presets.config_for(ToyConfig, "toy", "ci", colour="red")


def test_every_preset_row_fits_its_config():
    from minilm.data.stage import DataConfig
    from minilm.eval.stage import EvalConfig
    from minilm.finetune.stage import FinetuneConfig
    from minilm.infer.stage import InferenceConfig
    from minilm.rlhf.stage import RLHFConfig
    from minilm.tokenizer.stage import TokenizerConfig
    from minilm.train.loop import TrainConfig

    configs = {"data": DataConfig, "tokenizer": TokenizerConfig, "pretrain": TrainConfig, "finetune": FinetuneConfig,
               "rlhf": RLHFConfig, "evaluate": EvalConfig, "inference": InferenceConfig}
    assert set(presets.PRESETS) <= set(configs), "each stage in PRESETS needs its config class here"
    for stage, cls in configs.items():
        for name in presets.PRESET_NAMES:
            presets.config_for(cls, stage, name)


def test_seed_everything_repeats():
    import random

    import numpy as np
    import torch

    presets.seed_everything(7)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    presets.seed_everything(7)
    assert first == (random.random(), np.random.rand(), torch.rand(1).item())


def test_cache_reuses_then_rebuilds_on_change(home):
    calls = []
    build = counting_build(calls)
    first = cache.cached_stage("toy", ToyConfig(), build, preset="ci")
    again = cache.cached_stage("toy", ToyConfig(), build, preset="ci")
    assert len(calls) == 1 and again.key == first.key
    assert first.path == home / "runs" / "ci" / "toy"
    assert (first.path / "out.txt").read_text() == "xxx"
    assert first.summary == {"bytes": 3} and first.manifest["files"] == ["out.txt"]

    changed = cache.cached_stage("toy", ToyConfig(size=4), build, preset="ci")
    assert len(calls) == 2 and changed.key != first.key
    upstream_changed = cache.cached_stage("toy", ToyConfig(size=4), build, preset="ci", inputs={"data": "abc"})
    assert len(calls) == 3 and upstream_changed.key != changed.key
    forced = cache.cached_stage("toy", ToyConfig(size=4), build, preset="ci", inputs={"data": "abc"}, force=True)
    assert len(calls) == 4 and forced.key == upstream_changed.key
    # no temporary or old folders are left behind
    assert sorted(p.name for p in (home / "runs" / "ci").iterdir()) == ["toy"]


def test_crash_during_build_leaves_nothing_that_looks_complete(home):
    def crashing(folder: Path) -> dict:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        cache.cached_stage("toy", ToyConfig(), crashing, preset="ci")
    assert not (home / "runs" / "ci" / "toy").exists()
    assert list((home / "runs" / "ci").iterdir()) == []

    # a crash while rebuilding keeps the previous, complete artifact
    calls = []
    cache.cached_stage("toy", ToyConfig(), counting_build(calls), preset="ci")
    with pytest.raises(RuntimeError):
        cache.cached_stage("toy", ToyConfig(size=9), crashing, preset="ci")
    assert cache.load_artifact(home / "runs" / "ci" / "toy").manifest["config"]["size"] == 3


def test_folder_without_manifest_or_with_missing_file_is_rebuilt(home):
    folder = home / "runs" / "ci" / "toy"
    folder.mkdir(parents=True)
    (folder / "out.txt").write_text("stale, half-written")
    assert cache.load_artifact(folder) is None
    calls = []
    cache.cached_stage("toy", ToyConfig(), counting_build(calls), preset="ci")
    (folder / "out.txt").unlink()
    assert cache.load_artifact(folder) is None
    cache.cached_stage("toy", ToyConfig(), counting_build(calls), preset="ci")
    assert len(calls) == 2 and (folder / "out.txt").exists()


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "a" / "file.txt"
    atomic_write(target, "first")
    assert target.read_text() == "first"

    def chunks():
        yield b"new "
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, chunks())
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]
    atomic_write_json(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "x.json").read_text().startswith('{\n  "a"')


def test_fingerprint_is_stable_and_order_free():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert len(fingerprint("x")) == 16


def test_home_defaults_to_checkout_data(monkeypatch):
    monkeypatch.delenv("MINILM_HOME", raising=False)
    assert cache.home() == Path(cache.__file__).resolve().parent.parent / "data"
    monkeypatch.setenv("MINILM_HOME", os.path.join("~", "x"))
    assert cache.home() == Path.home() / "x"


def test_changed_code_rebuilds_and_reuse_is_reported(home, tmp_path):
    source = tmp_path / "stage.py"
    source.write_text("STEP = 1\n")
    calls = []
    first = cache.cached_stage("toy", ToyConfig(), counting_build(calls), preset="ci", code=[tmp_path])
    again = cache.cached_stage("toy", ToyConfig(), counting_build(calls), preset="ci", code=[tmp_path])
    assert not first.reused and again.reused and len(calls) == 1
    source.write_text("STEP = 2\n")
    rebuilt = cache.cached_stage("toy", ToyConfig(), counting_build(calls), preset="ci", code=[tmp_path])
    assert len(calls) == 2 and rebuilt.key != first.key


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    target = atomic_write(tmp_path / "shared.txt", "readable by the group, like open() would make it")
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_stage_says_when_it_starts_what_it_made_and_when_it_reuses_the_cache(home, caplog):
    caplog.set_level(logging.INFO, logger="minilm")
    def slow_build(folder: Path) -> dict:
        time.sleep(0.01)  # the manifest keeps milliseconds: a build under 0.5 ms would record 0.0
        return counting_build([])(folder)

    first = cache.cached_stage("toy", ToyConfig(), slow_build, preset="ci",
                               produced=lambda summary: f"{summary['bytes']} bytes of x")
    start, end = [record.getMessage() for record in caplog.records]
    assert start == f"toy: building in {home / 'runs' / 'ci' / 'toy'}/ (preset ci)"
    assert re.fullmatch(r"toy: built in \d+\.\d s: 3 bytes of x, in .*/runs/ci/toy/", end)
    assert not first.reused and first.seconds >= first.build_seconds > 0

    caplog.clear()
    again = cache.cached_stage("toy", ToyConfig(), counting_build([]), preset="ci")
    [line] = [record.getMessage() for record in caplog.records]
    assert again.reused and again.build_seconds == first.build_seconds and again.seconds < 1
    assert line.startswith(f"toy: reused the cache (built in {first.build_seconds:.1f} s on 20")
    assert line.endswith("): 1 file, 0.0 MB, in " + str(home / "runs" / "ci" / "toy") + "/")


def test_a_quoted_sample_keeps_its_paragraphs_apart_and_its_characters_literal():
    from minilm.report import blockquote

    text = "Once upon a time, Mia lived\nin a town.\n\nShe liked *cats* and #1 dogs.\n\n \n1. The end\n"
    assert blockquote(text) == (
        "> Once upon a time, Mia lived in a town.\n>\n> She liked \\*cats\\* and \\#1 dogs.\n>\n> 1\\. The end"
    )


def test_a_text_table_aligns_its_columns_and_fills_missing_cells():
    from minilm.report import text_table

    assert text_table([{"model": "SFT", "all": 0.85}, {"model": "base, few-shot"}]) == [
        "model           all ",
        "SFT             0.85",
        "base, few-shot      ",
    ]
