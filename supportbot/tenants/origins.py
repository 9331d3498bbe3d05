"""Web origins (scheme://host[:port]) as tenants list them and browsers send them."""

import re
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A DNS name (letters, digits, hyphens, dots; IDNs in their xn-- form) or an IP literal: an origin
# ends up in a Content-Security-Policy header, where `;`, spaces or quotes would add directives.
_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\]")


def normalize_origin(value: str) -> str:
    """`https://Shop.example.com:443/` -> `https://shop.example.com`; ValidationError otherwise."""
    parts = urlsplit(value.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValidationError(
            f"{value!r} is not an http(s) origin such as https://shop.example.com"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValidationError(f"{value!r} must be an origin only: scheme, host and port")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"{value!r} has an invalid port") from exc
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if not _HOST.fullmatch(host):
        raise ValidationError(f"{value!r} has characters a host name cannot have")
    if port and port != _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


def normalize_origins(values: list[str]) -> list[str]:
    seen: list[str] = []
    for value in values:
        origin = normalize_origin(value)
        if origin not in seen:
            seen.append(origin)
    return seen


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    if not origin:
        return False
    try:
        return normalize_origin(origin) in allowed
    except ValidationError:
        return False
