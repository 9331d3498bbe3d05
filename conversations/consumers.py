"""The widget websocket: protocol v1 over Channels. A thin adapter over
conversations.channels.widget."""

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from conversations import frames
from conversations.channels.widget import (
    WidgetSession,
    widget_catch_up,
    widget_consent,
    widget_handoff_request,
    widget_hello,
    widget_message,
)
from conversations.limits import ConnectionSlot
from conversations.refusals import CloseCode, SocketRefused
from conversations.sockets import ConversationSocket, NotJSON
from supportbot.client_address import client_bucket, scope_client_address
from supportbot.trace import trace

logger = logging.getLogger(__name__)


class WidgetConsumer(ConversationSocket):
    session: WidgetSession | None = None
    connection_slot: ConnectionSlot | None = None
    client: str = "unknown"
    refused = False  # closed for a refusal: later frames are not read
    # A timer handle, not a task: an idle socket waiting for its hello holds no coroutine.
    hello_timer: asyncio.TimerHandle | None = None
    hello_timeout_close: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        # The client as resolved through TRUSTED_PROXIES (supportbot.client_address), counted
        # per address (an IPv6 client: its /64).
        self.client = client_bucket(scope_client_address(self.scope))
        slot = ConnectionSlot(self.client)
        await self.accept()
        if not await slot.acquire():
            await self.close(code=CloseCode.TOO_MANY.value)
            return
        self.connection_slot = slot
        self.hello_timer = asyncio.get_running_loop().call_later(
            settings.WIDGET_HELLO_TIMEOUT, self._hello_timed_out
        )

    def _hello_timed_out(self) -> None:
        self.hello_timer = None
        if self.session is None:
            self.hello_timeout_close = asyncio.create_task(
                self.close(code=CloseCode.BAD_HELLO.value)
            )

    async def disconnect(self, code: int) -> None:
        if self.hello_timer is not None:
            self.hello_timer.cancel()
        await self.leave_conversation()
        if self.connection_slot is not None:
            await self.connection_slot.release()
            self.connection_slot = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.refused:
            return
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
            return
        try:
            await self._frame(self.session, kind, frame)
        except SocketRefused as refused:
            logger.info("widget socket closed: %s", refused)
            self.refused = True
            await self.close(code=refused.close_code)

    async def _frame(self, session: WidgetSession, kind: str, frame: dict[str, Any]) -> None:
        if kind == "message":
            conversation_id = session.conversation.pk
            trace("web.receive", conversation_id)
            reply = await database_sync_to_async(widget_message)(
                session=session, frame=frame, sender=self.channel_name
            )
            await self.send_frame(reply)
            trace("web.ack_sent", conversation_id)
        elif kind == "handoff.request":
            answer = await database_sync_to_async(widget_handoff_request)(session=session)
            if answer is not None:
                await self.send_frame(answer)
        elif kind == "consent":
            answer = await database_sync_to_async(widget_consent)(session=session, frame=frame)
            await self.send_frame(answer)
            if answer["type"] == "erased":
                await self._end_erased_session()
        elif kind == "hello":
            await self.send_frame(frames.error_frame("bad_request", "Already said hello."))
        else:
            await self.send_frame(
                frames.error_frame("bad_request", f"Unknown frame type {kind!r}.")
            )

    async def _end_erased_session(self) -> None:
        """The visitor's data was erased: this socket's session is over (the widget starts
        afresh on a new socket); later frames are not read."""
        self.refused = True
        await self.leave_conversation()
        await self.close(code=CloseCode.ERASED.value)

    async def conversation_event(self, event: dict[str, Any]) -> None:
        await super().conversation_event(event)
        if event.get("frame", {}).get("type") == "erased" and not self.refused:
            await self._end_erased_session()

    async def _hello(self, frame: dict[str, Any]) -> None:
        # The hello came in time: however long the server then takes (a storm of hellos waits
        # its turn for the database), the timer must not close the socket.
        if self.hello_timer is not None:
            self.hello_timer.cancel()
            self.hello_timer = None
        try:
            session = await database_sync_to_async(widget_hello)(
                frame=frame,
                origin=self.header(b"origin"),
                host=self.header(b"host"),
                client=self.client,
            )
        except SocketRefused as refused:
            logger.info("widget hello refused: %s", refused)
            if refused.last_frame is not None:
                await self.send_frame(refused.last_frame)
            await self.close(code=refused.close_code)
            return
        self.session = session
        if session.erased_conversation_id is not None:
            await self.send_frame(frames.erased_frame(session.erased_conversation_id))
        last_seq = frame.get("last_seq") or 0
        await self.join_conversation(
            session.conversation.pk,
            lambda: database_sync_to_async(widget_catch_up)(session=session, last_seq=last_seq),
        )
