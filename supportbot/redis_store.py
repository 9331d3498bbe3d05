"""The process's Redis client for small shared state (stream snapshots, limits)."""

from functools import lru_cache

import redis
from django.conf import settings


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        str(settings.REDIS_URL), decode_responses=True, socket_timeout=5, socket_connect_timeout=5
    )
