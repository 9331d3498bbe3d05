"""An asyncio websocket client of the widget protocol (v1), for the tests that open many sockets
at once against real Daphne processes: the session a visitor keeps across sockets, and each reply
as a widget builds it (`ReplyView`)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import websockets

from tests.support.widget_client import CUSTOMER


def hello_frame(key: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "hello",
        "key": key,
        "visitor_token": None,
        "conversation_id": None,
        "last_seq": 0,
        "locale": "en",
        **fields,
    }


@dataclass
class ReplyView:
    """One reply as a widget builds it from `reply.start`, `reply.delta` and the final
    `message`, with the checks a widget makes: indexes follow on, or the text is replaced."""

    text: str = ""
    next_index: int | None = None
    gaps: int = 0
    final: dict[str, Any] | None = None

    def take(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "reply.start":
            self.text, self.next_index = "", None
        elif frame["type"] == "reply.delta":
            if self.next_index is None:
                self.text, self.next_index = frame["text"], frame["index"] + 1
            elif frame["index"] == self.next_index:
                self.text += frame["text"]
                self.next_index += 1
            elif frame["index"] > self.next_index:
                self.gaps += 1
        elif frame["type"] == "message":
            self.final = frame["message"]


@dataclass
class Visitor:
    """An asyncio widget visitor: the session it keeps across sockets, and what it was shown."""

    ws_url: str
    key: str
    origin: str = CUSTOMER
    forwarded_for: str | None = None
    visitor_token: str | None = None
    conversation_id: str | None = None
    last_seq: int = 0
    replies: dict[str, ReplyView] = field(default_factory=dict)
    frames: list[dict[str, Any]] = field(default_factory=list)
    ws: Any = None
    # A tab that stops reading: at most `max_queue` frames read ahead of the test, and a small
    # kernel receive buffer (`receive_buffer` bytes), so the server's writes really back up.
    max_queue: int | None = None
    receive_buffer: int | None = None

    async def connect(self, ws_url: str | None = None) -> dict[str, Any]:
        """Open a socket (to `ws_url`, else the visitor's) and say `hello` with the session
        kept so far; return the `welcome`."""
        headers = {"X-Forwarded-For": self.forwarded_for} if self.forwarded_for else None
        url = ws_url or self.ws_url
        self.ws = await websockets.connect(
            url,
            origin=self.origin,  # type: ignore[arg-type]
            additional_headers=headers,
            open_timeout=60,
            max_queue=self.max_queue,
            max_size=None,
            sock=self._socket(url),
        )
        await self.send(
            hello_frame(
                self.key,
                visitor_token=self.visitor_token,
                conversation_id=self.conversation_id,
                last_seq=self.last_seq,
            )
        )
        welcome = await self.recv(timeout=60)
        assert welcome["type"] == "welcome", welcome
        self.visitor_token = welcome["visitor_token"]
        self.conversation_id = welcome["conversation_id"]
        return welcome

    def _socket(self, url: str) -> socket.socket | None:
        if self.receive_buffer is None:
            return None
        parts = urlsplit(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.connect((parts.hostname, parts.port))
        sock.setblocking(False)
        return sock

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 30) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        self._take(frame)
        return frame

    def _take(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "welcome":
            for message in frame["messages"]:
                self._take({"type": "message", "message": message})
        elif frame["type"] in ("reply.start", "reply.delta"):
            self.replies.setdefault(frame["message_id"], ReplyView()).take(frame)
        elif frame["type"] == "message":
            message = frame["message"]
            if message["role"] == "assistant":
                self.replies.setdefault(message["id"], ReplyView()).take(frame)
            if message["status"] != "streaming":
                self.last_seq = max(self.last_seq, message["seq"])
        elif frame["type"] == "ack":
            self.last_seq = max(self.last_seq, frame["message"]["seq"])

    async def ask(self, text: str) -> dict[str, Any]:
        """Send a message and return its `ack`."""
        await self.send({"type": "message", "client_id": str(uuid.uuid4()), "text": text})
        while True:
            frame = await self.recv()
            if frame["type"] == "ack":
                return frame

    async def recv_until(self, predicate: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no matching frame within {timeout}s; got {self.frames[-5:]}"
            frame = await self.recv(timeout=remaining)
            if predicate(frame):
                return frame

    def finals(self) -> list[dict[str, Any]]:
        return [view.final for view in self.replies.values() if view.final is not None]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
