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
         "answers": ("exact_match", "story questions, answered (exact match)"),
         "instructions": ("exact_match", "stage 6's instructions (exact match)")}


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


def language_rows(artifact: Artifact) -> list[dict]:
    """Two rows per model, English then Spanish: bits per byte on held-out test stories with its 95% interval
    (value +- 1.96 standard errors, as on the card), the stories and bytes scored, and on the Spanish row the
    difference from English with its paired interval.

    The stories are parallel, the Spanish one a sentence-for-sentence translation of the English one, so the two
    rows measure the same content in two languages: the gap is what the model knows less of Spanish (what the
    Spanish share of pretraining bought, or did not), not a difference between harder and easier stories."""
    from minilm.eval.tasks import LANGUAGE_NAMES

    r = results(artifact)
    rows = []
    for name in r["order"]:
        scores = r["languages"][name]
        for language in LANGUAGE_NAMES:
            s, gap = scores[language], scores["gap"]
            rows.append({"model": name, "language": language, "stories": s["n"], "bytes": f"{s['bytes']:,}",
                         "bits per byte": f"{s['bits_per_byte']:.3f} ± {1.96 * s['stderr']:.3f}",
                         "minus English (paired)": "" if language == LANGUAGE_NAMES[0] else
                         f"{gap['bits_per_byte']:+.3f} ± {1.96 * gap['stderr']:.3f}"})
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


def family_rows(artifact: Artifact) -> list[dict]:
    """One row per model: exact match on stage 6's test examples of each task family, with its 95% interval."""
    r = results(artifact)
    rows = []
    for name in r["order"]:
        row = {"model": name}
        for family, s in r["models"][name]["instructions"]["by_family"].items():
            row[family] = f"{s['exact_match']:.2f} ± {1.96 * s['stderr']:.2f}"
        rows.append(row)
    return rows


def robustness_rows(artifact: Artifact) -> list[dict]:
    """One row per model: exact match on the story questions as written, each CheckList test's failure rate with
    its 95% interval (MFT: wrong answers to templated questions; INV: the answer changed; DIR: the answer did
    not change with the fact), and the worst case over the invariance perturbations (HELM)."""
    r = results(artifact)
    rows = []
    for name in r["order"]:
        checks = r["robustness"][name]
        row = {"model": name, "exact match": f"{checks['original']['exact_match']:.2f}"}
        for test, t in checks["tests"].items():
            low, high = interval(t["failure_rate"], t["stderr"])
            row[f"{t['kind']}: {test}"] = f"{t['failure_rate']:.2f} [{max(0.0, low):.2f}, {min(1.0, high):.2f}]"
        row["worst case"] = f"{checks['worst_case']['exact_match']:.2f}"
        rows.append(row)
    return rows


def human_rows(artifact: Artifact) -> list[dict]:
    """One row per model, best first: its Bradley-Terry rating from the simulated raters' votes with the 95%
    bootstrap interval, its online Elo rating with the range that the order of the votes alone gives it, and
    its mean gold reward on the rated prompts."""
    h = results(artifact)["human"]
    rows = []
    for name, rating in sorted(h["ratings"].items(), key=lambda item: -item[1]):  # the file's keys are sorted by name
        i, (low, high) = h["intervals"][name], h["elo_order_spread"][name]
        rows.append({"model": name, "Bradley-Terry [95% CI]": f"{rating:.0f} [{i['lower']:.0f}, {i['upper']:.0f}]",
                     "Elo (range over vote orders)": f"{h['elo'][name]:.0f} ({low:.0f} to {high:.0f})",
                     "mean gold reward": f"{h['gold'][name]:.2f}"})
    return rows


