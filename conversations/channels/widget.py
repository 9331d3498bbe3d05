"""The widget's side of protocol v1: who may connect, what they catch up on, what they post.

Synchronous and free of websocket details, so the consumer stays a thin adapter and every
rule here is tested directly.
"""

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from conversations import frames
from conversations.assistant_modes import ROUTES, assistant_intro, route_valid
from conversations.catch_up import CatchUp, conversation_catch_up
from conversations.consent import DECISIONS, ConsentStale, visitor_consent_decide
from conversations.consent_records import ConsentStatus, consent_status_for, welcome_consent
from conversations.limits import (
    conversation_start_retry_after,
    visitor_message_retry_after,
    widget_key_message_retry_after,
)
from conversations.models import Conversation
from conversations.origins import is_own_origin
from conversations.refusals import CloseCode, SocketRefused
from conversations.selectors import VisitorErased, VisitorRefused, message_by_client_id
from conversations.services import (
    VisitorSession,
    message_post_from_visitor,
    visitor_request_agent,
    visitor_session_open,
)
from conversations.visitors import visitor_token_for
from supportbot.tenants.identity import IdentityRefused, VerifiedIdentity, verify_visitor_identity
from supportbot.tenants.models import Tenant
from supportbot.tenants.origins import origin_allowed
from supportbot.tenants.selectors import access_widget_key_by_public_key, widget_key_is_active
from supportbot.trace import trace

MAX_CLIENT_ID_CHARS = 64


@dataclass(frozen=True)
class WidgetSession:
    """One widget socket after its `hello`: the visitor, the key it came through and the client
    (an address, or an IPv6 /64) its limits count."""

    visitor: VisitorSession
    widget_key_id: int
    client: str
    consent: ConsentStatus
    # The conversation of an erased visitor the hello named: told (`erased`) before the welcome.
    erased_conversation_id: str | None = None

    @property
    def conversation(self) -> Conversation:
        return self.visitor.conversation


def widget_hello(
    *, frame: dict[str, Any], origin: str | None, host: str | None, client: str = "unknown"
) -> WidgetSession:
    """Check a `hello` and open the visitor's session (storing nothing), or raise
    SocketRefused."""
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
    locale = frame.get("locale") or ""
    erased: str | None = None
    try:
        try:
            visitor = visitor_session_open(
                tenant=widget_key.tenant,
                visitor_token=frame.get("visitor_token") or None,
                conversation_id=frame.get("conversation_id") or None,
                locale=locale,
                identity=identity,
            )
        except VisitorErased as gone:
            # An erased visitor's widget is told, then starts afresh under new ids.
            erased = gone.conversation_id
            visitor = visitor_session_open(
                tenant=widget_key.tenant,
                visitor_token=None,
                conversation_id=None,
                locale=locale,
                identity=identity,
            )
    except VisitorRefused as exc:
        raise SocketRefused(CloseCode.FORBIDDEN, str(exc)) from exc
    _key_checks[widget_key.pk] = (time.monotonic(), True)
    consent = consent_status_for(
        tenant=visitor.tenant,
        contact=visitor.contact,
        language=visitor.conversation.language or locale,
    )
    return WidgetSession(
        visitor=visitor,
        widget_key_id=widget_key.pk,
        client=client,
        consent=consent,
        erased_conversation_id=erased,
    )


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


# Per process: widget key id -> (when it was read, active). A socket's frames re-read it only
# when the answer is older than WIDGET_KEY_RECHECK_SECONDS.
_key_checks: dict[int, tuple[float, bool]] = {}


def widget_key_still_active(widget_key_id: int, *, now: float | None = None) -> bool:
    """True while the key and its tenant are active, as read at most
    WIDGET_KEY_RECHECK_SECONDS ago (in this process)."""
    now = time.monotonic() if now is None else now
    checked = _key_checks.get(widget_key_id)
    if checked is not None and now - checked[0] < settings.WIDGET_KEY_RECHECK_SECONDS:
        return checked[1]
    active = widget_key_is_active(widget_key_id)
    _key_checks[widget_key_id] = (now, active)
    return active


def widget_key_check(session: WidgetSession) -> None:
    """SocketRefused (4403) when the socket's key or tenant was disabled since its `hello`."""
    if not widget_key_still_active(session.widget_key_id):
        raise SocketRefused(CloseCode.FORBIDDEN, "widget key or tenant disabled")


def widget_catch_up(*, session: WidgetSession, last_seq: int) -> CatchUp:
    """The `welcome` frame with what the client missed, plus any reply still streaming. A
    conversation not stored yet has nothing to catch up on: the welcome of an empty one."""
    visitor = session.visitor
    assistant = assistant_intro(
        tenant=visitor.tenant, conversation=visitor.conversation, locale=visitor.contact.locale
    )
    consent = welcome_consent(session.consent)
    try:
        return conversation_catch_up(
            visitor.conversation.pk,
            last_seq=last_seq,
            visitor_token=visitor.visitor_token,
            assistant=assistant,
            consent=consent,
        )
    except Conversation.DoesNotExist:
        token = visitor.visitor_token
        welcome = frames.welcome_frame(
            visitor.conversation, [], visitor_token=token, assistant=assistant, consent=consent
        )
        return CatchUp(welcome=welcome, streaming_frames=[], streaming_indexes={})


