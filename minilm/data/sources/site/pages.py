"""The Millbrook Gazette as a website: pages in HTML, the traps every crawler meets, and the whole site.

Real pretraining text starts as web pages: a crawler fetches them, an extractor keeps the main text
and drops the menus, cookie banners, ads and comments around it, and later filters remove spam,
foreign pages and copies. To practise all of that offline, and to *measure* it, `build_site` builds
the whole site of the town's paper from a seed: news, blog posts, recipes, product reviews, forum
threads, tag and archive pages, a few pages in French, German and Spanish, keyword spam, near and
exact copies under other URLs, private pages that robots.txt forbids, broken links, a page that
fails, one that hangs, one that is huge, one nested thousands of levels deep, an image, and a page
with bytes that are not UTF-8.

The text of each page comes from `content.py`; this module wraps it in one of four layouts, so that
no single rule finds the content. Because the generator writes every page, it knows the truth about
each one: the lines of its main content (to score the extractor) and its defects in the catalogue's
terms (to score the filters later). `server.serve(site)` serves the pages over HTTP.
"""

from __future__ import annotations

import html
import random
import re
import struct
import zlib
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from minilm.data.filters import dedup
from minilm.data.sources.site.content import (
    BLOG_SENTENCES, COMMENTS, NEWS_SENTENCES, SITE_NAME, SPAM_COMMENTS, STREETS, TOWN, Draft, SentenceWriter,
    block_lines, near_copy, person, publication_date, slot_values, slugify, write_blog, write_foreign, write_forum,
    write_news, write_recipe, write_review, write_spam,
)  # fmt: skip
from minilm.world import ALL_NAMES, MONTHS, SURNAMES

HTML_TYPE = "text/html; charset=utf-8"
HANG_SECONDS = 30.0  # the hanging page answers after this long: far beyond any sane crawler timeout
MIN_PAGES = 50
SECTIONS = {"news": "News", "blog": "Blog", "recipes": "Recipes", "reviews": "Reviews", "forum": "Forum"}
TAGS = ["community", "food", "family", "weather", "school", "business", "sport", "history"]

# Boilerplate: the text around the content that an extractor must leave out.
COOKIE_TEXTS = [
    "We use cookies to improve your experience on our site. By continuing to browse, you agree to our use of cookies.",
    "This website uses cookies to make sure you get the best experience.",
    "We and our partners use cookies to personalise content and ads and to analyse our traffic.",
]
NEWSLETTER_TITLES = ["Subscribe to our newsletter", "Never miss a story", "Get the Gazette by email"]
NEWSLETTER_TEXTS = [
    "Get the best of Millbrook in your inbox every Friday.",
    "One email a week with the stories everyone is talking about.",
    "Sign up for free and be the first to hear the news.",
]
AD_TEXTS = [
    "Holiday cottages by the sea from $89 a night. Book today!",
    "Fast broadband for your home. Switch now and save 30%.",
    "Hearing aids that nobody will notice. Free trial this month.",
    "Meet singles in your area tonight.",
]
POPULAR_TITLES = ["Popular posts", "Most read", "Trending now", "Readers' favourites"]
RELATED_TITLES = ["Related stories", "You may also like", "More from the Gazette"]
ANALYTICS = ("window.dataLayer = window.dataLayer || []; function gtag(){dataLayer.push(arguments);} "
             "gtag('js', new Date()); gtag('config', 'G-MILLBROOK');")
STYLES = ["body{font-family:Georgia,serif;margin:0}.content{max-width:720px}",
          "body{font:16px/1.5 sans-serif}#sidebar{float:right;width:300px}",
          ".wrap{display:flex}.ad-slot{border:1px solid #ccc}"]
FOOTER_LINKS = [("About us", "/about"), ("Contact", "/contact"), ("Privacy policy", "/privacy"),
                ("Staff area", "/private/staff-directory"), ("Admin", "/admin/"),
                ("Town map", "/images/town-map.png"), ("Events calendar", "/events/calendar"),
                ("Advertise", "http://ads.example/advertise")]
BROKEN_LINKS = ["/news/removed-story", "/jobs", "/contact", "/privacy"]


# --------------------------------------------------------------------------------------------------
# Pages and the site


