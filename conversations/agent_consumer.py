"""The agent websocket: a support agent watching and answering one conversation.

`ws/agent/conversations/<uuid>/?last_seq=N`, authenticated by the Django session cookie and
accepted only from the service's own origin. A thin adapter over conversations.agent_socket.
"""

import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async

from conversations import frames
from conversations.agent_socket import (
    AgentSession,
    agent_catch_up,
    agent_frame,
    agent_socket_open,
)
from conversations.refusals import SocketRefused
from conversations.sockets import ConversationSocket, NotJSON

logger = logging.getLogger(__name__)


def _last_seq(scope: dict[str, Any]) -> int:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        return max(int(query.get("last_seq", ["0"])[0]), 0)
    except ValueError:
        return 0


def _session_key(scope: dict[str, Any]) -> str | None:
    session = scope.get("session")
    return getattr(session, "session_key", None) if session is not None else None


class AgentConsumer(ConversationSocket):
    session: AgentSession | None = None

    async def connect(self) -> None:
        await self.accept()
        try:
            session = await database_sync_to_async(agent_socket_open)(
                user=self.scope.get("user"),
                conversation_id=self.scope["url_route"]["kwargs"]["conversation_id"],
                origin=self.header(b"origin"),
                host=self.header(b"host"),
                session_key=_session_key(self.scope),
            )
        except SocketRefused as refused:
            logger.info("agent socket refused: %s", refused)
            await self.close(code=refused.close_code)
            return
        self.session = session
        await self.join_conversation(
            session.conversation_id,
            lambda: database_sync_to_async(agent_catch_up)(
                session=session, last_seq=_last_seq(self.scope)
            ),
        )

    async def disconnect(self, code: int) -> None:
        await self.leave_conversation()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None:
            return
        try:
            frame = await self.parse_frame(text_data)
        except NotJSON:
            await self.send_frame(
                frames.error_frame("bad_request", "A frame is a JSON object with a string `type`.")
            )
            return
        if frame is None:
            return
        try:
            replies = await database_sync_to_async(agent_frame)(
                session=self.session, frame=frame, sender=self.channel_name
            )
        except SocketRefused as refused:
            logger.info("agent socket closed: %s", refused)
            self.session = None
            await self.close(code=refused.close_code)
            return
        for reply in replies:
            await self.send_frame(reply)
