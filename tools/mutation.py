"""Mutation testing: plant small bugs in the package's core and count how many its tests catch.

A test suite is only as good as the bugs it catches. mutmut (https://mutmut.readthedocs.io) makes
"mutants": copies of a function with one small change (``<`` for ``<=``, ``+ 1`` for ``+ 2``, a
string changed, a call argument dropped, ...), runs the tests that call that function against
each, and counts a mutant as *killed* when some test fails. A *survivor* is a bug no test notices:
either a missing test, or a change that cannot alter behaviour (an *equivalent* mutant, such as a
changed message in an ``assert`` that never fires).

Each package is run against its own test files only (a bug in the tokenizer should be caught by
the tokenizer's tests, not by chance by a pipeline test), in a scratch copy of the repository
under ``data/mutation/<package>/``, so the working tree is never touched. The equivalent mutants,
each with its reason, are listed in ``tests/mutation_equivalent.txt``; the score counts them apart.

Usage, from the repository root (takes long on 2 cores: run it by hand, not in CI)::

    python tools/mutation.py tokenizer model train filters    # run and score (or a subset)
    python tools/mutation.py --resume train                   # go on with an interrupted run
    python tools/mutation.py --report train                   # score a finished run again
    python tools/mutation.py --show train                     # the survivors' diffs, to read
    python tools/mutation.py --sample 300 model               # a seeded random sample of the mutants
    python tools/mutation.py --recheck model                  # after new tests: the survivors again

A whole package is an hour or more on 2 cores (mutmut runs the tests that reach a function once per mutant).
``--sample N`` checks N mutants drawn at random (seeded, so a rerun draws the same ones) and scores those, with a
95% interval: the score of a random sample estimates the whole package's score without bias, where a run stopped
part way does not (mutmut runs the mutants with the fastest tests first).

It writes ``data/mutation/<package>/score.json`` (the names of every survivor and timeout) and prints one line
per package: mutants checked, killed, equivalent, survived, timed out, and the score (see `score`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / "data" / "mutation"
EQUIVALENT = ROOT / "tests" / "mutation_equivalent.txt"
MUTMUT = [sys.executable, "-m", "mutmut"]
TIMEOUTS = (-24, 24, 152, 255, 36)  # mutmut's exit codes for a mutant whose tests ran out of time


@dataclass(frozen=True)
class Package:
    """What to mutate (files), the test files that answer for it, and slow end-to-end tests left out of its run."""

    mutate: tuple[str, ...]
    tests: tuple[str, ...]
    deselect: tuple[str, ...] = ()


# The files are the package's logic; each stage's report.py (terminal lines and figures) is left
# out: a mutant there changes a picture or a sentence, which no unit test should pin.
PACKAGES = {
    "tokenizer": Package(
        mutate=("minilm/tokenizer/naive.py", "minilm/tokenizer/bpe.py", "minilm/tokenizer/tokenizer.py",
                "minilm/tokenizer/shards.py", "minilm/tokenizer/stage.py"),
        tests=("tests/test_tokenizer.py", "tests/test_tokenizer_stage.py"),
        deselect=("tests/test_tokenizer_stage.py::test_command_line_and_speedrun_report",),  # the speedrun: 40 s
    ),
    "model": Package(
        mutate=("minilm/model/config.py", "minilm/model/layers.py", "minilm/model/attention.py", "minilm/model/gpt.py",
                "minilm/model/generate.py", "minilm/model/accounting.py", "minilm/model/hf.py"),
        tests=("tests/test_model.py",),
        # torch.compile cannot trace mutmut's trampoline (it reads a ContextVar) around every function
        deselect=("tests/test_model.py::test_forward_and_backward_compile_as_one_graph",),
    ),
    "train": Package(
        mutate=("minilm/train/objectives.py", "minilm/train/schedule.py", "minilm/train/loop.py",
                "minilm/train/checkpoint.py", "minilm/train/distributed.py", "minilm/train/quality.py",
                "minilm/train/stage.py"),
        tests=("tests/test_train.py", "tests/test_distributed.py"),
        # bf16 autocast on a CPU without bf16 hardware: 15 s a run, for paths the float32 tests share
        deselect=("tests/test_train.py::test_the_bf16_and_fp16_paths_train_on_cpu",),
    ),
    "finetune": Package(
        mutate=("minilm/finetune/tasks.py", "minilm/finetune/chat.py", "minilm/finetune/answers.py",
                "minilm/finetune/lora.py", "minilm/finetune/classify.py", "minilm/finetune/stage.py"),
        tests=("tests/test_finetune_data.py", "tests/test_finetune_lora.py", "tests/test_finetune_classify.py",
               "tests/test_finetune_trl.py", "tests/test_finetune_stage.py"),
    ),
    "rlhf": Package(
        mutate=("minilm/rlhf/objectives.py", "minilm/rlhf/bandit.py", "minilm/rlhf/gold.py", "minilm/rlhf/preferences.py",
                "minilm/rlhf/rollout.py", "minilm/rlhf/reward_model.py", "minilm/rlhf/trainer.py", "minilm/rlhf/dpo.py",
                "minilm/rlhf/ppo.py", "minilm/rlhf/grpo.py", "minilm/rlhf/stage.py"),
        tests=("tests/test_rlhf_objectives.py", "tests/test_rlhf_gold.py", "tests/test_rlhf_rollout.py",
               "tests/test_rlhf_reward_model.py", "tests/test_rlhf_trainer.py", "tests/test_rlhf_dpo.py",
               "tests/test_rlhf_ppo.py", "tests/test_rlhf_grpo.py", "tests/test_rlhf_stage.py"),
    ),
    "filters": Package(
        mutate=("minilm/data/filters/clean.py", "minilm/data/filters/quality.py", "minilm/data/filters/toxicity.py",
                "minilm/data/filters/pii.py", "minilm/data/filters/bias.py", "minilm/data/filters/dedup.py",
                "minilm/data/filters/balance.py"),
        tests=("tests/test_clean.py", "tests/test_quality.py", "tests/test_safety.py", "tests/test_dedup.py",
               "tests/test_data_pipeline.py"),
        # the whole cpu corpus and the speedrun: a minute per mutant, and the filters' own tests must answer anyway
        deselect=("tests/test_data_pipeline.py::test_every_filter_reaches_the_goal_on_the_cpu_corpus",
                  "tests/test_data_pipeline.py::test_speedrun_and_command_line"),
    ),
}


def mutmut_config(package: Package) -> str:
    """The ``[tool.mutmut]`` section for one package's run."""
    def toml_list(items) -> str:
        return "[" + ", ".join(json.dumps(item) for item in items) + "]"

    return "\n".join([
        "",
        "[tool.mutmut]",
        'source_paths = ["minilm"]',
        'also_copy = ["conftest.py"]',
        f"only_mutate = {toml_list(package.mutate)}",
        f"pytest_add_cli_args_test_selection = {toml_list(package.tests)}",
        # no notebook collection, no cache folder, quiet: the run only needs pass or fail
        "pytest_add_cli_args = " + toml_list(["-p", "no:nbval", "-p", "no:cacheprovider", "-q", "-o", "addopts=",
                                              *(arg for test in package.deselect for arg in ("--deselect", test))]),
        # A mutant that loops forever is caught by a time limit: 4x the tests' own time (mutmut's default 15x
        # spends most of a run waiting on such mutants), plus 20 s, because mutmut charges a module-scoped
        # fixture (a stage built once for a test file) to the first test that uses it, so the others look fast.
        "timeout_multiplier = 4.0",
        "timeout_constant = 20.0",
        # Each mutant's tests run in a process forked from a clean server, not from mutmut's own process: forked
        # from a process in which torch or tqdm had started threads, a worker can hang on a lock forever.
        'process_isolation = "forkserver"',
        "",
    ])


