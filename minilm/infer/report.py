"""Stage 9's results as tables, a figure, terminal lines and a section of the speedrun's report."""

from __future__ import annotations

import json
from pathlib import Path

from minilm.cache import Artifact, shown_path
from minilm.report import Section, markdown_table, text_table

RESULTS = "results.json"


def results(artifact: Artifact) -> dict:
    """Stage 9's results.json."""
    return json.loads((artifact.path / RESULTS).read_text(encoding="utf-8"))


def speed_rows(artifact: Artifact) -> list[dict]:
    """Tokens per second of greedy generation, each way, with the ratio to the way without a cache."""
    rows = results(artifact)["speed"]["rows"]
    slowest = rows[0]["tokens_per_second"]
    return [{"generation": r["generation"], "tokens": r["tokens"], "tokens/s": f"{r['tokens_per_second']:,.0f}",
             "against no cache": f"{r['tokens_per_second'] / slowest:.1f}x"} for r in rows]


def speculative_rows(artifact: Artifact) -> list[dict]:
    """Speculative decoding at each lookahead: same tokens?, acceptance, target passes per token, speed-up."""
    found = results(artifact)["speculative"]
    return [{"lookahead": r["lookahead"], "same tokens as the chat model": "yes" if r["same_tokens"] else "NO",
             "drafted tokens accepted": f"{r['acceptance_rate']:.0%}",
             "chat-model passes per token": f"{r['target_calls_per_token']:.2f}",
             "wall-clock speed-up": f"{r['speedup']:.2f}x"} for r in found["by_lookahead"]]


def quantization_rows(artifact: Artifact) -> list[dict]:
    """Each precision: weight bytes, tokens/s, bits per byte per domain, exact match, answers equal to fp32's."""
    return [{"weights": r["weights"], "MB": f"{r['bytes'] / 1e6:.2f}", "tokens/s": f"{r['tokens_per_second']:,.0f}",
             **{f"bpb {domain}": f"{bpb:.4f}" for domain, bpb in r["bits_per_byte"].items()},
             "exact match": f"{r['exact_match']:.3f} ± {1.96 * r['exact_match_stderr']:.3f}",
             "answers as float32's": f"{r['same_answers_as_float32']:.0%}"}
            for r in results(artifact)["quantization"]["rows"]]


def export_rows(artifact: Artifact) -> list[dict]:
    """What the Hugging Face export was checked on, and how much differed (all zeros when it is right)."""
    e = results(artifact)["export"]
    return [{"check": "tokenizer.json ids = minilm's", "compared": f"{e['texts']} validation documents",
             "different": e["texts_with_different_ids"]},
            {"check": "apply_chat_template ids = encode_chat's", "compared": f"{e['chats']} conversations",
             "different": e["chats_with_different_ids"]},
            {"check": "transformers' greedy generate = minilm's", "compared": f"{e['answers']} answers",
             "different": e["different_answers"]}]


