"""A streaming reply's frames go out with its snapshot write, in one Redis script, exactly as the
channel layer would send them, and after the conversation's frames queued the other way."""

import asyncio
import uuid
from typing import Any

import redis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from conversations.broadcast import EVENT_TYPE, broadcast_frame, layer_publication
from conversations.groups import conversation_group
from conversations.reply.delivery import ReplyDelivery
from conversations.stream_state import snapshot_read, snapshot_seal, snapshot_write


async def _frames(layer: Any, channel: str, count: int) -> list[dict[str, Any]]:
    return [(await asyncio.wait_for(layer.receive(channel), 10))["frame"] for _ in range(count)]


def test_the_publication_is_the_layers_own_message_for_the_group() -> None:
    conversation_id = uuid.uuid4()
    frame = {"type": "reply.delta", "message_id": "m", "index": 0, "text": "Grüße **x**"}

    publication = layer_publication(conversation_id, frame)

    assert publication is not None
    layer = get_channel_layer()
    assert publication.channel == f"supportbot__group__{conversation_group(conversation_id)}"
    assert layer.deserialize(publication.payload) == {
        "type": EVENT_TYPE,
        "frame": frame,
        "sender": None,
    }


def test_another_channel_layer_gets_no_publication(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert layer_publication(uuid.uuid4(), {"type": "reply.start", "message_id": "m"}) is None


async def test_the_sockets_receive_each_frame_as_sent_after_those_queued_before() -> None:
    layer = get_channel_layer()
    conversation_id = uuid.uuid4()
    channel = await layer.new_channel()
    await layer.group_add(conversation_group(conversation_id), channel)
    delivery = ReplyDelivery(
        conversation_id=conversation_id, message_id=str(uuid.uuid4()), flush_interval=0
    )
    queued = {"type": "typing", "on": True}

    def stream() -> None:
        broadcast_frame(conversation_id, queued)  # the background loop's way
        delivery.start()
        for piece in ("Hel", "lo ", "there"):
            delivery.add(piece)
        delivery.flush(end=True)

    await sync_to_async(stream)()

    frames = await _frames(layer, channel, 5)
    assert frames == [
        queued,
        {"type": "reply.start", "message_id": delivery.message_id},
        {"type": "reply.delta", "message_id": delivery.message_id, "index": 0, "text": "Hel"},
        {"type": "reply.delta", "message_id": delivery.message_id, "index": 1, "text": "lo "},
        {"type": "reply.delta", "message_id": delivery.message_id, "index": 2, "text": "there"},
    ]
    snapshot = await sync_to_async(snapshot_read)(delivery.message_id)
    assert snapshot is not None
    assert (snapshot.text, snapshot.index) == ("Hello there", 2)


def test_a_sealed_reply_writes_and_publishes_nothing() -> None:
    message_id = str(uuid.uuid4())
    channel = f"supportbot-test-{uuid.uuid4()}"
    client = redis.Redis.from_url(str(settings.REDIS_URL))
    subscriber = client.pubsub()
    subscriber.subscribe(channel)
    try:
        assert subscriber.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
        assert snapshot_write(message_id, text="Hel", index=0, publish=(channel, b"first"))
        snapshot_seal(message_id)
        assert not snapshot_write(message_id, text="Hello", index=1, publish=(channel, b"late"))
        client.publish(channel, b"end")  # after anything the scripts published

        payloads = []
        while not payloads or payloads[-1] != b"end":
            message = subscriber.get_message(timeout=5)
            assert message is not None, "a published message did not arrive"
            payloads.append(message["data"])
    finally:
        subscriber.close()
        client.close()
    assert payloads == [b"first", b"end"]
    snapshot = snapshot_read(message_id)
    assert snapshot is not None
    assert (snapshot.text, snapshot.index) == ("Hel", 0)
