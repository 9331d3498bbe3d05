"""A fictional customer's help page that embeds the support widget, on its own origin.

    python -m supportbot.devstack.demo_site --port 8001 --app-url http://127.0.0.1:8000 --key KEY

The page is what a tenant's web developer would write: one ``<script>`` tag with the widget key.
"""

from __future__ import annotations

import argparse
import html
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from string import Template

PAGE = Template(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Help Centre · Alder &amp; Finch Outdoor</title>
<style>
  :root {
    --ink: #1d2a24; --muted: #5d6b64; --leaf: #2f6b4f; --leaf-dark: #214d39;
    --sand: #f6f3ec; --card: #ffffff; --line: #e4dfd3;
  }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color: var(--ink); background: var(--sand); }
  header { background: var(--leaf); color: #fff; }
  .bar { max-width: 1040px; margin: 0 auto; padding: 18px 24px; display: flex;
         align-items: center; justify-content: space-between; }
  .logo { font-weight: 700; letter-spacing: .02em; font-size: 20px; }
  .logo span { opacity: .75; font-weight: 400; }
  nav a { color: #e6f2ec; text-decoration: none; margin-left: 22px; font-size: 15px; }
  .hero { max-width: 1040px; margin: 0 auto; padding: 56px 24px 72px; }
  .hero h1 { font-size: 40px; line-height: 1.15; margin: 0 0 12px; }
  .hero p { margin: 0 0 24px; color: #d6e8df; max-width: 560px; }
  .search { display: flex; max-width: 560px; background: #fff; border-radius: 10px;
            overflow: hidden; box-shadow: 0 6px 24px rgba(0,0,0,.15); }
  .search input { flex: 1; border: 0; padding: 14px 16px; font-size: 16px; outline: none; }
  .search button { border: 0; background: var(--leaf-dark); color: #fff; padding: 0 22px;
                   font-size: 15px; cursor: pointer; }
  main { max-width: 1040px; margin: -36px auto 0; padding: 0 24px 64px; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(230px, 1fr));
          gap: 18px; }
  .card { background: var(--card); border: 1px solid var(--line); border-radius: 12px;
          padding: 22px; }
  .card h3 { margin: 6px 0 6px; font-size: 18px; }
  .card p { margin: 0; color: var(--muted); font-size: 15px; }
  h2 { margin: 48px 0 14px; font-size: 24px; }
  details { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
            padding: 14px 18px; margin-bottom: 10px; }
  summary { cursor: pointer; font-weight: 600; }
  details p { color: var(--muted); margin: 10px 0 0; }
  .contact { margin-top: 40px; padding: 22px; border-radius: 12px; background: #e9f1ec;
             border: 1px solid #cfe0d6; }
  footer { text-align: center; color: var(--muted); font-size: 13px; padding: 24px; }
  code { background: #efe9dc; padding: 1px 5px; border-radius: 4px; font-size: 13px; }
</style>
</head>
<body>
<header>
  <div class="bar">
    <div class="logo">Alder &amp; Finch <span>Outdoor</span></div>
    <nav><a href="#">Shop</a><a href="#">Stores</a><a href="#">Help</a><a href="#">Account</a></nav>
  </div>
  <div class="hero">
    <h1>How can we help?</h1>
    <p>Orders, returns, repairs and sizing for tents, packs and trail gear.
       Our assistant in the corner answers around the clock.</p>
    <form class="search" onsubmit="return false">
      <input type="search" placeholder="Search the help centre" aria-label="Search">
      <button type="submit">Search</button>
    </form>
  </div>
</header>
<main>
  <div class="grid">
    <div class="card"><h3>Orders &amp; delivery</h3>
      <p>Track a parcel, change an address, delivery times by region.</p></div>
    <div class="card"><h3>Returns</h3>
      <p>60-day returns on unused gear; free return labels in the EU.</p></div>
    <div class="card"><h3>Repairs &amp; warranty</h3>
      <p>Lifetime warranty on seams and zips. Book a repair online.</p></div>
    <div class="card"><h3>Sizing</h3>
      <p>Pack torso lengths, sleeping-bag ratings, boot fit guides.</p></div>
  </div>

  <h2>Popular questions</h2>
  <details><summary>How long does delivery take?</summary>
    <p>Two to four working days in mainland Europe; orders before 14:00 ship the same day.</p>
  </details>
  <details><summary>Can I return a tent I've pitched once?</summary>
    <p>Yes, if it is clean and dry. Pack it in its bag and print a label from your account.</p>
  </details>
  <details><summary>My zip broke on a trip. What now?</summary>
    <p>Zips are covered for life. Send us a photo through the chat and we'll book a repair.</p>
  </details>

  <div class="contact">
    <strong>Still stuck?</strong> Click the chat button in the bottom-right corner to talk to our
    assistant; a person from the support team can take over the conversation at any time.
  </div>
</main>
<footer>
  Demo customer site on its own origin ($site_origin) &middot; widget served by
  <code>$app_url</code> &middot; widget key <code>$widget_key</code>
</footer>
<script src="$loader_url" data-key="$widget_key" async></script>
</body>
</html>
"""
)


def render(app_url: str, widget_key: str, site_origin: str) -> str:
    app_url = app_url.rstrip("/")
    return PAGE.substitute(
        app_url=html.escape(app_url),
        loader_url=html.escape(f"{app_url}/static/widget/loader.js"),
        widget_key=html.escape(widget_key),
        site_origin=html.escape(site_origin),
    )


def make_handler(body: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "AlderFinchDemo/1.0"

        def do_GET(self) -> None:
            if self.path.split("?")[0] in ("/", "/index.html", "/help"):
                self._send(200, body, "text/html; charset=utf-8")
            elif self.path == "/favicon.ico":
                self._send(204, b"", "image/x-icon")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def do_HEAD(self) -> None:
            self._send(200, b"", "text/html; charset=utf-8")

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            print(f"{self.address_string()} {format % args}", flush=True)

    return Handler


def serve(host: str, port: int, app_url: str, widget_key: str) -> None:
    site_origin = f"http://{host}:{port}"
    body = render(app_url, widget_key, site_origin).encode()
    server = ThreadingHTTPServer((host, port), make_handler(body))
    print(f"serving the demo customer site on {site_origin}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the demo customer site.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app-url", required=True, help="where Supportbot serves the widget")
    parser.add_argument("--key", required=True, help="the demo tenant's widget key")
    args = parser.parse_args(argv)

    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.host, args.port, args.app_url, args.key)


if __name__ == "__main__":
    main()