@dataclass
class Page:
    """One URL of the site: what the server sends, and the truth the generator knows about it.

    `main_lines` are the lines a perfect extractor keeps (title, headings, paragraphs, list items);
    `labels` are the page's defects and facts in the catalogue's terms (see the course brief).
    """

    id: str
    path: str
    kind: str
    body: bytes
    status: int = 200
    content_type: str = HTML_TYPE
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds the server waits before answering
    send_length: bool = True  # False: no Content-Length, the client must count the bytes itself
    main_lines: list[str] = field(default_factory=list)
    labels: dict = field(default_factory=dict)

    @property
    def html(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Site:
    """The whole site: pages by path (query included for the few that have one) and robots.txt."""

    pages: dict[str, Page]
    robots_txt: str
    seed: int
    request_log: list[str] = field(default_factory=list)  # every request target the server answered

    def page_for(self, url: str) -> Page | None:
        """The page the server answers for a URL or request target.

        Like most real sites, the server ignores query strings it does not know, so
        ``/news/x?utm_source=mail`` is the same page as ``/news/x``.
        """
        parts = urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            for query in (parts.query, urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))):
                if f"{path}?{query}" in self.pages:
                    return self.pages[f"{path}?{query}"]
        return self.pages.get(path)

    def content_pages(self) -> list[Page]:
        """Pages with main content to extract: HTML, status 200, with truth lines."""
        return [p for p in self.pages.values()
                if p.status == 200 and p.content_type.startswith("text/html") and p.main_lines]


def url_id(path: str) -> str:
    """A readable, stable document id for a path (query included): ``/news/a-b?p=2`` -> ``web-news-a-b-p-2``."""
    slug = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
    return f"web-{slug or 'home'}"


# --------------------------------------------------------------------------------------------------
# Markup. Four layouts, so that no single template rule can find the content: HTML5 with
# <article>/<main>, classic <div class="content"> blogs, old table layouts with <br><br> paragraphs,
# and "plain" markup with generated class names and no semantic hint at all.

esc = html.escape


def _head(title: str, rng: random.Random, lang: str = "en") -> str:
    return (f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)} | {SITE_NAME}</title>\n<style>{rng.choice(STYLES)}</style>\n"
            f"<script>{ANALYTICS}</script>\n</head>\n")


def _link(text: str, href: str, **attrs) -> str:
    extra = "".join(f' {k.rstrip("_")}="{esc(v)}"' for k, v in attrs.items())
    return f'<a href="{esc(href)}"{extra}>{esc(text)}</a>'


def _nav_links() -> list[tuple[str, str]]:
    return [("Home", "/")] + [(label, f"/{key}/") for key, label in SECTIONS.items()] + [("About", "/about")]


def _cookie(rng: random.Random) -> str:
    attrs = rng.choice(['id="cookie-notice"', 'class="consent-banner"', 'id="gdpr-popup" class="modal"',
                        'class="cookie-bar fixed-bottom"'])
    return (f"<div {attrs}><p>{esc(rng.choice(COOKIE_TEXTS))}</p>"
            "<button>Accept all</button> <button>Manage settings</button></div>\n")


def _newsletter(rng: random.Random) -> str:
    cls = rng.choice(["newsletter", "subscribe-box", "signup-widget"])
    return (f'<div class="{cls}"><h3>{esc(rng.choice(NEWSLETTER_TITLES))}</h3>'
            f"<p>{esc(rng.choice(NEWSLETTER_TEXTS))}</p>"
            '<form action="/subscribe" method="post"><input type="email" name="email" placeholder="Your email">'
            "<button>Sign up</button></form></div>\n")


def _ad(rng: random.Random, ctx: dict) -> str:
    href = rng.choice(ctx["spam_paths"] + ["http://ads.example/click?id=" + str(rng.randint(100, 999))])
    label = rng.choice(["Sponsored", "Advertisement", "Promoted"])
    text = rng.choice(AD_TEXTS)
    style = rng.randrange(4)
    if style == 0:
        return f'<div class="ad-slot"><span>{label}</span><p>{_link(text, href)}</p></div>\n'
    if style == 1:
        return f'<div id="ad-300x250"><small>{label}</small><br>{_link(text, href)}</div>\n'
    if style == 2:
        return f'<aside class="sponsored"><p>{label}: {esc(text)}</p></aside>\n'
    return (f'<ins class="adsbygoogle" data-ad-slot="{rng.randint(1000, 9999)}">'
            f"<p>{label}</p><p>{_link(text, href)}</p></ins>\n")


def _popular(rng: random.Random, ctx: dict) -> tuple[str, str]:
    """A heading and a list of links to other articles (some with tracking parameters)."""
    picks = rng.sample(ctx["articles"], min(5, len(ctx["articles"])))
    items = []
    for d in picks:
        href = d.path + rng.choice(["", "", "?ref=sidebar", "?utm_source=sidebar&utm_medium=web"])
        items.append(f"<li>{_link(d.title, href)}</li>")
    return esc(rng.choice(POPULAR_TITLES)), "<ul>" + "".join(items) + "</ul>"


def _share(rng: random.Random, path: str) -> str:
    url = f"https://millbrook-gazette.example{path}"
    links = [("Facebook", f"https://www.facebook.com/sharer/sharer.php?u={url}"),
             ("Twitter", f"https://twitter.com/intent/tweet?url={url}"),
             ("Email", f"mailto:?subject=Millbrook%20Gazette&body={url}")]
    cls = rng.choice(["share-buttons", "social-share", "sharing"])
    return f'<div class="{cls}">Share this: ' + " ".join(_link(t, h) for t, h in links) + "</div>\n"


