"""Slack's Events API webhook: what is accepted, refused and ignored, on the real endpoint.

Requests are Slack's documented payloads, signed as Slack signs them (tests/support/fake_slack);
what counts is the status Slack gets and the rows stored (none on a refusal).
"""

import json
import time
from typing import Any

import pytest
from django.test import Client

from conversations.channels.base import InboundMessage
from conversations.channels.inbound import channel_contact, channel_conversation
from conversations.models import ChannelAccount, InboundEvent
from tests.support import fake_slack
from tests.support.fake_slack import body_of, event_callback, signed_headers

pytestmark = pytest.mark.django_db

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_USER = "U0LAN0Z89"


def slack_account(tenant: Any, *, secret: str = SECRET, **config: Any) -> ChannelAccount:
    return ChannelAccount.objects.create(
        tenant=tenant,
        kind=ChannelAccount.Kind.SLACK,
        config={"bot_user_id": BOT_USER, "team_id": "T0001", **config},
        credentials={"bot_token": "xoxb-test-token", "signing_secret": secret},
    )


def post(account: ChannelAccount, body: bytes, headers: dict[str, str]) -> Any:
    return Client().post(
        f"/channels/{account.pk}/webhook/",
        data=body,
        content_type="application/json",
        headers=headers,
    )


@pytest.fixture
def account(make_tenant: Any) -> ChannelAccount:
    tenant, _ = make_tenant()
    return slack_account(tenant)


def stored(account: ChannelAccount) -> list[InboundEvent]:
    return list(InboundEvent.objects.filter(channel_account=account).order_by("id"))


# --- signatures -------------------------------------------------------------------------------


def test_a_signed_direct_message_is_stored_once_as_a_message(account: ChannelAccount) -> None:
    body = body_of(event_callback(fake_slack.direct_message("Where is my order?"), event_id="Ev1"))
    response = post(account, body, signed_headers(SECRET, body))
    assert response.status_code == 200
    (event,) = stored(account)
    assert (event.provider_event_id, event.kind, event.state) == ("Ev1", "message", "received")
    assert event.payload["user_id"] == "U2147483697"
    assert event.payload["text"] == "Where is my order?"
    # One conversation per direct-message channel: the person's next message goes on in it.
    assert event.payload["thread"] == "D024BE91L:"


def test_a_redelivery_with_the_same_event_id_stores_nothing_more(account: ChannelAccount) -> None:
    body = body_of(event_callback(fake_slack.direct_message("Hello"), event_id="Ev2"))
    assert post(account, body, signed_headers(SECRET, body)).status_code == 200
    again = post(account, body, signed_headers(SECRET, body, retry_num=1))
    assert again.status_code == 200
    assert [e.provider_event_id for e in stored(account)] == ["Ev2"]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda body: signed_headers("another-secret", body), id="wrong-secret"),
        pytest.param(lambda body: {}, id="no-headers"),
        pytest.param(
            lambda body: {"X-Slack-Request-Timestamp": str(int(time.time()))}, id="no-signature"
        ),
        pytest.param(
            lambda body: {k: v for k, v in signed_headers(SECRET, body).items() if "Sig" not in k},
            id="timestamp-only",
        ),
        pytest.param(
            lambda body: signed_headers(SECRET, body, timestamp=int(time.time()) - 301),
            id="stale-timestamp",
        ),
        pytest.param(
            lambda body: signed_headers(SECRET, body, timestamp=int(time.time()) + 400),
            id="future-timestamp",
        ),
        pytest.param(
            lambda body: {**signed_headers(SECRET, body), "X-Slack-Request-Timestamp": "soon"},
            id="bad-timestamp",
        ),
        pytest.param(lambda body: signed_headers(SECRET, body + b" "), id="body-changed"),
    ],
)
def test_an_unverified_request_is_refused_with_401_and_nothing_stored(
    account: ChannelAccount, headers: Any
) -> None:
    body = body_of(event_callback(fake_slack.direct_message("Hello"), event_id="Ev3"))
    response = post(account, body, headers(body))
    assert response.status_code == 401
    assert stored(account) == []


