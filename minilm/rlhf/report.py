"""What stage 7 shows of its result: the table, the plot of gold reward against KL with the reward-hacking
curve, lines for the terminal, and its section of the speedrun's report. Nothing here changes what the
stage builds, so this module is left out of the stage's fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from minilm.cache import Artifact, shown_path
from minilm.plots import finish
from minilm.report import Section, escape_markdown, markdown_table, text_table


def results(artifact: Artifact) -> dict:
    from minilm.rlhf.stage import RESULTS

    return json.loads((artifact.path / RESULTS).read_text(encoding="utf-8"))


def score_rows(r: dict) -> list[dict]:
    """One row per model: gold win rate against SFT with its interval, gold reward, reward-model score, KL."""
    rows = []
    for name in r["order"]:
        m = r["models"][name]
        won = (f"{m['win_rate']:.2f} [{m['low']:.2f}, {m['high']:.2f}]" if m.get("win_rate") is not None else "-")
        rows.append({"model": name, "gold win rate vs SFT [95% CI]": won,
                     "ties": f"{m['ties']:.2f}" if "ties" in m else "-",
                     "ties as half": f"{m['win_rate_ties_half']:.2f}" if "ties" in m else "-",
                     "gold reward": f"{m['gold_mean']:.3f}",
                     "clean and right": f"{m['best_share']:.2f}", "reward-model score": f"{m['rm_score']:.2f}",
                     "KL to SFT (nats/answer)": f"{m['kl']:.2f}"})  # fmt: skip
    return rows


def reward_kind_rows(r: dict) -> list[dict]:
    """The reward model's held-out accuracy by kind of pair (`preferences.accuracy_by_kind`), against the labels
    beside their ceiling and against the gold order, with the untrained likelihood's beside each."""
    rm = r["reward_model"]
    likelihood = {row["kind"]: row for row in rm["likelihood"]["by_kind"]}
    return [{"held-out pairs": row["kind"], "count": row["pairs"], "ceiling": f"{row['ceiling']:.3f}",
             "reward model": f"{row['accuracy']:.3f}", "likelihood": f"{likelihood[row['kind']]['accuracy']:.3f}",
             "reward model, gold order": f"{row['gold_order_accuracy']:.3f}",
             "likelihood, gold order": f"{likelihood[row['kind']]['gold_order_accuracy']:.3f}"}
            for row in rm["by_kind"]]  # fmt: skip


def plot_rlhf(r: dict, path: Path | None = None, axes=None):
    """Left: each model's gold reward against its KL to the SFT model. Right: reward hacking, the reward
    model's score and the gold reward of PPO without a KL penalty as it trains."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    left, right = axes
    for name in r["order"]:
        m = r["models"][name]
        left.scatter(m["kl"], m["gold_mean"], s=40)
        left.annotate(name, (m["kl"], m["gold_mean"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    curve = r["hacking"]
    left.plot([p["kl"] for p in curve], [p["gold"] for p in curve], ":", color="grey", label="PPO without KL penalty")
    left.set_xlabel("KL to the SFT model (nats per answer)")
    left.set_ylabel("gold reward (mean, test prompts)")
    left.set_title("what each method buys, and at what distance")
    left.legend(fontsize=8)
    steps = [p["iteration"] for p in curve]
    right.plot(steps, [p["rm_score"] for p in curve], "o-", color="#d62728", label="reward model's score")
    right.set_xlabel("PPO iteration (no KL penalty)")
    right.set_ylabel("reward-model score", color="#d62728")
    twin = right.twinx()
    twin.plot(steps, [p["gold"] for p in curve], "s-", color="#1f77b4", label="gold reward")
    twin.set_ylabel("gold reward", color="#1f77b4")
    right.set_title("reward hacking")
    finish(left.figure, path)
    return axes


def _number(value, digits: int = 2) -> str:
    """`value` rounded, or "-" where there is none (every comparison a tie, no held-out pair with a gold order)."""
    return "-" if value is None else f"{value:.{digits}f}"


def produced(summary: dict) -> str:
    shown = ", ".join(f"{name} {_number(rate[0])}" for name, rate in summary["gold_win_rate"].items())
    accuracy, ceiling = summary["reward_model_accuracy"]
    return f"gold win rate against SFT: {shown}; reward model {_number(accuracy)} (ceiling {_number(ceiling)})"


def _reward_line(r: dict) -> str:
    rm = r["reward_model"]
    return (f"reward model: held-out accuracy {_number(rm['accuracy'], 3)} against the annotators' labels (ceiling "
            f"{_number(rm['ceiling'], 3)}), {_number(rm['gold_order_accuracy'], 3)} against the gold order, on "
            f"{rm['ordered_heldout_pairs']} held-out pairs with a gold order; the SFT model's log-likelihood of the "
            f"answer, untrained: {_number(rm['likelihood']['accuracy'], 3)} and "
            f"{_number(rm['likelihood']['gold_order_accuracy'], 3)}")  # fmt: skip


def describe(artifact: Artifact) -> str:
    """The table, for the terminal."""
    r = results(artifact)
    lines = text_table(score_rows(r))
    return (f"stage 7 (RLHF): answers sampled on {r['prompts']['test']} unseen prompts, judged by the gold reward\n"
            + "\n".join("  " + line for line in lines) + f"\n  {_reward_line(r)}"
            f"\n  outputs in {shown_path(artifact.path)}/")


def report_section(artifact: Artifact, report_dir: Path) -> Section:
    """Stage 7's part of the speedrun report: the table, the plot, and the same prompts answered by each model."""
    from minilm.rlhf.stage import FIGURE, SAMPLES

    r = results(artifact)
    report_dir.mkdir(parents=True, exist_ok=True)
    figure = report_dir / "rlhf.png"
    shutil.copyfile(artifact.path / FIGURE, figure)
    body = (f"Every model answers the {r['prompts']['test']} test prompts (stories no stage trained on) at temperature "
            f"1; the gold reward, which training never saw, judges each answer. The win rate compares each answer "
            f"with the SFT model's answer to the same prompt, among the comparisons that have a winner (the exact judge "
            f"ties whenever both answers are clean and right: the tie share, and the rate with ties as half a win, "
            f"stand beside it), with a bootstrap 95% interval over the prompts.\n\n" + markdown_table(score_rows(r)) + f"\n\n{_reward_line(r)}.\n")
    if r["reward_model"]["by_kind"]:
        body += ("\nThe reward model's accuracy by what separates a pair's answers (against the labels, and against the gold "
                 "order), beside the untrained likelihood's:\n\n" + markdown_table(reward_kind_rows(r)) + "\n")
    samples = json.loads((artifact.path / SAMPLES).read_text(encoding="utf-8"))["samples"][:4]
    for s in samples:
        asked = " / ".join(escape_markdown(" ".join(m["content"].split())) for m in s["messages"] if m["role"] == "user")
        body += f"\n- **{s['family']}**: {asked[-200:]}  \n  expected *{escape_markdown(s['expected'])}*; " + "; ".join(
            f"{name}: *{escape_markdown(s[name]) or '(nothing)'}*" for name in r["order"]) + "\n"
    headline = {name: _number(m["win_rate"]) for name, m in r["models"].items() if "win_rate" in m}
    return Section(title="Stage 7: RLHF", headline=headline, body=body, figures=[figure])
