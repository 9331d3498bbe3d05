"""The conversations' events in the audit log (`supportbot.compliance.audit`).

Each event names the conversation as its target and the conversation's contact as the person
it is about (what a data request finds and erases). Details are ids, counts and settings,
never message text. Called inside the transaction of the change it records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from supportbot.compliance.audit import record_event

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

    from conversations.models import Conversation


def user_actor(user: AbstractBaseUser | AnonymousUser | None) -> str:
    """`user:<id>` for a signed-in user (`system` without one)."""
    user_id = getattr(user, "pk", None)
    return f"user:{user_id}" if user_id is not None else "system"


def visitor_actor(conversation: Conversation) -> str:
    return f"visitor:{conversation.contact_id}"


def conversation_event(
    conversation: Conversation,
    *,
    action: str,
    actor: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record `action` on `conversation` in its tenant's audit chain."""
    record_event(
        tenant_id=conversation.tenant_id,
        action=action,
        actor=actor,
        target=f"conversation:{conversation.pk}",
        contact_id=str(conversation.contact_id) if conversation.contact_id else None,
        details=details,
    )