def _comments(draft: Draft, rng: random.Random) -> str:
    if not draft.comments:
        return ""
    parts = [f'<section id="comments" class="comments"><h3>{len(draft.comments)} comments</h3>']
    for i, (author, text, reply) in enumerate(draft.comments):
        parts.append(f'<div class="comment" id="comment-{i}"><p class="comment-author">{esc(author)}</p>'
                     f"<p>{esc(text)}</p>{_link('Reply', reply)}</div>")
    parts.append("</section>\n")
    return "".join(parts)


def _footer_links(rng: random.Random) -> str:
    links = rng.sample(FOOTER_LINKS, 6)
    return " | ".join(_link(t, h) for t, h in links)


def _copyright() -> str:
    return f"&copy; 2024 {SITE_NAME}. All rights reserved."


def _with_links(escaped: str, links: list[tuple[str, str]]) -> str:
    """Escaped text with the first occurrence of each anchor turned into a link."""
    for anchor, href in links:
        escaped = escaped.replace(esc(anchor), _link(anchor, href), 1)
    return escaped


def _render_blocks(blocks: list, style: str, rng: random.Random, ad_html: str = "") -> str:
    """The main blocks as markup. style: "p" (<p> and <h2>), "div" (bare <div>s), "br" (text and <br><br>)."""
    out = []
    paragraphs = 0
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            out.append({"p": f"<h1>{esc(block[1])}</h1>", "div": f"<h1>{esc(block[1])}</h1>",
                        "br": f'<font size="5"><b>{esc(block[1])}</b></font><br><br>'}[style])
        elif kind == "h2":
            out.append({"p": f"<h2>{esc(block[1])}</h2>", "div": f"<div><strong>{esc(block[1])}</strong></div>",
                        "br": f"<b>{esc(block[1])}</b><br><br>"}[style])
        elif kind == "p":
            text = _with_links(esc(block[1]), block[2:])
            out.append({"p": f"<p>{text}</p>", "div": f"<div>{text}</div>", "br": f"{text}<br><br>"}[style])
            paragraphs += 1
            if paragraphs == 2 and ad_html:
                out.append(ad_html)
        elif kind in ("ul", "ol"):
            out.append(f"<{kind}>" + "".join(f"<li>{esc(item)}</li>" for item in block[1]) + f"</{kind}>")
        elif kind == "teaser":
            _, title, href, summary = block
            if style == "br":
                out.append(f"<a href=\"{esc(href)}\"><b>{esc(title)}</b></a><br>{esc(summary)}<br><br>")
            else:
                tag = "p" if style == "p" else "div"
                out.append(f'<div class="teaser"><h2>{_link(title, href)}</h2><{tag}>{esc(summary)}</{tag}></div>')
        elif kind == "post":
            _, author, date, texts, links = block
            number = rng.randint(1000, 99999)
            body = "".join(f"<p>{_with_links(esc(t), links)}</p>" for t in texts)
            actions = f'{_link("Quote", f"#post-{number}")} {_link("Reply", f"#post-{number}")}'
            if style == "br":
                out.append(f'<table class="forumpost"><tr><td class="post-meta">{esc(author)}<br>{esc(date)}</td>'
                           f"<td>{body}<br>{actions}</td></tr></table>")
            else:
                out.append(f'<div class="post" id="post-{number}"><div class="post-meta"><span>{esc(author)}</span> '
                           f'&middot; <time>{esc(date)}</time></div><div class="post-body">{body}</div>'
                           f'<div class="post-actions">{actions}</div></div>')
    return "\n".join(out) + "\n"


def _crumbs(draft: Draft) -> list[tuple[str, str]]:
    """The breadcrumb trail above a page: home, then its section if it has one."""
    return [("Home", "/")] + ([(SECTIONS[draft.section], f"/{draft.section}/")] if draft.section else [])


def _byline(draft: Draft) -> str:
    if not draft.author:
        return ""
    return f"By {esc(draft.author)} &middot; {esc(draft.date)}" if draft.date else f"By {esc(draft.author)}"


def _article_extras(draft: Draft, rng: random.Random) -> str:
    """Tags, 'read more' and print links that sit right after the text."""
    parts = []
    if draft.tags:
        parts.append('<p class="tags">Tags: ' + ", ".join(_link(t, f"/tag/{t}/") for t in draft.tags) + "</p>")
    for text, href in draft.extra_links:
        parts.append(f"<p>{_link(text, href)}</p>")
    return "\n".join(parts) + "\n"


