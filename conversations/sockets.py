"""What the visitor's and the agent's websockets share: frames in and out, joining a
conversation's group with a catch-up, and the broadcast frames they pass on."""

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from conversations import frames
from conversations.broadcast import EVENT_TYPE
from conversations.catch_up import CatchUp
from conversations.groups import conversation_group
from conversations.refusals import CloseCode
from conversations.socket_throttle import FrameBucket, socket_frame_bucket
from conversations.stream_filter import ReplyStreamFilter, is_first_delta
from conversations.stream_state import snapshot_read
from supportbot.trace import trace

logger = logging.getLogger(__name__)

# Protocol frames nest two or three levels; anything far deeper is abuse, not a client.
MAX_FRAME_DEPTH = 32


class NotJSON(ValueError):
    """A text frame that is not JSON at all."""


def frame_text_problem(value: object) -> str | None:
    """What makes a parsed frame unusable, or None: nesting deeper than MAX_FRAME_DEPTH, or a
    string (key or value) holding NUL or a lone surrogate, which Postgres and UTF-8 refuse.

    Iterative, so a deep value cannot exhaust the stack here either.
    """
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if _unstorable(item):
                return "Strings may not contain NUL or unpaired surrogate characters."
        elif isinstance(item, dict | list):
            if depth > MAX_FRAME_DEPTH:
                return f"Frames nest at most {MAX_FRAME_DEPTH} levels deep."
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return None


def parse_frame_text(text: str) -> dict[str, Any] | str:
    """The frame in `text`, or what is wrong with it (for a `bad_request`); NotJSON for text
    that is not JSON at all."""
    try:
        frame = json.loads(text)
    except RecursionError:
        return f"Frames nest at most {MAX_FRAME_DEPTH} levels deep."
    except ValueError as exc:
        raise NotJSON() from exc
    problem = frame_text_problem(frame)
    if problem is not None:
        return problem
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return "A frame is a JSON object with a string `type`."
    return frame


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class ConversationSocket(AsyncWebsocketConsumer):
    group: str | None = None
    stream_filter: ReplyStreamFilter
    frame_bucket: FrameBucket
    flooded = False

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.stream_filter = ReplyStreamFilter()
        self.frame_bucket = socket_frame_bucket()
        await super().websocket_connect(message)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Each client frame takes a token before anything reads it. A socket out of tokens is
        closed with 4429, and what it sent after that is dropped unread."""
        if self.flooded:
            return
        if not self.frame_bucket.take():
            self.flooded = True
            logger.info("socket closed for flooding: %s", self.scope.get("path"))
            await self.close(code=CloseCode.TOO_MANY.value)
            return
        await super().websocket_receive(message)

    def header(self, name: bytes) -> str | None:
        for key, value in self.scope.get("headers", []):
            if key == name:
                return value.decode("latin-1")
        return None

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, ensure_ascii=False))

    async def parse_frame(self, text_data: str | None) -> dict[str, Any] | None:
        """The client's frame, or None after telling it what is wrong (`bad_request`).

        Raises NotJSON for text that is not JSON: what that means differs per socket.
        """
        if text_data is None:
            await self.send_frame(frames.error_frame("bad_request", "Send JSON text frames."))
            return None
        if len(text_data.encode("utf-8", "surrogatepass")) > settings.WIDGET_MAX_FRAME_BYTES:
            await self.send_frame(
                frames.error_frame("bad_request", "Frames are limited to 64 KiB.")
            )
            return None
        frame = parse_frame_text(text_data)
        if isinstance(frame, str):
            await self.send_frame(frames.error_frame("bad_request", frame))
            return None
        return frame

    async def join_conversation(
        self, conversation_id: UUID, catch_up: Callable[[], Awaitable[CatchUp]]
    ) -> None:
        """Subscribe first, then send the catch-up (`catch_up()` is called after subscribing,
        so nothing falls in between): welcome, then replies still streaming."""
        self.group = conversation_group(conversation_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        result = await catch_up()
        self.stream_filter.resumed(result.streaming_indexes)
        await self.send_frame(result.welcome)
        for frame in result.streaming_frames:
            await self.send_frame(frame)

    async def leave_conversation(self) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None

    async def layer_reconnected(self, event: dict[str, Any]) -> None:
        """Frames may have been lost while this process had no Redis: the client reconnects
        and resumes from its last `seq` (supportbot.channel_layer)."""
        await self.close(code=CloseCode.RESUME.value)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """A broadcast frame touches no database: it skips channels' `close_old_connections`
        before each handler (a hop to a thread for every delta of every socket)."""
        if message.get("type") == EVENT_TYPE:
            await self.conversation_event(message)
        else:
            await super().dispatch(message)

    async def resync_reply(self, message_id: str) -> None:
        """Frames of this reply were lost: send `reply.start` and its text so far, which the
        client takes in place of what it built. Without a snapshot the reply has ended, and its
        final `message` carries the whole text."""
        snapshot = await sync_to_async(snapshot_read, thread_sensitive=False)(message_id)
        if snapshot is None or snapshot.index < 0:
            return
        logger.info("reply %s resynced at delta %d after lost frames", message_id, snapshot.index)
        self.stream_filter.resynced(message_id, snapshot.index)
        await self.send_frame({"type": "reply.start", "message_id": message_id})
        await self.send_frame(
            {
                "type": "reply.delta",
                "message_id": message_id,
                "index": snapshot.index,
                "text": snapshot.text,
            }
        )

    async def conversation_event(self, event: dict[str, Any]) -> None:
        """A frame broadcast to the conversation (see conversations.broadcast)."""
        if event.get("sender") and event["sender"] == self.channel_name:
            return
        frame = event["frame"]
        first_delta = is_first_delta(frame)
        if first_delta:
            trace("web.event", frame["message_id"])
        if self.stream_filter.is_gap(frame):
            await self.resync_reply(frame["message_id"])
        elif self.stream_filter.admit(frame):
            await self.send_frame(frame)
        if first_delta:
            trace("web.delta_sent", frame["message_id"])
