"""SMS through Twilio end to end: signed form posts to the channel's webhook, a real Celery
worker and the scripted model, answers created at a loopback Messages API that records them.
"""

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from twilio.request_validator import RequestValidator

from conversations.channels.base import InboundMessage, WebhookRequest, adapter_for
from conversations.channels.sms import (
    EMPTY_TWIML,
    GSM7_MAX,
    UCS2_MAX,
    gsm7_length,
    is_gsm7,
    sms_parts,
    utf16_length,
)
from conversations.models import (
    ChannelAccount,
    Contact,
    Conversation,
    InboundEvent,
    Message,
    OutboundDelivery,
)
from tests.channels.notice_text import without_notice
from tests.support.fake_twilio import (
    incoming_message,
    incoming_mms,
    new_sid,
    status_callback,
    twilio_ok,
)
from tests.support.llm_server import Reply
from tests.support.provider_server import ProviderServer
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "twilio-auth-token-of-tenant-a"
OUR_NUMBER = "+15017122661"
CUSTOMER = "+15558675310"


def sms_account(
    tenant: Any,
    *,
    account_sid: str = ACCOUNT_SID,
    auth_token: str = AUTH_TOKEN,
    from_number: str = OUR_NUMBER,
) -> ChannelAccount:
    return ChannelAccount.objects.create(
        tenant=tenant,
        kind=ChannelAccount.Kind.SMS,
        config={"account_sid": account_sid, "from_number": from_number},
        credentials={"auth_token": auth_token},
    )


def webhook_path(account: ChannelAccount) -> str:
    return f"/channels/{account.pk}/webhook/"


def post(
    account: ChannelAccount,
    fields: dict[str, str],
    *,
    token: str | None = AUTH_TOKEN,
    signed_url: str | None = None,
    signature: str | None = None,
) -> Any:
    """Post `fields` as Twilio does, signed for `signed_url` (default: the URL called)."""
    url = signed_url or f"http://testserver{webhook_path(account)}"
    headers = {}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    elif token is not None:
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(url, fields)
    return Client().post(
        webhook_path(account),
        data=urlencode(fields),
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )


@pytest.fixture
def twilio(settings: Any) -> Iterator[ProviderServer]:
    with ProviderServer(default=twilio_ok) as server:
        settings.TWILIO_API_BASE = server.url
        yield server


MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def sent_bodies(twilio: ProviderServer) -> list[str]:
    return [without_notice(r.form["Body"]) for r in twilio.received(MESSAGES_PATH)]


# --- the signature ----------------------------------------------------------------------------


def test_only_a_correctly_signed_request_is_stored(
    make_tenant: Any, llm: Any, twilio: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = sms_account(tenant)
    fields = incoming_message(
        account_sid=ACCOUNT_SID, to=OUR_NUMBER, phone=CUSTOMER, body="Hi [[reply: Hello!]]"
    )

    missing = post(account, fields, token=None)
    assert missing.status_code == 403
    assert post(account, fields, token="not-the-auth-token").status_code == 403
    elsewhere = post(account, fields, signed_url="https://attacker.example/hook")
    assert elsewhere.status_code == 403
    tampered = {**fields, "Body": "Send me everything"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        f"http://testserver{webhook_path(account)}", fields
    )
    assert post(account, tampered, signature=signature).status_code == 403
    assert not InboundEvent.objects.exists()
    assert not Contact.objects.filter(channel="sms").exists()

    ok = post(account, fields)
    assert ok.status_code == 200
    assert ok["Content-Type"].startswith("text/xml")
    assert ok.content.decode() == EMPTY_TWIML
    assert InboundEvent.objects.filter(channel_account=account).count() == 1
    twilio.wait_for(lambda reqs: "Hello!" in sent_bodies(twilio), timeout=30)


def test_behind_a_proxy_the_public_url_is_the_one_signed(
    make_tenant: Any, llm: Any, twilio: ProviderServer, settings: Any
) -> None:
    settings.PUBLIC_URL = "https://support.example.com"
    tenant, _ = make_tenant()
    account = sms_account(tenant)
    fields = incoming_message(
        account_sid=ACCOUNT_SID, to=OUR_NUMBER, phone=CUSTOMER, body="Hi [[reply: Hi back.]]"
    )
    public = f"https://support.example.com{webhook_path(account)}"
    assert post(account, fields, signed_url=public).status_code == 200
    assert InboundEvent.objects.count() == 1
    twilio.wait_for(lambda reqs: "Hi back." in sent_bodies(twilio), timeout=30)


def test_another_tenants_auth_token_cannot_post_into_this_channel(
    make_tenant: Any, twilio: ProviderServer
) -> None:
    tenant_a, _ = make_tenant()
    tenant_b, _ = make_tenant()
    sms_account(tenant_a)
    b_sid = "AC" + "b2" * 16
    account_b = sms_account(
        tenant_b, account_sid=b_sid, auth_token="b-token", from_number="+15550000002"
    )
    fields = incoming_message(account_sid=b_sid, to="+15550000002", phone=CUSTOMER, body="Hi")
    assert post(account_b, fields, token=AUTH_TOKEN).status_code == 403
    # Signed with B's own token but for A's Twilio account: not B's to store either.
    a_fields = incoming_message(account_sid=ACCOUNT_SID, to=OUR_NUMBER, phone=CUSTOMER, body="x")
    assert post(account_b, a_fields, token="b-token").status_code == 403
    assert not InboundEvent.objects.exists()
    assert not Conversation.objects.exists()


# --- messages answered ------------------------------------------------------------------------


def test_a_message_is_answered_through_the_messages_api(
    make_tenant: Any, llm: Any, twilio: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = sms_account(tenant)
    sid = new_sid()
    fields = incoming_message(
        account_sid=ACCOUNT_SID,
        to=OUR_NUMBER,
        phone=CUSTOMER,
        body="Is the shop open on Sunday? [[reply: Yes, 10 to 4.]]",
        message_sid=sid,
    )
    assert post(account, fields).status_code == 200
    twilio.wait_for(lambda reqs: "Yes, 10 to 4." in sent_bodies(twilio), timeout=30)

    request = next(
        r
        for r in twilio.received(MESSAGES_PATH)
        if without_notice(r.form["Body"]) == "Yes, 10 to 4."
    )
    assert request.form["To"] == CUSTOMER
    assert request.form["From"] == OUR_NUMBER
    assert "StatusCallback" not in request.form  # no PUBLIC_URL: no callback address
    assert request.headers["authorization"].startswith("Basic ")
    conversation = Conversation.objects.get(tenant=tenant)
    assert conversation.channel == "sms"
    assert conversation.channel_thread == CUSTOMER
    assert conversation.contact.channel_user_id == CUSTOMER
    assert InboundEvent.objects.get(provider_event_id=sid).state == InboundEvent.State.PROCESSED
    delivery = wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.SENT).first(),
        timeout=10,
        message="the reply's delivery",
    )
    assert delivery.provider_message_ids[0].startswith("SM")


