"""The widget's side of protocol v1: who may connect, what they catch up on, what they post.

Synchronous and free of websocket details, so the consumer stays a thin adapter and every
rule here is tested directly.
"""

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from conversations import frames
from conversations.handoff import conversation_request_agent
from conversations.limits import visitor_message_retry_after
from conversations.models import Conversation, Message
from conversations.services import (
    AccessDenied,
    VisitorSession,
    message_post_from_visitor,
    visitor_session_open,
)
from conversations.stream_state import resume_frames
from supportbot.tenants.origins import normalize_origin, origin_allowed
from supportbot.tenants.selectors import access_widget_key_by_public_key

CLOSE_BAD_HELLO = 4400
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY = 4429

MAX_CLIENT_ID_CHARS = 64


class WidgetRefused(Exception):
    """The socket must be closed with `close_code`."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code


def is_own_origin(origin: str | None, host: str | None) -> bool:
    """True when the page that opened the socket is served by this service (the widget iframe)."""
    if not origin or not host:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if parts.netloc.lower() == host.lower():
        return True
    if settings.PUBLIC_URL:
        try:
            return normalize_origin(origin) == normalize_origin(settings.PUBLIC_URL)
        except Exception:
            return False
    return False


def widget_hello(*, frame: dict[str, Any], origin: str | None, host: str | None) -> VisitorSession:
    """Check a `hello` and open the visitor's session, or raise WidgetRefused."""
    key = frame.get("key")
    if not isinstance(key, str) or not key:
        raise WidgetRefused(CLOSE_BAD_HELLO, "hello needs the widget key")
    for name in ("visitor_token", "conversation_id", "locale"):
        if frame.get(name) is not None and not isinstance(frame.get(name), str):
            raise WidgetRefused(CLOSE_BAD_HELLO, f"{name} must be a string")
    last_seq = frame.get("last_seq", 0)
    if last_seq is not None and (not isinstance(last_seq, int) or isinstance(last_seq, bool)):
        raise WidgetRefused(CLOSE_BAD_HELLO, "last_seq must be an integer")

    widget_key = access_widget_key_by_public_key(key)
    if widget_key is None:
        raise WidgetRefused(CLOSE_FORBIDDEN, "unknown or disabled key")
    if not (is_own_origin(origin, host) or origin_allowed(origin, widget_key.effective_origins)):
        raise WidgetRefused(CLOSE_FORBIDDEN, "origin not allowed")
    try:
        return visitor_session_open(
            tenant=widget_key.tenant,
            visitor_token=frame.get("visitor_token") or None,
            conversation_id=frame.get("conversation_id") or None,
            locale=frame.get("locale") or "",
        )
    except AccessDenied as exc:
        raise WidgetRefused(CLOSE_FORBIDDEN, str(exc)) from exc


@dataclass
class CatchUp:
    welcome: dict[str, Any]
    # Replies still streaming: frames to send after `welcome`, and the delta index each covers.
    streaming_frames: list[dict[str, Any]] = field(default_factory=list)
    streaming_indexes: dict[str, int] = field(default_factory=dict)


def widget_catch_up(*, session: VisitorSession, last_seq: int) -> CatchUp:
    """The `welcome` frame with what the client missed, plus any reply still streaming.

    Call it after subscribing to the conversation's group, so nothing falls in between.
    """
    conversation = Conversation.objects.select_related("assigned_agent").get(
        pk=session.conversation.pk
    )
    missed = list(
        Message.objects.filter(conversation=conversation, seq__gt=max(last_seq, 0))
        .select_related("author")
        .order_by("seq")
    )
    catch_up = CatchUp(
        welcome={
            "type": "welcome",
            "visitor_token": session.visitor_token,
            "conversation_id": str(conversation.pk),
            "seq": conversation.last_seq,
            "messages": [
                frames.message_payload(m) for m in missed if m.status != Message.Status.STREAMING
            ],
            "conversation": frames.conversation_state(conversation),
        }
    )
    catch_up.streaming_frames, catch_up.streaming_indexes = resume_frames(missed)
    return catch_up


def widget_message(
    *, session: VisitorSession, frame: dict[str, Any], sender: str | None = None
) -> dict[str, Any]:
    """Handle a `message` frame: the `ack`, or an `error` frame; the socket stays open."""
    client_id = frame.get("client_id")
    text = frame.get("text")
    if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID_CHARS:
        return frames.error_frame(
            "bad_request", f"client_id must be a string of 1 to {MAX_CLIENT_ID_CHARS} characters."
        )
    if not isinstance(text, str) or not text.strip():
        return frames.error_frame(
            "bad_request", "text must be a non-empty string.", client_id=client_id
        )
    limit = session.tenant.message_max_chars
    if len(text) > limit:
        return frames.error_frame(
            "too_long", f"Messages are limited to {limit} characters.", client_id=client_id
        )
    existing = Message.objects.filter(
        conversation=session.conversation, client_id=client_id
    ).first()
    if existing is not None:
        return {"type": "ack", "client_id": client_id, "message": frames.message_payload(existing)}
    retry_after = visitor_message_retry_after(str(session.contact.pk))
    if retry_after is not None:
        return frames.error_frame(
            "rate_limited",
            f"You're sending messages too quickly. Please wait {retry_after} seconds.",
            client_id=client_id,
            retry_after=retry_after,
        )
    posted = message_post_from_visitor(
        conversation=session.conversation, client_id=client_id, text=text, sender=sender
    )
    return {
        "type": "ack",
        "client_id": client_id,
        "message": frames.message_payload(posted.message),
    }


def widget_handoff_request(*, session: VisitorSession) -> None:
    """The visitor pressed "Talk to a person" (`handoff.request`)."""
    conversation_request_agent(
        conversation_id=session.conversation.pk, reason="The visitor asked for a person."
    )
