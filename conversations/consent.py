"""A visitor's consent decisions (the widget's `consent` frame): accept, decline, withdraw.

- **accept** stores the visitor's contact (if new) and the record of the exact text accepted;
  from then on their messages are stored.
- **decline** stores nothing new: a visitor not stored yet leaves only an audit event (naming no
  one); a stored visitor's decline is recorded, and their messages are refused from then on.
- **withdraw** (also the widget's "Delete my data") erases the visitor's contact and
  conversations through every registered store (supportbot.compliance.erasure); sockets on
  those conversations get `erased`.

Accept and decline name the version they answer; a version other than the one the session was
shown (the text changed, or a made-up number) is refused with ConsentStale.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from conversations.consent_records import (
    ConsentStatus,
    Decision,
    consent_audit,
    consent_record_write,
)
from conversations.models import Conversation
from conversations.services import VisitorSession, visitor_contact_store
from supportbot.compliance.erasure import erase_subject
from supportbot.compliance.registry import DataSubject

DECISIONS = ("accept", "decline", "withdraw")


class ConsentStale(Exception):
    """The decision names a version other than the text the session shows."""


def visitor_consent_decide(
    *, session: VisitorSession, status: ConsentStatus, decision: str, version: object
) -> dict[str, Any] | None:
    """Apply the visitor's `decision` (one of DECISIONS); returns the erasure certificate of a
    withdrawal of a stored visitor, else None."""
    if decision == "withdraw":
        return visitor_consent_withdraw(session=session, status=status)
    if isinstance(version, bool) or version != status.notice.version:
        raise ConsentStale(
            f"This consent text is version {status.notice.version}; reload to see the current text."
        )
    contact = session.contact
    if decision == "accept":
        adding = contact._state.adding
        try:
            with transaction.atomic():
                visitor_contact_store(contact=contact)
                consent_record_write(contact=contact, status=status, decision=Decision.ACCEPT)
        except BaseException:
            contact._state.adding = adding
            status.accepted = False
            raise
        return None
    if contact._state.adding:
        consent_audit(
            tenant_id=session.tenant.pk, decision=Decision.DECLINE, status=status, contact_id=None
        )
    else:
        consent_record_write(contact=contact, status=status, decision=Decision.DECLINE)
    status.accepted = False
    return None


def visitor_consent_withdraw(
    *, session: VisitorSession, status: ConsentStatus
) -> dict[str, Any] | None:
    """Erase everything of the session's visitor (their contact and every conversation of
    theirs, in this tenant): the erasure certificate, or None when nothing was stored."""
    contact = session.contact
    status.accepted = status.recorded = False
    if contact._state.adding:
        consent_audit(
            tenant_id=session.tenant.pk, decision=Decision.WITHDRAW, status=status, contact_id=None
        )
        return None
    conversation_ids = {
        str(pk)
        for pk in Conversation.objects.filter(
            tenant_id=session.tenant.pk, contact_id=contact.pk
        ).values_list("pk", flat=True)
    }
    conversation_ids.add(str(session.conversation.pk))
    subject = DataSubject(
        tenant_id=session.tenant.pk,
        contact_ids=frozenset({str(contact.pk)}),
        conversation_ids=frozenset(conversation_ids),
    )
    with transaction.atomic():
        consent_audit(
            tenant_id=session.tenant.pk,
            decision=Decision.WITHDRAW,
            status=status,
            contact_id=str(contact.pk),
        )
        return erase_subject(
            subject, actor=f"visitor:{contact.pk}", reference="widget: consent withdrawn"
        )
