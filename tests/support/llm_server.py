"""A scripted OpenAI-compatible Chat Completions server for tests and benchmarks (stdlib only).

In-process::

    with ScriptedLLMServer() as server:
        server.enqueue(Reply(text="Hi there"), Reply(status=429, headers={"Retry-After": "1"}))
        ... point the client at server.base_url ...
        server.wait_for_requests(2)

As a process (prints its base URL on stdout when ready)::

    python -m tests.support.llm_server --port 0 --first-token-delay 0.2 --tokens-per-second 100

Another process scripts it over HTTP: ``POST /_control/enqueue`` (a JSON list of Reply dicts, or
one dict), ``POST /_control/default`` (one Reply dict), ``GET /_control/requests``,
``POST /_control/reset``.

Routes: ``POST /v1/chat/completions`` (and any path ending in ``/chat/completions``: Azure's
``/openai/deployments/<name>/chat/completions?api-version=...`` and ``/openai/v1/...``), streaming
(SSE, chunked, exactly like OpenAI: ``data: {json}\\n\\n`` ... ``data: [DONE]\\n\\n``) or not;
``GET /v1/models``. The last user message may also script its own reply with ``[[reply: text]]``.

``POST /v1/embeddings`` (and any path ending in ``/embeddings``) answers with deterministic
vectors: `hashed_embedding`, a normalised hashed bag of words (with word prefixes and character
trigrams), so texts that share words, or most letters of words, are close in cosine distance.
``encoding_format`` ``float`` or ``base64`` and ``dimensions`` are honoured.
`enqueue_embeddings(Reply(status=429, ...))` scripts failures of the next embeddings requests
(status, headers, error_body, first_token_delay and fail_after_tokens, which drops the
connection, are used).

``POST /v1/moderations`` (and any path ending in ``/moderations``) answers like OpenAI's
moderation endpoint: an input is flagged (category ``harassment``) when it contains
``[[flag]]`` or one of `moderation_terms` (case-insensitive); nothing else is.
`enqueue_moderations(Reply(status=500))` scripts failures (status, first_token_delay);
`moderation_delay` delays every answer (for benchmarks; ``--moderation-delay``).

A chat request whose ``response_format`` is the JSON schema named ``sensitive_topic`` (the
classification of a visitor's question) is answered at once, not from the reply queue:
``{"topic": T}`` where T is the ``[[topic: T]]`` marker in its last user message, else the
topic of the first of `topic_terms` (term -> topic) found in it, else ``"none"``.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import re
import socket
import struct
import sys
import threading
import time
import unicodedata
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DEFAULT_TEXT = "Hello from the scripted model."
_TOKEN_RE = re.compile(r"\s*\S+|\s+")
_MARKER_RE = re.compile(r"\[\[reply:\s*(.*?)\s*\]\]", re.DOTALL)
_TOPIC_RE = re.compile(r"\[\[topic:\s*([\w \-]+?)\s*\]\]")
FLAG_MARKER = "[[flag]]"  # a text the moderation endpoint flags
TOPIC_SCHEMA = "sensitive_topic"  # the classification's response_format schema name
_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_STALL_LIMIT = 300.0  # a stalled reply gives up after this long even if nobody stops the server
EMBEDDING_DIMENSIONS = 256  # the default size of the scripted embeddings
_WORD_RE = re.compile(r"\w+")
_PREFIX = 5  # words longer than this also count by their first letters (a crude stem)


def split_tokens(text: str) -> list[str]:
    """Word-ish tokens that join back to `text` ("Hello", " from", " the", ...)."""
    return _TOKEN_RE.findall(text)


@dataclass
class Reply:
    text: str = DEFAULT_TEXT
    tokens: list[str] | None = None  # explicit chunking; default: split_tokens(text)
    first_token_delay: float = 0.0
    token_interval: float = 0.0
    finish_reason: str = "stop"
    tool_calls: list[dict[str, Any]] | None = None  # [{"name", "arguments": "<json>", "id"?}]
    status: int = 200
    error_body: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    fail_after_tokens: int | None = None  # drop the connection (abruptly) after N tokens
    stall_after_tokens: int | None = None  # stop sending, connection open, after N tokens
    # streaming only: 200 and the headers, then not one byte of the body (connection open)
    stall_after_headers: bool = False
    # streaming only: end the body cleanly after N tokens (no finish_reason, no [DONE]) ...
    end_after_tokens: int | None = None
    # ... or send an SSE error event ({"error": ...}, error_body if given) after N tokens
    error_after_tokens: int | None = None
    usage: dict[str, int] | None = None  # default computed from counts
    model: str | None = None  # default: the requested model

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown Reply fields: {sorted(unknown)}")
        return cls(**data)

    def token_list(self) -> list[str]:
        return list(self.tokens) if self.tokens is not None else split_tokens(self.text)


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    json: Any
    at: float  # time.monotonic() when the request had been read
    wall: float = field(default=0.0)  # time.time() at the same moment (comparable across processes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hashed_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit vector for `text`: a bag of its words, word prefixes and character
    trigrams, hashed into `dimensions` signed buckets. Case and accents are ignored; texts that
    share words, or words that share most of their letters, are close in cosine distance."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    vector = [0.0] * dimensions
    words = _WORD_RE.findall(folded) or [folded.strip() or " "]
    for word in words:
        for index, value in _word_features(word, dimensions):
            vector[index] += value
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


@functools.lru_cache(maxsize=65536)
def _word_features(word: str, dimensions: int) -> tuple[tuple[int, float], ...]:
    features = [(word, 1.0)]
    if len(word) > _PREFIX:
        features.append((word[:_PREFIX] + "~", 0.5))
    padded = f"<{word}>"
    features += [("#" + padded[i : i + 3], 0.5) for i in range(len(padded) - 2)]
    out = []
    for feature, weight in features:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        number = int.from_bytes(digest, "little")
        out.append(((number >> 1) % dimensions, weight if number & 1 else -weight))
    return tuple(out)


class ScriptedLLMServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.default = Reply()
        self.requests: list[RecordedRequest] = []
        # Chat requests being answered now, and the most at once since the last reset. A request
        # stops counting just before its last event is written, so a client that has read a
        # whole reply never sees it still counted.
        self.in_flight = 0
        self.max_in_flight = 0
        self._queue: deque[Reply] = deque()
        self._embedding_queue: deque[Reply] = deque()
        self._moderation_queue: deque[Reply] = deque()
        self.moderation_terms: list[str] = []
        self.moderation_delay = 0.0
        self.topic_terms: dict[str, str] = {}
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> ScriptedLLMServer:
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"llm-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes stalled and delayed replies
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- scripting -----------------------------------------------------------------------------
    def enqueue(self, *replies: Reply) -> None:
        with self._cond:
            self._queue.extend(replies)

    def enqueue_embeddings(self, *replies: Reply) -> None:
        """Script the next embeddings requests (a Reply with status >= 400 fails one)."""
        with self._cond:
            self._embedding_queue.extend(replies)

    def enqueue_moderations(self, *replies: Reply) -> None:
        """Script the next moderation requests (a Reply with status >= 400 fails one)."""
        with self._cond:
            self._moderation_queue.extend(replies)

    def reset(self) -> None:
        with self._cond:
            self._queue.clear()
            self._embedding_queue.clear()
            self._moderation_queue.clear()
            self.moderation_terms = []
            self.moderation_delay = 0.0
            self.topic_terms = {}
            self.requests.clear()
            self.default = Reply()
            self.max_in_flight = self.in_flight

    def wait_for_requests(self, n: int, timeout: float = 10) -> list[RecordedRequest]:
        """Block until at least n requests were recorded; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"expected {n} requests within {timeout}s, got {len(self.requests)}"
                    )
                self._cond.wait(left)
            return list(self.requests)

    def chat_requests(self) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def moderation_requests(self) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self.requests if r.path.endswith("/moderations")]

    def classification_requests(self) -> list[RecordedRequest]:
        return [r for r in self.chat_requests() if _schema_name(r.json) == TOPIC_SCHEMA]

    def reply_requests(self) -> list[RecordedRequest]:
        """Chat requests other than classifications."""
        return [r for r in self.chat_requests() if _schema_name(r.json) != TOPIC_SCHEMA]

    def embedding_requests(self) -> list[RecordedRequest]:
        with self._cond:
            return [r for r in self.requests if r.path.endswith("/embeddings")]

    # -- used by the handler -------------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def _next_reply(self, body: Any) -> Reply:
        marker = _marker_reply(body)
        with self._cond:
            if marker is not None:
                return marker
            if self._queue:
                return self._queue.popleft()
            return self.default

    def _enter(self) -> None:
        with self._cond:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._cond:
            self.in_flight -= 1

    def _next_embedding_reply(self) -> Reply | None:
        with self._cond:
            return self._embedding_queue.popleft() if self._embedding_queue else None

    def _next_moderation_reply(self) -> Reply | None:
        with self._cond:
            return self._moderation_queue.popleft() if self._moderation_queue else None

    def flags(self, text: str) -> bool:
        """True when the moderation endpoint flags `text`."""
        lowered = text.lower()
        with self._cond:
            terms = list(self.moderation_terms)
        return FLAG_MARKER in lowered or any(t.lower() in lowered for t in terms if t)

    def topic_of(self, text: str) -> str:
        """The topic the classification answers for a question."""
        match = _TOPIC_RE.search(text)
        if match:
            return match.group(1).strip()
        lowered = text.lower()
        with self._cond:
            terms = dict(self.topic_terms)
        for term, topic in terms.items():
            if term.lower() in lowered:
                return topic
        return "none"


