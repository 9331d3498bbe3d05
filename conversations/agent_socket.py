"""The agent websocket's rules: who may open it and from where, its catch-up, and its frames.

Synchronous and free of websocket details, so `conversations.agent_consumer` stays a thin
adapter and every rule here is tested directly. An agent is an active staff user whose tenant
memberships cover the conversation's tenant (superusers: every tenant); anything else is
refused (`4403` when opening, a `forbidden` error frame for an action).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

from django.conf import settings
from django.db import OperationalError
from django.http.request import split_domain_port, validate_host

from conversations import frames
from conversations.agents import (
    AgentActionError,
    agent_message_post,
    conversation_close,
    conversation_hand_back,
    conversation_take_over,
)
from conversations.audit_trail import conversation_event, user_actor
from conversations.catch_up import CatchUp, conversation_catch_up
from conversations.origins import is_own_origin
from conversations.refusals import CloseCode, SocketRefused
from conversations.selectors import AccessRefused, access_agent, access_conversation_for_agent

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.auth.models import AnonymousUser, User

    from conversations.models import Conversation

_DEADLOCK = "40P01"  # Postgres: deadlock_detected


@dataclass(frozen=True)
class AgentSession:
    agent: User  # as the socket was opened; every action reads the user again
    conversation_id: UUID
    session_key: str | None = None  # the login session; every action checks it still exists


def agent_socket_path(conversation_id: UUID | str) -> str:
    """Where the agent websocket of a conversation is (see conversations.routing)."""
    return f"/ws/agent/conversations/{conversation_id}/"


def agent_origin_allowed(origin: str | None, host: str | None) -> bool:
    """True when a cookie-authenticated socket comes from a page of this service itself.

    The `Origin` must be the service's own origin (same host and port as the request, or
    `PUBLIC_URL`) and its host one of `ALLOWED_HOSTS`: another site's page cannot ride on an
    agent's session cookie.
    """
    if not is_own_origin(origin, host):
        return False
    hostname = urlsplit(origin or "").netloc
    domain, _port = split_domain_port(hostname)
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def agent_socket_open(
    *,
    user: User | AnonymousUser | None,
    conversation_id: UUID | str,
    origin: str | None,
    host: str | None,
    session_key: str | None = None,
) -> AgentSession:
    """Check who opens an agent socket and from where; SocketRefused otherwise."""
    if not agent_origin_allowed(origin, host):
        raise SocketRefused(CloseCode.FORBIDDEN, "origin not allowed")
    try:
        agent = access_agent(user, session_key=session_key)
        conversation = access_conversation_for_agent(user=agent, conversation_id=conversation_id)
    except AccessRefused as exc:
        raise SocketRefused(CloseCode.FORBIDDEN, str(exc) or "forbidden") from exc
    _tenant_check(conversation)
    conversation_event(conversation, action="agent_socket.join", actor=user_actor(agent))
    return AgentSession(agent=agent, conversation_id=conversation.pk, session_key=session_key)


def _tenant_check(conversation: Conversation) -> None:
    """SocketRefused (4403) when the conversation's tenant is disabled: its agent sockets stop."""
    if not conversation.tenant.is_active:
        raise SocketRefused(CloseCode.FORBIDDEN, "tenant disabled")


def agent_catch_up(*, session: AgentSession, last_seq: int) -> CatchUp:
    """The `welcome` frame: the conversation's state and what the page has not shown yet."""
    return conversation_catch_up(session.conversation_id, last_seq=last_seq)


_ACTIONS: dict[str, Callable[..., bool]] = {
    "take_over": conversation_take_over,
    "hand_back": conversation_hand_back,
    "close": conversation_close,
}


def agent_frame(
    *, session: AgentSession, frame: dict[str, Any], sender: str | None = None
) -> list[dict[str, Any]]:
    """Handle one client frame of the agent socket: the frames to send back to that socket.

    Access is checked again for every action: a membership removed while the page is open
    stops the agent at the next action; a tenant disabled since raises SocketRefused (4403).
    """
    kind = frame.get("type")
    if kind not in (*_ACTIONS, "reply"):
        return [frames.error_frame("bad_request", f"Unknown frame type {kind!r}.")]
    try:
        agent = access_agent(session.agent, session_key=session.session_key)
        conversation = access_conversation_for_agent(
            user=agent, conversation_id=session.conversation_id
        )
    except AccessRefused:
        return [frames.error_frame("forbidden", "You can no longer work on this conversation.")]
    _tenant_check(conversation)
    for attempt in (1, 2):
        try:
            if kind == "reply":
                message = agent_message_post(
                    conversation=conversation, agent=agent, text=frame.get("text"), sender=sender
                )
                return [{"type": "ack", "message": frames.message_payload(message)}]
            _ACTIONS[kind](conversation=conversation, agent=agent, sender=sender)
            break
        except AgentActionError as error:
            return [frames.error_frame(error.code, error.detail)]
        except OperationalError as exc:
            # Postgres broke a lock cycle with a concurrent handoff by rolling this action
            # back whole: doing it once more is safe.
            if attempt == 2 or getattr(exc.__cause__, "sqlstate", None) != _DEADLOCK:
                raise
    conversation.refresh_from_db()
    return [frames.conversation_updated_frame(conversation)]
