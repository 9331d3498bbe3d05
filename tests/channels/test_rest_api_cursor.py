"""The event stream's cursor and catch-up: what a stream resumed with `Last-Event-ID` sends
(from Postgres and the reply snapshot in Redis) and which live frames it then drops, so a
client gets every message and every character of a reply once."""

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from django.test import Client

from conversations import frames
from conversations.api.events import _events
from conversations.channels.api_keys import api_key_create
from conversations.channels.api_stream import HEARTBEAT, ApiEventStream, StreamCursor
from conversations.groups import conversation_group
from conversations.handoff import conversation_request_agent
from conversations.messages import message_append
from conversations.models import ChannelAccount, Contact, Conversation, Message
from conversations.stream_state import snapshot_write
from supportbot.redis_store import get_redis

pytestmark = pytest.mark.django_db(transaction=True)


def conversation_with_streaming_reply(tenant: Any) -> tuple[Conversation, Message, Message]:
    """A person's message (1), a reply still streaming (2), an agent's message (3)."""
    account = ChannelAccount.objects.create(tenant=tenant, kind="api")
    contact = Contact.objects.create(tenant=tenant, channel="api")
    conversation = Conversation.objects.create(
        tenant=tenant, contact=contact, channel="api", channel_account=account
    )
    with transaction.atomic():
        message_append(conversation=conversation, role="user", text="Hi", broadcast=False)
        reply = message_append(
            conversation=conversation,
            role="assistant",
            text="",
            status=Message.Status.STREAMING,
            broadcast=False,
        )
        agent = message_append(
            conversation=conversation, role="agent", text="Me too", broadcast=False
        )
    snapshot_write(reply.pk, text="Hello there", index=1)
    return conversation, reply, agent


def parse(event: str) -> dict[str, Any]:
    fields = dict(line.split(": ", 1) for line in event.strip().split("\n"))
    return {"id": fields["id"], "event": fields["event"], "data": json.loads(fields["data"])}


def message_frame(message: Message, **changes: Any) -> dict[str, Any]:
    frame = frames.message_frame(message)
    frame["message"].update(changes)
    return frame


def test_cursor_round_trip_and_refusal() -> None:
    hex_id = uuid.uuid4().hex
    cursor = StreamCursor.parse(f"m12_s14_s15_r{hex_id}-240")
    assert cursor is not None
    assert (cursor.settled_seq, cursor.sent_ahead, cursor.streamed) == (12, {14, 15}, {hex_id: 240})
    assert cursor.event_id() == f"m12_s14_s15_r{hex_id}-240"
    for garbage in ("", "12", "m", "mx", "m1_q2", "m1_rzz-1", "m1_s", "m" + "9" * 11):
        assert StreamCursor.parse(garbage) is None, garbage


