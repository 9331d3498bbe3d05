"""The widget's edge: no rows before the first message, abuse limits, visitor token expiry and
rotation, and sockets whose widget key or tenant was disabled.

Real consumer, channel layer (Redis), Celery worker and Postgres; the scripted provider.
"""

import threading
import time
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core import signing
from django.db import connection, transaction

from conversations import limits
from conversations.channels.widget import widget_key_still_active
from conversations.limits import conversation_start_retry_after
from conversations.models import Contact, Conversation, Message, ReplyJob
from conversations.services import (
    message_post_from_visitor,
    visitor_conversation_store,
    visitor_session_open,
)
from conversations.visitors import TokenExpired, visitor_token_for, visitor_token_read
from supportbot.asgi import application
from tests.conversations.test_agents import (
    agent_welcome,
    connect_agent,
    make_user,
    visitor_with_conversation,
)
from tests.conversations.test_consumer import (
    SHOP,
    assert_closed_with,
    connect,
    hello,
    is_final_assistant,
    receive_until,
)
from tests.support.llm_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]

WELCOME_KEYS = {
    "type",
    "consent",
    "visitor_token",
    "conversation_id",
    "seq",
    "messages",
    "conversation",
    "assistant",
}


@pytest.fixture
def tenant_and_key(make_tenant: Any, llm: Any) -> Any:
    return make_tenant(allowed_origins=[SHOP])


@pytest.fixture
def two_keys(make_tenant: Any, llm: Any) -> tuple[Any, Any]:
    """The widget keys of two tenants."""
    return make_tenant(allowed_origins=[SHOP])[1], make_tenant(allowed_origins=[SHOP])[1]


def stored_counts() -> tuple[int, int, int, int]:
    return (
        Contact.objects.count(),
        Conversation.objects.count(),
        Message.objects.count(),
        ReplyJob.objects.count(),
    )


async def counts() -> tuple[int, int, int, int]:
    return await database_sync_to_async(stored_counts)()


async def send_message(ws: WebsocketCommunicator, client_id: str, text: str) -> dict[str, Any]:
    await ws.send_json_to({"type": "message", "client_id": client_id, "text": text})
    return await ws.receive_json_from(timeout=5)


def resume_fields(welcome: dict[str, Any]) -> dict[str, Any]:
    return {
        "visitor_token": welcome["visitor_token"],
        "conversation_id": welcome["conversation_id"],
    }


def old_token(tenant_id: int, contact_id: Any, conversation_id: Any, age: float) -> str:
    """A genuine token signed `age` seconds ago."""
    with mock.patch("django.core.signing.time.time", return_value=time.time() - age):
        return visitor_token_for(
            tenant_id=tenant_id, contact_id=contact_id, conversation_id=conversation_id
        )


# --- no rows before the first message ---------------------------------------------------------


async def test_hello_stores_nothing_and_the_first_message_stores_the_conversation(
    tenant_and_key: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="Hello!"))
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    assert set(welcome) == WELCOME_KEYS
    assert (welcome["seq"], welcome["messages"]) == (0, [])
    assert welcome["conversation"] == {"status": "bot", "language": "", "agent": None}
    assert await counts() == (0, 0, 0, 0)

    ack = await send_message(ws, "m1", "Hi there")
    assert ack["type"] == "ack"
    assert ack["message"]["seq"] == 1
    await receive_until(ws, is_final_assistant)
    await ws.disconnect()
    conversation = await database_sync_to_async(Conversation.objects.select_related("contact").get)(
        pk=welcome["conversation_id"]
    )
    claims = visitor_token_read(welcome["visitor_token"], tenant_id=conversation.tenant_id)
    assert claims is not None
    assert claims.contact_id == conversation.contact_id
    assert conversation.contact.locale == "en-GB"
    assert (await counts())[:2] == (1, 1)


async def test_many_hellos_store_nothing(tenant_and_key: Any) -> None:
    _, key = tenant_and_key
    for _ in range(5):
        ws = await connect()
        await hello(ws, key.public_key)
        await ws.disconnect()
    assert await counts() == (0, 0, 0, 0)


