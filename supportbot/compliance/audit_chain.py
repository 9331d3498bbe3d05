"""The audit chain's arithmetic: event hashes, detail digests, and verifying a chain.

An event's hash is SHA-256 over a canonical JSON list of its fields and the previous event's
hash, so changing, inserting or removing any event breaks every later link. Details are
digested with HMAC-SHA256 keyed by a random salt kept in the detail row: the digest proves the
details unchanged while they exist and tells nothing about them once erased.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from supportbot.compliance.audit_events import AuditDetail, AuditEvent

PROGRESS_EVERY = 10_000


def canonical_json(value: Any) -> str:
    """The one serialisation digests are computed over (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def details_digest(data: Mapping[str, Any], salt: str) -> str:
    return hmac.new(salt.encode(), canonical_json(data).encode(), hashlib.sha256).hexdigest()


def event_hash(
    *,
    tenant_id: int | None,
    seq: int,
    created_at: datetime,
    actor: str,
    action: str,
    target: str,
    contact_id: str,
    details_digest: str,
    anchor_seq: int | None,
    anchor_hash: str,
    prev_hash: str,
) -> str:
    fields = [
        tenant_id,
        seq,
        created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        actor,
        action,
        target,
        contact_id,
        details_digest,
        anchor_seq,
        anchor_hash,
        prev_hash,
    ]
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


def stored_event_hash(event: AuditEvent) -> str:
    """The hash `event`'s stored fields give (equal to `event.hash` unless it was changed)."""
    return event_hash(
        tenant_id=event.tenant_id,
        seq=event.seq,
        created_at=event.created_at,
        actor=event.actor,
        action=event.action,
        target=event.target,
        contact_id=event.contact_id,
        details_digest=event.details_digest,
        anchor_seq=event.anchor_seq,
        anchor_hash=event.anchor_hash,
        prev_hash=event.prev_hash,
    )


@dataclass(frozen=True)
class ChainReport:
    """The outcome of verifying one chain."""

    tenant_id: int | None
    events: int
    head_seq: int
    head_hash: str
    broken_event_id: int | None = None
    broken_seq: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_event_id is None


def chain_tenant_ids() -> list[int | None]:
    """Every chain that has events (the platform's, None, first)."""
    ids = AuditEvent.objects.order_by().values_list("tenant_id", flat=True).distinct()
    return sorted(ids, key=lambda tenant_id: (tenant_id is not None, tenant_id or 0))


def _expected_start(tenant_id: int | None, first_seq: int) -> str | None:
    """The prev_hash the first remaining event must carry: "" for a chain that starts at 1, the
    anchor retention recorded when it removed the events before it, None when nothing explains
    the missing start."""
    if first_seq == 1:
        return ""
    return (
        AuditEvent.objects.filter(tenant_id=tenant_id, anchor_seq=first_seq - 1)
        .order_by("-seq")
        .values_list("anchor_hash", flat=True)
        .first()
    )


def _event_problem(event: AuditEvent, prev: AuditEvent | None, expected_prev: str | None) -> str:
    if prev is not None and event.seq != prev.seq + 1:
        return f"events {prev.seq + 1}..{event.seq - 1} are missing"
    if expected_prev is None:
        return "the chain starts after seq 1 and no retention event records its anchor"
    if event.prev_hash != expected_prev:
        return "prev_hash does not match the previous event"
    if stored_event_hash(event) != event.hash:
        return "the event's fields do not match its hash (changed after it was written)"
    detail: AuditDetail | None = getattr(event, "detail", None)
    if detail is not None and details_digest(detail.data, detail.salt) != event.details_digest:
        return "the event's details do not match their digest"
    return ""


def verify_chain(
    tenant_id: int | None, *, progress: Callable[[int], None] | None = None
) -> ChainReport:
    """Walk `tenant_id`'s chain in order; stop at the first event that does not verify."""
    events: Iterable[AuditEvent] = (
        AuditEvent.objects.filter(tenant_id=tenant_id)
        .select_related("detail")
        .order_by("seq")
        .iterator(chunk_size=2000)
    )
    prev: AuditEvent | None = None
    count = 0
    for event in events:
        expected = _expected_start(tenant_id, event.seq) if prev is None else prev.hash
        problem = _event_problem(event, prev, expected)
        if problem:
            return ChainReport(
                tenant_id=tenant_id,
                events=count,
                head_seq=prev.seq if prev else 0,
                head_hash=prev.hash if prev else "",
                broken_event_id=event.pk,
                broken_seq=event.seq,
                problem=problem,
            )
        prev = event
        count += 1
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(count)
    return ChainReport(
        tenant_id=tenant_id,
        events=count,
        head_seq=prev.seq if prev else 0,
        head_hash=prev.hash if prev else "",
    )
