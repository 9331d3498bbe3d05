"""The audit log's entry points: `record_event` and `expire_events`.

Services call `record_event` inside the transaction that makes the change, so an event exists
exactly when its change does. Appends to one chain are serialised by a transaction-scoped
advisory lock (held until the caller commits); the chain's head is read through the
(tenant_id, seq) index, so an append costs one lock, one indexed read and one or two inserts.
This module imports no app: events name their tenant, actor and target by id and string.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from supportbot.compliance.audit_chain import canonical_json, details_digest, stored_event_hash
from supportbot.compliance.audit_events import AuditDetail, AuditEvent

# pg_advisory_xact_lock(key1, key2): key1 names the audit log, key2 the chain (0: the platform).
_LOCK_NAMESPACE = 0x41554454  # "AUDT"
# The transaction-local setting the table's trigger lets DELETE through with (migration 0001).
EXPIRY_SETTING = "supportbot.audit_expiry"

EXPIRE_ACTION = "audit.expire"


def keyed_digest(value: str) -> str:
    """A keyed hash of a personal-ish value (a failed login's username): the same value gives
    the same digest, so repeats can be told apart, but it cannot be read or guessed back
    without the server's secret."""
    key = hashlib.sha256(("audit-digest:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def _lock_chain(tenant_id: int | None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, tenant_id or 0])


def _chain_head(tenant_id: int | None) -> tuple[int, str]:
    head = (
        AuditEvent.objects.filter(tenant_id=tenant_id)
        .order_by("-seq")
        .values_list("seq", "hash")
        .first()
    )
    return head if head is not None else (0, "")


def _append(
    *,
    tenant_id: int | None,
    action: str,
    actor: str,
    target: str,
    contact_id: str | None,
    details: Mapping[str, Any] | None,
    anchor_seq: int | None = None,
    anchor_hash: str = "",
    head: tuple[int, str] | None = None,
) -> AuditEvent:
    data = json.loads(canonical_json(dict(details))) if details else None
    salt = secrets.token_hex(16) if data else ""
    digest = details_digest(data, salt) if data else ""
    if head is None:
        _lock_chain(tenant_id)
        head = _chain_head(tenant_id)
    head_seq, head_hash = head
    event = AuditEvent(
        tenant_id=tenant_id,
        seq=head_seq + 1,
        created_at=timezone.now(),
        actor=actor[:100],
        action=action[:60],
        target=target[:200],
        contact_id=str(contact_id) if contact_id else "",
        details_digest=digest,
        anchor_seq=anchor_seq,
        anchor_hash=anchor_hash,
        prev_hash=head_hash,
    )
    event.hash = stored_event_hash(event)
    event.save(force_insert=True)
    if data:
        AuditDetail.objects.create(event=event, salt=salt, data=data)
    return event


def record_event(
    *,
    tenant_id: int | None,
    action: str,
    actor: str = "system",
    target: str = "",
    contact_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one event to `tenant_id`'s audit chain (None: the platform's own chain).

    - `action`: dotted, from the support domain: "message.visitor", "reply.complete",
      "handoff", "transcript.view", "consent.accept", "data.erase"...
    - `actor`: "visitor:<contact id>", "user:<user id>", "assistant", "system".
    - `target`: what the event is about: "conversation:<id>", "tenant:<id>", "user:<id>".
    - `contact_id`: the person the event is about, if any (found by export and erasure).
    - `details`: JSON-able facts (model, tokens, cost...). Never message text.

    Inside the caller's transaction (one is opened when there is none); the chain stays
    locked until that transaction ends, so record the event late in it.
    """
    with transaction.atomic(savepoint=False):
        _append(
            tenant_id=tenant_id,
            action=action,
            actor=actor,
            target=target,
            contact_id=contact_id,
            details=details,
        )


def expired_event_count(*, tenant_id: int | None, before: datetime) -> int:
    """How many of `tenant_id`'s events `expire_events(before=...)` would remove (a dry run)."""
    return _expired_prefix(tenant_id, before).count()


def _expired_prefix(tenant_id: int | None, before: datetime) -> QuerySet[AuditEvent]:
    """The chain's oldest run of events written before `before`."""
    chain = AuditEvent.objects.filter(tenant_id=tenant_id)
    first_kept = (
        chain.filter(created_at__gte=before).order_by("seq").values_list("seq", flat=True).first()
    )
    return chain.filter(seq__lt=first_kept) if first_kept is not None else chain


def expire_events(*, tenant_id: int | None, before: datetime) -> int:
    """Remove `tenant_id`'s events older than `before` (whole expired segments only; the only
    removal the audit table allows), record that it happened, and return how many went.

    What goes is the chain's oldest run of events written before `before` (a prefix: an
    older event after a newer one stays). The recorded `audit.expire` event carries the last
    removed event's seq and hash as the anchor the remaining chain verifies from.
    """
    with transaction.atomic():
        _lock_chain(tenant_id)
        expired = _expired_prefix(tenant_id, before)
        last = expired.order_by("-seq").values_list("seq", "hash").first()
        if last is None:
            return 0
        head = _chain_head(tenant_id)
        AuditDetail.objects.filter(event__in=expired).delete()
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, 'on', true)", [EXPIRY_SETTING])
            removed, _ = expired.delete()
            cursor.execute("SELECT set_config(%s, 'off', true)", [EXPIRY_SETTING])
        _append(
            tenant_id=tenant_id,
            action=EXPIRE_ACTION,
            actor="system",
            target=f"audit-chain:{tenant_id if tenant_id is not None else 'platform'}",
            contact_id=None,
            details={"removed": removed, "before": before.isoformat(), "through_seq": last[0]},
            anchor_seq=last[0],
            anchor_hash=last[1],
            head=head,
        )
    return removed
