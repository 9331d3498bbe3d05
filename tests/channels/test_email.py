"""The email channel end to end in process: raw MIME posted to the webhook (signed with the
channel's inbound secret), stored once, answered by the scripted model, and the answer sent
through a real SMTP server on loopback (aiosmtpd), threaded under the customer's email.
"""

from __future__ import annotations

import hashlib
import hmac
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from conversations.agents import agent_message_post, conversation_take_over
from conversations.models import (
    ChannelAccount,
    ChannelMessageRef,
    Conversation,
    InboundEvent,
    Message,
    OutboundDelivery,
)
from supportbot.tenants.models import TenantMembership
from tests.support.llm_server import Reply
from tests.support.mail_servers import ReceivedMail, SmtpRecorder
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]

SUPPORT = "support@shop.example"
CUSTOMER = "jane.doe@customer.example"
SECRET = "inbound-secret-of-the-shop"


# --- helpers (the IMAP tests use them too) ----------------------------------------------------


def email_account(tenant: Any, smtp_port: int, *, secret: str = SECRET, **config: Any) -> Any:
    credentials = config.pop("credentials", {})
    return ChannelAccount.objects.create(
        tenant=tenant,
        kind=ChannelAccount.Kind.EMAIL,
        name="Support mailbox",
        config={
            "address": SUPPORT,
            "smtp_host": "127.0.0.1",
            "smtp_port": str(smtp_port),
            "smtp_security": "none",
            **config,
        },
        credentials={"inbound_secret": secret, **credentials},
    )


def customer_email(
    text: str,
    *,
    subject: str = "Where is my order 1234?",
    sender: str = f"Jane Doe <{CUSTOMER.upper()}>",
    message_id: str | None = None,
    in_reply_to: str = "",
    references: str = "",
    headers: dict[str, str] | None = None,
) -> bytes:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = SUPPORT
    email["Subject"] = subject
    email["Message-ID"] = message_id or make_msgid(domain="customer.example")
    if in_reply_to:
        email["In-Reply-To"] = in_reply_to
    if references:
        email["References"] = references
    for name, value in (headers or {}).items():
        email[name] = value
    email.set_content(text)
    return email.as_bytes()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_mime(account: Any, body: bytes, signature: str | None) -> Any:
    headers = {"X-Supportbot-Signature": signature} if signature is not None else {}
    return Client().post(
        f"/channels/{account.pk}/webhook/",
        data=body,
        content_type="message/rfc822",
        headers=headers,
    )


def last_user_text(request: Any) -> str:
    users = [m for m in request.json["messages"] if m.get("role") == "user"]
    content = users[-1]["content"]
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


def replies_to(smtp: SmtpRecorder, count: int) -> list[ReceivedMail]:
    return smtp.wait_for(lambda mails: len(mails) >= count, timeout=20)


@pytest.fixture
def smtp() -> Any:
    with SmtpRecorder() as server:
        yield server


# --- the webhook ------------------------------------------------------------------------------


def test_signed_mime_is_answered_by_email_in_the_same_thread(make_tenant, llm, smtp):
    tenant, _ = make_tenant(name="Shop")
    account = email_account(tenant, smtp.port)
    llm.enqueue(Reply(text="Your order 1234 left our warehouse yesterday."))
    first_id = make_msgid(domain="customer.example")
    raw = customer_email(
        "Hello, my order 1234 has not arrived yet.\n\nBest regards,\nJane\n\n"
        "On Mon, 30 Nov 2026, Shop <support@shop.example> wrote:\n> An older answer\n",
        message_id=first_id,
    )

    response = post_mime(account, raw, sign(raw))

    assert response.status_code == 200
    [mail] = replies_to(smtp, 1)
    assert mail.rcpt_tos == [CUSTOMER]
    assert mail.mail_from == SUPPORT
    assert SUPPORT in mail.header("From")
    assert mail.header("To") == CUSTOMER
    assert mail.header("Subject") == "Re: Where is my order 1234?"
    assert mail.header("In-Reply-To") == first_id
    assert first_id in mail.header("References")
    assert mail.header("Auto-Submitted") == "auto-replied"
    assert mail.header("Message-ID").endswith("@shop.example>")
    assert "Your order 1234 left our warehouse yesterday." in mail.body
    asked = last_user_text(llm.reply_requests()[-1])
    assert "has not arrived yet" in asked
    assert "An older answer" not in asked
    assert "Best regards" not in asked

    # The customer answers our email: the same conversation, and the answer is threaded on.
    llm.enqueue(Reply(text="Glad to help."))
    our_id = mail.header("Message-ID")
    answer_id = make_msgid(domain="customer.example")
    answer = customer_email(
        "Thanks! It arrived.",
        subject="Re: Where is my order 1234?",
        message_id=answer_id,
        in_reply_to=our_id,
        references=f"{first_id} {our_id}",
    )
    assert post_mime(account, answer, sign(answer)).status_code == 200
    second = replies_to(smtp, 2)[1]
    conversation = Conversation.objects.get(channel_account=account)
    assert Conversation.objects.filter(tenant=tenant).count() == 1
    assert [m.text for m in conversation.messages.filter(role=Message.Role.USER)] == [
        "Hello, my order 1234 has not arrived yet.",
        "Thanks! It arrived.",
    ]
    assert second.header("In-Reply-To") == answer_id
    assert second.header("Subject") == "Re: Where is my order 1234?"
    assert second.header("References").split() == [first_id, our_id, answer_id]
    assert conversation.contact.channel_user_id == CUSTOMER
    assert conversation.contact.name == "Jane Doe"


