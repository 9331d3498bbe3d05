"""What a widget learns after a person's data was erased, whoever erased it (the visitor's
withdrawal, a compliance officer's request, a command).

The `widget_sessions` store takes part in every erasure (supportbot.compliance.erasure): it
keeps a tombstone of each erased contact and conversation id (only its SHA-256) and, on commit,
sends `erased` to every socket still on those conversations. A later `hello` with a token or
conversation id of an erased visitor is answered with `erased` and a fresh start
(selectors.access_conversation_for_visitor), never resumed under the same ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from conversations import frames
from conversations.broadcast import broadcast_on_commit
from conversations.models import ErasedVisitor
from supportbot.compliance.registry import DataSubject


def erased_digest(kind: str, value: object) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def erased_any(
    *, tenant_id: int, contact_id: object = None, conversation_id: object = None
) -> bool:
    """True when the contact or the conversation (ids, either may be None) was erased."""
    digests = [
        erased_digest(kind, value)
        for kind, value in (("contact", contact_id), ("conversation", conversation_id))
        if value
    ]
    if not digests:
        return False
    return ErasedVisitor.objects.filter(tenant_id=tenant_id, digest__in=digests).exists()


def erased_mark(
    *, tenant_id: int, contact_ids: Iterable[object], conversation_ids: Iterable[object]
) -> None:
    """Keep the tombstones of these ids (idempotent), and forget the ones older than a visitor
    token's life (no token that could name them is still accepted)."""
    rows = [
        ErasedVisitor(digest=erased_digest(kind, value), tenant_id=tenant_id)
        for kind, values in (("contact", contact_ids), ("conversation", conversation_ids))
        for value in values
    ]
    ErasedVisitor.objects.bulk_create(rows, ignore_conflicts=True)
    expired = timezone.now() - timedelta(seconds=settings.VISITOR_TOKEN_MAX_AGE)
    ErasedVisitor.objects.filter(erased_at__lt=expired).delete()


class WidgetSessionsStore:
    """The personal data store of widget sessions: it holds nothing to export; erasing ends the
    sessions (tombstones, and `erased` to the sockets on commit)."""

    name = "widget_sessions"

    def export(self, subject: DataSubject) -> dict[str, list[dict[str, Any]]]:
        return {}

    def erase(self, subject: DataSubject) -> dict[str, int]:
        erased_mark(
            tenant_id=subject.tenant_id,
            contact_ids=subject.contact_ids,
            conversation_ids=subject.conversation_ids,
        )
        for conversation_id in subject.conversation_ids:
            broadcast_on_commit(conversation_id, frames.erased_frame(conversation_id))
        return {}