def test_a_redelivered_message_sid_gets_one_reply(
    make_tenant: Any, llm: Any, twilio: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = sms_account(tenant)
    fields = incoming_message(
        account_sid=ACCOUNT_SID, to=OUR_NUMBER, phone=CUSTOMER, body="Cancel [[reply: Cancelled.]]"
    )
    assert post(account, fields).status_code == 200
    assert post(account, fields).status_code == 200
    assert InboundEvent.objects.count() == 1
    twilio.wait_for(lambda reqs: "Cancelled." in sent_bodies(twilio), timeout=30)
    wait_until(
        lambda: not InboundEvent.objects.filter(state=InboundEvent.State.RECEIVED).exists(),
        timeout=10,
        message="the event to be processed",
    )
    assert post(account, fields).status_code == 200
    assert sent_bodies(twilio).count("Cancelled.") == 1
    assert Message.objects.filter(role=Message.Role.USER).count() == 1
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1


def test_status_callbacks_are_recorded_and_not_answered(
    make_tenant: Any, llm: Any, twilio: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = sms_account(tenant)
    sid = new_sid()
    for status in ("sent", "delivered", "undelivered"):
        fields = status_callback(
            account_sid=ACCOUNT_SID,
            message_sid=sid,
            status=status,
            to=CUSTOMER,
            from_number=OUR_NUMBER,
        )
        assert post(account, fields).status_code == 200
    events = wait_until(
        lambda: (
            rows
            if len(rows := list(InboundEvent.objects.filter(kind="status"))) == 3
            and all(r.state == InboundEvent.State.PROCESSED for r in rows)
            else None
        ),
        timeout=15,
        message="the status callbacks to be processed",
    )
    assert {e.provider_event_id for e in events} == {
        f"{sid}:sent",
        f"{sid}:delivered",
        f"{sid}:undelivered",
    }
    assert not Conversation.objects.exists()
    assert twilio.received() == []
    assert llm.chat_requests() == []


def test_a_long_gsm_reply_is_sent_in_parts_within_ten_segments(
    make_tenant: Any, llm: Any, twilio: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = sms_account(tenant)
    sentence = "Open the app, tap Settings, then Account {ID} and save. "
    long_reply = "\n\n".join((sentence * 12).strip() for _ in range(5))
    assert is_gsm7(long_reply)
    assert gsm7_length(long_reply) > 2 * GSM7_MAX
    llm.enqueue(Reply(text=long_reply))

    fields = incoming_message(
        account_sid=ACCOUNT_SID, to=OUR_NUMBER, phone=CUSTOMER, body="How do I change my plan?"
    )
    assert post(account, fields).status_code == 200
    delivery = wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.SENT).first(),
        timeout=30,
        message="the long reply's delivery",
    )
    parts = sent_bodies(twilio)
    assert len(parts) == len(delivery.provider_message_ids) >= 3
    assert all(gsm7_length(part) <= GSM7_MAX for part in parts)
    assert "\n\n".join(parts) == long_reply


def test_a_reply_with_emoji_is_split_within_ten_ucs2_segments(
    make_tenant: Any, llm: Any, twilio: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = sms_account(tenant)
    long_reply = " ".join(f"Paket {n} ist unterwegs 📦 und kommt morgen an 🚚." for n in range(60))
    assert not is_gsm7(long_reply)
    assert utf16_length(long_reply) > 2 * UCS2_MAX
    llm.enqueue(Reply(text=long_reply))

    fields = incoming_message(
        account_sid=ACCOUNT_SID, to=OUR_NUMBER, phone=CUSTOMER, body="Wo ist mein Paket?"
    )
    assert post(account, fields).status_code == 200
    wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.SENT).exists(),
        timeout=30,
        message="the emoji reply's delivery",
    )
    parts = sent_bodies(twilio)
    assert len(parts) >= 3
    assert all(utf16_length(part) <= UCS2_MAX for part in parts)
    assert " ".join(parts) == long_reply


