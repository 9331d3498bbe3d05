"""Consent and privacy notices, as a visitor's session sees them, and the records of what
each visitor decided (`ConsentRecord`).

A session's `ConsentStatus` is read at `hello`: the tenant's lawful basis, the notice in the
visitor's language and whether this visitor already accepted that exact text (or, under
legitimate interest, was already shown it). Records are written only for a stored contact, so a
visitor who never acts leaves nothing behind; each decision is also an audit event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from conversations.models import ConsentRecord, Contact, Conversation
from supportbot.compliance.audit import record_event
from supportbot.compliance.registry import DataSubject
from supportbot.tenants.consent_texts import ConsentNotice
from supportbot.tenants.models import Tenant
from supportbot.tenants.selectors import tenant_consent_notice

Decision = ConsentRecord.Decision
Basis = Tenant.LawfulBasis


@dataclass
class ConsentStatus:
    """One session's consent: what it was shown and what the visitor decided (mutable: a
    `consent` frame changes it)."""

    basis: str
    notice: ConsentNotice
    privacy_url: str
    accepted: bool = False  # the visitor accepted this exact text
    recorded: bool = False  # a record of this exact text exists (a notice shown, or a decision)

    @property
    def required(self) -> bool:
        return self.basis == Basis.CONSENT

    @property
    def blocks_storage(self) -> bool:
        """True while nothing of the visitor may be stored: consent required, not given."""
        return self.required and not self.accepted

    @property
    def notice_due(self) -> bool:
        """Under legitimate interest: the notice's record is still to be stored."""
        return not self.required and not self.recorded


def safe_privacy_url(url: str) -> str:
    """The privacy URL when it is http(s); anything else is not shown."""
    return url if url.lower().startswith(("https://", "http://")) else ""


def consent_status_for(*, tenant: Tenant, contact: Contact, language: str) -> ConsentStatus:
    """The consent of a session at `hello`: the notice in `language`, and whether the visitor's
    last decision still holds (a contact not stored has made none)."""
    notice = tenant_consent_notice(tenant, language)
    status = ConsentStatus(
        basis=tenant.lawful_basis, notice=notice, privacy_url=safe_privacy_url(tenant.privacy_url)
    )
    if contact._state.adding:
        return status
    latest = (
        ConsentRecord.objects.filter(contact_id=contact.pk, tenant_id=tenant.pk)
        .order_by("-created_at", "-id")
        .first()
    )
    if latest is None:
        return status
    # A decision holds while the text it answered is still the current one of its language
    # (the visitor's language may have changed since: the same text, translated, is not asked
    # again; a new version is).
    current = notice
    if latest.language != notice.language:
        current = tenant_consent_notice(tenant, latest.language)
    if latest.text_sha256 == current.text_sha256:
        status.recorded = True
        status.accepted = latest.decision == Decision.ACCEPT
    return status


def welcome_consent(status: ConsentStatus) -> dict[str, Any]:
    """`welcome.consent`: what the widget shows before the composer (see the protocol)."""
    return {
        "required": status.required,
        "basis": status.basis,
        "version": status.notice.version,
        "language": status.notice.language,
        "text": status.notice.text,
        "privacy_url": status.privacy_url,
        "accepted": status.accepted,
    }


def consent_audit(
    *, tenant_id: int, decision: str, status: ConsentStatus, contact_id: str | None
) -> None:
    """The audit event of a decision (no text, only which text: version and digest)."""
    record_event(
        tenant_id=tenant_id,
        action=f"consent.{decision}",
        actor=f"visitor:{contact_id}" if contact_id else "visitor",
        target=f"contact:{contact_id}" if contact_id else "",
        contact_id=contact_id,
        details={
            "version": status.notice.version,
            "language": status.notice.language,
            "text_sha256": status.notice.text_sha256,
            "lawful_basis": status.basis,
        },
    )


def consent_record_write(
    *, contact: Contact, status: ConsentStatus, decision: str, channel: str = "widget"
) -> ConsentRecord:
    """Store the stored `contact`'s decision on the session's notice, with its audit event,
    inside the caller's transaction."""
    record = ConsentRecord.objects.create(
        tenant_id=contact.tenant_id,
        contact_id=contact.pk,
        language=status.notice.language,
        version=status.notice.version,
        text_sha256=status.notice.text_sha256,
        decision=decision,
        lawful_basis=status.basis,
        channel=channel,
    )
    consent_audit(
        tenant_id=contact.tenant_id, decision=decision, status=status, contact_id=str(contact.pk)
    )
    status.recorded = True
    status.accepted = decision == Decision.ACCEPT
    return record


def _subject_contact_ids(subject: DataSubject) -> set[str]:
    """The subject's contacts, and those of its conversations."""
    ids = {str(contact_id) for contact_id in subject.contact_ids}
    if subject.conversation_ids:
        ids.update(
            str(contact_id)
            for contact_id in Conversation.objects.filter(
                tenant_id=subject.tenant_id, pk__in=list(subject.conversation_ids)
            ).values_list("contact_id", flat=True)
        )
    return ids


class ConsentStore:
    """The personal data store of consent records (registered in conversations.apps)."""

    name = "consent"

    def _records(self, subject: DataSubject) -> QuerySet[ConsentRecord]:
        return ConsentRecord.objects.filter(
            tenant_id=subject.tenant_id, contact_id__in=_subject_contact_ids(subject)
        )

    def export(self, subject: DataSubject) -> dict[str, list[dict[str, Any]]]:
        records = self._records(subject).order_by("created_at", "id")
        return {
            "consent_records": [
                {
                    "contact_id": str(record.contact_id),
                    "decision": record.decision,
                    "version": record.version,
                    "language": record.language,
                    "text_sha256": record.text_sha256,
                    "lawful_basis": record.lawful_basis,
                    "channel": record.channel,
                    "created_at": record.created_at.isoformat(),
                }
                for record in records
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        count, _ = self._records(subject).delete()
        return {"consent_records": count}
