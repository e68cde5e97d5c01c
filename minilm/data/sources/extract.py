"""From HTML to text: keep the main content, drop everything around it.

A web page is mostly not its article: menus, breadcrumbs, cookie banners, newsletter boxes, ads,
"popular posts", share buttons, footers and comments often outweigh the text a reader came for.
Pretraining on them teaches a model to write cookie banners. The extractor here follows the ideas
of Readability, jusText and trafilatura, in three passes over the page:

1. Parse with the standard library's `html.parser` into a flat list of nodes and text *blocks*
   (a block is the text between two block-level boundaries: a paragraph, a heading, a list item,
   a run of text between <br>s). Elements that are boilerplate by their tag (script, style, nav,
   footer, aside, form...) or by their class/id ("cookie", "share", "sidebar", "comment", "ad"...)
   are dropped while parsing. The parser never recurses, and nesting deeper than `MAX_DEPTH` is
   flattened, so a page with thousands of nested <div>s cannot break it; and broken markup (a
   comment or tag never closed) is dropped as a browser drops it, never passed on as text.
2. Score every node by the text it holds: characters of "good" blocks (long enough, few links)
   minus characters of link text. The node with the best score is the main content region; the
   title and standfirst just before it are added back.
3. Inside the region, keep the blocks that are not mostly links. Paragraphs are separated by a
   blank line; list items by a single newline.

`score_extraction` measures the extractor against the site generator's truth, line by line.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from minilm.data.documents import Document

if TYPE_CHECKING:  # only for type hints: extraction itself never needs the generator
    from minilm.data.sources.crawl import CrawlResult
    from minilm.data.sources.site.pages import Site

MAX_DEPTH = 256  # deeper elements are flattened into their ancestor at this depth (browsers cap nesting too)
GOOD_BLOCK_CHARS = 30  # a block with at least this many non-link characters...
GOOD_LINK_DENSITY = 0.3  # ...and at most this share of link text counts as content when scoring nodes
MAX_LINK_DENSITY = 0.5  # inside the region, blocks with more link text than this are dropped

VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
             "source", "track", "wbr"}
BLOCK_TAGS = {"address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
              "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
              "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "html", "li", "main", "menu",
              "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th",
              "thead", "tr", "ul"}
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# Never content, whatever their class: code, styling, navigation, page chrome, widgets.
DROP_TAGS = {"script", "style", "noscript", "template", "svg", "iframe", "head", "title", "nav", "footer",
             "aside", "form", "button", "select", "textarea", "object", "embed", "canvas", "video",
             "audio", "map", "dialog"}
# class/id words that mark boilerplate: whole tokens, and prefixes of tokens ("comment" -> "comments").
HINT_TOKENS = {"ad", "ads", "adsbygoogle", "advert", "advertisement", "tags", "modal", "popup"}
HINT_PREFIXES = ("cookie", "consent", "gdpr", "banner", "newsletter", "subscribe", "signup", "share",
                 "sharing", "social", "sponsor", "promo", "sidebar", "widget", "comment", "breadcrumb",
                 "menu", "nav", "related", "popular", "trending", "footer", "byline", "meta", "disqus",
                 "outbrain", "taboola")
# Words that mark a content wrapper: an element with one of them is never dropped for a hint
# ("content-sidebar" is the content, not the sidebar), as in Readability.
CONTENT_TOKENS = {"article", "body", "content", "main", "column"}
DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "dialog", "alertdialog"}
# Starting one of these closes an open element of the listed kinds, as HTML's implied end tags do.
IMPLIED_CLOSE = {"li": {"li"}, "dt": {"dt", "dd"}, "dd": {"dt", "dd"}, "tr": {"tr", "td", "th"},
                 "td": {"td", "th"}, "th": {"td", "th"}, "option": {"option"}}
# How a tag, comment, declaration or processing instruction begins (the HTML tokenizer's "tag open"):
# '<' then a letter, '/', '!' or '?'. A '<' followed by anything else ("a < b") is text.
MARKUP_START = re.compile(r"<[A-Za-z/!?]")


def boilerplate_hint(attrs: dict) -> bool:
    """Whether an element's class/id/role/visibility says it is boilerplate."""
    if "hidden" in attrs or attrs.get("aria-hidden") == "true":
        return True
    style = (attrs.get("style") or "").replace(" ", "").lower()
    if "display:none" in style or "visibility:hidden" in style:
        return True
    if (attrs.get("role") or "").lower() in DROP_ROLES:
        return True
    tokens = [t for t in re.split(r"[^a-z0-9]+", f"{attrs.get('class') or ''} {attrs.get('id') or ''}".lower()) if t]
    if any(t in CONTENT_TOKENS for t in tokens):
        return False
    return any(t in HINT_TOKENS or t.startswith(HINT_PREFIXES) for t in tokens)


