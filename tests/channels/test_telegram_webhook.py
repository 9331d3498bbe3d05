"""The Telegram webhook: the secret token checked on every Update (nothing stored without it,
another tenant's secret included), each kind of Update parsed into what is stored.

No worker here: the stored events stay as received, so their parsed payload can be read.
"""

import json
from typing import Any

import pytest
from django.test import Client

from conversations.channels.base import Ignored, InboundMessage
from conversations.channels.telegram import START_GREETING, update_item
from conversations.models import ChannelAccount, Contact, Conversation, InboundEvent, Message
from tests.support import fake_telegram as tg

pytestmark = pytest.mark.django_db

SECRET = "tg-webhook-secret-a"


def telegram_account(tenant: Any, secret: str = SECRET, token: str = tg.BOT_TOKEN) -> Any:
    return ChannelAccount.objects.create(
        tenant=tenant,
        kind=ChannelAccount.Kind.TELEGRAM,
        config={"bot_username": "shop_help_bot"},
        credentials={"bot_token": token, "webhook_secret": secret},
    )


def post_update(account: Any, update: dict[str, Any], secret: str | None = SECRET) -> Any:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    return Client().post(
        f"/channels/{account.pk}/webhook/",
        data=json.dumps(update).encode(),
        content_type="application/json",
        headers=headers,
    )


def nothing_stored() -> bool:
    return (
        not InboundEvent.objects.exists()
        and not Message.objects.exists()
        and not Conversation.objects.filter(channel="telegram").exists()
        and not Contact.objects.filter(channel="telegram").exists()
    )


def test_an_update_with_the_secret_is_stored_once_and_answered_with_empty_json(
    make_tenant: Any,
) -> None:
    account = telegram_account(make_tenant()[0])
    first = post_update(account, tg.message_update(9001))
    again = post_update(account, tg.message_update(9001))
    assert (first.status_code, first.content, first["Content-Type"]) == (
        200,
        b"{}",
        "application/json",
    )
    assert again.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.provider_event_id, event.kind, event.state) == ("9001", "message", "received")
    assert event.payload["text"] == "Hello, where is my order?"
    assert event.payload["user_id"] == event.payload["thread"] == str(tg.PERSON["id"])
    assert event.payload["user_name"] == "Ada Lovelace"


@pytest.mark.parametrize("secret", [None, "", "tg-webhook-secret-b", SECRET + "x", SECRET[:-1]])
def test_a_wrong_or_missing_secret_is_refused_with_401_and_nothing_stored(
    make_tenant: Any, secret: str | None
) -> None:
    account = telegram_account(make_tenant()[0])
    response = post_update(account, tg.message_update(9002), secret=secret)
    assert response.status_code == 401
    assert SECRET not in response.content.decode()
    assert nothing_stored()


def test_tenant_a_secret_cannot_post_into_tenant_b_channel(make_tenant: Any) -> None:
    account_a = telegram_account(make_tenant()[0], secret="secret-of-tenant-a")
    account_b = telegram_account(make_tenant()[0], secret="secret-of-tenant-b")
    refused = post_update(account_b, tg.message_update(9003), secret="secret-of-tenant-a")
    assert refused.status_code == 401
    assert nothing_stored()
    accepted = post_update(account_a, tg.message_update(9003), secret="secret-of-tenant-a")
    assert accepted.status_code == 200
    assert list(InboundEvent.objects.values_list("channel_account_id", flat=True)) == [account_a.pk]


def test_an_account_without_a_webhook_secret_accepts_nothing(make_tenant: Any) -> None:
    account = telegram_account(make_tenant()[0], secret="")
    assert post_update(account, tg.message_update(9004), secret="").status_code == 401
    assert nothing_stored()


def test_a_malformed_update_is_refused_with_400(make_tenant: Any) -> None:
    account = telegram_account(make_tenant()[0])
    response = Client().post(
        f"/channels/{account.pk}/webhook/",
        data=b"{not json",
        content_type="application/json",
        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    assert response.status_code == 400
    assert post_update(account, {"message": {}}).status_code == 400
    assert nothing_stored()


def test_a_photo_is_stored_with_its_largest_size_file_id_and_caption(make_tenant: Any) -> None:
    account = telegram_account(make_tenant()[0])
    assert post_update(account, tg.photo_update(9005)).status_code == 200
    payload = InboundEvent.objects.get(provider_event_id="9005").payload
    assert payload["text"] == "Is this the right cable?"
    [photo] = payload["attachments"]
    assert (photo["kind"], photo["provider_ref"], photo["content_type"], photo["size"]) == (
        "image",
        "AgACAgQAAxkBAAIBlarge",
        "image/jpeg",
        120512,
    )


def test_updates_parse_into_messages_and_ignored_items() -> None:
    voice = update_item(tg.voice_update(1))
    assert isinstance(voice, InboundMessage)
    assert voice.text == ""
    assert [(a.kind, a.provider_ref, a.content_type) for a in voice.attachments] == [
        ("voice", "AwACAgQAAxkBAAIBvoice", "audio/ogg")
    ]
    document = update_item(tg.document_update(2))
    assert isinstance(document, InboundMessage)
    [file] = document.attachments
    assert (file.kind, file.filename, file.content_type, file.provider_ref) == (
        "file",
        "invoice-1042.pdf",
        "application/pdf",
        "BQACAgQAAxkBAAIBdoc",
    )
    start = update_item(tg.start_update(3))
    assert isinstance(start, InboundMessage)
    assert start.text == START_GREETING
    group = update_item(tg.group_update(4))
    assert isinstance(group, InboundMessage)
    assert (group.user_id, group.thread) == (str(tg.PERSON["id"]), "-1001234567890")
    for ignored in (tg.edited_update(5), tg.bot_update(6), tg.channel_post_update(7)):
        item = update_item(ignored)
        assert isinstance(item, Ignored), ignored
        assert item.event_id == str(ignored["update_id"])


def test_an_edit_is_recorded_as_ignored_and_never_processed(make_tenant: Any) -> None:
    account = telegram_account(make_tenant()[0])
    assert post_update(account, tg.edited_update(9006)).status_code == 200
    event = InboundEvent.objects.get()
    assert (event.state, event.payload) == ("ignored", {})
    assert not Message.objects.exists()
