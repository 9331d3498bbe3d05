"""Protocol v1 through the real consumer, channel layer (Redis) and a real Celery worker."""

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from conversations.groups import conversation_group
from conversations.models import Conversation, LLMCall, Message, ReplyJob
from conversations.refusals import CloseCode
from conversations.services import visitor_conversation_store, visitor_session_open
from conversations.socket_throttle import FrameBucket
from supportbot.asgi import application
from supportbot.channel_layer import RECONNECTED
from supportbot.trace import trace_callback_add, trace_callback_remove
from tests.support.llm_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]

SHOP = "https://shop.example.com"


async def connect(origin: str | None = SHOP, client: str = "10.0.0.1") -> WebsocketCommunicator:
    headers = [(b"host", b"support.example.net")]
    if origin:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(application, "/ws/widget/", headers=headers)
    communicator.scope["client"] = (client, 50000)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def hello(communicator: WebsocketCommunicator, key: str, **fields: Any) -> dict[str, Any]:
    frame = {
        "type": "hello",
        "key": key,
        "visitor_token": None,
        "conversation_id": None,
        "last_seq": 0,
        "locale": "en-GB",
    }
    frame.update(fields)
    await communicator.send_json_to(frame)
    welcome = await communicator.receive_json_from(timeout=5)
    assert welcome["type"] == "welcome", welcome
    return welcome


async def receive_until(
    communicator: WebsocketCommunicator, predicate: Any, timeout: float = 10
) -> list[dict[str, Any]]:
    """Frames received until one matches `predicate` (included); fails after `timeout`."""
    frames: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"no matching frame within {timeout}s; got {frames}"
        frame = await communicator.receive_json_from(timeout=remaining)
        frames.append(frame)
        if predicate(frame):
            return frames


def is_final_assistant(frame: dict[str, Any]) -> bool:
    return frame["type"] == "message" and frame["message"]["role"] == "assistant"


async def assert_closed_with(communicator: WebsocketCommunicator, code: int) -> None:
    output = await communicator.receive_output(timeout=5)
    while output["type"] == "websocket.send":
        output = await communicator.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": code}
    # What the server does once the socket is closed: the consumer's disconnect() runs (and
    # gives back its connection slot).
    await communicator.disconnect()


@pytest.fixture
def tenant_and_key(make_tenant: Any, llm: Any) -> Any:
    tenant, key = make_tenant(allowed_origins=[SHOP])
    return tenant, key


async def test_message_streams_reply_and_persists_it(tenant_and_key: Any, llm: Any) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="Orders ship in two business days.", token_interval=0.01))
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    assert welcome["messages"] == []
    assert welcome["seq"] == 0
    client_id = str(uuid.uuid4())
    await ws.send_json_to({"type": "message", "client_id": client_id, "text": "When do you ship?"})
    ack = await ws.receive_json_from(timeout=5)
    assert ack["type"] == "ack"
    assert ack["client_id"] == client_id
    assert ack["message"]["seq"] == 1
    assert ack["message"]["role"] == "user"

    frames = await receive_until(ws, is_final_assistant)
    # The language of the conversation was detected: widgets are told before the reply starts.
    assert frames[0]["type"] == "conversation.updated"
    assert frames[0]["conversation"] == {"status": "bot", "language": "en", "agent": None}
    frames = frames[1:]
    start = frames[0]
    assert start["type"] == "reply.start"
    deltas = [f for f in frames if f["type"] == "reply.delta"]
    assert [d["index"] for d in deltas] == list(range(len(deltas)))
    assert all(d["message_id"] == start["message_id"] for d in deltas)
    final = frames[-1]["message"]
    assert final["id"] == start["message_id"]
    assert final["status"] == "complete"
    assert (
        "".join(d["text"] for d in deltas) == final["text"] == "Orders ship in two business days."
    )
    assert final["seq"] == 2
    await ws.disconnect()

    message = await database_sync_to_async(Message.objects.get)(pk=final["id"])
    assert message.finish_reason == "stop"
    assert message.completion_tokens
    call = await database_sync_to_async(LLMCall.objects.get)(message=message)
    assert call.outcome == "ok"
    assert call.prompt_tokens
    assert call.model
    sent = llm.chat_requests()[-1].json
    assert sent["stream"] is True
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][-1] == {"role": "user", "content": "When do you ship?"}


