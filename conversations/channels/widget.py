"""The widget's side of protocol v1: who may connect, what they catch up on, what they post.

Synchronous and free of websocket details, so the consumer stays a thin adapter and every
rule here is tested directly.
"""

from typing import Any

from conversations import frames
from conversations.catch_up import CatchUp, conversation_catch_up
from conversations.handoff import conversation_request_agent
from conversations.limits import visitor_message_retry_after
from conversations.origins import is_own_origin
from conversations.refusals import CloseCode, SocketRefused
from conversations.selectors import VisitorRefused, message_by_client_id
from conversations.services import VisitorSession, message_post_from_visitor, visitor_session_open
from supportbot.tenants.identity import IdentityRefused, VerifiedIdentity, verify_visitor_identity
from supportbot.tenants.models import Tenant
from supportbot.tenants.origins import origin_allowed
from supportbot.tenants.selectors import access_widget_key_by_public_key
from supportbot.trace import trace

MAX_CLIENT_ID_CHARS = 64


def widget_hello(*, frame: dict[str, Any], origin: str | None, host: str | None) -> VisitorSession:
    """Check a `hello` and open the visitor's session, or raise SocketRefused."""
    key = frame.get("key")
    if not isinstance(key, str) or not key:
        raise SocketRefused(CloseCode.BAD_HELLO, "hello needs the widget key")
    for name in ("visitor_token", "conversation_id", "locale", "identity"):
        if frame.get(name) is not None and not isinstance(frame.get(name), str):
            raise SocketRefused(CloseCode.BAD_HELLO, f"{name} must be a string")
    last_seq = frame.get("last_seq", 0)
    if last_seq is not None and (not isinstance(last_seq, int) or isinstance(last_seq, bool)):
        raise SocketRefused(CloseCode.BAD_HELLO, "last_seq must be an integer")

    widget_key = access_widget_key_by_public_key(key)
    if widget_key is None:
        raise SocketRefused(CloseCode.FORBIDDEN, "unknown or disabled key")
    if not (is_own_origin(origin, host) or origin_allowed(origin, widget_key.effective_origins)):
        raise SocketRefused(CloseCode.FORBIDDEN, "origin not allowed")
    identity = _hello_identity(widget_key.tenant, frame.get("identity"))
    try:
        return visitor_session_open(
            tenant=widget_key.tenant,
            visitor_token=frame.get("visitor_token") or None,
            conversation_id=frame.get("conversation_id") or None,
            locale=frame.get("locale") or "",
            identity=identity,
        )
    except VisitorRefused as exc:
        raise SocketRefused(CloseCode.FORBIDDEN, str(exc)) from exc


def _hello_identity(tenant: Tenant, token: str | None) -> VerifiedIdentity | None:
    """The verified identity a `hello` carries; one that does not verify is refused (4403),
    never taken for an anonymous visit, and so is a hello without one where the tenant
    requires it."""
    if token is None:
        if tenant.identity_required:
            raise SocketRefused(CloseCode.FORBIDDEN, "identity required")
        return None
    try:
        return verify_visitor_identity(tenant, token)
    except IdentityRefused as exc:
        raise SocketRefused(CloseCode.FORBIDDEN, str(exc)) from exc


def widget_catch_up(*, session: VisitorSession, last_seq: int) -> CatchUp:
    """The `welcome` frame with what the client missed, plus any reply still streaming."""
    return conversation_catch_up(
        session.conversation.pk, last_seq=last_seq, visitor_token=session.visitor_token
    )


def widget_message(
    *, session: VisitorSession, frame: dict[str, Any], sender: str | None = None
) -> dict[str, Any]:
    """Handle a `message` frame: the `ack`, or an `error` frame; the socket stays open."""
    trace("web.sync_start", session.conversation.pk)
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
    existing = message_by_client_id(conversation=session.conversation, client_id=client_id)
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
