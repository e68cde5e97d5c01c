"""Classification fine-tuning: the pretrained GPT with a new head that reads one hidden state.

The task is one that only word order can answer: "could the story grammar have written this
sentence?" Each real sentence of a story comes with a twin that has two neighbouring words swapped
("Maya was very sad." / "Maya very was sad."). Both twins hold the same words, and the same tokens,
so a bag of words sees two identical inputs with opposite labels: it cannot beat 50%, by
construction. A model that read the stories in order during pretraining has a sense of what comes
after what, and fine-tuning turns that sense into a label.

    ids (right-padded with <|pad|>) -> GPT blocks -> final norm -> hidden state of the LAST REAL token
                                                                -> linear head -> n_classes logits

Why the last real token: in a causal model it is the only position that has seen the whole input.
Under right padding the real tokens never see the padding (it comes after them), so padding changes
nothing; the head just has to read at the right place, `length - 1` for each row.

Four ways to train, from cheapest to most thorough (as chapter 6 of "Build a Large Language Model
(From Scratch)" compares them), each measured against a bag-of-words logistic regression:
- `probe`: the base frozen, only the head learns (a linear probe of what pretraining put there);
- `last_block`: the last transformer block, the final norm and the head;
- `full`: everything;
- `lora`: the base frozen, LoRA adapters on its blocks' linear layers (`minilm.finetune.lora`) and the head.

Each is trained with the course's one training step (`minilm.train.loop.train_step`: AdamW, the
warmup-cosine schedule, gradient clipping, the precision policy).

Data: the stories of the world's splits (`minilm.world.split_stories`): "sft_train" for training,
"sft_val" for validation and "test" for the test, none of them pretraining's; no sentence of
validation or test appears in a split before it.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from minilm.finetune.lora import add_lora
from minilm.model.gpt import GPT
from minilm.tokenizer.tokenizer import Tokenizer
from minilm.train.loop import train_on_rows
from minilm.world import split_stories

# ---------------------------------------------------------------------------------------------
# 1. The task: real sentences and their twins with two neighbouring words swapped

LABELS = ("swapped", "written")  # class 0: two words swapped; class 1: as the story grammar wrote it

# The world's story split (`minilm.world.STORY_SPLITS`) that each split of the task reads.
STORY_SPLITS = {"train": "sft_train", "validation": "sft_val", "test": "test"}

_SENTENCE_END = re.compile(r'(?<=[.!?])\s+(?=[A-Z"])')  # a quotation's "...?" said Maya stays one sentence
_PLAIN_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class Example:
    text: str
    label: str  # one of LABELS


def sentences(story: str) -> list[str]:
    """The sentences of a story, paragraph by paragraph."""
    return [s for paragraph in story.split("\n\n") for s in _SENTENCE_END.split(paragraph.strip()) if s]


def swap_neighbours(sentence: str, rng: random.Random) -> str | None:
    """The sentence with two neighbouring inner words swapped, or None when it has no such pair.

    Only plain words that are neither first nor last qualify: the first word is capitalised and the
    last one carries the full stop, so swapping those would leave a mark a bag of words could see.
    Inner plain words are each one pre-tokenized chunk (" word"), so the twins have the same tokens.
    """
    words = sentence.split(" ")
    pairs = [
        i
        for i in range(1, len(words) - 2)
        if _PLAIN_WORD.fullmatch(words[i]) and _PLAIN_WORD.fullmatch(words[i + 1]) and words[i] != words[i + 1]
    ]
    if not pairs:
        return None
    i = rng.choice(pairs)
    words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def word_order_examples(
    split: str, n_stories: int, seen: set[str] | None = None, max_pairs: int | None = None
) -> list[Example]:
    """Pairs (written, swapped) from the sentences of the first `n_stories` stories of the world's
    `split` (`minilm.world.split_stories`), each sentence once.

    Sentences in `seen` (those of earlier splits) are skipped, and `seen` grows by this split's. A
    swapped twin that happens to be a sentence the grammar wrote somewhere is skipped too (it would
    carry a wrong label). The twins of a pair stay next to each other.
    """
    rng = random.Random(f"word order/{split}")
    seen = set() if seen is None else seen
    real = [s for text, _ in split_stories(split, n_stories) for s in sentences(text)]
    known = seen | set(real)
    examples: list[Example] = []
    for sentence in real:
        if sentence in seen:
            continue
        seen.add(sentence)
        swapped = swap_neighbours(sentence, rng)
        if swapped is None or swapped in known:
            continue
        examples += [Example(sentence, "written"), Example(swapped, "swapped")]
        if max_pairs is not None and len(examples) >= 2 * max_pairs:
            break
    return examples


@dataclass
class TaskConfig:
    train_stories: int = 600
    eval_stories: int = 100  # for validation and for test
    max_pairs: int = 8000  # per split


def word_order_task(config: TaskConfig = TaskConfig()) -> dict[str, list[Example]]:
    """Train, validation and test examples, from different stories, no sentence in two splits."""
    seen: set[str] = set()
    splits = {}
    for split in ("train", "validation", "test"):
        n_stories = config.train_stories if split == "train" else config.eval_stories
        splits[split] = word_order_examples(STORY_SPLITS[split], n_stories, seen, config.max_pairs)
    return splits


# ---------------------------------------------------------------------------------------------
# 2. From text to padded batches


@dataclass
class Encoded:
    """Examples as right-padded token ids (N, T), their lengths (N,) and class indices (N,)."""

    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.ids.size(0)

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, labels) of the rows in `index`, cropped to their longest sequence."""
        length = int(self.lengths[index].max())
        return self.ids[index, :length], self.labels[index]


