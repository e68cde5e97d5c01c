"""What stages 4 and 5 show of their result: lines for the terminal, the training curves, and their
sections of the speedrun's report.

Stage 4's section is about the model and what it learned (losses, text quality, samples); stage 5's
is about what the training ran on and how fast (device, number format, processes, throughput, MFU).
Nothing here changes what the stage builds, so this module is left out of the stage's fingerprint:
editing it retrains nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from minilm.cache import Artifact, shown_path
from minilm.hardware import Peak
from minilm.plots import finish
from minilm.report import Section, blockquote, escape_markdown, markdown_table
from minilm.train.stage import FIGURE

PRECISION_WORDS = {
    "fp32": "float32",
    "bf16": "bfloat16 autocast (matmuls in bfloat16; weights, optimizer and loss in float32)",
    "fp16": "float16 autocast with loss scaling (weights, optimizer and loss in float32)",
}


def plot_training(records: list[dict], path: Path | None = None, axes=None):
    """Three panels from a run's log: train and validation loss, the learning rate, tokens per second."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trains = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    loss_ax, lr_ax, speed_ax = axes
    loss_ax.plot([r["step"] for r in trains], [r["loss"] for r in trains], label="train (mean over log interval)")
    loss_ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="validation")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("cross-entropy (nats/token)")
    loss_ax.set_title("loss")
    loss_ax.legend(fontsize=8)
    lr_ax.plot([r["step"] for r in trains], [r["lr"] for r in trains], color="#c0504d")
    lr_ax.set_xlabel("step")
    lr_ax.set_title("learning rate (warmup, cosine)")
    speed_ax.plot([r["step"] for r in trains], [r["tokens_per_s"] for r in trains], color="#4f8f3a")
    speed_ax.set_xlabel("step")
    speed_ax.set_title("throughput (tokens/s)")
    speed_ax.set_ylim(bottom=0)
    finish(axes[0].figure, path)
    return axes


def produced(summary: dict) -> str:
    """What the stage made, in a few words (for the line that ends the stage)."""
    s = summary
    return (f"a GPT of {s['parameters'] / 1e6:.2f}M parameters trained for {s['steps']} steps "
            f"({_count(s['tokens'])} tokens), validation loss {s['val_loss']:.3f}")


def describe(artifact: Artifact) -> str:
    """A few lines for the terminal: stage 4's model and what it learned, then stage 5's hardware and speed."""
    return f"{_model_lines(artifact)}\n{_scaling_line(artifact)}\n  outputs in {shown_path(artifact.path)}/"


def _model_lines(artifact: Artifact) -> str:
    s, config = artifact.summary, artifact.manifest["config"]
    q = s.get("quality") or {}
    bpb = f", {s['val_bits_per_byte']:.3f} bits/byte" if s.get("val_bits_per_byte") is not None else ""
    quality = (f"\n  text quality of {config['final_samples']} samples: {q['vocabulary']:.1%} of the words are in the "
               f"story world's vocabulary, {q['grammar']:.1%} of the sentences are ones the story generator could "
               f"have written" if q else "")
    return (
        f"stage 4 (pretrain): a GPT of {config['n_layer']} blocks x {config['n_embd']} wide, context "
        f"{config['context']}, {s['parameters'] / 1e6:.2f}M parameters; {s['steps']} steps, {_count(s['tokens'])} tokens\n"
        f"  validation: loss {s['val_loss']:.3f}, perplexity {s['val_perplexity']:.1f}{bpb}{quality}"
    )


def _scaling_line(artifact: Artifact) -> str:
    s = artifact.summary
    processes = f"{s['world_size']} processes" if s["world_size"] > 1 else "1 process"
    return (f"stage 5 (scaling): {processes} on {s['device']} ({s.get('device_name', s['device'])}), {s['precision']}"
            f"{', compiled' if s.get('compiled') else ''}; {s['tokens_per_s']:,.0f} tokens/s, MFU {s['mfu']:.1%} of "
            f"{peak(s)}; trained in {s['train_seconds']:.0f} s")


def peak(summary: dict) -> Peak:
    """The peak FLOP/s of one device that the run's MFU is measured against."""
    return Peak(summary["peak_flops"], summary["peak_source"], summary.get("peak_raised_from"))


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


def report_section(artifact: Artifact, report_dir: Path) -> Section:
    """Stage 4's part of the speedrun report: the curves, the final figures and a few samples."""
    s = artifact.summary
    report_dir.mkdir(parents=True, exist_ok=True)
    figure = report_dir / "pretrain_curves.png"
    shutil.copyfile(artifact.path / FIGURE, figure)
    q = s.get("quality") or {}
    samples = "\n\n".join(blockquote(text) for text in s.get("samples", []))
    body = _model_lines(artifact).replace("\n", "  \n") + "\n\nSamples (temperature 0.8):\n\n" + samples + "\n"
    if q.get("rejected"):
        body += ("\nSentences the story generator could not have written word for word (most are garbled; a few "
                 "are good English that its templates do not cover):\n\n"
                 + "".join(f"- {escape_markdown(' '.join(sentence.split()))}\n" for sentence in q["rejected"][:3]))
    headline = {"val loss": f"{s['val_loss']:.3f}", "bits/byte": f"{s['val_bits_per_byte']:.3f}"
                if s.get("val_bits_per_byte") is not None else "n/a"}
    if q:
        headline["words in vocabulary / sentences the generator could write"] = f"{q['vocabulary']:.2f} / {q['grammar']:.2f}"
    return Section(title="Stage 4: pretraining", headline=headline, body=body, figures=[figure])


def scaling_section(artifact: Artifact, report_dir: Path) -> Section:
    """Stage 5's part of the speedrun report: what the pretraining ran on, and how much of it it used."""
    s, config = artifact.summary, artifact.manifest["config"]
    world = s["world_size"]
    processes = "1 (no communication)" if world == 1 else f"{world} ({'nccl' if 'cuda' in s['device'] else 'gloo'})"
    rows = [
        {"": "device", "value": f"{s['device']}: {s.get('device_name', s['device'])}"},
        {"": "number format", "value": PRECISION_WORDS.get(s["precision"], s["precision"])},
        {"": "processes", "value": processes},
        {"": "torch.compile", "value": "yes" if s.get("compiled") else "no"},
        {"": "tokens per step", "value": f"{config['batch_size'] * config['grad_accum'] * config['context'] * world:,} "
                                         f"({config['batch_size']} x {config['grad_accum']} windows of {config['context']} "
                                         f"tokens per process)"},
        {"": "throughput", "value": f"{s['tokens_per_s']:,.0f} tokens/s (median over the log intervals)"},
        {"": "MFU", "value": f"{s['mfu']:.1%} of the peak of each device"},
        {"": "peak", "value": str(peak(s))},
        {"": "training time", "value": f"{s['train_seconds']:.0f} s"},
    ]
    body = ("Stage 5 is the same training as stage 4, seen from the hardware: what it ran on, in which number "
            "format, in how many processes, and how much of the machine it used.\n\n" + markdown_table(rows))
    headline = {"on": f"{world} x {s['device']} ({s['precision']})", "tokens/s": f"{s['tokens_per_s']:,.0f}",
                "MFU": f"{s['mfu']:.1%}"}
    return Section(title="Stage 5: scaling", headline=headline, body=body)
