"""The personal data the message channels hold, for export and erasure
(`supportbot.compliance.registry`), and how compliance staff find a channel contact.

Stores (registered before the contacts' own store, so an erasure stopped half way still finds
the person when it runs again):

- `channels.inbound_events`: the contact's webhook items; the payload of a message held for
  consent is what they wrote (exported, then erased with the row);
- `channels.message_refs`: what the provider calls the conversation's messages (an email's
  Message-ID, a Telegram message id);
- `channels.attachments`: what the contact sent that the assistant cannot read (names,
  references, an email's bytes);
- `channels.deliveries`: the outbox rows of the conversation's messages.

Refs, attachments and deliveries also go with their conversation (a cascade); each store erases
its rows itself so that it stands alone and a re-run finds nothing left.

A channel contact is found by their provider id given as the request's identity or email
selector: a phone number (with or without `+`, spaces or a `whatsapp:` prefix), an email
address (email contacts also carry it as their email), a Telegram chat id or a Slack user id.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet

from conversations.models import (
    ChannelMessageRef,
    Contact,
    InboundEvent,
    Message,
    MessageAttachment,
    OutboundDelivery,
)
from conversations.personal_data import subject_find
from supportbot.compliance.encryption import blind_index_lookup
from supportbot.compliance.registry import (
    DataSubject,
    SubjectSelector,
    register_store,
    register_subject_finder,
)

Records = dict[str, list[dict[str, Any]]]

_PHONE_PUNCTUATION = re.compile(r"[\s().\-]")
_PHONE = re.compile(r"\+?\d{5,20}")
_SCHEMES = ("whatsapp:", "tel:", "sms:")


def user_id_forms(value: str) -> set[str]:
    """The ways a channel may have recorded the user id `value`: as given, lower-cased (an
    email), and a phone number with and without its `+` and punctuation."""
    given = value.strip()
    forms = {given, given.lower()}
    phone = given.lower()
    for scheme in _SCHEMES:
        phone = phone.removeprefix(scheme)
    phone = _PHONE_PUNCTUATION.sub("", phone)
    if _PHONE.fullmatch(phone):
        digits = phone.lstrip("+")
        forms |= {digits, f"+{digits}", f"whatsapp:+{digits}"}
    return {form for form in forms if form}


def channel_subject_find(tenant_id: int, selector: SubjectSelector) -> DataSubject | None:
    """The person whose channel user id (phone, email, chat or user id) the selector's identity
    or email names: every contact found that way, with everything `subject_find` adds (other
    contacts with their email, all their conversations)."""
    value = selector.identity_sub or selector.email
    if not value.strip():
        return None
    indexes = {
        index
        for form in user_id_forms(value)
        if (index := blind_index_lookup(tenant_id, form, kind="channel_user"))
    }
    if not indexes:
        return None
    found = Contact.objects.filter(
        tenant_id=tenant_id, channel_user_index__in=list(indexes)
    ).values_list("pk", flat=True)
    contact_ids: set[str] = set()
    conversation_ids: set[str] = set()
    for pk in found:
        subject = subject_find(tenant_id, SubjectSelector(contact_id=str(pk)))
        if subject is not None:
            contact_ids |= subject.contact_ids
            conversation_ids |= subject.conversation_ids
    if not contact_ids:
        return None
    return DataSubject(
        tenant_id=tenant_id,
        contact_ids=frozenset(contact_ids),
        conversation_ids=frozenset(conversation_ids),
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _delete(rows: QuerySet[Any]) -> int:
    with transaction.atomic():
        count = rows.count()
        rows.delete()
    return count


def _of_conversations(model: Any, subject: DataSubject) -> QuerySet[Any]:
    return model.objects.filter(
        tenant_id=subject.tenant_id, conversation_id__in=list(subject.conversation_ids)
    )


class InboundEventStore:
    """The contact's webhook items (and what a held message said)."""

    name = "channels.inbound_events"

    def _rows(self, subject: DataSubject) -> QuerySet[InboundEvent]:
        messages = Message.objects.filter(
            tenant_id=subject.tenant_id, conversation_id__in=list(subject.conversation_ids)
        )
        return InboundEvent.objects.filter(
            Q(contact_id__in=list(subject.contact_ids)) | Q(message__in=messages),
            tenant_id=subject.tenant_id,
        )

    def export(self, subject: DataSubject) -> Records:
        rows = self._rows(subject).order_by("received_at", "id")
        return {
            "channel_inbound_events": [
                {
                    "channel_account_id": str(e.channel_account_id),
                    "kind": e.kind,
                    "state": e.state,
                    "detail": e.detail,
                    "message_id": str(e.message_id) if e.message_id else None,
                    "held_message": _held_message(e),
                    "received_at": _iso(e.received_at),
                    "processed_at": _iso(e.processed_at),
                }
                for e in rows
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        return {"channel_inbound_events": _delete(self._rows(subject))}


def _held_message(event: InboundEvent) -> dict[str, Any] | None:
    """What a message held for consent said (its text and attachments' names)."""
    if event.state != InboundEvent.State.HELD or not event.payload:
        return None
    payload = event.payload
    return {
        "text": payload.get("text", ""),
        "attachments": [
            {"kind": a.get("kind", ""), "filename": a.get("filename", "")}
            for a in payload.get("attachments", [])
        ],
    }


class MessageRefStore:
    name = "channels.message_refs"

    def export(self, subject: DataSubject) -> Records:
        rows = _of_conversations(ChannelMessageRef, subject).order_by("created_at", "id")
        return {
            "channel_message_refs": [
                {
                    "conversation_id": str(r.conversation_id),
                    "message_id": str(r.message_id) if r.message_id else None,
                    "direction": r.direction,
                    "provider_ref": r.provider_ref,
                    "created_at": _iso(r.created_at),
                }
                for r in rows
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        return {"channel_message_refs": _delete(_of_conversations(ChannelMessageRef, subject))}


class AttachmentStore:
    name = "channels.attachments"

    def _rows(self, subject: DataSubject) -> QuerySet[MessageAttachment]:
        return MessageAttachment.objects.filter(
            tenant_id=subject.tenant_id,
            message__conversation_id__in=list(subject.conversation_ids),
        )

    def export(self, subject: DataSubject) -> Records:
        rows = self._rows(subject).order_by("created_at", "id")
        return {
            "message_attachments": [
                {
                    "message_id": str(a.message_id),
                    "kind": a.kind,
                    "content_type": a.content_type,
                    "filename": a.filename,
                    "size": a.size,
                    "provider_ref": a.provider_ref,
                    "content_base64": a.content_b64,
                    "created_at": _iso(a.created_at),
                }
                for a in rows
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        return {"message_attachments": _delete(self._rows(subject))}


class DeliveryStore:
    """The outbox rows (they also go with their conversation)."""

    name = "channels.deliveries"

    def export(self, subject: DataSubject) -> Records:
        rows = _of_conversations(OutboundDelivery, subject).order_by("created_at", "id")
        return {
            "channel_deliveries": [
                {
                    "conversation_id": str(d.conversation_id),
                    "message_id": str(d.message_id),
                    "state": d.state,
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                    "provider_message_ids": d.provider_message_ids,
                    "created_at": _iso(d.created_at),
                    "sent_at": _iso(d.sent_at),
                    "erased_with": "the conversation",
                }
                for d in rows
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        return {"channel_deliveries": _delete(_of_conversations(OutboundDelivery, subject))}


def channel_personal_data_register() -> None:
    """Register the channel stores (call before the contacts' store is registered) and the
    finder of channel contacts by their provider user id."""
    for store in (InboundEventStore(), MessageRefStore(), AttachmentStore(), DeliveryStore()):
        register_store(store)
    register_subject_finder(channel_subject_find)
