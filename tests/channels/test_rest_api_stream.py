"""The REST API's event stream over real processes: Daphne serving Server-Sent Events, a Celery
worker streaming the scripted provider's reply, and a client reconnecting mid-reply with
`Last-Event-ID`."""

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from supportbot.redis_store import get_redis
from tests.support.llm_server import Reply
from tests.support.stack import LiveStack, wait_until

pytestmark = pytest.mark.e2e

LONG_REPLY = (
    "Parcels leave our warehouse within two days, travel with a tracked carrier and arrive "
    "within a week; a return label is in every box."
)


def api_key(stack: LiveStack) -> str:
    from conversations.channels.api_keys import api_key_create
    from conversations.models import ChannelAccount
    from supportbot.tenants.models import Tenant

    slug, _ = stack.create_tenant()

    def make() -> str:
        tenant = Tenant.objects.get(slug=slug)
        account = ChannelAccount.objects.create(tenant=tenant, kind="api", name="Stream test")
        return api_key_create(account=account).key

    return str(stack.in_thread(make))


def request(stack: LiveStack, method: str, path: str, key: str, body: Any = None) -> Any:
    response = httpx.request(
        method,
        f"{stack.base_url}/api/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code < 300, response.text
    return response.json()


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The stream's events ({id, event, data}); comments (the keep-alive) are skipped."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(": ")
            event[name] = json.loads(value) if name == "data" else value


def read_until(
    stream: Iterator[dict[str, Any]], done: Any, timeout: float = 30
) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    for event in stream:
        received.append(event)
        if done(received):
            return received
        assert time.monotonic() < deadline, f"no end within {timeout}s: {received}"
    raise AssertionError(f"the stream ended early: {received}")


def open_stream(stack: LiveStack, key: str, conversation_id: str, **headers: str) -> Any:
    return httpx.stream(
        "GET",
        f"{stack.base_url}/api/v1/conversations/{conversation_id}/events",
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=httpx.Timeout(10, read=30),
    )


def final_reply(received: list[dict[str, Any]]) -> bool:
    last = received[-1]
    return last["event"] == "message" and last["data"]["message"]["role"] == "assistant"


def deltas_text(received: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["text"] for e in received if e["event"] == "reply.delta")


def test_stream_carries_the_widgets_frames(live_stack: LiveStack) -> None:
    key = api_key(live_stack)
    conversation_id = request(live_stack, "POST", "/conversations", key, {})["id"]
    live_stack.llm.enqueue(Reply(text="Our returns are free for 30 days.", token_interval=0.02))
    with open_stream(live_stack, key, conversation_id) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        body = {"client_id": str(uuid.uuid4()), "text": "Returns?"}
        request(live_stack, "POST", f"/conversations/{conversation_id}/messages", key, body)
        received = read_until(stream, final_reply)
        redis = get_redis()
        group = f"supportbot__group__conversation.{conversation_id}"
        assert redis.pubsub_numsub(group)[0][1] == 1

    # The client went away: the server left the conversation's group (no subscriber left).
    wait_until(
        lambda: redis.pubsub_numsub(group)[0][1] == 0,
        timeout=10,
        message="the closed stream to leave the group",
    )
    kinds = [e["event"] for e in received]
    assert kinds[0] == "message"
    assert received[0]["data"]["message"]["role"] == "user"
    assert received[0]["id"] == "m1"
    assert "reply.start" in kinds
    assert "reply.delta" in kinds
    assert all(e["data"]["type"] == e["event"] for e in received)
    final = received[-1]["data"]["message"]
    assert final["text"] == "Our returns are free for 30 days."
    assert deltas_text(received) == final["text"]
    assert received[-1]["id"] == "m2"
    assert [
        m["seq"]
        for m in request(live_stack, "GET", f"/conversations/{conversation_id}/messages", key)[
            "messages"
        ]
    ] == [1, 2]


def test_last_event_id_resumes_mid_reply_without_loss(live_stack: LiveStack) -> None:
    key = api_key(live_stack)
    conversation_id = request(live_stack, "POST", "/conversations", key, {})["id"]
    live_stack.llm.enqueue(Reply(text=LONG_REPLY, token_interval=0.12))
    with open_stream(live_stack, key, conversation_id) as response:
        stream = events(response)
        body = {"client_id": str(uuid.uuid4()), "text": "How is shipping?"}
        request(live_stack, "POST", f"/conversations/{conversation_id}/messages", key, body)
        before = read_until(stream, lambda got: sum(e["event"] == "reply.delta" for e in got) >= 3)
    # Disconnected mid-reply; the worker streams on. Resume after the last event seen.
    last_id = before[-1]["id"]
    assert last_id.startswith("m1_r")
    with open_stream(live_stack, key, conversation_id, **{"Last-Event-ID": last_id}) as response:
        assert response.status_code == 200
        after = read_until(events(response), final_reply)

    final = after[-1]["data"]["message"]["text"]
    assert final == LONG_REPLY
    assert deltas_text(before) + deltas_text(after) == final
    # Nothing twice: the visitor's message and the reply's start were not sent again.
    assert [e["event"] for e in after].count("message") == 1
    assert "reply.start" not in [e["event"] for e in after]
    assert deltas_text(after)  # the reply really was resumed mid-way

    # Resuming after the end sends only what came after it: nothing yet.
    later_reply = "Anything else?"
    live_stack.llm.enqueue(Reply(text=later_reply))
    with open_stream(live_stack, key, conversation_id, **{"Last-Event-ID": after[-1]["id"]}) as (
        response
    ):
        stream = events(response)
        body = {"client_id": str(uuid.uuid4()), "text": "Thanks!"}
        request(live_stack, "POST", f"/conversations/{conversation_id}/messages", key, body)
        third = read_until(stream, final_reply)
    seqs = [e["data"]["message"]["seq"] for e in third if e["event"] == "message"]
    assert seqs == [3, 4]
    assert deltas_text(third) == later_reply
