"""Agents taking conversations over, through the real widget and agent sockets.

A visitor talks through `/ws/widget/`; a support agent logged into the admin watches and answers
through `/ws/agent/conversations/<id>/` with their session cookie. Real channel layer (Redis),
real Celery worker, the scripted provider.
"""

import asyncio
import re
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from conversations.agent_socket import agent_origin_allowed
from conversations.agents import (
    AgentActionError,
    agent_message_post,
    conversation_close,
    conversation_hand_back,
    conversation_take_over,
)
from conversations.handoff import conversation_request_agent
from conversations.models import Conversation, LLMCall, Message, ReplyJob
from conversations.selectors import (
    ConversationNotFound,
    NotAnAgent,
    access_agent,
    access_conversation_for_agent,
)
from supportbot.asgi import application
from supportbot.tenants.models import TenantMembership
from tests.conversations.test_consumer import (
    DEEP_JSON,
    SHOP,
    add_messages,
    assert_closed_with,
    hello,
    is_final_assistant,
    receive_until,
    store_conversation,
)
from tests.conversations.test_consumer import connect as connect_visitor
from tests.support.llm_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

HOST = "testserver"
OWN_ORIGIN = f"http://{HOST}"


# --- helpers ----------------------------------------------------------------------------------


def make_user(
    username: str,
    *,
    tenant: Any = None,
    staff: bool = True,
    display_name: str = "",
    role: str = TenantMembership.Role.AGENT,
    **fields: Any,
) -> Any:
    user = get_user_model().objects.create_user(
        username=username, password="pw-not-used", is_staff=staff, **fields
    )
    if tenant is not None:
        TenantMembership.objects.create(
            tenant=tenant, user=user, display_name=display_name, role=role
        )
    return user


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def connect_agent(
    conversation_id: str,
    user: Any | None,
    *,
    origin: str | None = OWN_ORIGIN,
    last_seq: int | None = None,
) -> WebsocketCommunicator:
    headers = [(b"host", HOST.encode())]
    if origin:
        headers.append((b"origin", origin.encode()))
    if user is not None:
        cookie = await database_sync_to_async(session_cookie)(user)
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    path = f"/ws/agent/conversations/{conversation_id}/"
    if last_seq is not None:
        path += f"?last_seq={last_seq}"
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def agent_welcome(ws: WebsocketCommunicator) -> dict[str, Any]:
    welcome = await ws.receive_json_from(timeout=5)
    assert welcome["type"] == "welcome", welcome
    return welcome


async def receive_each(
    communicator: WebsocketCommunicator, *predicates: Any, timeout: float = 10
) -> list[dict[str, Any]]:
    """Frames received until each predicate has matched one of them (in any order)."""
    frames: list[dict[str, Any]] = []
    pending = list(predicates)
    deadline = asyncio.get_running_loop().time() + timeout
    while pending:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"no frames for every predicate within {timeout}s; got {frames}"
        frame = await communicator.receive_json_from(timeout=remaining)
        frames.append(frame)
        pending = [p for p in pending if not p(frame)]
    return frames


def is_notice(frame: dict[str, Any]) -> bool:
    return frame["type"] == "message" and frame["message"]["role"] == "system"


def is_updated(frame: dict[str, Any]) -> bool:
    return frame["type"] == "conversation.updated"


async def conversation_of(conversation_id: str) -> Conversation:
    return await database_sync_to_async(Conversation.objects.select_related("assigned_agent").get)(
        pk=conversation_id
    )


@pytest.fixture
def tenant_and_key(make_tenant: Any, llm: Any) -> Any:
    return make_tenant(allowed_origins=[SHOP])


@pytest.fixture
def agent(tenant_and_key: Any) -> Any:
    return make_user("ana", tenant=tenant_and_key[0], first_name="Ann", display_name="Ana")


async def visitor_with_conversation(key: Any) -> tuple[WebsocketCommunicator, str]:
    """A visitor's socket and their conversation, stored (as their first message would)."""
    ws = await connect_visitor()
    welcome = await hello(ws, key.public_key)
    await database_sync_to_async(lambda: store_conversation(key.tenant, welcome))()
    return ws, welcome["conversation_id"]


# --- the whole journey -----------------------------------------------------------------------


