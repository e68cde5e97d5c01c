"""How the notebooks show things: tables, figures and long text, in one place.

Each notebook imports these instead of defining them again, so that a table looks the same in every
stage and a fix lands everywhere at once. They only format and display; nothing here computes a
number that a notebook reports.
"""

from __future__ import annotations

import io
from typing import Callable

from PIL import Image as PILImage

# Characters that Markdown would read as formatting (or HTML) inside a table cell, and what shows them as text.
ESCAPES = {ch: "\\" + ch for ch in "\\`*_[]|$"} | {"<": "&lt;", ">": "&gt;", "\n": "↵"}


def markdown_cell(value) -> str:
    """`value` as the text of a Markdown table cell: floats to 3 decimals, formatting characters escaped."""
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return "".join(ESCAPES.get(ch, ch) for ch in text)


def markdown_table(rows: list[dict], columns: list[str] | None = None, cell: Callable[[object], str] = markdown_cell) -> str:
    """`rows` (dicts) as a Markdown table with `columns` (default: the first row's keys), each value through `cell`.

    A missing value is an empty cell; no rows give the line "(none)" rather than a table without a header."""
    if not rows:
        return "(none)"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def show_table(rows: list[dict], columns: list[str] | None = None, cell: Callable[[object], str] = markdown_cell) -> None:
    """Display `rows` as a table in the notebook (`markdown_table`)."""
    from IPython.display import Markdown, display

    display(Markdown(markdown_table(rows, columns, cell)))


def png(fig, colours: int = 64) -> bytes:
    """`fig` as a PNG of at most `colours` colours, and closed: a plot looks the same with 64 colours, and the
    notebook that stores it stays small on disk."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    full = io.BytesIO()
    fig.savefig(full, format="png")
    plt.close(fig)
    small = io.BytesIO()
    quantized = PILImage.open(full).convert("RGB").quantize(colours, method=PILImage.Quantize.MEDIANCUT)
    quantized.save(small, format="png", optimize=True)
    return small.getvalue()


def show(fig) -> None:
    """Display a matplotlib figure in the notebook (`png`)."""
    from IPython.display import Image, display

    display(Image(png(fig)))


def short(text: str, limit: int = 90) -> str:
    """`text` on one line (runs of spaces and line breaks made one space), cut to `limit` characters with "…"."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