async def test_resend_with_same_client_id_is_acked_once_and_answered_once(
    tenant_and_key: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="Just once."))
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    client_id = "c-1"
    await ws.send_json_to({"type": "message", "client_id": client_id, "text": "Hi"})
    first_ack = await ws.receive_json_from(timeout=5)
    await receive_until(ws, is_final_assistant)
    await ws.disconnect()

    # Reconnect (a dropped socket) and resend the same message.
    ws = await connect()
    again = await hello(
        ws,
        key.public_key,
        visitor_token=welcome["visitor_token"],
        conversation_id=welcome["conversation_id"],
        last_seq=2,
    )
    assert again["messages"] == []
    await ws.send_json_to({"type": "message", "client_id": client_id, "text": "Hi"})
    second_ack = await ws.receive_json_from(timeout=5)
    assert second_ack == first_ack
    assert await ws.receive_nothing(timeout=0.5)
    await ws.disconnect()
    count = await database_sync_to_async(
        Message.objects.filter(conversation_id=welcome["conversation_id"]).count
    )()
    assert count == 2
    assert len(llm.chat_requests()) == 1


async def test_resume_returns_missed_messages(tenant_and_key: Any, llm: Any) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="First answer."))
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    await ws.send_json_to({"type": "message", "client_id": "a", "text": "Question one"})
    await receive_until(ws, is_final_assistant)
    await ws.disconnect()

    ws = await connect()
    resumed = await hello(
        ws,
        key.public_key,
        visitor_token=welcome["visitor_token"],
        conversation_id=welcome["conversation_id"],
        last_seq=1,
    )
    assert resumed["conversation_id"] == welcome["conversation_id"]
    assert resumed["seq"] == 2
    assert [(m["seq"], m["role"], m["text"]) for m in resumed["messages"]] == [
        (2, "assistant", "First answer.")
    ]
    await ws.disconnect()