def _layout_html5(draft: Draft, rng: random.Random, ctx: dict) -> str:
    heading, popular = _popular(rng, ctx)
    has_title = draft.blocks[0][0] == "h1"
    title_html = f"<h1>{esc(draft.blocks[0][1])}</h1>" if has_title else ""
    rest = draft.blocks[1:] if has_title else draft.blocks
    byline = f'<p class="byline">{_byline(draft)}</p>' if draft.author else ""
    cookie, cookie_on_top = _cookie(rng), rng.random() < 0.5
    _, related = _popular(rng, ctx)
    return (
        _head(draft.title, rng, draft.lang) + "<body>\n" + (cookie if cookie_on_top else "")
        + f'<header class="site-header">{_link(SITE_NAME, "/", class_="logo")}<nav><ul>'
        + "".join(f"<li>{_link(t, h)}</li>" for t, h in _nav_links()) + "</ul></nav></header>\n"
        + f'<nav class="breadcrumbs">{" &rsaquo; ".join(_link(t, h) for t, h in _crumbs(draft))} '
        + f"&rsaquo; <span>{esc(draft.title)}</span></nav>\n"
        + f"<main>\n<article>\n<header>{title_html}{byline}</header>\n"
        + _render_blocks(rest, "p", rng, _ad(rng, ctx) if rng.random() < 0.6 else "")
        + f"<footer>{_share(rng, draft.path)}{_article_extras(draft, rng)}</footer>\n</article>\n"
        + f'<section class="related"><h2>{esc(rng.choice(RELATED_TITLES))}</h2>{related}</section>\n'
        + _comments(draft, rng) + "</main>\n"
        + f'<aside class="sidebar"><h3>{heading}</h3>{popular}{_newsletter(rng)}{_ad(rng, ctx)}</aside>\n'
        + f'<footer class="site-footer"><p>{_copyright()}</p><p>{_footer_links(rng)}</p></footer>\n'
        + ("" if cookie_on_top else cookie)
        + f"<script>document.querySelectorAll('a').length;</script>\n</body>\n</html>\n"
    )


def _layout_divs(draft: Draft, rng: random.Random, ctx: dict) -> str:
    heading, popular = _popular(rng, ctx)
    title, rest = (draft.blocks[0][1], draft.blocks[1:]) if draft.blocks[0][0] == "h1" else ("", draft.blocks)
    content_class = rng.choice(["content", "main-content", "entry-content", "post-content", "article-body"])
    return (
        _head(draft.title, rng, draft.lang) + '<body>\n<div id="wrapper">\n'
        + f'<div id="top"><div class="logo">{_link(SITE_NAME, "/")}</div><div class="menu">'
        + " ".join(_link(t, h) for t, h in _nav_links()) + "</div></div>\n"
        + f'<div class="breadcrumb">{" / ".join(_link(t, h) for t, h in _crumbs(draft))}</div>\n'
        + '<div id="container"><div class="post">\n'
        + (f'<h1 class="post-title">{esc(title)}</h1>\n' if title else "")
        + (f'<div class="post-meta">{_byline(draft)}</div>\n' if draft.author else "")
        + f'<div class="{content_class}">\n'
        + _render_blocks(rest, "p", rng, _ad(rng, ctx) if rng.random() < 0.6 else "")
        + "</div>\n" + _share(rng, draft.path) + f'<div class="post-tags">{_article_extras(draft, rng)}</div>'
        + "</div>\n" + _comments(draft, rng).replace('class="comments"', 'class="comments-area"')
        + f'<div id="sidebar"><div class="widget"><h3>{heading}</h3>{popular}</div>{_newsletter(rng)}</div>\n'
        + "</div>\n"
        + f'<div id="footer"><p>{_copyright()}</p><p>{_footer_links(rng)}</p></div>\n'
        + _cookie(rng) + "</div>\n</body>\n</html>\n"
    )


def _layout_table(draft: Draft, rng: random.Random, ctx: dict) -> str:
    """An old site: tables for layout, <font>, and paragraphs that are only text and <br><br>."""
    heading, popular = _popular(rng, ctx)
    return (
        _head(draft.title, rng, draft.lang) + '<body bgcolor="#ffffff">\n<table width="100%" border="0">\n'
        + f'<tr><td colspan="2"><font size="6">{esc(SITE_NAME)}</font><br>'
        + " | ".join(_link(t, h) for t, h in _nav_links()) + "</td></tr>\n"
        + f'<tr><td width="25%" valign="top"><b>{heading}</b>{popular}{_newsletter(rng)}</td>\n'
        + '<td valign="top">\n' + _render_blocks(draft.blocks, "br", rng, _ad(rng, ctx) if rng.random() < 0.7 else "")
        + _article_extras(draft, rng) + _comments(draft, rng) + "</td></tr>\n"
        + f'<tr><td colspan="2" align="center"><small>{_copyright()} {_footer_links(rng)}</small></td></tr>\n'
        + "</table>\n" + _cookie(rng)
        + "</body>\n</html>\n"
    )


