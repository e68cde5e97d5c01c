"""Stage 1's figures and its section of the speedrun report, read from the stage's stats.json.

The centre of the section is the filter table: every preparation step scored against the defects
the generators planted (`minilm.data.truth.scoring`). Its columns are laid out so that they add up
on the page: found and planted give the recall; true, false and unlabelled flags add up to what the
step flagged, and true and false give the precision.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from minilm.cache import Artifact
from minilm.data.documents import DOMAINS
from minilm.data.stage import load_stats
from minilm.data.truth.scoring import QUALITY_DEFECTS

FILTER_COLUMNS = ["defect", "step", "planted", "found", "recall", "flagged", "true", "false", "unlabelled", "precision"]
FILTER_LEGEND = (
    "planted: defects in the step's input; found: planted defects the step caught, each counted once "
    "(recall = found / planted). flagged: everything the step removed, cut or masked = true (a planted defect) "
    "+ false (text known to be clean) + unlabelled (real documentation and code, where the truth is not known); "
    "precision = true / (true + false). Flags are counted in the step's unit (documents for quality and dedup, "
    "lines or spans for the others), so a planted line cut twice counts twice in true and once in found."
)
SHARED_MARK = " ¹"


def produced(summary: dict) -> str:
    """What the stage made, in a few words (for the line that ends the stage)."""
    docs = summary["documents"]
    return (f"{docs['train']:,} train documents (after the domain mixture, which repeats some) and {docs['val']:,} "
            f"validation documents, {summary['train_bytes'] / 1e6:.1f} MB of training text, from {docs['gathered']:,} gathered")


def describe(artifact: Artifact) -> str:
    """A few lines for the terminal."""
    s = artifact.summary
    docs = s["documents"]
    shares = ", ".join(f"{domain} {s['train_shares'].get(domain, 0):.1%}" for domain in DOMAINS)
    return (
        f"stage 1 (data): {docs['gathered']} documents gathered -> {docs['train']} train (after the domain mixture, which "
        f"repeats some), {docs['val']} validation\n"
        f"  train {s['train_bytes'] / 1e6:.1f} MB, shares of its bytes: {shares}\n"
        f"  languages: identified with accuracy {s['language_accuracy']:.3f}; train shares "
        + ", ".join(f"{lang} {share:.1%}" for lang, share in s["language_shares"].items()) + "\n"
        f"  filters: precision >= {s['min_precision']:.3f}, recall >= {s['min_recall']:.3f} against the planted truth\n"
        f"  job-gender skew (stereotyped jobs): {s['bias_skew']['before']} -> {s['bias_skew']['after']}\n"
        f"  built in {s['seconds']} s; outputs in data/runs/{artifact.manifest['preset']}/data/"
    )


def filter_rows(scores: list[dict]) -> list[dict]:
    """The rows of the filter table from the stage's scores (`Score.row()` dicts).

    The quality step answers for two kinds of defect at once (it removes junk and generated documents
    without saying which it took them for), so its rows share one set of flags;
    they are marked with SHARED_MARK.
    """
    rows = []
    for score in scores:
        shared = score["defect"] in QUALITY_DEFECTS
        rows.append({
            "defect": score["defect"],
            "step": score["step"] + (SHARED_MARK if shared else ""),
            "planted": f"{score['planted']:,}",
            "found": f"{score['found']:,}",
            "recall": f"{score['recall']:.3f}",
            "flagged": f"{score['flagged'] + score['unlabelled']:,}",
            "true": f"{score['hits']:,}",
            "false": f"{score['flagged'] - score['hits']:,}",
            "unlabelled": f"{score['unlabelled']:,}",
            "precision": f"{score['precision']:.3f}",
        })
    return rows


def _counts(counts: dict[str, int]) -> str:
    """{"timeout": 2, "robots": 3} -> "timeout 2, robots 3" (or "none")."""
    return ", ".join(f"{key} {value:,}" for key, value in counts.items()) or "none"


def overview_figure(stats: dict, path: Path) -> Path:
    """Bytes per domain through the stage, and what each step removed or edited."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
    stages = ["gathered", "prepared", "train"]
    bottom = [0.0] * len(stages)
    for domain in DOMAINS:
        values = [stats["bytes"][s].get(domain, 0) / 1e6 for s in stages]
        left.bar(stages, values, bottom=bottom, label=domain)
        bottom = [b + v for b, v in zip(bottom, values)]
    left.set_ylabel("MB")
    left.set_title("bytes per domain")
    left.legend()
    removed = Counter()
    for step in stats["steps"]:
        removed[step["step"]] += step["removed"] + step["edits"]
    right.barh(list(removed), list(removed.values()), color="#35608f")
    right.set_title("documents removed + edits, per step")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def report_section(artifact: Artifact, report_dir: Path):
    """Stage 1's part of the speedrun report: the summary, the filter table and one figure."""
    from minilm.report import Section, markdown_table

    stats = load_stats(artifact)
    report_dir.mkdir(parents=True, exist_ok=True)
    figure = overview_figure(stats, report_dir / "data_overview.png")

    s = artifact.summary
    crawl = stats["crawl"]
    source_skips = "; ".join(f"{domain}: {_counts(counts)}" for domain, counts in stats["skipped"].items()) or "none"
    rows = filter_rows(stats["scores"])
    shared = [row for row in rows if row["step"].endswith(SHARED_MARK)]
    body = (
        describe(artifact).replace("\n", "  \n")
        + f"\n\nCrawl: {crawl.get('pages', 0):,} pages kept in {crawl.get('seconds', 0)} s; "
        + f"skipped: {_counts(crawl.get('skipped_by_reason', {}))}.  \n"
        + f"Sources skipped: {source_skips}.\n\n"
        + "Every filter scored against the defects the generators planted:\n\n"
        + markdown_table(rows, FILTER_COLUMNS)
        + "\n" + FILTER_LEGEND + "\n"
    )
    if shared:
        kinds = ", ".join(row["defect"] for row in shared)
        body += (f"\n¹ One step answers for {kinds} at once: it removes a document without naming the kind of "
                 f"defect it saw, so these {len(shared)} rows share one figure for flagged, true, false, unlabelled and "
                 "precision (true is the sum of their found); planted, found and recall are per kind.\n")
    return Section(
        title="Stage 1: data",
        headline={
            "train": f"{s['train_bytes'] / 1e6:.1f} MB",
            "filters (min P / R)": f"{s['min_precision']:.3f} / {s['min_recall']:.3f}",
            "bias skew": f"{s['bias_skew']['before']} -> {s['bias_skew']['after']}",
        },
        body=body,
        figures=[figure],
    )
