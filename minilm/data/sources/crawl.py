"""A real, polite web crawler, written with the standard library.

Common Crawl, the source of most pretraining text, is the output of crawlers like this one, at a
much larger scale. The loop is breadth-first: take a URL from the queue, fetch it, keep it if it is
HTML, and queue the links it contains. Everything else is about being a good citizen and not
getting stuck:

- robots.txt is fetched once per host and obeyed (`urllib.robotparser`), read as RFC 9309 says:
  a 4xx means no rules, a server error or no answer means crawl nothing (`_Crawler.fetch_robots`);
- only the allowed hosts are crawled, with a polite delay between requests to one host; the crawler
  never even connects to another host;
- a redirect is checked like a link (host, robots, seen), and a chain of them is cut after
  `max_redirects` hops, so a server that redirects to ever-new URLs cannot keep it busy;
- URLs are normalised (`normalize_url`) so that one page reached by many spellings
  (``?utm_source=...``, ``#top``, ``/a/../b``) is fetched once;
- every budget is bounded: pages, depth, bytes per page, bytes in total, seconds per request and
  for the whole crawl. A server that errors, hangs, trickles a byte at a time, lies about sizes or
  sends a huge or binary file costs at most one request's timeout and becomes a counted skip with
  a reason; the crawl never crashes.

`crawl(config)` returns the fetched pages and the list of skipped URLs with their reasons.
"""

from __future__ import annotations

import http.client
import io
import re
import socket
import string
import time
import urllib.robotparser
from collections import Counter, deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

# Query parameters that only say where a click came from: the page is the same without them.
TRACKING_PARAMS = {"ref", "ref_src", "fbclid", "gclid", "dclid", "msclkid", "yclid", "igshid", "mc_cid",
                   "mc_eid", "_ga", "_hsenc", "_hsmi", "mkt_tok", "spm"}
TRACKING_PREFIXES = ("utm_",)
DEFAULT_PORTS = {"http": 80, "https": 443}
HTML_TYPES = ("text/html", "application/xhtml+xml")
READ_SIZE = 16 * 1024  # a body is read in pieces this small, so its byte budget is checked often
ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309: parse at least the first 500 KiB of a robots.txt
ROBOTS_MAX_REDIRECTS = 5  # RFC 9309: follow at least five redirects to find robots.txt
UNRESERVED = set(string.ascii_letters + string.digits + "-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def normalize_url(url: str, base: str | None = None) -> str:
    """The canonical spelling of a URL, so that equal pages get equal strings.

    Resolves `url` against `base`, lowercases scheme and host, drops the default port, userinfo
    and fragment, removes ``.`` and ``..`` segments, normalises percent-escapes, drops tracking
    parameters (``utm_*``, ``ref``, ``fbclid``...) and sorts the rest. Raises ValueError for a URL
    that is not http(s) or has no host.
    """
    absolute = urljoin(base, url.strip()) if base else url.strip()
    parts = urlsplit(absolute)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError(f"URL has no host: {url!r}")
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"URL has a bad port: {url!r}") from e
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _normalize_escapes(_remove_dot_segments(parts.path or "/"))
    params = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
              if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(TRACKING_PREFIXES)]
    query = urlencode(sorted(params))
    return urlunsplit((scheme, netloc, path, query, ""))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: ``/a/b/../c/./d`` -> ``/a/c/d``."""
    output: list[str] = []
    for segment in path.split("/")[1:] if path.startswith("/") else path.split("/"):
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    result = "/" + "/".join(output)
    if path.endswith(("/.", "/..")) and not result.endswith("/"):
        result += "/"
    return result


def _normalize_escapes(path: str) -> str:
    """Decode escapes of characters that need none (``%7E`` -> ``~``), upper-case the others
    (``%2f`` -> ``%2F``), and escape what must be (spaces, non-ASCII letters as UTF-8)."""

    def fix(match: re.Match) -> str:
        char = chr(int(match[1], 16))
        return char if char in UNRESERVED else "%" + match[1].upper()

    return quote(_ESCAPE.sub(fix, path), safe="/:@!$&'()*+,;=-._~%")


class _LinkParser(HTMLParser):
    """Collects the targets of <a href> (and the page's <base href>), nothing else."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "a" or tag == "base":
            href = dict(attrs).get("href")
            if href:
                if tag == "a":
                    self.links.append(href)
                elif self.base is None:
                    self.base = href


def extract_links(html: str, page_url: str) -> list[str]:
    """The absolute targets of a page's links, in order (not yet normalised or filtered)."""
    parser = _LinkParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser is lenient; if it ever gives up, keep the links found so far
        pass
    base = urljoin(page_url, parser.base) if parser.base else page_url
    return [urljoin(base, href.strip()) for href in parser.links]


@dataclass
class CrawlConfig:
    """What to crawl and the budgets that bound it. Defaults suit a polite crawl of a real site."""

    start_urls: list[str]
    allowed_hosts: list[str] | None = None  # host or host:port; default: the hosts of the start URLs
    max_pages: int = 1000  # HTML pages kept
    max_depth: int = 5  # links followed from a start URL
    max_bytes_per_page: int = 2_000_000
    max_total_bytes: int = 200_000_000
    max_seconds: float = 600.0  # the whole crawl
    timeout: float = 10.0  # one request, connection to last byte
    delay: float = 1.0  # polite pause between two requests to the same host
    max_redirects: int = 5  # redirect hops followed from one URL (browsers and crawlers cap them too)
    user_agent: str = "minilm-crawler/0.1 (course crawler; obeys robots.txt)"
    on_decode_error: str = "skip"  # "skip": count the page as a skip; "replace": keep it with U+FFFD
    progress: bool = False  # a tqdm progress bar

    def __post_init__(self):
        if not self.start_urls:
            raise ValueError("CrawlConfig needs at least one start URL")
        if self.on_decode_error not in ("skip", "replace"):
            raise ValueError(f"on_decode_error must be 'skip' or 'replace', not {self.on_decode_error!r}")
        for name in ("max_pages", "max_bytes_per_page", "max_total_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"CrawlConfig.{name} must be at least 1")
        for url in self.start_urls:
            normalize_url(url)  # raises ValueError naming a start URL that is not http(s)
        if self.max_depth < 0 or self.max_redirects < 0 or self.delay < 0:
            raise ValueError("CrawlConfig: max_depth, max_redirects and delay must be >= 0")
        if self.timeout <= 0 or self.max_seconds <= 0:
            raise ValueError("CrawlConfig: timeout and max_seconds must be > 0")


@dataclass
class CrawledPage:
    url: str  # normalised
    status: int
    html: str
    depth: int
    bytes: int
    content_type: str
    links: list[str] = field(default_factory=list)  # normalised targets found on the page


@dataclass
class Skip:
    url: str
    reason: str  # "robots", "offsite", "redirect", "http_404", "timeout", "too_large", "not_html", ...
    detail: str = ""


@dataclass
class CrawlResult:
    pages: list[CrawledPage]
    skipped: list[Skip]
    aliases: dict[str, str]  # link as written -> normalised URL, where they differ
    requests: int  # HTTP requests made, robots.txt included
    total_bytes: int  # body bytes read
    elapsed: float  # seconds

    def skipped_by_reason(self) -> Counter:
        return Counter(s.reason for s in self.skipped)

    @property
    def pages_per_second(self) -> float:
        return len(self.pages) / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> dict:
        return {"pages": len(self.pages), "skipped": len(self.skipped), "requests": self.requests,
                "bytes": self.total_bytes, "seconds": round(self.elapsed, 3),
                "pages_per_second": round(self.pages_per_second, 1),
                "skipped_by_reason": dict(self.skipped_by_reason().most_common())}


class _DeadlineSocket:
    """A connected socket whose every read and write must finish by `deadline`.

    A socket timeout bounds one wait for bytes, not a whole response: a server that sends a byte
    every half second never trips it, and holds the crawler for as long as it likes. So before each
    read the timeout is set to the time left, and a read after the deadline fails at once. http.client
    reads the status line, the headers and the body through `makefile`, so all of them are bounded.
    """

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline

    def time_left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request ran out of time")
        return left

    def recv_into(self, buffer) -> int:
        self.sock.settimeout(self.time_left())
        return self.sock.recv_into(buffer)

    def sendall(self, data: bytes) -> None:
        self.sock.settimeout(self.time_left())
        self.sock.sendall(data)

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        return io.BufferedReader(_SocketReader(self))

    def close(self) -> None:
        """Nothing: http.client "closes" the socket once it has a last response's headers, and reads
        the body afterwards; `_fetch` closes the real socket when it is done."""


class _SocketReader(io.RawIOBase):
    """The raw stream under `_DeadlineSocket.makefile`: every read goes through the deadline."""

    def __init__(self, sock: _DeadlineSocket):
        super().__init__()
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self.sock.recv_into(buffer)


@dataclass
class _Fetch:
    status: int = 0
    content_type: str = ""
    body: bytes = b""
    charset: str = "utf-8"
    location: str = ""  # where a redirect points (not followed here)
    truncated: bool = False  # the body is the first `max_bytes` of a longer one
    error: str = ""  # a skip reason, when the fetch failed
    detail: str = ""


def _fetch(url: str, user_agent: str, deadline: float, max_bytes: int, html_only: bool = True,
           truncate: bool = False) -> _Fetch:
    """GET one URL, all of it by `deadline`; never raises for network or HTTP trouble.

    Redirects are returned, not followed: the crawler checks a redirect's target as it checks a
    link. At most `max_bytes` of the body are read: a longer body is a "too_large" error, or with
    `truncate` (for robots.txt) its first `max_bytes`. Every read and write after connecting obeys
    the deadline (`_DeadlineSocket`); connecting gets the time left as its timeout (looking up the
    host's name is the one wait the deadline cannot cut, and only allowed hosts are looked up).
    """
    left = deadline - time.monotonic()
    if left <= 0:
        return _Fetch(error="timeout", detail="no time left for the request")
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = sock = None
    try:
        connection = connection_class(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme], timeout=left)
        connection.connect()
        sock = connection.sock
        connection.sock = _DeadlineSocket(sock, deadline)
        connection.request("GET", urlunsplit(("", "", parts.path or "/", parts.query, "")), headers={
            "User-Agent": user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"})
        response = connection.getresponse()
        result = _Fetch(status=response.status, content_type=response.headers.get_content_type(),
                        charset=response.headers.get_content_charset() or "utf-8")
        if 300 <= response.status < 400 and response.getheader("Location"):
            result.location = response.getheader("Location")
        elif not 200 <= response.status < 300:
            result.error = f"http_{response.status}"
        elif html_only and result.content_type not in HTML_TYPES:
            result.error = "not_html"
        else:
            _read_body(response, result, max_bytes, truncate)
        return result
    except TimeoutError as e:
        return _Fetch(error="timeout", detail=str(e))
    except (http.client.HTTPException, OSError, ValueError) as e:
        return _Fetch(error="connection_error", detail=f"{type(e).__name__}: {e}"[:200])
    finally:
        if connection is not None:
            connection.close()
        if sock is not None:
            sock.close()


def _read_body(response: http.client.HTTPResponse, result: _Fetch, max_bytes: int, truncate: bool) -> None:
    """Read the body into `result` in small pieces, stopping one byte past `max_bytes`; say what went wrong.

    The server's Content-Length is a claim, not a fact: too big a claim is refused before reading
    anything, and a body that ends before its claim is "incomplete" (a body longer than its claim
    is cut at the claim by http.client).
    """
    length = response.getheader("Content-Length", "")
    length = int(length) if length.isdigit() else None
    if length is not None and length > max_bytes and not truncate:
        result.error, result.detail = "too_large", f"Content-Length {length}"
        return
    chunks, size = [], 0
    while size <= max_bytes and (chunk := response.read1(min(READ_SIZE, max_bytes + 1 - size))):
        chunks.append(chunk)
        size += len(chunk)
    result.body = b"".join(chunks)
    if size > max_bytes and truncate:
        result.body, result.truncated = result.body[:max_bytes], True
    elif size > max_bytes:
        result.error, result.detail = "too_large", f"more than {max_bytes} bytes"
    elif length is not None and size < length:
        result.error, result.detail = "incomplete", f"{size} of the {length} bytes of its Content-Length"


class _Crawler:
    """The state of one crawl: queue, seen URLs, robots rules, budgets and results."""

    def __init__(self, config: CrawlConfig):
        self.config = config
        self.started = time.monotonic()
        self.deadline = self.started + config.max_seconds
        self.queue: deque[tuple[str, int, int]] = deque()  # (url, depth, redirects followed to reach it)
        self.seen: set[str] = set()
        self.robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self.robots_trouble: dict[str, str] = {}  # host -> why its robots.txt could not be read
        self.last_request: dict[str, float] = {}
        self.pages: list[CrawledPage] = []
        self.skipped: list[Skip] = []
        self.aliases: dict[str, str] = {}
        self.requests = 0
        self.total_bytes = 0
        starts = [normalize_url(u) for u in config.start_urls]
        self.allowed = {h.lower() for h in config.allowed_hosts or [urlsplit(u).netloc for u in starts]}

    # -- admission: every URL passes here once, whether a start URL, a link or a redirect target
    def admit(self, raw: str, depth: int, redirects: int = 0) -> str | None:
        """Queue a URL if it is new, on an allowed host, shallow enough, reached by few enough
        redirects and allowed by robots.txt; otherwise record why not (once per URL).
        Returns the normalised URL (None if there is none)."""
        try:
            url = normalize_url(raw)
        except ValueError as e:  # mailto:, javascript:, tel:, or a malformed address
            if raw not in self.seen:
                self.seen.add(raw)
                scheme = urlsplit(raw).scheme.lower()
                self.skipped.append(Skip(raw, "bad_url" if scheme in DEFAULT_PORTS else "not_http", str(e)))
            return None
        if url != raw:
            self.aliases.setdefault(raw, url)
        if url in self.seen:
            return url
        self.seen.add(url)
        if urlsplit(url).netloc not in self.allowed:
            self.skipped.append(Skip(url, "offsite"))
        elif depth > self.config.max_depth:
            self.skipped.append(Skip(url, "depth"))
        elif redirects > self.config.max_redirects:
            self.skipped.append(Skip(url, "too_many_redirects", f"more than max_redirects={self.config.max_redirects}"))
        elif not self.allowed_by_robots(url):
            self.skipped.append(Skip(url, "robots", self.robots_trouble.get(urlsplit(url).netloc, "")))
        else:
            self.queue.append((url, depth, redirects))
        return url

    def on_allowed_host(self, url: str) -> bool:
        try:
            return urlsplit(normalize_url(url)).netloc in self.allowed
        except ValueError:
            return False

    def allowed_by_robots(self, url: str) -> bool:
        parts = urlsplit(url)
        host = parts.netloc
        if host not in self.robots:
            self.robots[host] = self.fetch_robots(f"{parts.scheme}://{host}/robots.txt")
        return self.robots[host].can_fetch(self.config.user_agent, url)

    def fetch_robots(self, url: str) -> urllib.robotparser.RobotFileParser:
        """A host's robots.txt, read as RFC 9309 says (section 2.3.1):

        - 2xx: its rules, from its first 500 KiB (the RFC asks crawlers to read at least that much);
        - 3xx: follow the redirect, at most five times, and only to the allowed hosts;
        - 4xx: there is no robots.txt for us, so nothing is forbidden;
        - 5xx, no answer, a timeout, too many redirects: the server cannot tell us its rules, so
          assume the worst ("complete disallow") and crawl nothing there. `robots_trouble` says why.
        Each request gets one request's timeout, like a page: a robots.txt that trickles in cannot
        hold the crawl any longer than a page can.
        """
        host = urlsplit(url).netloc
        rules = urllib.robotparser.RobotFileParser(url)
        for redirects in range(ROBOTS_MAX_REDIRECTS + 1):
            fetched = self.request(url, max_bytes=ROBOTS_MAX_BYTES, html_only=False, truncate=True)
            if not fetched.location:
                break
            target = urljoin(url, fetched.location)
            if redirects == ROBOTS_MAX_REDIRECTS:
                fetched.error, fetched.detail = "redirect", f"more than {ROBOTS_MAX_REDIRECTS} redirects"
                break
            if not self.on_allowed_host(target):
                fetched.error, fetched.detail = "redirect", f"to {target}, off the allowed hosts"
                break
            url = target
        if 200 <= fetched.status < 300 and not fetched.error:
            lines = fetched.body.decode("utf-8", errors="replace").splitlines()
            rules.parse(lines[:-1] if fetched.truncated else lines)  # the last line may be cut short
        elif 400 <= fetched.status < 500:
            rules.allow_all = True
        else:
            rules.disallow_all = True
            why = fetched.error + (f": {fetched.detail}" if fetched.detail else "")
            self.robots_trouble[host] = f"robots.txt unreadable ({why}), so nothing is allowed"
        return rules

    def request(self, url: str, **read) -> _Fetch:
        """One polite GET, within one request's timeout and the crawl's deadline; counted."""
        self.polite_wait(urlsplit(url).netloc)
        deadline = min(self.deadline, time.monotonic() + self.config.timeout)
        fetched = _fetch(url, self.config.user_agent, deadline, **read)
        self.requests += 1
        self.total_bytes += len(fetched.body)
        return fetched

    def polite_wait(self, host: str) -> None:
        wait = self.last_request.get(host, -1e9) + self.config.delay - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, max(0.0, self.deadline - time.monotonic())))
        self.last_request[host] = time.monotonic()

    # -- the loop
    def run(self) -> CrawlResult:
        for url in self.config.start_urls:
            self.admit(url, 0)
        bar = None
        if self.config.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.config.max_pages, desc="crawl", unit="page")
        while self.queue:
            stop = self.budget_exhausted()
            if stop:
                self.skipped.extend(Skip(url, stop) for url, _, _ in self.queue)
                self.queue.clear()
                break
            kept = self.visit(*self.queue.popleft())
            if bar is not None and kept:
                bar.update(1)
        if bar is not None:
            bar.close()
        return CrawlResult(pages=self.pages, skipped=self.skipped, aliases=self.aliases, requests=self.requests,
                           total_bytes=self.total_bytes, elapsed=time.monotonic() - self.started)

    def budget_exhausted(self) -> str:
        if len(self.pages) >= self.config.max_pages:
            return "max_pages"
        if time.monotonic() >= self.deadline:
            return "time_budget"
        if self.total_bytes >= self.config.max_total_bytes:
            return "max_total_bytes"
        return ""

    def visit(self, url: str, depth: int, redirects: int) -> bool:
        """Fetch one URL; keep it if it is readable HTML and queue its links. Returns whether it was kept.

        A redirect is a skip whose target is admitted like a link, one hop further along its chain."""
        fetched = self.request(url, max_bytes=self.config.max_bytes_per_page)
        if fetched.location:
            self.skipped.append(Skip(url, "redirect", fetched.location))
            self.admit(urljoin(url, fetched.location), depth, redirects + 1)
            return False
        if fetched.error:
            self.skipped.append(Skip(url, fetched.error, fetched.detail))
            return False
        try:
            html = fetched.body.decode(fetched.charset)
        except (UnicodeError, LookupError) as e:  # bytes invalid in their charset, or no such charset
            if self.config.on_decode_error == "skip":
                self.skipped.append(Skip(url, "decode_error", f"{type(e).__name__}: {e}"[:200]))
                return False
            html = fetched.body.decode("utf-8", errors="replace")
        links = [target for link in extract_links(html, url) if (target := self.admit(link, depth + 1))]
        self.pages.append(CrawledPage(url=url, status=fetched.status, html=html, depth=depth,
                                      bytes=len(fetched.body), content_type=fetched.content_type, links=links))
        return True


def crawl(config: CrawlConfig) -> CrawlResult:
    """Crawl breadth-first from `config.start_urls` within the config's hosts and budgets."""
    return _Crawler(config).run()
