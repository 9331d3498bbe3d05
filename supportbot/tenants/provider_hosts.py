"""Which hosts a tenant's own provider base URL may point at.

A tenant's `llm_base_url` is typed by whoever edits the tenant, and the workers connect to it: a
URL naming a loopback, private, link-local (169.254.169.254, the cloud metadata service) or
otherwise non-public address would let that person reach the server's own network. Such hosts
are refused unless the operator allows them: `LLM_ALLOW_PRIVATE_BASE_URLS` (any host) or
`LLM_ALLOWED_PRIVATE_HOSTS` (networks in CIDR notation, addresses, or host names).

The URL is checked when the tenant is saved (`check_base_url`), and again for every connection
the workers open (`ProviderHostPolicy` is the address guard of the tenant's `ProviderConfig`):
DNS may answer differently by then, and a redirect may name another host. The server's own
`LLM_BASE_URL` is the operator's and is not checked.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_HINT = "set LLM_ALLOWED_PRIVATE_HOSTS (or LLM_ALLOW_PRIVATE_BASE_URLS) on the server to allow it"


def address_kind(address: IPAddress) -> str | None:
    """What kind of non-public address `address` is ("loopback", ...), or None when public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (cloud metadata)"
    if address.is_private:
        return "private network"
    if address.is_multicast or address.is_reserved or not address.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class ProviderHostPolicy:
    """The address guard of a tenant's provider: `policy(host, address)` is why `host`, resolved
    to `address`, may not be reached, or None when it may. Frozen and hashable (it is part of
    the SDK client's cache key)."""

    allow_all: bool = False
    networks: tuple[IPNetwork, ...] = ()
    hostnames: frozenset[str] = field(default_factory=frozenset)

    def __call__(self, host: str, address: str) -> str | None:
        if self.allow_all or host.lower().rstrip(".") in self.hostnames:
            return None
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{host} resolves to {address!r}, which is not an IP address"
        kind = address_kind(ip)
        if kind is None or any(ip in network for network in self.networks):
            return None
        shown = host if host == address else f"{host} ({address})"
        return f"{shown} is a {kind} address; {_HINT}"


def policy_from_settings() -> ProviderHostPolicy:
    """The policy of LLM_ALLOW_PRIVATE_BASE_URLS and LLM_ALLOWED_PRIVATE_HOSTS."""
    networks: list[IPNetwork] = []
    hostnames: set[str] = set()
    for entry in getattr(settings, "LLM_ALLOWED_PRIVATE_HOSTS", None) or []:
        entry = str(entry).strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hostnames.add(entry.lower().rstrip("."))
    return ProviderHostPolicy(
        allow_all=bool(getattr(settings, "LLM_ALLOW_PRIVATE_BASE_URLS", False)),
        networks=tuple(networks),
        hostnames=frozenset(hostnames),
    )


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (empty when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_base_url(url: str, policy: ProviderHostPolicy | None = None) -> None:
    """Raise ValidationError when `url`'s host is, or resolves to, an address the policy refuses.

    A host name that does not resolve now is accepted: every connection is checked again.
    """
    policy = policy_from_settings() if policy is None else policy
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValidationError("Enter a valid URL.") from None
    if not host:
        raise ValidationError("Enter a URL with a host name.")
    port = port or (443 if parts.scheme == "https" else 80)
    for address in resolve(host, port):
        refusal = policy(host, address)
        if refusal is not None:
            raise ValidationError(f"This provider URL is refused: {refusal}.")