async def test_takeover_reply_hand_back_and_close(
    tenant_and_key: Any, agent: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="Let me check."))
    visitor, conversation_id = await visitor_with_conversation(key)
    await visitor.send_json_to({"type": "message", "client_id": "v1", "text": "Where is my order?"})
    await receive_until(visitor, is_final_assistant)

    # The visitor asks for a person. Where the message path does not hand over by itself,
    # the test calls conversation_request_agent as that path would.
    await visitor.send_json_to(
        {"type": "message", "client_id": "v2", "text": "I want to talk to a human"}
    )
    frames = await receive_until(visitor, lambda f: is_final_assistant(f) or is_notice(f))
    if not is_notice(frames[-1]):
        requested = await database_sync_to_async(conversation_request_agent)(
            conversation_id=conversation_id, reason="visitor asked for a person"
        )
        assert requested
        frames = await receive_until(visitor, is_notice)
    assert "person from our team" in frames[-1]["message"]["text"]
    conversation = await conversation_of(conversation_id)
    assert conversation.status == "waiting_for_agent"
    language = conversation.language  # whatever the conversation's language was detected as

    ws = await connect_agent(conversation_id, agent)
    welcome = await agent_welcome(ws)
    assert welcome["conversation"] == {
        "status": "waiting_for_agent",
        "language": language,
        "agent": None,
    }
    assert [m["role"] for m in welcome["messages"]][:3] == ["user", "assistant", "user"]
    assert welcome["messages"][-1]["role"] == "system"
    assert welcome["seq"] == welcome["messages"][-1]["seq"]

    # A second agent of the same tenant watches too.
    colleague = await database_sync_to_async(make_user)("bo", tenant=tenant_and_key[0])
    watcher = await connect_agent(conversation_id, colleague, last_seq=welcome["seq"])
    assert (await agent_welcome(watcher))["messages"] == []

    await ws.send_json_to({"type": "take_over"})
    own = await receive_each(ws, is_updated, is_notice)
    assert next(f for f in own if is_updated(f))["conversation"] == {
        "status": "with_agent",
        "language": language,
        "agent": {"name": "Ana"},
    }
    assert any(is_notice(f) and "Ana from our team" in f["message"]["text"] for f in own)
    visitor_frames = await receive_until(visitor, is_updated)
    joined = [f["message"] for f in visitor_frames if is_notice(f)]
    assert joined
    assert joined[-1]["text"] == "Ana from our team has joined the conversation."
    assert visitor_frames[-1]["conversation"]["status"] == "with_agent"
    watcher_frames = await receive_until(watcher, is_updated)
    assert watcher_frames[-1]["conversation"]["agent"] == {"name": "Ana"}
    # The colleague cannot take it from Ana, nor answer in her place.
    await watcher.send_json_to({"type": "take_over"})
    error = await watcher.receive_json_from(timeout=5)
    assert error["type"] == "error"
    assert error["code"] == "assigned_to_other"
    assert "Ana" in error["detail"]
    await watcher.send_json_to({"type": "reply", "text": "Me too"})
    assert (await watcher.receive_json_from(timeout=5))["code"] == "assigned_to_other"

    conversation = await conversation_of(conversation_id)
    assert conversation.status == "with_agent"
    assert conversation.assigned_agent_id == agent.pk

    # The agent answers; the visitor gets an `agent` message.
    await ws.send_json_to({"type": "reply", "text": "Hi, I'm Ana. Your order ships today."})
    ack = await ws.receive_json_from(timeout=5)
    assert ack["type"] == "ack"
    assert ack["message"]["role"] == "agent"
    frames = await receive_until(visitor, lambda f: f["type"] == "message")
    assert frames[-1]["message"]["role"] == "agent"
    assert frames[-1]["message"]["text"] == "Hi, I'm Ana. Your order ships today."
    assert frames[-1]["message"]["id"] == ack["message"]["id"]
    watched = await receive_until(watcher, lambda f: f["type"] == "message")
    assert watched[-1]["message"]["id"] == ack["message"]["id"]
    stored = await database_sync_to_async(Message.objects.get)(pk=ack["message"]["id"])
    assert stored.author_id == agent.pk

    # While the agent has it, the visitor's messages reach the agent and the bot stays silent.
    requests_before = len(llm.chat_requests())
    await visitor.send_json_to({"type": "message", "client_id": "v3", "text": "Thanks!"})
    assert (await visitor.receive_json_from(timeout=5))["type"] == "ack"
    seen = await receive_until(ws, lambda f: f["type"] == "message")
    assert seen[-1]["message"]["role"] == "user"
    assert seen[-1]["message"]["text"] == "Thanks!"
    assert await visitor.receive_nothing(timeout=0.5)
    assert len(llm.chat_requests()) == requests_before

    # Hand back: the visitor is told, and the bot answers the next message again.
    await ws.send_json_to({"type": "hand_back"})
    own = await receive_each(ws, is_updated, is_notice)
    assert next(f for f in own if is_updated(f))["conversation"]["status"] == "bot"
    frames = await receive_until(visitor, is_updated)
    assert frames[-1]["conversation"] == {"status": "bot", "language": language, "agent": None}
    assert any(
        is_notice(f) and f["message"]["text"] == "You're chatting with our assistant again."
        for f in frames
    )
    llm.enqueue(Reply(text="Back at your service."))
    await visitor.send_json_to({"type": "message", "client_id": "v4", "text": "One more thing"})
    frames = await receive_until(visitor, is_final_assistant)
    assert frames[-1]["message"]["text"] == "Back at your service."
    # ... and the agent page sees the bot's reply stream live.
    agent_frames = await receive_until(ws, is_final_assistant)
    assert any(f["type"] == "reply.delta" for f in agent_frames)
    assert agent_frames[-1]["message"]["text"] == "Back at your service."

    # Close.
    await ws.send_json_to({"type": "close"})
    own = await receive_each(ws, is_updated, is_notice)
    assert next(f for f in own if is_updated(f))["conversation"]["status"] == "closed"
    frames = await receive_until(visitor, is_updated)
    assert frames[-1]["conversation"]["status"] == "closed"
    assert any(is_notice(f) and "was closed" in f["message"]["text"] for f in frames)
    await ws.send_json_to({"type": "reply", "text": "Still there?"})
    assert (await receive_until(ws, lambda f: f["type"] == "error"))[-1][
        "code"
    ] == "conversation_closed"
    conversation = await conversation_of(conversation_id)
    assert conversation.status == "closed"
    for communicator in (visitor, ws, watcher):
        await communicator.disconnect()