@pytest.mark.parametrize("signature", [None, "", "sha256=" + "0" * 64, "wrong-format"])
def test_a_missing_or_wrong_signature_is_refused_and_nothing_stored(make_tenant, smtp, signature):
    tenant, _ = make_tenant()
    account = email_account(tenant, smtp.port)
    raw = customer_email("Hello")

    response = post_mime(account, raw, signature)

    assert response.status_code == 401
    assert SECRET not in response.content.decode()
    assert not InboundEvent.objects.exists()
    assert not Conversation.objects.exists()


def test_a_signature_over_other_bytes_is_refused(make_tenant, smtp):
    tenant, _ = make_tenant()
    account = email_account(tenant, smtp.port)
    raw = customer_email("Hello")

    response = post_mime(account, raw + b"tampered", sign(raw))

    assert response.status_code == 401
    assert not InboundEvent.objects.exists()


def test_tenant_a_secret_cannot_post_into_tenant_b_channel(make_tenant, llm, smtp):
    tenant_a, _ = make_tenant(name="A")
    tenant_b, _ = make_tenant(name="B")
    email_account(tenant_a, smtp.port, secret="secret-of-a")
    account_b = email_account(tenant_b, smtp.port, secret="secret-of-b")
    raw = customer_email("Hello B, I am really A")

    response = post_mime(account_b, raw, sign(raw, "secret-of-a"))

    assert response.status_code == 401
    assert not InboundEvent.objects.exists()
    assert not Conversation.objects.exists()
    assert post_mime(account_b, raw, sign(raw, "secret-of-b")).status_code == 200
    assert InboundEvent.objects.get().tenant_id == tenant_b.pk


def test_the_same_message_id_twice_is_one_message_and_one_reply(make_tenant, llm, smtp):
    tenant, _ = make_tenant()
    account = email_account(tenant, smtp.port)
    raw = customer_email("Do you ship to Norway?")

    assert post_mime(account, raw, sign(raw)).status_code == 200
    replies_to(smtp, 1)
    assert post_mime(account, raw, sign(raw)).status_code == 200

    assert InboundEvent.objects.count() == 1
    assert Message.objects.filter(role=Message.Role.USER).count() == 1
    wait_until(
        lambda: OutboundDelivery.objects.filter(state="sent").count() == 1,
        timeout=10,
        message="the one reply's delivery",
    )
    assert len(smtp.mails) == 1
    assert len(llm.reply_requests()) == 1


def test_wrong_content_type_is_refused(make_tenant, smtp):
    tenant, _ = make_tenant()
    account = email_account(tenant, smtp.port)
    raw = customer_email("Hello")

    response = Client().post(
        f"/channels/{account.pk}/webhook/",
        data=raw,
        content_type="text/plain",
        headers={"X-Supportbot-Signature": sign(raw)},
    )

    assert response.status_code == 415
    assert not InboundEvent.objects.exists()


@pytest.mark.parametrize(
    ("sender", "headers", "reason"),
    [
        (CUSTOMER, {"Auto-Submitted": "auto-replied"}, "auto-submitted"),
        (CUSTOMER, {"Precedence": "bulk"}, "bulk precedence"),
        (CUSTOMER, {"X-Autoreply": "yes"}, "auto-reply"),
        (CUSTOMER, {"Return-Path": "<>"}, "null return path"),
        ("MAILER-DAEMON@mx.customer.example", {}, "mailer daemon"),
        ("postmaster@customer.example", {}, "mailer daemon"),
        (SUPPORT, {}, "own address"),
    ],
)
def test_automatic_mail_is_stored_as_ignored_and_never_answered(
    make_tenant, llm, smtp, sender, headers, reason
):
    tenant, _ = make_tenant()
    account = email_account(tenant, smtp.port)
    raw = customer_email("I am out of the office.", sender=sender, headers=headers)

    assert post_mime(account, raw, sign(raw)).status_code == 200

    event = InboundEvent.objects.get()
    assert event.state == InboundEvent.State.IGNORED
    assert event.detail == reason
    assert not Conversation.objects.exists()
    assert not llm.reply_requests()
    assert not smtp.mails


