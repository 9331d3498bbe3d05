"""A stand-in widget backend for browser tests: widget protocol v1 on one loopback port.

It serves what the real service serves to the widget: `/static/...` (the repository's files),
`/widget/frame/` (templates/widget/frame.html rendered by Django's template engine, with the
frame's CSP) and the `/ws/widget/` socket. The socket side behaves like the real consumer
(hello, welcome with catch-up, idempotent `client_id`, reply.start / reply.delta / message,
resume of a reply still streaming with a snapshot delta) and lets a test script faults: a socket
dropped mid-reply or before an ack, missing delta indexes, refusals and error frames.

It also speaks the protocol's extensions: `welcome.conversation` and `conversation.updated`
(status, language, agent), `handoff.request` from the visitor, and messages' `language` and
`author_name`. `describe_conversation = False` makes it a server from before them.

It holds everything in memory and runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import mimetypes
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from conversations.notices import notice  # plain Python: the service's own notice texts

REPO = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO / "static"
TEMPLATES_DIR = REPO / "templates"

FRAME_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self' {ancestors}"
)

_RENDER = """
import json, sys
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=[],
    STATIC_URL="/static/",
    TEMPLATES=[
        {"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [sys.argv[1]]}
    ],
)
django.setup()
from django.template.loader import render_to_string
sys.stdout.write(render_to_string(sys.argv[2], json.load(sys.stdin)))
"""


def render_template(name: str, context: dict[str, Any]) -> str:
    """Render a template of templates/ with Django's engine, apart from the project's settings."""
    result = subprocess.run(
        [sys.executable, "-c", _RENDER, str(TEMPLATES_DIR), name],
        input=json.dumps(context),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class ScriptedReply:
    """One assistant reply. `chunks` are the deltas; the final text is their join unless given."""

    chunks: list[str]
    interval: float = 0.05
    first_delay: float = 0.2
    final_text: str | None = None
    status: str = "complete"
    sources: list[dict[str, str]] = field(default_factory=list)
    skip_indexes: set[int] = field(default_factory=set)  # deltas never sent (a gap)
    drop_after_index: int | None = None  # abort the sockets right after this delta
    pause_after_index: dict[int, float] = field(default_factory=dict)  # extra wait after a delta
    role: str = "assistant"
    language: str | None = None


@dataclass
class Msg:
    id: str
    seq: int
    role: str
    text: str
    status: str
    client_id: str | None = None
    sources: list[dict[str, str]] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    language: str | None = None  # optional fields: left out of the payload when None
    author_name: str | None = None

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": self.id,
            "seq": self.seq,
            "role": self.role,
            "text": self.text,
            "created_at": self.created_at,
            "client_id": self.client_id,
            "status": self.status,
            "sources": self.sources,
        }
        if self.language is not None:
            payload["language"] = self.language
        if self.author_name is not None:
            payload["author_name"] = self.author_name
        return payload


@dataclass
class Conversation:
    id: str
    visitor_token: str
    messages: list[Msg] = field(default_factory=list)
    sockets: set[ServerConnection] = field(default_factory=set)
    snapshots: dict[str, tuple[str, int]] = field(
        default_factory=dict
    )  # streaming id -> (text, index)
    status: str = "bot"  # bot | waiting_for_agent | with_agent | closed
    language: str = ""
    agent_name: str | None = None

    def next_seq(self) -> int:
        return (self.messages[-1].seq if self.messages else 0) + 1

    def state(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "language": self.language,
            "agent": {"name": self.agent_name} if self.agent_name else None,
        }


@dataclass
class Connection:
    """What one socket did, for assertions."""

    number: int
    origin: str | None
    opened_at: float
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None


class StandinBackend:
    def __init__(
        self, *, keys: dict[str, list[str]] | None = None, tenant_name: str = "Acme"
    ) -> None:
        # widget key -> the tenant's allowed origins (the service's own origin is always allowed)
        self.keys = keys if keys is not None else {"pk_test_standin": []}
        self.tenant_name = tenant_name
        self.replies: deque[ScriptedReply] = deque()
        self.default_reply = ScriptedReply(chunks=["Hello", " from", " the", " stand-in."])
        self.hello_close_codes: deque[int] = deque()  # close the next hellos with these codes
        # Like CATCH_UP_MAX_MESSAGES: a welcome holds at most this many settled messages, the
        # newest, and marks the rest (`truncated`, `first_seq`). None: no cap.
        self.catch_up_max: int | None = None
        self.message_errors: deque[dict[str, Any]] = deque()  # error frames for the next messages
        self.drop_before_ack = 0  # drop the socket after storing, before acking, N messages
        # The protocol's extensions: `welcome.conversation`, `conversation.updated`, handoff.
        self.describe_conversation = True
        self.new_conversation_language = ""  # `language` of conversations started from now on
        # What `handoff.request` does: "wait" (status waiting_for_agent, a notice), "ignore"
        # (nothing), "refuse" (an `error` bad_request, like a server that cannot hand over).
        self.handoff_behaviour = "wait"
        self.conversations: dict[str, Conversation] = {}
        self.connections: list[Connection] = []
        self.http_requests: list[str] = []
        self.port = 0
        self._counter = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._frame_cache: dict[str, str] = {}
        self._lock = threading.Lock()

    # ---- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StandinBackend:
        self._thread = threading.Thread(target=self._run, name="standin-backend", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("stand-in backend did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> StandinBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._handle_socket,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            max_size=64 * 1024,
        ) as server:
            self._server = server
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()
            for conversation in self.conversations.values():
                for socket in list(conversation.sockets):
                    socket.transport.abort()

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` (a coroutine function) on the server's loop and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), self._loop).result(10)

    # ---- queries for tests ------------------------------------------------------------------

    def all_messages(self) -> list[Msg]:
        return [m for c in self.conversations.values() for m in c.messages]

    def frames_received(self, kind: str) -> list[dict[str, Any]]:
        return [f for c in self.connections for f in c.received if f.get("type") == kind]

    def wait_for(self, condition: Any, *, timeout: float = 10, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"stand-in: timed out after {timeout}s waiting for {what}")

    # ---- HTTP -------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        self.http_requests.append(request.path)
        if parts.path == "/ws/widget/":
            return None  # the websocket handshake goes on
        if parts.path.startswith("/static/"):
            return self._static(parts.path.removeprefix("/static/"))
        if parts.path == "/widget/frame/":
            return self._frame(parse_qs(parts.query))
        if parts.path == "/healthz":
            return self._response(200, b"ok", "text/plain")
        return self._response(404, b"not found", "text/plain")

    def _response(self, status: int, body: bytes, content_type: str, **extra: str) -> Response:
        headers = Headers()
        headers["Content-Type"] = content_type
        headers["Content-Length"] = str(len(body))
        headers["Cache-Control"] = "no-store"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Access-Control-Allow-Origin"] = "*"
        for name, value in extra.items():
            headers[name.replace("_", "-")] = value
        return Response(status, HTTPStatus(status).phrase, headers, body)

    def _static(self, relative: str) -> Response:
        path = (STATIC_DIR / relative).resolve()
        if STATIC_DIR.resolve() not in path.parents or not path.is_file():
            return self._response(404, b"not found", "text/plain")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix == ".js":
            content_type = "text/javascript"
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"
        return self._response(200, path.read_bytes(), content_type)

    def _frame(self, query: dict[str, list[str]]) -> Response:
        key = (query.get("key") or [""])[0]
        locale = (query.get("locale") or [""])[0][:35]
        if key not in self.keys:
            body = render_template("widget/unavailable.html", {"title": "Chat unavailable"})
            csp = FRAME_CSP.format(ancestors="'none'")
            return self._response(
                404, body.encode(), "text/html; charset=utf-8", Content_Security_Policy=csp
            )
        context = {
            "widget_key": key,
            "ws_path": "/ws/widget/",
            "tenant_name": self.tenant_name,
            "locale": locale,
            "title": f"Chat with {self.tenant_name}",
        }
        cache_key = json.dumps(context, sort_keys=True)
        with self._lock:
            if cache_key not in self._frame_cache:
                self._frame_cache[cache_key] = render_template("widget/frame.html", context)
            body = self._frame_cache[cache_key]
        ancestors = " ".join(self.keys[key]) or "'none'"
        csp = FRAME_CSP.format(ancestors=ancestors)
        return self._response(
            200, body.encode(), "text/html; charset=utf-8", Content_Security_Policy=csp
        )

    # ---- websocket --------------------------------------------------------------------------

    async def _send(
        self, socket: ServerConnection, record: Connection | None, frame: dict[str, Any]
    ) -> None:
        if record is not None:
            record.sent.append(frame)
        with contextlib.suppress(Exception):
            await socket.send(json.dumps(frame))

    async def _broadcast(self, conversation: Conversation, frame: dict[str, Any]) -> None:
        for socket in list(conversation.sockets):
            await self._send(socket, getattr(socket, "record", None), frame)

    async def _handle_socket(self, socket: ServerConnection) -> None:
        record = Connection(
            number=next(self._counter),
            origin=socket.request.headers.get("Origin"),
            opened_at=time.monotonic(),
        )
        socket.record = record  # type: ignore[attr-defined]
        self.connections.append(record)
        conversation: Conversation | None = None
        try:
            try:
                raw = await asyncio.wait_for(socket.recv(), 5)
                hello = json.loads(raw)
            except (TimeoutError, ValueError):
                record.close_code = 4400
                await socket.close(4400, "no hello")
                return
            record.received.append(hello)
            conversation = await self._hello(socket, record, hello)
            if conversation is None:
                return
            async for raw in socket:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    record.close_code = 4400
                    await socket.close(4400, "not json")
                    return
                record.received.append(frame)
                if frame.get("type") == "message":
                    await self._message(socket, record, conversation, frame)
                elif frame.get("type") == "handoff.request" and self.describe_conversation:
                    await self._handoff(socket, record, conversation)
                else:
                    await self._send(
                        socket, record, {"type": "error", "code": "bad_request", "detail": "?"}
                    )
        except Exception:
            pass
        finally:
            if conversation is not None:
                conversation.sockets.discard(socket)
            if record.close_code is None:
                record.close_code = socket.close_code

    async def _refuse(self, socket: ServerConnection, record: Connection, code: int) -> None:
        record.close_code = code
        await socket.close(code, "refused")

    async def _hello(
        self, socket: ServerConnection, record: Connection, hello: dict[str, Any]
    ) -> Conversation | None:
        if hello.get("type") != "hello" or not isinstance(hello.get("key"), str):
            await self._refuse(socket, record, 4400)
            return None
        if self.hello_close_codes:
            await self._refuse(socket, record, self.hello_close_codes.popleft())
            return None
        key = hello["key"]
        own = self.base_url
        if key not in self.keys or (record.origin != own and record.origin not in self.keys[key]):
            await self._refuse(socket, record, 4403)
            return None
        token = hello.get("visitor_token")
        conversation_id = hello.get("conversation_id")
        if token:
            conversation = next(
                (c for c in self.conversations.values() if c.visitor_token == token), None
            )
            if conversation is None or (conversation_id and conversation_id != conversation.id):
                await self._refuse(socket, record, 4403)
                return None
        else:
            conversation = Conversation(
                id=str(uuid.uuid4()),
                visitor_token=f"vt_{uuid.uuid4().hex}",
                language=self.new_conversation_language,
            )
            self.conversations[conversation.id] = conversation
        conversation.sockets.add(socket)
        last_seq = hello.get("last_seq") or 0
        missed = [m for m in conversation.messages if m.seq > last_seq]
        settled = [m.payload() for m in missed if m.status != "streaming"]
        welcome: dict[str, Any] = {
            "type": "welcome",
            "visitor_token": conversation.visitor_token,
            "conversation_id": conversation.id,
            "seq": conversation.next_seq() - 1,
            "messages": settled,
        }
        if self.catch_up_max is not None and len(settled) > self.catch_up_max:
            welcome["messages"] = settled[-self.catch_up_max :]
            welcome.update(truncated=True, first_seq=welcome["messages"][0]["seq"])
        if self.describe_conversation:
            welcome["conversation"] = conversation.state()
        await self._send(socket, record, welcome)
        for m in missed:
            if m.status != "streaming":
                continue
            await self._send(socket, record, {"type": "reply.start", "message_id": m.id})
            text, index = conversation.snapshots.get(m.id, ("", -1))
            if index >= 0:
                await self._send(
                    socket,
                    record,
                    {"type": "reply.delta", "message_id": m.id, "index": index, "text": text},
                )
        return conversation

    async def _message(
        self,
        socket: ServerConnection,
        record: Connection,
        conversation: Conversation,
        frame: dict[str, Any],
    ) -> None:
        client_id = frame.get("client_id")
        text = frame.get("text")
        if not isinstance(client_id, str) or not isinstance(text, str) or not text.strip():
            await self._send(
                socket,
                record,
                {"type": "error", "code": "bad_request", "detail": "bad", "client_id": client_id},
            )
            return
        existing = next((m for m in conversation.messages if m.client_id == client_id), None)
        if existing is not None:
            await self._send(
                socket,
                record,
                {"type": "ack", "client_id": client_id, "message": existing.payload()},
            )
            return
        unavailable = False
        if self.message_errors:
            error = dict(self.message_errors.popleft())
            if error["code"] == "unavailable":
                unavailable = True
            else:
                error.update(type="error", client_id=client_id)
                await self._send(socket, record, error)
                return
        if self.drop_before_ack > 0:
            # The socket dies while the message is being stored; the store finishes later (after
            # the client has reconnected, got a welcome without it, and sent it again).
            self.drop_before_ack -= 1
            socket.transport.abort()
            asyncio.get_running_loop().create_task(self._store_late(conversation, client_id, text))
            return
        message = self._store(conversation, client_id, text)
        await self._send(
            socket, record, {"type": "ack", "client_id": client_id, "message": message.payload()}
        )
        await self._broadcast_except(
            conversation, socket, {"type": "message", "message": message.payload()}
        )
        if conversation.status == "closed" and self.describe_conversation:
            # Writing to a closed conversation carries it on, with the assistant.
            await self.update_conversation(conversation.id, status="bot", agent_name=None)
        if unavailable:
            await self._send(
                socket,
                record,
                {
                    "type": "error",
                    "code": "unavailable",
                    "detail": "The assistant is unavailable.",
                    "client_id": client_id,
                },
            )
            return
        asyncio.get_running_loop().create_task(self._reply(conversation))

    async def _handoff(
        self, socket: ServerConnection, record: Connection, conversation: Conversation
    ) -> None:
        if self.handoff_behaviour == "refuse":
            await self._send(
                socket, record, {"type": "error", "code": "bad_request", "detail": "No handoff."}
            )
            return
        if self.handoff_behaviour != "wait" or conversation.status != "bot":
            return
        await asyncio.sleep(0.2)
        await self.post_message(
            conversation.id,
            "system",
            notice("handoff", conversation.language),
            language=conversation.language or None,
        )
        await self.update_conversation(conversation.id, status="waiting_for_agent")

    def _store(self, conversation: Conversation, client_id: str, text: str) -> Msg:
        message = Msg(
            id=str(uuid.uuid4()),
            seq=conversation.next_seq(),
            role="user",
            text=text,
            status="complete",
            client_id=client_id,
        )
        conversation.messages.append(message)
        return message

    async def _store_late(self, conversation: Conversation, client_id: str, text: str) -> None:
        await asyncio.sleep(1.5)
        if any(m.client_id == client_id for m in conversation.messages):
            return  # the resend got there first: idempotent, nothing to do
        self._store(conversation, client_id, text)
        await self._reply(conversation)

    async def _broadcast_except(
        self, conversation: Conversation, sender: ServerConnection, frame: dict[str, Any]
    ) -> None:
        for socket in list(conversation.sockets):
            if socket is not sender:
                await self._send(socket, getattr(socket, "record", None), frame)

    async def _reply(self, conversation: Conversation) -> None:
        spec = self.replies.popleft() if self.replies else self.default_reply
        message = Msg(
            id=str(uuid.uuid4()),
            seq=conversation.next_seq(),
            role=spec.role,
            text="",
            status="streaming",
        )
        conversation.messages.append(message)
        await self._broadcast(conversation, {"type": "reply.start", "message_id": message.id})
        await asyncio.sleep(spec.first_delay)
        text = ""
        for index, chunk in enumerate(spec.chunks):
            text += chunk
            conversation.snapshots[message.id] = (text, index)
            if index not in spec.skip_indexes:
                await self._broadcast(
                    conversation,
                    {
                        "type": "reply.delta",
                        "message_id": message.id,
                        "index": index,
                        "text": chunk,
                    },
                )
            if spec.drop_after_index == index:
                for socket in list(conversation.sockets):
                    socket.transport.abort()
            await asyncio.sleep(spec.interval + spec.pause_after_index.get(index, 0))
        message.text = spec.final_text if spec.final_text is not None else text
        message.status = spec.status
        message.sources = spec.sources
        message.language = spec.language
        conversation.snapshots.pop(message.id, None)
        await self._broadcast(conversation, {"type": "message", "message": message.payload()})

    async def post_message(
        self,
        conversation_id: str,
        role: str,
        text: str,
        author_name: str | None = None,
        language: str | None = None,
        sources: list[dict[str, str]] | None = None,
    ) -> None:
        """An agent message or a notice, pushed to the conversation (use with `call`)."""
        conversation = self.conversations[conversation_id]
        message = Msg(
            id=str(uuid.uuid4()),
            seq=conversation.next_seq(),
            role=role,
            text=text,
            status="complete",
            author_name=author_name,
            language=language,
            sources=sources or [],
        )
        conversation.messages.append(message)
        await self._broadcast(conversation, {"type": "message", "message": message.payload()})

    async def update_conversation(self, conversation_id: str, **changes: Any) -> None:
        """Change the conversation's status, language or agent_name and send
        `conversation.updated` to its sockets (use with `call`)."""
        conversation = self.conversations[conversation_id]
        for name, value in changes.items():
            if name not in {"status", "language", "agent_name"}:
                raise TypeError(f"unknown conversation field {name!r}")
            setattr(conversation, name, value)
        await self._broadcast(
            conversation, {"type": "conversation.updated", "conversation": conversation.state()}
        )
