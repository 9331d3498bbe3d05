"""The audit log as a store of personal data (registered in `ComplianceConfig.ready`).

Export gives the events about a person, with their details (not the ones erased); erasure
deletes those events' details but keeps the events, so every chain still verifies: an event
keeps only its details' salted digest, which reveals nothing once the detail row is gone.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from supportbot.compliance.audit_events import AuditDetail, AuditEvent
from supportbot.compliance.registry import DataSubject


def subject_events(subject: DataSubject) -> QuerySet[AuditEvent]:
    """The events of the subject's tenant about their contacts or conversations."""
    about = Q(contact_id__in=sorted(subject.contact_ids)) | Q(
        target__in=[f"conversation:{c}" for c in sorted(subject.conversation_ids)]
    )
    return AuditEvent.objects.filter(about, tenant_id=subject.tenant_id)


def event_record(event: AuditEvent) -> dict[str, Any]:
    """An event as JSON (its details too, while they exist)."""
    detail: AuditDetail | None = getattr(event, "detail", None)
    return {
        "id": event.pk,
        "seq": event.seq,
        "created_at": event.created_at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "contact_id": event.contact_id,
        "details": detail.data if detail is not None else None,
        "hash": event.hash,
    }


class AuditStore:
    name = "audit"

    def export(self, subject: DataSubject) -> dict[str, list[dict[str, Any]]]:
        """The events about the subject, but those whose details were erased: what is left of
        them (an action, a time, ids that no longer name anyone) is no longer their data."""
        events = (
            subject_events(subject)
            .exclude(~Q(details_digest=""), detail__isnull=True)
            .select_related("detail")
            .order_by("seq")
        )
        return {"audit_events": [event_record(event) for event in events]}

    def erase(self, subject: DataSubject) -> dict[str, int]:
        count, _ = AuditDetail.objects.filter(event__in=subject_events(subject)).delete()
        return {"audit_event_details": count}