def test_a_delivery_report_is_ignored(make_tenant, llm, smtp):
    tenant, _ = make_tenant()
    account = email_account(tenant, smtp.port)
    report = EmailMessage()
    report["From"] = "Mail Delivery System <bounces@mx.customer.example>"
    report["To"] = SUPPORT
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Message-ID"] = make_msgid(domain="mx.customer.example")
    report.set_content("This is the mail system. Your message could not be delivered.")
    report.make_mixed()
    report.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"')
    raw = report.as_bytes()

    assert post_mime(account, raw, sign(raw)).status_code == 200

    assert InboundEvent.objects.get().detail == "delivery report"
    assert not Conversation.objects.exists()
    assert not smtp.mails


# --- sending ----------------------------------------------------------------------------------


def test_a_temporary_smtp_refusal_is_tried_again(make_tenant, llm, smtp, settings):
    tenant, _ = make_tenant()
    account = email_account(tenant, smtp.port)
    smtp.fail_next(451)
    raw = customer_email("Is the shop open on Sunday?")

    assert post_mime(account, raw, sign(raw)).status_code == 200

    [mail] = replies_to(smtp, 1)
    assert smtp.refused == [451]
    delivery = wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.SENT).first(),
        timeout=10,
        message="the delivery to be recorded as sent",
    )
    assert delivery.attempts == 2
    assert delivery.provider_message_ids == [mail.header("Message-ID")]
    assert ChannelMessageRef.objects.filter(
        direction=ChannelMessageRef.Direction.OUTBOUND, message=delivery.message
    ).exists()


def test_a_permanent_smtp_refusal_is_not_tried_again(make_tenant, llm, smtp):
    tenant, _ = make_tenant()
    account = email_account(tenant, smtp.port)
    smtp.fail_next(550, times=3)
    raw = customer_email("Is the shop open on Sunday?")

    assert post_mime(account, raw, sign(raw)).status_code == 200

    delivery = wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.FAILED).first(),
        timeout=20,
        message="the delivery to fail for good",
    )
    assert delivery.attempts == 1
    assert delivery.last_status == 550
    assert smtp.refused == [550]
    assert not smtp.mails


def test_an_unreachable_smtp_server_is_tried_again(make_tenant, llm, smtp, settings):
    settings.OUTBOX_MAX_ATTEMPTS = 2
    tenant, _ = make_tenant()
    account = email_account(tenant, smtp.port)
    account.config["smtp_port"] = "1"  # nothing listens there
    account.save(update_fields=["config"])
    raw = customer_email("Anyone there?")

    assert post_mime(account, raw, sign(raw)).status_code == 200

    delivery = wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.FAILED).first(),
        timeout=20,
        message="the delivery to give up after its attempts",
    )
    assert delivery.attempts == 2
    assert "unreachable" in delivery.last_error


def test_an_agent_reply_is_not_marked_automatic(make_tenant, llm, smtp):
    tenant, _ = make_tenant()
    account = email_account(tenant, smtp.port)
    raw = customer_email("I want to speak to a person about a refund.")
    assert post_mime(account, raw, sign(raw)).status_code == 200
    replies_to(smtp, 1)
    conversation = Conversation.objects.get(channel_account=account)
    agent = get_user_model().objects.create_user(username="ann", password="pw", is_staff=True)
    TenantMembership.objects.create(tenant=tenant, user=agent, display_name="Ann")

    conversation_take_over(conversation=conversation, agent=agent)
    agent_message_post(conversation=conversation, agent=agent, text="Hi, Ann here. Refunded!")

    mails = smtp.wait_for(lambda m: any("Refunded!" in x.body for x in m), timeout=20)
    from_agent = next(m for m in mails if "Refunded!" in m.body)
    assert from_agent.header("Auto-Submitted") == ""
    assert from_agent.header("Subject") == "Re: Where is my order 1234?"
    assert from_agent.header("In-Reply-To") == mails[0].header("In-Reply-To")