def test_a_replayed_request_signed_long_ago_is_refused(account: ChannelAccount) -> None:
    body = body_of(event_callback(fake_slack.direct_message("Hello"), event_id="Ev4"))
    old = int(time.time()) - 6 * 60
    response = post(account, body, signed_headers(SECRET, body, timestamp=old))
    assert response.status_code == 401
    assert SECRET not in response.content.decode()
    assert stored(account) == []


def test_tenant_a_secret_cannot_post_into_tenant_b_channel(make_tenant: Any) -> None:
    tenant_a, _ = make_tenant()
    tenant_b, _ = make_tenant()
    account_a = slack_account(tenant_a, secret="secret-of-tenant-a")
    account_b = slack_account(tenant_b, secret="secret-of-tenant-b")
    body = body_of(event_callback(fake_slack.direct_message("Hi"), event_id="EvX"))
    response = post(account_b, body, signed_headers("secret-of-tenant-a", body))
    assert response.status_code == 401
    assert InboundEvent.objects.filter(tenant=tenant_b).count() == 0
    # The same request on tenant A's own webhook is A's, and only A's.
    assert post(account_a, body, signed_headers("secret-of-tenant-a", body)).status_code == 200
    assert [e.tenant_id for e in InboundEvent.objects.all()] == [tenant_a.pk]


def test_an_account_without_a_signing_secret_refuses_everything(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    account = slack_account(tenant, secret="")
    body = body_of(event_callback(fake_slack.direct_message("Hi"), event_id="Ev5"))
    assert post(account, body, signed_headers("", body)).status_code == 401
    assert stored(account) == []


# --- url_verification -------------------------------------------------------------------------


def test_url_verification_echoes_the_challenge_when_signed(account: ChannelAccount) -> None:
    body = body_of(fake_slack.url_verification("challenge-abc"))
    response = post(account, body, signed_headers(SECRET, body))
    assert response.status_code == 200
    assert json.loads(response.content) == {"challenge": "challenge-abc"}
    assert stored(account) == []


@pytest.mark.parametrize("secret", ["another-secret", None])
def test_url_verification_unsigned_or_wrongly_signed_gets_no_challenge(
    account: ChannelAccount, secret: str | None
) -> None:
    body = body_of(fake_slack.url_verification("challenge-abc"))
    headers = signed_headers(secret, body) if secret else {}
    response = post(account, body, headers)
    assert response.status_code == 401
    assert b"challenge-abc" not in response.content
    assert stored(account) == []


# --- what is answered and what is ignored -----------------------------------------------------


def test_a_mention_in_a_channel_is_a_message_in_its_thread(account: ChannelAccount) -> None:
    event = fake_slack.app_mention(
        "What is the hour of the pearl?", ts="1515449600.000020", thread_ts="1515449522.000016"
    )
    body = body_of(event_callback(event, event_id="Ev6"))
    assert post(account, body, signed_headers(SECRET, body)).status_code == 200
    (row,) = stored(account)
    assert row.kind == "message"
    assert row.payload["text"] == "What is the hour of the pearl?"  # the mention removed
    assert row.payload["thread"] == "C123ABC456:1515449522.000016"
    assert row.payload["user_id"] == "U123ABC456"


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(fake_slack.bot_message(), id="bot_message"),
        pytest.param(fake_slack.message_changed(), id="message_changed"),
        pytest.param(
            {**fake_slack.direct_message("my own reply"), "user": BOT_USER}, id="bot-user"
        ),
        pytest.param({**fake_slack.direct_message("with bot id"), "bot_id": "B0001"}, id="bot_id"),
        pytest.param(
            {**fake_slack.direct_message("gone"), "subtype": "message_deleted"},
            id="message_deleted",
        ),
        pytest.param(
            {**fake_slack.direct_message("hi all"), "channel_type": "channel"},
            id="channel-message-without-mention",
        ),
    ],
)
def test_the_bot_own_messages_and_edits_are_stored_as_ignored(
    account: ChannelAccount, event: dict[str, Any]
) -> None:
    body = body_of(event_callback(event, event_id="Ev7"))
    assert post(account, body, signed_headers(SECRET, body)).status_code == 200
    (row,) = stored(account)
    assert (row.kind, row.state) == ("ignored", "ignored")


def test_an_event_from_another_workspace_is_ignored(account: ChannelAccount) -> None:
    body = body_of(event_callback(fake_slack.direct_message("Hi"), event_id="Ev8", team_id="T9"))
    assert post(account, body, signed_headers(SECRET, body)).status_code == 200
    (row,) = stored(account)
    assert (row.state, row.detail) == ("ignored", "another workspace")


