"""The report card: one markdown file with the run's times, a summary table, then a section per stage with its figures."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from minilm.cache import Artifact
from minilm.files import atomic_write


@dataclass
class Section:
    """One stage's part of the report: headline numbers, free markdown, and figure files beside the report."""

    title: str
    headline: dict[str, str]
    body: str = ""
    figures: list[Path] = field(default_factory=list)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A GitHub-flavoured markdown table from a list of dicts (columns in the first row's order)."""
    if not rows:
        return "_(empty)_\n"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def text_table(rows: list[dict]) -> list[str]:
    """`rows` as lines of aligned plain-text columns, for the terminal (the header first, in the first row's order)."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(row.get(c, ""))) for row in rows)) for c in columns}
    return ["  ".join(c.ljust(widths[c]) for c in columns)] + [
        "  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns) for row in rows]


def escape_markdown(text: str) -> str:
    """`text` shown as itself in markdown: its characters that would format (`*`, `_`, `#`, `<`, ...) escaped."""
    text = re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", text)
    return re.sub(r"^(\d+)([.)])|^([-+=])", lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", text)


def blockquote(text: str) -> str:
    """`text` as a markdown quote: one quoted paragraph per paragraph of the text (lines within one joined)."""
    paragraphs = [" ".join(paragraph.split()) for paragraph in re.split(r"\n\s*\n", text.strip())]
    return "\n>\n".join(f"> {escape_markdown(paragraph)}" for paragraph in paragraphs if paragraph)


def stage_times(stages: dict[str, Artifact]) -> list[dict]:
    """A row per stage: how long its build took (from its manifest, whichever run built it) and what this run did."""
    return [
        {
            "stage": name,
            "build time": f"{artifact.build_seconds:,.1f} s",
            "built on": artifact.manifest["created"][:16].replace("T", " "),
            "this run": f"reused the cache ({artifact.seconds:.1f} s)" if artifact.reused else f"built ({artifact.seconds:,.1f} s)",
        }
        for name, artifact in stages.items()
    ]


def write_report(path: Path, header: dict[str, str], times: list[dict], sections: list[Section]) -> Path:
    """Write the report atomically; figures are referenced relative to the report's folder."""
    path = Path(path)
    out = ["# minilm speedrun report\n\n"]
    out.append(markdown_table([{"": k, "value": v} for k, v in header.items()]))
    out.append("\n## Time\n\n")
    out.append(markdown_table(times))
    out.append("\n## Summary\n\n")
    summary = [{"stage": s.title, **{"result": "; ".join(f"{k}: {v}" for k, v in s.headline.items())}} for s in sections]
    out.append(markdown_table(summary))
    for section in sections:
        out.append(f"\n## {section.title}\n\n")
        out.append(section.body.rstrip() + "\n")
        for figure in section.figures:
            out.append(f"\n![{figure.stem}]({Path(figure).relative_to(path.parent).as_posix()})\n")
    atomic_write(path, "".join(out))
    return path


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")
