"""Sending frames to the sockets of a conversation, from any thread of any process.

Services and workers are synchronous; the channel layer is asyncio. Each process keeps one
background event loop that sends queued events in order, so a worker thread never waits on
Redis to hand a frame over and frames of one conversation are never reordered.

A streaming reply's frames take a shorter way (`layer_publication`): the message the channel
layer's `group_send` would PUBLISH, built here (the layer's own serialization and group channel
name, so the sockets receive it unchanged) and published by the Redis script that writes the
reply's snapshot (`stream_state.snapshot_write`): one round trip per delta, no thread hop. It
first waits for the conversation's frames still queued on the background loop, so the order
holds across both ways.
"""

import asyncio
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from conversations.groups import conversation_group
from conversations.stream_filter import is_first_delta
from supportbot.trace import trace

logger = logging.getLogger(__name__)

EVENT_TYPE = "conversation.event"
# The backends that publish a group message as one Redis PUBLISH (channels_redis's pub/sub
# layer and the project's own subclass of it).
PUBSUB_LAYERS = frozenset(
    {"channels_redis.pubsub.RedisPubSubChannelLayer", "supportbot.channel_layer.ChannelLayer"}
)
QUEUED_WAIT_SECONDS = 5.0  # at most, for a conversation's queued frames before a direct publish


class _Broadcaster:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._queued: Counter[str] = Counter()  # per group: frames queued, not sent yet
        self._sent = threading.Condition()

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        if self._loop is not None and self._pid == os.getpid():
            return self._loop
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                with self._sent:  # a forked child sends none of its parent's queued frames
                    self._queued.clear()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    self._queue = asyncio.Queue()
                    self._drain_task = loop.create_task(self._drain())
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="broadcast", daemon=True).start()
                ready.wait(5)
                self._pid, self._loop = os.getpid(), loop
        return self._loop

    async def _drain(self) -> None:
        assert self._queue is not None
        layer = get_channel_layer()
        while True:
            group, event = await self._queue.get()
            try:
                await _send_retrying(layer, group, event)
            except Exception:  # a lost frame is recovered by resume; never kill the sender
                logger.exception("broadcast to %s failed", group)
            else:
                if is_first_delta(event["frame"]):
                    trace("worker.published", event["frame"]["message_id"])
            finally:
                with self._sent:
                    self._queued[group] -= 1
                    if self._queued[group] <= 0:
                        del self._queued[group]
                        self._sent.notify_all()

    def send(self, group: str, event: dict[str, Any]) -> None:
        loop = self._ensure_started()
        assert self._queue is not None
        with self._sent:
            self._queued[group] += 1
        loop.call_soon_threadsafe(self._queue.put_nowait, (group, event))

    def wait_sent(self, group: str, timeout: float) -> None:
        """Wait (at most `timeout` s) until no frame of `group` is queued here."""
        with self._sent:
            if self._queued[group] > 0:
                self._sent.wait_for(lambda: self._queued[group] <= 0, timeout)


async def _send_retrying(layer: Any, group: str, event: dict[str, Any]) -> None:
    """Send, and after a failure (a Redis restart) try again on a new connection for up to
    REDIS_RETRY_SECONDS; later frames wait, so the order holds."""
    deadline = time.monotonic() + float(settings.REDIS_RETRY_SECONDS)
    delay = 0.05
    while True:
        try:
            await layer.group_send(group, event)
            return
        except Exception:
            if time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


_broadcaster = _Broadcaster()


def broadcast_frame(
    conversation_id: UUID | str, frame: dict[str, Any], *, sender: str | None = None
) -> None:
    """Queue `frame` for every socket watching the conversation (except `sender`)."""
    _broadcaster.send(
        conversation_group(conversation_id), {"type": EVENT_TYPE, "frame": frame, "sender": sender}
    )


@dataclass(frozen=True)
class Publication:
    """What the channel layer's `group_send` would PUBLISH: the Redis channel and payload."""

    channel: str
    payload: bytes


def _single_pubsub_prefix() -> str | None:
    """The layer's prefix when it is Redis pub/sub on the one Redis of `REDIS_URL`, else None."""
    layer_settings: dict[str, Any] = settings.CHANNEL_LAYERS.get("default", {})
    config: dict[str, Any] = layer_settings.get("CONFIG", {})
    hosts = config.get("hosts")
    if layer_settings.get("BACKEND") not in PUBSUB_LAYERS or hosts != [str(settings.REDIS_URL)]:
        return None
    return str(config.get("prefix", "asgi"))


def layer_publication(
    conversation_id: UUID | str, frame: dict[str, Any], *, sender: str | None = None
) -> Publication | None:
    """`frame` as the channel layer would publish it to the conversation's sockets, for a
    caller that publishes it itself on the Redis of `REDIS_URL` (see the module docstring);
    None when the layer is another (then use `broadcast_frame`). Returns once the
    conversation's frames queued by `broadcast_frame` are sent, so it cannot overtake them."""
    prefix = _single_pubsub_prefix()
    if prefix is None:
        return None
    group = conversation_group(conversation_id)
    _broadcaster.wait_sent(group, QUEUED_WAIT_SECONDS)
    payload = get_channel_layer().serialize({"type": EVENT_TYPE, "frame": frame, "sender": sender})
    return Publication(channel=f"{prefix}__group__{group}", payload=payload)


def broadcast_on_commit(
    conversation_id: UUID | str, frame: dict[str, Any], *, sender: str | None = None
) -> None:
    """Broadcast `frame` once the current transaction commits (at once outside one): the one
    way services tell sockets about a change, so nothing is announced that is rolled back."""
    transaction.on_commit(lambda: broadcast_frame(conversation_id, frame, sender=sender))