@dataclass
class Block:
    """A run of text between two block boundaries, with what the scorer needs to know about it."""

    owner: int  # index of the innermost element that holds it
    text: str
    link_chars: int
    heading: bool
    list_id: int  # the enclosing list (for joining list items), or -1
    pre: bool = False

    @property
    def link_density(self) -> float:
        return self.link_chars / max(1, len(self.text))


class _PageParser(HTMLParser):
    """Turns HTML into nodes (tag, parent, subtree end) and blocks, dropping boilerplate elements.

    Each open element is a stack entry (tag, node index or -1 when dropped). Nodes are numbered in
    document order, so the subtree of node i is the range i..end[i]: no recursion is ever needed.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = ["#document"]
        self.parents: list[int] = [-1]
        self.ends: list[int] = [0]
        self.blocks: list[Block] = []
        self.stack: list[tuple[str, int]] = []  # (tag, node) with node -1 for dropped elements
        self.nodes: list[int] = [0]  # the open, kept nodes (the last one owns new text)
        self.dropped = 0  # open dropped elements: while > 0, text is ignored
        self.overflow = 0  # start tags ignored beyond MAX_DEPTH, still open
        self.counts = Counter()  # open elements by tag (<a>, headings, <pre>, <li>...) and "anchor"
        self.lists: list[int] = []  # open <ul>/<ol> nodes
        self.anchors: set[int] = set()  # <a> nodes that link within the page (href="#...")
        self.text: list[str] = []
        self.link_chars = 0

    # -- text and block boundaries
    def handle_data(self, data: str) -> None:
        if self.dropped or self.cdata_elem is not None:  # inside boilerplate, or a script/style
            return
        self.text.append(data)
        if self.counts["a"] and not (self.counts["anchor"] and any(self.counts[h] for h in HEADINGS)):
            self.link_chars += len(data.strip())  # a heading that links to itself (a "¶" anchor) is not a link

    def flush(self) -> None:
        """End the current block (at a block boundary) and record it if it has any text."""
        if not self.text:
            return
        raw = "".join(self.text)
        self.text, link_chars, self.link_chars = [], self.link_chars, 0
        pre = self.counts["pre"] > 0
        text = raw.strip("\n") if pre else " ".join(raw.split())
        if not any(c.isalnum() for c in text):
            return
        self.blocks.append(Block(owner=self.nodes[-1], text=text, link_chars=min(link_chars, len(text)),
                                 heading=any(self.counts[h] for h in HEADINGS),
                                 list_id=self.lists[-1] if self.lists and self.counts["li"] else -1, pre=pre))

    # -- elements
    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in VOID_TAGS:
            if tag in ("br", "hr"):
                self.flush()
            return
        closes = IMPLIED_CLOSE.get(tag, set()) | ({"p"} if tag in BLOCK_TAGS else set())
        while self.stack and self.stack[-1][0] in closes:
            self.pop()
        if tag in BLOCK_TAGS:
            self.flush()
        if len(self.stack) >= MAX_DEPTH:  # pathological nesting: treat deeper tags as transparent
            self.overflow += 1
            return
        attributes = {k: (v or "") for k, v in attrs}
        inside_semantic = self.counts["article"] or self.counts["main"]
        drop = self.dropped or tag in DROP_TAGS or (tag == "header" and not inside_semantic)
        if not drop and tag not in ("html", "body", "article", "main"):
            drop = boilerplate_hint(attributes)
        if drop:
            self.stack.append((tag, -1))
            self.dropped += 1
            return
        node = len(self.tags)
        self.tags.append(tag)
        self.parents.append(self.nodes[-1])
        self.ends.append(node)
        self.stack.append((tag, node))
        self.nodes.append(node)
        self.counts[tag] += 1
        if tag in ("ul", "ol"):
            self.lists.append(node)
        if tag == "a" and attributes.get("href", "").startswith("#"):
            self.counts["anchor"] += 1
            self.anchors.add(node)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS:
            if tag == "br":  # browsers read a stray </br> as <br>
                self.flush()
            return
        if self.overflow:
            self.overflow -= 1
            if tag in BLOCK_TAGS:
                self.flush()
            return
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth][0] == tag:
                while len(self.stack) > depth:
                    self.pop()
                return
        # an end tag with no open element: ignore it, as browsers do

    def pop(self) -> None:
        tag, node = self.stack[-1]
        if tag in BLOCK_TAGS:
            self.flush()
        self.stack.pop()
        if node < 0:
            self.dropped -= 1
            return
        self.nodes.pop()
        self.ends[node] = len(self.tags) - 1
        self.counts[tag] -= 1
        if tag in ("ul", "ol"):
            self.lists.pop()
        if node in self.anchors:
            self.counts["anchor"] -= 1

    def parse_marked_section(self, i: int, report: int = 1) -> int:
        """``<![CDATA[...]]>`` and any other ``<![``: outside SVG and MathML a browser reads them as a
        comment up to the next ``>``; html.parser would raise AssertionError on most of them."""
        return self.parse_bogus_comment(i)

    def finish(self) -> None:
        """End the page. html.parser keeps a construct that is still open at the end (a comment, a
        tag or a <script> never closed, even one that starts mid-page, like an attribute whose quote
        never closes) and `close()` would hand it to `handle_data` as text. A browser reads it as
        markup to the end of the file, which shows nothing: so it is dropped here."""
        if self.cdata_elem is not None or MARKUP_START.match(self.rawdata):
            self.rawdata = ""
        self.close()
        while self.stack:
            self.pop()
        self.flush()
        self.ends[0] = len(self.tags) - 1


def _main_region(parser: _PageParser) -> tuple[int, int]:
    """The node that holds the most content text with the fewest links; returns (node, first block).

    A node's score is the length of the "good" blocks inside it (long enough, few links; headings)
    times the share of its text that is not links, as in Readability: a container of paragraphs
    scores high, a menu or a footer scores nothing, and the page's <body> loses to the article
    inside it because the body adds only links.
    """
    n = len(parser.tags)
    good, text, links = [0] * n, [0] * n, [0] * n
    for block in parser.blocks:
        own_text = len(block.text) - block.link_chars
        links[block.owner] += block.link_chars
        text[block.owner] += own_text
        if block.heading and block.link_density < MAX_LINK_DENSITY:
            good[block.owner] += own_text
        elif own_text >= GOOD_BLOCK_CHARS and block.link_density <= GOOD_LINK_DENSITY:
            good[block.owner] += own_text
    if not any(good):  # no block long enough to count (a tiny page): count every link-poor one
        for block in parser.blocks:
            if block.link_density <= GOOD_LINK_DENSITY:
                good[block.owner] += len(block.text) - block.link_chars
    for node in range(n - 1, 0, -1):  # children come after their parents: sum bottom-up
        parent = parser.parents[node]
        good[parent] += good[node]
        text[parent] += text[node]
        links[parent] += links[node]

    def score(node: int) -> tuple:
        content = good[node] * text[node] / max(1, text[node] + links[node])
        return content, text[node], node  # ties: more text, then the later (deeper) node

    best = max(range(n), key=score)
    # The title and standfirst often sit just before the region (outside the body's container):
    # walk back over headings and link-free text inside the region's parent.
    inside = lambda i, node: node <= parser.blocks[i].owner <= parser.ends[node]
    first = next((i for i in range(len(parser.blocks)) if inside(i, best)), len(parser.blocks))
    parent = max(parser.parents[best], 0)
    while first > 0 and inside(first - 1, parent):
        block = parser.blocks[first - 1]
        if not (block.heading or block.link_density <= GOOD_LINK_DENSITY) or block.link_density >= MAX_LINK_DENSITY:
            break
        first -= 1
    return best, first


def extract_blocks(html: str) -> list[Block]:
    """The main-content blocks of a page, in order.

    NUL characters are dropped first, as browsers drop them from text: html.parser would end a tag's
    name at a NUL and pass the whole tag on as text."""
    parser = _PageParser()
    parser.feed(html.replace("\x00", ""))
    parser.finish()
    if not parser.blocks:
        return []
    region, first = _main_region(parser)
    end = parser.ends[region]
    kept = []
    for block in parser.blocks[first:]:
        if block.owner > end:
            break
        if block.link_density <= MAX_LINK_DENSITY:
            kept.append(block)
    return kept


def extract_text(html: str) -> str:
    """The main text of an HTML page: paragraphs separated by blank lines, headings on their own lines."""
    parts = []
    previous = None
    for block in extract_blocks(html):
        if previous is not None:
            same_list = block.list_id >= 0 and block.list_id == previous.list_id
            parts.append("\n" if same_list else "\n\n")
        parts.append(block.text)
        previous = block
    return "".join(parts)


# --------------------------------------------------------------------------------------------------
# From crawled pages to documents, and scoring against the generator's truth


def _lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def _target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def pages_to_documents(crawl_result: "CrawlResult", site: "Site | None" = None) -> list[Document]:
    """One web `Document` per crawled page that has main text (pages with none are left out).

    The crawler does not know the truth; when the generator's `site` is given, each document gets
    its page's labels, plus the lines the extractor let through that are not main content
    (``labels["boilerplate_lines"]``, defect "boilerplate"), which later cleaning should cut.
    """
    from minilm.data.sources.site.pages import url_id

    documents = []
    used: set[str] = set()
    for page in crawl_result.pages:
        text = extract_text(page.html)
        if not text:
            continue
        target = _target(page.url)
        doc_id, labels = url_id(target), {}
        truth = site.page_for(page.url) if site is not None else None
        if truth is not None:
            labels = copy.deepcopy(truth.labels)
            if truth.path == target:
                doc_id = truth.id
            else:  # a URL the site answers with another page's bytes: an exact copy of it
                labels.update(defects=["exact_dup"], dup_of=truth.id)
            main = set(truth.main_lines)
            leaked = [line for line in _lines(text) if line not in main]
            if leaked:
                labels["boilerplate_lines"] = labels.get("boilerplate_lines", []) + leaked
                if "boilerplate" not in labels.setdefault("defects", []):
                    labels["defects"].append("boilerplate")
        unique, k = doc_id, 2
        while unique in used:
            unique, k = f"{doc_id}-{k}", k + 1
        used.add(unique)
        documents.append(Document(id=unique, domain="web", text=text, source=page.url, labels=labels))
    return documents


@dataclass
class ExtractionScore:
    """Line-level precision and recall of extraction against the truth.

    micro: over all lines of all pages together; macro: the mean over pages (each page counts once,
    so one huge page cannot dominate). `worst` lists the pages with the lowest F1.
    """

    precision: float
    recall: float
    macro_precision: float
    macro_recall: float
    pages: int
    worst: list[tuple[str, float, float]] = field(default_factory=list)


def line_matches(text: str, truth_lines: list[str]) -> tuple[int, int, int]:
    """(extracted lines that are main content, extracted lines, main-content lines), as multisets."""
    extracted = Counter(_lines(text))
    truth = Counter(" ".join(line.split()) for line in truth_lines)
    hits = sum((extracted & truth).values())
    return hits, sum(extracted.values()), sum(truth.values())


def score_extraction(site: "Site", worst: int = 5) -> ExtractionScore:
    """Extract every content page of the generated site and compare with its main-content lines."""
    hits = extracted = truth = 0
    per_page = []
    for page in site.content_pages():
        h, e, t = line_matches(extract_text(page.html), page.main_lines)
        hits, extracted, truth = hits + h, extracted + e, truth + t
        per_page.append((page.path, h / e if e else 0.0, h / t if t else 1.0))
    if not per_page:
        raise ValueError("the site has no content pages to score: build it with build_site(n_pages, seed)")
    f1 = lambda p, r: 2 * p * r / (p + r) if p + r else 0.0
    per_page.sort(key=lambda x: f1(x[1], x[2]))
    return ExtractionScore(
        precision=hits / max(1, extracted), recall=hits / max(1, truth),
        macro_precision=sum(p for _, p, _ in per_page) / len(per_page),
        macro_recall=sum(r for _, _, r in per_page) / len(per_page),
        pages=len(per_page), worst=per_page[:worst])
