"""Slack end to end, in process: a signed Events API request on the real webhook, a real Celery
worker, the scripted model, and the reply delivered through the outbox to a stand-in Web API.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from conversations.models import (
    ChannelAccount,
    Conversation,
    InboundEvent,
    Message,
    OutboundDelivery,
)
from tests.channels.notice_text import without_notice
from tests.support import fake_slack
from tests.support.fake_slack import (
    SlackWebApi,
    body_of,
    event_callback,
    request_payload,
    signed_headers,
)
from tests.support.llm_server import Reply
from tests.support.provider_server import ProviderServer
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-123-456-abcdef"
DM_CHANNEL = "D024BE91L"


@pytest.fixture
def web() -> SlackWebApi:
    return SlackWebApi(token=TOKEN)


@pytest.fixture
def slack_api(web: SlackWebApi, settings: Any) -> Iterator[ProviderServer]:
    with ProviderServer(default=web.respond) as server:
        settings.SLACK_API_BASE = server.url + "/api"
        yield server


@pytest.fixture
def account(make_tenant: Any) -> ChannelAccount:
    tenant, _ = make_tenant()
    return ChannelAccount.objects.create(
        tenant=tenant,
        kind=ChannelAccount.Kind.SLACK,
        config={"bot_user_id": "U0LAN0Z89", "team_id": "T0001"},
        credentials={"bot_token": TOKEN, "signing_secret": SECRET},
    )


def deliver_event(account: ChannelAccount, event: dict[str, Any], event_id: str, **kw: Any) -> None:
    body = body_of(event_callback(event, event_id=event_id))
    response = Client().post(
        f"/channels/{account.pk}/webhook/",
        data=body,
        content_type="application/json",
        headers=signed_headers(SECRET, body, **kw),
    )
    assert response.status_code == 200


def sent_deliveries(account: ChannelAccount, n: int = 1) -> list[OutboundDelivery]:
    def done() -> list[OutboundDelivery] | None:
        rows = list(OutboundDelivery.objects.filter(channel_account=account).order_by("id"))
        settled = [r for r in rows if r.state != OutboundDelivery.State.PENDING]
        return rows if len(settled) >= n else None

    return wait_until(done, timeout=30, message=f"{n} Slack deliveries to settle")


def posts(server: ProviderServer) -> list[dict[str, Any]]:
    return [
        {**payload, "text": without_notice(payload.get("text", ""))}
        for payload in (request_payload(r) for r in server.received("/api/chat.postMessage"))
    ]


def test_a_redelivered_direct_message_gets_one_reply_in_the_same_flow(
    account: ChannelAccount, slack_api: ProviderServer, llm: Any
) -> None:
    event = fake_slack.direct_message("Where is my order? [[reply: It ships tomorrow.]]")
    deliver_event(account, event, "EvONE")
    deliver_event(account, event, "EvONE", retry_num=1)
    deliver_event(account, event, "EvONE", retry_num=2)
    (delivery,) = sent_deliveries(account)
    assert delivery.state == OutboundDelivery.State.SENT
    (post,) = posts(slack_api)
    assert post["channel"] == DM_CHANNEL
    assert "thread_ts" not in post  # a direct message is answered where it was written
    assert "It ships tomorrow." in post["text"]
    assert InboundEvent.objects.filter(channel_account=account).count() == 1
    conversation = Conversation.objects.get(channel_account=account)
    assert conversation.channel_thread == f"{DM_CHANNEL}:"
    roles = list(conversation.messages.order_by("seq").values_list("role", flat=True))
    assert roles.count(Message.Role.USER) == 1
    assert roles.count(Message.Role.ASSISTANT) == 1
    assert len(llm.reply_requests()) == 1
    assert delivery.provider_message_ids == ["1700000000.000001"]


def test_the_bot_own_message_is_not_answered(
    account: ChannelAccount, slack_api: ProviderServer, llm: Any
) -> None:
    deliver_event(account, fake_slack.bot_message("I am the bot"), "EvBOT")
    deliver_event(account, fake_slack.message_changed(), "EvEDIT")
    deliver_event(account, fake_slack.direct_message("Hi [[reply: Hello!]]"), "EvHUMAN")
    sent_deliveries(account)
    assert [p["text"] for p in posts(slack_api) if "Hello!" not in p["text"]] == []
    assert len(posts(slack_api)) == 1
    states = dict(
        InboundEvent.objects.filter(channel_account=account).values_list(
            "provider_event_id", "state"
        )
    )
    assert states == {"EvBOT": "ignored", "EvEDIT": "ignored", "EvHUMAN": "processed"}
    assert Message.objects.filter(role=Message.Role.USER).count() == 1
    assert len(llm.reply_requests()) == 1


def test_a_mention_in_a_thread_is_answered_in_that_thread(
    account: ChannelAccount, slack_api: ProviderServer, llm: Any
) -> None:
    event = fake_slack.app_mention(
        "Can I return shoes? [[reply: Yes, within 30 days.]]",
        ts="1515449600.000020",
        thread_ts="1515449522.000016",
    )
    deliver_event(account, event, "EvMENTION")
    sent_deliveries(account)
    (post,) = posts(slack_api)
    assert (post["channel"], post["thread_ts"]) == ("C123ABC456", "1515449522.000016")
    user_message = Message.objects.get(role=Message.Role.USER)
    assert user_message.text == "Can I return shoes? [[reply: Yes, within 30 days.]]"


def test_a_long_reply_is_split_into_messages_of_the_same_flow(
    account: ChannelAccount, slack_api: ProviderServer, llm: Any
) -> None:
    long_reply = "\n\n".join(f"Step {n}. " + "Check the order page. " * 140 for n in range(3))
    llm.enqueue(Reply(text=long_reply))
    event = fake_slack.direct_message("How do I return an item?")
    deliver_event(account, event, "EvLONG")
    (delivery,) = sent_deliveries(account)
    assert delivery.state == OutboundDelivery.State.SENT
    sent = posts(slack_api)
    assert len(sent) == 3
    assert all(len(p["text"]) <= 4000 for p in sent)
    assert [p["text"][:6] for p in sent] == ["Step 0", "Step 1", "Step 2"]
    assert {p["channel"] for p in sent} == {event["channel"]}
    assert not any("thread_ts" in p for p in sent)
    assert len(delivery.provider_message_ids) == 3


def test_a_rate_limited_reply_is_sent_again_after_retry_after(
    account: ChannelAccount, slack_api: ProviderServer, web: SlackWebApi, llm: Any
) -> None:
    web.rate_limit_next(retry_after=2)  # longer than the outbox's own first backoff (1 s)
    deliver_event(account, fake_slack.direct_message("Hi [[reply: Hello there.]]"), "EvRATE")
    slack_api.wait_for(lambda reqs: len(reqs) >= 2, timeout=30)
    (delivery,) = sent_deliveries(account)
    assert delivery.state == OutboundDelivery.State.SENT
    assert delivery.attempts == 2
    limited, accepted = web.calls_of("chat.postMessage")
    assert accepted - limited >= 1.9  # Slack's Retry-After was waited for
    assert ["Hello there." in p["text"] for p in posts(slack_api)] == [True, True]


def test_a_reply_slack_refuses_for_good_fails_at_once(
    account: ChannelAccount, slack_api: ProviderServer, llm: Any
) -> None:
    slack_api.fail_next(
        "/chat.postMessage", status=200, body={"ok": False, "error": "channel_not_found"}
    )
    deliver_event(account, fake_slack.direct_message("Hi [[reply: Hello.]]"), "EvGONE")
    (delivery,) = sent_deliveries(account)
    assert delivery.state == OutboundDelivery.State.FAILED
    assert delivery.attempts == 1
    assert delivery.last_error == "slack chat.postMessage: channel_not_found"