def _schema_name(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    schema = response_format.get("json_schema")
    return schema.get("name") if isinstance(schema, dict) else None


def _last_user_text(body: Any) -> str:
    for message in reversed((body or {}).get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def _marker_reply(body: Any) -> Reply | None:
    if not isinstance(body, dict):
        return None
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            match = _MARKER_RE.search(content or "") if isinstance(content, str) else None
            return Reply(text=match.group(1)) if match else None
    return None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type, owner: ScriptedLLMServer) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return  # the client went away: expected in drop/cancel tests
        super().handle_error(request, client_address)


class _Dropped(Exception):
    """The reply is over and the connection must be closed without a proper end."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def owner(self) -> ScriptedLLMServer:
        return self.server.owner

    # -- routing -------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_control/requests":
            with self.owner._cond:
                data = [r.to_dict() for r in self.owner.requests]
            self._send_json(200, data)
            return
        self._read_and_record(path)
        if path.endswith("/models"):
            self._send_json(200, {"object": "list", "data": [_model_entry("scripted-model")]})
            return
        self._send_error_body(404, f"no route for GET {path}", "invalid_request_error")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/_control/"):
            self._control(path)
            return
        request = self._read_and_record(path)
        if request is None:
            return
        if path.endswith("/chat/completions"):
            if _schema_name(request.json) == TOPIC_SCHEMA:
                self._classify(request)
                return
            self._chat(request)
            return
        if path.endswith("/moderations"):
            self._moderations(request)
            return
        if path.endswith("/embeddings"):
            self._embeddings(request)
            return
        self._send_error_body(404, f"no route for POST {path}", "invalid_request_error")

    def _control(self, path: str) -> None:
        try:
            data = self._read_json()
            if path == "/_control/enqueue":
                items = data if isinstance(data, list) else [data]
                self.owner.enqueue(*(Reply.from_dict(item) for item in items))
            elif path == "/_control/default":
                self.owner.default = Reply.from_dict(data or {})
            elif path == "/_control/reset":
                self.owner.reset()
            else:
                self._send_error_body(404, f"no control route {path}", "invalid_request_error")
                return
        except (ValueError, TypeError) as exc:
            self._send_error_body(400, str(exc), "invalid_request_error")
            return
        self._send_json(200, {"ok": True})

    # -- request -------------------------------------------------------------------------------
    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _read_and_record(self, path: str) -> RecordedRequest | None:
        try:
            body = self._read_json()
        except ValueError:
            self._send_error_body(400, "the body is not valid JSON", "invalid_request_error")
            return None
        request = RecordedRequest(
            method=self.command,
            path=path,
            query=dict(parse_qsl(urlsplit(self.path).query)),
            headers={k.lower(): v for k, v in self.headers.items()},
            json=body,
            at=time.monotonic(),
            wall=time.time(),
        )
        self.owner._record(request)
        return request

    # -- replies -------------------------------------------------------------------------------
    def _chat(self, request: RecordedRequest) -> None:
        self.owner._enter()
        self._counted = True
        try:
            self._chat_answer(request)
        finally:
            self._done_counting()

    def _done_counting(self) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            self.owner._leave()

    def _chat_answer(self, request: RecordedRequest) -> None:
        body = request.json if isinstance(request.json, dict) else {}
        reply = self.owner._next_reply(body)
        model = reply.model or _requested_model(request) or "scripted-model"
        if reply.status >= 400:
            self._done_counting()
            self._send_error_body(
                reply.status,
                f"scripted error {reply.status}",
                _error_type(reply.status),
                body=reply.error_body,
                headers=reply.headers,
            )
            return
        try:
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._stream(reply, model, body, include_usage)
            else:
                self._complete(reply, model, body)
        except _Dropped:
            self._abort()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _embeddings(self, request: RecordedRequest) -> None:
        body = request.json if isinstance(request.json, dict) else {}
        reply = self.owner._next_embedding_reply()
        if reply is not None:
            try:
                self._sleep(reply.first_token_delay)
            except _Dropped:
                self._abort()
                return
            if reply.fail_after_tokens is not None:
                self._abort()
                return
            if reply.status >= 400:
                self._send_error_body(
                    reply.status,
                    f"scripted error {reply.status}",
                    _error_type(reply.status),
                    body=reply.error_body,
                    headers=reply.headers,
                )
                return
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        dimensions = body.get("dimensions", EMBEDDING_DIMENSIONS)
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(text, str) and text for text in inputs)
            or not isinstance(dimensions, int)
            or not 1 <= dimensions <= 4096
        ):
            self._send_error_body(
                400, "'input' must be a non-empty string or list of them", "invalid_request_error"
            )
            return
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = hashed_embedding(text, dimensions)
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(split_tokens(text)) for text in inputs)
        payload = {
            "object": "list",
            "data": data,
            "model": _requested_model(request) or "scripted-embedding",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        self._send_json(200, payload, headers=(reply.headers if reply else None))

    def _moderations(self, request: RecordedRequest) -> None:
        body = request.json if isinstance(request.json, dict) else {}
        reply = self.owner._next_moderation_reply()
        try:
            self._sleep(self.owner.moderation_delay + (reply.first_token_delay if reply else 0))
        except _Dropped:
            self._abort()
            return
        if reply is not None and reply.status >= 400:
            self._send_error_body(
                reply.status,
                f"scripted error {reply.status}",
                _error_type(reply.status),
                body=reply.error_body,
                headers=reply.headers,
            )
            return
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(t, str) for t in inputs):
            self._send_error_body(400, "'input' must be text", "invalid_request_error")
            return
        results = []
        for text in inputs:
            flagged = self.owner.flags(text)
            categories = {name: flagged and name == "harassment" for name in _MODERATION_CATEGORIES}
            scores = {name: (0.9 if value else 0.001) for name, value in categories.items()}
            applied = {name: ["text"] for name in _MODERATION_CATEGORIES}
            results.append(
                {
                    "flagged": flagged,
                    "categories": categories,
                    "category_scores": scores,
                    "category_applied_input_types": applied,
                }
            )
        model = body.get("model") or "omni-moderation-latest"
        payload = {"id": f"modr-{uuid.uuid4().hex[:16]}", "model": model, "results": results}
        self._send_json(200, payload)

    def _classify(self, request: RecordedRequest) -> None:
        body = request.json if isinstance(request.json, dict) else {}
        topic = self.owner.topic_of(_last_user_text(body))
        reply = Reply(text=json.dumps({"topic": topic}))
        self._complete(reply, body.get("model") or "scripted-model", body)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.owner._stopping.wait(seconds):
            raise _Dropped

    def _complete(self, reply: Reply, model: str, body: dict[str, Any]) -> None:
        tokens = reply.token_list()
        self._sleep(reply.first_token_delay + reply.token_interval * max(len(tokens) - 1, 0))
        if reply.fail_after_tokens is not None:
            raise _Dropped
        if reply.stall_after_tokens is not None:
            self.owner._stopping.wait(_STALL_LIMIT)
            raise _Dropped
        message: dict[str, Any] = {"role": "assistant", "content": "".join(tokens)}
        calls = _tool_calls_with_ids(reply)
        if calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in calls
            ]
            if not tokens:
                message["content"] = None
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_scripted",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": reply.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(reply, body, len(tokens) + _tool_tokens(calls)),
        }
        self._done_counting()
        self._send_json(200, payload, headers=reply.headers)

    def _stream(self, reply: Reply, model: str, body: dict[str, Any], include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
        for name, value in (reply.headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        if reply.stall_after_headers:
            self.owner._stopping.wait(_STALL_LIMIT)
            raise _Dropped
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_scripted",
        }

        def event(choices: list[dict[str, Any]], **extra: Any) -> None:
            self._chunk(f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n")

        def delta(d: dict[str, Any], finish: str | None = None) -> None:
            event([{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}])

        tokens = reply.token_list()
        pieces: list[dict[str, Any]] = [{"content": t} for t in tokens]
        for i, call in enumerate(_tool_calls_with_ids(reply)):
            pieces.extend(_tool_call_pieces(i, call))
        delta({"role": "assistant", "content": "", "refusal": None})
        start = time.monotonic() + reply.first_token_delay
        for n in range(len(pieces) + 1):
            if _reached(reply.fail_after_tokens, n):
                raise _Dropped
            if _reached(reply.stall_after_tokens, n):
                self.owner._stopping.wait(_STALL_LIMIT)
                raise _Dropped
            if _reached(reply.error_after_tokens, n):
                error = reply.error_body or {
                    "error": {
                        "message": "scripted stream error",
                        "type": "server_error",
                        "code": None,
                    }
                }
                self._chunk(f"data: {json.dumps(error)}\n\n")
                self._end_body()
                return
            if _reached(reply.end_after_tokens, n):
                self._end_body()
                return
            if n == len(pieces):
                break
            # an absolute schedule: no drift however long the writes take
            self._sleep(start + n * reply.token_interval - time.monotonic())
            delta(pieces[n])
        self._done_counting()
        delta({}, reply.finish_reason)
        if include_usage:
            event([], usage=_usage(reply, body, len(pieces)))
        self._chunk("data: [DONE]\n\n")
        self._end_body()

    def _end_body(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _abort(self) -> None:
        """Drop the connection abruptly (RST), as a crashed upstream would."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error_body(
        self,
        status: int,
        message: str,
        kind: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = body or {"error": {"message": message, "type": kind, "param": None, "code": None}}
        self._send_json(status, payload, headers)


def _reached(limit: int | None, n: int) -> bool:
    return limit is not None and n >= limit


def _requested_model(request: RecordedRequest) -> str | None:
    match = re.search(r"/deployments/([^/]+)/", request.path)
    if match:
        return match.group(1)
    body = request.json
    return body.get("model") if isinstance(body, dict) else None


def _error_type(status: int) -> str:
    return {
        400: "invalid_request_error",
        401: "invalid_request_error",
        403: "permission_error",
        404: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "server_error" if status >= 500 else "invalid_request_error")


def _tool_calls_with_ids(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": c.get("id") or f"call_{i}_{uuid.uuid4().hex[:8]}",
            "name": c["name"],
            "arguments": c.get("arguments", "{}"),
        }
        for i, c in enumerate(reply.tool_calls or [])
    ]


