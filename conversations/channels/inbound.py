"""Inbound on every message channel: a verified webhook's items are stored once (the unique
provider id: a redelivery is a no-op) before the provider is answered, and processed on a worker
into a contact, a conversation and a message through the same service the widget uses.
"""

import dataclasses
import logging
from functools import partial
from typing import Any

from celery import current_app
from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations.channels.base import (
    Ignored,
    InboundAttachment,
    InboundItem,
    InboundMessage,
    InboundStatus,
)
from conversations.models import (
    ChannelAccount,
    ChannelMessageRef,
    Contact,
    Conversation,
    InboundEvent,
)
from conversations.services import message_post_from_visitor
from supportbot.compliance.encryption import blind_index, blind_index_lookup

logger = logging.getLogger(__name__)

PROCESS_TASK = "conversations.channel_inbound_process"
MAX_EVENT_ID_CHARS = 255


def _item_kind(item: InboundItem) -> str:
    if isinstance(item, InboundMessage):
        return "message"
    if isinstance(item, InboundStatus):
        return "status"
    return "ignored"


def _payload(item: InboundItem) -> dict[str, Any]:
    data = dataclasses.asdict(item)
    if isinstance(item, InboundMessage):
        data["attachments"] = [
            {**att, "content": att["content"].hex()} for att in data.get("attachments", [])
        ]
        data["refs"] = list(item.refs)
    return data


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
                    payload={} if ignored else _payload(item),
                    detail=item.reason[:200] if isinstance(item, Ignored) else "",
                    processed_at=timezone.now() if ignored else None,
                )
        except IntegrityError:
            continue  # redelivered: stored the first time
        if not ignored:
            created.append(event.pk)
            transaction.on_commit(partial(_enqueue, event.pk))
    return created


def _enqueue(event_id: int) -> None:
    current_app.send_task(PROCESS_TASK, args=[event_id])


def inbound_event_process(*, event_id: int) -> None:
    """Turn a stored item into its effect, once: a message (and its reply), or a status noted."""
    with transaction.atomic():
        event = (
            InboundEvent.objects.select_for_update()
            .select_related("channel_account", "channel_account__tenant")
            .filter(pk=event_id)
            .first()
        )
        if event is None or event.state != InboundEvent.State.RECEIVED:
            return
        payload = event.payload or {}
        if event.kind == "message":
            _message_process(event, _message_from_payload(payload))
        else:
            event.detail = str(payload.get("status", ""))[:200]
        event.state = InboundEvent.State.PROCESSED
        event.processed_at = timezone.now()
        event.payload = _kept_after_processing(payload)
        event.save(
            update_fields=["state", "processed_at", "payload", "detail", "contact", "message"]
        )


def _kept_after_processing(payload: dict[str, Any]) -> dict[str, Any]:
    """What an event keeps once processed: only an email's subject (encrypted, for the reply's
    "Re: <subject>"); the rest of the payload is in the message now."""
    subject = str(payload.get("subject", "") or "")
    return {"subject": subject} if subject else {}


def _message_from_payload(payload: dict[str, Any]) -> InboundMessage:
    attachments = tuple(
        InboundAttachment(**{**att, "content": bytes.fromhex(att.get("content", ""))})
        for att in payload.get("attachments", [])
    )
    fields = {f.name for f in dataclasses.fields(InboundMessage)}
    data = {k: v for k, v in payload.items() if k in fields}
    data["refs"] = tuple(payload.get("refs", ()))
    data["attachments"] = attachments
    return InboundMessage(**data)


def _message_process(event: InboundEvent, item: InboundMessage) -> None:
    account = event.channel_account
    contact = channel_contact(account=account, item=item)
    conversation = channel_conversation(account=account, contact=contact, item=item)
    posted = message_post_from_visitor(
        conversation=conversation, client_id=f"ch:{event.pk}", text=item.text
    )
    if item.provider_ref:
        ChannelMessageRef.objects.create(
            tenant_id=account.tenant_id,
            channel_account=account,
            conversation=conversation,
            message=posted.message,
            direction=ChannelMessageRef.Direction.INBOUND,
            provider_ref=item.provider_ref,
        )
    event.contact = contact
    event.message = posted.message


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
    the thread's newest open one, else a new one."""
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
        .exclude(status=Conversation.Status.CLOSED)
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
