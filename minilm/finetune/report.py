"""What stage 6 shows of its result: lines for the terminal, the fine-tuning curves, and its section of
the speedrun's report. Nothing here changes what the stage builds, so this module is left out of
the stage's fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from minilm.cache import Artifact, shown_path
from minilm.plots import finish
from minilm.report import Section, escape_markdown, markdown_table, text_table


def plot_finetuning(logs: dict[str, list[dict]], path: Path | None = None, ax=None):
    """Training and validation loss (on the assistant's tokens only) of each fine-tuning run."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.4))
    for (name, records), colour in zip(logs.items(), ("#1f77b4", "#d62728", "#2ca02c")):
        trains = [r for r in records if r.get("kind") == "train"]
        evals = [r for r in records if r.get("kind") == "eval"]
        ax.plot([r["step"] for r in trains], [r["loss"] for r in trains], color=colour, alpha=0.6, label=f"{name}: train")
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", color=colour, label=f"{name}: validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy on the answers (nats/token)")
    ax.set_title("fine-tuning")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    finish(ax.figure, path)
    return ax


def results(artifact: Artifact) -> dict:
    from minilm.finetune.stage import RESULTS

    return json.loads((artifact.path / RESULTS).read_text(encoding="utf-8"))


def score_rows(artifact: Artifact) -> list[dict]:
    """One row per model: exact match per task family, trainable parameters, memory, time, forgetting."""
    r = results(artifact)
    rows = []
    for name in r["order"]:
        m = r["models"][name]
        row = {"model": name}
        row.update({family: f"{m['scores'].get(family, float('nan')):.2f}" for family in r["families"]})
        row["all"] = f"{m['scores']['all']:.2f}"
        row["trained parameters"] = f"{m['trainable']:,} ({m['trainable'] / m['total']:.2%})"
        row["training memory"] = f"{m['memory_bytes'] / 2**20:.0f} MiB" if "memory_bytes" in m else "-"
        row["training time"] = f"{m['seconds']:.0f} s" if m["seconds"] else "-"
        row["loss on pretraining data"] = f"{m['pretrain_val_loss']:.3f}"
        rows.append(row)
    return rows


DIRECTIONS = {"en_es": "English -> Spanish", "es_en": "Spanish -> English", "all": "both"}


def translation_rows(artifact: Artifact) -> list[dict]:
    """One row per model and translation direction (in `DIRECTIONS`' order; the JSON's keys are sorted): questions,
    exact match and chrF (0 to 100)."""
    r = results(artifact)
    return [{"model": name, "direction": shown, "questions": s["n"], "exact match": f"{s['exact_match']:.2f}",
             "chrF": f"{s['chrf']:.1f}"}
            for name in r["order"] for direction, shown in DIRECTIONS.items()
            if (s := r["models"][name].get("translation", {}).get(direction))]


CLASSIFIERS = {"bag_of_words": "bag of words (logistic regression)", "probe": "linear probe (base frozen)",
               "last_block": "last block + head", "full": "full fine-tuning", "lora": "LoRA + head"}


def classification_rows(artifact: Artifact) -> list[dict]:
    """The word-order classifiers: held-out accuracy, trained parameters and time of each method."""
    return [{"method": CLASSIFIERS.get(r["method"], r["method"]), "validation": f"{r['validation']:.3f}",
             "test": f"{r['test']:.3f}", "trained parameters": f"{r['trainable']:,}", "time": f"{r['seconds']:.0f} s"}
            for r in results(artifact)["classification"]]


def produced(summary: dict) -> str:
    shown = ", ".join(f"{name} {score:.2f}" for name, score in summary["exact_match"])
    return f"exact match on {summary['test_examples']} unseen questions: {shown}"


def describe(artifact: Artifact) -> str:
    """The score table, for the terminal."""
    lines = text_table(score_rows(artifact))
    best = max(results(artifact)["classification"], key=lambda r: r["validation"])
    rows = translation_rows(artifact)
    translation = text_table(rows) if rows else []  # results written before translation joined have none
    return ("stage 6 (fine-tuning): exact match on unseen stories\n" + "\n".join("  " + line for line in lines) +
            ("\n  translation, exact match and chrF:\n" + "\n".join("  " + line for line in translation)
             if translation else "") +
            f"\n  classifier (is this sentence in story order?): {CLASSIFIERS.get(best['method'], best['method'])} "
            f"{best['test']:.3f} on the test sentences; a bag of words cannot beat 0.5"
            f"\n  outputs in {shown_path(artifact.path)}/")


def report_section(artifact: Artifact, report_dir: Path) -> Section:
    """Stage 6's part of the speedrun report: the table, the curves and a few conversations."""
    from minilm.finetune.stage import CONVERSATIONS, FIGURE

    r = results(artifact)
    report_dir.mkdir(parents=True, exist_ok=True)
    figure = report_dir / "finetune_curves.png"
    shutil.copyfile(artifact.path / FIGURE, figure)
    examples = r["examples"]
    body = (f"Exact match on {examples['test']} questions about stories no stage trained on "
            f"(drawn from {examples['test_drawn']:,} candidates, of which {sum(examples['test_dropped'].values()):,} "
            f"were dropped for sharing a 13-gram with the training data). The base model is asked with solved examples in plain "
            f"text; SFT and LoRA in the chat format.\n\n" + markdown_table(score_rows(artifact)) + "\n")
    if translation := translation_rows(artifact):
        body += ("\nTranslation (a test sentence that a training conversation asks word for word is dropped too), "
                 "scored by exact match and by chrF (character n-gram F-score, 0 to 100, which gives credit for a "
                 "translation that is nearly right):\n\n" + markdown_table(translation) + "\n")
    body += ("\nClassification: is a sentence as the story grammar wrote it, or does it have two neighbouring words "
             "swapped? Both versions hold the same words, so a bag of words is at chance by construction.\n\n"
             + markdown_table(classification_rows(artifact)) + "\n")
    conversations = json.loads((artifact.path / CONVERSATIONS).read_text(encoding="utf-8"))["conversations"][:4]
    models = r["order"]
    for c in conversations:
        asked = " / ".join(escape_markdown(" ".join(m["content"].split())) for m in c["messages"] if m["role"] == "user")
        body += f"\n- **{c['family']}**: {asked}  \n  expected *{escape_markdown(c['expected'])}*; " + "; ".join(
            f"{name}: *{escape_markdown(c[name]) or '(nothing)'}*" for name in models) + "\n"
    headline = {name: f"{r['models'][name]['scores']['all']:.2f}" for name in r["order"]}
    return Section(title="Stage 6: fine-tuning", headline=headline, body=body, figures=[figure])