def _rate_limited(
    retry_after: int, client_id: str | None = None, *, what: str = "messages"
) -> dict[str, Any]:
    detail = {
        "messages": "You're sending messages too quickly.",
        "conversations": "Too many new conversations from your network.",
    }[what]
    return frames.error_frame(
        "rate_limited",
        f"{detail} Please wait {retry_after} seconds.",
        client_id=client_id,
        retry_after=retry_after,
    )


def _message_problem(session: WidgetSession, frame: dict[str, Any]) -> dict[str, Any] | None:
    """The `error` frame for a malformed or too long message, or None."""
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
    route = frame.get("route")
    if not route_valid(route):
        return frames.error_frame(
            "bad_request", f"route must be one of {', '.join(ROUTES)}.", client_id=client_id
        )
    limit = session.visitor.tenant.message_max_chars
    if len(text) > limit:
        return frames.error_frame(
            "too_long", f"Messages are limited to {limit} characters.", client_id=client_id
        )
    return None


def _conversation_start_retry_after(session: WidgetSession) -> int | None:
    """For a conversation this message or action would store: the client's hourly cap."""
    if session.visitor.stored:
        return None
    return conversation_start_retry_after(session.client, str(session.conversation.pk))


def widget_message(
    *, session: WidgetSession, frame: dict[str, Any], sender: str | None = None
) -> dict[str, Any]:
    """Handle a `message` frame: the `ack`, or an `error` frame; the socket stays open.

    SocketRefused (4403) when the key or tenant was disabled since the `hello`. Over a limit
    (the visitor's, the key's, the client's new conversations) nothing is stored.
    """
    trace("web.sync_start", session.conversation.pk)
    widget_key_check(session)
    problem = _message_problem(session, frame)
    if problem is not None:
        return problem
    client_id, text = frame["client_id"], frame["text"]
    if session.consent.blocks_storage:
        return _consent_required(client_id)
    # A conversation not stored yet has no messages to repeat.
    existing = (
        message_by_client_id(conversation=session.conversation, client_id=client_id)
        if session.visitor.stored
        else None
    )
    if existing is not None:
        return {"type": "ack", "client_id": client_id, "message": frames.message_payload(existing)}
    retry_after = visitor_message_retry_after(
        str(session.visitor.contact.pk)
    ) or widget_key_message_retry_after(session.widget_key_id)
    if retry_after is not None:
        return _rate_limited(retry_after, client_id)
    retry_after = _conversation_start_retry_after(session)
    if retry_after is not None:
        return _rate_limited(retry_after, client_id, what="conversations")
    try:
        posted = message_post_from_visitor(
            conversation=session.conversation,
            client_id=client_id,
            text=text,
            sender=sender,
            route=frame.get("route"),
            consent=session.consent,
        )
    except VisitorRefused as exc:
        raise SocketRefused(CloseCode.FORBIDDEN, str(exc)) from exc
    return {
        "type": "ack",
        "client_id": client_id,
        "message": frames.message_payload(posted.message),
    }


def widget_handoff_request(*, session: WidgetSession) -> dict[str, Any] | None:
    """The visitor pressed "Talk to a person" (`handoff.request`): nothing to answer, or a
    `rate_limited` error when it would start one conversation too many for the client."""
    widget_key_check(session)
    if session.consent.blocks_storage:
        return _consent_required()
    retry_after = _conversation_start_retry_after(session)
    if retry_after is not None:
        return _rate_limited(retry_after, what="conversations")
    try:
        visitor_request_agent(conversation=session.conversation)
    except VisitorRefused as exc:
        raise SocketRefused(CloseCode.FORBIDDEN, str(exc)) from exc
    return None


def _consent_required(client_id: str | None = None) -> dict[str, Any]:
    return frames.error_frame(
        "consent_required",
        "Accept the consent text before writing: nothing is stored until you do.",
        client_id=client_id,
    )


def widget_consent(*, session: WidgetSession, frame: dict[str, Any]) -> dict[str, Any]:
    """Handle a `consent` frame: `consent.recorded` (accept, decline), `erased` (withdraw: the
    visitor's data is gone and the socket's session with it), or an `error` frame."""
    widget_key_check(session)
    decision = frame.get("decision")
    if decision not in DECISIONS:
        return frames.error_frame("bad_request", f"decision must be one of {', '.join(DECISIONS)}.")
    visitor = session.visitor
    try:
        visitor_consent_decide(
            session=visitor, status=session.consent, decision=decision, version=frame.get("version")
        )
    except ConsentStale as exc:
        return frames.error_frame("consent_stale", str(exc), version=session.consent.notice.version)
    except VisitorRefused as exc:
        raise SocketRefused(CloseCode.FORBIDDEN, str(exc)) from exc
    if decision == "withdraw":
        return frames.erased_frame(visitor.conversation.pk)
    answer: dict[str, Any] = {
        "type": "consent.recorded",
        "decision": decision,
        "version": session.consent.notice.version,
    }
    if decision == "accept":
        # The token a reload resumes with: it names the contact now stored with its consent.
        answer["visitor_token"] = visitor_token_for(
            tenant_id=visitor.tenant.pk,
            contact_id=visitor.contact.pk,
            conversation_id=visitor.conversation.pk,
            external_id=visitor.contact.external_id,
        )
        answer["conversation_id"] = str(visitor.conversation.pk)
    return answer
