"""A third-party websocket client of the widget protocol (v1), for tests against real Daphne
processes: open a socket, say hello, send, and read frames until one matches."""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from websockets.sync.client import ClientConnection, connect

CUSTOMER = "https://customer.example"


class HasSocketUrl(Protocol):
    ws_url: str


def open_socket(stack: HasSocketUrl, origin: str = CUSTOMER) -> ClientConnection:
    return connect(stack.ws_url, origin=origin, open_timeout=10)  # type: ignore[arg-type]


def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    ws.send(json.dumps(frame))


def recv(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=timeout))


def recv_until(ws: ClientConnection, predicate: Any, timeout: float = 20) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no matching frame within {timeout}s; got {frames}"
        frames.append(recv(ws, remaining))
        if predicate(frames[-1]):
            return frames


def final_assistant(frame: dict[str, Any]) -> bool:
    return frame["type"] == "message" and frame["message"]["role"] == "assistant"


def say_hello(ws: ClientConnection, key: str, **fields: Any) -> dict[str, Any]:
    send(
        ws,
        {
            "type": "hello",
            "key": key,
            "visitor_token": None,
            "conversation_id": None,
            "last_seq": 0,
            "locale": "en",
            **fields,
        },
    )
    welcome = recv(ws)
    assert welcome["type"] == "welcome", welcome
    return welcome
