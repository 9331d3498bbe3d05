"""The Slack adapter's outbound half, called directly against a stand-in Web API on loopback:
threaded posts, splitting, the streamed message's edits, and Slack's errors as DeliveryFailed."""

from collections.abc import Iterator
from typing import Any

import pytest

from conversations.channels.base import DeliveryFailed, InboundMessage, Outgoing, adapter_for
from conversations.channels.inbound import channel_contact, channel_conversation
from conversations.channels.slack import MAX_CHARS, slack_text
from conversations.models import ChannelAccount, Conversation, Message
from tests.support.fake_slack import SlackWebApi, request_payload
from tests.support.provider_server import ProviderServer

pytestmark = pytest.mark.django_db

TOKEN = "xoxb-123-456-abcdef"
CHANNEL = "C123ABC456"
THREAD_TS = "1515449522.000016"


@pytest.fixture
def web() -> SlackWebApi:
    return SlackWebApi(token=TOKEN)


@pytest.fixture
def slack_api(web: SlackWebApi, settings: Any) -> Iterator[ProviderServer]:
    with ProviderServer(default=web.respond) as server:
        settings.SLACK_API_BASE = server.url + "/api"
        yield server


def slack_conversation(make_tenant: Any, token: str = TOKEN) -> Conversation:
    tenant, _ = make_tenant()
    account = ChannelAccount.objects.create(
        tenant=tenant,
        kind=ChannelAccount.Kind.SLACK,
        config={"bot_user_id": "U0LAN0Z89"},
        credentials={"bot_token": token, "signing_secret": "s3cret"},
    )
    item = InboundMessage(event_id="Ev1", user_id="U123", thread=f"{CHANNEL}:{THREAD_TS}")
    contact = channel_contact(account=account, item=item)
    return channel_conversation(account=account, contact=contact, item=item)


def outgoing(conversation: Conversation, text: str, stream_ref: str = "") -> Outgoing:
    message = Message.objects.create(
        tenant_id=conversation.tenant_id,
        conversation=conversation,
        seq=1,
        role=Message.Role.ASSISTANT,
        text=text,
    )
    assert conversation.channel_account is not None
    return Outgoing(
        account=conversation.channel_account,
        conversation=conversation,
        message=message,
        text=text,
        stream_ref=stream_ref,
    )


def payloads(server: ProviderServer, method: str) -> list[dict[str, Any]]:
    return [request_payload(r) for r in server.received(f"/api/{method}")]


def test_a_reply_is_posted_in_its_thread_with_the_bot_token(
    make_tenant: Any, slack_api: ProviderServer
) -> None:
    conversation = slack_conversation(make_tenant)
    sent = adapter_for("slack").send(outgoing(conversation, "Your order ships tomorrow."))
    (request,) = slack_api.received("/api/chat.postMessage")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request_payload(request) == {
        "channel": CHANNEL,
        "thread_ts": THREAD_TS,
        "text": "Your order ships tomorrow.",
    }
    assert sent.provider_message_ids == ["1700000000.000001"]


def test_a_long_reply_is_split_at_4000_characters_on_paragraphs(
    make_tenant: Any, slack_api: ProviderServer
) -> None:
    conversation = slack_conversation(make_tenant)
    paragraphs = [f"Paragraph {n}. " + "word " * 600 for n in range(4)]  # ~3,000 chars each
    sent = adapter_for("slack").send(outgoing(conversation, "\n\n".join(paragraphs)))
    posted = payloads(slack_api, "chat.postMessage")
    assert len(posted) == 4
    assert all(len(p["text"]) <= MAX_CHARS for p in posted)
    assert [p["text"].split(".")[0] for p in posted] == [f"Paragraph {n}" for n in range(4)]
    assert {p["thread_ts"] for p in posted} == {THREAD_TS}
    assert len(set(sent.provider_message_ids)) == 4


def test_a_streamed_reply_is_opened_and_edited_in_its_thread(
    make_tenant: Any, slack_api: ProviderServer
) -> None:
    conversation = slack_conversation(make_tenant)
    assert conversation.channel_account is not None
    adapter = adapter_for("slack")
    assert adapter.streams_by_edit is True
    assert 1.0 <= adapter.interval <= 2.0  # type: ignore[attr-defined]
    ts = adapter.stream_open(conversation.channel_account, conversation, "Your order")
    adapter.stream_edit(conversation.channel_account, conversation, ts, "Your order ships")
    assert payloads(slack_api, "chat.postMessage") == [
        {"channel": CHANNEL, "thread_ts": THREAD_TS, "text": "Your order"}
    ]
    assert payloads(slack_api, "chat.update") == [
        {"channel": CHANNEL, "ts": ts, "text": "Your order ships"}
    ]