async def test_a_reconnect_before_the_first_message_resumes_the_minted_conversation(
    tenant_and_key: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="Sure."))
    ws = await connect()
    first = await hello(ws, key.public_key)
    await ws.disconnect()

    # With its conversation id, and without it (the token carries it): the same conversation.
    for fields in (resume_fields(first), {"visitor_token": first["visitor_token"]}):
        ws = await connect()
        again = await hello(ws, key.public_key, **fields)
        assert again["conversation_id"] == first["conversation_id"]
        assert (again["seq"], again["messages"]) == (0, [])
        await ws.disconnect()
    assert await counts() == (0, 0, 0, 0)

    ws = await connect()
    await hello(ws, key.public_key, **resume_fields(first))
    assert (await send_message(ws, "m1", "Can you help?"))["type"] == "ack"
    await receive_until(ws, is_final_assistant)
    await ws.disconnect()
    stored = await database_sync_to_async(Conversation.objects.get)()
    assert str(stored.pk) == first["conversation_id"]


async def test_two_tabs_of_a_new_visitor_share_one_conversation(
    tenant_and_key: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="One."))
    llm.enqueue(Reply(text="Two."))
    tab_a = await connect()
    welcome = await hello(tab_a, key.public_key)
    tab_b = await connect()
    await hello(tab_b, key.public_key, **resume_fields(welcome))
    assert (await send_message(tab_a, "a1", "From tab A"))["type"] == "ack"
    # Tab B joined the conversation's group before it was stored: it sees tab A's message.
    seen = await receive_until(
        tab_b, lambda f: f["type"] == "message" and f["message"]["client_id"] == "a1"
    )
    assert seen[-1]["message"]["text"] == "From tab A"
    assert (await send_message(tab_b, "b1", "From tab B"))["type"] == "ack"
    await receive_until(tab_a, lambda f: is_final_assistant(f) and f["message"]["seq"] > 3)
    await tab_a.disconnect()
    await tab_b.disconnect()
    contacts, conversations, _, _ = await counts()
    assert (contacts, conversations) == (1, 1)


def test_racing_first_messages_store_one_conversation(make_tenant: Any, llm: Any) -> None:
    """Two sockets' first messages in concurrent transactions: the second insert waits for the
    first transaction, then reads its rows; one contact, one conversation, both messages."""
    tenant, _ = make_tenant()
    first = visitor_session_open(tenant=tenant, visitor_token=None, conversation_id=None)
    second = visitor_session_open(
        tenant=tenant,
        visitor_token=first.visitor_token,
        conversation_id=str(first.conversation.pk),
    )
    assert second.conversation is not first.conversation
    stored = threading.Event()
    result: dict[str, Any] = {}

    def second_socket() -> None:
        try:
            stored.wait(10)
            result["posted"] = message_post_from_visitor(
                conversation=second.conversation, client_id="b", text="second tab"
            )
        except Exception as exc:  # reported below
            result["error"] = exc
        finally:
            connection.close()

    other = threading.Thread(target=second_socket)
    other.start()
    with transaction.atomic():
        assert visitor_conversation_store(conversation=first.conversation) is True
        stored.set()
        deadline = time.monotonic() + 10
        while not _someone_waits_on_a_lock():
            assert time.monotonic() < deadline, "the second socket never waited for the first"
            time.sleep(0.02)
        message_post_from_visitor(conversation=first.conversation, client_id="a", text="first")
    other.join(10)
    assert "error" not in result, result.get("error")
    assert result["posted"].created
    assert Contact.objects.count() == 1
    assert Conversation.objects.count() == 1
    # The visitor's two messages, in order: the first is seq 1; the assistant's reply to it
    # may already have taken seq 2 before the second was stored. No seq is taken twice.
    visitor_messages = sorted(
        Message.objects.filter(role=Message.Role.USER).values_list("seq", "client_id")
    )
    assert [client_id for _, client_id in visitor_messages] == ["a", "b"]
    assert visitor_messages[0][0] == 1
    seqs = list(Message.objects.values_list("seq", flat=True))
    assert len(seqs) == len(set(seqs)), seqs


def _someone_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


async def test_a_handoff_request_as_first_action_stores_the_conversation(
    tenant_and_key: Any,
) -> None:
    _, key = tenant_and_key
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    await ws.send_json_to({"type": "handoff.request"})
    await receive_until(ws, lambda f: f["type"] == "conversation.updated")
    await ws.disconnect()
    conversation = await database_sync_to_async(Conversation.objects.get)(
        pk=welcome["conversation_id"]
    )
    assert conversation.status == "waiting_for_agent"


