"""The cap on a client's open widget sockets: who the client is (TRUSTED_PROXIES), and live
sockets counted by heartbeat, so a crashed process's sockets stop counting."""

import asyncio
import itertools
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from conversations.limits import (
    connection_expiry,
    connection_slot_acquire,
    connection_slot_refresh,
    connection_slot_release,
    connection_slots_live,
)
from supportbot.asgi import application
from supportbot.redis_store import get_redis, redis_key

pytestmark = pytest.mark.django_db(transaction=True)

SHOP = "https://shop.example.com"
_addresses = itertools.count(1)


def fresh_ipv4() -> str:
    """An address no other test in the session uses (198.18.0.0/15, for benchmarks)."""
    n = next(_addresses)
    return f"198.18.{n // 250}.{n % 250 + 1}"


def fresh_ipv6_64() -> str:
    """The first half of an IPv6 /64 no other test uses."""
    return f"2001:db8:{next(_addresses):x}:1"


@pytest.fixture
def key(make_tenant: Any) -> Any:
    return make_tenant(allowed_origins=[SHOP])[1]


@pytest.fixture
def cap(settings: Any) -> int:
    settings.WIDGET_MAX_CONNECTIONS_PER_CLIENT = 2
    return 2


async def connect(
    peer: str, forwarded_for: str | None = None, forwarded_proto: str | None = None
) -> WebsocketCommunicator:
    headers = [(b"host", b"support.example.net"), (b"origin", SHOP.encode())]
    if forwarded_for is not None:
        headers.append((b"x-forwarded-for", forwarded_for.encode()))
    if forwarded_proto is not None:
        headers.append((b"x-forwarded-proto", forwarded_proto.encode()))
    communicator = WebsocketCommunicator(application, "/ws/widget/", headers=headers)
    communicator.scope["client"] = (peer, 50000)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def assert_refused(communicator: WebsocketCommunicator) -> None:
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4429}


async def assert_served(communicator: WebsocketCommunicator, key: Any) -> None:
    await communicator.send_json_to({"type": "hello", "key": key.public_key})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "welcome"


async def disconnect_all(sockets: list[WebsocketCommunicator]) -> None:
    for ws in sockets:
        await ws.disconnect()


# --- who the client is ---------------------------------------------------------------------


async def test_a_rotating_x_forwarded_for_from_an_untrusted_peer_still_hits_the_cap(
    key: Any, cap: int
) -> None:
    peer = fresh_ipv4()
    sockets = [await connect(peer, forwarded_for=f"203.0.113.{n}") for n in range(cap)]
    for ws in sockets:
        await assert_served(ws, key)
    extra = await connect(peer, forwarded_for="203.0.113.250, 203.0.113.251")
    await assert_refused(extra)
    await disconnect_all(sockets)


async def test_behind_a_trusted_proxy_the_real_client_is_counted(
    key: Any, cap: int, settings: Any
) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    proxy, client, neighbour = "10.20.0.2", fresh_ipv4(), fresh_ipv4()
    # What the client writes itself (leftmost) rotates; the proxy appends the real address.
    sockets = [await connect(proxy, forwarded_for=f"6.6.6.{n}, {client}") for n in range(cap)]
    for ws in sockets:
        await assert_served(ws, key)
    await assert_refused(await connect(proxy, forwarded_for=f"6.6.6.99, {client}"))
    # Another client behind the same proxy has sockets of its own.
    other = await connect(proxy, forwarded_for=neighbour, forwarded_proto="https")
    await assert_served(other, key)
    await disconnect_all([*sockets, other])


async def test_an_ipv6_client_is_counted_by_its_64(key: Any, cap: int, settings: Any) -> None:
    settings.TRUSTED_PROXIES = ["2001:db8:ffff::/48"]
    prefix = fresh_ipv6_64()
    sockets = [await connect(f"{prefix}::{n + 1:x}") for n in range(cap)]
    for ws in sockets:
        await assert_served(ws, key)
    await assert_refused(await connect(f"{prefix}:ffff:ffff:ffff:ffff"))
    # Through a trusted IPv6 proxy, the same /64 is the same client.
    await assert_refused(await connect("2001:db8:ffff::2", forwarded_for=f"[{prefix}::99]:4711"))
    other = await connect(f"{fresh_ipv6_64()}::1")
    await assert_served(other, key)
    await disconnect_all([*sockets, other])


