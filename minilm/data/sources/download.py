"""Online sources, opt-in: a careful download, and two public corpora built on it.

The course runs offline by default. When a learner asks for real data (the TinyStories stories
or a Project Gutenberg book), the file is fetched once and kept in a cache; nothing here runs
unless they call it. Large downloads fail in ordinary ways, so `download` is written for them:

- a file already in the cache, with the right checksum, is returned without touching the network;
- bytes go to ``<dest>.part``; after a broken transfer the next try asks the server only for the
  rest (an HTTP Range request), and starts again if the server ignores the request;
- connection errors and server errors (5xx) are retried with exponential backoff;
- the sha256 checksum, when known, is checked before the file is renamed into place, so a file
  under its final name is always complete.

`MINILM_MIRROR` (or the `base_url` argument) replaces the scheme and host of the public URLs,
keeping their paths: an organisation's mirror, or the local server the tests start.
"""

from __future__ import annotations

import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from minilm.data.documents import Document
from minilm.files import sha256_file

HUGGING_FACE = "https://huggingface.co"
GUTENBERG = "https://www.gutenberg.org"
TINYSTORIES_FILES = {"train": "TinyStories-train.txt", "valid": "TinyStories-valid.txt"}
END_OF_STORY = "<|endoftext|>"
USER_AGENT = "minilm-course/0.1 (python urllib)"
CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download that cannot succeed as asked; the message says why and what to do."""


class _TryAgain(Exception):
    """A failure that another attempt may fix: no connection, a server error, a broken transfer."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    *,
    resume: bool = True,
    timeout: float = 30,
    retries: int = 3,
    progress: bool = True,
    backoff: float = 1.0,
) -> Path:
    """Download `url` to `dest` (cached, resumable, checksummed) and return `dest`.

    Waits ``backoff * 2**attempt`` seconds between attempts; `retries` is the number of attempts
    after the first.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"cannot download {url!r}: only http:// and https:// URLs are supported")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.exists():
        if expected is None or sha256_file(dest) == expected:
            return dest
        dest.unlink()  # a damaged copy in the cache: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    for attempt in range(retries + 1):
        try:
            _fetch(url, part, resume=resume, timeout=timeout, progress=progress, label=dest.name)
            break
        except _TryAgain as failure:
            if attempt == retries:
                raise _final_error(url, failure, retries + 1) from None
            time.sleep(backoff * 2**attempt)

    if expected is not None:
        actual = sha256_file(part)
        if actual != expected:
            part.unlink()
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}. The download was "
                "deleted; the file on the server differs from the one expected (check the URL, the mirror "
                "or the expected hash)"
            )
    os.replace(part, dest)  # atomic: `dest` appears complete or not at all
    return dest


def _fetch(url: str, part: Path, *, resume: bool, timeout: float, progress: bool, label: str) -> None:
    """One attempt: fetch the whole file, or the rest of it, into `part`."""
    offset = part.stat().st_size if resume and part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:  # nothing left after `offset`: complete, or longer than the file
            total = _content_range(error.headers.get("Content-Range", ""))[2]
            if total == offset:
                return
            part.unlink()
            raise _TryAgain(f"{url}: the partial download did not match the file on the server") from None
        if error.code >= 500:
            raise _TryAgain(f"{url} answered HTTP {error.code} {error.reason}") from None
        if error.code == 404:
            raise DownloadError(
                f"{url} was not found (HTTP 404): check the URL, or the mirror set with MINILM_MIRROR"
            ) from None
        raise DownloadError(f"{url} answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise _TryAgain(f"{reason}", unreachable=True) from None

    with response:
        if offset and response.status == 206 and _content_range(response.headers.get("Content-Range", ""))[0] == offset:
            mode = "ab"
        else:  # the server sent the whole file (it ignored our Range request): start again
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        expected_size = offset + int(length) if length and length.isdigit() else None
        try:
            with part.open(mode) as f, tqdm(
                total=expected_size, initial=offset, unit="B", unit_scale=True, desc=label, disable=not progress
            ) as bar:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except (OSError, http.client.HTTPException) as error:
            raise _TryAgain(f"the transfer of {url} broke off ({error})") from None
    # http.client returns what it got when a connection closes early, without an error: check the size.
    size = part.stat().st_size
    if expected_size is not None and size < expected_size:
        raise _TryAgain(f"the transfer of {url} broke off after {size} of {expected_size} bytes")


def _content_range(header: str) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) from ``bytes 100-199/200`` or ``bytes */200``; None where absent."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*", header or "")
    if not match:
        return None, None, None
    return tuple(int(value) if value and value.isdigit() else None for value in match.groups())


def _final_error(url: str, failure: _TryAgain, attempts: int) -> DownloadError:
    if failure.unreachable:
        host = urllib.parse.urlsplit(url).hostname
        return DownloadError(
            f"could not reach host {host} ({failure}) after {attempts} attempts; the course works offline "
            "by default, use the embedded sources"
        )
    return DownloadError(f"{failure} (after {attempts} attempts); run again later to resume the download")


# ---------------------------------------------------------------------------------------------
# Two public corpora


def tinystories(
    split: str = "valid",
    cache_dir: str | os.PathLike | None = None,
    *,
    base_url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download one split of TinyStories (roneneldan/TinyStories on the Hugging Face hub).

    "valid" is about 19 MB, 22k stories; "train" is about 1.9 GB. Returns the cached file's path.
    """
    if split not in TINYSTORIES_FILES:
        raise ValueError(f"unknown TinyStories split {split!r}; choose one of {', '.join(TINYSTORIES_FILES)}")
    name = TINYSTORIES_FILES[split]
    url = f"{_base(base_url, HUGGING_FACE)}/datasets/roneneldan/TinyStories/resolve/main/{name}"
    return download(url, _cache(cache_dir) / "tinystories" / name, sha256, progress=progress)


