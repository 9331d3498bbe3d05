"""Edge limits for the widget: connections per client and messages per visitor."""

import time

from django.conf import settings

from supportbot.redis_store import get_redis, redis_key

_CONNECTIONS_TTL = 3600


def _connections_key(client: str) -> str:
    return redis_key("widget-connections", client)


def connection_slot_acquire(client: str) -> bool:
    """Count one more open socket for `client` (an IP address); False when over the cap."""
    key = _connections_key(client)
    pipe = get_redis().pipeline()
    pipe.incr(key)
    pipe.expire(key, _CONNECTIONS_TTL)
    count, _ = pipe.execute()
    if int(count) > settings.WIDGET_MAX_CONNECTIONS_PER_CLIENT:
        get_redis().decr(key)
        return False
    return True


def connection_slot_release(client: str) -> None:
    key = _connections_key(client)
    if int(get_redis().decr(key)) < 0:
        get_redis().delete(key)


def visitor_message_retry_after(contact_id: str) -> int | None:
    """Seconds to wait when the visitor is over their messages-per-minute; None when allowed."""
    window = int(time.time() // 60)
    key = redis_key("visitor-messages", contact_id, window)
    pipe = get_redis().pipeline()
    pipe.incr(key)
    pipe.expire(key, 120)
    count, _ = pipe.execute()
    if int(count) > settings.WIDGET_MESSAGES_PER_MINUTE:
        return max(1, 60 - int(time.time()) % 60)
    return None
