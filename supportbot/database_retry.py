"""Riding out a database restart: retry a unit of work while Postgres is unreachable.

A restarted server breaks every connection the pool holds, and the pool only learns it when a
connection is used. `when_database_returns` runs the work again (a whole transaction) for a
bounded time, dropping this thread's broken connection and having the pool check the idle ones
before each new try, so the work lands once the database is back rather than being lost.
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection

logger = logging.getLogger(__name__)

T = TypeVar("T")

# At most a second between tries: the work lands within a second of the database's return,
# before anything else (a redelivered job) can act on what the outage left behind.
_MAX_DELAY = 1.0


def database_reconnect() -> None:
    """Forget this thread's connection, and have the pool replace its broken idle ones."""
    connection.close()
    pool = getattr(connection, "pool", None)
    if pool is not None:
        try:
            pool.check()
        except Exception:  # the server may still be down: the next try tells
            logger.debug("connection pool check failed", exc_info=True)


def or_when_database_down(work: Callable[[], T], *, default: T) -> T:
    """`work()`, or `default` when the database is unreachable (the broken connection is
    dropped, so the next query takes a sound one)."""
    try:
        return work()
    except OperationalError:
        database_reconnect()
        return default


def when_database_returns(work: Callable[[], T], *, seconds: float, what: str) -> T:
    """`work()`, tried again with backoff for up to `seconds` while the database is down
    (OperationalError); the last error is raised when it does not come back in time."""
    deadline = time.monotonic() + seconds
    delay = 0.2
    while True:
        try:
            return work()
        except OperationalError as exc:
            if connection.in_atomic_block or time.monotonic() + delay > deadline:
                raise
            logger.warning("%s: the database is unreachable (%s); trying again", what, exc)
        database_reconnect()
        time.sleep(delay)
        delay = min(delay * 2, _MAX_DELAY)
