"""Support agents in a conversation: taking it over, replying, handing it back, closing it.

Every state change is one service here (keyword arguments, one transaction, frames broadcast
after commit). Who may act is decided before: `conversations.selectors.access_agent` and
`access_conversation_for_agent`. The agent websocket's rules (`conversations.agent_socket`)
and the admin are thin adapters over these functions.

Rules:

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

from typing import TYPE_CHECKING

from django.db import transaction

from conversations.audit_trail import conversation_event, user_actor
from conversations.channel_windows import WINDOW_CLOSED_MESSAGE, free_form_window_open
from conversations.handoff import conversation_cancel_replies, conversation_lock
from conversations.messages import conversation_changed, message_append
from conversations.models import Conversation, Message
from conversations.notices import notice
from supportbot.tenants.selectors import agent_display_name

if TYPE_CHECKING:
    from django.contrib.auth.models import User

AGENT_MESSAGE_MAX_CHARS = 4000


class AgentActionError(Exception):
    """An agent's action that cannot be done now; `code` is the protocol's `error.code`."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _append_notice(conversation: Conversation, key: str, **values: str) -> Message:
    return message_append(
        conversation=conversation,
        role=Message.Role.SYSTEM,
        text=notice(key, conversation.language, **values),
    )


def _sync(target: Conversation, source: Conversation) -> None:
    """Reflect the saved state on the caller's instance."""
    target.status = source.status
    target.assigned_agent = source.assigned_agent
    target.last_seq = source.last_seq


def _closed() -> AgentActionError:
    return AgentActionError("conversation_closed", "This conversation is closed.")


def _agent_name(conversation: Conversation, agent_id: int | None) -> str:
    """The agent's display name in the conversation's tenant; "" without one."""
    if agent_id is None:
        return ""
    return agent_display_name(tenant_id=conversation.tenant_id, user_id=agent_id)


def _assigned_to_other(conversation: Conversation) -> AgentActionError:
    holder = _agent_name(conversation, conversation.assigned_agent_id) or "Another agent"
    return AgentActionError("assigned_to_other", f"{holder} is answering this conversation.")


def _take_over_locked(conversation: Conversation, agent: User, *, sender: str | None) -> bool:
    """Take a locked conversation over; False when it already was this agent's."""
    status = conversation.status
    if status == Conversation.Status.CLOSED:
        raise _closed()
    if status == Conversation.Status.WITH_AGENT and conversation.assigned_agent_id is not None:
        if conversation.assigned_agent_id == agent.pk:
            return False
        raise _assigned_to_other(conversation)
    conversation.status = Conversation.Status.WITH_AGENT
    conversation.assigned_agent = agent
    conversation.save(update_fields=["status", "assigned_agent", "updated_at"])
    conversation_cancel_replies(conversation=conversation)
    name = _agent_name(conversation, agent.pk)
    if name:
        _append_notice(conversation, "agent_joined", name=name)
    else:
        _append_notice(conversation, "agent_joined_unnamed")
    conversation_changed(conversation, sender=sender)
    conversation_event(
        conversation,
        action="agent.take_over",
        actor=user_actor(agent),
        details={"from_status": status},
    )
    return True


def conversation_take_over(
    *, conversation: Conversation, agent: User, sender: str | None = None
) -> bool:
    """The agent answers from now on: the bot's replies stop at once and the visitor is told.

    Returns False when the conversation already was this agent's (nothing changes).
    `sender` (a channel name) is left out of the `conversation.updated` broadcast.
    """
    with transaction.atomic():
        locked = conversation_lock(conversation.pk)
        changed = _take_over_locked(locked, agent, sender=sender)
    _sync(conversation, locked)
    return changed


def _agent_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise AgentActionError("bad_request", "text must be a non-empty string.")
    if len(text) > AGENT_MESSAGE_MAX_CHARS:
        raise AgentActionError(
            "too_long", f"Messages are limited to {AGENT_MESSAGE_MAX_CHARS} characters."
        )
    return text


def agent_message_post(
    *, conversation: Conversation, agent: User, text: object, sender: str | None = None
) -> Message:
    """Post the agent's message to the visitor (role `agent`, authored by `agent`).

    A conversation waiting for an agent is taken over first; one with the bot or with another
    agent, or closed, refuses with AgentActionError, and so does a WhatsApp conversation whose
    customer last wrote 24 hours ago or more (`channel_window_closed`: WhatsApp would take only
    a template message). `sender` gets no copy of the message.
    """
    text = _agent_text(text)
    with transaction.atomic():
        locked = conversation_lock(conversation.pk)
        status = locked.status
        if status == Conversation.Status.BOT:
            raise AgentActionError("not_taken_over", "Take the conversation over before replying.")
        # --- WhatsApp's 24-hour window: a free-form message would be refused by WhatsApp.
        # (Checked before an implicit takeover, which this refusal must not leave behind.)
        if status != Conversation.Status.CLOSED and not free_form_window_open(locked):
            raise AgentActionError("channel_window_closed", WINDOW_CLOSED_MESSAGE)
        if status == Conversation.Status.WAITING_FOR_AGENT or (
            status == Conversation.Status.WITH_AGENT and locked.assigned_agent_id is None
        ):
            # Everyone, the sender too, learns of the implicit takeover.
            _take_over_locked(locked, agent, sender=None)
        elif status == Conversation.Status.CLOSED:
            raise _closed()
        elif locked.assigned_agent_id != agent.pk:
            raise _assigned_to_other(locked)
        message = message_append(
            conversation=locked, role=Message.Role.AGENT, text=text, author=agent, sender=sender
        )
        conversation_event(
            locked,
            action="agent.reply",
            actor=user_actor(agent),
            details={"message_id": str(message.pk), "seq": message.seq, "chars": len(text)},
        )
    _sync(conversation, locked)
    return message


def conversation_hand_back(
    *, conversation: Conversation, agent: User, sender: str | None = None
) -> bool:
    """Give the conversation back to the bot, which answers the visitor's next message.

    Works from `with_agent` and `waiting_for_agent`; False (nothing changes) when it already is
    with the bot.
    """
    with transaction.atomic():
        locked = conversation_lock(conversation.pk)
        if locked.status == Conversation.Status.CLOSED:
            raise _closed()
        changed = locked.status != Conversation.Status.BOT
        if changed:
            locked.status = Conversation.Status.BOT
            locked.assigned_agent = None
            locked.save(update_fields=["status", "assigned_agent", "updated_at"])
            _append_notice(locked, "handed_back")
            conversation_changed(locked, sender=sender)
            conversation_event(locked, action="agent.hand_back", actor=user_actor(agent))
    _sync(conversation, locked)
    return changed


def conversation_close(
    *, conversation: Conversation, agent: User, sender: str | None = None
) -> bool:
    """Close the conversation: no more replies; the visitor's next visit starts a new one.

    False (nothing changes) when it already was closed.
    """
    with transaction.atomic():
        locked = conversation_lock(conversation.pk)
        changed = locked.status != Conversation.Status.CLOSED
        if changed:
            locked.status = Conversation.Status.CLOSED
            locked.save(update_fields=["status", "updated_at"])
            conversation_cancel_replies(conversation=locked)
            _append_notice(locked, "closed")
            conversation_changed(locked, sender=sender)
            conversation_event(locked, action="agent.close", actor=user_actor(agent))
    _sync(conversation, locked)
    return changed