def rater_rows(artifact: Artifact) -> list[dict]:
    """The raters checked: agreement and Cohen's kappa between pairs of raters, and each rater's share of decided
    votes won by the left answer with its 95% interval (0.5 is unbiased)."""
    h = results(artifact)["human"]
    rows = [{"check": f"agreement, {pair}", "value": f"{a['agreement']:.2f}, kappa {a['kappa']:.2f}",
             "on": f"{a['matchups']} matchups"} for pair, a in h["agreement"].items()]
    for rater, p in h["position_bias"].items():
        low, high = p["interval"]
        rows.append({"check": f"left answer preferred, {rater}", "value": f"{p['left_share']:.2f} [{low:.2f}, {high:.2f}]",
                     "on": f"{p['decided']} decided votes"})
    return rows


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


def bbq_rows(artifact: Artifact) -> list[dict]:
    """One row per probed model: BBQ's accuracy on ambiguous and disambiguated contexts (the latter split by
    whether the answer fits the stereotype) and its two bias scores with their 95% intervals (0 is unbiased)."""
    rows = []
    for name, p in results(artifact)["bias"].items():
        b = p["bbq"]
        row = {"model": name, "accuracy: ambiguous": f"{b['acc_ambiguous']:.1f}",
               "disambiguated: fits / against the stereotype": f"{b['acc_stereotypical']:.1f} / {b['acc_anti']:.1f}"}
        for key, label in (("bias_ambiguous", "bias, ambiguous"), ("bias_disambiguated", "bias, disambiguated")):
            low, high = b[f"{key}_interval"]
            row[f"{label} [95% CI]"] = f"{b[key]:+.1f} [{low:+.1f}, {high:+.1f}]"
        rows.append(row)
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
    lines = text_table(card_rows(artifact)) + [""] + text_table(language_rows(artifact))
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
            "\nBits per byte per language, on held-out test stories told in English and the same stories translated "
            "into Spanish (parallel, so both rows measure the same content; the difference is paired over the "
            "stories):\n\n" + markdown_table(language_rows(artifact)) +
            "\nThe contamination scan (GPT-3's: a benchmark document that shares an uncommon 13-gram with the "
            "pretraining corpus may have been seen in training). The world is small on purpose: a held-out story still "
            "shares whole template sentences, with the same names, with some pretraining story, so nearly every "
            "story benchmark is flagged, though no test story was trained on (stage 6 keeps only the clean ones; "
            "here they are counted, as lm-eval reports its scans):\n\n" + markdown_table(contamination_rows(artifact)) +
            "\nThe bias planted in stage 1 (each stereotyped job's stereotyped gender in 90% of the stories), found in "
            "models trained on the stories with stage 1's debias step off and on, and in the course's base model:\n\n"
            + markdown_table(bias_rows(artifact)) + "\nBBQ: who has the stereotyped job, when the story does not say "
            "(ambiguous) and when it does (disambiguated); bias scores from -100 to 100, 0 unbiased:\n\n"
            + markdown_table(bbq_rows(artifact)) + "\nStage 6's instructions, by task family (exact match, the base "
            "model few-shot):\n\n" + markdown_table(family_rows(artifact)) + "\nRobustness (CheckList) on the "
            "answered story questions: the failure rate of each test with its 95% interval, and the exact match "
            "when every perturbed form of a question must be answered rightly (HELM's worst case):\n\n"
            + markdown_table(robustness_rows(artifact)) + "\nA round of pairwise ratings of the models' replies to "
            f"stage 6's instructions ({r['human']['prompts']} prompts, every pair of models in both orders), voted "
            "by two simulated raters who read the gold reward through noise (the second leans to the left answer), "
            "as Chatbot Arena rates models: Bradley-Terry ratings with bootstrap intervals, and online Elo:\n\n"
            + markdown_table(human_rows(artifact)) + "\n" + markdown_table(rater_rows(artifact))
            + "\nThe story questions, split by the hero's gender:\n\n"
            + markdown_table(gender_rows(artifact)) + "\n")
    headline = {name: f"{r['models'][name]['cloze']['acc']:.2f}" for name in r["order"]}
    return Section(title="Stage 8: evaluation", headline=headline, body=body, figures=[figure])
