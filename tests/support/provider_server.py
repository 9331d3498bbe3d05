"""A loopback HTTP server standing in for a channel provider's API (Telegram, WhatsApp, Slack,
Twilio): it records every request it gets, answers each path with the provider's documented
success by default, and can be told to fail the next calls of a path (429 with Retry-After,
500, 400...) or to stall.

    with ProviderServer(default=telegram_ok) as server:
        settings.TELEGRAM_API_BASE = server.url
        server.fail_next("/bot123:abc/sendMessage", status=429, headers={"Retry-After": "1"})
        ...
        server.wait_for(lambda reqs: len(reqs) >= 2, timeout=10)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")

    @property
    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


@dataclass
class Scripted:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0


# (request) -> (status, body as JSON-able, headers)
Responder = Callable[[Recorded], tuple[int, Any, dict[str, str]]]


def _ok(_request: Recorded) -> tuple[int, Any, dict[str, str]]:
    return 200, {"ok": True}, {}


class ProviderServer:
    def __init__(self, default: Responder = _ok, port: int = 0) -> None:
        """`port` 0: a free one; another port lets a server stopped on it come back there."""
        self.default = default
        self.requests: list[Recorded] = []
        self._scripts: dict[str, list[Scripted]] = {}
        self._lock = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ProviderServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(
        self,
        path: str,
        *,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        stall: float = 0.0,
    ) -> None:
        """The next `times` calls whose path ends with `path` get this answer instead."""
        with self._lock:
            self._scripts.setdefault(path, []).extend(
                Scripted(status, body, headers or {}, stall) for _ in range(times)
            )

    def received(self, path_suffix: str = "") -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path_suffix)]

    def wait_for(
        self, condition: Callable[[list[Recorded]], bool], *, timeout: float = 15.0
    ) -> list[Recorded]:
        """Wait until `condition(requests so far)` holds; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not condition(list(self.requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"provider server: condition not met in {timeout}s; got "
                        f"{[(r.method, r.path) for r in self.requests]}"
                    )
                self._lock.wait(min(left, 0.2))
            return list(self.requests)

    def _script_for(self, path: str) -> Scripted | None:
        with self._lock:
            for suffix, queue in self._scripts.items():
                if path.endswith(suffix) and queue:
                    return queue.pop(0)
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                recorded = Recorded(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                scripted = server._script_for(split.path)
                with server._lock:
                    server.requests.append(recorded)
                    server._lock.notify_all()
                if scripted is not None:
                    if scripted.stall:
                        time.sleep(scripted.stall)
                    status, payload, headers = scripted.status, scripted.body, scripted.headers
                else:
                    status, payload, headers = server.default(recorded)
                data = json.dumps(payload if payload is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

        return Handler