# --- live sockets --------------------------------------------------------------------------


def test_sockets_of_a_crashed_process_stop_counting_after_the_expiry(cap: int) -> None:
    client = fresh_ipv4()
    start = 1_000_000.0
    # A process opened two sockets, then died: no heartbeat, no release.
    assert connection_slot_acquire(client, "crashed-1", now=start)
    assert connection_slot_acquire(client, "crashed-2", now=start)
    expiry = connection_expiry()
    assert not connection_slot_acquire(client, "new", now=start + expiry - 1)
    assert connection_slot_acquire(client, "new", now=start + expiry + 1)
    assert connection_slots_live(client, now=start + expiry + 1) == 1


def test_a_refused_attempt_extends_nothing(cap: int) -> None:
    client = fresh_ipv4()
    start = time.time()
    assert connection_slot_acquire(client, "a", now=start)
    assert connection_slot_acquire(client, "b", now=start)
    key = redis_key("widget-sockets", client)
    ttl = get_redis().pttl(key)
    members = get_redis().zrange(key, 0, -1, withscores=True)
    expiry = connection_expiry()
    # A client retrying all along: every attempt is refused, and none renews the count.
    for offset in (1.0, expiry / 2, expiry - 1):
        assert not connection_slot_acquire(client, f"retry-{offset}", now=start + offset)
    assert get_redis().zrange(key, 0, -1, withscores=True) == members
    assert get_redis().pttl(key) <= ttl
    assert connection_slot_acquire(client, "after", now=start + expiry + 1)


def test_a_heartbeat_keeps_a_socket_counted_and_a_release_frees_it(cap: int) -> None:
    client = fresh_ipv4()
    start = 2_000_000.0
    expiry = connection_expiry()
    assert connection_slot_acquire(client, "a", now=start)
    assert connection_slot_acquire(client, "b", now=start)
    connection_slot_refresh(client, "a", now=start + expiry - 1)
    connection_slot_refresh(client, "b", now=start + expiry - 1)
    assert not connection_slot_acquire(client, "c", now=start + expiry + 1)
    connection_slot_release(client, "a")
    assert connection_slot_acquire(client, "c", now=start + expiry + 1)


async def test_a_stale_count_never_locks_a_client_out(key: Any, cap: int) -> None:
    """After a crash (or a deploy that killed a process), the client's next socket is served
    once the dead sockets have expired; live ones still count."""
    client = fresh_ipv4()
    past = time.time() - connection_expiry() - 1
    for n in range(cap):
        await database_sync_to_async(connection_slot_acquire)(client, f"dead-{n}", now=past)
    ws = await connect(client)
    await assert_served(ws, key)
    await ws.disconnect()
    for n in range(cap):
        await database_sync_to_async(connection_slot_acquire)(client, f"live-{n}")
    await assert_refused(await connect(client))


async def test_open_sockets_renew_their_place_while_they_live(
    key: Any, cap: int, settings: Any
) -> None:
    settings.WIDGET_CONNECTION_HEARTBEAT = 0.2
    client = fresh_ipv4()
    sockets = [await connect(client) for _ in range(cap)]
    for ws in sockets:
        await assert_served(ws, key)
    redis_set = redis_key("widget-sockets", client)
    opened = time.time()

    def renewed_past_expiry() -> bool:
        scores = [score for _, score in get_redis().zrange(redis_set, 0, -1, withscores=True)]
        return len(scores) == cap and min(scores) > opened + connection_expiry()

    deadline = time.monotonic() + 15
    while not await database_sync_to_async(renewed_past_expiry)():
        assert time.monotonic() < deadline, "the open sockets did not renew their place"
        await asyncio.sleep(0.05)
    await assert_refused(await connect(client))
    await disconnect_all(sockets)
    assert await database_sync_to_async(connection_slots_live)(client) == 0
    await assert_served(again := await connect(client), key)
    await again.disconnect()
