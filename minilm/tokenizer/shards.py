"""Token shards: the corpus as one long stream of token ids on disk, ready to train on.

Pretraining reads the corpus many times, in random windows of `context + 1` tokens. So we tokenize
it once, here, into flat binary files of token ids, and training opens them with `numpy.memmap`:
the operating system pages in the bytes a window needs, and a corpus larger than memory costs
nothing to open. This is how GPT-2's data is laid out (and nanoGPT's ``train.bin``):

    <|endoftext|> document 1 <|endoftext|> document 2 <|endoftext|> ...

Each document is preceded by ``<|endoftext|>``, so the model learns where a text starts, and a
window that crosses from one document into the next sees the separator. Document text is encoded
as ordinary text: a document that happens to contain "<|endoftext|>" does not end there.

**Files.** ``<split>_000.bin``, ``<split>_001.bin``, ... each hold at most `shard_tokens` ids, as
uint16 when every id fits in 16 bits (a vocabulary of at most 65,536) and uint32 otherwise: half
the disk and half the memory bandwidth for our vocabularies. ``<split>.json``, written last, is the
manifest: dtype, tokens per shard, documents, bytes of text, and the tokenizer's fingerprint (the
sha256 of its files), so that shards are never read with a tokenizer they were not made with.
Every shard is written to a temporary file and renamed when complete, and a failure removes the
shards already written: a split without its manifest is not finished.

**Parallel.** Documents are encoded in worker processes, each loading the tokenizer once (into a
tiktoken `Encoding`); chunks of documents go through `Pool.imap`, which returns results in input
order, so the shards are the same bytes whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from minilm.files import atomic_write_json, sha256_file
from minilm.tokenizer.tokenizer import CONFIG_FILE, RANKS_FILE, Tokenizer

FORMAT = "minilm.shards"
FORMAT_VERSION = 1
EOT = "<|endoftext|>"
DOCS_PER_TASK = 256  # documents sent to a worker at a time: large enough that messaging is cheap
SHARD_TOKENS = 50_000_000  # at most this many tokens per shard file (100 MB of uint16)
REBUILD = "rebuild them with python -m minilm tokenizer --force"


def tokenizer_fingerprint(folder: str | os.PathLike) -> str:
    """The sha256 of a saved tokenizer's two files (names and contents): which tokenizer made the shards."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, RANKS_FILE):
        path = Path(folder) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {folder} is not a saved tokenizer (Tokenizer.save writes it)")
        digest.update(f"{name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits, else uint32."""
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    if vocab_size <= 1 << 32:
        return np.dtype(np.uint32)
    raise ValueError(f"a vocabulary of {vocab_size} ids does not fit in uint32")


# ---------------------------------------------------------------------------------------------
# Writing


# Each worker process keeps its own encoder, built once by `_start_worker`.
_encoder = None
_eot_id: int = -1
_dtype = np.dtype(np.uint16)


def _start_worker(tokenizer_folder: str) -> None:
    global _encoder, _eot_id, _dtype
    tokenizer = Tokenizer.load(tokenizer_folder)
    _encoder = tokenizer.to_tiktoken()
    _eot_id = tokenizer.special_id(EOT)
    _dtype = token_dtype(tokenizer.vocab_size)


def _encode_documents(texts: list[str]) -> tuple[np.ndarray, int, int]:
    """The ids of a chunk of documents, each preceded by <|endoftext|>; the documents; their bytes of text."""
    ids: list[int] = []
    n_bytes = 0
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"write_shards takes an iterable of str documents, got a {type(text).__name__}")
        ids.append(_eot_id)
        ids += _encoder.encode_ordinary(text)
        n_bytes += len(text.encode("utf-8", errors="replace"))
    return np.array(ids, dtype=_dtype), len(texts), n_bytes


