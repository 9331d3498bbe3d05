"""The process's Redis client for small shared state (stream snapshots, limits), and the one
way to name a key: every key the application writes starts with `supportbot:`, so an operator can
find (or flush) them all, and a shared Redis never mixes them up with another application's.

The client rides out a Redis restart: a command that meets a refused or dropped connection is
sent again with backoff for about `REDIS_RETRY_SECONDS` (docs/operations.md, "Faults and
recovery"), and dead connections are noticed by keepalive and a health check."""

from functools import lru_cache

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

_BACKOFF_CAP = 1.0  # seconds between two tries, at most
_BACKOFF_BASE = 0.05


def _retry() -> Retry:
    """Backoff doubling from 50 ms to 1 s: enough tries to last REDIS_RETRY_SECONDS."""
    seconds = float(settings.REDIS_RETRY_SECONDS)
    tries, waited, delay = 0, 0.0, _BACKOFF_BASE
    while waited < seconds:
        waited += min(delay, _BACKOFF_CAP)
        delay *= 2
        tries += 1
    return Retry(
        ExponentialBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE),
        tries,
        supported_errors=(redis.ConnectionError, redis.TimeoutError, ConnectionError),
    )


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(
        str(settings.REDIS_URL),
        decode_responses=True,
        socket_timeout=5,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=30,
        retry=_retry(),
    )


KEY_PREFIX = "supportbot"


def redis_key(*parts: object) -> str:
    """`supportbot:<part>:<part>...`: the name of an application key in Redis."""
    return ":".join([KEY_PREFIX, *(str(part) for part in parts)])
