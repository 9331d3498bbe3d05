"""The client address and scheme: forwarding headers are believed from TRUSTED_PROXIES only."""

import asyncio
import ipaddress
from typing import Any

import pytest
from django.core.asgi import get_asgi_application

from supportbot.asgi import application
from supportbot.client_address import (
    ForwardedClientMiddleware,
    address_parse,
    client_address_resolve,
    client_bucket,
    forwarded_scheme_resolve,
    trusted_networks_parse,
)

PROXIES = trusted_networks_parse(["10.0.0.0/8", "2001:db8:ffff::/48"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        # An untrusted peer: whatever it writes changes nothing.
        ("198.51.100.7", ["203.0.113.1"], "198.51.100.7"),
        ("198.51.100.7", ["10.0.0.1, 10.0.0.2"], "198.51.100.7"),
        # A trusted proxy: the rightmost hop it did not write itself is the client; what the
        # client put in front (nginx's $proxy_add_x_forwarded_for keeps it) is ignored.
        ("10.0.0.2", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        ("10.0.0.2", ["6.6.6.6", "203.0.113.9"], "203.0.113.9"),  # two header lines
        # Proxies in a chain are skipped, from the right.
        ("10.0.0.2", ["6.6.6.6, 203.0.113.9, 10.1.2.3, 10.4.5.6"], "203.0.113.9"),
        # Every hop trusted: the farthest one.
        ("10.0.0.2", ["10.9.9.9, 10.1.1.1"], "10.9.9.9"),
        # No header from a trusted peer: the peer.
        ("10.0.0.2", [], "10.0.0.2"),
        # A hop that is not an address stops the walk at the proxy that wrote it.
        ("10.0.0.2", ["203.0.113.9, unknown, 10.1.1.1"], "10.1.1.1"),
        # Ports, as some proxies write them.
        ("10.0.0.2", ["203.0.113.9:4711"], "203.0.113.9"),
        # IPv6: trusted by CIDR, ports in brackets, an IPv4-mapped peer.
        ("2001:db8:ffff::2", ["2001:db8:1:2::99"], "2001:db8:1:2::99"),
        ("2001:db8:ffff::2", ["[2001:db8:1:2::99]:4711"], "2001:db8:1:2::99"),
        ("2001:db8:ffff::2", ["2001:db8:1:2::99, 2001:db8:ffff:1::1"], "2001:db8:1:2::99"),
        ("2001:db8:1::5", ["203.0.113.9"], "2001:db8:1::5"),
        ("::ffff:10.0.0.2", ["203.0.113.9"], "203.0.113.9"),
        ("::ffff:198.51.100.7", ["203.0.113.9"], "198.51.100.7"),
    ],
)
def test_the_client_is_the_rightmost_untrusted_hop(
    peer: str, forwarded_for: list[str], client: str
) -> None:
    assert client_address_resolve(peer, forwarded_for, PROXIES) == client


def test_nobody_is_trusted_by_default(settings: Any) -> None:
    assert settings.TRUSTED_PROXIES == []
    assert client_address_resolve("127.0.0.1", ["203.0.113.9"], trusted_networks_parse([])) == (
        "127.0.0.1"
    )


def test_a_bad_trusted_proxy_is_refused() -> None:
    with pytest.raises(ValueError, match="not-a-network"):
        trusted_networks_parse(["10.0.0.0/8", "not-a-network"])


@pytest.mark.parametrize(
    ("peer", "proto", "scheme", "expected"),
    [
        ("198.51.100.7", ["https"], "http", "http"),
        ("198.51.100.7", ["https"], "ws", "ws"),
        ("10.0.0.2", ["https"], "http", "https"),
        ("10.0.0.2", ["https"], "ws", "wss"),
        ("10.0.0.2", ["http"], "http", "http"),
        ("10.0.0.2", ["https, http"], "http", "http"),  # the nearest proxy's value
        ("10.0.0.2", [], "http", "http"),
    ],
)
def test_the_scheme_comes_from_trusted_proxies_only(
    peer: str, proto: list[str], scheme: str, expected: str
) -> None:
    assert forwarded_scheme_resolve(peer, proto, scheme, PROXIES) == expected


def test_a_client_bucket_is_an_ipv4_address_or_an_ipv6_64() -> None:
    assert client_bucket("203.0.113.9") == "203.0.113.9"
    assert client_bucket("2001:db8:1:2::99") == "2001:db8:1:2::/64"
    assert client_bucket("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert client_bucket("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_parse("nonsense") is None
    assert address_parse("fe80::1%eth0") == ipaddress.ip_address("fe80::1")


async def _scope_seen(scope: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    await ForwardedClientMiddleware(inner)(scope, None, None)
    return seen


def _http_scope(peer: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": "http",
        "method": "GET",
        "path": "/admin/login/",
        "raw_path": b"/admin/login/",
        "query_string": b"",
        "root_path": "",
        "http_version": "1.1",
        "headers": [(b"host", b"support.example.com"), *headers],
        "client": (peer, 50000),
        "server": ("127.0.0.1", 8000),
    }


FORWARDED = [
    (b"x-forwarded-for", b"6.6.6.6, 203.0.113.9"),
    (b"x-forwarded-proto", b"https"),
    (b"x-real-ip", b"6.6.6.6"),
    (b"forwarded", b"for=6.6.6.6;proto=https"),
]


async def test_the_middleware_resolves_the_scope_and_drops_forwarding_headers(
    settings: Any,
) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    seen = await _scope_seen(_http_scope("198.51.100.7", FORWARDED))
    assert seen["client"] == ("198.51.100.7", 50000)
    assert seen["scheme"] == "http"
    assert [name for name, _ in seen["headers"]] == [b"host"]

    seen = await _scope_seen(_http_scope("10.0.0.2", FORWARDED))
    assert seen["client"][0] == "203.0.113.9"
    assert seen["scheme"] == "https"
    assert [name for name, _ in seen["headers"]] == [b"host"]

    websocket = {"type": "websocket", "path": "/ws/widget/", "headers": FORWARDED}
    seen = await _scope_seen({**websocket, "client": ["10.0.0.2", 50000]})
    assert seen["client"][0] == "203.0.113.9"
    assert seen["scheme"] == "wss"
    seen = await _scope_seen({**websocket, "client": ["198.51.100.7", 50000]})
    assert seen["client"][0] == "198.51.100.7"
    assert seen["scheme"] == "ws"


async def _get(app: Any, scope: dict[str, Any]) -> tuple[int, dict[bytes, bytes]]:
    sent: list[dict[str, Any]] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # no disconnect: Django cancels this when it has answered
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], dict(start["headers"])


@pytest.mark.django_db(transaction=True)
async def test_django_honours_x_forwarded_proto_only_from_a_trusted_proxy(
    settings: Any,
) -> None:
    """With the HTTPS redirect on, a request that only claims to have come through TLS is
    still redirected; one from the trusted proxy is served."""
    settings.ALLOWED_HOSTS = ["support.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert settings.SECURE_PROXY_SSL_HEADER is None
    # The project's wiring, with a Django handler built under these settings (middleware
    # reads SECURE_SSL_REDIRECT when it is built).
    wrappers, app = [], application
    while app is not None:
        wrappers.append(type(app))
        app = getattr(app, "app", None)
    assert ForwardedClientMiddleware in wrappers
    app = ForwardedClientMiddleware(get_asgi_application())
    status, headers = await _get(app, _http_scope("198.51.100.7", FORWARDED))
    assert status == 301
    assert headers[b"Location"] == b"https://support.example.com/admin/login/"
    status, _ = await _get(app, _http_scope("10.0.0.2", FORWARDED))
    assert status == 200
