"""Support agents in a conversation: who may open it, taking it over, replying, handing it back.

Every state change is one service here (keyword arguments, one transaction, frames broadcast
after commit). The agent websocket (`conversations.agent_consumer`) and the admin are thin
adapters over these functions.

Rules:

- An agent is an active staff user whose tenant memberships cover the conversation's tenant
  (superusers: every tenant). Anything else reads as "not found" or "forbidden".
- `take_over` works from `bot` and `waiting_for_agent`; it cancels the assistant's queued and
  streaming replies at once. A conversation already held by another agent is not taken from
  them (`assigned_to_other`): that agent, or any agent of the tenant, hands it back or closes it
  first. Taking over one's own conversation again is a no-op.
- `reply` needs the conversation to be with this agent. A conversation still waiting for an
  agent is taken over implicitly by the first reply (the visitor gets the "joined" notice
  before the reply); one still with the bot must be taken over explicitly first.
- `hand_back` (from `with_agent` or `waiting_for_agent`) returns the conversation to the bot,
  which answers the visitor's next message. `close` ends it from any open status.
- Every change broadcasts a `conversation.updated` frame (protocol extension: widgets ignore
  it) so the widget and every agent page show the new status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import OperationalError, transaction
from django.http import Http404
from django.http.request import split_domain_port, validate_host

from conversations import frames
from conversations.handoff import conversation_cancel_replies
from conversations.models import Conversation, Message, ReplyJob
from conversations.notices import notice
from conversations.messages import conversation_changed, message_append
from conversations.stream_state import resume_frames
from conversations.widget import is_own_origin
from supportbot.tenants.selectors import tenant_ids_for_user

AGENT_MESSAGE_MAX_CHARS = 4000

CLOSE_FORBIDDEN = 4403

_DEADLOCK = "40P01"  # Postgres: deadlock_detected


class AgentActionError(Exception):
    """An agent's action that cannot be done now; `code` is the protocol's `error.code`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class AgentRefused(Exception):
    """The agent socket must be closed with `close_code`."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code


# --- access -----------------------------------------------------------------------------------


def _is_agent(user: Any) -> bool:
    return bool(
        getattr(user, "is_authenticated", False)
        and getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
    )


def access_conversation_for_agent(*, user: Any, conversation_id: UUID | str) -> Conversation:
    """The conversation, when `user` may work on it.

    PermissionDenied for a user who is not an active staff member; Http404 for an unknown id or
    a conversation of a tenant the user has no membership of (its existence is not revealed).
    """
    if not _is_agent(user):
        raise PermissionDenied("Only staff members can work on conversations.")
    tenant_ids = tenant_ids_for_user(user)
    try:
        conversation_uuid = (
            conversation_id if isinstance(conversation_id, UUID) else UUID(str(conversation_id))
        )
    except ValueError as exc:
        raise Http404("No such conversation.") from exc
    conversations = Conversation.objects.select_related("tenant", "assigned_agent")
    if tenant_ids is not None:
        conversations = conversations.filter(tenant_id__in=tenant_ids)
    conversation = conversations.filter(pk=conversation_uuid).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


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


def agent_socket_path(conversation_id: UUID | str) -> str:
    """Where the agent websocket of a conversation is (see conversations.routing)."""
    return f"/ws/agent/conversations/{conversation_id}/"


# --- frames -----------------------------------------------------------------------------------


def _append_notice(conversation: Conversation, key: str, **values: str) -> Message:
    return message_append(
        conversation=conversation,
        role=Message.Role.SYSTEM,
        text=notice(key, conversation.language, **values),
    )


def _lock(conversation: Conversation) -> Conversation:
    """Lock the conversation's unfinished reply jobs, then the conversation itself.

    Reply workers lock their job before they touch the conversation row (a new `seq`); taking
    the locks in the same order means a takeover never deadlocks with a reply in progress.
    """
    list(
        ReplyJob.objects.select_for_update()
        .filter(
            conversation_id=conversation.pk,
            state__in=[ReplyJob.State.QUEUED, ReplyJob.State.RUNNING],
        )
        .values_list("pk", flat=True)
    )
    return (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("assigned_agent")
        .get(pk=conversation.pk)
    )


def _sync(target: Conversation, source: Conversation) -> None:
    """Reflect the saved state on the caller's instance."""
    target.status = source.status
    target.assigned_agent = source.assigned_agent
    target.last_seq = source.last_seq


