"""300 widget sockets saying `hello` at once to one Daphne process: every one gets its
`welcome`, none an error, and the process never holds more Postgres connections than its
pool's maximum (DATABASE_POOL_MAX)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from tests.support.socket_stack import SocketStack, socket_stack
from tests.support.widget_async import Visitor
from tests.support.widget_client import CUSTOMER

pytestmark = pytest.mark.faults

SOCKETS = 300
POOL_MAX = 4


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any, llm_server: Any) -> Iterator[SocketStack]:
    with socket_stack(
        django_db_blocker, llm_server, DATABASE_POOL_MAX=str(POOL_MAX), DATABASE_POOL_MIN="1"
    ) as started:
        yield started


class ConnectionCounter:
    """Samples pg_stat_activity on a thread of its own: the most connections the named
    process held at once."""

    def __init__(self, application_name: str) -> None:
        self.application_name = application_name
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        settings = connection.settings_dict
        with psycopg.connect(
            host=settings["HOST"] or None,
            port=settings["PORT"] or None,
            user=settings["USER"] or None,
            password=settings["PASSWORD"] or None,
            dbname=settings["NAME"],
            autocommit=True,
        ) as db:
            while not self._stop.wait(0.02):
                row = db.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    [self.application_name],
                ).fetchone()
                self.most = max(self.most, row[0] if row else 0)
                self.samples += 1

    def __enter__(self) -> ConnectionCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


async def storm(stack: SocketStack, key: str) -> list[Visitor | BaseException]:
    visitors = [
        # Each behind the loopback proxy with an address of its own, as many people are.
        Visitor(ws_url=stack.ws_url, key=key, forwarded_for=f"10.9.{n // 200}.{n % 200 + 1}")
        for n in range(SOCKETS)
    ]
    results = await asyncio.gather(*(v.connect() for v in visitors), return_exceptions=True)
    await asyncio.gather(*(v.close() for v in visitors), return_exceptions=True)
    return [
        v if not isinstance(r, BaseException) else r for v, r in zip(visitors, results, strict=True)
    ]


def test_300_hellos_at_once_all_welcomed_within_the_pool(stack: SocketStack) -> None:
    _, key = stack.create_tenant(allowed_origins=[CUSTOMER])
    with ConnectionCounter(stack.application_name(stack.web)) as counter:
        results = asyncio.run(storm(stack, key))
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], failures[:5]
    welcomed = [r for r in results if isinstance(r, Visitor)]
    assert len(welcomed) == SOCKETS
    assert all(v.frames[0]["type"] == "welcome" for v in welcomed)
    assert len({v.conversation_id for v in welcomed}) == SOCKETS
    assert counter.samples > 0
    assert 1 <= counter.most <= POOL_MAX
    assert stack.web.alive()
    assert "Traceback" not in stack.web.log_text()
