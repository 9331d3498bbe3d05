"""The widget websocket: protocol v1 over Channels. A thin adapter over conversations.widget."""

import asyncio
import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from conversations import frames
from conversations.groups import conversation_group
from conversations.limits import connection_slot_acquire, connection_slot_release
from conversations.services import VisitorSession
from conversations.stream_filter import ReplyStreamFilter
from conversations.widget import (
    CLOSE_BAD_HELLO,
    CLOSE_TOO_MANY,
    WidgetRefused,
    widget_catch_up,
    widget_handoff_request,
    widget_hello,
    widget_message,
)

logger = logging.getLogger(__name__)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class WidgetConsumer(AsyncWebsocketConsumer):
    session: VisitorSession | None = None
    group: str | None = None
    client_key: str | None = None
    hello_timer: asyncio.Task[None] | None = None
    stream_filter: ReplyStreamFilter

    async def connect(self) -> None:
        self.stream_filter = ReplyStreamFilter()
        client = self.scope.get("client") or ("unknown", 0)
        await self.accept()
        if not await database_sync_to_async(connection_slot_acquire)(str(client[0])):
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.client_key = str(client[0])
        self.hello_timer = asyncio.create_task(self._close_without_hello())

    async def _close_without_hello(self) -> None:
        await asyncio.sleep(settings.WIDGET_HELLO_TIMEOUT)
        if self.session is None:
            await self.close(code=CLOSE_BAD_HELLO)

    async def disconnect(self, code: int) -> None:
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.client_key is not None:
            await database_sync_to_async(connection_slot_release)(self.client_key)
            self.client_key = None

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, ensure_ascii=False))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
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
            await self.close(code=CLOSE_BAD_HELLO)
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self._refuse_or_error("A frame is a JSON object with a string `type`.")
            return
        kind = frame["type"]
        if self.session is None:
            if kind != "hello":
                await self.close(code=CLOSE_BAD_HELLO)
                return
            await self._hello(frame)
        elif kind == "message":
            reply = await database_sync_to_async(widget_message)(
                session=self.session, frame=frame, sender=self.channel_name
            )
            await self.send_frame(reply)
        elif kind == "handoff.request":
            await database_sync_to_async(widget_handoff_request)(session=self.session)
        elif kind == "hello":
            await self.send_frame(frames.error_frame("bad_request", "Already said hello."))
        else:
            await self.send_frame(
                frames.error_frame("bad_request", f"Unknown frame type {kind!r}.")
            )

    async def _refuse_or_error(self, detail: str) -> None:
        if self.session is None:
            await self.close(code=CLOSE_BAD_HELLO)
        else:
            await self.send_frame(frames.error_frame("bad_request", detail))

    async def _hello(self, frame: dict[str, Any]) -> None:
        try:
            session = await database_sync_to_async(widget_hello)(
                frame=frame,
                origin=_header(self.scope, b"origin"),
                host=_header(self.scope, b"host"),
            )
        except WidgetRefused as refused:
            logger.info("widget hello refused: %s", refused)
            await self.close(code=refused.close_code)
            return
        self.session = session
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        self.group = conversation_group(session.conversation.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        last_seq = frame.get("last_seq") or 0
        catch_up = await database_sync_to_async(widget_catch_up)(session=session, last_seq=last_seq)
        self.stream_filter.resumed(catch_up.streaming_indexes)
        await self.send_frame(catch_up.welcome)
        for streaming_frame in catch_up.streaming_frames:
            await self.send_frame(streaming_frame)

    async def conversation_event(self, event: dict[str, Any]) -> None:
        """A frame broadcast to the conversation (see conversations.broadcast)."""
        if event.get("sender") and event["sender"] == self.channel_name:
            return
        frame = event["frame"]
        if self.stream_filter.admit(frame):
            await self.send_frame(frame)
