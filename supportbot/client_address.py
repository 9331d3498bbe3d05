"""Who is on the other end of a request or socket: the client address and scheme, with
forwarding headers believed only from the proxies in `TRUSTED_PROXIES`.

Daphne runs without `--proxy-headers` (it would take the leftmost `X-Forwarded-For` from any
peer). `ForwardedClientMiddleware` wraps the ASGI application instead: it walks
`X-Forwarded-For` from the right, skipping trusted proxies, and takes the first untrusted hop
as the client; it takes `X-Forwarded-Proto` only from a trusted peer. It then removes the
forwarding headers from the scope, so nothing downstream (Django's `SECURE_PROXY_SSL_HEADER`,
a lockout library) reads them again: `scope["client"]` and `scope["scheme"]` are the answer.
"""

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Headers that claim a client address or scheme; consumed here, never passed on.
FORWARDING_HEADERS = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-forwarded-host",
        b"x-real-ip",
        b"forwarded",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"true-client-ip",
    }
)

# An IPv6 client holds a whole /64: per-client limits count the /64, not the address.
IPV6_CLIENT_PREFIX = 64


def trusted_networks_parse(values: Iterable[str]) -> tuple[Network, ...]:
    """The networks of `TRUSTED_PROXIES` (CIDRs or single addresses); ValueError names a bad one."""
    networks: list[Network] = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES: {value!r} is not an IP address or CIDR") from exc
    return tuple(networks)


@lru_cache(maxsize=8)
def _trusted_networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    return trusted_networks_parse(values)


def trusted_networks() -> tuple[Network, ...]:
    return _trusted_networks(tuple(settings.TRUSTED_PROXIES))


def address_parse(value: str) -> Address | None:
    """An address as a forwarding header or ASGI server writes it ("1.2.3.4", "1.2.3.4:5678",
    "::1", "[::1]:5678"); IPv4-mapped IPv6 becomes IPv4. None for anything else."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks)


def client_address_resolve(
    peer: str, forwarded_for: Sequence[str], networks: Sequence[Network]
) -> str:
    """The client behind `peer`: the rightmost hop of `X-Forwarded-For` that is not a trusted
    proxy. From an untrusted peer the header changes nothing. When every hop is trusted, the
    leftmost; a hop that is not an address ends the walk at the proxy that wrote it."""
    current = address_parse(peer)
    if current is None:
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    while _is_trusted(current, networks) and hops:
        previous = address_parse(hops.pop())
        if previous is None:
            break
        current = previous
    return str(current)


def forwarded_scheme_resolve(
    peer: str, forwarded_proto: Sequence[str], scheme: str, networks: Sequence[Network]
) -> str:
    """The scheme of the request: `X-Forwarded-Proto` (the value the nearest proxy wrote) when
    the peer is a trusted proxy, else the connection's own."""
    address = address_parse(peer)
    values = [v.strip().lower() for value in forwarded_proto for v in value.split(",")]
    if address is None or not values or not _is_trusted(address, networks):
        return scheme
    secure = values[-1] in {"https", "wss"}
    if scheme in {"ws", "wss"}:
        return "wss" if secure else "ws"
    return "https" if secure else "http"


def client_bucket(address: str) -> str:
    """What a per-client limit counts: the IPv4 address, or an IPv6 address's /64."""
    parsed = address_parse(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(parsed) if parsed is not None else address


def scope_client_address(scope: dict[str, Any]) -> str:
    """The client address of an ASGI scope (after `ForwardedClientMiddleware`)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _header_values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in headers if key.lower() == name]


def forwarded_scope(scope: dict[str, Any]) -> dict[str, Any]:
    """A copy of an HTTP or websocket scope with the client and scheme resolved and the
    forwarding headers removed."""
    headers = list(scope.get("headers") or [])
    client = scope.get("client")
    resolved = dict(scope)
    resolved["headers"] = [(k, v) for k, v in headers if k.lower() not in FORWARDING_HEADERS]
    if not client:
        return resolved
    peer = str(client[0])
    networks = trusted_networks()
    address = client_address_resolve(peer, _header_values(headers, b"x-forwarded-for"), networks)
    resolved["client"] = (address, client[1] if address == peer else 0)
    default_scheme = "ws" if scope["type"] == "websocket" else "http"
    resolved["scheme"] = forwarded_scheme_resolve(
        peer,
        _header_values(headers, b"x-forwarded-proto"),
        str(scope.get("scheme") or default_scheme),
        networks,
    )
    return resolved


class ForwardedClientMiddleware:
    """ASGI middleware: resolves the client and scheme of HTTP and websocket scopes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] in {"http", "websocket"}:
            scope = forwarded_scope(scope)
        return await self.app(scope, receive, send)
