"""Inbound on the message channels, end to end in process: a signed webhook through the real
endpoint, a real Celery worker processing the stored items, the scripted provider answering and
the outbox delivering through a provider of our own (tests/channels/inbound_kit.py).

Covers the rules the widget has, applied per channel contact: the privacy notice and its
record, the consent question (held messages, YES, NO, anything else), the per-visitor rate
limit, content the assistant cannot read, provider status failures, redelivery, reopening a
closed conversation and the conversation's language.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from conversations.models import (
    ChannelAccount,
    ConsentRecord,
    Contact,
    Conversation,
    InboundEvent,
    Message,
    MessageAttachment,
    OutboundDelivery,
    ReplyJob,
)
from conversations.notices import notice
from supportbot.tenants.models import Tenant
from tests.channels.inbound_kit import (
    KitAdapter,
    kit_account,
    kit_adapters_fixture,  # noqa: F401  (the fixture `kit_adapters`)
    message,
    post_webhook,
)
from tests.channels.notice_text import without_notice
from tests.support.llm_server import Reply
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]

Adapters = dict[str, KitAdapter]


def _phone() -> str:
    return "1555" + str(uuid.uuid4().int)[:7]


def _event_id() -> str:
    return f"wamid.{uuid.uuid4().hex}"


def _conversation_of(account: ChannelAccount, user: str) -> Conversation:
    def found() -> Conversation | None:
        return (
            Conversation.objects.filter(channel_account=account, contact__channel=account.kind)
            .order_by("-created_at")
            .first()
            if Contact.objects.filter(tenant_id=account.tenant_id, channel=account.kind).exists()
            else None
        )

    return wait_until(found, timeout=10, message="the channel conversation")


def _messages(conversation: Conversation, role: str) -> list[str]:
    rows = Message.objects.filter(conversation=conversation, role=role).order_by("seq")
    return [row.text for row in rows]


def _wait_sent(adapter: KitAdapter, conversation: Conversation, n: int) -> list[str]:
    return wait_until(
        lambda: (
            (sent := [without_notice(t) for t in adapter.sent_to(conversation.pk)])
            and len(sent) >= n
            and sent
        ),
        timeout=15,
        message=f"{n} deliveries to the contact",
    )


def _tenant(make_tenant: Any, **fields: Any) -> Tenant:
    tenant, _ = make_tenant(**fields)
    return tenant


def test_a_message_is_answered_on_its_channel_with_the_privacy_notice(
    make_tenant: Any, llm: Any, kit_adapters: Adapters
) -> None:
    tenant = _tenant(make_tenant, privacy_url="https://shop.example.com/privacy")
    account = kit_account(tenant)
    llm.enqueue(Reply(text="Your parcel ships today."))
    user = _phone()

    response = post_webhook(account, message(_event_id(), user, "Where is my parcel?"))

    assert response.status_code == 200
    conversation = _conversation_of(account, user)
    # The first reply carries the privacy notice, recorded once it is sent.
    assert _wait_sent(kit_adapters["whatsapp"], conversation, 1) == ["Your parcel ships today."]
    (first,) = kit_adapters["whatsapp"].sent_to(conversation.pk)
    assert "https://shop.example.com/privacy" in first
    wait_until(
        lambda: ConsentRecord.objects.filter(contact__channel="whatsapp").exists(),
        timeout=10,
        message="the notice's record",
    )
    contact = Contact.objects.get(tenant=tenant, channel="whatsapp")
    assert contact.channel_user_id == user
    assert _messages(conversation, Message.Role.USER) == ["Where is my parcel?"]
    record = ConsentRecord.objects.get(contact=contact)
    assert (record.decision, record.channel) == ("notice", "whatsapp")
    event = InboundEvent.objects.get(channel_account=account)
    assert event.state == InboundEvent.State.PROCESSED
    assert event.payload == {}
    assert event.contact_id == contact.pk


def test_a_redelivered_event_gives_one_message_and_one_reply(
    make_tenant: Any, llm: Any, kit_adapters: Adapters
) -> None:
    tenant = _tenant(make_tenant)
    account = kit_account(tenant)
    llm.enqueue(Reply(text="Happy to help."), Reply(text="A second answer must not exist."))
    payload = message(_event_id(), _phone(), "Can I change my address?")

    assert post_webhook(account, payload).status_code == 200
    assert post_webhook(account, payload).status_code == 200

    conversation = _conversation_of(account, "")
    wait_until(
        lambda: Message.objects.filter(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            status=Message.Status.COMPLETE,
        ).exists(),
        timeout=15,
        message="the assistant's reply",
    )
    assert post_webhook(account, payload).status_code == 200  # after processing, too
    wait_until(
        lambda: not InboundEvent.objects.filter(state=InboundEvent.State.RECEIVED).exists(),
        timeout=10,
        message="every event processed",
    )
    assert InboundEvent.objects.filter(channel_account=account).count() == 1
    assert _messages(conversation, Message.Role.USER) == ["Can I change my address?"]
    assert _messages(conversation, Message.Role.ASSISTANT) == ["Happy to help."]
    assert len(llm.reply_requests()) == 1
    assert ReplyJob.objects.filter(conversation=conversation).count() == 1


def test_an_attachment_only_message_gets_the_notice_and_no_reply(
    make_tenant: Any, llm: Any, kit_adapters: Adapters
) -> None:
    tenant = _tenant(make_tenant)
    account = kit_account(tenant)
    photo = {"kind": "image", "filename": "broken-box.jpg", "provider_ref": "media-123"}

    post_webhook(account, message(_event_id(), _phone(), attachments=[photo]))

    conversation = _conversation_of(account, "")
    sent = _wait_sent(kit_adapters["whatsapp"], conversation, 1)
    assert notice("unreadable", "en") in sent
    assert _messages(conversation, Message.Role.USER) == ["[image: broken-box.jpg]"]
    attachment = MessageAttachment.objects.get(message__conversation=conversation)
    assert (attachment.kind, attachment.filename, attachment.provider_ref) == (
        "image",
        "broken-box.jpg",
        "media-123",
    )
    assert not ReplyJob.objects.filter(conversation=conversation).exists()
    assert llm.reply_requests() == []


def test_text_with_an_attachment_is_answered_and_the_notice_is_in_their_language(
    make_tenant: Any, llm: Any, kit_adapters: Adapters
) -> None:
    tenant = _tenant(make_tenant)
    account = kit_account(tenant)
    llm.enqueue(Reply(text="Lo siento mucho, lo revisamos."))
    voice = {"kind": "voice", "content_type": "audio/ogg", "provider_ref": "media-9"}
    text = "Hola, el paquete llegó roto y no sé qué hacer con el pedido."

    post_webhook(account, message(_event_id(), _phone(), text, attachments=[voice]))

    conversation = _conversation_of(account, "")
    sent = _wait_sent(kit_adapters["whatsapp"], conversation, 2)
    assert notice("unreadable", "es") in sent
    assert "Lo siento mucho, lo revisamos." in sent
    assert _messages(conversation, Message.Role.USER) == [f"{text}\n[voice]"]
    conversation.refresh_from_db()
    assert conversation.language == "es"
    assert len(llm.reply_requests()) == 1


def _consent_tenant(make_tenant: Any) -> Tenant:
    return _tenant(
        make_tenant,
        lawful_basis=Tenant.LawfulBasis.CONSENT,
        privacy_url="https://shop.example.com/privacy",
    )


def _wait_question(adapter: KitAdapter, conversation: Conversation, n: int) -> list[str]:
    sent = _wait_sent(adapter, conversation, n)
    assert all("https://shop.example.com/privacy" in text for text in sent)
    return sent


def test_consent_required_holds_the_message_until_yes(
    make_tenant: Any, llm: Any, kit_adapters: Adapters
) -> None:
    tenant = _consent_tenant(make_tenant)
    account = kit_account(tenant)
    user = _phone()
    llm.enqueue(Reply(text="You can return it within 30 days."))

    post_webhook(account, message(_event_id(), user, "Can I return my shoes?"))
    conversation = _conversation_of(account, user)
    assert "Reply YES" in _wait_question(kit_adapters["whatsapp"], conversation, 1)[0]
    held = InboundEvent.objects.get(channel_account=account)
    assert held.state == InboundEvent.State.HELD
    assert held.payload["text"] == "Can I return my shoes?"
    assert _messages(conversation, Message.Role.USER) == []

    post_webhook(account, message(_event_id(), user, "Yes!"))

    sent = _wait_sent(kit_adapters["whatsapp"], conversation, 2)
    assert sent[1] == "You can return it within 30 days."
    assert _messages(conversation, Message.Role.USER) == ["Can I return my shoes?"]
    record = ConsentRecord.objects.get(contact=conversation.contact)
    assert (record.decision, record.channel) == ("accept", "whatsapp")
    held.refresh_from_db()
    assert (held.state, held.payload) == (InboundEvent.State.PROCESSED, {})
    asked = llm.reply_requests()[0].json["messages"][-1]["content"]
    assert "Can I return my shoes?" in asked


def test_consent_declined_erases_what_was_held(
    make_tenant: Any, llm: Any, kit_adapters: Adapters
) -> None:
    tenant = _consent_tenant(make_tenant)
    account = kit_account(tenant)
    user = _phone()

    post_webhook(account, message(_event_id(), user, "Bonjour, où est ma commande ?"))
    conversation = _conversation_of(account, user)
    _wait_question(kit_adapters["whatsapp"], conversation, 1)
    assert "OUI" in kit_adapters["whatsapp"].sent_to(conversation.pk)[0]
    post_webhook(account, message(_event_id(), user, "non"))

    sent = _wait_sent(kit_adapters["whatsapp"], conversation, 2)
    assert sent[1] == notice("channel_consent_declined", "fr")
    assert ConsentRecord.objects.get(contact=conversation.contact).decision == "decline"
    assert not InboundEvent.objects.filter(state=InboundEvent.State.HELD).exists()
    assert all(event.payload == {} for event in InboundEvent.objects.all())
    assert _messages(conversation, Message.Role.USER) == []
    assert llm.reply_requests() == []


def test_anything_but_yes_or_no_repeats_the_question(
    make_tenant: Any, llm: Any, kit_adapters: Adapters
) -> None:
    tenant = _consent_tenant(make_tenant)
    account = kit_account(tenant)
    user = _phone()

    post_webhook(account, message(_event_id(), user, "Where is my order?"))
    conversation = _conversation_of(account, user)
    _wait_question(kit_adapters["whatsapp"], conversation, 1)
    post_webhook(account, message(_event_id(), user, "What does this mean?"))

    _wait_question(kit_adapters["whatsapp"], conversation, 2)
    assert InboundEvent.objects.filter(state=InboundEvent.State.HELD).count() == 2
    assert not ConsentRecord.objects.exists()
    assert llm.reply_requests() == []


def test_over_the_rate_limit_messages_are_not_stored_and_the_contact_is_told_once(
    make_tenant: Any, llm: Any, kit_adapters: Adapters, settings: Any
) -> None:
    settings.WIDGET_MESSAGES_PER_MINUTE = 1
    tenant = _tenant(make_tenant)
    account = kit_account(tenant)
    user = _phone()
    llm.enqueue(Reply(text="First answer."))
    # All four in the same minute window.
    wait_until(lambda: time.time() % 60 < 40, timeout=30, message="the start of a minute")

    post_webhook(account, message(_event_id(), user, "First question"))
    conversation = _conversation_of(account, user)
    wait_until(lambda: _messages(conversation, Message.Role.USER), timeout=10, message="the first")
    for n in range(3):
        post_webhook(account, message(_event_id(), user, f"Flood {n}"))
    wait_until(
        lambda: not InboundEvent.objects.filter(state=InboundEvent.State.RECEIVED).exists(),
        timeout=10,
        message="every event processed",
    )

    assert _messages(conversation, Message.Role.USER) == ["First question"]
    refused = InboundEvent.objects.filter(detail__startswith="over the message rate limit")
    assert refused.count() == 3
    told = notice("channel_rate_limited", "en")
    wait_until(
        lambda: told in _messages(conversation, Message.Role.SYSTEM),
        timeout=10,
        message="the rate-limit notice",
    )
    assert _messages(conversation, Message.Role.SYSTEM).count(told) == 1


def test_a_failed_status_is_noted_on_the_delivery(
    make_tenant: Any, llm: Any, kit_adapters: Adapters
) -> None:
    tenant = _tenant(make_tenant)
    account = kit_account(tenant)
    llm.enqueue(Reply(text="Done."))
    post_webhook(account, message(_event_id(), _phone(), "Please cancel my order"))
    conversation = _conversation_of(account, "")
    _wait_sent(kit_adapters["whatsapp"], conversation, 1)
    reply = wait_until(
        lambda: OutboundDelivery.objects.filter(
            message__role=Message.Role.ASSISTANT, state=OutboundDelivery.State.SENT
        ).first(),
        timeout=10,
        message="the reply's delivery recorded as sent",
    )
    [provider_id] = reply.provider_message_ids

    statuses = {
        "statuses": [
            {"id": "st-1", "message_id": provider_id, "status": "delivered"},
            {"id": "st-2", "message_id": provider_id, "status": "failed", "error": "131026"},
        ]
    }
    assert post_webhook(account, statuses).status_code == 200

    wait_until(
        lambda: OutboundDelivery.objects.get(pk=reply.pk).last_error,
        timeout=10,
        message="the failure on the delivery",
    )
    assert "failed: 131026" in OutboundDelivery.objects.get(pk=reply.pk).last_error
    details = dict(
        InboundEvent.objects.filter(kind="status").values_list("provider_event_id", "detail")
    )
    assert details == {"st-1": "delivered", "st-2": "failed: 131026"}
    assert len(llm.reply_requests()) == 1  # a status is never answered


def test_a_closed_conversation_is_reopened_by_the_next_message(
    make_tenant: Any, llm: Any, kit_adapters: Adapters
) -> None:
    tenant = _tenant(make_tenant)
    account = kit_account(tenant)
    user = _phone()
    llm.enqueue(Reply(text="One."), Reply(text="Two."))
    post_webhook(account, message(_event_id(), user, "First question"))
    conversation = _conversation_of(account, user)
    _wait_sent(kit_adapters["whatsapp"], conversation, 1)
    Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.CLOSED)

    post_webhook(account, message(_event_id(), user, "Another question"))

    sent = _wait_sent(kit_adapters["whatsapp"], conversation, 2)
    assert sent[-1] == "Two."
    assert Conversation.objects.filter(tenant=tenant).count() == 1
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.BOT
    # The same person on another channel kind is another contact.
    sms = kit_account(tenant, kind="sms")
    post_webhook(sms, message(_event_id(), user, "Hello by SMS"))
    wait_until(
        lambda: Contact.objects.filter(tenant=tenant).count() == 2,
        timeout=10,
        message="the SMS contact",
    )


def test_a_message_over_the_tenant_length_is_cut_and_the_contact_told(
    make_tenant: Any, llm: Any, kit_adapters: Adapters
) -> None:
    tenant = _tenant(make_tenant, message_max_chars=40)
    account = kit_account(tenant)
    llm.enqueue(Reply(text="Thanks."))
    text = "Please help me with my order. " * 10

    post_webhook(account, message(_event_id(), _phone(), text))

    conversation = _conversation_of(account, "")
    sent = _wait_sent(kit_adapters["whatsapp"], conversation, 2)
    assert notice("channel_too_long", "en") in sent
    [stored] = _messages(conversation, Message.Role.USER)
    assert stored == f"{text[:40].rstrip()} […]"
    asked = llm.reply_requests()[0].json["messages"][-1]["content"]
    assert text not in asked


def test_two_first_messages_at_once_make_one_conversation(
    make_tenant: Any, llm: Any, kit_adapters: Adapters
) -> None:
    tenant = _tenant(make_tenant)
    account = kit_account(tenant)
    user = _phone()
    llm.enqueue(Reply(text="One."), Reply(text="Two."))
    both = {
        "messages": [
            {"id": _event_id(), "from": user, "text": "My order is late"},
            {"id": _event_id(), "from": user, "text": "and the box is wet"},
        ]
    }

    post_webhook(account, both)

    wait_until(
        lambda: Message.objects.filter(conversation__tenant=tenant, role="user").count() == 2,
        timeout=15,
        message="both messages stored",
    )
    assert Contact.objects.filter(tenant=tenant).count() == 1
    assert Conversation.objects.filter(tenant=tenant).count() == 1
    # The notice is recorded once, with the first reply that carries it.
    wait_until(
        lambda: ConsentRecord.objects.filter(contact__tenant=tenant).count() == 1,
        timeout=15,
        message="one notice record",
    )