def _chunks(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class _ShardWriter:
    """Appends ids to ``<split>_NNN.bin`` files of at most `shard_tokens` ids; each renamed into place when full."""

    def __init__(self, folder: Path, split: str, shard_tokens: int):
        self.folder, self.split, self.shard_tokens = folder, split, shard_tokens
        self.done: list[dict] = []  # {"file", "tokens"} of each finished shard
        self.file = None
        self.tmp: Path | None = None
        self.filled = 0  # ids in the open shard

    def write(self, ids: np.ndarray) -> None:
        while len(ids):
            if self.file is None:
                fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{self.split}_", suffix=".tmp")
                self.file, self.tmp = os.fdopen(fd, "wb"), Path(tmp)
            room = self.shard_tokens - self.filled
            self.file.write(ids[:room].tobytes())
            self.filled += min(room, len(ids))
            ids = ids[room:]
            if self.filled == self.shard_tokens:
                self.finish_shard()

    def finish_shard(self) -> None:
        """Flush the open shard to disk and rename it to its final name."""
        if self.file is None:
            return
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        name = f"{self.split}_{len(self.done):03d}.bin"
        os.replace(self.tmp, self.folder / name)
        self.done.append({"file": name, "tokens": self.filled})
        self.file, self.tmp, self.filled = None, None, 0

    def abort(self) -> None:
        """Remove everything written: the open temporary file and the finished shards (the writer is not used again)."""
        if self.file is not None:
            self.file.close()
            self.tmp.unlink(missing_ok=True)
        for shard in self.done:
            (self.folder / shard["file"]).unlink(missing_ok=True)


def write_shards(
    texts: Iterable[str],
    tokenizer_folder: str | os.PathLike,
    out_folder: str | os.PathLike,
    split: str,
    *,
    workers: int | None = None,
    shard_tokens: int = SHARD_TOKENS,
    progress: bool = True,
) -> dict:
    """Tokenize `texts` (streamed) into ``<split>_NNN.bin`` shards and ``<split>.json``; returns the manifest.

    `workers`: processes that encode (default min(4, cores); 0 encodes in this process).
    The output is the same for any number of workers.
    """
    if not split or not split.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"split must be a plain name such as 'train' or 'val', got {split!r}")
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens must be >= 1, got {shard_tokens}")
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0: encode in this process), got {workers}")
    tokenizer_folder, out_folder = Path(tokenizer_folder), Path(out_folder)
    fingerprint = tokenizer_fingerprint(tokenizer_folder)
    tokenizer = Tokenizer.load(tokenizer_folder)
    if EOT not in tokenizer.special_tokens:
        raise ValueError(f"the tokenizer in {tokenizer_folder} has no {EOT} special token to separate documents")
    dtype = token_dtype(tokenizer.vocab_size)

    out_folder.mkdir(parents=True, exist_ok=True)
    manifest_path = out_folder / f"{split}.json"
    manifest_path.unlink(missing_ok=True)  # an older set of shards stops looking complete now
    writer = _ShardWriter(out_folder, split, shard_tokens)
    documents = text_bytes = tokens = 0
    pool = None
    from tqdm.auto import tqdm

    bar = tqdm(desc=f"tokenizing {split}", unit="tok", unit_scale=True, disable=not progress)
    try:
        if workers == 0:
            _start_worker(str(tokenizer_folder))
            results = map(_encode_documents, _chunks(texts, DOCS_PER_TASK))
        else:
            import multiprocessing

            # spawn: a fresh interpreter per worker, the same on Linux, macOS and Windows, and safe
            # in a process that already runs threads (torch, tqdm).
            pool = multiprocessing.get_context("spawn").Pool(workers, _start_worker, (str(tokenizer_folder),))
            results = pool.imap(_encode_documents, _chunks(texts, DOCS_PER_TASK))
        for ids, n_documents, n_bytes in results:
            writer.write(ids)
            tokens += len(ids)
            documents += n_documents
            text_bytes += n_bytes
            bar.update(len(ids))
        writer.finish_shard()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()

    if documents == 0:
        raise ValueError(f"no documents to tokenize for split {split!r}: `texts` was empty")
    stale = itertools.count(len(writer.done))  # shards of an older, longer run of this split
    while (old := out_folder / f"{split}_{next(stale):03d}.bin").exists():
        old.unlink()
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "split": split,
        "dtype": dtype.name,
        "shards": writer.done,
        "tokens": tokens,
        "documents": documents,
        "text_bytes": text_bytes,
        "vocab_size": tokenizer.vocab_size,
        "eot_id": tokenizer.special_id(EOT),
        "tokenizer": fingerprint,
    }
    atomic_write_json(manifest_path, manifest)
    return manifest