def test_the_final_send_updates_the_streamed_message_then_posts_the_rest(
    make_tenant: Any, slack_api: ProviderServer
) -> None:
    conversation = slack_conversation(make_tenant)
    text = "First part. " + "a " * 1900 + "\n\n" + "Second part. " + "b " * 1900
    sent = adapter_for("slack").send(outgoing(conversation, text, stream_ref="1699999999.000001"))
    (update,) = payloads(slack_api, "chat.update")
    assert update["ts"] == "1699999999.000001"
    assert update["text"].startswith("First part.")
    (post,) = payloads(slack_api, "chat.postMessage")
    assert post["text"].startswith("Second part.")
    assert post["thread_ts"] == THREAD_TS
    assert sent.provider_message_ids == ["1699999999.000001", "1700000000.000001"]


def test_a_streamed_message_that_is_gone_is_posted_afresh(
    make_tenant: Any, slack_api: ProviderServer
) -> None:
    conversation = slack_conversation(make_tenant)
    slack_api.fail_next(
        "/chat.update", status=200, body={"ok": False, "error": "message_not_found"}
    )
    sent = adapter_for("slack").send(outgoing(conversation, "Hello", stream_ref="1699.1"))
    assert [p["text"] for p in payloads(slack_api, "chat.postMessage")] == ["Hello"]
    assert sent.provider_message_ids == ["1700000000.000001"]


@pytest.mark.parametrize("error", ["invalid_auth", "channel_not_found", "not_in_channel"])
def test_slack_refusals_are_permanent_failures(
    make_tenant: Any, slack_api: ProviderServer, error: str
) -> None:
    conversation = slack_conversation(make_tenant)
    slack_api.fail_next("/chat.postMessage", status=200, body={"ok": False, "error": error})
    with pytest.raises(DeliveryFailed) as failed:
        adapter_for("slack").send(outgoing(conversation, "Hello"))
    assert failed.value.permanent is True
    assert error in failed.value.reason
    assert TOKEN not in failed.value.reason


def test_a_wrong_token_is_a_permanent_failure_that_does_not_show_the_token(
    make_tenant: Any, slack_api: ProviderServer
) -> None:
    conversation = slack_conversation(make_tenant, token="xoxb-revoked-token")
    with pytest.raises(DeliveryFailed) as failed:
        adapter_for("slack").send(outgoing(conversation, "Hello"))
    assert (failed.value.permanent, failed.value.reason) == (
        True,
        "slack chat.postMessage: invalid_auth",
    )


def test_a_rate_limit_is_retried_after_slack_retry_after(
    make_tenant: Any, slack_api: ProviderServer, web: SlackWebApi
) -> None:
    conversation = slack_conversation(make_tenant)
    web.rate_limit_next(retry_after=7)
    with pytest.raises(DeliveryFailed) as failed:
        adapter_for("slack").send(outgoing(conversation, "Hello"))
    assert (failed.value.status, failed.value.retry_after) == (429, 7.0)
    assert failed.value.permanent is False


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, {"ok": False, "error": "internal_error"}), (200, {"ok": False, "error": "fatal_error"})],
)
def test_slack_outages_are_retried(
    make_tenant: Any, slack_api: ProviderServer, status: int, body: dict[str, Any]
) -> None:
    conversation = slack_conversation(make_tenant)
    slack_api.fail_next("/chat.postMessage", status=status, body=body)
    with pytest.raises(DeliveryFailed) as failed:
        adapter_for("slack").send(outgoing(conversation, "Hello"))
    assert failed.value.permanent is False


def test_a_later_part_rate_limited_briefly_is_waited_for_not_resent_from_the_start(
    make_tenant: Any, slack_api: ProviderServer, web: SlackWebApi
) -> None:
    conversation = slack_conversation(make_tenant)
    text = "One. " + "a " * 1900 + "\n\n" + "Two. " + "b " * 1900
    adapter = adapter_for("slack")
    message = outgoing(conversation, text)
    slack_api.fail_next(
        "/chat.postMessage", status=200, body={"ok": True, "channel": CHANNEL, "ts": "1.1"}
    )
    web.rate_limit_next(retry_after=1)
    sent = adapter.send(message)
    texts = [p["text"][:4] for p in payloads(slack_api, "chat.postMessage")]
    assert texts == ["One.", "Two.", "Two."]  # the second part again, the first not
    first_try, second_try = web.calls_of("chat.postMessage")
    assert second_try - first_try >= 0.9
    assert sent.provider_message_ids == ["1.1", "1700000000.000001"]


def test_reply_text_is_escaped_and_markdown_becomes_mrkdwn() -> None:
    assert slack_text("**Note**: 1 < 2 & [the help centre](https://help.example.com/a)") == (
        "*Note*: 1 &lt; 2 &amp; <https://help.example.com/a|the help centre>"
    )
