"""The email channel reading a real mailbox: Debian's Dovecot on loopback (a Maildir of its
own), the poll storing each unread email once and only then marking it \\Seen, the answer sent
through a real SMTP server (aiosmtpd), the customer's answer back in the same conversation.
"""

from __future__ import annotations

from email.utils import make_msgid
from typing import Any

import pytest
from django.conf import settings as django_settings

from conversations.channels.email_imap import MailboxUnavailable, mailbox_poll, mailboxes_to_poll
from conversations.models import Conversation, InboundEvent, Message
from conversations.tasks import email_poll
from supportbot.redis_store import get_redis, redis_key
from tests.channels.test_email import (
    CUSTOMER,
    SUPPORT,
    customer_email,
    email_account,
    last_user_text,
    replies_to,
)
from tests.support.llm_server import Reply
from tests.support.mail_servers import Dovecot, SmtpRecorder
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]


@pytest.fixture
def smtp() -> Any:
    with SmtpRecorder() as server:
        yield server


@pytest.fixture
def dovecot() -> Any:
    with Dovecot(user=SUPPORT, password="imap-pw") as server:
        yield server


def mailbox_account(tenant: Any, smtp: SmtpRecorder, dovecot: Dovecot, **extra: Any) -> Any:
    return email_account(
        tenant,
        smtp.port,
        imap_host="127.0.0.1",
        imap_port=str(dovecot.port),
        imap_security="none",
        credentials={"imap_password": extra.pop("password", dovecot.password)},
        **extra,
    )


def test_an_unread_email_is_stored_once_marked_seen_and_answered(make_tenant, llm, smtp, dovecot):
    tenant, _ = make_tenant(name="Shop")
    account = mailbox_account(tenant, smtp, dovecot)
    llm.enqueue(Reply(text="A replacement is on its way."))
    first_id = make_msgid(domain="customer.example")
    dovecot.append(
        customer_email(
            "The parcel arrived damaged, can I get a replacement?\n\n"
            "Kind regards,\nJane Doe\nHead of Purchasing\n\n"
            "On Tue, 1 Dec 2026 at 09:00, Shop <support@shop.example> wrote:\n"
            "> Your parcel was sent today.\n",
            subject="Damaged parcel",
            message_id=first_id,
        )
    )

    assert mailbox_poll(account_id=str(account.pk)) == 1

    assert dovecot.unseen() == 0
    assert dovecot.seen() == 1
    [mail] = replies_to(smtp, 1)
    assert mail.rcpt_tos == [CUSTOMER]
    assert mail.header("Subject") == "Re: Damaged parcel"
    assert mail.header("In-Reply-To") == first_id
    assert mail.header("References") == first_id
    assert mail.header("Auto-Submitted") == "auto-replied"
    assert "A replacement is on its way." in mail.body
    asked = last_user_text(llm.reply_requests()[-1])
    assert "can I get a replacement?" in asked
    assert "Your parcel was sent today" not in asked
    assert "Head of Purchasing" not in asked

    # The customer's answer to our email joins the same conversation.
    llm.enqueue(Reply(text="You are welcome."))
    our_id = mail.header("Message-ID")
    dovecot.append(
        customer_email(
            "Thank you!\n\nOn Tue, Shop wrote:\n> A replacement is on its way.\n",
            subject="Re: Damaged parcel",
            in_reply_to=our_id,
            references=f"{first_id} {our_id}",
        )
    )
    assert mailbox_poll(account_id=str(account.pk)) == 1
    second = replies_to(smtp, 2)[1]
    [conversation] = Conversation.objects.filter(tenant=tenant)
    assert [m.text for m in conversation.messages.filter(role=Message.Role.USER)] == [
        "The parcel arrived damaged, can I get a replacement?",
        "Thank you!",
    ]
    assert second.header("References").split()[:2] == [first_id, our_id]
    assert second.header("Subject") == "Re: Damaged parcel"


def test_an_email_marked_unread_again_is_not_stored_twice(make_tenant, llm, smtp, dovecot):
    tenant, _ = make_tenant()
    account = mailbox_account(tenant, smtp, dovecot)
    dovecot.append(customer_email("Do you ship to Norway?"))
    assert mailbox_poll(account_id=str(account.pk)) == 1
    replies_to(smtp, 1)

    dovecot.mark_all_unseen()  # as if the last poll had died before marking it read
    assert mailbox_poll(account_id=str(account.pk)) == 1

    assert dovecot.unseen() == 0
    assert InboundEvent.objects.count() == 1
    assert Message.objects.filter(role=Message.Role.USER).count() == 1
    assert len(llm.reply_requests()) == 1


def test_auto_replies_and_bounces_in_the_mailbox_get_no_answer(make_tenant, llm, smtp, dovecot):
    tenant, _ = make_tenant()
    account = mailbox_account(tenant, smtp, dovecot)
    dovecot.append(
        customer_email("I am out of the office.", headers={"Auto-Submitted": "auto-replied"})
    )
    dovecot.append(
        customer_email(
            "Delivery to the following recipient failed permanently.",
            sender="Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        )
    )

    assert mailbox_poll(account_id=str(account.pk)) == 2

    assert dovecot.unseen() == 0
    details = sorted(InboundEvent.objects.values_list("state", "detail"))
    assert details == [("ignored", "auto-submitted"), ("ignored", "mailer daemon")]
    assert not Conversation.objects.exists()
    assert not llm.reply_requests()
    assert not smtp.mails


def test_one_poll_per_mailbox_at_a_time(make_tenant, llm, smtp, dovecot):
    tenant, _ = make_tenant()
    account = mailbox_account(tenant, smtp, dovecot)
    dovecot.append(customer_email("Hello?"))
    lock = get_redis().lock(redis_key("email-poll", account.pk), timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert mailbox_poll(account_id=str(account.pk)) == 0
        assert dovecot.unseen() == 1
        assert not InboundEvent.objects.exists()
    finally:
        lock.release()
    assert mailbox_poll(account_id=str(account.pk)) == 1


def test_a_refused_login_leaves_the_mail_unread(make_tenant, llm, smtp, dovecot):
    tenant, _ = make_tenant()
    account = mailbox_account(tenant, smtp, dovecot, password="not-the-password")
    dovecot.append(customer_email("Hello?"))

    with pytest.raises(MailboxUnavailable) as refused:
        mailbox_poll(account_id=str(account.pk))

    assert "not-the-password" not in str(refused.value)
    assert dovecot.unseen() == 1
    assert not InboundEvent.objects.exists()


def test_the_beat_task_polls_every_mailbox_channel(make_tenant, llm, smtp, dovecot):
    tenant, _ = make_tenant()
    account = mailbox_account(tenant, smtp, dovecot)
    email_account(tenant, smtp.port)  # forwarding only: no mailbox to read
    other_tenant, _ = make_tenant()
    inactive = mailbox_account(other_tenant, smtp, dovecot)
    inactive.is_active = False
    inactive.save(update_fields=["is_active"])
    dovecot.append(customer_email("Is the shop open on Sunday?"))

    assert mailboxes_to_poll() == [str(account.pk)]
    assert email_poll() == 1  # the beat's task: one poll job queued per mailbox

    wait_until(lambda: dovecot.unseen() == 0, timeout=15, message="the mailbox to be read")
    replies_to(smtp, 1)
    assert InboundEvent.objects.get().channel_account_id == account.pk
    assert django_settings.CELERY_BEAT_SCHEDULE["email-poll"]["task"] == "conversations.email_poll"
