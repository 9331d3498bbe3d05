"""The agent websocket: a support agent watching and answering one conversation.

`ws/agent/conversations/<uuid>/?last_seq=N`, authenticated by the Django session cookie and
accepted only from the service's own origin. A thin adapter over conversations.agents.
"""

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from conversations import frames
from conversations.agents import (
    AgentRefused,
    AgentSession,
    agent_catch_up,
    agent_frame,
    agent_socket_open,
)
from conversations.groups import conversation_group
from conversations.stream_filter import ReplyStreamFilter

logger = logging.getLogger(__name__)

# Replies whose final `message` this socket has forwarded, newest last (bounded).


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _last_seq(scope: dict[str, Any]) -> int:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        return max(int(query.get("last_seq", ["0"])[0]), 0)
    except ValueError:
        return 0


class AgentConsumer(AsyncWebsocketConsumer):
    session: AgentSession | None = None
    group: str | None = None
    stream_filter: ReplyStreamFilter

    async def connect(self) -> None:
        self.stream_filter = ReplyStreamFilter()
        await self.accept()
        try:
            session = await database_sync_to_async(agent_socket_open)(
                user=self.scope.get("user"),
                conversation_id=self.scope["url_route"]["kwargs"]["conversation_id"],
                origin=_header(self.scope, b"origin"),
                host=_header(self.scope, b"host"),
            )
        except AgentRefused as refused:
            logger.info("agent socket refused: %s", refused)
            await self.close(code=refused.close_code)
            return
        self.session = session
        self.group = conversation_group(session.conversation_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        catch_up = await database_sync_to_async(agent_catch_up)(
            session=session, last_seq=_last_seq(self.scope)
        )
        self.stream_filter.resumed(catch_up.streaming_indexes)
        await self.send_frame(catch_up.welcome)
        for frame in catch_up.streaming_frames:
            await self.send_frame(frame)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, ensure_ascii=False))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None:
            return
        if text_data is None:
            await self.send_frame(frames.error_frame("bad_request", "Send JSON text frames."))
            return
        if len(text_data.encode("utf-8")) > settings.WIDGET_MAX_FRAME_BYTES:
            await self.send_frame(
                frames.error_frame("bad_request", "Frames are limited to 64 KiB.")
            )
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.send_frame(
                frames.error_frame("bad_request", "A frame is a JSON object with a string `type`.")
            )
            return
        replies = await database_sync_to_async(agent_frame)(
            session=self.session, frame=frame, sender=self.channel_name
        )
        for reply in replies:
            await self.send_frame(reply)

    async def conversation_event(self, event: dict[str, Any]) -> None:
        """A frame broadcast to the conversation (see conversations.broadcast)."""
        if event.get("sender") and event["sender"] == self.channel_name:
            return
        frame = event["frame"]
        if self.stream_filter.admit(frame):
            await self.send_frame(frame)
