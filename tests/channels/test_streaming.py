"""Replies shown as they form on Telegram: one message posted with the first text, edited at
most once per interval while the scripted model streams slowly, and its final text set by the
outbox's delivery (an edit of that same message). Real Celery worker, fake Bot API.
"""

import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections, transaction

from conversations.channels.splitting import split_text
from conversations.channels.streaming import reply_stream_follow_run
from conversations.channels.telegram import MAX_CHARS, TelegramAdapter
from conversations.models import (
    ChannelMessageRef,
    Contact,
    Conversation,
    Message,
    OutboundDelivery,
    ReplyJob,
)
from conversations.stream_state import snapshot_clear, snapshot_seal, snapshot_write
from tests.channels.notice_text import without_notice
from tests.channels.test_telegram import CHAT, delivered
from tests.channels.test_telegram_webhook import post_update, telegram_account
from tests.support import fake_telegram as tg
from tests.support.llm_server import Reply
from tests.support.provider_server import ProviderServer
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]

INTERVAL = TelegramAdapter.interval


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


def slow_reply(words: int, *, per_token: float, word: str = "parcel") -> Reply:
    tokens = [f"{word}{i} " if i % 12 else f"{word}{i}. " for i in range(words)]
    return Reply(text="".join(tokens), tokens=tokens, token_interval=per_token)


def stored_reply() -> Message:
    return Message.objects.get(role="assistant")