def _tool_call_pieces(index: int, call: dict[str, Any]) -> list[dict[str, Any]]:
    """The name comes first with an empty argument string, then the arguments in pieces."""
    first = {
        "index": index,
        "id": call["id"],
        "type": "function",
        "function": {"name": call["name"], "arguments": ""},
    }
    args = call["arguments"]
    size = max(1, len(args) // 3)
    rest = [
        {"index": index, "function": {"arguments": args[i : i + size]}}
        for i in range(0, len(args), size)
    ]
    return [{"tool_calls": [first]}] + [{"tool_calls": [piece]} for piece in rest]


def _tool_tokens(calls: list[dict[str, Any]]) -> int:
    return sum(1 + len(split_tokens(c["arguments"])) for c in calls)


def _usage(reply: Reply, body: dict[str, Any], completion_tokens: int) -> dict[str, int]:
    if reply.usage is not None:
        return reply.usage
    prompt = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        prompt += 3 + (len(split_tokens(content)) if isinstance(content, str) else 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "supportbot-tests"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--first-token-delay", type=float, default=0.0, help="seconds")
    parser.add_argument("--tokens-per-second", type=float, default=0.0, help="0: no delay")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="the default reply")
    parser.add_argument(
        "--moderation-delay", type=float, default=0.0, help="seconds per moderation answer"
    )
    parser.add_argument(
        "--tokens", type=int, default=None, help="make the default reply this many tokens long"
    )
    args = parser.parse_args(argv)
    text = args.text
    if args.tokens is not None:
        words = text.split() or ["token"]
        text = " ".join(words[i % len(words)] for i in range(args.tokens))
    server = ScriptedLLMServer(args.host, args.port)
    server.default = Reply(
        text=text,
        first_token_delay=args.first_token_delay,
        token_interval=1.0 / args.tokens_per_second if args.tokens_per_second > 0 else 0.0,
    )
    server.moderation_delay = args.moderation_delay
    server.start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
