"""Inbound on every message channel: a verified webhook's items are stored once (the unique
provider id: a redelivery is a no-op) before the provider is answered, and processed on a worker
into a contact, a conversation and a message through the same service the widget uses.

The widget's rules apply per channel contact: the per-visitor rate limit (over it, nothing is
stored and the contact is told once per window), the consent question where the tenant needs
consent (`channel_consent`: the message is held until YES), the privacy notice and its record
under legitimate interest, and a notice for content the assistant cannot read
(`inbound_post`). A provider's status report is recorded; a failure also on its delivery.
"""

import logging
from functools import partial
from typing import Any

from celery import current_app
from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.channels.base import (
    Ignored,
    InboundItem,
    InboundMessage,
    InboundStatus,
)
from conversations.channels.channel_consent import channel_consent_handle
from conversations.channels.inbound_post import (
    channel_message_post,
    channel_notice_post,
    item_payload,
    message_from_payload,
    visitor_language,
)
from conversations.consent_records import consent_status_for
from conversations.limits import visitor_message_retry_after
from conversations.models import (
    ChannelAccount,
    ChannelMessageRef,
    Contact,
    Conversation,
    InboundEvent,
    OutboundDelivery,
)
from supportbot.compliance.encryption import blind_index, blind_index_lookup
from supportbot.redis_store import get_redis, redis_key

logger = logging.getLogger(__name__)

PROCESS_TASK = "conversations.channel_inbound_process"
MAX_EVENT_ID_CHARS = 255
# Provider statuses that mean a message of ours did not reach the contact (WhatsApp `failed`,
# Twilio `failed` / `undelivered`, and the like).
FAILED_STATUSES = frozenset({"failed", "undelivered", "error", "rejected", "bounced"})


def _item_kind(item: InboundItem) -> str:
    if isinstance(item, InboundMessage):
        return "message"
    if isinstance(item, InboundStatus):
        return "status"
    return "ignored"


def inbound_items_store(*, account: ChannelAccount, items: list[InboundItem]) -> list[int]:
    """Store each item not seen before (one row per provider id) and queue its processing after
    commit: the ids of the new rows. Ignored items are stored as done, never processed."""
    created: list[int] = []
    for item in items:
        event_id = item.event_id[:MAX_EVENT_ID_CHARS]
        ignored = isinstance(item, Ignored)
        try:
            with transaction.atomic():
                event = InboundEvent.objects.create(
                    tenant_id=account.tenant_id,
                    channel_account=account,
                    provider_event_id=event_id,
                    kind=_item_kind(item),
                    state=InboundEvent.State.IGNORED if ignored else InboundEvent.State.RECEIVED,
                    payload={} if ignored else item_payload(item),
                    detail=item.reason[:200] if isinstance(item, Ignored) else "",
                    processed_at=timezone.now() if ignored else None,
                )
        except IntegrityError:
            logger.info("channel %s: event redelivered, already stored", account.pk)
            continue
        if ignored:
            logger.info("channel %s: event ignored (%s)", account.pk, event.detail)
        else:
            created.append(event.pk)
            transaction.on_commit(partial(_enqueue, event.pk))
    return created


def _enqueue(event_id: int) -> None:
    current_app.send_task(PROCESS_TASK, args=[event_id])


def inbound_event_process(*, event_id: int) -> None:
    """Turn a stored item into its effect, once: a message (and its reply, or the consent
    question while it is held), or a status noted. A held event keeps its payload."""
    with transaction.atomic():
        event = (
            InboundEvent.objects.select_for_update(of=("self",))
            .select_related("channel_account", "channel_account__tenant")
            .filter(pk=event_id)
            .first()
        )
        if event is None or event.state != InboundEvent.State.RECEIVED:
            return
        event.state = InboundEvent.State.PROCESSED
        event.processed_at = timezone.now()
        payload = event.payload or {}
        if event.kind == "message":
            _message_process(event, message_from_payload(payload))
        else:
            status_record(event)
        if event.state != InboundEvent.State.HELD:
            event.payload = _kept_after_processing(payload)
        event.save(
            update_fields=["state", "processed_at", "payload", "detail", "contact", "message"]
        )


def _kept_after_processing(payload: dict[str, Any]) -> dict[str, Any]:
    """What an event keeps once processed: only an email's subject (encrypted, for the reply's
    "Re: <subject>"); the rest of the payload is in the message now."""
    subject = str(payload.get("subject", "") or "")
    return {"subject": subject} if subject else {}


