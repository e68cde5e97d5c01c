"""Simulated annotators: preference pairs whose truth we know.

RLHF's reward model learns from people who compare two answers to the same prompt and say which
is better. For a prompt, we sample several responses from the stage-6 model, and simulated
annotators label every pair of them. Each pair is labelled by one annotator, in three steps:

1. *Who labels.* With probability `disagree_share` an annotator with another rubric, who prefers
   longer answers (`verbose_reward`: the gold reward with its concise cost turned into a bonus of
   the same size); otherwise one who shares the world's values (`minilm.rlhf.gold.gold_reward`).
2. *The Bradley-Terry choice.* The annotator prefers response a over b with probability
   sigmoid((r_a - r_b) / temperature) of their rubric's rewards: two answers of close reward are
   a coin toss, far apart a sure call. This is the model that the reward model's loss assumes
   (-log sigmoid(r_chosen - r_rejected)), so a reward model can in principle recover the rewards.
3. *Noise.* With probability `noise` the label is flipped (a slip, a misread pair): noise 0.5
   makes the labels pure chance.

So P(a is chosen) = (1 - noise) q + noise (1 - q), with q = (1 - d) sigmoid(dgold / T) +
d sigmoid(dverbose / T) (`label_probability`).

**The format.** `label_pairs` writes TRL's explicit-prompt conversational preference format:
{"prompt": [the conversation up to the last user turn, system message included], "chosen":
[{"role": "assistant", "content": ...}], "rejected": [...]}. Beside them, for evaluation only,
each pair keeps its rewards under keys that TRL does not read: `gold_chosen`, `gold_rejected`
(the gold reward), `verbose_chosen`, `verbose_rejected` (the disagreeing rubric's),
`right_chosen`, `right_rejected` (whether the answer earned the rubric's `correct` term),
`annotator` ("gold" or "verbose": whose rubric labelled it) and `family` (the example's task
family). TRL's trainers read prompt, chosen and rejected, give a meaning to a few more names
("margin", "label", "tools", "chat_template_kwargs", "images", none of them used here), and drop
every other column (`remove_unused_columns`, on by default); `unpair_preference_dataset` copies
them along. Pairs of identical responses (a small model often samples the same reply twice)
compare nothing and are skipped, as are pairs with an empty response; `label_pairs` counts both.

**The ceiling.** What is compared: a reward model's held-out accuracy is the share of held-out
pairs whose chosen response it scores higher. Against the annotators' labels, no scorer can
expect to agree more often than the labels agree with the gold order themselves, which is what
`ceiling_accuracy` computes, exactly, from the pairs' rewards and the annotators' config: the
mean over the pairs with a gold order (gold rewards not tied) of P(label agrees with the gold
order). The gold reward itself scores that on average (`label_agreement` measures it on a set of
labels). Against the gold order instead, the ceiling is 1: noise hides the order of single pairs,
but a reward model that learns from many labels can recover it. (Where the disagreeing annotators
outweigh the gold rubric on a pair, a scorer that learnt their taste could beat the gold reward on
that pair's labels; with a small `disagree_share` that is rare, and the ceiling is the gold's.)

**Where a scorer falls short.** One accuracy hides what a scorer has learnt. `accuracy_by_kind`
splits the pairs with a gold order by what separates their answers (`pair_kind`): a right answer
against a wrong one (only the facts decide, and the labels mostly agree), two right answers (only
style decides: chatter, rudeness, a remark cut off), and two wrong ones (partial credit and style),
each kind with its own ceiling.

`save_pairs` and `load_pairs` keep the pairs as JSON lines, written atomically; `check_pairs`
refuses what a trainer could not use: identical chosen and rejected, empty completions, rewards
that are NaN or infinite.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from minilm.files import atomic_write
from minilm.finetune.chat import ChatFormatError, check_chat
from minilm.finetune.tasks import Example
from minilm.rlhf.gold import gold_breakdown

REWARD_KEYS = ("gold_chosen", "gold_rejected", "verbose_chosen", "verbose_rejected")


@dataclass
class AnnotatorConfig:
    """How the simulated annotators label a pair (see the module docstring)."""

    noise: float = 0.1  # the probability that a label is flipped; 0.5 makes labels chance
    disagree_share: float = 0.1  # the share of labels given by annotators who prefer longer answers
    temperature: float = 0.25  # of the Bradley-Terry probability sigmoid((r_a - r_b) / temperature)

    def __post_init__(self):
        for name in ("noise", "disagree_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {value}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number > 0 (the reward gap that makes odds of e to 1), "
                             f"got {self.temperature}")


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x), without overflow for large |x|."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def verbose_reward(breakdown: dict[str, float]) -> float:
    """The disagreeing annotators' rubric: the gold reward, but every word beyond the answer earns
    what it costs in the gold rubric (they prefer longer answers)."""
    return round(sum(breakdown.values()) - 2 * breakdown["concise"], 9)


def label_probability(gold_a: float, gold_b: float, verbose_a: float, verbose_b: float, config: AnnotatorConfig) -> float:
    """The probability that a pair's label chooses a over b: (1 - noise) q + noise (1 - q), with q
    the Bradley-Terry probability of a, averaged over who labels."""
    q = (1 - config.disagree_share) * sigmoid((gold_a - gold_b) / config.temperature)
    q += config.disagree_share * sigmoid((verbose_a - verbose_b) / config.temperature)
    return (1 - config.noise) * q + config.noise * (1 - q)


# ---------------------------------------------------------------------------------------------
# Labelling


def label_pairs(
    examples: Sequence[Example], responses_per_prompt: Sequence[Sequence[str]], config: AnnotatorConfig, seed: int
) -> tuple[list[dict], Counter]:
    """Every pair of the responses to each example, labelled by a simulated annotator.

    `responses_per_prompt[i]` holds the responses sampled for `examples[i]` (its prompt is
    `examples[i].prompt`). Returns the pairs in TRL's preference format with their rewards (see
    the module docstring), and a Counter of the pairs skipped: "identical" (the same response
    twice, after stripping spaces) and "empty" (a pair with an empty response). Deterministic for
    a seed.
    """
    if len(examples) != len(responses_per_prompt):
        raise ValueError(f"{len(examples)} examples but {len(responses_per_prompt)} lists of responses: give one list per example")
    rng = random.Random(seed)
    pairs: list[dict] = []
    skipped: Counter = Counter()
    for i, (example, responses) in enumerate(zip(examples, responses_per_prompt)):
        if isinstance(responses, str) or not isinstance(responses, Sequence):
            raise ValueError(f"responses_per_prompt[{i}] must be a list of response strings, got {responses!r:.60}")
        scored = []
        for response in responses:
            if not isinstance(response, str):
                raise ValueError(f"responses_per_prompt[{i}] holds {response!r:.60}, not a string: every response is the assistant's text")
            breakdown = gold_breakdown(example, response.strip())
            scored.append((response.strip(), round(sum(breakdown.values()), 9), verbose_reward(breakdown),
                           breakdown["correct"] > 0))
        for (a, gold_a, verbose_a, right_a), (b, gold_b, verbose_b, right_b) in itertools.combinations(scored, 2):
            if not a or not b:
                skipped["empty"] += 1
                continue
            if a == b:
                skipped["identical"] += 1
                continue
            verbose = rng.random() < config.disagree_share
            delta = (verbose_a - verbose_b) if verbose else (gold_a - gold_b)
            a_chosen = rng.random() < sigmoid(delta / config.temperature)
            if rng.random() < config.noise:
                a_chosen = not a_chosen
            (chosen, gold_c, verbose_c, right_c), (rejected, gold_r, verbose_r, right_r) = (
                ((a, gold_a, verbose_a, right_a), (b, gold_b, verbose_b, right_b)) if a_chosen else
                ((b, gold_b, verbose_b, right_b), (a, gold_a, verbose_a, right_a))
            )  # fmt: skip
            pairs.append({
                "prompt": [dict(message) for message in example.prompt],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "gold_chosen": gold_c, "gold_rejected": gold_r, "verbose_chosen": verbose_c, "verbose_rejected": verbose_r,
                "right_chosen": right_c, "right_rejected": right_r,
                "annotator": "verbose" if verbose else "gold", "family": example.family,
            })  # fmt: skip
    return pairs, skipped


def _ordered(pairs: Sequence[dict]) -> list[dict]:
    """The pairs whose gold rewards are not tied (only those have a gold order)."""
    check_pairs(pairs)
    if missing := [(i, key) for i, pair in enumerate(pairs) for key in REWARD_KEYS if key not in pair][:1]:
        raise ValueError(f"pair {missing[0][0]} has no {missing[0][1]!r}: measuring against the gold order needs the rewards "
                         "that label_pairs keeps beside each pair")
    ordered = [pair for pair in pairs if pair["gold_chosen"] != pair["gold_rejected"]]
    if not ordered:
        raise ValueError(f"none of the {len(pairs)} pairs has a gold order (every pair's gold rewards are tied): nothing to compare")
    return ordered


def ceiling_accuracy(pairs: Sequence[dict], config: AnnotatorConfig) -> float:
    """The expected share of the pairs, among those with a gold order, whose label agrees with it:
    the most a reward model can expect to score against held-out labels of these annotators."""
    agree = []
    for pair in _ordered(pairs):
        better, worse = ("chosen", "rejected") if pair["gold_chosen"] > pair["gold_rejected"] else ("rejected", "chosen")
        agree.append(label_probability(pair[f"gold_{better}"], pair[f"gold_{worse}"],
                                       pair[f"verbose_{better}"], pair[f"verbose_{worse}"], config))  # fmt: skip
    return sum(agree) / len(agree)


PAIR_KINDS = ("one right, one wrong", "both right", "both wrong")


def pair_kind(pair: dict) -> str:
    """Which of `PAIR_KINDS` a pair is: whether one answer, both or neither earned the gold rubric's
    `correct` term (the keys `right_chosen` and `right_rejected` that `label_pairs` writes)."""
    if not {"right_chosen", "right_rejected"} <= set(pair):
        raise ValueError("the pair has no 'right_chosen' and 'right_rejected': it was labelled before label_pairs kept "
                         "them; label the answers again")  # fmt: skip
    return PAIR_KINDS[0 if pair["right_chosen"] != pair["right_rejected"] else 1 if pair["right_chosen"] else 2]


def accuracy_by_kind(pairs: Sequence[dict], chosen_scores: Sequence[float], rejected_scores: Sequence[float],
                     config: AnnotatorConfig) -> list[dict]:
    """A scorer's accuracy on the pairs with a gold order, one row per kind (`pair_kind`) and one for all.

    `chosen_scores[i]` and `rejected_scores[i]` are the scorer's scores of pair i's two answers (the
    same order as `pairs`; pairs whose gold rewards are tied are left out, as `ceiling_accuracy`
    leaves them). Each row: "kind", "pairs", "accuracy" (the share whose chosen answer scores strictly
    higher: agreement with the labels; a tie is a miss), its "ceiling" (`ceiling_accuracy` of those
    pairs) and "gold_order_accuracy" (agreement with the gold order). A kind with no pair has no row.
    """
    if not len(pairs) == len(chosen_scores) == len(rejected_scores):
        raise ValueError(f"{len(pairs)} pairs but {len(chosen_scores)} chosen and {len(rejected_scores)} rejected "
                         "scores: give one score for each answer of each pair")  # fmt: skip
    groups: dict[str, list[tuple[dict, float, float]]] = {kind: [] for kind in (*PAIR_KINDS, "all")}
    for pair, chosen, rejected in zip(pairs, chosen_scores, rejected_scores):
        if pair["gold_chosen"] != pair["gold_rejected"]:
            for kind in (pair_kind(pair), "all"):
                groups[kind].append((pair, float(chosen), float(rejected)))
    if not groups["all"]:
        raise ValueError(f"none of the {len(pairs)} pairs has a gold order (every pair's gold rewards are tied): nothing to compare")
    rows = []
    for kind, scored in groups.items():
        if scored:
            right_way = [chosen > rejected if pair["gold_chosen"] > pair["gold_rejected"] else rejected > chosen
                         for pair, chosen, rejected in scored]  # fmt: skip
            rows.append({"kind": kind, "pairs": len(scored),
                         "accuracy": sum(chosen > rejected for _, chosen, rejected in scored) / len(scored),
                         "ceiling": ceiling_accuracy([pair for pair, _, _ in scored], config),
                         "gold_order_accuracy": sum(right_way) / len(scored)})  # fmt: skip
    return rows


def label_agreement(pairs: Sequence[dict]) -> float:
    """The share of the pairs, among those with a gold order, whose chosen response has the higher gold reward."""
    ordered = _ordered(pairs)
    return sum(pair["gold_chosen"] > pair["gold_rejected"] for pair in ordered) / len(ordered)


# ---------------------------------------------------------------------------------------------
# Checking, saving and loading


def _completion(pair: dict, key: str, i: int) -> str:
    turns = pair[key]
    if not (isinstance(turns, list) and len(turns) == 1 and isinstance(turns[0], dict) and turns[0].get("role") == "assistant"):
        raise ValueError(f"pair {i}: {key} must be one assistant turn, [{{'role': 'assistant', 'content': ...}}], got {turns!r:.80}")
    content = turns[0].get("content")
    if not isinstance(content, str) or not content.strip():
        raise ValueError(f"pair {i} has an empty {key} completion ({content!r}): a preference compares two written answers; "
                         "drop the empty responses before labelling (label_pairs skips them)")
    return content


def check_pairs(pairs: Sequence[dict]) -> None:
    """Raise ValueError, naming the pair and the fix, unless every pair is one a preference trainer can use:
    a prompt in the chat format ending with the user's turn, two different non-empty assistant
    completions, and rewards (where given) that are finite numbers."""
    if isinstance(pairs, (str, dict)) or not isinstance(pairs, Sequence):
        raise ValueError(f"pairs must be a list of preference dicts, got {type(pairs).__name__}")
    for i, pair in enumerate(pairs):
        if not isinstance(pair, dict) or not {"prompt", "chosen", "rejected"} <= set(pair):
            raise ValueError(f"pair {i} must be a dict with the keys 'prompt', 'chosen' and 'rejected' (TRL's preference format), "
                             f"got {pair!r:.80}")
        chosen, rejected = _completion(pair, "chosen", i), _completion(pair, "rejected", i)
        if chosen.strip() == rejected.strip():
            raise ValueError(f"pair {i}: chosen and rejected are the same response ({chosen!r:.60}), which teaches nothing: "
                             "drop the pair (label_pairs skips identical responses)")
        try:
            check_chat([*pair["prompt"], *pair["chosen"]])
        except ChatFormatError as error:
            raise ValueError(f"pair {i}: its prompt and chosen answer are not a conversation of the chat format: {error}") from None
        for key in REWARD_KEYS:
            value = pair.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"pair {i} has {key} = {value!r}: a reward must be a finite number; "
                                 "recompute it with minilm.rlhf.gold.gold_reward, which never gives NaN or infinity")


def save_pairs(path: str | Path, pairs: Sequence[dict]) -> Path:
    """Check the pairs and write them as JSON lines, atomically (a crash leaves the old file or the new one)."""
    check_pairs(pairs)
    return atomic_write(path, "".join(json.dumps(pair, ensure_ascii=False, allow_nan=False) + "\n" for pair in pairs))


def load_pairs(path: str | Path) -> list[dict]:
    """The pairs that `save_pairs` wrote, checked."""
    pairs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            pairs.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}, line {n}: not a JSON object ({error.msg}); the file is damaged or was not "
                             "written by save_pairs: write the pairs again") from None
    check_pairs(pairs)
    return pairs
