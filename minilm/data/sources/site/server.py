"""Serving the site on 127.0.0.1, so that a real crawler can fetch it over HTTP.

A small threading HTTP server from the standard library: it answers robots.txt, every page with its
status, type and headers, 404 for the rest; it hangs on the page that is meant to hang (until the
server stops) and leaves out Content-Length where a page asks for it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import urlsplit

from minilm.data.sources.site.pages import HTML_TYPE, Site

class _QuietServer(ThreadingHTTPServer):
    """A threading server that does not print a traceback when a client hangs up early."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _handler(site: Site, stopping: threading.Event) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "MillbrookHTTP/1.0"

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, send_body: bool) -> None:
            site.request_log.append(self.path)
            if urlsplit(self.path).path == "/robots.txt":
                body, status, ctype, page = site.robots_txt.encode(), 200, "text/plain; charset=utf-8", None
            else:
                page = site.page_for(self.path)
                if page is None:
                    body, status, ctype = b"<html><body><h1>Not found</h1></body></html>", 404, HTML_TYPE
                else:
                    body, status, ctype = page.body, page.status, page.content_type
            if page is not None and page.delay and stopping.wait(page.delay):
                return  # the server is shutting down: drop the connection
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for name, value in (page.headers if page else {}).items():
                self.send_header(name, value)
            if page is None or page.send_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # keep test output clean
            pass

    return Handler


@contextlib.contextmanager
def serve(site: Site) -> Iterator[str]:
    """Serve `site` on 127.0.0.1 (a free port) in a daemon thread; yields the base URL, stops on exit."""
    stopping = threading.Event()
    server = _QuietServer(("127.0.0.1", 0), _handler(site, stopping))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