async def test_pending_conversations_are_bound_to_their_visitor_and_tenant(
    two_keys: tuple[Any, Any],
) -> None:
    key_a, key_b = two_keys
    ws = await connect()
    visitor_a = await hello(ws, key_a.public_key)
    await ws.disconnect()
    ws = await connect()
    visitor_b = await hello(ws, key_a.public_key)
    await ws.disconnect()
    refused = [
        # Another visitor's conversation, not stored yet, with one's own token.
        (key_a, {**resume_fields(visitor_b), "conversation_id": visitor_a["conversation_id"]}),
        # Tenant A's visitor at tenant B's key.
        (key_b, resume_fields(visitor_a)),
        # A conversation id without its token.
        (key_a, {"conversation_id": visitor_a["conversation_id"]}),
    ]
    for key, fields in refused:
        ws = await connect()
        await ws.send_json_to({"type": "hello", "key": key.public_key, **fields})
        await assert_closed_with(ws, 4403)
    assert await counts() == (0, 0, 0, 0)


# --- visitor tokens expire and rotate ---------------------------------------------------------


async def test_every_welcome_signs_a_fresh_token(tenant_and_key: Any) -> None:
    tenant, key = tenant_and_key
    ws = await connect()
    first = await hello(ws, key.public_key)
    await ws.disconnect()
    claims = visitor_token_read(first["visitor_token"], tenant_id=tenant.pk)
    assert claims is not None
    ten_days = 10 * 24 * 3600
    aged = old_token(tenant.pk, claims.contact_id, claims.conversation_id, age=ten_days)
    ws = await connect()
    again = await hello(ws, key.public_key, visitor_token=aged)
    await ws.disconnect()
    assert again["conversation_id"] == first["conversation_id"]
    assert again["visitor_token"] != aged
    # The new token is younger than five days; the one presented was not.
    salt = "supportbot.visitor-token.v1"
    assert signing.loads(again["visitor_token"], salt=salt, max_age=5 * 24 * 3600)
    with pytest.raises(signing.SignatureExpired):
        signing.loads(aged, salt=salt, max_age=5 * 24 * 3600)


async def test_an_expired_token_starts_a_new_visitor(
    tenant_and_key: Any, llm: Any, settings: Any
) -> None:
    tenant, key = tenant_and_key
    settings.VISITOR_TOKEN_MAX_AGE = 3600
    llm.enqueue(Reply(text="Hi."))
    ws = await connect()
    first = await hello(ws, key.public_key)
    assert (await send_message(ws, "m1", "Hello"))["type"] == "ack"
    await receive_until(ws, is_final_assistant)
    await ws.disconnect()
    claims = visitor_token_read(first["visitor_token"], tenant_id=tenant.pk)
    assert claims is not None
    expired = old_token(tenant.pk, claims.contact_id, claims.conversation_id, age=7200)
    with pytest.raises(TokenExpired):
        visitor_token_read(expired, tenant_id=tenant.pk)

    ws = await connect()
    fresh = await hello(
        ws, key.public_key, visitor_token=expired, conversation_id=first["conversation_id"]
    )
    await ws.disconnect()
    assert fresh["conversation_id"] != first["conversation_id"]
    assert fresh["messages"] == []
    fresh_claims = visitor_token_read(fresh["visitor_token"], tenant_id=tenant.pk)
    assert fresh_claims is not None
    assert fresh_claims.contact_id != claims.contact_id
    # A forged token is still refused, expired or not, and so is another tenant's.
    for token in (expired[:-2] + "xx", old_token(tenant.pk + 1, claims.contact_id, None, 7200)):
        ws = await connect()
        await ws.send_json_to({"type": "hello", "key": key.public_key, "visitor_token": token})
        await assert_closed_with(ws, 4403)


# --- abuse limits -----------------------------------------------------------------------------


