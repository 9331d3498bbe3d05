"""The process's Redis client for small shared state (stream snapshots, limits), and the one
way to name a key: every key the application writes starts with `supportbot:`, so an operator can
find (or flush) them all, and a shared Redis never mixes them up with another application's."""

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        str(settings.REDIS_URL), decode_responses=True, socket_timeout=5, socket_connect_timeout=5
    )


KEY_PREFIX = "supportbot"


def redis_key(*parts: object) -> str:
    """`supportbot:<part>:<part>...`: the name of an application key in Redis."""
    return ":".join([KEY_PREFIX, *(str(part) for part in parts)])