def _holder_name(conversation: Conversation) -> str:
    agent = conversation.assigned_agent
    return frames.display_name(agent) if agent is not None else "another agent"


# --- services ---------------------------------------------------------------------------------


def _take_over_locked(conversation: Conversation, agent: Any, *, sender: str | None) -> bool:
    """Take a locked conversation over; False when it already was this agent's."""
    status = conversation.status
    if status == Conversation.Status.CLOSED:
        raise AgentActionError("conversation_closed", "This conversation is closed.")
    if status == Conversation.Status.WITH_AGENT and conversation.assigned_agent_id is not None:
        if conversation.assigned_agent_id == agent.pk:
            return False
        raise AgentActionError(
            "assigned_to_other",
            f"{_holder_name(conversation)} is answering this conversation.",
        )
    conversation.status = Conversation.Status.WITH_AGENT
    conversation.assigned_agent = agent
    conversation.save(update_fields=["status", "assigned_agent", "updated_at"])
    conversation_cancel_replies(conversation=conversation)
    _append_notice(conversation, "agent_joined", name=frames.display_name(agent))
    conversation_changed(conversation, sender=sender)
    return True


def conversation_take_over(
    *, conversation: Conversation, agent: Any, sender: str | None = None
) -> bool:
    """The agent answers from now on: the bot's replies stop at once and the visitor is told.

    Returns False when the conversation already was this agent's (nothing changes).
    `sender` (a channel name) is left out of the `conversation.updated` broadcast.
    """
    with transaction.atomic():
        locked = _lock(conversation)
        changed = _take_over_locked(locked, agent, sender=sender)
    _sync(conversation, locked)
    return changed


def agent_message_post(
    *, conversation: Conversation, agent: Any, text: object, sender: str | None = None
) -> Message:
    """Post the agent's message to the visitor (role `agent`, authored by `agent`).

    A conversation waiting for an agent is taken over first; one with the bot or with another
    agent, or closed, refuses with AgentActionError. `sender` gets no copy of the message.
    """
    if not isinstance(text, str) or not text.strip():
        raise AgentActionError("bad_request", "text must be a non-empty string.")
    if len(text) > AGENT_MESSAGE_MAX_CHARS:
        raise AgentActionError(
            "too_long", f"Messages are limited to {AGENT_MESSAGE_MAX_CHARS} characters."
        )
    with transaction.atomic():
        locked = _lock(conversation)
        status = locked.status
        if status == Conversation.Status.BOT:
            raise AgentActionError("not_taken_over", "Take the conversation over before replying.")
        if status == Conversation.Status.WAITING_FOR_AGENT or (
            status == Conversation.Status.WITH_AGENT and locked.assigned_agent_id is None
        ):
            # Everyone, the sender too, learns of the implicit takeover.
            _take_over_locked(locked, agent, sender=None)
        elif status == Conversation.Status.CLOSED:
            raise AgentActionError("conversation_closed", "This conversation is closed.")
        elif locked.assigned_agent_id != agent.pk:
            raise AgentActionError(
                "assigned_to_other", f"{_holder_name(locked)} is answering this conversation."
            )
        message = message_append(
            conversation=locked, role=Message.Role.AGENT, text=text, author=agent, sender=sender
        )
    _sync(conversation, locked)
    return message


def conversation_hand_back(
    *, conversation: Conversation, agent: Any, sender: str | None = None
) -> bool:
    """Give the conversation back to the bot, which answers the visitor's next message.

    Works from `with_agent` and `waiting_for_agent`; False (nothing changes) when it already is
    with the bot.
    """
    with transaction.atomic():
        locked = _lock(conversation)
        if locked.status == Conversation.Status.CLOSED:
            raise AgentActionError("conversation_closed", "This conversation is closed.")
        if locked.status == Conversation.Status.BOT:
            changed = False
        else:
            locked.status = Conversation.Status.BOT
            locked.assigned_agent = None
            locked.save(update_fields=["status", "assigned_agent", "updated_at"])
            _append_notice(locked, "handed_back")
            conversation_changed(locked, sender=sender)
            changed = True
    _sync(conversation, locked)
    return changed