def _layout_plain(draft: Draft, rng: random.Random, ctx: dict) -> str:
    """Generated class names, bare <div>s for paragraphs: no semantic hint where the content is."""

    def cls() -> str:
        return "".join(rng.choice("qxzjkvw") for _ in range(2)) + str(rng.randint(1, 99))

    heading, popular = _popular(rng, ctx)
    return (
        _head(draft.title, rng, draft.lang) + f'<body>\n<div class="{cls()}">\n'
        + f'<div class="{cls()}">' + " ".join(_link(t, h) for t, h in [(SITE_NAME, "/")] + _nav_links()) + "</div>\n"
        + f'<div class="{cls()}"><div class="{cls()}">\n'
        + _render_blocks(draft.blocks, "div", rng, _ad(rng, ctx) if rng.random() < 0.6 else "")
        + f"</div>{_share(rng, draft.path)}{_article_extras(draft, rng)}</div>\n"
        + f'<div class="{cls()}"><div>{heading}</div>{popular}</div>\n'
        + _comments(draft, rng)
        + f'<div class="{cls()}"><div>{_copyright()}</div><div>{_footer_links(rng)}</div></div>\n'
        + '</div>\n<script src="/static/consent.js" async></script>\n</body>\n</html>\n'
    )


def _layout_print(draft: Draft, rng: random.Random, ctx: dict) -> str:
    """A printer-friendly copy: no menus, no ads, just the text and a note of where it came from."""
    return (_head(draft.title, rng, draft.lang) + '<body onload="window.print()">\n'
            + _render_blocks(draft.blocks, "p", rng) + "</body>\n</html>\n")


LAYOUTS = {"html5": _layout_html5, "divs": _layout_divs, "table": _layout_table, "plain": _layout_plain}
LAYOUT_WEIGHTS = {"html5": 0.35, "divs": 0.3, "table": 0.15, "plain": 0.2}


# --------------------------------------------------------------------------------------------------
# Special pages: failures, traps and oddities every crawler meets


def _png(width: int = 64, height: int = 64) -> bytes:
    """A small, valid PNG image (a grey gradient), written by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes((x * 4 + y) % 256 for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _minutes_page(rng: random.Random, target_bytes: int) -> tuple[str, list[str]]:
    """The council's complete minutes on one page: a genuinely huge HTML page."""
    lines = ["Council minutes: the complete archive"]
    parts = [_head(lines[0], rng), "<body>\n<main>\n<article>\n", f"<h1>{esc(lines[0])}</h1>\n"]
    size = sum(len(p) for p in parts)
    writer = SentenceWriter(rng, NEWS_SENTENCES, slot_values(rng))
    meeting = 0
    while size < target_bytes:
        if meeting % 20 == 0:
            heading = f"Meeting {meeting // 20 + 1}"
            lines.append(heading)
            parts.append(f"<h2>{heading}</h2>\n")
        text = f"Item {meeting + 1}. {writer.paragraph(3, 5)}"
        lines.append(text)
        parts.append(f"<p>{esc(text)}</p>\n")
        size += len(text) + 8
        meeting += 1
    parts.append("</article>\n</main>\n</body>\n</html>\n")
    return "".join(parts), lines


def _nested_page(rng: random.Random, depth: int = 3000) -> tuple[str, list[str]]:
    """A page built by a broken template: thousands of nested <div>s around a short text."""
    writer = SentenceWriter(rng, BLOG_SENTENCES, slot_values(rng))
    lines = ["A very deep page", writer.paragraph(2, 3), writer.paragraph(2, 3)]
    inner = f"<h1>{lines[0]}</h1><p>{esc(lines[1])}</p><p>{esc(lines[2])}</p>"
    body = '<div class="wrap">' * depth + inner + "</div>" * depth
    return _head(lines[0], rng) + f"<body>\n{_link('Home', '/')}\n{body}\n</body>\n</html>\n", lines


def _latin1_page(rng: random.Random) -> tuple[bytes, list[str]]:
    """An old letter saved in Latin-1 but served as UTF-8: its accented bytes are invalid UTF-8."""
    slots = slot_values(rng)
    lines = ["Letters from the archive",
             f"Dear editor, the café on {slots['street']} has served the best coffee in town "
             f"since {slots['old_year']}.",
             f"My {slots['relative']} and I go there every {slots['day']} for a crème brûlée and a chat.",
             "Yours faithfully, a naïve reader."]
    page = _head(lines[0], rng) + "<body>\n<main>\n" + f"<h1>{lines[0]}</h1>\n"
    page += "".join(f"<p>{esc(line)}</p>\n" for line in lines[1:]) + "</main>\n</body>\n</html>\n"
    body = page.encode("latin-1")
    truth = [line.encode("latin-1").decode("utf-8", errors="replace") for line in lines]
    return body, truth


# --------------------------------------------------------------------------------------------------
# Building the site


