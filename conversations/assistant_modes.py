"""Who answers a new conversation, by the tenant's conversation mode.

- **Assistant first** (the default): the assistant answers every message at once.
- **Person first**: the visitor's first message waits for a person (`waiting_for_agent`, no
  reply) and the visitor is told honestly how long; when no agent has taken the conversation
  within the tenant's wait, `person_first_waits_release` (a beat task) hands it to the assistant,
  which answers the waiting messages. Outside business hours the assistant answers at once.
- **Visitor decides**: the widget offers "Ask the assistant" / "Talk to a person"; the first
  message's `route` says which, and "person" is handled like person first. A message without a
  route (a client that does not know the choice) goes to the assistant.

Also what a widget's `welcome` says about the assistant (`assistant_intro`): the mode and the
AI disclosure in the visitor's language.
"""

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from conversations import jobs
from conversations.handoff import conversation_lock
from conversations.messages import conversation_changed, message_append
from conversations.models import Conversation, Message, ReplyJob
from conversations.notices import notice
from supportbot.tenants.business_hours import within_business_hours
from supportbot.tenants.disclosure import ai_disclosure_for, ai_disclosures
from supportbot.tenants.models import Tenant

ROUTES = ("assistant", "person")
# `handoff_reason` of a person-first wait: a later handoff writes its own reason, so a wait
# the conversation has left (an agent took it, handed it back, the visitor asked again) is
# never released by mistake.
PERSON_FIRST_REASON = "Person first: waiting for a person before the assistant answers."
RELEASE_BATCH = 200

Mode = Tenant.ConversationMode


def _person_first(tenant: Tenant, route: str | None) -> bool:
    if tenant.conversation_mode == Mode.PERSON_FIRST:
        return True
    return tenant.conversation_mode == Mode.VISITOR_DECIDES and route == "person"


def _team_available(tenant: Tenant, now: datetime) -> bool:
    return within_business_hours(tenant.business_hours, tenant.business_hours_timezone, now)


def _is_first_visitor_message(conversation: Conversation, message: Message) -> bool:
    return not Message.objects.filter(
        conversation=conversation, role=Message.Role.USER, seq__lt=message.seq
    ).exists()


def _visitor_language(conversation: Conversation) -> str:
    """The conversation's language, else the visitor's locale, else the tenant's fallback."""
    locale = conversation.contact.locale if conversation.contact_id else ""
    return conversation.language or locale[:2].lower() or conversation.tenant.fallback_language


def _append_notice(conversation: Conversation, key: str, language: str, **values: str) -> None:
    message_append(
        conversation=conversation, role=Message.Role.SYSTEM, text=notice(key, language, **values)
    )


def person_first_wait_begin(
    *, conversation: Conversation, trigger: Message, route: str | None, now: datetime | None = None
) -> bool:
    """Decide who answers a visitor's message to a conversation with the bot (inside the
    caller's transaction, which holds the conversation's row since it appended `trigger`).

    True when the message waits for a person: the conversation is `waiting_for_agent` until an
    agent takes it or the tenant's wait ends, and the visitor is told. False when the assistant
    answers now (the caller queues the reply): assistant first, a later message, a visitor who
    chose the assistant, or no one from the team available now (the visitor is told).
    """
    tenant = conversation.tenant
    if not _person_first(tenant, route) or not _is_first_visitor_message(conversation, trigger):
        return False
    now = now or timezone.now()
    language = _visitor_language(conversation)
    if not _team_available(tenant, now):
        _append_notice(conversation, "person_first_closed", language)
        return False
    minutes = tenant.person_first_wait_minutes
    conversation.status = Conversation.Status.WAITING_FOR_AGENT
    conversation.handoff_reason = PERSON_FIRST_REASON
    conversation.assistant_fallback_at = now + timedelta(minutes=minutes)
    conversation.save(
        update_fields=["status", "handoff_reason", "assistant_fallback_at", "updated_at"]
    )
    conversation_changed(conversation)
    key = "person_first_wait_one" if minutes == 1 else "person_first_wait"
    _append_notice(conversation, key, language, minutes=str(minutes))
    return True


def _newest_visitor_message(conversation: Conversation) -> Message | None:
    return (
        Message.objects.filter(conversation=conversation, role=Message.Role.USER)
        .order_by("-seq")
        .first()
    )


def person_first_release(*, conversation_id: UUID | str, now: datetime | None = None) -> bool:
    """Hand a person-first conversation whose wait is over to the assistant, which answers.

    False (and the wait forgotten) when it no longer waits for a person as person first: an
    agent took it, it was handed back or closed, or it waits again for another reason.
    """
    now = now or timezone.now()
    with transaction.atomic():
        conversation = conversation_lock(conversation_id)
        if conversation.assistant_fallback_at is None or conversation.assistant_fallback_at > now:
            return False
        waiting = (
            conversation.status == Conversation.Status.WAITING_FOR_AGENT
            and conversation.assigned_agent_id is None
            and conversation.handoff_reason == PERSON_FIRST_REASON
        )
        conversation.assistant_fallback_at = None
        if not waiting:
            conversation.save(update_fields=["assistant_fallback_at"])
            return False
        conversation.status = Conversation.Status.BOT
        conversation.handoff_reason = ""
        conversation.save(
            update_fields=["status", "handoff_reason", "assistant_fallback_at", "updated_at"]
        )
        conversation_changed(conversation)
        _append_notice(conversation, "person_first_released", _visitor_language(conversation))
        trigger = _newest_visitor_message(conversation)
        if trigger is not None and not ReplyJob.objects.filter(trigger=trigger).exists():
            jobs.reply_job_queue(conversation=conversation, trigger=trigger)
    return True


def person_first_waits_release(*, now: datetime | None = None) -> int:
    """Release every person-first wait that is over (the beat task); how many were released."""
    now = now or timezone.now()
    due = Conversation.objects.filter(assistant_fallback_at__lte=now).order_by(
        "assistant_fallback_at"
    )
    released = 0
    for conversation_id in due.values_list("pk", flat=True)[:RELEASE_BATCH]:
        released += person_first_release(conversation_id=conversation_id, now=now)
    return released


def route_valid(route: object) -> bool:
    """Whether a message frame's optional `route` is one the protocol knows."""
    return route is None or route in ROUTES


def assistant_intro(
    *, tenant: Tenant, conversation: Conversation, locale: str = "", now: datetime | None = None
) -> dict[str, Any]:
    """`welcome.assistant` for a visitor: the mode, the AI disclosure in the visitor's language
    (and in every language, for a widget that switches), the person-first wait, and whether a
    person from the team is available now (business hours)."""
    language = conversation.language or (locale or "")[:35]
    return {
        "mode": tenant.conversation_mode,
        "disclosure": ai_disclosure_for(tenant, language),
        "disclosures": ai_disclosures(tenant),
        "wait_minutes": tenant.person_first_wait_minutes,
        "team_available": _team_available(tenant, now or timezone.now()),
    }
