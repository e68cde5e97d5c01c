"""The notebooks' display helpers: what a table, a figure and a shortened text look like."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from minilm.display import markdown_cell, markdown_table, png, short  # noqa: E402


def test_markdown_table_escapes_formatting_and_fills_missing_cells():
    table = markdown_table([{"name": "a|b", "score": 0.12345}, {"name": "<|end|>*x*"}])
    assert table.splitlines() == [
        "| name | score |",
        "|---|---|",
        "| a\\|b | 0.123 |",
        "| &lt;\\|end\\|&gt;\\*x\\* |  |",
    ]
    assert markdown_table([]) == "(none)"
    assert markdown_table([{"a": 1, "b": 2}], columns=["b"]) == "| b |\n|---|\n| 2 |"
    assert markdown_table([{"x": 2.5}], cell=lambda v: f"{v:.1f}") == "| x |\n|---|\n| 2.5 |"
    assert markdown_cell("two\nlines") == "two↵lines"


def test_short_makes_one_line_and_cuts_with_an_ellipsis():
    assert short("  a\n\nb   c ") == "a b c"
    assert short("abcdefghij", limit=5) == "abcd…" and len(short("x" * 200)) == 90
    assert short("abcde", limit=5) == "abcde"


def test_png_is_a_closed_figure_of_at_most_64_colours():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow([[i * j for i in range(50)] for j in range(50)], cmap="viridis")
    data = png(fig)
    image = Image.open(io.BytesIO(data))
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and image.mode == "P"
    assert len(image.getcolors(256)) <= 64
    assert not plt.fignum_exists(fig.number)  # closed, so a notebook does not show it twice
