"""A reply cancelled mid-stream is sealed: no delta past the text it ends with reaches a socket."""

import asyncio
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from conversations.groups import conversation_group
from conversations.reply.delivery import ReplyDelivery
from conversations.stream_state import snapshot_read, snapshot_seal, snapshot_write


def test_a_sealed_snapshot_refuses_every_later_write() -> None:
    message_id = str(uuid.uuid4())
    assert snapshot_write(message_id, text="Hel", index=0)
    sealed = snapshot_seal(message_id)
    assert (sealed.text, sealed.index) == ("Hel", 0)
    assert not snapshot_write(message_id, text="Hello", index=1)
    assert not snapshot_write(message_id, text="", index=-1)  # nor a restart
    snapshot = snapshot_read(message_id)
    assert snapshot is not None
    assert (snapshot.text, snapshot.index) == ("Hel", 0)


def test_sealing_a_reply_that_never_streamed_gives_no_text() -> None:
    sealed = snapshot_seal(str(uuid.uuid4()))
    assert (sealed.text, sealed.index) == ("", -1)


async def _frames_until_quiet(layer: Any, channel: str, quiet: float = 1.0) -> list[dict]:
    frames = []
    while True:
        try:
            event = await asyncio.wait_for(layer.receive(channel), quiet)
        except TimeoutError:
            return frames
        frames.append(event["frame"])


async def test_a_sealed_reply_publishes_no_delta_past_its_text() -> None:
    layer = get_channel_layer()
    conversation_id = uuid.uuid4()
    channel = await layer.new_channel()
    await layer.group_add(conversation_group(conversation_id), channel)
    delivery = ReplyDelivery(
        conversation_id=conversation_id, message_id=str(uuid.uuid4()), flush_interval=0
    )
    await sync_to_async(delivery.start)()
    await sync_to_async(delivery.add)("Hel")
    sealed = await sync_to_async(snapshot_seal)(delivery.message_id)  # an agent took over
    await sync_to_async(delivery.add)("lo")
    await sync_to_async(delivery.add)(" there")
    await sync_to_async(delivery.start)()  # not even a restart (a fallback model) gets out

    frames = await _frames_until_quiet(layer, channel)
    deltas = [f for f in frames if f["type"] == "reply.delta"]
    assert sealed.text == "Hel"
    assert "".join(f["text"] for f in deltas) == "Hel"
    assert [f["type"] for f in frames] == ["reply.start", "reply.delta"]