def _counts(n_pages: int) -> dict:
    """How many pages of each kind make up a site of exactly `n_pages` pages."""
    if n_pages < MIN_PAGES:
        raise ValueError(f"build_site needs n_pages >= {MIN_PAGES} to hold every kind of page; got {n_pages}")
    counts = {"specials": 13,  # private 3, about, and the 9 traps of _special_pages
              "tags": min(len(TAGS), 3 + n_pages // 80), "archives": min(12, 2 + n_pages // 100)}
    rest = n_pages - counts["specials"] - 6 - counts["tags"] - counts["archives"]  # 6 = home + 5 sections
    counts["foreign"] = max(3, 3 * round(0.07 * rest / 3))  # a third each in French, German and Spanish
    counts["spam"] = max(2, round(0.03 * rest))
    counts["near_dup"] = max(2, round(0.06 * rest))
    counts["exact_dup"] = max(2, round(0.06 * rest))
    originals = rest - counts["foreign"] - counts["spam"] - counts["near_dup"] - counts["exact_dup"]
    shares = {"news": 0.3, "blog": 0.2, "recipe": 0.15, "review": 0.2, "forum": 0.15}
    kinds = {k: max(1, int(originals * s)) for k, s in shares.items()}
    kinds["news"] += originals - sum(kinds.values())
    counts.update(kinds)
    return counts


ROBOTS_TXT = """# robots.txt for the Millbrook Gazette
User-agent: BadBot
Disallow: /

User-agent: *
Disallow: /private/
Disallow: /admin/
Allow: /
"""


class _Paths:
    """Hands out unique paths (a slug of the title under a prefix) and publication dates."""

    def __init__(self, rng: random.Random, months: int):
        self.rng, self.months, self.used = rng, months, set()

    def place(self, draft: Draft, prefix: str) -> Draft:
        slug, k = slugify(draft.title) or "page", 2
        path = f"{prefix}{slug}"
        while path in self.used:
            path, k = f"{prefix}{slug}-{k}", k + 1
        self.used.add(path)
        draft.path = path
        draft.date, draft.month = publication_date(self.rng, self.months)
        return draft


def _write_originals(rng: random.Random, counts: dict, paths: _Paths, spam_targets: list[str]) -> list[Draft]:
    """The site's own articles, posts, recipes, reviews and threads, with tags and comments."""
    writers = {"news": write_news, "blog": write_blog, "recipe": write_recipe, "review": write_review,
               "forum": lambda r: write_forum(r, spam_targets)}
    prefixes = {"news": "/news/", "blog": "/blog/", "recipe": "/recipes/", "review": "/reviews/", "forum": "/forum/"}
    originals = [paths.place(writers[kind](rng), prefixes[kind]) for kind in writers for _ in range(counts[kind])]
    rng.shuffle(originals)
    for draft in originals:
        draft.tags = rng.sample(TAGS[: counts["tags"]], rng.randint(1, 2))
        if draft.kind in ("news", "blog") and rng.random() < 0.7:
            slots = slot_values(rng)
            draft.comments = [(f"{rng.choice(ALL_NAMES)} {rng.choice(SURNAMES)[0]}.",
                               rng.choice(SPAM_COMMENTS if rng.random() < 0.2 else COMMENTS).format(**slots),
                               f"#comment-{k}") for k in range(rng.randint(1, 4))]
    return originals


def _near_copies(rng: random.Random, originals: list[Draft], count: int) -> list[Draft]:
    """Printer-friendly copies and lightly edited copies on a partner's pages (labels: near_dup)."""
    copies = []
    for i, source in enumerate(rng.sample([d for d in originals if d.kind in ("news", "blog")], count)):
        original_lines = block_lines(source.blocks)
        if i % 2 == 0:  # printer-friendly: the byline and the address come along as text
            path = "/print" + source.path
            start = original_lines[:1] + [f"By {source.author}, {source.date}"] + original_lines[1:] + [
                f"Printed from https://millbrook-gazette.example{source.path}"]
            source.extra_links.append(("Print this article", path))
        else:
            path = "/partners/valley-news" + source.path
            start = original_lines
        lines = near_copy(original_lines, start, rng)
        copies.append(Draft(path=path, kind="near_dup", title=lines[0], section=source.section, date=source.date,
                             blocks=[("h1", lines[0])] + [("p", t) for t in lines[1:]],
                             author="" if i % 2 == 0 else source.author,
                             labels={"defects": ["near_dup"], "dup_of": url_id(source.path),
                                     "jaccard": round(dedup.jaccard("\n".join(original_lines), "\n".join(lines)), 4)}))
    return copies


def _exact_copies(rng: random.Random, originals: list[Draft], count: int) -> list[tuple[str, Draft]]:
    """(path, original) pairs: the same bytes served under another URL (labels: exact_dup)."""
    copies = []
    with_comments = [d for d in originals if d.comments]
    for source in rng.sample(with_comments, min(len(with_comments), count // 2)):
        # WordPress-style reply links: the same page under another URL
        path = f"{source.path}?replytocom={rng.randint(10, 999)}"
        author, text, _ = source.comments[0]
        source.comments[0] = (author, text, path)
        copies.append((path, source))
    others = [d for d in originals if all(d is not s for _, s in copies)]
    for i, source in enumerate(rng.sample(others, count - len(copies))):
        # the old permalink scheme, still answered by the server and linked from the archive
        copies.append((f"/index.php?p={1000 + i}", source))
    return copies


def _index_pages(originals: list[Draft], exact: list[tuple[str, Draft]], counts: dict) -> list[Draft]:
    """Home, section, tag and archive pages: a title, a line of intro, and teasers (mostly links)."""

    def index(path: str, title: str, intro: str, items: list[Draft], section: str = "",
              href=lambda d: d.path) -> Draft:
        teasers = [("teaser", d.title, href(d), d.summary) for d in items]
        return Draft(path=path, kind="index", title=title, section=section,
                      blocks=[("h1", title), ("p", intro)] + teasers)

    old_permalinks = {id(source): path for path, source in exact if path.startswith("/index.php")}
    newest = sorted(originals, key=lambda d: (d.month, d.path), reverse=True)
    pages = [index("/", f"{SITE_NAME}: news from {TOWN}",
                   f"Stories, recipes, reviews and talk from the people of {TOWN}.", newest[:10])]
    pages += [index(f"/{key}/", label, f"All {label.lower()} from {TOWN}, newest first.",
                    [d for d in newest if d.section == key], section=key) for key, label in SECTIONS.items()]
    pages += [index(f"/tag/{tag}/", f"Tagged: {tag}", f"Everything we wrote about {tag}.",
                    [d for d in newest if tag in d.tags]) for tag in TAGS[: counts["tags"]]]
    pages += [index(f"/archive/2024/{month + 1:02d}/", f"Archive: {MONTHS[month]} 2024",
                    f"Everything published in {MONTHS[month]} 2024.", [d for d in newest if d.month == month],
                    href=lambda d: old_permalinks.get(id(d), d.path)) for month in range(counts["archives"])]
    return pages


def _private_pages(rng: random.Random) -> list[Draft]:
    """Pages robots.txt forbids: a staff directory full of personal data, the admin login, a draft."""
    staff, pii = [], []
    for _ in range(5):
        p = person(rng)
        email = f"{p['first'].lower()}.{p['surname'].lower()}@millbrook-gazette.example"
        phone = f"(555) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
        staff.append(f"{p['first']} {p['surname']}, {p['job']}: {email}, {phone}")
        pii += [{"kind": "email", "text": email}, {"kind": "phone", "text": phone}]
    draft = write_news(rng)
    draft.path, draft.kind = "/private/drafts/" + slugify(draft.title), "private"
    return [Draft(path="/private/staff-directory", kind="private", title="Staff directory",
                   blocks=[("h1", "Staff directory"), ("ul", staff)], labels={"defects": ["pii"], "pii": pii}),
            Draft(path="/admin/", kind="private", title="Admin login", blocks=[
                ("h1", "Admin login"),
                ("p", "This area is for Gazette staff only. Please sign in with your staff account.")]),
            draft]


def _about_page(rng: random.Random) -> Draft:
    return Draft(path="/about", kind="about", title=f"About the {SITE_NAME}", blocks=[
        ("h1", f"About the {SITE_NAME}"),
        ("p", f"The {SITE_NAME} has reported on life in {TOWN} since {rng.randint(1890, 1950)}."),
        ("p", "We are a small team of volunteers, and we welcome letters, photos and story ideas from readers."),
        ("p", f"Our office is on {rng.choice(STREETS)}, next to the town hall, and it is open on weekday mornings."),
        ("p", "The map of the town is on our town map page.", ("town map", "/images/town-map.png"))])


def _special_pages(rng: random.Random, large_page_bytes: int) -> list[Page]:
    """The traps: a JavaScript-only app, a huge page, a deeply nested one, bad bytes, an image,
    a server error, a page that hangs, and redirects (one of them off the site)."""
    notice = "You need to enable JavaScript to run this app."
    app_html = (_head("Millbrook app", rng) + f'<body>\n<div id="root"><p>{notice}</p></div>\n'
                '<script src="/static/app.js"></script>\n</body>\n</html>\n')
    minutes_html, minutes_lines = _minutes_page(rng, large_page_bytes)
    nested_html, nested_lines = _nested_page(rng)
    latin1_body, latin1_lines = _latin1_page(rng)
    error_html = "<!DOCTYPE html><html><body><h1>Internal Server Error</h1><p>Something went wrong.</p></body></html>"
    slow_html = _head("Live traffic", rng) + "<body><h1>Live traffic</h1><p>All roads are clear.</p></body></html>"
    pages = [
        Page(id="", path="/app/", kind="spam", body=app_html.encode(), main_lines=[notice],
             labels={"defects": ["low_quality"], "quality_kind": "javascript_notice"}),
        Page(id="", path="/archive/council-minutes", kind="large", body=minutes_html.encode(), send_length=False,
             main_lines=minutes_lines),
        Page(id="", path="/weird/nested-layout", kind="nested", body=nested_html.encode(), main_lines=nested_lines),
        Page(id="", path="/letters/from-the-archive", kind="bad_utf8", body=latin1_body, main_lines=latin1_lines),
        Page(id="", path="/images/town-map.png", kind="binary", body=_png(), content_type="image/png"),
        Page(id="", path="/events/calendar", kind="error", body=error_html.encode(), status=500),
        Page(id="", path="/live/traffic", kind="slow", body=slow_html.encode(), delay=HANG_SECONDS,
             main_lines=["Live traffic", "All roads are clear."]),
        Page(id="", path="/old-news", kind="redirect", body=b"", status=301, headers={"Location": "/news/"}),
        Page(id="", path="/go/partner-offer", kind="redirect", body=b"", status=302,
             headers={"Location": "http://partner.example/offer"}),
    ]
    for page in pages:
        page.id = url_id(page.path)
        page.labels = {"defects": [], "page_kind": page.kind, **page.labels}
    return pages


def _home_links(indexes, foreign, near, spam, private) -> list[tuple[str, str]]:
    """What the home page links to besides its teasers, so that every public page is reachable."""
    newest = indexes[0].blocks[2][2] if len(indexes[0].blocks) > 2 else "/news/"
    return ([(d.title, d.path) for d in indexes if d.path.startswith("/archive/")]
            + [(d.title, d.path) for d in foreign]
            + [(f"From our partners: {d.title}", d.path) for d in near if d.path.startswith("/partners/")]
            + [(f"Deal: {d.title}", d.path) for d in spam]
            + [("Preview: next week's story", private[-1].path), ("Live traffic", "/live/traffic"),
               ("Council minutes", "/archive/council-minutes"), ("An odd page", "/weird/nested-layout"),
               ("Letters from the archive", "/letters/from-the-archive"), ("Old news", "/old-news"),
               ("Partner offer", "/go/partner-offer"), ("Our app", "/app/"),
               ("Top story", newest + "?utm_source=newsletter&utm_medium=email"),
               ("Removed story", BROKEN_LINKS[0]), ("Jobs", BROKEN_LINKS[1])])


def build_site(n_pages: int, seed: int, large_page_bytes: int = 3_000_000) -> Site:
    """Build a site of exactly `n_pages` pages (at least 50) from `seed`; the same seed gives the same bytes."""
    rng = random.Random(seed)
    counts = _counts(n_pages)
    paths = _Paths(rng, months=counts["archives"])
    spam = [paths.place(write_spam(rng), "/deals/") for _ in range(counts["spam"])]  # forum posts and ads link here
    originals = _write_originals(rng, counts, paths, [d.path for d in spam] + ["http://cheap-watches.example/"])
    foreign = [paths.place(write_foreign(rng, lang), f"/{lang}/")
               for lang in (["fr", "de", "es"] * counts["foreign"])[: counts["foreign"]]]
    near = _near_copies(rng, originals, counts["near_dup"])
    exact = _exact_copies(rng, originals, counts["exact_dup"])
    indexes = _index_pages(originals, exact, counts)
    private = _private_pages(rng)
    indexes[0].extra_links = _home_links(indexes, foreign, near, spam, private)

    # Render every page in a layout drawn from the seed; exact copies reuse their original's bytes.
    ctx = {"articles": originals, "spam_paths": [d.path for d in spam]}
    layouts, weights = list(LAYOUT_WEIGHTS), list(LAYOUT_WEIGHTS.values())
    pages: dict[str, Page] = {}
    for draft in originals + foreign + spam + indexes + private + [_about_page(rng)] + near:
        layout = "print" if draft.path.startswith("/print/") else rng.choices(layouts, weights)[0]
        markup = (_layout_print if layout == "print" else LAYOUTS[layout])(draft, rng, ctx)
        pages[draft.path] = Page(id=url_id(draft.path), path=draft.path, kind=draft.kind, body=markup.encode("utf-8"),
                                 main_lines=block_lines(draft.blocks),
                                 labels={"defects": [], "page_kind": draft.kind, "layout": layout, **draft.labels})
    for path, source in exact:
        original = pages[source.path]
        pages[path] = Page(id=url_id(path), path=path, kind="exact_dup", body=original.body,
                           main_lines=list(original.main_lines),
                           labels={**original.labels, "defects": ["exact_dup"], "dup_of": original.id,
                                   "page_kind": "exact_dup"})
    pages.update((page.path, page) for page in _special_pages(rng, large_page_bytes))
    if len(pages) != n_pages:  # the counts in _counts are meant to add up exactly
        raise RuntimeError(f"build_site made {len(pages)} pages instead of {n_pages}: the page counts do not add up")
    return Site(pages=pages, robots_txt=ROBOTS_TXT, seed=seed)
