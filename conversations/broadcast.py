"""Sending frames to the sockets of a conversation, from any thread of any process.

Services and workers are synchronous; the channel layer is asyncio. Each process keeps one
background event loop that sends queued events in order, so a worker thread never waits on
Redis to hand a delta over and frames of one conversation are never reordered.
"""

import asyncio
import logging
import os
import threading
import time
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


class _Broadcaster:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._drain_task: asyncio.Task[None] | None = None

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        if self._loop is not None and self._pid == os.getpid():
            return self._loop
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
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

    def send(self, group: str, event: dict[str, Any]) -> None:
        loop = self._ensure_started()
        assert self._queue is not None
        loop.call_soon_threadsafe(self._queue.put_nowait, (group, event))


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


def broadcast_on_commit(
    conversation_id: UUID | str, frame: dict[str, Any], *, sender: str | None = None
) -> None:
    """Broadcast `frame` once the current transaction commits (at once outside one): the one
    way services tell sockets about a change, so nothing is announced that is rolled back."""
    transaction.on_commit(lambda: broadcast_frame(conversation_id, frame, sender=sender))