def status_record(event: InboundEvent) -> None:
    """A provider's report on a message we sent: noted on the event; a failure also on the
    delivery that sent that message (its `last_error`, shown in the admin)."""
    payload = event.payload or {}
    status = str(payload.get("status", "")).strip().lower()
    error = str(payload.get("error", "")).strip()
    event.detail = f"{status}: {error}"[:200] if error else status[:200]
    provider_id = str(payload.get("provider_message_id", ""))
    if status not in FAILED_STATUSES or not provider_id:
        return
    deliveries = OutboundDelivery.objects.filter(
        tenant_id=event.tenant_id,
        channel_account_id=event.channel_account_id,
        provider_message_ids__contains=[provider_id],
    )
    for delivery in deliveries:
        delivery.last_error = f"the provider reported {event.detail}"[:300]
        delivery.save(update_fields=["last_error"])


def _message_process(event: InboundEvent, item: InboundMessage) -> None:
    """A contact's message: the contact and conversation (tenant, channel, user id, thread);
    refused over the per-visitor rate limit (told once per window), held while consent is
    asked, else posted like the widget's."""
    account = event.channel_account
    if not item.text.strip() and not item.attachments:
        event.state = InboundEvent.State.IGNORED
        event.detail = "empty message"
        return
    contact = channel_contact(account=account, item=item)
    # One of the contact's messages at a time: their thread's conversation, the consent
    # question and the rate limit each see the one before.
    Contact.objects.select_for_update().filter(pk=contact.pk).exists()
    conversation = channel_conversation(account=account, contact=contact, item=item)
    conversation.tenant = account.tenant
    event.contact = contact
    if _over_rate_limit(event, conversation, item):
        return
    language = visitor_language(conversation, item.text)
    status = consent_status_for(tenant=account.tenant, contact=contact, language=language)
    if status.blocks_storage:
        channel_consent_handle(event=event, conversation=conversation, item=item, status=status)
        return
    channel_message_post(event=event, conversation=conversation, item=item)


def _over_rate_limit(event: InboundEvent, conversation: Conversation, item: InboundMessage) -> bool:
    """Like the widget: over the per-visitor messages per minute, the message is not stored;
    the contact is told (at most once per window, in their language)."""
    contact_id = str(conversation.contact_id)
    retry_after = visitor_message_retry_after(contact_id)
    if retry_after is None:
        return False
    event.detail = "over the message rate limit: not stored"
    logger.info("channel %s: message over the rate limit", event.channel_account_id)
    # Under the visitor's own counter prefix, so the erasure of their Redis state finds it.
    # The key holds the event that told: a retry of that event (its first try rolled back,
    # the notice with it) tells again, any other event of the window does not.
    key = redis_key("visitor-messages", contact_id, "told")
    redis, teller = get_redis(), str(event.pk)
    if redis.set(key, teller, nx=True, ex=retry_after) or redis.get(key) == teller:
        channel_notice_post(
            conversation=conversation,
            key="channel_rate_limited",
            language=visitor_language(conversation, item.text),
        )
    return True


def channel_contact(*, account: ChannelAccount, item: InboundMessage) -> Contact:
    """The tenant's contact of this channel's user (tenant, channel, provider user id)."""
    user_id = item.user_id.strip()
    if account.kind == ChannelAccount.Kind.EMAIL:
        user_id = user_id.lower()
    index = blind_index(account.tenant_id, user_id, kind="channel_user")
    contact = Contact.objects.filter(
        tenant_id=account.tenant_id, channel=account.kind, channel_user_index=index
    ).first()
    if contact is not None:
        return contact
    try:
        with transaction.atomic():
            return Contact.objects.create(
                tenant_id=account.tenant_id,
                channel=account.kind,
                channel_user_id=user_id,
                name=item.user_name[:200],
                email=item.email or (user_id if account.kind == ChannelAccount.Kind.EMAIL else ""),
            )
    except IntegrityError:  # the same person's first two messages raced
        return Contact.objects.get(
            tenant_id=account.tenant_id, channel=account.kind, channel_user_index=index
        )


def channel_conversation(
    *, account: ChannelAccount, contact: Contact, item: InboundMessage
) -> Conversation:
    """The conversation a message belongs to: the one an email answers (by its refs), else
    the thread's newest one (a closed one is reopened by the message, as in the widget), else
    a new one."""
    for ref in item.refs:
        index = blind_index_lookup(account.tenant_id, ref.strip(), kind="channel_user")
        if not index:
            continue
        found = (
            ChannelMessageRef.objects.filter(channel_account=account, provider_ref_index=index)
            .select_related("conversation")
            .order_by("-created_at")
            .first()
        )
        if found is not None and found.conversation.contact_id == contact.pk:
            return found.conversation
    thread = (item.thread or item.user_id).strip()
    index = blind_index(account.tenant_id, thread, kind="channel_user")
    existing = (
        Conversation.objects.filter(
            tenant_id=account.tenant_id,
            channel_account=account,
            contact=contact,
            channel_thread_index=index,
        )
        .order_by("-created_at")
        .first()
    )
    if existing is not None:
        return existing
    return Conversation.objects.create(
        tenant_id=account.tenant_id,
        contact=contact,
        channel=account.kind,
        channel_account=account,
        channel_thread=thread,
    )
