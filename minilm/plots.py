"""Figures the notebooks and the report share. matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

def finish(figure, path=None) -> None:
    """Lay `figure` out; when `path` is given, save it there (90 dpi: a PNG of some tens of KB, GUIDE section 5)
    and close it, so that a report that draws many figures does not keep them all open."""
    figure.tight_layout()
    if path is not None:
        import matplotlib.pyplot as plt

        figure.savefig(path, dpi=90)
        plt.close(figure)


PIPELINE = [
    ("sources", "web · books · docs · code", 1),
    ("prepared data", "clean · filter · dedup", 1),
    ("tokenizer", "byte-level BPE", 2),
    ("token shards", "memory-mapped ids", 2),
    ("pretrained model", "transformer (03) + AdamW", 4),
    ("SFT model", "instruction tuning", 6),
    ("RLHF model", "reward model · PPO · DPO", 7),
    ("evaluation report", "benchmarks · bias · robustness", 8),
    ("chat / serving", "batching · int8 · OpenAI API", 9),
]


def draw_pipeline(ax=None, done: int = 1):
    """Draw the course's pipeline as a row of boxes; stages up to notebook `done` are filled in."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(12, 3.2))
    columns = 5
    for i, (name, detail, notebook) in enumerate(PIPELINE):
        row, col = divmod(i, columns)
        col = col if row == 0 else columns - 1 - col  # snake back on the second row
        x, y = col * 2.4, -row * 1.6
        built = notebook <= done
        ax.add_patch(FancyBboxPatch((x, y), 2.0, 1.0, boxstyle="round,pad=0.05",
                                    facecolor="#cfe3ff" if built else "#f2f2f2", edgecolor="#35608f"))
        ax.text(x + 1.0, y + 0.64, name, ha="center", va="center", fontsize=10, weight="bold")
        ax.text(x + 1.0, y + 0.3, f"{detail}\nnotebook {notebook:02d}", ha="center", va="center", fontsize=7.5, color="#333")
        if i + 1 < len(PIPELINE):
            next_row, next_col = divmod(i + 1, columns)
            next_col = next_col if next_row == 0 else columns - 1 - next_col
            nx, ny = next_col * 2.4, -next_row * 1.6
            if next_row == row:
                start, end = ((x + 2.05, y + 0.5), (nx - 0.05, ny + 0.5)) if nx > x else ((x - 0.05, y + 0.5), (nx + 2.05, ny + 0.5))
            else:
                start, end = (x + 1.0, y - 0.05), (nx + 1.0, ny + 1.05)
            ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color="#35608f"))
    ax.set_xlim(-0.2, columns * 2.4)
    ax.set_ylim(-1.8, 1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax
