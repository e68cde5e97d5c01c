"""A real, polite web crawler, written with the standard library.

Common Crawl, the source of most pretraining text, is the output of crawlers like this one, at a
much larger scale. The loop is breadth-first: take a URL from the queue, fetch it, keep it if it is
HTML, and queue the links it contains. Everything else is about being a good citizen and not
getting stuck:

- robots.txt is fetched once per host and obeyed (`urllib.robotparser`);
- only the allowed hosts are crawled, with a polite delay between requests to one host;
- URLs are normalised (`normalize_url`) so that one page reached by many spellings
  (``?utm_source=...``, ``#top``, ``/a/../b``) is fetched once;
- every budget is bounded: pages, depth, bytes per page, bytes in total, seconds per request and
  for the whole crawl. A server that errors, hangs or sends a huge or binary file costs at most one
  timeout and becomes a counted skip with a reason; the crawl never crashes.

`crawl(config)` returns the fetched pages and the list of skipped URLs with their reasons.
"""

from __future__ import annotations

import http.client
import re
import socket
import string
import time
import urllib.error
import urllib.request
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
CHUNK = 64 * 1024
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
        if self.max_depth < 0 or self.timeout <= 0 or self.max_seconds <= 0 or self.delay < 0:
            raise ValueError("CrawlConfig: max_depth and delay must be >= 0, timeout and max_seconds > 0")


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
    reason: str  # "robots", "offsite", "http_404", "timeout", "too_large", "not_html", ...
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


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Hand redirects back to the crawler, which checks the target (host, robots, seen) like a link."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@dataclass
class _Fetch:
    status: int = 0
    content_type: str = ""
    body: bytes = b""
    charset: str = "utf-8"
    location: str = ""
    error: str = ""  # a skip reason, when the fetch failed
    detail: str = ""


def _fetch(opener: urllib.request.OpenerDirector, url: str, config: CrawlConfig, deadline: float,
           html_only: bool = True) -> _Fetch:
    """GET one URL within `deadline`; never raises for network or HTTP trouble."""
    request = urllib.request.Request(url, headers={"User-Agent": config.user_agent,
                                                   "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"})
    timeout = max(0.05, min(config.timeout, deadline - time.monotonic()))
    try:
        with opener.open(request, timeout=timeout) as response:
            result = _Fetch(status=response.status, content_type=response.headers.get_content_type(),
                            charset=response.headers.get_content_charset() or "utf-8")
            if html_only and result.content_type not in HTML_TYPES:
                result.error = "not_html"
                return result
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > config.max_bytes_per_page:
                result.error, result.detail = "too_large", f"Content-Length {length}"
                return result
            chunks, size = [], 0
            while chunk := response.read(CHUNK):
                chunks.append(chunk)
                size += len(chunk)
                if size > config.max_bytes_per_page:
                    result.error, result.detail = "too_large", f"more than {config.max_bytes_per_page} bytes"
                    break
                if time.monotonic() > deadline:  # a server trickling bytes cannot hold us longer
                    result.error = "timeout"
                    break
            result.body = b"".join(chunks)
            return result
    except urllib.error.HTTPError as e:
        with e:
            if 300 <= e.code < 400 and e.headers.get("Location"):
                return _Fetch(status=e.code, location=e.headers["Location"])
            return _Fetch(status=e.code, error=f"http_{e.code}")
    except urllib.error.URLError as e:
        timed_out = isinstance(e.reason, (TimeoutError, socket.timeout))
        return _Fetch(error="timeout" if timed_out else "connection_error", detail=str(e.reason))
    except (TimeoutError, socket.timeout):
        return _Fetch(error="timeout")
    except (http.client.HTTPException, OSError, ValueError) as e:
        return _Fetch(error="connection_error", detail=f"{type(e).__name__}: {e}")


class _Crawler:
    """The state of one crawl: queue, seen URLs, robots rules, budgets and results."""

    def __init__(self, config: CrawlConfig):
        self.config = config
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)
        self.started = time.monotonic()
        self.deadline = self.started + config.max_seconds
        self.queue: deque[tuple[str, int]] = deque()
        self.seen: set[str] = set()
        self.robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self.last_request: dict[str, float] = {}
        self.pages: list[CrawledPage] = []
        self.skipped: list[Skip] = []
        self.aliases: dict[str, str] = {}
        self.requests = 0
        self.total_bytes = 0
        starts = [normalize_url(u) for u in config.start_urls]
        self.allowed = {h.lower() for h in config.allowed_hosts or [urlsplit(u).netloc for u in starts]}

    # -- admission: every URL passes here once, whether a start URL, a link or a redirect target
    def admit(self, raw: str, depth: int) -> str | None:
        """Queue a URL if it is new, on an allowed host, shallow enough and allowed by robots.txt;
        otherwise record why not (once per URL). Returns the normalised URL (None if there is none)."""
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
        elif not self.allowed_by_robots(url):
            self.skipped.append(Skip(url, "robots"))
        else:
            self.queue.append((url, depth))
        return url

    def allowed_by_robots(self, url: str) -> bool:
        parts = urlsplit(url)
        host = parts.netloc
        if host not in self.robots:
            self.robots[host] = self.fetch_robots(f"{parts.scheme}://{host}/robots.txt")
        return self.robots[host].can_fetch(self.config.user_agent, url)

    def fetch_robots(self, robots_url: str) -> urllib.robotparser.RobotFileParser:
        """robots.txt as the standard says: missing means allowed, unreadable or forbidden means not."""
        rules = urllib.robotparser.RobotFileParser(robots_url)
        self.polite_wait(urlsplit(robots_url).netloc)
        fetched = _fetch(self.opener, robots_url, self.config, self.deadline, html_only=False)
        self.requests += 1
        self.total_bytes += len(fetched.body)
        if fetched.status == 200 and not fetched.error:
            rules.parse(fetched.body.decode("utf-8", errors="replace").splitlines())
        elif fetched.status in (401, 403) or fetched.status >= 500 or fetched.error:
            rules.disallow_all = True  # RFC 9309: unreachable robots.txt means crawl nothing
        else:
            rules.allow_all = True  # 404 and friends: no rules
        return rules

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
                self.skipped.extend(Skip(url, stop) for url, _ in self.queue)
                self.queue.clear()
                break
            url, depth = self.queue.popleft()
            kept = self.visit(url, depth)
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

    def visit(self, url: str, depth: int) -> bool:
        """Fetch one URL; keep it if it is readable HTML and queue its links. Returns whether it was kept."""
        self.polite_wait(urlsplit(url).netloc)
        fetched = _fetch(self.opener, url, self.config, min(self.deadline, time.monotonic() + self.config.timeout))
        self.requests += 1
        self.total_bytes += len(fetched.body)
        if fetched.location:
            self.skipped.append(Skip(url, "redirect", fetched.location))
            self.admit(urljoin(url, fetched.location), depth)
            return False
        if fetched.error:
            self.skipped.append(Skip(url, fetched.error, fetched.detail))
            return False
        try:
            html = fetched.body.decode(fetched.charset)
        except (UnicodeDecodeError, LookupError) as e:
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
