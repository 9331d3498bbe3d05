"""WhatsApp (Cloud API) end to end: Meta's webhook (GET challenge, signed POSTs) through the
channel endpoint, a real Celery worker and the scripted model, answers sent to a loopback
Graph API that records them.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from conversations.channels.base import Ignored, InboundMessage, WebhookRequest, adapter_for
from conversations.models import (
    ChannelAccount,
    ChannelMessageRef,
    Contact,
    Conversation,
    InboundEvent,
    Message,
    OutboundDelivery,
)
from tests.channels.notice_text import without_notice
from tests.support.fake_whatsapp import (
    image_message,
    new_wamid,
    raw,
    sign,
    status_update,
    text_message,
    whatsapp_ok,
)
from tests.support.llm_server import Reply
from tests.support.provider_server import ProviderServer
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]

PHONE = "16505551234"
NUMBER_ID = "106540352242922"
APP_SECRET = "app-secret-of-tenant-a"
VERIFY_TOKEN = "verify-token-of-tenant-a"


def whatsapp_account(
    tenant: Any,
    *,
    number_id: str = NUMBER_ID,
    app_secret: str = APP_SECRET,
    verify_token: str = VERIFY_TOKEN,
) -> ChannelAccount:
    return ChannelAccount.objects.create(
        tenant=tenant,
        kind=ChannelAccount.Kind.WHATSAPP,
        config={"phone_number_id": number_id},
        credentials={
            "access_token": f"EAAG-token-{number_id}",
            "app_secret": app_secret,
            "verify_token": verify_token,
        },
    )


def webhook_url(account: ChannelAccount) -> str:
    return f"/channels/{account.pk}/webhook/"


def post(
    account: ChannelAccount, payload: dict[str, Any], *, secret: str | None = APP_SECRET
) -> Any:
    body = raw(payload)
    headers = {"X-Hub-Signature-256": sign(body, secret)} if secret is not None else {}
    return Client().post(
        webhook_url(account), data=body, content_type="application/json", headers=headers
    )


@pytest.fixture
def graph(settings: Any) -> Iterator[ProviderServer]:
    with ProviderServer(default=whatsapp_ok) as server:
        settings.WHATSAPP_API_BASE = server.url
        yield server


def sent_texts(graph: ProviderServer) -> list[str]:
    return [
        without_notice(r.json["text"]["body"]) for r in graph.received(f"/{NUMBER_ID}/messages")
    ]


def wait_for_text(graph: ProviderServer, text: str, timeout: float = 30) -> None:
    graph.wait_for(
        lambda reqs: any(
            r.path.endswith("/messages")
            and without_notice((r.json or {}).get("text", {}).get("body", "")) == text
            for r in reqs
        ),
        timeout=timeout,
    )


# --- the GET challenge and the signature ---------------------------------------------------


def test_the_challenge_is_echoed_for_the_right_verify_token_only(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    client = Client()
    ok = client.get(
        webhook_url(account),
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
    )
    assert ok.status_code == 200
    assert ok.content == b"1158201444"
    assert ok["Content-Type"].startswith("text/plain")
    wrong = client.get(
        webhook_url(account),
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1158201444"},
    )
    assert wrong.status_code == 403
    assert b"1158201444" not in wrong.content
    no_mode = client.get(
        webhook_url(account), {"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}
    )
    assert no_mode.status_code == 403


def test_only_a_correctly_signed_post_is_stored(
    make_tenant: Any, llm: Any, graph: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    payload = text_message(NUMBER_ID, phone=PHONE, text="Hello [[reply: Hi!]]")

    assert post(account, payload, secret=None).status_code == 401
    assert post(account, payload, secret="not-the-app-secret").status_code == 401
    tampered = raw(payload).replace(b"Hello", b"Howdy")
    forged = Client().post(
        webhook_url(account),
        data=tampered,
        content_type="application/json",
        headers={"X-Hub-Signature-256": sign(raw(payload), APP_SECRET)},
    )
    assert forged.status_code == 401
    assert not InboundEvent.objects.exists()
    assert not Contact.objects.filter(channel="whatsapp").exists()

    assert post(account, payload).status_code == 200
    assert InboundEvent.objects.filter(channel_account=account).count() == 1
    wait_for_text(graph, "Hi!")


def test_another_tenants_app_secret_cannot_post_into_this_channel(
    make_tenant: Any, graph: ProviderServer
) -> None:
    tenant_a, _ = make_tenant()
    tenant_b, _ = make_tenant()
    account_a = whatsapp_account(tenant_a)
    account_b = whatsapp_account(
        tenant_b, number_id="200000000000001", app_secret="b-secret", verify_token="b-verify"
    )
    into_b = text_message("200000000000001", phone=PHONE, text="Give me B's data")

    assert post(account_b, into_b, secret=APP_SECRET).status_code == 401
    assert not InboundEvent.objects.filter(tenant=tenant_b).exists()
    # A's own secret on A's URL, carrying B's number: not A's to answer, nothing stored.
    assert post(account_a, into_b, secret=APP_SECRET).status_code == 200
    assert not InboundEvent.objects.exists()
    # A's verify token does not answer B's challenge either.
    challenge = Client().get(
        webhook_url(account_b),
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "42"},
    )
    assert challenge.status_code == 403
    assert not Conversation.objects.filter(tenant=tenant_b).exists()


# --- messages answered ------------------------------------------------------------------------


def test_a_message_is_answered_through_the_graph_api(
    make_tenant: Any, llm: Any, graph: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    wamid = new_wamid()
    payload = text_message(
        NUMBER_ID, phone=PHONE, wamid=wamid, text="Where is my parcel? [[reply: It ships today.]]"
    )

    assert post(account, payload).status_code == 200
    wait_for_text(graph, "It ships today.")

    request = next(
        r for r in graph.received("/messages") if r.json["text"]["body"].startswith("It")
    )
    assert request.path == f"/{NUMBER_ID}/messages"
    assert request.headers["authorization"] == f"Bearer EAAG-token-{NUMBER_ID}"
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": PHONE,
        "type": "text",
        "text": {"preview_url": False, "body": request.json["text"]["body"]},
    }
    assert without_notice(request.json["text"]["body"]) == "It ships today."
    conversation = Conversation.objects.get(tenant=tenant)
    assert conversation.channel == "whatsapp"
    assert conversation.channel_account_id == account.pk
    assert conversation.channel_thread == PHONE
    assert conversation.contact.channel_user_id == PHONE
    assert conversation.contact.name == "Sheena Nelson"
    event = InboundEvent.objects.get(provider_event_id=wamid)
    assert event.state == InboundEvent.State.PROCESSED
    delivery = wait_until(
        lambda: OutboundDelivery.objects.filter(
            conversation=conversation, state=OutboundDelivery.State.SENT
        ).first(),
        timeout=10,
        message="the reply's delivery to be marked sent",
    )
    assert delivery.provider_message_ids[0].startswith("wamid.")
    refs = ChannelMessageRef.objects.filter(
        conversation=conversation, direction=ChannelMessageRef.Direction.OUTBOUND
    )
    assert {r.provider_ref for r in refs} >= set(delivery.provider_message_ids)


def test_a_redelivered_message_gets_one_reply(
    make_tenant: Any, llm: Any, graph: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    payload = text_message(NUMBER_ID, phone=PHONE, text="Refund please [[reply: Refund started.]]")

    assert post(account, payload).status_code == 200
    assert post(account, payload).status_code == 200  # Meta retries when it got no 200 in time
    assert InboundEvent.objects.count() == 1
    wait_for_text(graph, "Refund started.")
    wait_until(
        lambda: not InboundEvent.objects.filter(state=InboundEvent.State.RECEIVED).exists(),
        timeout=10,
        message="the event to be processed",
    )
    assert post(account, payload).status_code == 200  # and once more, after the reply
    assert sent_texts(graph).count("Refund started.") == 1
    assert Message.objects.filter(role=Message.Role.USER).count() == 1
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1


def test_statuses_are_recorded_and_not_answered(
    make_tenant: Any, llm: Any, graph: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    wamid = new_wamid()
    for status in ("sent", "delivered", "read", "failed"):
        assert (
            post(account, status_update(NUMBER_ID, wamid=wamid, status=status)).status_code == 200
        )
    events = wait_until(
        lambda: (
            rows
            if len(rows := list(InboundEvent.objects.filter(kind="status"))) == 4
            and all(r.state == InboundEvent.State.PROCESSED for r in rows)
            else None
        ),
        timeout=15,
        message="the four status reports to be processed",
    )
    assert {e.provider_event_id for e in events} == {
        f"{wamid}:sent",
        f"{wamid}:delivered",
        f"{wamid}:read",
        f"{wamid}:failed",
    }
    # A failure is noted with the provider's error (and on the delivery it is about, if any).
    assert {e.detail for e in events} == {
        "sent",
        "delivered",
        "read",
        "failed: 131047 Re-engagement message",
    }
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()
    assert graph.received() == []
    assert llm.chat_requests() == []


def test_a_long_reply_is_sent_in_parts_within_4096_characters(
    make_tenant: Any, llm: Any, graph: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    paragraphs = [
        f"Step {n}: " + ("check the settings page and save. " * 40).strip() for n in range(8)
    ]
    long_reply = "\n\n".join(paragraphs)
    assert len(long_reply) > 2 * 4096
    llm.enqueue(Reply(text=long_reply))

    assert (
        post(account, text_message(NUMBER_ID, phone=PHONE, text="How do I set it up?")).status_code
        == 200
    )
    graph.wait_for(lambda reqs: len(reqs) >= 3, timeout=30)
    delivery = wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.SENT).first(),
        timeout=10,
        message="the long reply's delivery",
    )
    parts = sent_texts(graph)
    assert len(parts) == len(delivery.provider_message_ids) >= 3
    assert all(0 < len(part) <= 4096 for part in parts)
    assert "\n\n".join(parts) == long_reply
    assert len(set(delivery.provider_message_ids)) == len(parts)


# --- parsing the documented payloads ----------------------------------------------------------


def test_an_image_with_a_caption_becomes_a_message_with_an_attachment(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    wamid = new_wamid()
    body = raw(
        image_message(
            NUMBER_ID,
            phone=PHONE,
            caption="My broken charger",
            media_id="1479537139650973",
            wamid=wamid,
        )
    )
    request = WebhookRequest(method="POST", url="http://testserver/", headers={}, body=body)
    [item] = adapter_for("whatsapp").parse(account, request)
    assert isinstance(item, InboundMessage)
    assert item.event_id == wamid
    assert item.user_id == PHONE
    assert item.thread == PHONE
    assert item.text == "My broken charger"
    assert item.user_name == "Sheena Nelson"
    [attachment] = item.attachments
    assert attachment.kind == "image"
    assert attachment.content_type == "image/jpeg"
    assert attachment.provider_ref == "1479537139650973"


def test_locations_voice_notes_and_reactions(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    base = text_message(NUMBER_ID, phone=PHONE, text="unused")
    value = base["entry"][0]["changes"][0]["value"]
    value["messages"] = [
        {
            "from": PHONE,
            "id": "wamid.location1",
            "timestamp": "1744344496",
            "type": "location",
            "location": {
                "address": "1 Hacker Way, Menlo Park, CA 94025",
                "latitude": 37.483253479003906,
                "longitude": -122.14960479736328,
                "name": "Main store",
            },
        },
        {
            "from": PHONE,
            "id": "wamid.voice1",
            "timestamp": "1744344496",
            "type": "audio",
            "audio": {
                "mime_type": "audio/ogg; codecs=opus",
                "id": "1003383421387256",
                "voice": True,
            },
        },
        {
            "from": PHONE,
            "id": "wamid.reaction1",
            "timestamp": "1744344496",
            "type": "reaction",
            "reaction": {"message_id": "wamid.earlier", "emoji": "\U0001f44d"},
        },
    ]
    request = WebhookRequest(method="POST", url="http://testserver/", headers={}, body=raw(base))
    location, voice, reaction = adapter_for("whatsapp").parse(account, request)
    assert isinstance(location, InboundMessage)
    assert location.text == "Main store, 1 Hacker Way, Menlo Park, CA 94025"
    assert location.attachments[0].kind == "location"
    assert location.attachments[0].provider_ref == "37.483253479003906,-122.14960479736328"
    assert isinstance(voice, InboundMessage)
    assert voice.text == ""
    assert voice.attachments[0].kind == "voice"
    assert voice.attachments[0].provider_ref == "1003383421387256"
    assert isinstance(reaction, Ignored)
    assert reaction.event_id == "wamid.reaction1"