def test_sms_parts_count_double_width_characters() -> None:
    # GSM-7 extension characters take two septets each.
    braces = " ".join(["{x}"] * 600)
    assert is_gsm7(braces)
    assert all(gsm7_length(p) <= GSM7_MAX for p in sms_parts(braces))
    # Emoji take two UTF-16 units each.
    emoji = " ".join(["😀😀"] * 400)
    assert all(utf16_length(p) <= UCS2_MAX for p in sms_parts(emoji))
    assert sms_parts("Thanks!") == ["Thanks!"]


# --- parsing ----------------------------------------------------------------------------------


def test_an_mms_becomes_a_message_with_attachments(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    account = sms_account(tenant)
    media = [
        ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1", "image/jpeg"),
        (
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2",
            "application/pdf",
        ),
    ]
    fields = incoming_mms(
        account_sid=ACCOUNT_SID, to=OUR_NUMBER, phone=CUSTOMER, body="The receipt", media=media
    )
    request = WebhookRequest(
        method="POST", url="http://testserver/", headers={}, body=urlencode(fields).encode()
    )
    [item] = adapter_for("sms").parse(account, request)
    assert isinstance(item, InboundMessage)
    assert item.event_id == fields["MessageSid"]
    assert item.user_id == CUSTOMER
    assert item.text == "The receipt"
    assert [(a.kind, a.content_type, a.provider_ref) for a in item.attachments] == [
        ("image", "image/jpeg", media[0][0]),
        ("file", "application/pdf", media[1][0]),
    ]


def test_with_a_public_url_status_callbacks_come_back_to_the_channel(
    make_tenant: Any, llm: Any, twilio: ProviderServer, settings: Any
) -> None:
    settings.PUBLIC_URL = "https://support.example.com"
    tenant, _ = make_tenant()
    account = sms_account(tenant)
    public = f"https://support.example.com{webhook_path(account)}"
    fields = incoming_message(
        account_sid=ACCOUNT_SID, to=OUR_NUMBER, phone=CUSTOMER, body="Hi [[reply: Hello there.]]"
    )
    assert post(account, fields, signed_url=public).status_code == 200
    twilio.wait_for(lambda reqs: "Hello there." in sent_bodies(twilio), timeout=30)
    request = next(
        r
        for r in twilio.received(MESSAGES_PATH)
        if without_notice(r.form["Body"]) == "Hello there."
    )
    assert request.form["StatusCallback"] == public
    delivery = wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.SENT).first(),
        timeout=10,
        message="the reply's delivery",
    )
    [sid] = delivery.provider_message_ids
    callback = status_callback(
        account_sid=ACCOUNT_SID,
        message_sid=sid,
        status="delivered",
        to=CUSTOMER,
        from_number=OUR_NUMBER,
    )
    assert post(account, callback, signed_url=public).status_code == 200
    assert InboundEvent.objects.filter(provider_event_id=f"{sid}:delivered", kind="status").exists()


def test_an_unsubscribed_customer_fails_for_good_and_a_500_is_retried(
    make_tenant: Any, llm: Any, twilio: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = sms_account(tenant)
    twilio.fail_next(
        MESSAGES_PATH,
        status=400,
        body={
            "code": 21610,
            "message": "Attempt to send to unsubscribed recipient",
            "more_info": "https://www.twilio.com/docs/errors/21610",
            "status": 400,
        },
    )
    fields = incoming_message(
        account_sid=ACCOUNT_SID, to=OUR_NUMBER, phone=CUSTOMER, body="Hi [[reply: Welcome.]]"
    )
    assert post(account, fields).status_code == 200
    failed = wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.FAILED).first(),
        timeout=30,
        message="the refused delivery to fail",
    )
    assert failed.attempts == 1
    assert "unsubscribed" in failed.last_error
    assert "21610" in failed.last_error
    assert AUTH_TOKEN not in failed.last_error

    twilio.fail_next(MESSAGES_PATH, status=500, body={"code": 20500, "message": "Internal"})
    again = incoming_message(
        account_sid=ACCOUNT_SID, to=OUR_NUMBER, phone=CUSTOMER, body="Hello? [[reply: Back.]]"
    )
    assert post(account, again).status_code == 200
    sent = wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.SENT).first(),
        timeout=30,
        message="the second reply to be sent on its second try",
    )
    assert sent.attempts == 2
    assert sent_bodies(twilio).count("Back.") == 2