def gutenberg_book(
    book_id: int,
    cache_dir: str | os.PathLike | None = None,
    *,
    base_url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download the plain-text (UTF-8) edition of one Project Gutenberg book, e.g. 11 (Alice)."""
    if isinstance(book_id, bool) or not isinstance(book_id, int) or book_id <= 0:
        raise ValueError(f"book_id must be a positive integer (as in gutenberg.org/ebooks/<id>), got {book_id!r}")
    url = f"{_base(base_url, GUTENBERG)}/cache/epub/{book_id}/pg{book_id}.txt"
    return download(url, _cache(cache_dir) / "gutenberg" / f"pg{book_id}.txt", sha256, progress=progress)


def iter_tinystories(
    path: str | os.PathLike, n: int | None = None, *, skipped: Counter | None = None
) -> Iterator[Document]:
    """Yield the stories of a TinyStories text file (separated by ``<|endoftext|>`` lines) as documents.

    Streams the file, so the 1.9 GB train split never sits in memory. A story with bytes that
    are not UTF-8 is skipped and counted as "not_utf8".
    """
    path = _existing(path)
    skipped = Counter() if skipped is None else skipped
    count, lines, broken = 0, [], False

    def story() -> Document | None:
        text = "\n".join(lines).strip()
        if broken:
            skipped["not_utf8"] += 1
        elif text:
            return Document(id=f"tinystories-{count:06d}", domain="books", text=text, source=f"tinystories:{path.name}")
        return None

    with path.open("rb") as f:
        for raw in f:
            if n is not None and count >= n:
                return
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                broken = True
                continue
            if line.strip() != END_OF_STORY:
                lines.append(line)
                continue
            if (doc := story()) is not None:
                yield doc
                count += 1
            lines, broken = [], False
    if (n is None or count < n) and (doc := story()) is not None:
        yield doc


def read_gutenberg(path: str | os.PathLike) -> Document:
    """One Gutenberg book as a document; its header and licence are left for the cleaning step."""
    path = _existing(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # Gutenberg files start with a byte-order mark
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}); download the UTF-8 edition (pg<id>.txt)") from e
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise ValueError(f"{path} is empty; delete it and download the book again")
    match = re.fullmatch(r"pg(\d+)\.txt", path.name)
    book = match.group(1) if match else path.stem
    return Document(id=f"gutenberg-{book}", domain="books", text=text, source=f"gutenberg:{book}")


def _base(base_url: str | None, default: str) -> str:
    return (base_url or os.environ.get("MINILM_MIRROR") or default).rstrip("/")


def _cache(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    from minilm.cache import home

    return home() / "downloads"


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: download it first (tinystories() or gutenberg_book())")
    return path
