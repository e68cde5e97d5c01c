"""What stage 8 shows of its result: the report card (every model by every benchmark, with 95%
intervals), for the terminal and for the speedrun's report. Nothing here changes what the stage
builds, so this module is left out of the stage's fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

from minilm.cache import Artifact, shown_path
from minilm.eval.metrics import interval
from minilm.plots import finish
from minilm.report import Section, markdown_table, text_table

# benchmark -> (the metric shown, what it is), in the card's order
SHOWN = {"cloze": ("acc", "cloze: which object fits (acc)"),
         "questions": ("acc", "story questions, multiple choice (acc)"),
         "answers": ("exact_match", "story questions, answered (exact match)")}


def results(artifact: Artifact) -> dict:
    from minilm.eval.stage import RESULTS

    return json.loads((artifact.path / RESULTS).read_text(encoding="utf-8"))


def _stderr(scores: dict, metric: str) -> float:
    return scores.get(f"{metric}_stderr", scores.get("stderr", 0.0))


def card_rows(artifact: Artifact) -> list[dict]:
    """One row per model: each benchmark's score with its 95% interval (value +- 1.96 standard errors)."""
    r = results(artifact)
    rows = []
    for name in r["order"]:
        row, scores = {"model": name}, r["models"][name]
        for task in r["benchmarks"]:
            s = scores[task]
            metric, label = SHOWN.get(task, ("bits_per_byte", f"bits per byte: {task.removeprefix('bpb:')}"))
            row[label] = f"{s[metric]:.3f} ± {1.96 * _stderr(s, metric):.3f}"
        rows.append(row)
    return rows


def contamination_rows(artifact: Artifact) -> list[dict]:
    """One row per benchmark: its documents, and the share that shares an uncommon 13-gram with the corpus."""
    r = results(artifact)
    return [{"benchmark": name, "documents": r["documents"][name],
             "sharing a 13-gram with the pretraining corpus": f"{r['contamination'][name]:.1%}"}
            for name in r["benchmarks"]]


def plot_card(r: dict, path: Path | None = None, axes=None):
    """The report card as two panels: the accuracy benchmarks (higher is better) and bits per byte on each
    domain (lower is better), one bar per model, with 95% intervals."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    groups = ([t for t in r["benchmarks"] if not t.startswith("bpb:")], [t for t in r["benchmarks"] if t.startswith("bpb:")])
    width = 0.8 / len(r["order"])
    for ax, tasks in zip(axes, groups):
        for i, name in enumerate(r["order"]):
            scores = r["models"][name]
            metrics = [SHOWN.get(t, ("bits_per_byte", ""))[0] for t in tasks]
            values = [scores[t][m] for t, m in zip(tasks, metrics)]
            errors = [1.96 * _stderr(scores[t], m) for t, m in zip(tasks, metrics)]
            ax.bar([j + (i - (len(r["order"]) - 1) / 2) * width for j in range(len(tasks))], values, width, yerr=errors,
                   label=name, capsize=2)
        ax.set_xticks(range(len(tasks)))
        ax.set_xticklabels([t.removeprefix("bpb:") for t in tasks])
    axes[0].set_ylabel("accuracy / exact match (higher is better)")
    axes[0].set_ylim(0, 1)
    axes[1].set_ylabel("bits per byte (lower is better)")
    axes[0].legend(fontsize=7, ncol=2)
    finish(axes[0].figure, path)
    return axes


def bias_rows(artifact: Artifact) -> list[dict]:
    """One row per probed model: CrowS-Pairs (the share of pairs where the job moves the model towards the
    stereotype, with its 95% interval; 50% is unbiased), the same without the control, and StereoSet's ss,
    lms and ICAT."""
    rows = []
    for name, p in results(artifact)["bias"].items():
        crows, stereo = p["crows"], p["stereoset"]
        rows.append({"model": name,
                     "CrowS-Pairs: stereotype preferred [95% CI]": f"{crows['share']:.1%} [{crows['low']:.1%}, "
                                                                  f"{crows['high']:.1%}]",
                     "without the control": f"{crows['raw']:.1%}",
                     "StereoSet ss": f"{stereo['ss']:.1f}", "ss without the control": f"{stereo['ss_raw']:.1f}",
                     "lms": f"{stereo['lms']:.1f}", "ICAT": f"{stereo['icat']:.1f}"})
    return rows


def gender_rows(artifact: Artifact) -> list[dict]:
    """One row per model: on the story questions, the score about heroines, about heroes, and the gap with its
    95% interval (an interval that holds 0 finds no gap)."""
    r = results(artifact)
    rows = []
    for name in r["order"]:
        row = {"model": name}
        for task in ("questions", "answers"):
            g = r["models"][name][task]["by_gender"]
            row[f"{SHOWN[task][1]}: heroines / heroes"] = f"{g['female']:.3f} / {g['male']:.3f}"
            low, high = interval(g["gap"], g["gap_stderr"])
            row[f"{task}: gap [95% CI]"] = f"{g['gap']:+.3f} [{low:+.3f}, {high:+.3f}]"
        rows.append(row)
    return rows


def produced(summary: dict) -> str:
    return (f"{len(summary['models'])} models ({', '.join(summary['models'])}) on {len(summary['documents'])} "
            f"benchmarks ({sum(summary['documents'].values()):,} documents)")


def describe(artifact: Artifact) -> str:
    """The report card, for the terminal."""
    lines = text_table(card_rows(artifact))
    crows = "; ".join(f"{row['model']} {row['CrowS-Pairs: stereotype preferred [95% CI]']}" for row in bias_rows(artifact))
    return ("stage 8 (evaluation): every model on unseen stories and documents, with 95% intervals\n"
            + "\n".join("  " + line for line in lines) + f"\n  bias (CrowS-Pairs, stereotype preferred; 50% is "
            f"unbiased): {crows}\n  outputs in {shown_path(artifact.path)}/")


def report_section(artifact: Artifact, report_dir: Path) -> Section:
    """Stage 8's part of the speedrun report: the report card, as a table and a figure."""
    r = results(artifact)
    report_dir.mkdir(parents=True, exist_ok=True)
    figure = report_dir / "evaluation.png"
    plot_card(r, figure)
    body = ("Every model the course trained, on benchmarks from stories and documents that no stage trained on, "
            "scored through log-likelihoods as lm-evaluation-harness scores them (the story questions' answers "
            "by exact match). Each score has its 95% interval.\n\n" + markdown_table(card_rows(artifact)) +
            "\nThe contamination scan (GPT-3's: a benchmark document that shares an uncommon 13-gram with the "
            "pretraining corpus may have been seen in training). The world is small on purpose: a held-out story still "
            "shares whole template sentences, with the same names, with some pretraining story, so nearly every "
            "story benchmark is flagged, though no test story was trained on (stage 6 keeps only the clean ones; "
            "here they are counted, as lm-eval reports its scans):\n\n" + markdown_table(contamination_rows(artifact)) +
            "\nThe bias planted in stage 1 (each stereotyped job's stereotyped gender in 80% of the stories), found in "
            "models trained on the stories with stage 1's debias step off and on, and in the course's base model:\n\n"
            + markdown_table(bias_rows(artifact)) + "\nThe story questions, split by the hero's gender:\n\n"
            + markdown_table(gender_rows(artifact)) + "\n")
    headline = {name: f"{r['models'][name]['cloze']['acc']:.2f}" for name in r["order"]}
    return Section(title="Stage 8: evaluation", headline=headline, body=body, figures=[figure])
