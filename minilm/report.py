"""The report card: one markdown file with a summary table, then a section per stage with its figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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


def write_report(path: Path, header: dict[str, str], sections: list[Section]) -> Path:
    """Write the report atomically; figures are referenced relative to the report's folder."""
    path = Path(path)
    out = ["# minilm speedrun report\n"]
    out.append(markdown_table([{"": k, "value": v} for k, v in header.items()]))
    out.append("\n## Summary\n")
    summary = [{"stage": s.title, **{"result": "; ".join(f"{k}: {v}" for k, v in s.headline.items())}} for s in sections]
    out.append(markdown_table(summary))
    for section in sections:
        out.append(f"\n## {section.title}\n")
        out.append(section.body.rstrip() + "\n")
        for figure in section.figures:
            out.append(f"\n![{figure.stem}]({Path(figure).relative_to(path.parent).as_posix()})\n")
    atomic_write(path, "".join(out))
    return path


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")
