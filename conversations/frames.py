"""Protocol v1 frames built from models (see docs/widget-protocol.md)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conversations.models import Conversation, Message

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def message_payload(message: Message) -> dict[str, Any]:
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
    is_agents = message.role == Message.Role.AGENT and message.author_id is not None
    author = message.author if is_agents else None
    if author is not None:
        payload["author_name"] = display_name(author)
    return payload


def display_name(user: AbstractUser) -> str:
    """How visitors see an agent: their first name, else their username."""
    return (getattr(user, "first_name", "") or "").strip() or user.get_username()


def conversation_state(conversation: Conversation) -> dict[str, Any]:
    """What a widget shows about the conversation itself (protocol extension)."""
    agent = conversation.assigned_agent if conversation.assigned_agent_id else None
    return {
        "status": conversation.status,
        "language": conversation.language,
        "agent": {"name": display_name(agent)} if agent is not None else None,
    }


def welcome_frame(
    conversation: Conversation, messages: Iterable[Message], **extra: Any
) -> dict[str, Any]:
    """What a (re)connecting socket gets first: the conversation's state and the messages it
    missed. `extra` holds what one socket adds (the widget's `visitor_token`)."""
    return {
        "type": "welcome",
        **extra,
        "conversation_id": str(conversation.pk),
        "seq": conversation.last_seq,
        "messages": [message_payload(m) for m in messages],
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
