"""tools/mutation.py: its package table points at real files, and its score counts what it says."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mutation():
    spec = importlib.util.spec_from_file_location("mutation", ROOT / "tools" / "mutation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_package_names_files_and_tests_that_exist(mutation):
    for name, package in mutation.PACKAGES.items():
        for path in (*package.mutate, *package.tests):
            assert (ROOT / path).is_file(), f"{name}: {path} does not exist"
        for test in package.deselect:
            file, _, function = test.partition("::")
            assert file in package.tests and f"def {function}(" in (ROOT / file).read_text(), test
        # a package's report.py draws figures and writes sentences: left out on purpose
        assert not any(path.endswith("report.py") for path in package.mutate)


def test_the_config_is_valid_toml_for_mutmut(mutation):
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    config = tomllib.loads(mutation.mutmut_config(mutation.PACKAGES["filters"]))["tool"]["mutmut"]
    assert config["only_mutate"] == list(mutation.PACKAGES["filters"].mutate)
    assert config["pytest_add_cli_args_test_selection"] == list(mutation.PACKAGES["filters"].tests)
    assert config["pytest_add_cli_args"].count("--deselect") == len(mutation.PACKAGES["filters"].deselect)
    assert config["also_copy"] == ["conftest.py"]


def test_equivalent_mutants_are_named_in_a_mutated_file_with_a_reason(mutation):
    modules = {path.removesuffix(".py").replace("/", ".") for package in mutation.PACKAGES.values()
               for path in package.mutate}
    listed = mutation.equivalent_mutants()
    for mutant, reason in listed.items():
        assert "__mutmut_" in mutant and mutant.rsplit(".", 1)[0] in modules, mutant
        assert len(reason.split()) >= 4, f"{mutant}: say why it cannot change behaviour"


def test_score_counts_killed_equivalent_survived_and_timeouts(mutation, tmp_path, monkeypatch):
    equivalent = tmp_path / "equivalent.txt"
    equivalent.write_text("# comment\nm.a__mutmut_3  the codec name differs only in case\n", encoding="utf-8")
    monkeypatch.setattr(mutation, "SCRATCH", tmp_path)
    monkeypatch.setattr(mutation, "EQUIVALENT", equivalent)
    meta = tmp_path / "pkg" / "mutants" / "m" / "a.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"m.a__mutmut_1": 1, "m.a__mutmut_2": 3, "m.a__mutmut_3": 0, "m.a__mutmut_4": 0, "m.a__mutmut_5": -24,
             "m.a__mutmut_6": None}
    meta.write_text(json.dumps({"exit_code_by_key": codes}), encoding="utf-8")
    result = mutation.score("pkg")
    assert (result["mutants"], result["checked"], result["killed"], result["equivalent"]) == (6, 5, 2, 1)
    assert result["survived"] == ["m.a__mutmut_4"] and result["timed out"] == ["m.a__mutmut_5"]
    assert result["not checked"] == {"m.a__mutmut_6": None}
    assert result["score"] == pytest.approx(3 / 5)  # a timeout is not a kill
    assert result["score counting timeouts as kills"] == pytest.approx(4 / 5)
    assert json.loads((tmp_path / "pkg" / "score.json").read_text(encoding="utf-8")) == result
    assert "5 of 6 mutants checked: 2 killed, 1 equivalent, 1 survived, 1 timed out -> 60.0%" in mutation.summary_line(result)


def test_a_sample_is_seeded_and_a_larger_one_holds_a_smaller_one(mutation):
    names = [f"m.f__mutmut_{i}" for i in range(1, 501)]
    small, large = mutation.draw_sample(names, 50), mutation.draw_sample(list(reversed(names)), 120)
    assert len(small) == len(set(small)) == 50 and len(large) == 120
    assert set(small) <= set(large)  # the same seeded shuffle, whatever order the names came in
    assert small == mutation.draw_sample(names, 50) and small != mutation.draw_sample(names, 50, seed=1)
    assert mutation.draw_sample(names, 10_000) == sorted(names)


def test_the_wilson_interval_matches_its_closed_form(mutation):
    low, high = mutation.wilson_interval(90, 100)  # 0.9 of 100: the textbook values
    assert (low, high) == (pytest.approx(0.8256, abs=1e-4), pytest.approx(0.9448, abs=1e-4))
    assert mutation.wilson_interval(100, 100)[1] == pytest.approx(1.0) and mutation.wilson_interval(100, 100)[0] == pytest.approx(0.9630, abs=1e-4)
    assert mutation.wilson_interval(0, 0) == (0.0, 1.0)


def test_a_sampled_run_is_scored_on_its_sample_only(mutation, tmp_path, monkeypatch):
    equivalent = tmp_path / "equivalent.txt"
    equivalent.write_text("", encoding="utf-8")
    monkeypatch.setattr(mutation, "SCRATCH", tmp_path)
    monkeypatch.setattr(mutation, "EQUIVALENT", equivalent)
    meta = tmp_path / "pkg" / "mutants" / "m" / "a.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"m.a__mutmut_1": 1, "m.a__mutmut_2": 33, "m.a__mutmut_3": 0, "m.a__mutmut_4": None}
    meta.write_text(json.dumps({"exit_code_by_key": codes}), encoding="utf-8")
    (tmp_path / "pkg" / "sample.json").write_text(json.dumps(["m.a__mutmut_1", "m.a__mutmut_2"]), encoding="utf-8")
    result = mutation.score("pkg")
    assert result["sampled"] and (result["mutants"], result["checked"], result["killed"]) == (2, 2, 1)
    assert result["survived"] == ["m.a__mutmut_2"] and result["score"] == pytest.approx(0.5)  # no test reaches it
    assert "2 of 2 sampled mutants checked" in mutation.summary_line(result)


def test_recheck_keeps_the_kills_of_unchanged_functions_and_checks_the_rest_again(mutation, tmp_path, monkeypatch):
    monkeypatch.setattr(mutation, "SCRATCH", tmp_path)
    monkeypatch.setattr(mutation, "EQUIVALENT", tmp_path / "equivalent.txt")
    (tmp_path / "equivalent.txt").write_text("", encoding="utf-8")

    def write_run(folder, codes, hashes):
        meta = folder / "mutants" / "m" / "a.py.meta"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"exit_code_by_key": codes, "hash_by_function_name": hashes}), encoding="utf-8")

    names = ["m.a.x_f__mutmut_1", "m.a.x_f__mutmut_2", "m.a.xǁCǁg__mutmut_1", "m.a.x_f__mutmut_3"]
    write_run(tmp_path / "pkg", dict(zip(names, [1, 0, 1, 1])), {"x_f": "same", "xǁCǁg": "old"})
    (tmp_path / "pkg" / "sample.json").write_text(json.dumps(names[:3]), encoding="utf-8")

    def fresh(name):  # the working tree again: g's code changed since the run
        write_run(tmp_path / name, dict.fromkeys(names), {"x_f": "same", "xǁCǁg": "new"})
        return tmp_path / name

    calls = []
    monkeypatch.setattr(mutation, "prepare", fresh)
    monkeypatch.setattr(mutation, "generate", lambda scratch, env: None)
    monkeypatch.setattr(mutation.subprocess, "run", lambda command, **kwargs: calls.append(command))
    result = mutation.recheck("pkg", max_children=2)
    assert calls and calls[0][-2:] == ["m.a.x_f__mutmut_2", "m.a.xǁCǁg__mutmut_1"]  # the survivor, the changed one
    assert result["sampled"] and result["mutants"] == 3 and result["killed"] == 1  # the kill carried over
    assert (tmp_path / "pkg.previous" / "sample.json").exists()