async def start_slow_reply(
    key: Any, agent: Any, llm: Any
) -> tuple[WebsocketCommunicator, WebsocketCommunicator, str, str, list[dict[str, Any]]]:
    """A visitor and an agent watching a reply that is streaming (a few deltas shown so far)."""
    llm.enqueue(Reply(tokens=[f"w{i} " for i in range(60)], token_interval=0.1))
    visitor, conversation_id = await visitor_with_conversation(key)
    ws = await connect_agent(conversation_id, agent)
    await agent_welcome(ws)
    await visitor.send_json_to({"type": "message", "client_id": "s", "text": "Tell me a story"})
    streamed = await receive_until(
        visitor, lambda f: f["type"] == "reply.delta" and f["index"] >= 2
    )
    message_id = next(f["message_id"] for f in streamed if f["type"] == "reply.start")
    await receive_until(ws, lambda f: f["type"] == "reply.delta" and f["index"] >= 2)
    return visitor, ws, conversation_id, message_id, streamed


async def wait_for_the_worker(conversation_id: str) -> None:
    """Until the worker has finished with the provider's stream (its call is recorded)."""
    deadline = asyncio.get_running_loop().time() + 15
    while not await database_sync_to_async(
        LLMCall.objects.filter(conversation_id=conversation_id).exists
    )():
        assert asyncio.get_running_loop().time() < deadline, "the worker never finished"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)


