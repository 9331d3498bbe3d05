"""The REST API's event stream (Server-Sent Events): which frames a stream passes on, and how
a stream that reconnects with `Last-Event-ID` resumes with nothing lost and nothing twice.

The frames are the widget's (`message`, `reply.start`, `reply.delta`, `conversation.updated`,
`error`, `erased`). Every event's `id` is the stream's cursor, what the client has so far:

    m<N>[_s<seq>...][_r<message id hex>-<chars>...]

`m<N>`: every message up to `seq` N was sent in its final form; `s<seq>`: a later message
already sent too (one that arrived while an earlier reply was still streaming); `r<id>-<chars>`:
the first `chars` characters of a reply still streaming were sent as deltas. A stream opened
with a cursor first sends, from the database and the reply snapshots (`stream_state`), what
came after it: the messages after N not sent yet, and the rest of each streaming reply's text
(one delta); then the live frames, minus those the catch-up already covered. The stream joins
the conversation's group before it reads the catch-up, so nothing falls in between.

A `reply.start` for a reply already started means it starts again (a fallback model): the
client drops its text so far. A reply's final `message` carries its whole text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from conversations import frames
from conversations.channels.api import ApiClient, ApiError, api_conversation
from conversations.models import Message
from conversations.selectors import conversation_resume_seq
from conversations.stream_state import snapshot_read

_CURSOR = re.compile(r"^m(\d{1,10})((?:_s\d{1,10}|_r[0-9a-f]{32}-\d{1,9})*)$")
_PART = re.compile(r"_s(\d+)|_r([0-9a-f]{32})-(\d+)")
_MAX_SENT_AHEAD = 32  # later messages remembered in the cursor; beyond, the oldest is dropped
LIVE_TYPES = ("message", "reply.start", "reply.delta", "conversation.updated", "error", "erased")


@dataclass
class StreamCursor:
    """What a client of the stream has (see the module's docstring)."""

    settled_seq: int = 0
    sent_ahead: set[int] = field(default_factory=set)
    streamed: dict[str, int] = field(default_factory=dict)  # message id (hex) -> chars sent

    @classmethod
    def parse(cls, value: str | None) -> StreamCursor | None:
        """The cursor of a `Last-Event-ID`; None for one that is not ours (the caller refuses
        it)."""
        match = _CURSOR.match((value or "").strip())
        if match is None:
            return None
        cursor = cls(settled_seq=int(match.group(1)))
        for seq, message_hex, chars in _PART.findall(match.group(2)):
            if seq:
                cursor.sent_ahead.add(int(seq))
            else:
                cursor.streamed[message_hex] = int(chars)
        return cursor

    def event_id(self) -> str:
        parts = [f"m{self.settled_seq}"]
        parts += [f"s{seq}" for seq in sorted(self.sent_ahead)]
        parts += [f"r{hex_id}-{chars}" for hex_id, chars in self.streamed.items()]
        return "_".join(parts)

    def has(self, seq: int) -> bool:
        return seq <= self.settled_seq or seq in self.sent_ahead

    def message_sent(self, message: dict[str, Any]) -> None:
        """A message's final form was sent: its reply (if it streamed) is no longer partial."""
        self.streamed.pop(UUID(message["id"]).hex, None)
        seq = int(message["seq"])
        if seq <= self.settled_seq:
            return
        self.sent_ahead.add(seq)
        while self.settled_seq + 1 in self.sent_ahead:
            self.settled_seq += 1
            self.sent_ahead.discard(self.settled_seq)
        while len(self.sent_ahead) > _MAX_SENT_AHEAD:
            self.sent_ahead.discard(max(self.sent_ahead))


def sse_event(kind: str, data: dict[str, Any], event_id: str) -> str:
    """One Server-Sent Event: the frame as its `data`, the cursor as its `id`."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event_id}\nevent: {kind}\ndata: {payload}\n\n"


HEARTBEAT = ": keep-alive\n\n"


class ApiEventStream:
    """One open stream: the cursor it has sent up to, the delta index each streaming reply's
    text was sent up to, and the replies already finished (whose late frames are dropped)."""

    def __init__(self, cursor: StreamCursor) -> None:
        self.cursor = cursor
        self.covered: dict[str, int] = {}  # message id -> last delta index sent
        # Replies resumed from their snapshot that no live delta has moved on since: a
        # `reply.start` of theirs was published before the snapshot was read.
        self.resumed: set[str] = set()
        self.finished: set[str] = set()

    def _emit(self, frame: dict[str, Any]) -> str:
        return sse_event(frame["type"], frame, self.cursor.event_id())

    def catch_up(self, conversation_id: UUID) -> list[str]:
        """What the client missed since its cursor: the messages after it (oldest first) and
        the rest of each reply still streaming. Read after joining the group."""
        rows = Message.objects.filter(
            conversation_id=conversation_id, seq__gt=self.cursor.settled_seq
        ).order_by("seq")
        events: list[str] = []
        for message in rows.select_related("author"):
            if message.status == Message.Status.STREAMING:
                events += self._resume_reply(message)
            elif not self.cursor.has(message.seq):
                events += self.admit(frames.message_frame(message))
        return events

    def _resume_reply(self, message: Message) -> list[str]:
        message_id = str(message.pk)
        sent = self.cursor.streamed.get(message.pk.hex)
        snapshot = snapshot_read(message_id)
        events: list[str] = []
        if sent is None:
            sent = 0
            self.cursor.streamed[message.pk.hex] = 0
            events.append(self._emit({"type": "reply.start", "message_id": message_id}))
        self.covered[message_id] = -1
        if snapshot is None or snapshot.index < 0:
            return events
        self.covered[message_id] = snapshot.index
        self.resumed.add(message_id)
        rest = snapshot.text[sent:]
        if rest:
            self.cursor.streamed[message.pk.hex] = sent + len(rest)
            delta = {"type": "reply.delta", "message_id": message_id, "index": snapshot.index}
            events.append(self._emit({**delta, "text": rest}))
        return events

    def admit(self, frame: dict[str, Any]) -> list[str]:
        """The events a live (or caught-up) frame becomes: none when the client has it."""
        kind = frame.get("type")
        if kind not in LIVE_TYPES:
            return []
        if kind == "message":
            return self._admit_message(frame)
        if kind in ("reply.start", "reply.delta"):
            return self._admit_reply(frame)
        return [self._emit(frame)]

    def _admit_message(self, frame: dict[str, Any]) -> list[str]:
        message = frame["message"]
        if message.get("status") == Message.Status.STREAMING or self.cursor.has(message["seq"]):
            return []
        self.covered.pop(message["id"], None)
        self.resumed.discard(message["id"])
        self.finished.add(message["id"])
        self.cursor.message_sent(message)
        return [self._emit(frame)]

    def _admit_reply(self, frame: dict[str, Any]) -> list[str]:
        message_id = frame["message_id"]
        if message_id in self.finished:
            return []
        hex_id = UUID(message_id).hex
        if frame["type"] == "reply.start":
            if message_id in self.resumed:
                return []  # published before the snapshot this stream resumed from
            # A start, or a restart (a fallback model): the text begins again.
            self.covered[message_id] = -1
            self.cursor.streamed[hex_id] = 0
            return [self._emit(frame)]
        if frame["index"] <= self.covered.get(message_id, -1):
            return []
        self.resumed.discard(message_id)
        self.covered[message_id] = frame["index"]
        self.cursor.streamed[hex_id] = self.cursor.streamed.get(hex_id, 0) + len(frame["text"])
        return [self._emit(frame)]


def api_stream_open(
    client: ApiClient,
    *,
    conversation_id: UUID | str,
    last_event_id: str | None = None,
    after_seq: int | None = None,
) -> tuple[UUID, ApiEventStream]:
    """The conversation a stream watches and where the stream starts: after the client's
    `Last-Event-ID` (a cursor of this stream), else after `after_seq`, else now (the replies
    still streaming are caught up from their snapshots). ApiError 404 for a conversation the
    client cannot reach, 400 for a `Last-Event-ID` that is not a cursor."""
    conversation = api_conversation(client, conversation_id)
    if last_event_id:
        cursor = StreamCursor.parse(last_event_id)
        if cursor is None:
            raise ApiError(400, "bad_request", "Last-Event-ID is not an id of this stream.")
    elif after_seq is not None:
        cursor = StreamCursor(settled_seq=max(after_seq, 0))
    else:
        cursor = StreamCursor(settled_seq=conversation_resume_seq(conversation))
    return conversation.pk, ApiEventStream(cursor)