@pytest.fixture
def one_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limits' clock stands still in the middle of a minute: a per-minute count cannot
    start over while a test runs."""
    frozen = float(int(time.time()) // 60 * 60 + 30)
    monkeypatch.setattr(limits, "time", SimpleNamespace(time=lambda: frozen))


@pytest.mark.usefixtures("one_minute")
async def test_messages_per_widget_key_are_capped_and_nothing_is_stored_over_it(
    two_keys: tuple[Any, Any], llm: Any, settings: Any
) -> None:
    settings.WIDGET_KEY_MESSAGES_PER_MINUTE = 2
    key, other_key = two_keys
    llm.enqueue(Reply(text="One."))
    llm.enqueue(Reply(text="Two."))
    llm.enqueue(Reply(text="Other tenant."))
    sockets = []
    for n in range(2):
        ws = await connect(client=f"10.1.0.{n + 1}")
        await hello(ws, key.public_key)
        assert (await send_message(ws, f"ok{n}", "A question"))["type"] == "ack"
        await receive_until(ws, is_final_assistant)
        sockets.append(ws)
    before = await counts()
    third = await connect(client="10.1.0.3")
    await hello(third, key.public_key)
    error = await send_message(third, "over", "One too many")
    assert (error["type"], error["code"], error["client_id"]) == ("error", "rate_limited", "over")
    assert error["retry_after"] == 30
    assert await counts() == before
    assert await third.receive_nothing(timeout=0.3)
    # Another tenant's key has its own count.
    other = await connect(client="10.1.0.4")
    await hello(other, other_key.public_key)
    assert (await send_message(other, "theirs", "Hello"))["type"] == "ack"
    await receive_until(other, is_final_assistant)
    for ws in [*sockets, third, other]:
        await ws.disconnect()


async def test_new_conversations_per_client_are_capped_at_the_first_message(
    tenant_and_key: Any, llm: Any, settings: Any
) -> None:
    _, key = tenant_and_key
    settings.WIDGET_CONVERSATIONS_PER_CLIENT_PER_HOUR = 2
    for n in range(3):
        llm.enqueue(Reply(text=f"Answer {n}."))
    first = await connect(client="10.2.0.1")
    welcome = await hello(first, key.public_key)
    assert (await send_message(first, "a", "First"))["type"] == "ack"
    await receive_until(first, is_final_assistant)
    second = await connect(client="10.2.0.1")
    await hello(second, key.public_key)
    # A hello is not a conversation: only the second visitor's first message counts.
    assert (await send_message(second, "b", "Second"))["type"] == "ack"
    await receive_until(second, is_final_assistant)
    before = await counts()

    third = await connect(client="10.2.0.1")
    await hello(third, key.public_key)
    error = await send_message(third, "c", "Third")
    assert (error["code"], error["client_id"]) == ("rate_limited", "c")
    assert 3500 <= error["retry_after"] <= 3600
    await third.send_json_to({"type": "handoff.request"})
    handoff_error = await third.receive_json_from(timeout=5)
    assert handoff_error["code"] == "rate_limited"
    assert await counts() == before

    # A conversation already counted goes on (another tab of it too); another client is free.
    tab = await connect(client="10.2.0.1")
    await hello(tab, key.public_key, **resume_fields(welcome))
    assert (await send_message(tab, "a2", "More"))["type"] == "ack"
    await receive_until(tab, is_final_assistant)
    elsewhere = await connect(client="10.2.0.2")
    await hello(elsewhere, key.public_key)
    await elsewhere.send_json_to({"type": "handoff.request"})
    await receive_until(elsewhere, lambda f: f["type"] == "conversation.updated")
    for ws in (first, second, third, tab, elsewhere):
        await ws.disconnect()


async def connect_through(peer: str, forwarded_for: str) -> WebsocketCommunicator:
    headers = [
        (b"host", b"support.example.net"),
        (b"origin", SHOP.encode()),
        (b"x-forwarded-for", forwarded_for.encode()),
    ]
    communicator = WebsocketCommunicator(application, "/ws/widget/", headers=headers)
    communicator.scope["client"] = (peer, 50000)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def test_a_rotating_forwarded_for_from_an_untrusted_peer_changes_nothing(
    tenant_and_key: Any, llm: Any, settings: Any
) -> None:
    _, key = tenant_and_key
    settings.TRUSTED_PROXIES = []
    settings.WIDGET_CONVERSATIONS_PER_CLIENT_PER_HOUR = 1
    llm.enqueue(Reply(text="Once."))
    ws = await connect_through("203.0.113.7", "198.51.100.1")
    await hello(ws, key.public_key)
    assert (await send_message(ws, "a", "First"))["type"] == "ack"
    await receive_until(ws, is_final_assistant)
    await ws.disconnect()
    for n in range(2, 5):
        ws = await connect_through("203.0.113.7", f"198.51.100.{n}, 192.0.2.{n}")
        await hello(ws, key.public_key)
        assert (await send_message(ws, "b", "Again"))["code"] == "rate_limited"
        await ws.disconnect()
    assert (await counts())[1] == 1


def test_an_ipv6_client_is_counted_by_its_64(settings: Any) -> None:
    from supportbot.client_address import client_bucket

    settings.WIDGET_CONVERSATIONS_PER_CLIENT_PER_HOUR = 1
    one = client_bucket("2001:db8:77:1::1")
    assert one == client_bucket("2001:db8:77:1:ffff::9")
    assert conversation_start_retry_after(one, "c1") is None
    assert conversation_start_retry_after(one, "c1") is None  # the same conversation again
    assert conversation_start_retry_after(client_bucket("2001:db8:77:1::2"), "c2") is not None
    assert conversation_start_retry_after(client_bucket("2001:db8:77:2::1"), "c3") is None


def test_the_client_window_slides(settings: Any) -> None:
    settings.WIDGET_CONVERSATIONS_PER_CLIENT_PER_HOUR = 1
    start = float(int(time.time()))
    assert conversation_start_retry_after("10.3.0.1", "a", now=start) is None
    assert conversation_start_retry_after("10.3.0.1", "b", now=start + 600) == 3000
    assert conversation_start_retry_after("10.3.0.1", "b", now=start + 3601) is None


# --- disabled keys and tenants ----------------------------------------------------------------


@pytest.mark.parametrize("disable", ["key", "tenant"])
async def test_a_socket_whose_key_or_tenant_was_disabled_closes_4403(
    tenant_and_key: Any, llm: Any, settings: Any, disable: str
) -> None:
    tenant, key = tenant_and_key
    settings.WIDGET_KEY_RECHECK_SECONDS = 0
    llm.enqueue(Reply(text="Fine."))
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    assert (await send_message(ws, "a", "Before"))["type"] == "ack"
    await receive_until(ws, is_final_assistant)
    handoff_ws = await connect()
    await hello(handoff_ws, key.public_key, **resume_fields(welcome))

    row = key if disable == "key" else tenant
    row.is_active = False
    await database_sync_to_async(row.save)()
    before = await counts()
    await ws.send_json_to({"type": "message", "client_id": "b", "text": "After"})
    await assert_closed_with(ws, 4403)
    await handoff_ws.send_json_to({"type": "handoff.request"})
    await assert_closed_with(handoff_ws, 4403)
    assert await counts() == before
    conversation = await database_sync_to_async(Conversation.objects.get)(
        pk=welcome["conversation_id"]
    )
    assert conversation.status == "bot"


def test_the_key_check_is_at_most_the_recheck_interval_stale(
    make_tenant: Any, settings: Any
) -> None:
    settings.WIDGET_KEY_RECHECK_SECONDS = 10
    _, key = make_tenant()
    start = 1_000_000.0
    assert widget_key_still_active(key.pk, now=start) is True
    key.is_active = False
    key.save()
    assert widget_key_still_active(key.pk, now=start + 9) is True  # the cached answer
    assert widget_key_still_active(key.pk, now=start + 10.5) is False
    assert widget_key_still_active(key.pk, now=start + 11) is False


async def test_refused_sockets_read_nothing_after_closing(
    tenant_and_key: Any, settings: Any
) -> None:
    _, key = tenant_and_key
    settings.WIDGET_KEY_RECHECK_SECONDS = 0
    ws = await connect()
    await hello(ws, key.public_key)
    key.is_active = False
    await database_sync_to_async(key.save)()
    await ws.send_json_to({"type": "handoff.request"})
    await ws.send_json_to({"type": "message", "client_id": "x", "text": "still here"})
    await assert_closed_with(ws, 4403)
    assert await counts() == (0, 0, 0, 0)


async def test_the_agent_socket_of_a_disabled_tenant_stops(tenant_and_key: Any, llm: Any) -> None:
    tenant, key = tenant_and_key
    agent = await database_sync_to_async(make_user)("edge-agent", tenant=tenant)
    visitor, conversation_id = await visitor_with_conversation(key)
    ws = await connect_agent(conversation_id, agent)
    await agent_welcome(ws)

    tenant.is_active = False
    await database_sync_to_async(tenant.save)()
    await ws.send_json_to({"type": "take_over"})
    await assert_closed_with(ws, 4403)
    conversation = await database_sync_to_async(Conversation.objects.get)(pk=conversation_id)
    assert (conversation.status, conversation.assigned_agent_id) == ("bot", None)
    # Opening one is refused too.
    again = await connect_agent(conversation_id, agent)
    await assert_closed_with(again, 4403)
    await visitor.disconnect()