async def test_streaming_reply_is_cancelled_at_once_on_takeover(
    tenant_and_key: Any, agent: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    visitor, ws, conversation_id, message_id, streamed = await start_slow_reply(key, agent, llm)

    await ws.send_json_to({"type": "take_over"})

    def is_final(frame: dict[str, Any]) -> bool:
        return frame["type"] == "message" and frame["message"]["id"] == message_id

    # At once: the reply ends as `failed` with the text shown so far, then the notice.
    frames = await receive_until(visitor, is_final, timeout=5)
    final = frames[-1]["message"]
    assert final["status"] == "failed", frames
    assert final["role"] == "assistant", frames
    shown = "".join(f["text"] for f in streamed + frames if f["type"] == "reply.delta")
    assert final["text"].startswith(shown)
    assert "w59" not in final["text"]
    rest = await receive_until(visitor, is_updated, timeout=5)
    assert [f["message"]["role"] for f in rest if f["type"] == "message"] == ["system"]
    # The agent's page: the same ending, and no delta of that reply after it.
    agent_frames = await receive_each(ws, is_final, is_updated, timeout=5)
    assert next(f for f in agent_frames if is_final(f))["message"]["status"] == "failed"
    after = agent_frames[[is_final(f) for f in agent_frames].index(True) + 1 :]
    assert all(f["type"] not in ("reply.delta", "reply.start") for f in after)
    late = []
    while not await ws.receive_nothing(timeout=1.0):
        late.append(await ws.receive_json_from())
    assert all(f["type"] not in ("reply.delta", "reply.start") for f in late), late

    job = await database_sync_to_async(ReplyJob.objects.get)(conversation_id=conversation_id)
    assert job.state == "cancelled"
    # Whatever the worker still does, the reply stays as the visitor last saw it.
    await wait_for_the_worker(conversation_id)
    reply = await database_sync_to_async(Message.objects.get)(pk=message_id)
    assert reply.status == "failed"
    assert reply.text == final["text"]
    assert (await conversation_of(conversation_id)).status == "with_agent"
    for communicator in (visitor, ws):
        await communicator.disconnect()


async def test_visitor_gets_no_delta_after_a_cancelled_reply_ends(
    tenant_and_key: Any, agent: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    visitor, ws, conversation_id, message_id, _ = await start_slow_reply(key, agent, llm)
    await ws.send_json_to({"type": "take_over"})
    await receive_until(
        visitor, lambda f: f["type"] == "message" and f["message"]["id"] == message_id, timeout=5
    )
    try:
        rest = await receive_until(visitor, is_updated, timeout=5)
        assert all(f["type"] != "reply.delta" for f in rest), rest
        late = []
        while not await visitor.receive_nothing(timeout=1.0):
            late.append(await visitor.receive_json_from())
        assert late == []
    finally:
        await wait_for_the_worker(conversation_id)
        for communicator in (visitor, ws):
            await communicator.disconnect()


async def test_first_reply_takes_a_waiting_conversation_over(
    tenant_and_key: Any, agent: Any
) -> None:
    _, key = tenant_and_key
    visitor, conversation_id = await visitor_with_conversation(key)
    ws = await connect_agent(conversation_id, agent)
    await agent_welcome(ws)
    # With the bot: an explicit takeover comes first.
    await ws.send_json_to({"type": "reply", "text": "Hello"})
    assert (await ws.receive_json_from(timeout=5))["code"] == "not_taken_over"
    await database_sync_to_async(conversation_request_agent)(
        conversation_id=conversation_id, reason="test"
    )
    await receive_until(ws, is_notice)
    await ws.send_json_to({"type": "reply", "text": "Hello, Ana here."})
    frames = await receive_each(
        ws, lambda f: f["type"] == "ack", lambda f: is_updated(f) and f["conversation"]["agent"]
    )
    assert next(f for f in frames if is_updated(f))["conversation"]["status"] == "with_agent"
    visitor_frames = await receive_until(
        visitor, lambda f: f["type"] == "message" and f["message"]["role"] == "agent"
    )
    roles = [f["message"]["role"] for f in visitor_frames if f["type"] == "message"]
    assert roles[-2:] == ["system", "agent"]  # joined, then the reply
    for communicator in (visitor, ws):
        await communicator.disconnect()


async def test_bad_agent_frames_get_errors_and_the_socket_stays(
    tenant_and_key: Any, agent: Any
) -> None:
    _, key = tenant_and_key
    visitor, conversation_id = await visitor_with_conversation(key)
    ws = await connect_agent(conversation_id, agent)
    await agent_welcome(ws)
    await ws.send_json_to({"type": "take_over"})
    await receive_each(ws, is_updated, is_notice)
    for frame, code in [
        ({"type": "reply", "text": "   "}, "bad_request"),
        ({"type": "reply"}, "bad_request"),
        ({"type": "reply", "text": "x" * 4001}, "too_long"),
        ({"type": "dance"}, "bad_request"),
        ({"kind": "reply"}, "bad_request"),
    ]:
        await ws.send_json_to(frame)
        error = await receive_until(ws, lambda f: f["type"] == "error")
        assert error[-1]["code"] == code, (frame, error)
    await ws.send_to(text_data="not json")
    assert (await ws.receive_json_from(timeout=5))["code"] == "bad_request"
    # Taking over again is a no-op that reports the state.
    await ws.send_json_to({"type": "take_over"})
    again = await ws.receive_json_from(timeout=5)
    assert again["type"] == "conversation.updated"
    assert again["conversation"]["status"] == "with_agent"
    await ws.send_json_to({"type": "reply", "text": "x" * 4000})
    assert (await receive_until(ws, lambda f: f["type"] == "ack"))[-1]["message"]["role"] == "agent"
    count = await database_sync_to_async(
        Message.objects.filter(conversation_id=conversation_id, role="agent").count
    )()
    assert count == 1
    for communicator in (visitor, ws):
        await communicator.disconnect()


@pytest.mark.parametrize(
    "raw",
    [
        DEEP_JSON,
        '{"type": "reply", "text": ' + DEEP_JSON + "}",
        '{"type": "reply", "text": "a\\u0000b"}',
        '{"type": "reply", "text": "a\\ud800b"}',
        '{"type": "reply", "text": "a\ud800b"}',
        '{"type": "take_over", "\\udc00": "x"}',
    ],
)
async def test_malformed_agent_frames_get_bad_request_and_the_socket_stays(
    tenant_and_key: Any, agent: Any, raw: str
) -> None:
    _, key = tenant_and_key
    visitor, conversation_id = await visitor_with_conversation(key)
    ws = await connect_agent(conversation_id, agent)
    await agent_welcome(ws)
    await ws.send_json_to({"type": "take_over"})
    await receive_each(ws, is_updated, is_notice)
    await ws.send_to(text_data=raw)
    error = await ws.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", "bad_request"), error
    await ws.send_json_to({"type": "reply", "text": "Hello from Ana"})
    ack = (await receive_until(ws, lambda f: f["type"] == "ack"))[-1]
    assert ack["message"]["text"] == "Hello from Ana"
    texts = await database_sync_to_async(
        lambda: [
            m.text for m in Message.objects.filter(conversation_id=conversation_id, role="agent")
        ]
    )()
    assert texts == ["Hello from Ana"]
    for communicator in (visitor, ws):
        await communicator.disconnect()


async def test_an_agent_frame_flood_is_closed_4429_past_the_limit(
    tenant_and_key: Any, agent: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conversations.agent_consumer

    _, key = tenant_and_key
    settings.SOCKET_FRAME_BURST = 3
    settings.SOCKET_FRAMES_PER_SECOND = 0.01  # no refill within the test
    handled: list[object] = []
    real = conversations.agent_consumer.agent_frame

    def counting(**kwargs: Any) -> list[dict[str, Any]]:
        handled.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(conversations.agent_consumer, "agent_frame", counting)
    visitor, conversation_id = await visitor_with_conversation(key)
    ws = await connect_agent(conversation_id, agent)
    await agent_welcome(ws)
    for _ in range(100):
        await ws.send_json_to({"type": "take_over"})
    await assert_closed_with(ws, 4429)
    assert len(handled) == 3
    for communicator in (visitor, ws):
        await communicator.disconnect()


# --- who may connect --------------------------------------------------------------------------


async def test_agent_of_another_tenant_is_refused_and_cannot_post(
    make_tenant: Any, tenant_and_key: Any
) -> None:
    _, key = tenant_and_key
    other_tenant, _ = await database_sync_to_async(make_tenant)()
    outsider = await database_sync_to_async(make_user)("eve", tenant=other_tenant)
    visitor, conversation_id = await visitor_with_conversation(key)
    await database_sync_to_async(conversation_request_agent)(
        conversation_id=conversation_id, reason="test"
    )
    await receive_until(visitor, is_notice)

    ws = await connect_agent(conversation_id, outsider)
    await assert_closed_with(ws, 4403)

    def post_as_outsider() -> None:
        conversation = access_conversation_for_agent(user=outsider, conversation_id=conversation_id)
        agent_message_post(conversation=conversation, agent=outsider, text="hi")

    with pytest.raises(ConversationNotFound):
        await database_sync_to_async(post_as_outsider)()
    conversation = await conversation_of(conversation_id)
    assert conversation.status == "waiting_for_agent"
    assert conversation.assigned_agent_id is None
    assert await visitor.receive_nothing(timeout=0.5)
    await visitor.disconnect()


async def test_non_staff_anonymous_and_unknown_are_refused(tenant_and_key: Any, agent: Any) -> None:
    _, key = tenant_and_key
    visitor, conversation_id = await visitor_with_conversation(key)
    # A member that is not staff (or no longer is).
    member = await database_sync_to_async(make_user)(
        "not-staff", tenant=tenant_and_key[0], staff=False
    )
    ws = await connect_agent(conversation_id, member)
    await assert_closed_with(ws, 4403)
    with pytest.raises(NotAnAgent):
        await database_sync_to_async(access_conversation_for_agent)(
            user=member, conversation_id=conversation_id
        )
    # Nobody logged in, or a forged session cookie.
    ws = await connect_agent(conversation_id, None)
    await assert_closed_with(ws, 4403)
    forged = WebsocketCommunicator(
        application,
        f"/ws/agent/conversations/{conversation_id}/",
        headers=[
            (b"host", HOST.encode()),
            (b"origin", OWN_ORIGIN.encode()),
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}=forged-session".encode()),
        ],
    )
    assert (await forged.connect())[0]
    await assert_closed_with(forged, 4403)
    # A conversation that does not exist.
    ws = await connect_agent("00000000-0000-4000-8000-000000000000", agent)
    await assert_closed_with(ws, 4403)
    await visitor.disconnect()


async def test_a_compliance_officer_is_no_agent_and_a_tenant_admin_is(
    tenant_and_key: Any,
) -> None:
    """Compliance officers see transcripts only through a data request: not on this socket."""
    tenant, key = tenant_and_key
    officer = await database_sync_to_async(make_user)(
        "olga", tenant=tenant, role=TenantMembership.Role.COMPLIANCE
    )
    admin = await database_sync_to_async(make_user)(
        "adam", tenant=tenant, role=TenantMembership.Role.ADMIN, display_name="Adam"
    )
    visitor, conversation_id = await visitor_with_conversation(key)
    ws = await connect_agent(conversation_id, officer)
    await assert_closed_with(ws, 4403)
    with pytest.raises(NotAnAgent):
        await database_sync_to_async(access_agent)(officer)
    with pytest.raises(ConversationNotFound):
        await database_sync_to_async(access_conversation_for_agent)(
            user=officer, conversation_id=conversation_id
        )

    ws = await connect_agent(conversation_id, admin)
    await agent_welcome(ws)
    await ws.send_json_to({"type": "take_over"})
    frames = await receive_until(visitor, is_updated)
    assert frames[-1]["conversation"]["agent"] == {"name": "Adam"}
    for communicator in (visitor, ws):
        await communicator.disconnect()


async def test_visitors_never_see_an_agents_login_or_real_name(tenant_and_key: Any) -> None:
    """Without a display name in the tenant, visitors get a neutral wording only."""
    tenant, key = tenant_and_key
    agent = await database_sync_to_async(make_user)(
        "jdoe.private", tenant=tenant, first_name="John", last_name="Doe", email="jd@corp.example"
    )
    visitor, conversation_id = await visitor_with_conversation(key)
    ws = await connect_agent(conversation_id, agent)
    await agent_welcome(ws)
    await ws.send_json_to({"type": "take_over"})
    await ws.send_json_to({"type": "reply", "text": "How can I help?"})
    seen = await receive_each(
        visitor,
        is_updated,
        lambda f: f["type"] == "message" and f["message"]["role"] == "agent",
    )
    notices = [f["message"]["text"] for f in seen if is_notice(f)]
    assert notices == ["A support agent from our team has joined the conversation."]
    updated = next(f for f in seen if is_updated(f))
    assert updated["conversation"]["agent"] == {"name": ""}
    reply = next(f for f in seen if f["type"] == "message" and f["message"]["role"] == "agent")
    assert reply["message"]["author_name"] == ""
    # A page opened later gets the reply in its catch-up (one lookup for every author): no name.
    again = await connect_agent(conversation_id, agent)
    welcome = await agent_welcome(again)
    replies = [m for m in welcome["messages"] if m["role"] == "agent"]
    assert [m["author_name"] for m in replies] == [""]
    for frame in [*seen, welcome]:
        for private in ("jdoe", "John", "Doe", "jd@corp"):
            assert private not in str(frame), frame
    for communicator in (visitor, ws, again):
        await communicator.disconnect()


async def test_cross_origin_agent_socket_is_refused(tenant_and_key: Any, agent: Any) -> None:
    _, key = tenant_and_key
    visitor, conversation_id = await visitor_with_conversation(key)
    # The tenant's own shop may embed the widget, but not open agent sockets.
    for origin in (SHOP, "https://evil.example.org", f"https://{HOST}.evil.org", None):
        ws = await connect_agent(conversation_id, agent, origin=origin)
        await assert_closed_with(ws, 4403)
    ws = await connect_agent(conversation_id, agent)
    assert (await agent_welcome(ws))["conversation"]["status"] == "bot"
    for communicator in (visitor, ws):
        await communicator.disconnect()


async def test_superuser_may_open_any_tenants_conversation(tenant_and_key: Any) -> None:
    _, key = tenant_and_key
    root = await database_sync_to_async(get_user_model().objects.create_superuser)(
        username="root", password="pw-not-used"
    )
    visitor, conversation_id = await visitor_with_conversation(key)
    ws = await connect_agent(conversation_id, root)
    await agent_welcome(ws)
    await ws.send_json_to({"type": "take_over"})
    frames = await receive_until(visitor, is_updated)
    # Without a membership (and its display name) the visitor sees no name at all.
    assert frames[-1]["conversation"]["agent"] == {"name": ""}
    for communicator in (visitor, ws):
        await communicator.disconnect()


def _remove_membership(agent: Any) -> None:
    TenantMembership.objects.filter(user=agent).delete()


def _log_out(agent: Any) -> None:
    from django.contrib.sessions.models import Session

    Session.objects.all().delete()  # what `logout()` does to the stored session


@pytest.mark.parametrize("end_access", [_remove_membership, _log_out], ids=["membership", "logout"])
async def test_access_ended_while_the_page_is_open_stops_the_next_action(
    tenant_and_key: Any, agent: Any, end_access: Any
) -> None:
    _, key = tenant_and_key
    visitor, conversation_id = await visitor_with_conversation(key)
    ws = await connect_agent(conversation_id, agent)
    await agent_welcome(ws)
    await database_sync_to_async(end_access)(agent)
    await ws.send_json_to({"type": "take_over"})
    error = await ws.receive_json_from(timeout=5)
    assert error["type"] == "error"
    assert error["code"] == "forbidden"
    assert (await conversation_of(conversation_id)).status == "bot"
    for communicator in (visitor, ws):
        await communicator.disconnect()


async def test_reconnecting_agent_gets_what_it_missed(
    tenant_and_key: Any, agent: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="First answer."))
    visitor, conversation_id = await visitor_with_conversation(key)
    await visitor.send_json_to({"type": "message", "client_id": "a", "text": "Question"})
    await receive_until(visitor, is_final_assistant)
    ws = await connect_agent(conversation_id, agent, last_seq=1)
    welcome = await agent_welcome(ws)
    assert [(m["seq"], m["text"]) for m in welcome["messages"]] == [(2, "First answer.")]
    for communicator in (visitor, ws):
        await communicator.disconnect()


async def test_agent_catch_up_is_capped_like_the_visitors(
    tenant_and_key: Any, agent: Any, settings: Any
) -> None:
    _, key = tenant_and_key
    visitor, conversation_id = await visitor_with_conversation(key)
    await database_sync_to_async(add_messages)(conversation_id, 30)
    settings.CATCH_UP_MAX_MESSAGES = 10
    ws = await connect_agent(conversation_id, agent)
    welcome = await agent_welcome(ws)
    assert [m["seq"] for m in welcome["messages"]] == list(range(21, 31))
    assert (welcome["truncated"], welcome["first_seq"]) == (True, 21)
    await ws.disconnect()
    ws = await connect_agent(conversation_id, agent, last_seq=25)
    welcome = await agent_welcome(ws)
    assert [m["seq"] for m in welcome["messages"]] == list(range(26, 31))
    assert "truncated" not in welcome
    for communicator in (visitor, ws):
        await communicator.disconnect()


# --- services directly ------------------------------------------------------------------------


def test_services_keep_the_rules(tenant_and_key: Any, agent: Any) -> None:
    from conversations.models import Contact

    tenant, _ = tenant_and_key
    contact = Contact.objects.create(tenant=tenant)
    conversation = Conversation.objects.create(tenant=tenant, contact=contact, language="es")
    assert conversation_hand_back(conversation=conversation, agent=agent) is False
    assert conversation_take_over(conversation=conversation, agent=agent) is True
    assert conversation_take_over(conversation=conversation, agent=agent) is False
    notices = [m.text for m in conversation.messages.filter(role="system")]
    assert notices == ["Ana, de nuestro equipo, se ha unido a la conversación."]
    message = agent_message_post(conversation=conversation, agent=agent, text="Hola")
    assert message.role == "agent"
    assert message.author == agent
    assert message.seq == 2
    assert conversation_close(conversation=conversation, agent=agent) is True
    assert conversation_close(conversation=conversation, agent=agent) is False
    conversation.refresh_from_db()
    assert conversation.status == "closed"
    for service in (conversation_take_over, conversation_hand_back):
        with pytest.raises(AgentActionError) as raised:
            service(conversation=conversation, agent=agent)
        assert raised.value.code == "conversation_closed"


def test_agent_origin_is_the_service_itself(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["support.example.net"]
    settings.PUBLIC_URL = ""
    assert agent_origin_allowed("https://support.example.net", "support.example.net")
    assert not agent_origin_allowed("https://shop.example.com", "support.example.net")
    assert not agent_origin_allowed(None, "support.example.net")
    assert not agent_origin_allowed("null", "support.example.net")
    # A host outside ALLOWED_HOSTS (a rebound DNS name) is not the service.
    assert not agent_origin_allowed("http://rebound.example.org", "rebound.example.org")
    settings.PUBLIC_URL = "https://support.example.net"
    assert agent_origin_allowed("https://support.example.net", "internal:8000")


# --- the admin --------------------------------------------------------------------------------


def _conversation(tenant: Any, **fields: Any) -> Conversation:
    from conversations.models import Contact

    contact = Contact.objects.create(tenant=tenant)
    return Conversation.objects.create(tenant=tenant, contact=contact, **fields)


def test_admin_lists_only_the_agents_tenants(make_tenant: Any) -> None:
    tenant_a, _ = make_tenant(name="Alpha Shop")
    tenant_b, _ = make_tenant(name="Beta Secret")
    mine = _conversation(tenant_a, status="waiting_for_agent")
    theirs = _conversation(tenant_b)
    agent = make_user("ana", tenant=tenant_a, display_name="Ana")
    client = Client()
    client.force_login(agent)

    listing = client.get("/admin/conversations/conversation/")
    assert listing.status_code == 200
    body = listing.content.decode()
    assert str(mine.pk)[:8] in body
    assert str(theirs.pk)[:8] not in body
    assert "Beta Secret" not in body  # not even in the tenant filter
    assert 'class="status-badge status-waiting_for_agent"' in body
    waiting = client.get("/admin/conversations/conversation/", {"status": "waiting_for_agent"})
    assert str(mine.pk)[:8] in waiting.content.decode()

    assert client.get(f"/admin/conversations/conversation/{mine.pk}/change/").status_code == 200
    other = client.get(f"/admin/conversations/conversation/{theirs.pk}/change/", follow=True)
    assert other.redirect_chain
    assert other.redirect_chain[-1][0] == "/admin/"
    assert "Beta Secret" not in other.content.decode()
    root = get_user_model().objects.create_superuser(username="root", password="pw")
    root_client = Client()
    root_client.force_login(root)
    everything = root_client.get("/admin/conversations/conversation/").content.decode()
    assert str(mine.pk)[:8] in everything
    assert str(theirs.pk)[:8] in everything


def test_admin_refuses_staff_without_membership_and_non_staff(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    conversation = _conversation(tenant)
    for user in (make_user("nobody"), make_user("member-not-staff", tenant=tenant, staff=False)):
        client = Client()
        client.force_login(user)
        listing = client.get("/admin/conversations/conversation/")
        assert listing.status_code in (302, 403)
        page = client.get(f"/admin/conversations/conversation/{conversation.pk}/change/")
        assert page.status_code in (302, 403)


def test_admin_conversation_page_has_the_live_panel_and_summary(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    conversation = _conversation(
        tenant,
        language="es",
        status="waiting_for_agent",
        summary={
            "summary": "Wants a <b>refund</b>",
            "facts": ["Order 42"],
            "open_questions": [],
        },
    )
    agent = make_user("ana", tenant=tenant)
    client = Client()
    client.force_login(agent)
    body = client.get(f"/admin/conversations/conversation/{conversation.pk}/change/").content
    page = body.decode()
    assert f'data-socket-path="/ws/agent/conversations/{conversation.pk}/"' in page
    assert 'data-resume-seq="0"' in page
    assert 'data-status="waiting_for_agent"' in page
    assert "admin_extras/agent.js" in page
    assert "<script>" not in page
    assert '<script type="module">' not in page
    assert "Wants a &lt;b&gt;refund&lt;/b&gt;" in page
    assert "Order 42" in page
    assert "Open questions" not in page
    assert "Waiting for an agent" in page
    empty = _conversation(tenant)
    page = client.get(f"/admin/conversations/conversation/{empty.pk}/change/").content.decode()
    assert "No summary yet." in page


def test_admin_transcript_is_paginated_newest_first(make_tenant: Any, settings: Any) -> None:
    settings.ADMIN_TRANSCRIPT_PAGE_SIZE = 4
    tenant, _ = make_tenant()
    conversation = _conversation(tenant)
    add_messages(str(conversation.pk), 10)
    client = Client()
    client.force_login(make_user("ana", tenant=tenant))
    url = f"/admin/conversations/conversation/{conversation.pk}/change/"

    def seqs(page: str) -> list[int]:
        return [int(seq) for seq in re.findall(r'data-seq="(\d+)"', page)]

    newest = client.get(url).content.decode()
    assert seqs(newest) == [7, 8, 9, 10]
    assert "Page 1 of 3" in newest
    assert 'href="?transcript_page=2"' in newest
    assert "Newer messages" not in newest
    assert 'data-resume-seq="10"' in newest  # the live panel is on the newest page
    middle = client.get(url, {"transcript_page": "2"}).content.decode()
    assert seqs(middle) == [3, 4, 5, 6]
    assert 'href="?transcript_page=3"' in middle
    assert 'href="?transcript_page=1"' in middle
    assert "data-resume-seq" not in middle
    oldest = client.get(url, {"transcript_page": "3"}).content.decode()
    assert seqs(oldest) == [1, 2]
    assert "Older messages" not in oldest
    assert seqs(client.get(url, {"transcript_page": "nonsense"}).content.decode()) == [7, 8, 9, 10]
    short = _conversation(tenant)
    add_messages(str(short.pk), 3)
    page = client.get(f"/admin/conversations/conversation/{short.pk}/change/").content.decode()
    assert seqs(page) == [1, 2, 3]
    assert "transcript-pages" not in page