def encode_examples(
    tokenizer: Tokenizer, examples: Sequence[Example], context: int, labels: Sequence[str] = LABELS
) -> Encoded:
    """Token ids right-padded with the tokenizer's <|pad|>; clear errors for what a model cannot take."""
    if not examples:
        raise ValueError("no examples to encode")
    pad = tokenizer.special_id("<|pad|>")
    rows, classes = [], []
    for i, example in enumerate(examples):
        if example.label not in labels:
            raise ValueError(f"example {i} has the label {example.label!r}, which is not one of {tuple(labels)}")
        ids = tokenizer.encode(example.text)
        if not ids:
            raise ValueError(f"example {i} has an empty text; a classifier needs at least one token to read")
        if len(ids) > context:
            raise ValueError(
                f"example {i} is {len(ids)} tokens long, longer than the model's context of {context}; "
                f"shorten it (the task's sentences are short) or use a model with a longer context"
            )
        rows.append(ids)
        classes.append(labels.index(example.label))
    width = max(len(ids) for ids in rows)
    padded = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, ids in enumerate(rows):
        padded[i, : len(ids)] = torch.tensor(ids)
    return Encoded(padded, torch.tensor([len(ids) for ids in rows]), torch.tensor(classes))


# ---------------------------------------------------------------------------------------------
# 3. The classifier


def last_token_states(base: GPT, idx: torch.Tensor, is_real: torch.Tensor) -> torch.Tensor:
    """The final hidden state of each row's last real token, (B, n_embd): what a head over a whole
    sequence reads (this classifier's, and stage 7's reward model's).

    `is_real` (B, T) is True on the real tokens, which must come first (right padding): the last
    real token is then at position length - 1, and it has seen every real token and no padding.
    """
    lengths = is_real.sum(dim=1)
    if (lengths == 0).any():
        raise ValueError(f"row {int((lengths == 0).nonzero()[0])} holds only padding; it has nothing to classify")
    positions = torch.arange(idx.size(1), device=idx.device)
    if (is_real != (positions < lengths[:, None])).any():
        raise ValueError(
            "padding must be on the right (real tokens first, then <|pad|>): the last real token is read "
            "at position length - 1"
        )
    hidden = base.hidden_states(idx, padding_mask=is_real)
    return hidden[torch.arange(idx.size(0), device=idx.device), lengths - 1]


