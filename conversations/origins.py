"""Whether a websocket was opened by a page of this service itself (the widget iframe, the admin).

Shared by the visitor's and the agent's socket rules.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

from supportbot.tenants.origins import normalize_origin


def is_own_origin(origin: str | None, host: str | None) -> bool:
    """True when the page that opened the socket is served by this service: the same host and
    port as the request, or `PUBLIC_URL`."""
    if not origin or not host:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if parts.netloc.lower() == host.lower():
        return True
    if settings.PUBLIC_URL:
        try:
            return normalize_origin(origin) == normalize_origin(settings.PUBLIC_URL)
        except ValidationError:
            return False
    return False
