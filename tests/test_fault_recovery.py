"""The building blocks of fault recovery: the Redis client rides out a Redis restart, the
channel layer tells its sockets when Redis is back, and a unit of database work is tried again
while the database is unreachable, for a bounded time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import OperationalError, transaction

from supportbot.channel_layer import RECONNECTED, ChannelLayer
from supportbot.database_retry import or_when_database_down, when_database_returns
from supportbot.devstack.redis import EmbeddedRedis
from supportbot.redis_store import _retry
from tests.support.fault_stack import KillableRedis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[KillableRedis]:
    server = KillableRedis(EmbeddedRedis(tmp_path / "redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_redis_client_retries_for_as_long_as_configured(settings: Any) -> None:
    settings.REDIS_RETRY_SECONDS = 10
    retry = _retry()
    waited = sum(retry._backoff.compute(n) for n in range(1, retry._retries + 1))
    assert waited >= 10


def test_a_command_during_a_redis_restart_waits_for_it(
    own_redis: KillableRedis, settings: Any
) -> None:
    settings.REDIS_RETRY_SECONDS = 15
    client = redis.Redis.from_url(own_redis.url(3), decode_responses=True, retry=_retry())
    client.set("supportbot:test:fault", "before")
    own_redis.kill()
    restarted = threading.Event()

    def bring_back() -> None:
        own_redis.start()
        restarted.set()

    # The command below meets a refused connection, and is tried again until Redis is back.
    threading.Timer(1.0, bring_back).start()
    client.set("supportbot:test:fault", "after")
    assert restarted.wait(30)
    assert client.get("supportbot:test:fault") == "after"


def test_without_retries_the_same_command_fails(own_redis: KillableRedis) -> None:
    client = redis.Redis.from_url(own_redis.url(3), retry=None)
    own_redis.kill()
    with pytest.raises(redis.ConnectionError):
        client.set("supportbot:test:fault", "lost")


@pytest.mark.django_db(transaction=True)
def test_database_work_is_tried_again_until_it_succeeds() -> None:
    tries: list[int] = []

    def work() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise OperationalError("server closed the connection unexpectedly")
        return "saved"

    assert when_database_returns(work, seconds=30, what="a test save") == "saved"
    assert len(tries) == 3


@pytest.mark.django_db(transaction=True)
def test_database_work_gives_up_after_its_time() -> None:
    tries: list[int] = []

    def work() -> None:
        tries.append(1)
        raise OperationalError("connection refused")

    with pytest.raises(OperationalError):
        when_database_returns(work, seconds=1, what="a test save")
    assert 2 <= len(tries) <= 5


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_error_goes_to_whoever_opened_it() -> None:
    tries: list[int] = []

    def work() -> None:
        tries.append(1)
        raise OperationalError("connection refused")

    with pytest.raises(OperationalError), transaction.atomic():
        when_database_returns(work, seconds=30, what="a test save")
    assert len(tries) == 1


@pytest.mark.django_db(transaction=True)
def test_work_that_can_wait_gets_its_default_while_the_database_is_down() -> None:
    def renew() -> bool:
        raise OperationalError("connection refused")

    assert or_when_database_down(renew, default=True) is True
    assert or_when_database_down(lambda: False, default=True) is False


def test_the_channel_layer_tells_its_sockets_when_redis_comes_back(
    own_redis: KillableRedis,
) -> None:
    layer = ChannelLayer(hosts=[own_redis.url(5)], prefix="supportbot-test")

    async def scenario() -> dict[str, Any]:
        channel = await layer.new_channel()
        await layer.group_add("conversation.test", channel)
        receiving = asyncio.ensure_future(layer.receive(channel))
        await layer.group_send("conversation.test", {"type": "conversation.event", "n": 1})
        assert (await asyncio.wait_for(receiving, 10))["n"] == 1
        receiving = asyncio.ensure_future(layer.receive(channel))
        await asyncio.to_thread(own_redis.kill)
        await asyncio.to_thread(own_redis.start)
        try:
            return dict(await asyncio.wait_for(receiving, 30))
        finally:
            await layer.flush()

    assert asyncio.run(scenario()) == RECONNECTED
