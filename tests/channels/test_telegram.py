"""A Telegram conversation from end to end: an Update posted to the webhook, processed by a real
Celery worker, answered by the scripted model, delivered through the outbox to a fake Bot API
on loopback (split at 4096 characters, retried after Telegram's `retry_after`)."""

from collections.abc import Iterator
from typing import Any

import pytest

from conversations.models import (
    ChannelMessageRef,
    Contact,
    Conversation,
    InboundEvent,
    Message,
    OutboundDelivery,
)
from conversations.notices import notice
from tests.channels.notice_text import without_notice
from tests.channels.test_telegram_webhook import post_update, telegram_account
from tests.support import fake_telegram as tg
from tests.support.llm_server import Reply
from tests.support.provider_server import ProviderServer
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]

CHAT = str(tg.PERSON["id"])


def chat_replies(bot: Any, chat: int | str) -> list[str]:
    """What the bot's messages in a chat show now, less the first reply's privacy notice."""
    return [without_notice(text) for text in bot.chat_texts(chat)]


@pytest.fixture
def bot() -> tg.FakeBotApi:
    return tg.FakeBotApi()


@pytest.fixture
def telegram(bot: tg.FakeBotApi, settings: Any) -> Iterator[ProviderServer]:
    with tg.bot_api_serving(bot, settings) as server:
        yield server


def sent_texts(server: ProviderServer) -> list[str]:
    return [without_notice(r.json["text"]) for r in server.received("/sendMessage")]


def delivered(message_count: int = 1) -> list[OutboundDelivery]:
    def done() -> list[OutboundDelivery]:
        rows = list(OutboundDelivery.objects.filter(state="sent").select_related("message"))
        return rows if len(rows) >= message_count else []

    return wait_until(done, timeout=30, message=f"{message_count} sent deliveries")


def test_an_update_gets_the_assistant_answer_by_send_message(
    make_tenant: Any, llm: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    account = telegram_account(make_tenant()[0])
    llm.enqueue(Reply(text="Your order ships tomorrow."))
    assert post_update(account, tg.message_update(7001)).status_code == 200
    [delivery] = delivered()
    assert chat_replies(bot, CHAT) == ["Your order ships tomorrow."]
    sends = telegram.received("/sendMessage")
    assert sends[-1].path == f"/bot{tg.BOT_TOKEN}/sendMessage"
    assert sends[-1].json["chat_id"] == CHAT
    assert without_notice(sends[-1].json["text"]) == "Your order ships tomorrow."
    assert telegram.received("/sendChatAction")[0].json == {"chat_id": CHAT, "action": "typing"}
    assert delivery.message.text == "Your order ships tomorrow."
    contact = Contact.objects.get(channel="telegram")
    assert (contact.channel_user_id, contact.name) == (CHAT, "Ada Lovelace")
    conversation = Conversation.objects.get()
    assert (conversation.channel_account_id, conversation.channel_thread) == (account.pk, CHAT)
    visitor = Message.objects.get(role="user")
    assert visitor.text == "Hello, where is my order?"
    refs = ChannelMessageRef.objects.filter(message=delivery.message, direction="out")
    assert {ref.provider_ref for ref in refs} == set(delivery.provider_message_ids)


def test_a_9000_character_reply_is_sent_as_three_messages_within_the_limit(
    make_tenant: Any, llm: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    account = telegram_account(make_tenant()[0])
    paragraph = ("All parcels are tracked from our warehouse to your door. " * 16).strip()
    text = "\n\n".join([paragraph] * 10)
    assert len(text) > 9000
    llm.enqueue(Reply(text=text, tokens=[text]))
    post_update(account, tg.message_update(7002))
    [delivery] = delivered()
    wait_until(lambda: len(chat_replies(bot, CHAT)) >= 3, timeout=10, message="three messages")
    texts = chat_replies(bot, CHAT)
    assert len(texts) == 3
    assert all(len(part) <= 4096 for part in texts)
    assert "\n\n".join(texts) == delivery.message.text.strip() == text
    assert len(delivery.provider_message_ids) == 3


def test_a_redelivered_update_gets_one_reply(
    make_tenant: Any, llm: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    account = telegram_account(make_tenant()[0])
    llm.enqueue(Reply(text="Only once."), Reply(text="Twice!"))
    for _ in range(3):
        assert post_update(account, tg.message_update(7003)).status_code == 200
    delivered()
    wait_until(
        lambda: InboundEvent.objects.filter(state="processed").exists(),
        timeout=10,
        message="the update processed",
    )
    assert InboundEvent.objects.count() == 1
    assert Message.objects.filter(role="user").count() == 1
    assert Message.objects.filter(role="assistant").count() == 1
    assert chat_replies(bot, CHAT) == ["Only once."]


def test_a_429_is_retried_after_telegrams_retry_after(
    make_tenant: Any, llm: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    account = telegram_account(make_tenant()[0])
    telegram.fail_next("/sendMessage", status=429, body=tg.too_many_requests(1))
    llm.enqueue(Reply(text="After a short wait."))
    post_update(account, tg.message_update(7004))
    [delivery] = delivered()
    assert delivery.attempts == 2
    sends = telegram.received("/sendMessage")
    assert [without_notice(r.json["text"]) for r in sends] == [
        "After a short wait.",
        "After a short wait.",
    ]
    assert chat_replies(bot, CHAT) == ["After a short wait."]


def test_a_blocked_bot_fails_the_delivery_for_good_without_the_token_in_the_error(
    make_tenant: Any, llm: Any, telegram: ProviderServer
) -> None:
    account = telegram_account(make_tenant()[0])
    telegram.fail_next(
        "/sendMessage",
        status=403,
        body={
            "ok": False,
            "error_code": 403,
            "description": "Forbidden: bot was blocked by the user",
        },
        times=5,
    )
    llm.enqueue(Reply(text="You will never see this."))
    post_update(account, tg.message_update(7005))
    failed = wait_until(
        lambda: OutboundDelivery.objects.filter(state="failed").first(),
        timeout=30,
        message="a failed delivery",
    )
    assert (failed.attempts, failed.last_status) == (1, 403)
    assert "blocked by the user" in failed.last_error
    assert tg.BOT_TOKEN not in failed.last_error


def test_a_photo_with_a_caption_is_answered_and_its_update_stored(
    make_tenant: Any, llm: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    account = telegram_account(make_tenant()[0])
    llm.enqueue(Reply(text="I cannot see pictures yet; a person will look at it."))
    post_update(account, tg.photo_update(7006))
    delivered(2)
    # The stored message names the photo kept for agents; the caption is answered, and the
    # person is told that the picture itself is not read.
    assert Message.objects.get(role="user").text == "Is this the right cable?\n[image]"
    assert sorted(chat_replies(bot, CHAT)) == sorted(
        [notice("unreadable", "en"), "I cannot see pictures yet; a person will look at it."]
    )
    event = InboundEvent.objects.get()
    assert (event.provider_event_id, event.state) == ("7006", "processed")


def test_a_voice_note_without_text_is_processed_with_its_file_kept_in_the_update(
    make_tenant: Any, llm: Any, telegram: ProviderServer
) -> None:
    account = telegram_account(make_tenant()[0])
    llm.enqueue(Reply(text="I cannot listen to voice notes; could you write it?"))
    post_update(account, tg.voice_update(7007))
    event = wait_until(
        lambda: InboundEvent.objects.filter(state__in=["processed", "failed"]).first(),
        timeout=15,
        message="the voice note processed",
    )
    assert event.state == "processed"
    assert event.message is not None
    assert event.message.role == "user"
