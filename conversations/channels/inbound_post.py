"""Posting a channel contact's message into their conversation, the way the widget posts one,
and what the service itself tells a channel contact (notices, as SYSTEM messages the outbox
delivers in their language).

Shared by the ordinary inbound path and the release of messages held for consent
(`channel_consent`): one stored item (an `InboundEvent` payload) becomes one visitor message,
its attachments, its provider ref and, for content the assistant cannot read, the `unreadable`
notice. An attachment-only message gets no assistant reply; a message over the tenant's length
is cut (and the contact told).
"""

import dataclasses
from typing import Any

from django.db import transaction

from conversations.channels.attachments import attachments_store, transcript_text
from conversations.channels.base import InboundAttachment, InboundItem, InboundMessage
from conversations.language import detect_language, resolve_reply_language
from conversations.messages import message_append
from conversations.models import ChannelMessageRef, Conversation, InboundEvent, Message
from conversations.notices import notice
from conversations.services import message_post_from_visitor


def item_payload(item: InboundItem) -> dict[str, Any]:
    """An item as stored in its event's (encrypted) payload: JSON, bytes as hex."""
    data = dataclasses.asdict(item)
    if isinstance(item, InboundMessage):
        data["attachments"] = [
            {**att, "content": att["content"].hex()} for att in data.get("attachments", [])
        ]
        data["refs"] = list(item.refs)
    return data


def message_from_payload(payload: dict[str, Any]) -> InboundMessage:
    """The message an event's payload holds (the inverse of `item_payload`)."""
    attachments = tuple(
        InboundAttachment(**{**att, "content": bytes.fromhex(att.get("content", ""))})
        for att in payload.get("attachments", [])
    )
    fields = {f.name for f in dataclasses.fields(InboundMessage)}
    data = {k: v for k, v in payload.items() if k in fields}
    data["refs"] = tuple(payload.get("refs", ()))
    data["attachments"] = attachments
    return InboundMessage(**data)


def visitor_language(conversation: Conversation, text: str) -> str:
    """The language to tell the contact something in: the one their words are written in (when
    the tenant supports it), else the conversation's, else the tenant's fallback; the same rule
    as the assistant's replies."""
    tenant = conversation.tenant
    return resolve_reply_language(
        detected=detect_language(text) if text.strip() else None,
        current=conversation.language,
        supported=list(tenant.supported_languages or []),
        fallback=tenant.fallback_language,
    )


def channel_system_post(*, conversation: Conversation, text: str) -> Message:
    """A SYSTEM message of the conversation (the outbox delivers it on the channel)."""
    with transaction.atomic():
        return message_append(conversation=conversation, role=Message.Role.SYSTEM, text=text)


def channel_notice_post(
    *, conversation: Conversation, key: str, language: str, **values: str
) -> Message:
    """The notice `key` to the contact, in `language`, as a SYSTEM message."""
    return channel_system_post(conversation=conversation, text=notice(key, language, **values))


def channel_message_post(
    *,
    event: InboundEvent,
    conversation: Conversation,
    item: InboundMessage,
) -> Message:
    """Store the contact's message once (the event's id is its client id: a retried event
    finds the message stored the first time) with its attachments and provider ref; the
    assistant answers only when there is text to read, and attachments get the `unreadable`
    notice. Under legitimate interest the first reply carries the privacy notice (see
    notices_first), recorded when it is sent."""
    item, cut = _within_length(conversation, item)
    posted = message_post_from_visitor(
        conversation=conversation,
        client_id=f"ch:{event.pk}",
        text=transcript_text(item.text, item.attachments),
        answer=bool(item.text.strip()),
    )
    event.contact = conversation.contact
    event.message = posted.message
    if not posted.created:
        return posted.message
    attachments_store(message=posted.message, attachments=item.attachments)
    if item.provider_ref:
        ChannelMessageRef.objects.create(
            tenant_id=conversation.tenant_id,
            channel_account_id=event.channel_account_id,
            conversation=conversation,
            message=posted.message,
            direction=ChannelMessageRef.Direction.INBOUND,
            provider_ref=item.provider_ref,
        )
    language = visitor_language(conversation, item.text)
    if cut:
        channel_notice_post(conversation=conversation, key="channel_too_long", language=language)
    if item.attachments:
        channel_notice_post(conversation=conversation, key="unreadable", language=language)
    return posted.message


def _within_length(conversation: Conversation, item: InboundMessage) -> tuple[InboundMessage, bool]:
    """The message cut to the tenant's message length (the widget refuses longer ones; a
    channel cannot be asked to resend, so the beginning is kept and the contact told), and
    whether it was cut."""
    limit = conversation.tenant.message_max_chars
    if len(item.text) <= limit:
        return item, False
    return dataclasses.replace(item, text=f"{item.text[:limit].rstrip()} […]"), True
