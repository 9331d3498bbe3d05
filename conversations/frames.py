"""Protocol v1 frames built from models (see docs/widget-protocol.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from conversations.models import Conversation, Message
from supportbot.tenants.selectors import agent_display_name, agent_display_names


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def message_payload(
    message: Message, *, agent_names: Mapping[int, str] | None = None
) -> dict[str, Any]:
    """A message as clients see it. An agent's message names its author by their display name
    in the tenant ("" without one: the client shows its neutral "support team"), looked up
    unless `agent_names` (user id -> name, from `agent_display_names`) already holds them."""
    payload: dict[str, Any] = {
        "id": str(message.id),
        "seq": message.seq,
        "role": message.role,
        "text": message.text,
        "created_at": _iso(message.created_at),
        "client_id": message.client_id,
        "status": message.status,
        "sources": message.sources or [],
    }
    if message.language:
        payload["language"] = message.language
    if message.role == Message.Role.AGENT and message.author_id is not None:
        if agent_names is None:
            agent_names = agent_display_names(
                tenant_id=message.tenant_id, user_ids=[message.author_id]
            )
        payload["author_name"] = agent_names.get(message.author_id, "")
    return payload


def conversation_state(conversation: Conversation) -> dict[str, Any]:
    """What a widget shows about the conversation itself (protocol extension)."""
    agent_id = conversation.assigned_agent_id
    return {
        "status": conversation.status,
        "language": conversation.language,
        "agent": (
            {"name": agent_display_name(tenant_id=conversation.tenant_id, user_id=agent_id)}
            if agent_id is not None
            else None
        ),
    }


def welcome_frame(
    conversation: Conversation, messages: Iterable[Message], **extra: Any
) -> dict[str, Any]:
    """What a (re)connecting socket gets first: the conversation's state and the messages it
    missed. `extra` holds what one socket adds (the widget's `visitor_token`)."""
    messages = list(messages)
    authors = {m.author_id for m in messages if m.role == Message.Role.AGENT and m.author_id}
    names = agent_display_names(tenant_id=conversation.tenant_id, user_ids=authors)
    return {
        "type": "welcome",
        **extra,
        "conversation_id": str(conversation.pk),
        "seq": conversation.last_seq,
        "messages": [message_payload(m, agent_names=names) for m in messages],
        "conversation": conversation_state(conversation),
    }


def conversation_updated_frame(conversation: Conversation) -> dict[str, Any]:
    return {"type": "conversation.updated", "conversation": conversation_state(conversation)}


def message_frame(message: Message) -> dict[str, Any]:
    return {"type": "message", "message": message_payload(message)}


def error_frame(code: str, detail: str, **extra: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "detail": detail}
    frame.update({k: v for k, v in extra.items() if v is not None})
    return frame


def erased_frame(conversation_id: object) -> dict[str, Any]:
    """The conversation's data was erased: the widget clears its storage and starts afresh."""
    return {"type": "erased", "conversation_id": str(conversation_id)}
