"""The opt-in download, against a local HTTP server that misbehaves on request (never the internet)."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minilm.data.sources.download import (
    DownloadError,
    download,
    gutenberg_book,
    iter_tinystories,
    read_gutenberg,
    tinystories,
)

DATA = bytes(range(256)) * 400  # 100 KB, every byte value
SHA = hashlib.sha256(DATA).hexdigest()


@dataclass
class Behaviour:
    """What the server does; each misbehaviour is used up once (or `fail_500` times)."""

    files: dict[str, bytes] = field(default_factory=dict)
    log: list[dict] = field(default_factory=list)
    fail_500: int = 0
    drop_after: int | None = None  # bytes of the body to send before closing the connection
    ignore_range: bool = False
    wrong_bytes: bool = False


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        state: Behaviour = self.server.behaviour
        entry = {"path": self.path, "range": self.headers.get("Range"), "status": None, "sent": 0}
        state.log.append(entry)
        if state.fail_500 > 0:
            state.fail_500 -= 1
            entry["status"] = 500
            self.send_error(500)
            return
        data = state.files.get(self.path)
        if data is None:
            entry["status"] = 404
            self.send_error(404)
            return
        if state.wrong_bytes:
            data = data[::-1]
        start = 0
        requested = self.headers.get("Range", "")
        if requested.startswith("bytes=") and not state.ignore_range:
            start = int(requested[len("bytes=") :].split("-")[0])
        if start >= len(data) and start:
            entry["status"] = 416
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = data[start:]
        entry["status"] = 206 if start else 200
        self.send_response(entry["status"])
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.drop_after is not None:
            body, state.drop_after = body[: state.drop_after], None
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self.wfile.write(body)
        entry["sent"] = len(body)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("MINILM_MIRROR", raising=False)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.behaviour = Behaviour(files={"/data.bin": DATA})
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def fetch(server, dest, **kwargs):
    kwargs = {"progress": False, "timeout": 5, "backoff": 0.01, **kwargs}
    return download(f"{server.url}/data.bin", dest, **kwargs)


def test_download_then_cached_without_a_second_request(server, tmp_path):
    dest = tmp_path / "data.bin"
    assert fetch(server, dest, sha256=SHA) == dest
    assert dest.read_bytes() == DATA and not (tmp_path / "data.bin.part").exists()
    fetch(server, dest, sha256=SHA)
    fetch(server, dest)
    assert len(server.behaviour.log) == 1


def test_damaged_cached_copy_is_fetched_again(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"not the file")
    fetch(server, dest, sha256=SHA)
    assert dest.read_bytes() == DATA and len(server.behaviour.log) == 1


def test_broken_transfer_resumes_with_a_range_request(server, tmp_path):
    dest, half = tmp_path / "data.bin", len(DATA) // 2
    server.behaviour.drop_after = half
    with pytest.raises(DownloadError, match="broke off"):
        fetch(server, dest, retries=0)
    assert not dest.exists() and (tmp_path / "data.bin.part").stat().st_size == half

    fetch(server, dest, sha256=SHA)
    first, second = server.behaviour.log
    assert second["range"] == f"bytes={half}-" and second["status"] == 206
    assert second["sent"] == len(DATA) - half < first["sent"] + second["sent"]
    assert dest.read_bytes() == DATA


def test_broken_transfer_is_retried_within_one_call(server, tmp_path):
    server.behaviour.drop_after = 1000
    fetch(server, tmp_path / "data.bin", sha256=SHA, retries=1)
    assert [entry["range"] for entry in server.behaviour.log] == [None, "bytes=1000-"]


def test_server_that_ignores_range_restarts_the_file(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(DATA[:5000])
    server.behaviour.ignore_range = True
    fetch(server, tmp_path / "data.bin", sha256=SHA)
    log = server.behaviour.log
    assert log[0]["range"] == "bytes=5000-" and log[0]["status"] == 200
    assert (tmp_path / "data.bin").read_bytes() == DATA  # not 5000 bytes too long


def test_complete_part_file_is_finished_without_download(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(DATA)
    fetch(server, tmp_path / "data.bin", sha256=SHA)
    assert server.behaviour.log[0]["status"] == 416 and (tmp_path / "data.bin").read_bytes() == DATA


def test_checksum_mismatch_raises_and_leaves_no_file(server, tmp_path):
    server.behaviour.wrong_bytes = True
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError) as error:
        fetch(server, dest, sha256=SHA)
    message = str(error.value)
    assert SHA in message and hashlib.sha256(DATA[::-1]).hexdigest() in message
    assert list(tmp_path.iterdir()) == []


def test_server_errors_are_retried(server, tmp_path):
    server.behaviour.fail_500 = 2
    fetch(server, tmp_path / "data.bin", sha256=SHA, retries=3)
    assert [entry["status"] for entry in server.behaviour.log] == [500, 500, 200]


def test_server_errors_give_up_after_the_retries(server, tmp_path):
    server.behaviour.fail_500 = 10
    with pytest.raises(DownloadError, match="HTTP 500.*after 2 attempts"):
        fetch(server, tmp_path / "data.bin", retries=1)
    assert len(server.behaviour.log) == 2 and list(tmp_path.iterdir()) == []


def test_not_found_is_a_clear_error_without_retries(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/missing.txt was not found \(HTTP 404\)"):
        download(f"{server.url}/missing.txt", tmp_path / "m.txt", progress=False, backoff=0.01)
    assert len(server.behaviour.log) == 1


def test_unreachable_host_says_the_course_works_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="could not reach host 127.0.0.1.*works offline"):
        download(f"http://127.0.0.1:{port}/x", tmp_path / "x", retries=1, backoff=0.01, progress=False)


@pytest.mark.parametrize("url", ["ftp://example.com/a.txt", "file:///etc/passwd", "example.com/a.txt"])
def test_only_http_urls(url, tmp_path):
    with pytest.raises(ValueError, match="only http"):
        download(url, tmp_path / "a.txt")


def test_malformed_checksum_is_refused_before_any_request(server, tmp_path):
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        fetch(server, tmp_path / "data.bin", sha256="abc123")
    assert server.behaviour.log == []


STORIES = (
    "Once upon a time, Lily found a red ball.\nShe was happy.\n<|endoftext|>\n"
    "Tom had a dog. The dog liked to run.\n<|endoftext|>\n"
    "Ben saw a bird in the sky.\n"
)


def test_tinystories_from_a_mirror(server, tmp_path):
    server.behaviour.files["/datasets/roneneldan/TinyStories/resolve/main/TinyStories-valid.txt"] = STORIES.encode()
    path = tinystories("valid", cache_dir=tmp_path, base_url=server.url + "/", progress=False)
    assert path == tmp_path / "tinystories" / "TinyStories-valid.txt"
    stories = list(iter_tinystories(path))
    assert [doc.text for doc in stories] == [
        "Once upon a time, Lily found a red ball.\nShe was happy.",
        "Tom had a dog. The dog liked to run.",
        "Ben saw a bird in the sky.",
    ]
    assert {doc.domain for doc in stories} == {"books"} and len({doc.id for doc in stories}) == 3
    assert len(list(iter_tinystories(path, n=2))) == 2
    with pytest.raises(ValueError, match="unknown TinyStories split"):
        tinystories("test", cache_dir=tmp_path)


def test_tinystories_skips_stories_that_are_not_utf8(tmp_path):
    path = tmp_path / "stories.txt"
    path.write_bytes(b"A good story.\n<|endoftext|>\nA bad \xff story.\n<|endoftext|>\nAnother good one.\n")
    skipped = Counter()
    assert [doc.text for doc in iter_tinystories(path, skipped=skipped)] == ["A good story.", "Another good one."]
    assert skipped == Counter(not_utf8=1)


def test_gutenberg_from_the_mirror_variable(server, tmp_path, monkeypatch):
    book = "\ufeff*** START OF THE PROJECT GUTENBERG EBOOK 11 ***\r\nAlice was beginning to get very tired.\r\n"
    server.behaviour.files["/cache/epub/11/pg11.txt"] = book.encode("utf-8")
    monkeypatch.setenv("MINILM_MIRROR", server.url)
    path = gutenberg_book(11, cache_dir=tmp_path, progress=False)
    doc = read_gutenberg(path)
    assert doc.source == "gutenberg:11" and doc.domain == "books"
    assert doc.text == "*** START OF THE PROJECT GUTENBERG EBOOK 11 ***\nAlice was beginning to get very tired.\n"
    gutenberg_book(11, cache_dir=tmp_path, progress=False)  # cached
    assert len(server.behaviour.log) == 1
    with pytest.raises(ValueError, match="positive integer"):
        gutenberg_book(0, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="download it first"):
        read_gutenberg(tmp_path / "pg12.txt")