def test_resume_sends_the_rest_of_the_reply_and_what_was_missed(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    conversation, reply, agent = conversation_with_streaming_reply(tenant)
    # The client had message 1 and the reply's first 5 characters ("Hello").
    stream = ApiEventStream(StreamCursor.parse(f"m1_r{reply.pk.hex}-5") or StreamCursor())
    caught = [parse(e) for e in stream.catch_up(conversation.pk)]
    assert [e["event"] for e in caught] == ["reply.delta", "message"]
    assert caught[0]["data"]["text"] == " there"
    assert caught[1]["data"]["message"]["seq"] == 3
    assert caught[1]["id"] == f"m1_s3_r{reply.pk.hex}-11"

    # Live frames published before the snapshot was read: dropped; later ones pass.
    message_id = str(reply.pk)
    assert stream.admit({"type": "reply.start", "message_id": message_id}) == []
    covered = {"type": "reply.delta", "message_id": message_id, "index": 1, "text": " there"}
    assert stream.admit(covered) == []
    assert stream.admit(message_frame(agent)) == []
    more = stream.admit({"type": "reply.delta", "message_id": message_id, "index": 2, "text": "!"})
    assert parse(more[0])["id"] == f"m1_s3_r{reply.pk.hex}-12"
    final = stream.admit(message_frame(reply, text="Hello there!", status="complete"))
    assert parse(final[0])["id"] == "m3"
    late = {"type": "reply.delta", "message_id": message_id, "index": 3, "text": "?"}
    assert stream.admit(late) == []


def test_a_restarted_reply_starts_again_on_the_stream() -> None:
    message_id = str(uuid.uuid4())
    stream = ApiEventStream(StreamCursor(settled_seq=1))

    def delta(index: int, text: str) -> dict[str, Any]:
        return {"type": "reply.delta", "message_id": message_id, "index": index, "text": text}

    start = {"type": "reply.start", "message_id": message_id}
    sent = [*stream.admit(start), *stream.admit(delta(0, "Hel")), *stream.admit(delta(1, "lo"))]
    restarted = [*stream.admit(start), *stream.admit(delta(0, "Good day"))]
    assert [parse(e)["event"] for e in sent + restarted] == [
        "reply.start",
        "reply.delta",
        "reply.delta",
        "reply.start",
        "reply.delta",
    ]
    assert parse(restarted[-1])["id"] == f"m1_r{uuid.UUID(message_id).hex}-8"


def test_resume_after_a_message_sent_ahead_does_not_repeat_it(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    conversation, reply, _ = conversation_with_streaming_reply(tenant)
    stream = ApiEventStream(StreamCursor.parse(f"m1_s3_r{reply.pk.hex}-11") or StreamCursor())
    assert stream.catch_up(conversation.pk) == []  # the client has it all


def test_a_new_client_gets_the_reply_so_far(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    conversation, _, _ = conversation_with_streaming_reply(tenant)
    stream = ApiEventStream(StreamCursor(settled_seq=0))
    caught = [parse(e) for e in stream.catch_up(conversation.pk)]
    assert [e["event"] for e in caught] == ["message", "reply.start", "reply.delta", "message"]
    assert caught[2]["data"]["text"] == "Hello there"


def test_a_last_event_id_not_of_this_stream_is_refused(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    conversation, _, _ = conversation_with_streaming_reply(tenant)
    key = api_key_create(account=conversation.channel_account).key
    response = Client().get(
        f"/api/v1/conversations/{conversation.pk}/events",
        headers={"Authorization": f"Bearer {key}", "Last-Event-ID": "42"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_heartbeat_then_live_frames_then_erased_ends(make_tenant: Any, settings: Any) -> None:
    settings.API_EVENTS_HEARTBEAT_SECONDS = 0.2
    tenant, _ = await database_sync_to_async(make_tenant)()
    conversation, _, _ = await database_sync_to_async(conversation_with_streaming_reply)(tenant)
    stream = ApiEventStream(StreamCursor(settled_seq=1))  # a new client (api_stream_open)
    events = _events(conversation.pk, stream)
    try:
        caught_up = [parse(await asyncio.wait_for(anext(events), 5)) for _ in range(3)]
        assert [e["event"] for e in caught_up] == ["reply.start", "reply.delta", "message"]
        assert await asyncio.wait_for(anext(events), 5) == HEARTBEAT
        layer = get_channel_layer()
        group = conversation_group(conversation.pk)
        frame = {"type": "erased", "conversation_id": str(conversation.pk)}
        await layer.group_send(group, {"type": "conversation.event", "frame": frame})
        erased = parse(await asyncio.wait_for(anext(events), 5))
        assert erased["event"] == "erased"
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(events), 5)
    finally:
        await events.aclose()


async def joined(conversation_id: uuid.UUID, timeout: float = 5) -> None:
    """Wait until a stream has subscribed to the conversation's group."""
    group = f"supportbot__group__{conversation_group(conversation_id)}"
    deadline = time.monotonic() + timeout
    while get_redis().pubsub_numsub(group)[0][1] < 1:
        assert time.monotonic() < deadline, "the stream did not join the group"
        await asyncio.sleep(0.02)


async def test_a_handoff_reaches_the_stream_as_the_widget_sees_it(make_tenant: Any) -> None:
    tenant, _ = await database_sync_to_async(make_tenant)()
    conversation, reply, _ = await database_sync_to_async(conversation_with_streaming_reply)(tenant)
    stream = ApiEventStream(StreamCursor.parse(f"m1_s3_r{reply.pk.hex}-11") or StreamCursor())
    events = _events(conversation.pk, stream)
    try:
        first = asyncio.ensure_future(anext(events))  # joins the group, catches up (nothing)
        await joined(conversation.pk)
        await database_sync_to_async(conversation_request_agent)(
            conversation_id=conversation.pk, reason="The person asked for one.", notify=True
        )
        received = [parse(await asyncio.wait_for(first, 10))]
        while {"conversation.updated", "message"} - {e["event"] for e in received}:
            received.append(parse(await asyncio.wait_for(anext(events), 10)))
    finally:
        await events.aclose()
    updated = next(e for e in received if e["event"] == "conversation.updated")
    assert updated["data"]["conversation"]["status"] == "waiting_for_agent"
    notice = next(e for e in received if e["event"] == "message")
    assert (notice["data"]["message"]["role"], notice["data"]["message"]["seq"]) == ("system", 4)
    assert notice["id"] == f"m1_s3_s4_r{reply.pk.hex}-11"
