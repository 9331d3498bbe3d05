"""The Telegram adapter's outbound half against the fake Bot API: the streamed message edited
(an unchanged text is no error, a message gone is sent anew), Telegram's refusals mapped to
what the outbox retries, and the bot token never in a reason."""

from collections.abc import Iterator
from typing import Any

import pytest

from conversations.channels.base import DeliveryFailed, Outgoing, Sent
from conversations.channels.telegram import TelegramAdapter
from conversations.models import ChannelAccount, Conversation, Message
from tests.support import fake_telegram as tg
from tests.support.provider_server import ProviderServer
from tests.support.stack import free_port

CHAT = "555001"
adapter = TelegramAdapter()


@pytest.fixture
def bot() -> tg.FakeBotApi:
    return tg.FakeBotApi()


@pytest.fixture
def telegram(bot: tg.FakeBotApi, settings: Any) -> Iterator[ProviderServer]:
    with tg.bot_api_serving(bot, settings) as server:
        yield server


def account() -> ChannelAccount:
    return ChannelAccount(
        kind=ChannelAccount.Kind.TELEGRAM,
        credentials={"bot_token": tg.BOT_TOKEN, "webhook_secret": "s"},
    )


def outgoing(text: str, stream_ref: str = "") -> Outgoing:
    conversation = Conversation(channel="telegram", channel_thread=CHAT)
    return Outgoing(
        account=account(),
        conversation=conversation,
        message=Message(role=Message.Role.ASSISTANT, text=text),
        text=text,
        stream_ref=stream_ref,
    )


def test_the_streamed_message_is_edited_and_an_unchanged_text_is_no_error(
    telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    ref = adapter.stream_open(account(), outgoing("").conversation, "Your parcel")
    assert adapter.send(outgoing("Your parcel left today.", stream_ref=ref)) == Sent([ref])
    assert adapter.send(outgoing("Your parcel left today.", stream_ref=ref)) == Sent([ref])
    assert bot.chat_texts(CHAT) == ["Your parcel left today."]
    assert len(telegram.received("/sendMessage")) == 1
    assert len(telegram.received("/editMessageText")) == 2


def test_a_streamed_message_that_cannot_be_edited_is_sent_anew(
    telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    sent = adapter.send(outgoing("Here is the answer.", stream_ref="424242"))
    assert len(sent.provider_message_ids) == 1
    assert sent.provider_message_ids != ["424242"]
    assert bot.chat_texts(CHAT) == ["Here is the answer."]


def test_telegram_refusals_map_to_retries_or_permanent_failures(
    telegram: ProviderServer,
) -> None:
    telegram.fail_next("/sendMessage", status=429, body=tg.too_many_requests(7))
    with pytest.raises(DeliveryFailed) as limited:
        adapter.send(outgoing("Hi"))
    assert (limited.value.status, limited.value.retry_after) == (429, 7.0)
    assert not limited.value.permanent
    telegram.fail_next("/sendMessage", status=502, body={"ok": False, "description": "Bad Gateway"})
    with pytest.raises(DeliveryFailed) as down:
        adapter.send(outgoing("Hi"))
    assert (down.value.status, down.value.permanent) == (502, False)
    telegram.fail_next(
        "/sendMessage",
        status=400,
        body={"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
    )
    with pytest.raises(DeliveryFailed) as refused:
        adapter.send(outgoing("Hi"))
    assert refused.value.permanent
    assert "chat not found" in refused.value.reason
    for failed in (limited.value, down.value, refused.value):
        assert tg.BOT_TOKEN not in failed.reason


def test_an_unreachable_api_is_retried_and_the_token_is_not_in_the_reason(
    settings: Any,
) -> None:
    settings.TELEGRAM_API_BASE = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DeliveryFailed) as failed:
        adapter.send(outgoing("Hi"))
    assert not failed.value.permanent
    assert tg.BOT_TOKEN not in failed.value.reason
    assert "sendMessage" in failed.value.reason
    adapter.typing(account(), outgoing("").conversation)  # best effort: no error


def test_a_channel_without_a_token_fails_for_good(telegram: ProviderServer) -> None:
    no_token = outgoing("Hi")
    no_token.account.credentials = {}
    with pytest.raises(DeliveryFailed) as failed:
        adapter.send(no_token)
    assert failed.value.permanent
    assert telegram.requests == []