async def test_reconnect_during_stream_gets_text_so_far_then_the_rest(
    tenant_and_key: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    words = [f"w{i} " for i in range(40)]
    llm.enqueue(Reply(tokens=words, token_interval=0.05))
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    await ws.send_json_to({"type": "message", "client_id": "s", "text": "Tell me a long story"})
    await receive_until(ws, lambda f: f["type"] == "reply.delta" and f["index"] >= 2)
    await ws.disconnect()

    ws = await connect()
    resumed = await hello(
        ws,
        key.public_key,
        visitor_token=welcome["visitor_token"],
        conversation_id=welcome["conversation_id"],
        last_seq=1,
    )
    assert resumed["messages"] == []  # the streaming reply comes as reply.start + delta
    frames = await receive_until(ws, is_final_assistant, timeout=15)
    assert frames[0]["type"] == "reply.start"
    text = ""
    last_index = None
    for frame in frames:
        if frame["type"] == "reply.start":
            text, last_index = "", None
        elif frame["type"] == "reply.delta":
            if last_index is not None:
                assert frame["index"] == last_index + 1, frames
            last_index = frame["index"]
            text += frame["text"]
    assert frames[1]["type"] == "reply.delta"
    assert len(frames[1]["text"]) > 0
    assert text == "".join(words) == frames[-1]["message"]["text"]
    await ws.disconnect()


async def test_too_long_message_is_refused_and_socket_stays_usable(
    tenant_and_key: Any, llm: Any
) -> None:
    tenant, key = tenant_and_key
    tenant.message_max_chars = 50
    await database_sync_to_async(tenant.save)()
    ws = await connect()
    await hello(ws, key.public_key)
    await ws.send_json_to({"type": "message", "client_id": "long", "text": "x" * 51})
    error = await ws.receive_json_from(timeout=5)
    assert error["type"] == "error"
    assert error["code"] == "too_long"
    assert error["client_id"] == "long"
    assert "50 characters" in error["detail"]
    await ws.send_json_to({"type": "message", "client_id": "ok", "text": "short"})
    ack = await ws.receive_json_from(timeout=5)
    assert ack["type"] == "ack"
    assert ack["message"]["seq"] == 1
    await receive_until(ws, is_final_assistant)
    await ws.disconnect()
    assert not await database_sync_to_async(Message.objects.filter(client_id="long").exists)()


async def test_oversized_frame_gets_bad_request_and_socket_stays_usable(
    tenant_and_key: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    ws = await connect()
    await hello(ws, key.public_key)
    await ws.send_to(
        text_data=json.dumps({"type": "message", "client_id": "big", "text": "é" * 40000})
    )
    error = await ws.receive_json_from(timeout=5)
    assert error == {
        "type": "error",
        "code": "bad_request",
        "detail": "Frames are limited to 64 KiB.",
    }
    await ws.send_json_to({"type": "nonsense"})
    error = await ws.receive_json_from(timeout=5)
    assert error["code"] == "bad_request"
    await ws.send_json_to({"type": "message", "text": "no client id"})
    error = await ws.receive_json_from(timeout=5)
    assert error["code"] == "bad_request"
    await ws.send_json_to({"type": "message", "client_id": "fine", "text": "still here"})
    assert (await ws.receive_json_from(timeout=5))["type"] == "ack"
    await receive_until(ws, is_final_assistant)
    await ws.disconnect()


async def test_rate_limited_visitor_gets_retry_after(
    tenant_and_key: Any, llm: Any, settings: Any
) -> None:
    _, key = tenant_and_key
    settings.WIDGET_MESSAGES_PER_MINUTE = 1
    ws = await connect()
    await hello(ws, key.public_key)
    await ws.send_json_to({"type": "message", "client_id": "one", "text": "first"})
    assert (await ws.receive_json_from(timeout=5))["type"] == "ack"
    await ws.send_json_to({"type": "message", "client_id": "two", "text": "second"})
    frames = await receive_until(ws, lambda f: f["type"] == "error")
    error = frames[-1]
    assert error["code"] == "rate_limited"
    assert error["client_id"] == "two"
    assert 1 <= error["retry_after"] <= 60
    await ws.disconnect()


async def test_non_json_frame_closes_4400(tenant_and_key: Any) -> None:
    ws = await connect()
    await ws.send_to(text_data="this is not json")
    await assert_closed_with(ws, 4400)


async def test_message_before_hello_closes_4400(tenant_and_key: Any) -> None:
    ws = await connect()
    await ws.send_json_to({"type": "message", "client_id": "x", "text": "hi"})
    await assert_closed_with(ws, 4400)


async def test_no_hello_in_time_closes_4400(tenant_and_key: Any, settings: Any) -> None:
    settings.WIDGET_HELLO_TIMEOUT = 0.3
    ws = await connect()
    await assert_closed_with(ws, 4400)


async def test_hello_in_time_keeps_the_socket_past_the_hello_timeout(
    tenant_and_key: Any, settings: Any
) -> None:
    settings.WIDGET_HELLO_TIMEOUT = 0.3
    _, key = tenant_and_key
    ws = await connect()
    await hello(ws, key.public_key)
    # Twice the hello timeout goes by without a frame or a close, and the socket still answers.
    assert await ws.receive_nothing(timeout=0.6, interval=0.05)
    await ws.send_json_to({"type": "ping-of-no-kind"})
    answer = await ws.receive_json_from(timeout=5)
    assert answer["type"] == "error", answer
    assert answer["code"] == "bad_request", answer
    await ws.disconnect()


async def test_unknown_or_disabled_key_closes_4403(tenant_and_key: Any) -> None:
    _, key = tenant_and_key
    ws = await connect()
    await ws.send_json_to({"type": "hello", "key": "wk_does-not-exist"})
    await assert_closed_with(ws, 4403)
    key.is_active = False
    await database_sync_to_async(key.save)()
    ws = await connect()
    await ws.send_json_to({"type": "hello", "key": key.public_key})
    await assert_closed_with(ws, 4403)


async def test_origin_not_allowed_closes_4403(tenant_and_key: Any) -> None:
    _, key = tenant_and_key
    ws = await connect(origin="https://evil.example.org")
    await ws.send_json_to({"type": "hello", "key": key.public_key})
    await assert_closed_with(ws, 4403)
    ws = await connect(origin=None)
    await ws.send_json_to({"type": "hello", "key": key.public_key})
    await assert_closed_with(ws, 4403)


async def test_own_origin_is_allowed(tenant_and_key: Any) -> None:
    _, key = tenant_and_key
    ws = await connect(origin="https://support.example.net")
    welcome = await hello(ws, key.public_key)
    assert welcome["visitor_token"]
    await ws.disconnect()


async def test_forged_visitor_token_closes_4403(tenant_and_key: Any) -> None:
    _, key = tenant_and_key
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    await ws.disconnect()
    forged = welcome["visitor_token"][:-2] + (
        "AA" if not welcome["visitor_token"].endswith("AA") else "BB"
    )
    ws = await connect()
    await ws.send_json_to({"type": "hello", "key": key.public_key, "visitor_token": forged})
    await assert_closed_with(ws, 4403)


async def test_other_tenants_key_cannot_open_a_conversation(make_tenant: Any, llm: Any) -> None:
    _, key_a = await database_sync_to_async(make_tenant)(allowed_origins=[SHOP])
    _, key_b = await database_sync_to_async(make_tenant)(allowed_origins=[SHOP])
    ws = await connect()
    welcome_a = await hello(ws, key_a.public_key)
    await ws.disconnect()

    # Tenant A's visitor token and conversation presented with tenant B's key.
    ws = await connect()
    await ws.send_json_to(
        {
            "type": "hello",
            "key": key_b.public_key,
            "visitor_token": welcome_a["visitor_token"],
            "conversation_id": welcome_a["conversation_id"],
            "last_seq": 0,
        }
    )
    await assert_closed_with(ws, 4403)
    # Tenant B's own visitor asking for tenant A's conversation.
    ws = await connect()
    welcome_b = await hello(ws, key_b.public_key)
    await ws.disconnect()
    ws = await connect()
    await ws.send_json_to(
        {
            "type": "hello",
            "key": key_b.public_key,
            "visitor_token": welcome_b["visitor_token"],
            "conversation_id": welcome_a["conversation_id"],
            "last_seq": 0,
        }
    )
    await assert_closed_with(ws, 4403)
    # A conversation id without the token that opened it.
    ws = await connect()
    await ws.send_json_to(
        {
            "type": "hello",
            "key": key_a.public_key,
            "conversation_id": welcome_a["conversation_id"],
        }
    )
    await assert_closed_with(ws, 4403)


async def test_origin_allowed_for_one_tenant_is_not_allowed_for_another(make_tenant: Any) -> None:
    _, key_b = await database_sync_to_async(make_tenant)(allowed_origins=["https://b.example"])
    ws = await connect(origin=SHOP)
    await ws.send_json_to({"type": "hello", "key": key_b.public_key})
    await assert_closed_with(ws, 4403)


async def test_too_many_connections_from_one_client_closes_4429(
    tenant_and_key: Any, settings: Any
) -> None:
    settings.WIDGET_MAX_CONNECTIONS_PER_CLIENT = 2
    open_sockets = [await connect(client="10.9.9.9") for _ in range(2)]
    extra = await connect(client="10.9.9.9")
    await assert_closed_with(extra, 4429)
    other_client = await connect(client="10.9.9.10")
    await other_client.send_json_to({"type": "hello", "key": tenant_and_key[1].public_key})
    assert (await other_client.receive_json_from(timeout=5))["type"] == "welcome"
    for ws in [*open_sockets, other_client]:
        await ws.disconnect()
    again = await connect(client="10.9.9.9")
    await again.send_json_to({"type": "hello", "key": tenant_and_key[1].public_key})
    assert (await again.receive_json_from(timeout=5))["type"] == "welcome"
    await again.disconnect()


def test_close_codes_are_the_documented_ones() -> None:
    protocol = Path(__file__).resolve().parents[2] / "docs" / "widget-protocol.md"
    documented = re.findall(r"^\| (4\d{3}) \|", protocol.read_text(), re.MULTILINE)
    assert sorted(int(code) for code in documented) == sorted(code.value for code in CloseCode)


async def test_provider_failure_gives_an_honest_reply_and_keeps_the_message(
    tenant_and_key: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    llm.enqueue(
        Reply(
            status=401,
            error_body={"error": {"message": "bad key", "type": "auth", "code": "invalid_api_key"}},
        )
    )
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    await ws.send_json_to({"type": "message", "client_id": "f", "text": "Anyone there?"})
    frames = await receive_until(ws, lambda f: f["type"] == "error")
    error = frames[-1]
    assert error["code"] == "unavailable"
    assert error["client_id"] == "f"
    final = next(f["message"] for f in frames if is_final_assistant(f))
    # No fallback model and no help-centre article: an honest offer of a person.
    assert final["status"] == "complete"
    assert "person from our team" in final["text"]
    await ws.disconnect()
    job = await database_sync_to_async(ReplyJob.objects.get)(
        conversation_id=welcome["conversation_id"]
    )
    assert job.state == "done"
    assert job.error_code == "degraded:auth"
    user_message = await database_sync_to_async(Message.objects.get)(client_id="f")
    assert user_message.text == "Anyone there?"
    assert len(llm.chat_requests()) == 1  # 401 is never retried


async def test_length_finish_reason_adds_notice(tenant_and_key: Any, llm: Any) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="This answer stops", finish_reason="length"))
    ws = await connect()
    await hello(ws, key.public_key)
    await ws.send_json_to({"type": "message", "client_id": "l", "text": "Explain everything"})
    frames = await receive_until(
        ws, lambda f: f["type"] == "message" and f["message"]["role"] == "system"
    )
    final = next(f["message"] for f in frames if is_final_assistant(f))
    assert final["text"] == "This answer stops"
    assert final["status"] == "complete"
    assert "cut short" in frames[-1]["message"]["text"]
    await ws.disconnect()


async def test_other_visitors_do_not_receive_this_conversation(
    tenant_and_key: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    ws_a = await connect()
    await hello(ws_a, key.public_key)
    ws_b = await connect()
    await hello(ws_b, key.public_key)
    await ws_a.send_json_to({"type": "message", "client_id": "p", "text": "private"})
    await receive_until(ws_a, is_final_assistant)
    assert await ws_b.receive_nothing(timeout=0.5)
    await ws_a.disconnect()
    await ws_b.disconnect()
    # B never wrote: its conversation was never stored.
    conversations = await database_sync_to_async(Conversation.objects.count)()
    assert conversations == 1


async def test_the_web_side_reports_its_stages_to_trace_callbacks(
    tenant_and_key: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="Traced.", token_interval=0.01))
    seen: list[tuple[str, str]] = []

    def callback(stage: str, key: str) -> None:
        seen.append((stage, key))

    trace_callback_add(callback)
    try:
        ws = await connect()
        welcome = await hello(ws, key.public_key)
        await ws.send_json_to({"type": "message", "client_id": "t-1", "text": "Trace me"})
        frames = await receive_until(ws, is_final_assistant)
        await ws.disconnect()
    finally:
        trace_callback_remove(callback)
    conversation = welcome["conversation_id"]
    reply = frames[-1]["message"]["id"]
    for stage, expected in [
        ("web.receive", conversation),
        ("web.sync_start", conversation),
        ("web.ack_sent", conversation),
        ("worker.published", reply),
        ("web.event", reply),
        ("web.delta_sent", reply),
    ]:
        assert (stage, expected) in seen, (stage, seen)
    assert [stage for stage, _ in seen].count("web.event") == 1  # the first delta only


# --- malformed frames -------------------------------------------------------------------------

DEEP_JSON = "[" * 30000 + "]" * 30000  # under 64 KiB, far past the parser's recursion limit


def malformed_frames() -> list[tuple[str, str]]:
    """(name, raw text frame) of frames that parse, or nearly, yet no handler may see."""
    return [
        ("deep array", DEEP_JSON),
        ("deep field", '{"type": "message", "client_id": "d", "text": ' + DEEP_JSON + "}"),
        ("NUL in text", '{"type": "message", "client_id": "n", "text": "a\\u0000b"}'),
        ("NUL in client_id", '{"type": "message", "client_id": "n\\u0000", "text": "hi"}'),
        ("lone surrogate", '{"type": "message", "client_id": "s", "text": "a\\ud800b"}'),
        ("lone surrogate key", '{"type": "message", "client_id": "k", "\\udfff": 1, "text": "x"}'),
        ("raw surrogate", '{"type": "message", "client_id": "r", "text": "a\ud800"}'),
    ]


@pytest.mark.parametrize(("name", "raw"), malformed_frames())
async def test_malformed_frame_before_hello_closes_4400(
    tenant_and_key: Any, name: str, raw: str
) -> None:
    ws = await connect()
    await ws.send_to(text_data=raw)
    await assert_closed_with(ws, 4400)


@pytest.mark.parametrize(
    "raw",
    [
        '{"type": "hello", "key": "wk_\\u0000"}',
        '{"type": "hello", "key": "wk_x", "locale": "en\\ud800"}',
        '{"type": "hello", "key": "wk_x", "visitor_token": "\\u0000"}',
    ],
)
async def test_hello_with_unstorable_strings_closes_4400(tenant_and_key: Any, raw: str) -> None:
    ws = await connect()
    await ws.send_to(text_data=raw)
    await assert_closed_with(ws, 4400)


async def test_malformed_frames_get_bad_request_and_the_socket_stays_usable(
    tenant_and_key: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="Still here."))
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    for name, raw in malformed_frames():
        await ws.send_to(text_data=raw)
        error = await ws.receive_json_from(timeout=5)
        assert error["type"] == "error", name
        assert error["code"] == "bad_request", (name, error)
        assert "client_id" not in error, name
    await ws.send_json_to({"type": "message", "client_id": "fine", "text": "still usable?"})
    assert (await ws.receive_json_from(timeout=5))["type"] == "ack"
    await receive_until(ws, is_final_assistant)
    await ws.disconnect()
    texts = await database_sync_to_async(
        lambda: [m.text for m in Message.objects.filter(conversation_id=welcome["conversation_id"])]
    )()
    assert texts == ["still usable?", "Still here."]


