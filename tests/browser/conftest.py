"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, and small servers.

Playwright's own browser download does not work here: the tests use /usr/bin/chromium (set
CHROMIUM_PATH to use another). Where it is missing, the browser tests are skipped with the
reason; `.ci/run` installs it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .standin import StandinBackend

REPO = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO / "static"
PAGES_DIR = Path(__file__).resolve().parent / "pages"
SCREENSHOTS = REPO / "var" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: a missing browser is a broken run
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context_factory(browser: Any) -> Iterator[Callable[..., Any]]:
    """New, isolated browser contexts (own storage); closed after the test."""
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def screenshots_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


class _QuietHandler(SimpleHTTPRequestHandler):
    routes: dict[str, tuple[bytes, str, dict[str, str]]] = {}
    roots: dict[str, Path] = {}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in self.routes:
            body, content_type, headers = self.routes[path]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        for prefix, root in self.roots.items():
            if path.startswith(prefix):
                target = (root / path.removeprefix(prefix)).resolve()
                if root.resolve() in target.parents:
                    return str(target)
        return str(REPO / "nonexistent")

    def guess_type(self, path: Any) -> str:
        if str(path).endswith(".js"):
            return "text/javascript"
        return super().guess_type(path)


@dataclass
class SiteServer:
    """A loopback HTTP server: files under prefixes, plus pages set by the test."""

    roots: dict[str, Path] = field(default_factory=dict)
    port: int = 0
    server: ThreadingHTTPServer | None = None
    routes: dict[str, tuple[bytes, str, dict[str, str]]] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SiteServer:
        handler = type("Handler", (_QuietHandler,), {"routes": self.routes, "roots": self.roots})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def page(self, path: str, html: str, **headers: str) -> str:
        self.routes[path] = (html.encode(), "text/html; charset=utf-8", headers)
        return self.origin + path

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="session")
def static_site() -> Iterator[SiteServer]:
    """`static/` at /static/ and the test pages at /pages/ (for testing modules on their own)."""
    site = SiteServer(roots={"/static/": STATIC_DIR, "/pages/": PAGES_DIR}).start()
    yield site
    site.stop()


@pytest.fixture
def customer_site() -> Iterator[SiteServer]:
    """A customer's website on its own origin (its own loopback port)."""
    site = SiteServer().start()
    yield site
    site.stop()


@pytest.fixture
def standin() -> Iterator[StandinBackend]:
    backend = StandinBackend().start()
    yield backend
    backend.stop()


HOSTILE_CSS = """
  * { font-family: "Comic Sans MS", cursive !important; letter-spacing: 2px; }
  button { background: red !important; width: 300px !important; border-radius: 0 !important; }
  iframe { border: 12px dashed orange !important; display: none; }
  div { padding: 20px; }
  svg { display: none !important; }
"""


def customer_page(
    loader_src: str, key: str, *, title: str = "Acme Shop", extra_head: str = ""
) -> str:
    """A small shop page that embeds the widget the way customers are told to, with CSS that
    would wreck the widget if it leaked in."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ margin: 0; font: 16px/1.5 Georgia, serif; color: #222; background: #fdfaf3; }}
  header {{ padding: 20px 32px; background: #1f2937; color: #fff; }}
  main {{ padding: 32px; max-width: 720px; }}
  .product {{ display: grid; gap: 16px;
              grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); }}
  .card {{ height: 160px; background: #e7dfcf; border-radius: 8px; }}
  {HOSTILE_CSS}
</style>
{extra_head}
</head>
<body>
<header><strong>{title}</strong></header>
<main>
  <h1>Handmade ceramics</h1>
  <p>Free shipping on orders over 50 EUR. Questions? Ask our assistant.</p>
  <p><a href="#" id="page-link">A link on the page</a></p>
  <div class="product">
    <div class="card"></div><div class="card"></div><div class="card"></div>
  </div>
</main>
<script src="{loader_src}" data-key="{key}" async></script>
</body>
</html>
"""