def plot(r: dict, path: Path | None = None, axes=None):
    """Tokens per second each way (left) and speculative decoding by lookahead (right)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    names, rates = zip(*((row["generation"], row["tokens_per_second"]) for row in r["speed"]["rows"]))
    axes[0].barh(names, rates, color="tab:blue")
    axes[0].invert_yaxis()
    axes[0].set_xlabel("tokens per second (greedy)")
    axes[0].set_title(f"generation, {r['model']} model")
    by_k = r["speculative"]["by_lookahead"]
    ks = [v["lookahead"] for v in by_k]
    axes[1].plot(ks, [v["speedup"] for v in by_k], "o-", label="wall-clock speed-up")
    axes[1].plot(ks, [v["acceptance_rate"] for v in by_k], "s--", label="drafted tokens accepted")
    axes[1].plot(ks, [1 / v["target_calls_per_token"] for v in by_k], "^:", label="tokens per chat-model pass")
    axes[1].axhline(1.0, color="grey", lw=0.8)
    axes[1].set_xlabel("lookahead (tokens drafted per round)")
    axes[1].set_title("speculative decoding")
    axes[1].legend(fontsize=8)
    if path is not None:
        axes[0].figure.tight_layout()
        axes[0].figure.savefig(path, dpi=120)
        plt.close(axes[0].figure)
    return axes


def produced(summary: dict) -> str:
    return f"the {summary['model']} model: KV cache {summary['speedup']:.1f}x faster than none; draft, int8, export"


def describe(artifact: Artifact) -> str:
    """Stage 9's figures, for the terminal."""
    r = results(artifact)
    best = max(r["speculative"]["by_lookahead"], key=lambda row: row["speedup"])
    fp32, int8 = r["quantization"]["rows"][0], r["quantization"]["rows"][2]
    e = r["export"]
    return (f"stage 9 (inference): the {r['model']} chat model\n"
            + "\n".join("  " + line for line in text_table(speed_rows(artifact)))
            + f"\n  speculative decoding, best lookahead {best['lookahead']}: {best['speedup']:.2f}x, "
              f"{best['acceptance_rate']:.0%} of drafted tokens accepted, same tokens: {best['same_tokens']}"
            + f"\n  int8 weights: {int8['bytes'] / fp32['bytes']:.0%} of float32's bytes, "
              f"{int8['same_answers_as_float32']:.0%} of answers unchanged"
            + f"\n  Hugging Face export: {sum(row['different'] for row in export_rows(artifact))} differences in "
              f"{e['texts'] + e['chats'] + e['answers']} checks"
            + f"\n  outputs in {shown_path(artifact.path)}/ (talk to the model: python -m minilm chat; "
              "python -m minilm serve)")


def report_section(artifact: Artifact, report_dir: Path) -> Section:
    """Stage 9's part of the speedrun report."""
    r = results(artifact)
    report_dir.mkdir(parents=True, exist_ok=True)
    figure = report_dir / "inference.png"
    plot(r, figure)
    draft = r["draft"]
    body = (f"The chat model the raters rated best, **{r['model']}** ({r['parameters']:,} parameters), made fast. "
            f"Greedy generation of {r['speed']['new_tokens']} tokens after a prompt of {r['speed']['prompt_tokens']}; "
            f"the time to the first token is {r['speed']['time_to_first_token_ms']:.1f} ms:\n\n"
            + markdown_table(speed_rows(artifact))
            + f"\nSpeculative decoding with a draft of {draft['parameters']:,} parameters (the chat model's first "
              f"{draft['layers']} of its blocks, its embedding and head, trained on its answers to "
              f"{draft['conversations']:,} prompts), greedy, on {r['speculative']['prompts']} test prompts:\n\n"
            + markdown_table(speculative_rows(artifact))
            + f"\nThe weights in float32, in bfloat16, and in int8 (bits per byte on each domain's validation "
              f"text; the answers to {r['quantization']['answers']} test prompts):\n\n"
            + markdown_table(quantization_rows(artifact))
            + f"\nThe export, a Hugging Face folder ({', '.join(r['export']['files'])}), loaded back by transformers "
              f"as {', '.join(r['export']['architecture'])}:\n\n" + markdown_table(export_rows(artifact))
            + "\nTalk to the model: `python -m minilm chat` in the terminal, or `python -m minilm serve` and open "
              "http://127.0.0.1:8000 (an OpenAI-compatible API at /v1).\n")
    speed, sizes = r["speed"]["rows"], r["quantization"]["rows"]
    headline = {"KV cache": f"{speed[1]['tokens_per_second'] / speed[0]['tokens_per_second']:.1f}x faster",
                "int8 weights": f"{sizes[2]['bytes'] / sizes[0]['bytes']:.0%} of the bytes"}
    return Section(title="Stage 9: inference and deployment", headline=headline, body=body, figures=[figure])