# --- the per-socket frame throttle --------------------------------------------------------------


def test_frame_bucket_allows_a_burst_then_its_rate() -> None:
    now = [100.0]
    bucket = FrameBucket(burst=3, rate=2.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.25  # half a frame's worth
    assert not bucket.take()
    now[0] += 0.25
    assert bucket.take()
    assert not bucket.take()
    now[0] += 60  # a long pause refills up to the burst, no more
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


async def test_a_normal_conversation_never_meets_the_frame_throttle(
    tenant_and_key: Any, llm: Any
) -> None:
    """Default settings: a visitor chatting, then a reconnect that resends a full outbox."""
    _, key = tenant_and_key
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    for turn in range(6):
        await ws.send_json_to({"type": "message", "client_id": f"turn-{turn}", "text": "Hi"})
        await receive_until(ws, is_final_assistant)
    await ws.disconnect()
    ws = await connect()
    resumed = {
        "type": "hello",
        "key": key.public_key,
        "visitor_token": welcome["visitor_token"],
        "conversation_id": welcome["conversation_id"],
        "last_seq": 12,
    }
    await ws.send_json_to(resumed)
    outbox = [f"queued-{n}" for n in range(12)]
    for client_id in outbox:  # the widget resends its outbox at once after `welcome`
        await ws.send_json_to({"type": "message", "client_id": client_id, "text": "Still there?"})
    await ws.send_json_to({"type": "handoff.request"})
    frames = await receive_until(
        ws,
        lambda f: (
            f["type"] == "conversation.updated"
            and f["conversation"]["agent"] is None
            and f["conversation"]["status"] == "waiting_for_agent"
        ),
        timeout=20,
    )
    assert frames[0]["type"] == "welcome"
    assert {f["client_id"] for f in frames if f["type"] == "ack"} == set(outbox)
    assert not [f for f in frames if f["type"] == "error"]
    await ws.disconnect()


async def test_a_frame_flood_is_closed_4429_and_reaches_no_service_past_the_limit(
    tenant_and_key: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conversations.consumers

    _, key = tenant_and_key
    settings.SOCKET_FRAME_BURST = 5
    settings.SOCKET_FRAMES_PER_SECOND = 0.01  # no refill within the test
    handled: list[object] = []
    real = conversations.consumers.widget_handoff_request

    def counting(**kwargs: Any) -> None:
        handled.append(kwargs)
        real(**kwargs)

    monkeypatch.setattr(conversations.consumers, "widget_handoff_request", counting)
    ws = await connect()
    welcome = await hello(ws, key.public_key)  # the hello takes the first token
    for _ in range(200):
        await ws.send_json_to({"type": "handoff.request"})
    await assert_closed_with(ws, 4429)
    assert len(handled) == 4
    conversation = await database_sync_to_async(Conversation.objects.get)(
        pk=welcome["conversation_id"]
    )
    assert conversation.status == "waiting_for_agent"
    # Another socket of the same visitor has its own bucket.
    other = await connect()
    await hello(
        other,
        key.public_key,
        visitor_token=welcome["visitor_token"],
        conversation_id=welcome["conversation_id"],
    )
    await other.disconnect()


# --- a capped catch-up ------------------------------------------------------------------------


def store_conversation(tenant: Any, welcome: dict[str, Any]) -> None:
    """Store the conversation a `welcome` handed out, as its first message would."""
    session = visitor_session_open(
        tenant=tenant,
        visitor_token=welcome["visitor_token"],
        conversation_id=welcome["conversation_id"],
    )
    visitor_conversation_store(conversation=session.conversation)


def add_messages(conversation_id: str, count: int) -> None:
    """Append `count` settled messages to a conversation, as if it had gone on for long."""
    conversation = Conversation.objects.get(pk=conversation_id)
    first = conversation.last_seq + 1
    Message.objects.bulk_create(
        Message(
            tenant_id=conversation.tenant_id,
            conversation=conversation,
            seq=seq,
            role="user" if seq % 2 else "assistant",
            text=f"text {seq}",
        )
        for seq in range(first, first + count)
    )
    Conversation.objects.filter(pk=conversation.pk).update(last_seq=first + count - 1)


async def test_welcome_holds_the_newest_messages_and_marks_the_rest(
    tenant_and_key: Any, settings: Any
) -> None:
    tenant, key = tenant_and_key
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    await ws.disconnect()
    await database_sync_to_async(store_conversation)(tenant, welcome)
    await database_sync_to_async(add_messages)(welcome["conversation_id"], 250)
    session = {
        "visitor_token": welcome["visitor_token"],
        "conversation_id": welcome["conversation_id"],
    }

    ws = await connect()
    full = await hello(ws, key.public_key, **session, last_seq=0)
    await ws.disconnect()
    assert [m["seq"] for m in full["messages"]] == list(range(51, 251))  # the default: 200
    assert full["truncated"] is True
    assert full["first_seq"] == 51
    assert full["seq"] == 250

    settings.CATCH_UP_MAX_MESSAGES = 20
    ws = await connect()
    capped = await hello(ws, key.public_key, **session, last_seq=100)
    await ws.disconnect()
    assert [m["seq"] for m in capped["messages"]] == list(range(231, 251))
    assert (capped["truncated"], capped["first_seq"]) == (True, 231)

    ws = await connect()
    short = await hello(ws, key.public_key, **session, last_seq=230)
    await ws.disconnect()
    assert len(short["messages"]) == 20
    assert "truncated" not in short
    assert "first_seq" not in short

    ws = await connect()
    beyond = await hello(ws, key.public_key, **session, last_seq=10**30)
    assert beyond["messages"] == []
    await ws.disconnect()


async def test_channel_layer_back_after_a_loss_closes_the_socket_to_resume(
    tenant_and_key: Any,
) -> None:
    """Frames may have been lost while the process had no Redis: the socket closes with 4012 (a
    code a server may send, unlike 1012) and the widget reconnects and resumes."""
    _, key = tenant_and_key
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    await get_channel_layer().group_send(
        conversation_group(welcome["conversation_id"]), RECONNECTED
    )
    await assert_closed_with(ws, CloseCode.RESUME.value)
    assert CloseCode.RESUME.value == 4012
