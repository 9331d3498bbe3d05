"""The outbox's sender: one delivery row, sent through its channel's adapter, with retries.

A send never holds a database transaction or a row lock while the provider is called: the row
is claimed first (its attempt counted and `next_attempt_at` set to a lease, so a second send
job for it finds it not due and leaves it), committed, then the adapter is called, and the
outcome is recorded in a transaction of its own. A row is sent at most once however many jobs
race for it.

A conversation's messages reach the visitor in the order they were written: a row waits while
an earlier row of its conversation is still pending (being sent, or waiting for a retry), and
each row's outcome (sent, or failed for good) wakes the next one up.

A provider's 429 or 5xx (or a network failure) is tried again after its `Retry-After` (at most
MAX_RETRY_AFTER_SECONDS), or with exponential backoff capped at OUTBOX_RETRY_MAX_SECONDS; a
permanent refusal (or the last attempt) leaves the row `failed`, shown in the admin, where it
can be retried (`delivery_retry`). A row whose channel was disabled (or whose conversation no
longer goes through it) fails at once with "channel disabled". Send jobs lost with Redis are
queued again by the sweep (`outbox_sweep`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from conversations.channels.base import DeliveryFailed, Outgoing, Sent, adapter_for
from conversations.channels.notices_first import OutboundText, delivery_text, notice_shown_record
from conversations.models import ChannelMessageRef, OutboundDelivery
from conversations.outbox import delivery_enqueue

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER_SECONDS = 300.0  # the longest a provider's Retry-After is waited for
# A send job arriving this early (a timer's jitter) is put off until the row is due.
EARLY_TOLERANCE_SECONDS = 5.0
SWEEP_BATCH = 500
CHANNEL_DISABLED = "channel disabled"
WAITING = "waiting"  # behind an earlier message of its conversation


@dataclass(frozen=True)
class Attempt:
    """How a try went: `retry_in` seconds until the next one (None: no next one)."""

    state: str
    retry_in: float | None = None


def backoff_seconds(attempts: int) -> float:
    """The wait after the `attempts`-th failed try: 1, 2, 4... seconds, at most
    OUTBOX_RETRY_MAX_SECONDS."""
    cap = max(float(settings.OUTBOX_RETRY_MAX_SECONDS), 1.0)
    return min(2.0 ** min(max(attempts - 1, 0), 32), cap)


def claim_lease_seconds() -> float:
    """How long a claimed row is left to its sender before the sweep may send it again: a few
    provider calls (a reply split in parts), with a margin."""
    return max(60.0, settings.CHANNEL_HTTP_TIMEOUT * 6)


def outbound_deliver(*, delivery_id: int) -> Attempt:
    """Try to send one outbox row (a row already sent, failed for good, being sent by another
    job or not due yet is left alone)."""
    claimed = _claim(delivery_id)
    if isinstance(claimed, Attempt):
        return claimed
    delivery = claimed
    outbound = delivery_text(delivery)
    try:
        sent = adapter_for(delivery.channel_account.kind).send(_outgoing(delivery, outbound.text))
    except DeliveryFailed as failed:
        return _failure_record(delivery, failed)
    except Exception as error:  # an adapter's bug: counted as an attempt, retried, logged
        logger.exception("delivery %s: the adapter raised", delivery.pk)
        return _failure_record(delivery, DeliveryFailed(f"adapter error: {type(error).__name__}"))
    return _sent_record(delivery, sent, outbound)


def _claim(delivery_id: int) -> OutboundDelivery | Attempt:
    """In a short transaction: count the attempt and lease the row, or say why not.

    The row lock is waited for (claims are short and call no provider): a send job woken by
    the delivery before it must not give up because that delivery's job still holds it."""
    with transaction.atomic():
        delivery = (
            OutboundDelivery.objects.select_for_update(of=("self",))
            .select_related(
                "channel_account", "conversation__tenant", "conversation__contact", "message"
            )
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return Attempt(state="gone")
        now = timezone.now()
        not_now = _not_claimable(delivery, now)
        if not_now is not None:
            return not_now
        delivery.attempts += 1
        refusal = _undeliverable(delivery)
        if refusal:
            _fail_for_good(delivery, DeliveryFailed(refusal, permanent=True))
            return Attempt(state=delivery.state)
        delivery.next_attempt_at = now + timedelta(seconds=claim_lease_seconds())
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    return delivery


def _not_claimable(delivery: OutboundDelivery, now: datetime) -> Attempt | None:
    """Why this job does not send the row now (None: it does): sent or failed already, leased
    by another job, waiting for its retry time, or behind an earlier message of the
    conversation still to be delivered (that one's outcome wakes this one up)."""
    if delivery.state != OutboundDelivery.State.PENDING:
        return Attempt(state=delivery.state)
    if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
        early = (delivery.next_attempt_at - now).total_seconds()
        return Attempt(
            state=delivery.state, retry_in=early if early <= EARLY_TOLERANCE_SECONDS else None
        )
    if _earlier_pending(delivery).exists():
        return Attempt(state=WAITING)
    return None


def _earlier_pending(delivery: OutboundDelivery) -> QuerySet[OutboundDelivery]:
    return OutboundDelivery.objects.filter(
        conversation_id=delivery.conversation_id,
        channel_account_id=delivery.channel_account_id,
        state=OutboundDelivery.State.PENDING,
        pk__lt=delivery.pk,
    )


def _next_in_line_wake(delivery: OutboundDelivery) -> None:
    """Inside the transaction ending a delivery (sent, or failed for good): queue the
    conversation's next message waiting behind it, after commit."""
    following = (
        OutboundDelivery.objects.filter(
            conversation_id=delivery.conversation_id,
            channel_account_id=delivery.channel_account_id,
            state=OutboundDelivery.State.PENDING,
            pk__gt=delivery.pk,
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if following is not None:
        transaction.on_commit(partial(delivery_enqueue, following))


def _undeliverable(delivery: OutboundDelivery) -> str:
    """Why the row cannot be sent at all ("" when it can): its channel is disabled, the
    conversation no longer goes through it, or the channel's kind has no adapter."""
    account = delivery.channel_account
    if not account.is_active or delivery.conversation.channel_account_id != account.pk:
        return CHANNEL_DISABLED
    try:
        adapter_for(account.kind)
    except KeyError:
        return f"no adapter for {account.kind}"
    return ""


def _outgoing(delivery: OutboundDelivery, text: str) -> Outgoing:
    rows = list(
        ChannelMessageRef.objects.filter(
            channel_account_id=delivery.channel_account_id,
            conversation_id=delivery.conversation_id,
        ).order_by("created_at", "id")
    )
    refs = [ref.provider_ref for ref in rows]
    # A reply already shown as it formed (Telegram, Slack): the message to edit.
    stream_ref = next(
        (
            ref.provider_ref
            for ref in rows
            if ref.message_id == delivery.message_id
            and ref.direction == ChannelMessageRef.Direction.OUTBOUND
        ),
        "",
    )
    return Outgoing(
        account=delivery.channel_account,
        conversation=delivery.conversation,
        message=delivery.message,
        text=text,
        thread_refs=tuple(refs),
        stream_ref=stream_ref,
    )


def _own_row_locked(delivery: OutboundDelivery) -> OutboundDelivery | None:
    """The claimed row, locked, while it is still this claim's (pending, same attempt)."""
    row = OutboundDelivery.objects.select_for_update().filter(pk=delivery.pk).first()
    if row is None or row.state != OutboundDelivery.State.PENDING:
        return None
    if row.attempts != delivery.attempts:
        return None
    return row


def _sent_record(delivery: OutboundDelivery, sent: Sent, outbound: OutboundText) -> Attempt:
    """In a transaction of its own: the row sent, the provider's ids kept (an email's
    Message-ID threads the next reply), the notice it carried recorded."""
    with transaction.atomic():
        row = _own_row_locked(delivery)
        if row is None:
            logger.warning("delivery %s: sent, but the row was no longer this send's", delivery.pk)
            return Attempt(state="sent")
        row.state = OutboundDelivery.State.SENT
        row.sent_at = timezone.now()
        row.next_attempt_at = None
        row.provider_message_ids = sent.provider_message_ids
        row.last_error = ""
        row.save(
            update_fields=[
                "state",
                "sent_at",
                "next_attempt_at",
                "provider_message_ids",
                "last_error",
            ]
        )
        # Read through instances: provider_ref is encrypted (values_list would give it sealed).
        known = {
            ref.provider_ref
            for ref in ChannelMessageRef.objects.filter(
                message_id=row.message_id,
                channel_account_id=row.channel_account_id,
                direction=ChannelMessageRef.Direction.OUTBOUND,
            )
        }
        ChannelMessageRef.objects.bulk_create(
            ChannelMessageRef(
                tenant_id=row.tenant_id,
                channel_account_id=row.channel_account_id,
                conversation_id=row.conversation_id,
                message_id=row.message_id,
                direction=ChannelMessageRef.Direction.OUTBOUND,
                provider_ref=ref,
            )
            for ref in dict.fromkeys(sent.provider_message_ids)
            if ref and ref not in known
        )
        if outbound.notice is not None:
            notice_shown_record(delivery, outbound.notice)
        _next_in_line_wake(row)
    return Attempt(state=OutboundDelivery.State.SENT)


def _failure_record(delivery: OutboundDelivery, failed: DeliveryFailed) -> Attempt:
    """In a transaction of its own: the provider's answer kept, and the row either given a
    retry time or failed for good."""
    with transaction.atomic():
        row = _own_row_locked(delivery)
        if row is None:
            return Attempt(state="superseded")
        if failed.permanent or row.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
            _fail_for_good(row, failed)
            return Attempt(state=row.state)
        retry_in = (
            min(failed.retry_after, MAX_RETRY_AFTER_SECONDS)
            if failed.retry_after is not None
            else backoff_seconds(row.attempts)
        )
        row.last_status = failed.status
        row.last_error = failed.reason[:300]
        row.next_attempt_at = timezone.now() + timedelta(seconds=retry_in)
        row.save(update_fields=["last_status", "last_error", "next_attempt_at"])
    logger.info("delivery %s: retry in %.1fs (status %s)", row.pk, retry_in, failed.status)
    return Attempt(state=row.state, retry_in=retry_in)


def _fail_for_good(row: OutboundDelivery, failed: DeliveryFailed) -> None:
    row.state = OutboundDelivery.State.FAILED
    row.last_status = failed.status
    row.last_error = failed.reason[:300]
    row.next_attempt_at = None
    row.save(update_fields=["state", "attempts", "last_status", "last_error", "next_attempt_at"])
    _next_in_line_wake(row)
    logger.warning(
        "delivery %s failed for good after %s attempts (status %s)",
        row.pk,
        row.attempts,
        failed.status,
    )


def delivery_retry(*, delivery_id: int, tenant_id: int | None = None) -> bool:
    """Send a failed delivery again (the admin's action): False when it is not failed (or not
    the tenant's)."""
    rows = OutboundDelivery.objects.filter(pk=delivery_id, state=OutboundDelivery.State.FAILED)
    if tenant_id is not None:
        rows = rows.filter(tenant_id=tenant_id)
    with transaction.atomic():
        updated = rows.update(
            state=OutboundDelivery.State.PENDING, attempts=0, next_attempt_at=None
        )
        if updated:
            transaction.on_commit(lambda: delivery_enqueue(delivery_id))
    return bool(updated)


# An earlier message of the same conversation still to be delivered: the row waits for it.
_waited_for = OutboundDelivery.objects.filter(
    conversation_id=OuterRef("conversation_id"),
    channel_account_id=OuterRef("channel_account_id"),
    state=OutboundDelivery.State.PENDING,
    pk__lt=OuterRef("pk"),
)


def outbox_sweep(*, grace_seconds: float | None = None) -> int:
    """Queue again the pending rows whose send job is overdue by more than the grace period (a
    job lost with Redis, a worker killed mid-send): nothing in the outbox is forgotten. Each
    row swept is given a fresh due time, so it is not queued again before another grace."""
    grace = settings.OUTBOX_SWEEP_GRACE if grace_seconds is None else grace_seconds
    now = timezone.now()
    cutoff = now - timedelta(seconds=grace)
    with transaction.atomic():
        ids = list(
            OutboundDelivery.objects.select_for_update(skip_locked=True)
            .filter(state=OutboundDelivery.State.PENDING)
            .filter(
                Q(next_attempt_at__lt=cutoff)
                | Q(next_attempt_at__isnull=True, created_at__lt=cutoff)
            )
            .exclude(Exists(_waited_for))
            .order_by("next_attempt_at", "id")
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        if ids:
            OutboundDelivery.objects.filter(pk__in=ids).update(next_attempt_at=now)
            transaction.on_commit(partial(_enqueue_all, ids))
    if ids:
        logger.warning("outbox sweep: %s overdue deliveries queued again", len(ids))
    return len(ids)


def _enqueue_all(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        delivery_enqueue(delivery_id)
