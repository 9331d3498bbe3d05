"""Moderation outcomes of a conversation: marked for review by a person, and audited.

The audit events name the conversation, the stage ("input": the visitor's message, "output":
the reply) and the moderation categories; never the text.
"""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from conversations.models import Conversation
from supportbot.compliance.audit import record_event

INPUT_FLAGGED = "input_flagged"
OUTPUT_FLAGGED = "output_flagged"
MODERATION_UNAVAILABLE = "moderation_unavailable"


def conversation_mark_for_review(
    *,
    conversation_id: UUID,
    reason: str,
    categories: Sequence[str] = (),
    details: dict[str, Any] | None = None,
) -> None:
    """Mark the conversation for review (`reason`) and record the audit event
    "moderation.<reason>". Call it inside the transaction that stores the outcome."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        conversation.review_reason = reason[:40]
        conversation.review_flagged_at = timezone.now()
        conversation.save(update_fields=["review_reason", "review_flagged_at", "updated_at"])
        record_event(
            tenant_id=conversation.tenant_id,
            action=f"moderation.{reason}",
            target=f"conversation:{conversation.pk}",
            contact_id=str(conversation.contact_id),
            details={"categories": list(categories), **(details or {})},
        )


def moderation_event_record(
    *, conversation: Conversation, action: str, details: dict[str, Any]
) -> None:
    """An audit event about the conversation's moderation that marks nothing (a check that
    failed and was let through, a sensitive topic refused or answered with a disclaimer)."""
    record_event(
        tenant_id=conversation.tenant_id,
        action=action,
        target=f"conversation:{conversation.pk}",
        contact_id=str(conversation.contact_id),
        details=details,
    )
