"""A third-party websocket client of the widget protocol (v1), for tests against real Daphne
processes: open a socket, say hello, send, and read frames until one matches."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed
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


class Visitor:
    """One widget visitor that keeps its conversation across reconnects, as the widget does:
    when the socket drops it opens another and says hello with its token, conversation and
    the last `seq` it rendered, then takes up the frames where they are (`resumes` counts it)."""

    def __init__(self, stack: HasSocketUrl, key: str, origin: str = CUSTOMER) -> None:
        self.stack, self.key, self.origin = stack, key, origin
        self.visitor_token: str | None = None
        self.conversation_id: str | None = None
        self.last_seq = 0
        self.resumes = 0
        self.close_codes: list[int | None] = []  # of the server's closes, None: no close frame
        self.ws: ClientConnection | None = None
        self.frames: list[dict[str, Any]] = []

    def connect(self, timeout: float = 60) -> dict[str, Any]:
        """Open a socket and say hello (again), retrying while the server cannot answer."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ws = open_socket(self.stack, self.origin)
                welcome = say_hello(
                    self.ws,
                    self.key,
                    visitor_token=self.visitor_token,
                    conversation_id=self.conversation_id,
                    last_seq=self.last_seq,
                )
            except (OSError, ConnectionClosed, TimeoutError, AssertionError):
                self.close()
                assert time.monotonic() < deadline, "the widget could not reconnect"
                time.sleep(0.5)
                continue
            if self.conversation_id is not None:
                self.resumes += 1
            self.visitor_token = welcome["visitor_token"]
            self.conversation_id = welcome["conversation_id"]
            self.frames.append(welcome)
            return welcome

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def _frames(self, timeout: float) -> Iterator[dict[str, Any]]:
        """Frames as they come, reconnecting when the socket drops (then the catch-up's
        messages, and a `{"type": "reconnected"}` marker); fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no matching frame within {timeout}s; got {self.frames[-20:]}"
            if self.ws is None:
                welcome = self.connect(remaining)
                for message in welcome.get("messages", []):
                    yield {"type": "message", "message": message}
                yield {"type": "reconnected"}  # not a frame of the protocol: the drop itself
                continue
            try:
                frame = recv(self.ws, min(remaining, 5))
            except TimeoutError:
                continue
            except ConnectionClosed as closed:
                self.close_codes.append(closed.rcvd.code if closed.rcvd is not None else None)
                self.close()
                continue
            self.frames.append(frame)
            yield frame

    def ask(self, text: str, timeout: float = 60) -> dict[str, Any]:
        """Send a visitor message (again after a drop, same client id) until acknowledged."""
        client_id = f"c-{time.monotonic_ns()}"
        deadline = time.monotonic() + timeout
        while True:
            if self.ws is None:
                self.connect(max(deadline - time.monotonic(), 1))
            assert self.ws is not None
            try:
                send(self.ws, {"type": "message", "client_id": client_id, "text": text})
                for frame in self._frames(max(deadline - time.monotonic(), 1)):
                    if frame["type"] == "ack":
                        self.last_seq = max(self.last_seq, frame["message"]["seq"])
                        return dict(frame["message"])
                    if frame["type"] == "reconnected":
                        break  # dropped before the ack: send again (same client id)
            except ConnectionClosed:
                self.close()

    def reply_to(self, seq: int, timeout: float = 90) -> dict[str, Any]:
        """The final assistant (or system) message after visitor message `seq`."""
        for frame in self._frames(timeout):
            if frame["type"] != "message":
                continue
            message = frame["message"]
            if message["seq"] <= seq or message["role"] not in ("assistant", "system"):
                continue
            if message.get("status") == "streaming":
                continue
            self.last_seq = max(self.last_seq, message["seq"])
            return dict(message)
        raise AssertionError("unreachable")

    def deltas(self) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame["type"] == "reply.delta"]