class Classifier(nn.Module):
    """The pretrained GPT with a linear head over `n_classes`, reading the last real token.

    The GPT's own output head (tied to its embedding) is left unused; its blocks and final norm are
    the features. `pad_id` marks padding, which must be on the right.
    """

    def __init__(self, base: GPT, n_classes: int, pad_id: int, seed: int = 0):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
        self.base, self.pad_id = base, pad_id
        self.head = nn.Linear(base.config.n_embd, n_classes)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # GPT-2's initialisation, as the base's own matrices had
            nn.init.normal_(self.head.weight, 0.0, 0.02, generator=generator)
            self.head.bias.zero_()

    def pool(self, idx: torch.Tensor) -> torch.Tensor:
        """The final hidden state of each row's last real token, (B, n_embd)."""
        return last_token_states(self.base, idx, idx != self.pad_id)

    def forward(
        self, idx: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Right-padded ids (B, T) -> (class logits (B, n_classes), cross-entropy against `labels` or None)."""
        logits = self.head(self.pool(idx))
        if labels is None:
            return logits, None
        return logits, F.cross_entropy(logits, labels)


# ---------------------------------------------------------------------------------------------
# 4. What to train


def _train_only(classifier: Classifier, *parts: nn.Module) -> None:
    classifier.requires_grad_(False)
    for part in parts:
        part.requires_grad_(True)


def probe(classifier: Classifier) -> None:
    """The base frozen: only the head learns."""
    _train_only(classifier, classifier.head)


def last_block(classifier: Classifier) -> None:
    """The last transformer block, the final norm and the head learn."""
    base = classifier.base.transformer
    _train_only(classifier, base.h[-1], base.ln_f, classifier.head)


def full(classifier: Classifier) -> None:
    """Everything learns."""
    classifier.requires_grad_(True)


def lora(classifier: Classifier, rank: int = 8, alpha: float = 16.0) -> None:
    """The base frozen; LoRA adapters on its blocks' linear layers and the head learn."""
    probe(classifier)
    add_lora(classifier.base, rank, alpha)


# Each method sets which parameters learn.
METHODS: dict[str, Callable[[Classifier], None]] = {"probe": probe, "last_block": last_block, "full": full, "lora": lora}


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------
# 5. Training and evaluation


@dataclass
class ClassifierConfig:
    """One classifier's training: which parameters learn (`METHODS`), for how long, and how fast."""

    method: str = "full"
    steps: int = 800
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0


@torch.no_grad()
def accuracy(classifier: Classifier, data: Encoded, batch_size: int = 256) -> float:
    """The fraction of `data` whose most likely class is its label."""
    was_training = classifier.training
    classifier.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        ids, labels = data.rows(torch.arange(start, min(start + batch_size, len(data))))
        correct += int((classifier(ids)[0].argmax(dim=-1) == labels).sum())
    classifier.train(was_training)
    return correct / len(data)


def finetune(classifier: Classifier, train: Encoded, config: ClassifierConfig, precision: str = "fp32") -> list[float]:
    """Train the parameters that `config.method` picks on random batches; returns the losses.

    Each step is the training loop's (`train_on_rows`, `train_step`): AdamW (`make_optimizer`), the
    gradient clipped, the learning rate on the course's schedule (a warmup over the first tenth of the
    steps, then a cosine decay to a tenth of the peak), autocast when `precision` asks for it.
    """
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; choose one of {sorted(METHODS)}")
    METHODS[config.method](classifier)
    return train_on_rows(classifier, train, config.steps, config.batch_size, config.lr, weight_decay=config.weight_decay,
                         grad_clip=config.grad_clip, seed=config.seed, precision=precision)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 6. The baseline: logistic regression over a bag of words (token counts)


class BagOfWords:
    """Logistic regression over token counts: the order of the tokens is exactly what it cannot see.

    The vocabulary is the ids seen in training (ids it never saw add nothing, as in any count
    vectorizer); the model is softmax(W counts + b), fitted by full-batch AdamW on the cross-entropy
    with an L2 penalty.
    """

    def __init__(self, train: Encoded, pad_id: int, n_classes: int = len(LABELS)):
        self.pad_id = pad_id
        vocabulary = torch.unique(train.ids[train.ids != pad_id])
        self.column = {int(token): i for i, token in enumerate(vocabulary)}
        self.weight = torch.zeros(len(vocabulary), n_classes, requires_grad=True)
        self.bias = torch.zeros(n_classes, requires_grad=True)

    def counts(self, data: Encoded) -> torch.Tensor:
        """(N, vocabulary) how often each known token occurs in each example."""
        rows, columns = [], []
        for row, ids in enumerate(data.ids.tolist()):
            for token in ids:
                if token in self.column:
                    rows.append(row)
                    columns.append(self.column[token])
        counts = torch.zeros(len(data), len(self.column))
        index = (torch.tensor(rows, dtype=torch.long), torch.tensor(columns, dtype=torch.long))
        return counts.index_put_(index, torch.ones(len(rows)), accumulate=True)

    def logits(self, counts: torch.Tensor) -> torch.Tensor:
        return counts @ self.weight + self.bias

    def fit(self, train: Encoded, steps: int = 300, lr: float = 0.05, l2: float = 1e-3) -> list[float]:
        counts = self.counts(train)
        optimizer = torch.optim.AdamW([self.weight, self.bias], lr=lr, weight_decay=0.0)
        losses = []
        for _ in range(steps):
            loss = F.cross_entropy(self.logits(counts), train.labels) + l2 * self.weight.pow(2).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    @torch.no_grad()
    def accuracy(self, data: Encoded) -> float:
        return (self.logits(self.counts(data)).argmax(dim=-1) == data.labels).float().mean().item()


# ---------------------------------------------------------------------------------------------
# 7. The comparison


@dataclass
class Result:
    method: str
    validation: float
    test: float
    trainable: int
    seconds: float


LEARNING_RATES = {"probe": 1e-2, "last_block": 2e-3, "full": 1e-3, "lora": 4e-3}


def compare(
    base: Callable[[], GPT],
    tokenizer: Tokenizer,
    task: TaskConfig = TaskConfig(),
    methods: Sequence[str] = ("probe", "last_block", "full"),
    steps: int = 800,
    batch_size: int = 64,
    seed: int = 0,
) -> list[Result]:
    """Each method's held-out accuracy, trainable parameters and seconds, after the bag-of-words baseline's.

    `base` makes a fresh copy of the pretrained model for each method (e.g. a `load_model` call).
    """
    splits = word_order_task(task)
    first = base()
    context, pad = first.config.context, tokenizer.special_id("<|pad|>")
    data = {split: encode_examples(tokenizer, examples, context) for split, examples in splits.items()}

    start = time.perf_counter()
    bag = BagOfWords(data["train"], pad)
    bag.fit(data["train"])
    results = [
        Result("bag_of_words", bag.accuracy(data["validation"]), bag.accuracy(data["test"]),
               bag.weight.numel() + bag.bias.numel(), time.perf_counter() - start)
    ]  # fmt: skip
    for i, method in enumerate(methods):
        classifier = Classifier(first if i == 0 else base(), len(LABELS), pad, seed=seed)
        start = time.perf_counter()
        config = ClassifierConfig(method, steps, batch_size, LEARNING_RATES.get(method, 1e-3), seed=seed)
        finetune(classifier, data["train"], config)
        seconds = time.perf_counter() - start
        results.append(
            Result(method, accuracy(classifier, data["validation"]), accuracy(classifier, data["test"]),
                   trainable_parameters(classifier), seconds)
        )  # fmt: skip
    return results


def results_table(results: Sequence[Result]) -> str:
    """The comparison as a markdown table."""
    lines = ["| method | validation | test | trainable params | seconds |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r.method} | {r.validation:.3f} | {r.test:.3f} | {r.trainable:,} | {r.seconds:.1f} |" for r in results]
    return "\n".join(lines)
