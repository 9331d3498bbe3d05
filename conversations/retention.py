"""Retention: remove what a tenant's retention periods say has been kept long enough.

Per tenant and data class (the periods are the tenant's, in days; None keeps the class):

- conversations, `conversation_retention_days` after their last activity (the newest message or
  change), with their messages, tool invocations, reply jobs and Redis state. A conversation an
  agent holds (`with_agent`), or with a reply queued, running or streaming, is left for a later
  run. Contacts left with no conversation and not seen within the same period go too.
- LLM call records, `llm_call_retention_days` after the call (the daily totals in
  `TenantUsageDay` stay);
- audit events, `audit_retention_days` after the event (the audit log removes its own expired
  segments and records that it did).

Deletes run in batches, each in a transaction of its own; conversations are locked with SKIP
LOCKED, so a conversation someone is writing to right now waits for the next run. A dry run
counts what would go and deletes nothing. Every run records a `retention.run` audit event with
its counts.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from conversations.handoff import reply_cancel_flags_clear
from conversations.models import Contact, Conversation, LLMCall, Message, ReplyJob, ToolInvocation
from conversations.stream_state import snapshots_clear
from conversations.summaries import summary_state_clear
from supportbot.compliance.audit import expire_events, expired_event_count, record_event
from supportbot.tenants.models import Tenant

logger = logging.getLogger(__name__)

# The data classes, in the order they are removed and reported.
CLASSES = (
    "conversations",
    "messages",
    "tool_invocations",
    "reply_jobs",
    "contacts",
    "llm_calls",
    "audit_events",
)
_CONVERSATION_CLASSES = CLASSES[:5]
_MODEL_CLASSES = {
    Conversation._meta.label: "conversations",
    Message._meta.label: "messages",
    ToolInvocation._meta.label: "tool_invocations",
    ReplyJob._meta.label: "reply_jobs",
    Contact._meta.label: "contacts",
    LLMCall._meta.label: "llm_calls",
}


@dataclass(frozen=True)
class RetentionResult:
    """What one run did (or, dry, would do) for one tenant: rows per class; None for a class
    the tenant keeps (no retention period)."""

    tenant_id: int
    tenant_slug: str
    dry_run: bool
    counts: dict[str, int | None]


def _cutoff(now: datetime, days: int | None) -> datetime | None:
    return None if days is None else now - timedelta(days=days)


def _expired_conversations(tenant_id: int, cutoff: datetime) -> QuerySet[Conversation]:
    """The tenant's conversations inactive since before `cutoff` that nobody is working on."""
    open_jobs = ReplyJob.objects.filter(
        conversation=OuterRef("pk"), state__in=[ReplyJob.State.QUEUED, ReplyJob.State.RUNNING]
    )
    streaming = Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)
    return (
        Conversation.objects.filter(tenant_id=tenant_id, updated_at__lt=cutoff)
        .filter(
            Q(last_message_at__lt=cutoff) | Q(last_message_at__isnull=True, created_at__lt=cutoff)
        )
        .exclude(status=Conversation.Status.WITH_AGENT)
        .exclude(Exists(open_jobs))
        .exclude(Exists(streaming))
        .order_by()
    )


def _expired_contacts(
    tenant_id: int, cutoff: datetime, *, leaving: QuerySet[Conversation] | None = None
) -> QuerySet[Contact]:
    """The tenant's contacts not seen since `cutoff` with no conversation (other than those in
    `leaving`, the ones a dry run counts as gone)."""
    remaining = Conversation.objects.filter(contact=OuterRef("pk"))
    if leaving is not None:
        remaining = remaining.exclude(pk__in=leaving.values("pk"))
    return (
        Contact.objects.filter(tenant_id=tenant_id, last_seen_at__lt=cutoff)
        .exclude(Exists(remaining))
        .order_by()
    )


def _redis_state_clear(
    conversation_ids: list[str], message_ids: list[str], job_ids: list[int]
) -> None:
    """After commit: the removed conversations' snapshots, cancel flags and summary keys."""
    try:
        snapshots_clear(message_ids)
        reply_cancel_flags_clear(job_ids)
        summary_state_clear(conversation_ids)
    except Exception:  # the keys expire on their own; the rows are gone either way
        logger.warning("retention: could not clear the Redis state of removed conversations")


