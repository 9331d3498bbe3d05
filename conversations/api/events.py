"""The REST API's event stream: `GET /api/v1/conversations/{id}/events` (Server-Sent Events).

An async generator under Daphne (ASGI): it joins the conversation's channel-layer group, then
sends the catch-up (conversations.channels.api_stream) and the live frames, with a heartbeat
comment every API_EVENTS_HEARTBEAT_SECONDS (15 s) so proxies keep the connection open. When
the client goes away Django cancels the generator, which leaves the group.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import StreamingHttpResponse

from conversations.channels.api_stream import HEARTBEAT, ApiEventStream
from conversations.groups import conversation_group

logger = logging.getLogger(__name__)


async def _events(conversation_id: UUID, stream: ApiEventStream) -> AsyncIterator[str]:
    layer = get_channel_layer()
    assert layer is not None
    group = conversation_group(conversation_id)
    channel = await layer.new_channel("api-events.")
    await layer.group_add(group, channel)
    # One receive is always pending, so whenever the stream ends (the client gone: Django
    # closes the generator at a `yield`) cancelling it lets the layer drop the channel.
    receiving = asyncio.ensure_future(layer.receive(channel))
    try:
        # Joined first, then the catch-up: a frame published in between is in the channel
        # already, and `admit` drops it if the catch-up covered it.
        for event in await database_sync_to_async(stream.catch_up)(conversation_id):
            yield event
        while True:
            done, _ = await asyncio.wait({receiving}, timeout=settings.API_EVENTS_HEARTBEAT_SECONDS)
            if not done:
                yield HEARTBEAT
                continue
            message = receiving.result()
            receiving = asyncio.ensure_future(layer.receive(channel))
            frame: dict[str, Any] = message.get("frame") or {}
            for event in stream.admit(frame):
                yield event
            if frame.get("type") == "erased":
                return
    finally:
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)
        try:
            await layer.group_discard(group, channel)
        except Exception:  # the client is gone either way
            logger.warning("event stream could not leave %s", group, exc_info=True)


def event_stream_response(conversation_id: UUID, stream: ApiEventStream) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        _events(conversation_id, stream), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
