"""The outbox's sender: one delivery row, sent through its channel's adapter, with retries.

A provider's 429 or 5xx (or a network failure) is tried again after its `Retry-After`, or with
exponential backoff; a permanent refusal (or the last attempt) leaves the row `failed`, shown
in the admin, where it can be retried (`delivery_retry`).
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations.channels.base import DeliveryFailed, Outgoing, adapter_for
from conversations.models import ChannelMessageRef, OutboundDelivery
from conversations.outbox import delivery_enqueue

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True)
class Attempt:
    """How a try went: `retry_in` seconds until the next one (None: no next one)."""

    state: str
    retry_in: float | None = None


def backoff_seconds(attempts: int) -> float:
    return float(min(2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


def outbound_deliver(*, delivery_id: int) -> Attempt:
    """Try to send one outbox row (a row already sent, or failed for good, is left alone)."""
    with transaction.atomic():
        delivery = (
            OutboundDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("channel_account", "conversation", "message")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.state != OutboundDelivery.State.PENDING:
            return Attempt(state=delivery.state if delivery else "gone")
        delivery.attempts += 1
        outgoing = _outgoing(delivery)
        try:
            sent = adapter_for(delivery.channel_account.kind).send(outgoing)
        except DeliveryFailed as failed:
            return _failed(delivery, failed)
        delivery.state = OutboundDelivery.State.SENT
        delivery.sent_at = timezone.now()
        delivery.provider_message_ids = sent.provider_message_ids
        delivery.last_error = ""
        delivery.save(
            update_fields=["state", "sent_at", "provider_message_ids", "last_error", "attempts"]
        )
        ChannelMessageRef.objects.bulk_create(
            ChannelMessageRef(
                tenant_id=delivery.tenant_id,
                channel_account_id=delivery.channel_account_id,
                conversation_id=delivery.conversation_id,
                message_id=delivery.message_id,
                direction=ChannelMessageRef.Direction.OUTBOUND,
                provider_ref=ref,
            )
            for ref in sent.provider_message_ids
            if ref
        )
    return Attempt(state=OutboundDelivery.State.SENT)


def _outgoing(delivery: OutboundDelivery) -> Outgoing:
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
        text=delivery.message.text,
        thread_refs=tuple(refs),
        stream_ref=stream_ref,
    )


def _failed(delivery: OutboundDelivery, failed: DeliveryFailed) -> Attempt:
    delivery.last_status = failed.status
    delivery.last_error = failed.reason[:300]
    last = failed.permanent or delivery.attempts >= settings.OUTBOX_MAX_ATTEMPTS
    retry_in = None
    if last:
        delivery.state = OutboundDelivery.State.FAILED
        delivery.next_attempt_at = None
        logger.warning(
            "delivery %s failed for good after %s attempts: %s",
            delivery.pk,
            delivery.attempts,
            failed.reason,
        )
    else:
        retry_in = min(
            failed.retry_after
            if failed.retry_after is not None
            else backoff_seconds(delivery.attempts),
            MAX_BACKOFF_SECONDS,
        )
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=retry_in)
    delivery.save(
        update_fields=["state", "attempts", "last_status", "last_error", "next_attempt_at"]
    )
    return Attempt(state=delivery.state, retry_in=retry_in)


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