def prepare(name: str) -> Path:
    """A fresh scratch copy of the files git knows (as they are in the working tree), configured for `name`."""
    scratch = SCRATCH / name
    if scratch.exists():
        shutil.rmtree(scratch)
    tracked = subprocess.run(["git", "ls-files", "minilm", "tests", "conftest.py", "pyproject.toml"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    for path in tracked:
        (scratch / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, scratch / path)
    with open(scratch / "pyproject.toml", "a", encoding="utf-8") as file:
        file.write(mutmut_config(PACKAGES[name]))
    return scratch


def equivalent_mutants() -> dict[str, str]:
    """The mutants listed as equivalent: name -> reason (``tests/mutation_equivalent.txt``)."""
    listed = {}
    for line in EQUIVALENT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            mutant, _, reason = line.partition(" ")
            listed[mutant] = reason.strip()
    return listed


def results(scratch: Path) -> dict[str, int | None]:
    """Every mutant of a run with its exit code (1 or 3: killed; 0: survived; 5 or 33: no test reaches it;
    `TIMEOUTS`; None: not checked yet), from mutmut's .meta files."""
    codes: dict[str, int | None] = {}
    for meta in sorted((scratch / "mutants").rglob("*.meta")):
        codes.update(json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    return codes


def scratch_environment(scratch: Path) -> dict[str, str]:
    """The tests of a scratch copy run with the ci preset and a cache of their own, never the user's."""
    return {**os.environ, "MINILM_HOME": str(scratch / "home"), "MINILM_PRESET": "ci"}


def generate(scratch: Path, env: dict[str, str]) -> None:
    """Write every mutant of a fresh scratch copy without testing any (the first step of ``mutmut run``), so a
    sample can be drawn from their names. Calls mutmut's own functions; pinned to mutmut 3.8.1."""
    code = ("from mutmut.__main__ import copy_src_dir, copy_also_copy_files, setup_source_paths, "
            "store_lines_covered_by_tests, create_mutants\n"
            "copy_src_dir(); copy_also_copy_files(); setup_source_paths(); store_lines_covered_by_tests(); "
            "create_mutants(2)\n")
    subprocess.run([sys.executable, "-c", code], cwd=scratch, env=env, check=True, stdout=subprocess.DEVNULL)


def draw_sample(names: list[str], size: int, seed: int = 0) -> list[str]:
    """`size` mutant names drawn at random without replacement, the same ones for the same names and seed; a larger
    sample holds a smaller one (the first `size` of one seeded shuffle), so a sample can grow without waste."""
    names = sorted(names)
    random.Random(seed).shuffle(names)
    return sorted(names[:size])


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion: unlike the normal approximation it stays inside [0, 1] and
    holds near 100%, where mutation scores live."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def score(name: str) -> dict:
    """Count a finished run's mutants: killed, equivalent (listed), survived, timed out, and the others.

    The score is (killed + equivalent) / all mutants checked. A mutant whose tests ran out of time is not counted
    as killed: it may loop forever (a kill), or only have met slow tests on a busy machine (a survivor in
    disguise), so the timeouts are named, and they lower the score until a rerun or a faster test settles them."""
    codes = results(SCRATCH / name)
    sample_file = SCRATCH / name / "sample.json"
    sample = json.loads(sample_file.read_text(encoding="utf-8")) if sample_file.exists() else None
    if sample is not None:
        codes = {mutant: codes.get(mutant) for mutant in sample}
    listed = equivalent_mutants()
    killed = sorted(m for m, code in codes.items() if code in (1, 3))
    timeouts = sorted(m for m, code in codes.items() if code in TIMEOUTS)
    # "no tests" (5, 33): no test of the package even calls the function, so no test would notice: a survivor
    equivalent = sorted(m for m, code in codes.items() if code in (0, 5, 33) and m in listed)
    survived = sorted(m for m, code in codes.items() if code in (0, 5, 33) and m not in listed)
    unknown = sorted(set(codes) - set(killed) - set(timeouts) - set(equivalent) - set(survived))
    checked = len(codes) - len(unknown)
    result = {
        "package": name,
        "sampled": sample is not None,
        "mutants": len(codes),
        "checked": checked,
        "killed": len(killed),
        "equivalent": len(equivalent),
        "survived": survived,
        "timed out": timeouts,
        "not checked": {m: codes[m] for m in unknown},  # no tests, skipped, not reached yet: named, never hidden
        "score": (len(killed) + len(equivalent)) / checked if checked else 0.0,
        "score counting timeouts as kills": (len(killed) + len(equivalent) + len(timeouts)) / checked if checked else 0.0,
        "95% interval": list(wilson_interval(len(killed) + len(equivalent), checked)),
    }
    (SCRATCH / name / "score.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def summary_line(result: dict) -> str:
    low, high = result["95% interval"]
    sampled = " sampled" if result["sampled"] else ""
    return (f"{result['package']:<10} {result['checked']:>5} of {result['mutants']}{sampled} mutants checked: "
            f"{result['killed']} killed, {result['equivalent']} equivalent, {len(result['survived'])} survived, "
            f"{len(result['timed out'])} timed out -> {result['score']:.1%} (95% interval {low:.1%} to {high:.1%}; "
            f"{result['score counting timeouts as kills']:.1%} counting timeouts as kills)")


def run(name: str, max_children: int, resume: bool = False, only: tuple[str, ...] = (), sample: int = 0) -> dict:
    """Run mutmut for one package (in a fresh scratch copy, or going on with an interrupted run) and score it;
    `only`: patterns of mutant names to run (fnmatch), for example ``minilm.tokenizer.bpe.*``; `sample`: check only
    that many mutants, drawn at random (see `draw_sample`), and score those."""
    scratch = SCRATCH / name if resume and (SCRATCH / name / "mutants").exists() else prepare(name)
    env = scratch_environment(scratch)
    if sample:
        if not results(scratch):
            generate(scratch, env)
        codes = results(scratch)
        drawn = draw_sample(list(codes), sample)
        (scratch / "sample.json").write_text(json.dumps(drawn, indent=0) + "\n", encoding="utf-8")
        # named mutants are rerun by mutmut even when settled: name only those still to check, and the timeouts
        # (a busy machine may have caused them; one that loops forever times out again)
        only = tuple(mutant for mutant in drawn if codes[mutant] is None or codes[mutant] in TIMEOUTS)
        if not only:
            return score(name)
    elif (scratch / "sample.json").exists():
        (scratch / "sample.json").unlink()  # going on with a sampled run as a whole one
    subprocess.run([*MUTMUT, "run", "--max-children", str(max_children), *only], cwd=scratch, env=env)
    return score(name)


def recheck(name: str, max_children: int) -> dict:
    """After adding tests: check a finished run's survivors and timeouts again, in a fresh scratch copy of the
    working tree, and keep its kills (tests were added, so a killed mutant stays killed). The run's sample, if it
    had one, is kept as it was. Mutants whose function changed since are checked again too."""
    old = SCRATCH / f"{name}.previous"  # the finished run, moved aside: prepare() starts a fresh one
    if old.exists():
        shutil.rmtree(old)
    (SCRATCH / name).rename(old)
    before = results(old)
    sample_file = old / "sample.json"
    sample = json.loads(sample_file.read_text(encoding="utf-8")) if sample_file.exists() else sorted(before)
    killed = {mutant for mutant in sample if before.get(mutant) in (1, 3)}
    scratch = prepare(name)
    env = scratch_environment(scratch)
    generate(scratch, env)
    now = results(scratch)
    sample = [mutant for mutant in sample if mutant in now]
    for meta in (scratch / "mutants").rglob("*.meta"):  # carry the kills over into mutmut's own records
        data = json.loads(meta.read_text(encoding="utf-8"))
        old_meta = old / meta.relative_to(scratch)
        old_hashes = json.loads(old_meta.read_text(encoding="utf-8"))["hash_by_function_name"] if old_meta.exists() else {}
        for mutant in data["exit_code_by_key"]:
            function = mutant.rsplit(".", 1)[-1].split("__mutmut_")[0]
            unchanged = old_hashes.get(function) == data["hash_by_function_name"].get(function)
            if mutant in killed and unchanged:
                data["exit_code_by_key"][mutant] = before[mutant]
        meta.write_text(json.dumps(data), encoding="utf-8")
    if sample_file.exists() or len(sample) < len(now):
        (scratch / "sample.json").write_text(json.dumps(sample, indent=0) + "\n", encoding="utf-8")
    now = results(scratch)
    again = [mutant for mutant in sample if now[mutant] is None]
    if again:
        subprocess.run([*MUTMUT, "run", "--max-children", str(max_children), *again], cwd=scratch, env=env)
    return score(name)


def show(name: str) -> None:
    """Print each survivor's diff, to read before killing it with a test or listing it as equivalent."""
    scratch = SCRATCH / name
    for mutant in score(name)["survived"]:
        diff = subprocess.run([*MUTMUT, "show", mutant], cwd=scratch, capture_output=True, text=True).stdout
        print(f"## {mutant}\n{diff}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", metavar="package", help=f"which of {', '.join(PACKAGES)} (default all)")
    parser.add_argument("--report", action="store_true", help="score finished runs again, without running")
    parser.add_argument("--show", action="store_true", help="print the survivors' diffs of finished runs")
    parser.add_argument("--resume", action="store_true", help="go on with an interrupted run instead of starting afresh")
    parser.add_argument("--only", nargs="+", default=(), metavar="PATTERN",
                        help="run only the mutants whose names match (fnmatch), e.g. 'minilm.tokenizer.bpe.*'")
    parser.add_argument("--recheck", action="store_true",
                        help="after adding tests: check a finished run's survivors and timeouts again, keep its kills")
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="check N mutants drawn at random (seeded) and score those, with a 95%% interval")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    args = parser.parse_args()
    unknown = [name for name in args.packages if name not in PACKAGES]
    if unknown:
        parser.error(f"no package named {', '.join(unknown)}; choose from {', '.join(PACKAGES)}")
    for name in args.packages or list(PACKAGES):
        if args.show:
            show(name)
        elif args.recheck:
            print(summary_line(recheck(name, args.max_children)))
        else:
            print(summary_line(score(name) if args.report else run(name, args.max_children, args.resume, tuple(args.only), args.sample)))


if __name__ == "__main__":
    main()
