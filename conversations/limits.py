"""Edge limits for the widget: connections per client, messages per visitor and per widget key,
conversations started per client."""

import asyncio
import logging
import math
import time
import uuid

import redis
from asgiref.sync import sync_to_async
from django.conf import settings

from supportbot.redis_store import get_redis, redis_key

logger = logging.getLogger(__name__)

# A socket that has not renewed its place for this many heartbeats no longer counts.
CONNECTION_EXPIRY_HEARTBEATS = 3

# Open sockets of one client: a sorted set, a member per socket scored by its last heartbeat.
# Stale members are trimmed first; a refused attempt writes nothing and extends nothing.
_ACQUIRE = """
local cutoff = tonumber(ARGV[1]) - tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


def _connections_key(client: str) -> str:
    return redis_key("widget-sockets", client)


def connection_expiry() -> float:
    """Seconds after its last heartbeat when a socket stops counting."""
    return settings.WIDGET_CONNECTION_HEARTBEAT * CONNECTION_EXPIRY_HEARTBEATS


def _expiry_ms() -> int:
    return math.ceil(connection_expiry() * 1000)


def connection_slot_acquire(client: str, socket_id: str, *, now: float | None = None) -> bool:
    """Count the socket `socket_id` for `client` (an address or /64); False when the client
    already has its cap of live sockets."""
    now = time.time() if now is None else now
    acquired = get_redis().eval(
        _ACQUIRE,
        1,
        _connections_key(client),
        repr(now),
        repr(connection_expiry()),
        settings.WIDGET_MAX_CONNECTIONS_PER_CLIENT,
        socket_id,
        _expiry_ms(),
    )
    return bool(acquired)


def connection_slot_refresh(client: str, socket_id: str, *, now: float | None = None) -> None:
    """The socket is still open: its heartbeat."""
    now = time.time() if now is None else now
    key = _connections_key(client)
    pipe = get_redis().pipeline(transaction=False)
    pipe.zadd(key, {socket_id: now})
    pipe.pexpire(key, _expiry_ms())
    pipe.execute()


def connection_slot_release(client: str, socket_id: str) -> None:
    get_redis().zrem(_connections_key(client), socket_id)


def connection_slots_live(client: str, *, now: float | None = None) -> int:
    """How many sockets of `client` count now."""
    now = time.time() if now is None else now
    return int(get_redis().zcount(_connections_key(client), now - connection_expiry(), "+inf"))


class ConnectionSlot:
    """One socket's place in its client's count, renewed by a heartbeat while the socket is
    open. Redis is called off the event loop, never on the thread the database uses."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.socket_id = uuid.uuid4().hex
        self._heartbeat: asyncio.Task[None] | None = None

    async def acquire(self) -> bool:
        acquire = sync_to_async(connection_slot_acquire, thread_sensitive=False)
        if not await acquire(self.client, self.socket_id):
            return False
        self._heartbeat = asyncio.create_task(self._beat())
        return True

    async def _beat(self) -> None:
        refresh = sync_to_async(connection_slot_refresh, thread_sensitive=False)
        while True:
            await asyncio.sleep(settings.WIDGET_CONNECTION_HEARTBEAT)
            try:
                await refresh(self.client, self.socket_id)
            except redis.RedisError:
                logger.warning("socket heartbeat failed", exc_info=True)

    async def release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        await sync_to_async(connection_slot_release, thread_sensitive=False)(
            self.client, self.socket_id
        )


def _minute_window_retry_after(name: str, subject: str, limit: int) -> int | None:
    """Count one more in `subject`'s current minute; the seconds until the next minute when
    that goes over `limit`, else None."""
    window = int(time.time() // 60)
    key = redis_key(name, subject, window)
    pipe = get_redis().pipeline()
    pipe.incr(key)
    pipe.expire(key, 120)
    count, _ = pipe.execute()
    if int(count) > limit:
        return max(1, 60 - int(time.time()) % 60)
    return None


def visitor_message_retry_after(contact_id: str) -> int | None:
    """Seconds to wait when the visitor is over their messages-per-minute; None when allowed."""
    return _minute_window_retry_after(
        "visitor-messages", contact_id, settings.WIDGET_MESSAGES_PER_MINUTE
    )


def widget_key_message_retry_after(widget_key_id: int) -> int | None:
    """Seconds to wait when the widget key (all its visitors together) is over its
    messages-per-minute; None when allowed."""
    return _minute_window_retry_after(
        "widget-key-messages", str(widget_key_id), settings.WIDGET_KEY_MESSAGES_PER_MINUTE
    )


# --- REST API keys ---


def api_key_message_retry_after(api_key_id: int) -> int | None:
    """Seconds to wait when a REST API key (all the people it speaks for together) is over
    the key's messages-per-minute (the widget key's limit); None when allowed."""
    return _minute_window_retry_after(
        "api-key-messages", str(api_key_id), settings.WIDGET_KEY_MESSAGES_PER_MINUTE
    )


CONVERSATION_WINDOW_SECONDS = 3600

# Conversations a client started in the last hour: a sorted set, a member per conversation id
# scored by when it was counted. A conversation already counted is allowed again (two sockets
# storing the same one); a refused attempt writes nothing. Returns 0 when allowed, else the
# seconds until the oldest member leaves the window.
_START_CONVERSATION = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - window))
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
    return 0
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return math.max(1, math.ceil(tonumber(oldest[2]) + window - now))
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], window)
return 0
"""


def conversation_start_retry_after(
    client: str, conversation_id: str, *, now: float | None = None
) -> int | None:
    """Count the conversation `conversation_id` as started by `client` (an address or /64);
    the seconds to wait when the client already started its hourly cap, else None."""
    now = time.time() if now is None else now
    retry_after = get_redis().eval(
        _START_CONVERSATION,
        1,
        redis_key("client-conversations", client),
        repr(now),
        CONVERSATION_WINDOW_SECONDS,
        settings.WIDGET_CONVERSATIONS_PER_CLIENT_PER_HOUR,
        conversation_id,
    )
    return int(retry_after) or None