def _conversations_delete_batch(tenant_id: int, cutoff: datetime, batch_size: int) -> Counter[str]:
    """Delete up to `batch_size` expired conversations (and what hangs off them) in one
    transaction; an empty count when none is left."""
    counts: Counter[str] = Counter()
    with transaction.atomic():
        ids = list(
            _expired_conversations(tenant_id, cutoff)
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return counts
        message_ids = [
            str(pk)
            for pk in Message.objects.filter(
                conversation_id__in=ids, role=Message.Role.ASSISTANT
            ).values_list("pk", flat=True)
        ]
        jobs = ReplyJob.objects.filter(conversation_id__in=ids)
        job_ids = list(jobs.values_list("pk", flat=True))
        _, deleted = Conversation.objects.filter(pk__in=ids).delete()
        for label, count in deleted.items():
            counts[_MODEL_CLASSES.get(label, label)] += count
        conversation_ids = [str(pk) for pk in ids]
        transaction.on_commit(lambda: _redis_state_clear(conversation_ids, message_ids, job_ids))
    return counts


def _batched_delete(queryset: QuerySet, batch_size: int) -> Counter[str]:
    """Delete `queryset`'s rows, `batch_size` per transaction: rows someone holds a lock on are
    skipped, and the rest are checked again once locked (a contact starting a conversation
    right now keeps its row)."""
    counts: Counter[str] = Counter()
    while True:
        with transaction.atomic():
            ids = list(
                queryset.select_for_update(skip_locked=True).values_list("pk", flat=True)[
                    :batch_size
                ]
            )
            if not ids:
                return counts
            _, deleted = queryset.filter(pk__in=ids).delete()
        for label, count in deleted.items():
            counts[_MODEL_CLASSES.get(label, label)] += count


def _conversations_expire(
    tenant: Tenant, cutoff: datetime, *, dry_run: bool, batch_size: int
) -> Counter[str]:
    if dry_run:
        expired = _expired_conversations(tenant.pk, cutoff)
        return Counter(
            {
                "conversations": expired.count(),
                "messages": Message.objects.filter(conversation__in=expired).count(),
                "tool_invocations": ToolInvocation.objects.filter(conversation__in=expired).count(),
                "reply_jobs": ReplyJob.objects.filter(conversation__in=expired).count(),
                "contacts": _expired_contacts(tenant.pk, cutoff, leaving=expired).count(),
            }
        )
    counts: Counter[str] = Counter(dict.fromkeys(_CONVERSATION_CLASSES, 0))
    while batch := _conversations_delete_batch(tenant.pk, cutoff, batch_size):
        counts.update(batch)
    counts.update(_batched_delete(_expired_contacts(tenant.pk, cutoff), batch_size))
    return counts


def _llm_calls_expire(tenant: Tenant, cutoff: datetime, *, dry_run: bool, batch_size: int) -> int:
    expired = LLMCall.objects.filter(tenant_id=tenant.pk, created_at__lt=cutoff).order_by()
    if dry_run:
        return expired.count()
    return _batched_delete(expired, batch_size)["llm_calls"]


def _audit_events_expire(tenant: Tenant, cutoff: datetime, *, dry_run: bool) -> int:
    if dry_run:
        return expired_event_count(tenant_id=tenant.pk, before=cutoff)
    return expire_events(tenant_id=tenant.pk, before=cutoff)


def retention_run(
    *,
    tenant: Tenant,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
) -> RetentionResult:
    """Remove (dry: count) `tenant`'s rows past their retention period at `now` (default: the
    current time), and record the run in the tenant's audit log."""
    now = now or timezone.now()
    batch_size = batch_size or int(settings.RETENTION_BATCH_SIZE)
    counts: dict[str, int | None] = dict.fromkeys(CLASSES)
    conversation_cutoff = _cutoff(now, tenant.conversation_retention_days)
    if conversation_cutoff is not None:
        found = _conversations_expire(
            tenant, conversation_cutoff, dry_run=dry_run, batch_size=batch_size
        )
        counts.update({name: found.get(name, 0) for name in _CONVERSATION_CLASSES})
    llm_call_cutoff = _cutoff(now, tenant.llm_call_retention_days)
    if llm_call_cutoff is not None:
        counts["llm_calls"] = _llm_calls_expire(
            tenant, llm_call_cutoff, dry_run=dry_run, batch_size=batch_size
        )
    audit_cutoff = _cutoff(now, tenant.audit_retention_days)
    if audit_cutoff is not None:
        counts["audit_events"] = _audit_events_expire(tenant, audit_cutoff, dry_run=dry_run)
    with transaction.atomic():
        record_event(
            tenant_id=tenant.pk,
            action="retention.run",
            target=f"tenant:{tenant.pk}",
            details={"dry_run": dry_run, "counts": counts},
        )
    return RetentionResult(
        tenant_id=tenant.pk, tenant_slug=tenant.slug, dry_run=dry_run, counts=counts
    )


def retention_run_all(
    *,
    tenants: Iterable[Tenant] | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> list[RetentionResult]:
    """`retention_run` for each of `tenants` (default: every tenant, active or not), with one
    `now` for all. A tenant whose run fails is logged and left for the next run; the others
    still run."""
    now = now or timezone.now()
    if tenants is None:
        tenants = Tenant.objects.order_by("pk")
    results = []
    for tenant in tenants:
        try:
            results.append(retention_run(tenant=tenant, now=now, dry_run=dry_run))
        except DatabaseError:
            logger.exception("retention of tenant %s failed; the next run tries again", tenant.pk)
    return results
