"""The service's public addresses: `PUBLIC_URL` (the admin, and the widget unless it has its
own), `WIDGET_PUBLIC_URL` (the widget's own origin), and the websocket origin of a request."""

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest


def _netloc(url: str) -> str:
    return urlsplit(url).netloc.lower() if url else ""


def socket_origin(request: HttpRequest) -> str:
    """The websocket origin of the host this request reached, as pages served from it open
    their sockets (`location.host`): `wss://host` behind TLS, or when the configured public URL
    of this host is https; `ws://host` otherwise."""
    host = request.get_host()
    secure = request.is_secure() or any(
        _netloc(url) == host.lower() and url.startswith("https://")
        for url in (settings.PUBLIC_URL, settings.WIDGET_PUBLIC_URL)
    )
    return f"{'wss' if secure else 'ws'}://{host}"


def is_widget_host(request: HttpRequest) -> bool:
    """Whether the request reached the widget's own host (when `WIDGET_PUBLIC_URL` names one
    apart from `PUBLIC_URL`)."""
    widget = _netloc(settings.WIDGET_PUBLIC_URL)
    if not widget or widget == _netloc(settings.PUBLIC_URL):
        return False
    return request.get_host().lower() == widget