def test_files_become_attachments(account: ChannelAccount) -> None:
    body = body_of(event_callback(fake_slack.file_share("Here is the screenshot"), event_id="Ev9"))
    assert post(account, body, signed_headers(SECRET, body)).status_code == 200
    (row,) = stored(account)
    assert row.payload["text"] == "Here is the screenshot"
    (attachment,) = row.payload["attachments"]
    assert attachment["kind"] == "image"
    assert attachment["content_type"] == "image/png"
    assert attachment["filename"] == "screenshot.png"
    assert attachment["size"] == 48213
    assert attachment["provider_ref"].startswith("https://files.slack.com/")


def test_slack_escaping_is_undone_in_the_stored_text(account: ChannelAccount) -> None:
    event = fake_slack.direct_message("Is 3 &lt; 4 &amp;&amp; 5 &gt; 4?")
    body = body_of(event_callback(event, event_id="Ev10"))
    assert post(account, body, signed_headers(SECRET, body)).status_code == 200
    assert stored(account)[0].payload["text"] == "Is 3 < 4 && 5 > 4?"


def test_a_signed_body_that_is_not_json_is_a_400(account: ChannelAccount) -> None:
    body = b"not json"
    assert post(account, body, signed_headers(SECRET, body)).status_code == 400
    assert stored(account) == []


def test_other_envelopes_store_nothing(account: ChannelAccount) -> None:
    body = body_of(
        {
            "token": "x",
            "team_id": "T0001",
            "type": "app_rate_limited",
            "minute_rate_limited": 1518467820,
        }
    )
    assert post(account, body, signed_headers(SECRET, body)).status_code == 200
    assert stored(account) == []


# --- follow-ups in a channel thread the bot answers in ----------------------------------------


def channel_reply(text: str, *, thread_ts: str = "1515449522.000016") -> dict[str, Any]:
    """A person's message in a channel thread (`message.channels`), no mention of the bot."""
    return {
        **fake_slack.direct_message(text, channel="C123ABC456", ts="1515449700.000030"),
        "channel_type": "channel",
        "thread_ts": thread_ts,
    }


def open_thread(account: ChannelAccount, thread: str) -> None:
    item = InboundMessage(event_id="Ev0", user_id="U123ABC456", thread=thread)
    contact = channel_contact(account=account, item=item)
    channel_conversation(account=account, contact=contact, item=item)


def test_a_follow_up_in_the_bot_thread_is_answered_without_a_mention(
    account: ChannelAccount,
) -> None:
    open_thread(account, "C123ABC456:1515449522.000016")
    body = body_of(event_callback(channel_reply("And in blue?"), event_id="Ev11"))
    assert post(account, body, signed_headers(SECRET, body)).status_code == 200
    (row,) = stored(account)
    assert row.kind == "message"
    assert row.payload["thread"] == "C123ABC456:1515449522.000016"


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(
            channel_reply("And in blue?", thread_ts="1515449000.000001"), id="other-thread"
        ),
        pytest.param(
            channel_reply(f"<@{BOT_USER}> and in blue?"), id="mention-comes-as-app_mention"
        ),
        pytest.param(
            {**channel_reply("top level"), "thread_ts": None, "ts": "1515449700.000030"},
            id="top-level",
        ),
    ],
)
def test_other_channel_messages_are_ignored(account: ChannelAccount, event: dict[str, Any]) -> None:
    open_thread(account, "C123ABC456:1515449522.000016")
    body = body_of(event_callback(event, event_id="Ev12"))
    assert post(account, body, signed_headers(SECRET, body)).status_code == 200
    (row,) = stored(account)
    assert row.state == "ignored"


def test_a_thread_of_another_tenant_channel_is_not_followed(
    make_tenant: Any, account: ChannelAccount
) -> None:
    other_tenant, _ = make_tenant()
    open_thread(slack_account(other_tenant), "C123ABC456:1515449522.000016")
    body = body_of(event_callback(channel_reply("And in blue?"), event_id="Ev13"))
    assert post(account, body, signed_headers(SECRET, body)).status_code == 200
    (row,) = stored(account)
    assert row.state == "ignored"