def test_a_long_reply_is_posted_once_then_edited_at_most_once_per_interval(
    make_tenant: Any, llm: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    account = telegram_account(make_tenant()[0])
    llm.enqueue(slow_reply(50, per_token=0.1))
    started = time.monotonic()
    post_update(account, tg.message_update(8001))
    [delivery] = delivered()
    duration = time.monotonic() - started
    reply = stored_reply()
    final = reply.text.strip()
    assert final.startswith("parcel0")
    assert final.endswith("parcel49")
    sends, edits = bot.answered("sendMessage"), bot.answered("editMessageText")
    assert len(sends) == 1, "one message, posted when the reply began"
    assert final.startswith(sends[0][1]["text"])
    assert sends[0][1]["text"] != final
    # Streaming edits (all but the delivery's last one) are an interval apart at least.
    assert 2 <= len(edits) <= duration / INTERVAL + 2
    times = [sends[0][0]] + [at for at, _payload in edits[:-1]]
    assert all(b - a >= INTERVAL * 0.9 for a, b in itertools.pairwise(times))
    texts = [without_notice(payload["text"]) for _at, payload in edits]
    assert all(final.startswith(text.strip()) for text in texts)
    assert texts[-1] == final
    assert chat_replies(bot, CHAT) == [final]
    rows = ChannelMessageRef.objects.filter(message=reply, direction="out")
    refs = {row.provider_ref for row in rows}
    [posted] = [message_id for chat, message_id in bot.texts if chat == CHAT]
    assert refs == set(delivery.provider_message_ids) == {str(posted)}
    assert {payload["message_id"] for _at, payload in edits} == {posted}


def test_a_rate_limited_edit_is_skipped_never_retried(
    make_tenant: Any, llm: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    account = telegram_account(make_tenant()[0])
    telegram.fail_next("/editMessageText", status=429, body=tg.too_many_requests(1))
    llm.enqueue(slow_reply(45, per_token=0.1))
    post_update(account, tg.message_update(8002))
    delivered()
    final = stored_reply().text.strip()
    requested = [r.json["text"] for r in telegram.received("/editMessageText")]
    assert len(requested) >= 2
    refused = requested[0]
    assert refused != final
    assert requested.count(refused) == 1, "the refused edit was not sent again"
    assert chat_replies(bot, CHAT) == [final]


def test_a_streamed_reply_longer_than_a_message_ends_in_parts(
    make_tenant: Any, llm: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    account = telegram_account(make_tenant()[0])
    llm.enqueue(slow_reply(500, per_token=0.006, word="warehouse-shipment"))
    post_update(account, tg.message_update(8003))
    [delivery] = delivered()
    final = stored_reply().text
    assert len(final) > MAX_CHARS
    parts = split_text(final, MAX_CHARS)
    assert chat_replies(bot, CHAT) == parts
    edited = [payload["text"] for _at, payload in bot.answered("editMessageText")]
    assert edited
    assert all(len(text) <= MAX_CHARS for text in edited)
    assert len(bot.answered("sendMessage")) == len(parts)
    assert len(delivery.provider_message_ids) == len(parts)


def test_a_quick_reply_is_sent_whole_without_edits(
    make_tenant: Any, llm: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    account = telegram_account(make_tenant()[0])
    llm.enqueue(Reply(text="Yes, we ship to Norway."))
    post_update(account, tg.message_update(8004))
    delivered()
    wait_until(
        lambda: OutboundDelivery.objects.filter(state="sent").exists(),
        timeout=10,
        message="the delivery",
    )
    assert chat_replies(bot, CHAT) == ["Yes, we ship to Norway."]
    assert bot.answered("editMessageText") == []
    assert len(bot.answered("sendChatAction")) >= 1


def streaming_reply(account: Any, text: str) -> tuple[ReplyJob, Message]:
    """A reply job running with its reply streaming and `text` in its snapshot (no worker)."""
    contact = Contact.objects.create(
        tenant_id=account.tenant_id, channel="telegram", channel_user_id=CHAT
    )
    conversation = Conversation.objects.create(
        tenant_id=account.tenant_id,
        contact=contact,
        channel="telegram",
        channel_account=account,
        channel_thread=CHAT,
    )
    trigger = Message.objects.create(
        tenant_id=account.tenant_id, conversation=conversation, seq=1, role="user", text="Hi"
    )
    reply = Message.objects.create(
        tenant_id=account.tenant_id,
        conversation=conversation,
        seq=2,
        role="assistant",
        status=Message.Status.STREAMING,
    )
    job = ReplyJob.objects.create(
        tenant_id=account.tenant_id,
        conversation=conversation,
        trigger=trigger,
        reply=reply,
        state=ReplyJob.State.RUNNING,
    )
    snapshot_write(reply.pk, text=text, index=0)
    return job, reply


def test_a_reply_finishing_while_the_follower_opens_is_never_posted_by_it(
    make_tenant: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    """The reply is stored (uncommitted) just as the follower is about to post it: the follower
    waits for the reply's row, sees it complete, and posts nothing; the delivery sends it."""
    account = telegram_account(make_tenant()[0])
    job, reply = streaming_reply(account, "Your parcel")
    finishing, release = threading.Event(), threading.Event()

    def finish() -> None:
        try:
            with transaction.atomic():
                stored = Message.objects.get(pk=reply.pk)
                stored.status, stored.text = Message.Status.COMPLETE, "Your parcel left today."
                stored.save(update_fields=["status", "text"])  # as the reply's finish does
                ReplyJob.objects.filter(pk=job.pk).update(state=ReplyJob.State.DONE)
                finishing.set()
                release.wait(10)
        finally:
            connections.close_all()

    finisher = threading.Thread(target=finish)
    finisher.start()
    assert finishing.wait(10)
    # Committed while the follower waits on the reply's row lock (after its one interval).
    threading.Timer(INTERVAL + 1.0, release.set).start()
    started = time.monotonic()
    reply_stream_follow_run(job_id=job.pk)
    finisher.join(10)
    assert time.monotonic() - started >= INTERVAL
    assert bot.answered("sendMessage") == []
    assert bot.answered("editMessageText") == []
    assert not ChannelMessageRef.objects.filter(message=reply).exists()


def test_the_follower_records_the_posted_message_for_the_delivery(
    make_tenant: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    """Followed to the end by hand: posted once, then the reply is stored and its snapshot
    cleared, which ends the follow; the ref is the one the delivery will edit."""
    account = telegram_account(make_tenant()[0])
    job, reply = streaming_reply(account, "Your parcel")

    def finish_later() -> None:
        try:
            wait_until(lambda: bot.answered("sendMessage"), timeout=10, message="the post")
            snapshot_write(reply.pk, text="Your parcel left", index=1)
            wait_until(lambda: bot.answered("editMessageText"), timeout=10, message="an edit")
            Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE)
            snapshot_clear(reply.pk)
        finally:
            connections.close_all()

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    reply_stream_follow_run(job_id=job.pk)
    finisher.join(10)
    [(_at, posted)] = bot.answered("sendMessage")
    assert posted == {"chat_id": CHAT, "text": "Your parcel"}
    [ref] = ChannelMessageRef.objects.filter(message=reply, direction="out")
    assert bot.texts[(CHAT, int(ref.provider_ref))] == "Your parcel left"


def test_a_reply_cancelled_by_a_take_over_ends_the_follow_at_once(
    make_tenant: Any, telegram: ProviderServer, bot: tg.FakeBotApi
) -> None:
    """A take-over seals the snapshot (left to expire, not cleared) and fails the reply: the
    follower stops within an interval or two instead of watching the snapshot until it expires."""
    account = telegram_account(make_tenant()[0])
    job, reply = streaming_reply(account, "Your parcel")

    def take_over() -> None:
        try:
            wait_until(lambda: bot.answered("sendMessage"), timeout=10, message="the post")
            snapshot_seal(reply.pk)
            Message.objects.filter(pk=reply.pk).update(status=Message.Status.FAILED)
            ReplyJob.objects.filter(pk=job.pk).update(state=ReplyJob.State.CANCELLED)
        finally:
            connections.close_all()

    taker = threading.Thread(target=take_over)
    taker.start()
    started = time.monotonic()
    reply_stream_follow_run(job_id=job.pk)
    taker.join(10)
    assert time.monotonic() - started < INTERVAL * 4 + 2
    assert len(bot.answered("sendMessage")) == 1
    assert bot.answered("editMessageText") == []
