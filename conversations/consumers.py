"""The widget websocket: protocol v1 over Channels. A thin adapter over
conversations.channels.widget."""

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from conversations import frames
from conversations.channels.widget import (
    widget_catch_up,
    widget_handoff_request,
    widget_hello,
    widget_message,
)
from conversations.limits import connection_slot_acquire, connection_slot_release
from conversations.refusals import CloseCode, SocketRefused
from conversations.services import VisitorSession
from conversations.sockets import ConversationSocket, NotJSON
from supportbot.trace import trace

logger = logging.getLogger(__name__)


class WidgetConsumer(ConversationSocket):
    session: VisitorSession | None = None
    client_key: str | None = None
    hello_timer: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        client = self.scope.get("client") or ("unknown", 0)
        await self.accept()
        if not await database_sync_to_async(connection_slot_acquire)(str(client[0])):
            await self.close(code=CloseCode.TOO_MANY.value)
            return
        self.client_key = str(client[0])
        self.hello_timer = asyncio.create_task(self._close_without_hello())

    async def _close_without_hello(self) -> None:
        await asyncio.sleep(settings.WIDGET_HELLO_TIMEOUT)
        if self.session is None:
            await self.close(code=CloseCode.BAD_HELLO.value)

    async def disconnect(self, code: int) -> None:
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        await self.leave_conversation()
        if self.client_key is not None:
            await database_sync_to_async(connection_slot_release)(self.client_key)
            self.client_key = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = await self.parse_frame(text_data)
        except NotJSON:
            await self.close(code=CloseCode.BAD_HELLO.value)
            return
        if frame is None:
            if self.session is None:
                await self.close(code=CloseCode.BAD_HELLO.value)
            return
        kind = frame["type"]
        if self.session is None:
            if kind != "hello":
                await self.close(code=CloseCode.BAD_HELLO.value)
                return
            await self._hello(frame)
        elif kind == "message":
            conversation_id = self.session.conversation.pk
            trace("web.receive", conversation_id)
            reply = await database_sync_to_async(widget_message)(
                session=self.session, frame=frame, sender=self.channel_name
            )
            await self.send_frame(reply)
            trace("web.ack_sent", conversation_id)
        elif kind == "handoff.request":
            await database_sync_to_async(widget_handoff_request)(session=self.session)
        elif kind == "hello":
            await self.send_frame(frames.error_frame("bad_request", "Already said hello."))
        else:
            await self.send_frame(
                frames.error_frame("bad_request", f"Unknown frame type {kind!r}.")
            )

    async def _hello(self, frame: dict[str, Any]) -> None:
        try:
            session = await database_sync_to_async(widget_hello)(
                frame=frame, origin=self.header(b"origin"), host=self.header(b"host")
            )
        except SocketRefused as refused:
            logger.info("widget hello refused: %s", refused)
            await self.close(code=refused.close_code)
            return
        self.session = session
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        last_seq = frame.get("last_seq") or 0
        await self.join_conversation(
            session.conversation.pk,
            lambda: database_sync_to_async(widget_catch_up)(session=session, last_seq=last_seq),
        )
