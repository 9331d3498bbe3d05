"""Export and erasure of channel contacts, with canaries: an email contact and a WhatsApp
contact write through the inbound path (`inbound_items_store`, `inbound_event_process`) with
unique strings in their text, attachment names and bytes, provider refs and user ids, and one
message held for consent. Compliance staff find each by their email address or phone number;
the export holds every canary; after erasure none is left in the database (`pg_dump`), neither
as text nor as the encrypted values stored, while another contact's data is untouched."""

from __future__ import annotations

import base64
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection

from conversations.channels.base import InboundAttachment, InboundMessage
from conversations.channels.inbound import inbound_event_process, inbound_items_store
from conversations.models import ChannelAccount, Contact, InboundEvent, MessageAttachment
from supportbot.compliance.erasure import erase_subject
from supportbot.compliance.export import subject_sections
from supportbot.compliance.registry import DataSubject, SubjectSelector, find_subject
from supportbot.tenants.models import Tenant
from tests.support.leftovers import database_dump

pytestmark = [pytest.mark.django_db(transaction=True)]


def canary(what: str) -> str:
    return f"canary{what}{uuid.uuid4().hex[:12]}"


def phone_canary() -> str:
    return "1555" + "".join(random.choice("0123456789") for _ in range(9))


@dataclass
class Planted:
    strings: list[str]
    contact: Contact
    # What the export shows instead of some of them (an email's bytes, in base64).
    encoded: dict[str, str] = field(default_factory=dict)


def _deliver(account: ChannelAccount, item: InboundMessage) -> None:
    for event_id in inbound_items_store(account=account, items=[item]):
        inbound_event_process(event_id=event_id)


def _email_person(account: ChannelAccount) -> Planted:
    address = f"{canary('user')}@example.com"
    text, ref, name, content = canary("text"), canary("ref"), canary("file"), canary("bytes")
    _deliver(
        account,
        InboundMessage(
            event_id=f"<{ref}@mail.example.com>",
            user_id=address,
            email=address,
            text=f"My order never came. {text}",
            provider_ref=f"<{ref}@mail.example.com>",
            subject="Order",
            attachments=(
                InboundAttachment(
                    kind="file",
                    content_type="text/plain",
                    filename=f"{name}.txt",
                    content=f"receipt {content}".encode(),
                ),
            ),
        ),
    )
    contact = Contact.objects.get(tenant_id=account.tenant_id, channel="email")
    encoded = base64.b64encode(f"receipt {content}".encode()).decode()
    return Planted([address, text, ref, name, content], contact, {content: encoded})


def _whatsapp_person(account: ChannelAccount, user: str) -> Planted:
    text, ref, name, media = canary("text"), canary("ref"), canary("photo"), canary("media")
    _deliver(
        account,
        InboundMessage(
            event_id=f"wamid.{ref}",
            user_id=user,
            text=f"The box was broken {text}",
            provider_ref=f"wamid.{ref}",
            attachments=(
                InboundAttachment(kind="image", filename=f"{name}.jpg", provider_ref=media),
            ),
        ),
    )
    contact = Contact.objects.get(
        tenant_id=account.tenant_id,
        channel="whatsapp",
        pk__in=[
            c.pk for c in Contact.objects.filter(channel="whatsapp") if c.channel_user_id == user
        ],
    )
    return Planted([user, text, ref, name, media], contact)


CONTACT_COLUMNS = "channel_user_id, email, channel_user_index, email_index"
ATTACHMENT_COLUMNS = "a.filename, a.provider_ref, a.content_b64"
ATTACHMENTS_OF_CONVERSATIONS = (
    "conversations_messageattachment a JOIN conversations_message m ON m.id = a.message_id "
    "WHERE m.conversation_id::text = ANY(%s)"
)
REF_COLUMNS = "provider_ref, provider_ref_index"


def _stored_values(subject: DataSubject) -> list[str]:
    """The encrypted values and blind indexes stored for the subject, read by SQL."""
    contacts = [str(pk) for pk in subject.contact_ids]
    conversations = [str(pk) for pk in subject.conversation_ids]
    by_contact = "WHERE id::text = ANY(%s)"
    by_conversation = "WHERE conversation_id::text = ANY(%s)"
    queries = [
        (f"SELECT {CONTACT_COLUMNS} FROM conversations_contact {by_contact}", contacts),
        (f"SELECT channel_thread FROM conversations_conversation {by_contact}", conversations),
        (f"SELECT text FROM conversations_message {by_conversation}", conversations),
        (f"SELECT {ATTACHMENT_COLUMNS} FROM {ATTACHMENTS_OF_CONVERSATIONS}", conversations),
        (
            f"SELECT {REF_COLUMNS} FROM conversations_channelmessageref {by_conversation}",
            conversations,
        ),
        (
            "SELECT payload::text FROM conversations_inboundevent WHERE contact_id::text = ANY(%s)",
            contacts,
        ),
    ]
    values: list[str] = []
    with connection.cursor() as cursor:
        for sql, ids in queries:
            cursor.execute(sql, [ids])
            values += [str(v) for row in cursor.fetchall() for v in row if v and len(str(v)) > 20]
    return values


def test_channel_contacts_are_found_exported_and_erased(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    email = ChannelAccount.objects.create(tenant=tenant, kind="email")
    whatsapp = ChannelAccount.objects.create(tenant=tenant, kind="whatsapp")
    mail_person = _email_person(email)
    phone = phone_canary()
    phone_person = _whatsapp_person(whatsapp, phone)
    other = _whatsapp_person(whatsapp, phone_canary())
    # The tenant now asks for consent: the WhatsApp contact's next message is held.
    Tenant.objects.filter(pk=tenant.pk).update(lawful_basis=Tenant.LawfulBasis.CONSENT)
    held_text = canary("held")
    _deliver(
        whatsapp,
        InboundMessage(event_id=f"wamid.{canary('h')}", user_id=phone, text=f"Hi {held_text}"),
    )
    phone_person.strings.append(held_text)
    assert InboundEvent.objects.get(state=InboundEvent.State.HELD).contact_id == (
        phone_person.contact.pk
    )
    assert MessageAttachment.objects.count() == 3

    by_phone = find_subject(
        tenant.pk, SubjectSelector(identity_sub=f"+{phone[0]} {phone[1:4]} {phone[4:]}")
    )
    by_email = find_subject(tenant.pk, SubjectSelector(email=mail_person.strings[0].upper()))
    assert by_phone is not None
    assert by_email is not None
    assert by_phone.contact_ids == {str(phone_person.contact.pk)}
    assert by_email.contact_ids == {str(mail_person.contact.pk)}

    for subject, person in ((by_phone, phone_person), (by_email, mail_person)):
        exported = json.dumps(subject_sections(subject))
        for string in person.strings:
            assert person.encoded.get(string, string) in exported, string
        for string in other.strings:
            assert string not in exported

    stored = _stored_values(by_phone) + _stored_values(by_email)
    other_subject = find_subject(tenant.pk, SubjectSelector(contact_id=str(other.contact.pk)))
    assert other_subject is not None
    other_stored = _stored_values(other_subject)
    assert len(stored) > 10
    assert other_stored

    erase_subject(by_phone, actor="test")
    erase_subject(by_email, actor="test")

    dump = database_dump()
    for string in phone_person.strings + mail_person.strings + stored:
        assert string not in dump, string
    for value in other_stored:
        assert value in dump
    assert find_subject(tenant.pk, SubjectSelector(identity_sub=phone)) is None
    assert Contact.objects.filter(pk=other.contact.pk).exists()