def conversation_close(
    *, conversation: Conversation, agent: Any, sender: str | None = None
) -> bool:
    """Close the conversation: no more replies; the visitor's next visit starts a new one.

    False (nothing changes) when it already was closed.
    """
    with transaction.atomic():
        locked = _lock(conversation)
        if locked.status == Conversation.Status.CLOSED:
            changed = False
        else:
            locked.status = Conversation.Status.CLOSED
            locked.save(update_fields=["status", "updated_at"])
            conversation_cancel_replies(conversation=locked)
            _append_notice(locked, "closed")
            conversation_changed(locked, sender=sender)
            changed = True
    _sync(conversation, locked)
    return changed


# --- the agent socket's rules ------------------------------------------------------------------


@dataclass
class AgentSession:
    user: Any
    conversation_id: UUID


@dataclass
class AgentCatchUp:
    welcome: dict[str, Any]
    # Replies still streaming: frames to send after `welcome`, and the delta index each covers.
    streaming_frames: list[dict[str, Any]] = field(default_factory=list)
    streaming_indexes: dict[str, int] = field(default_factory=dict)


def agent_socket_open(
    *, user: Any, conversation_id: object, origin: str | None, host: str | None
) -> AgentSession:
    """Check who opens an agent socket and from where; AgentRefused otherwise."""
    if not agent_origin_allowed(origin, host):
        raise AgentRefused(CLOSE_FORBIDDEN, "origin not allowed")
    try:
        conversation = access_conversation_for_agent(
            user=user, conversation_id=str(conversation_id)
        )
    except (PermissionDenied, Http404) as exc:
        raise AgentRefused(CLOSE_FORBIDDEN, str(exc) or "forbidden") from exc
    return AgentSession(user=user, conversation_id=conversation.pk)


def agent_catch_up(*, session: AgentSession, last_seq: int) -> AgentCatchUp:
    """The `welcome` frame: the conversation's state and what the page has not shown yet.

    Call it after subscribing to the conversation's group, so nothing falls in between.
    """
    conversation = Conversation.objects.select_related("assigned_agent").get(
        pk=session.conversation_id
    )
    missed = list(
        Message.objects.filter(conversation=conversation, seq__gt=max(last_seq, 0))
        .select_related("author")
        .order_by("seq")
    )
    catch_up = AgentCatchUp(
        welcome={
            "type": "welcome",
            "conversation_id": str(conversation.pk),
            "conversation": frames.conversation_state(conversation),
            "seq": conversation.last_seq,
            "messages": [
                frames.message_payload(m) for m in missed if m.status != Message.Status.STREAMING
            ],
        }
    )
    catch_up.streaming_frames, catch_up.streaming_indexes = resume_frames(missed)
    return catch_up


def _fresh_agent(user: Any) -> Any:
    """The user as the database has them now (staff or active flags may have changed)."""
    user_id = getattr(user, "pk", None)
    if user_id is None:
        return None
    return get_user_model().objects.filter(pk=user_id).first()


def agent_frame(
    *, session: AgentSession, frame: dict[str, Any], sender: str | None = None
) -> list[dict[str, Any]]:
    """Handle one client frame of the agent socket: the frames to send back to that socket.

    Access is checked again for every action: a membership removed while the page is open
    stops the agent at the next action.
    """
    kind = frame.get("type")
    handlers = {
        "take_over": conversation_take_over,
        "hand_back": conversation_hand_back,
        "close": conversation_close,
    }
    if kind not in (*handlers, "reply"):
        return [frames.error_frame("bad_request", f"Unknown frame type {kind!r}.")]
    agent = _fresh_agent(session.user)
    try:
        conversation = access_conversation_for_agent(
            user=agent, conversation_id=session.conversation_id
        )
    except (PermissionDenied, Http404):
        return [frames.error_frame("forbidden", "You can no longer work on this conversation.")]
    for attempt in (1, 2):
        try:
            if kind == "reply":
                message = agent_message_post(
                    conversation=conversation, agent=agent, text=frame.get("text"), sender=sender
                )
                return [{"type": "ack", "message": frames.message_payload(message)}]
            handlers[kind](conversation=conversation, agent=agent, sender=sender)
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