# ---------------------------------------------------------------------------------------------
# Reading


class TokenShards:
    """The token stream of one split, memory-mapped from its shards, with training and evaluation windows.

    The shards are read as one stream of `len(self)` ids; a window may cross from one shard into
    the next. `expected_tokenizer` is the fingerprint of the tokenizer the caller will decode with
    (`tokenizer_fingerprint(folder)`): shards made with another one are refused.
    """

    def __init__(self, folder: str | os.PathLike, split: str, expected_tokenizer: str | None = None):
        self.folder, self.split = Path(folder), split
        self.manifest = _read_manifest(self.folder / f"{split}.json")
        found = self.manifest["tokenizer"]
        if expected_tokenizer is not None and found != expected_tokenizer:
            raise ValueError(
                f"the {split} shards in {self.folder} were made with another tokenizer "
                f"(fingerprint {found[:16]}, expected {expected_tokenizer[:16]}): {REBUILD}"
            )
        self.dtype = np.dtype(self.manifest["dtype"])
        self.shards: list[np.memmap] = []
        for shard in self.manifest["shards"]:
            path = self.folder / shard["file"]
            if not path.is_file():
                raise FileNotFoundError(f"shard {path} is missing ({split}.json lists it): {REBUILD}")
            expected_bytes = shard["tokens"] * self.dtype.itemsize
            if path.stat().st_size != expected_bytes:
                raise ValueError(
                    f"shard {path} has {path.stat().st_size} bytes but {split}.json says {shard['tokens']} "
                    f"{self.dtype.name} tokens ({expected_bytes} bytes): it was truncated or changed; {REBUILD}"
                )
            self.shards.append(np.memmap(path, dtype=self.dtype, mode="r"))
        # starts[i] is the position of shard i's first token in the stream; starts[-1] is the length
        self.starts = np.cumsum([0] + [len(shard) for shard in self.shards])
        if self.starts[-1] != self.manifest["tokens"]:
            raise ValueError(f"{split}.json says {self.manifest['tokens']} tokens but its shards hold {self.starts[-1]}: {REBUILD}")
        self.vocab_size: int = self.manifest["vocab_size"]
        self.eot_id: int = self.manifest["eot_id"]
        self.documents: int = self.manifest["documents"]

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __repr__(self) -> str:
        return f"TokenShards({self.split!r}, tokens={len(self):,}, documents={self.documents:,}, shards={len(self.shards)}, {self.dtype.name})"

    def read(self, start: int, stop: int) -> np.ndarray:
        """The ids at positions start..stop-1 of the stream (a copy, int64), across shards if needed."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"cannot read tokens {start}..{stop} of a stream of {len(self)} tokens")
        pieces = []
        shard = int(np.searchsorted(self.starts, start, side="right")) - 1
        while start < stop:
            offset = start - int(self.starts[shard])
            take = min(stop, int(self.starts[shard + 1])) - start
            pieces.append(self.shards[shard][offset : offset + take])
            start += take
            shard += 1
        return np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, dtype=np.int64)

    def part(self, rank: int = 0, world_size: int = 1) -> tuple[int, int]:
        """The positions [start, stop) of the stream that process `rank` of `world_size` trains on.

        The stream is cut into `world_size` contiguous, nearly equal parts, so that in distributed
        training no two processes see the same tokens.
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1 and world_size >= 1, got rank={rank}, world_size={world_size}")
        return rank * len(self) // world_size, (rank + 1) * len(self) // world_size

    def window_starts(
        self, batch_size: int, context: int, generator: np.random.Generator, rank: int = 0, world_size: int = 1
    ) -> np.ndarray:
        """Random start positions of `batch_size` windows of `context + 1` tokens inside this rank's part."""
        if batch_size < 1 or context < 1:
            raise ValueError(f"batch_size and context must be >= 1, got batch_size={batch_size}, context={context}")
        start, stop = self.part(rank, world_size)
        if stop - start < context + 1:
            raise ValueError(
                f"the {self.split} split has {len(self):,} tokens, {stop - start:,} for rank {rank} of {world_size}: "
                f"too few for a window of context {context} (+1 for the targets); use a smaller context or more data"
            )
        return generator.integers(start, stop - context, size=batch_size)

    def batch(
        self, batch_size: int, context: int, generator: np.random.Generator, rank: int = 0, world_size: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """`batch_size` random windows: inputs x and targets y (x shifted by one), int64 arrays (batch_size, context)."""
        starts = self.window_starts(batch_size, context, generator, rank, world_size)
        windows = np.stack([self.read(int(s), int(s) + context + 1) for s in starts])
        return windows[:, :-1], windows[:, 1:]

    def eval_starts(self, context: int, max_tokens: int | None = None) -> np.ndarray:
        """Start positions of non-overlapping windows, evenly spread over the stream (all of them: None).

        Evenly spread rather than the first ones: the validation split is in domain order, so its
        first tokens are all web pages. (The last, partial window is left out: at most `context` tokens.)
        """
        total = (len(self) - 1) // context
        if total < 1:
            raise ValueError(f"the {self.split} split has {len(self)} tokens, too few for one window of {context}")
        count = total if max_tokens is None else min(total, max(1, max_tokens // context))
        return np.array([(k * total // count) * context for k in range(count)], dtype=np.int64)

    def eval_batch(self, context: int, max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The evaluation windows (`eval_starts`) as inputs x and targets y, int64 arrays (windows, context)."""
        windows = np.stack([self.read(int(s), int(s) + context + 1) for s in self.eval_starts(context, max_tokens)])
        return windows[:, :-1], windows[:, 1:]

    @property
    def tokenizer_fingerprint(self) -> str:
        """The fingerprint of the tokenizer that made these shards."""
        return self.manifest["tokenizer"]

    def sequential_windows(self, context: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every token once, for evaluation: consecutive (x, y) windows, 1-D int64 arrays.

        Window k covers positions k*context .. (k+1)*context, so every token after the first is a
        target exactly once; the last window is shorter when the stream does not divide evenly.
        """
        if context < 1:
            raise ValueError(f"context must be >= 1, got {context}")
        for start in range(0, len(self) - 1, context):
            window = self.read(start, min(start + context + 1, len(self)))
            yield window[:-1], window[1:]


def _read_manifest(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the {path.stem} shards in {path.parent} were never finished; {REBUILD}"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}): {REBUILD}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a token shards manifest (no \"format\": \"{FORMAT}\")")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has version {manifest.get('version')!r}; this minilm reads version {FORMAT_VERSION}: {REBUILD}")
    expected = {"dtype": str, "shards": list, "tokens": int, "documents": int, "vocab_size": int, "eot_id": int, "tokenizer": str}
    for key, kind in expected.items():
        if not isinstance(manifest.get(key), kind):
            raise ValueError(f"{path}: field {key!r} is missing or not a {kind.__name__}: {REBUILD}")
    if manifest["dtype"] not in ("uint16", "uint32"):
        raise ValueError(f"{path}: dtype {manifest['dtype']!r} is not uint16 or uint32")
    return manifest
