"""A development server on defaults nobody chose answers loopback connections only.

With `SUPPORTBOT_ENV` unset and DEBUG on or the public development `SECRET_KEY`
(`settings.SERVE_LOOPBACK_ONLY`), a connection that reached the server on any other address
is refused: HTTP with 403, a websocket before it is accepted. So a Procfile or a
`daphne -b 0.0.0.0` started without configuration shows no debug page and signs nothing with
a public key for anyone but the machine itself. `SUPPORTBOT_ENV=production` (or
`development`, set explicitly) lifts it.
"""

import logging
from typing import Any

from django.conf import settings

from supportbot.client_address import address_parse

logger = logging.getLogger(__name__)

REFUSAL = (
    b"This Supportbot runs on development defaults (DEBUG or the public development "
    b"SECRET_KEY) and answers loopback connections only. Set SUPPORTBOT_ENV=production and "
    b"its secrets (docs/operations.md), or SUPPORTBOT_ENV=development to serve a development "
    b"server on purpose.\n"
)


def reached_on_loopback(scope: dict[str, Any]) -> bool:
    """Whether the connection arrived on a loopback address (a Unix socket, or a scope without
    a server address as in-process callers make, counts as local)."""
    server = scope.get("server")
    if not server or server[1] is None:
        return True
    address = address_parse(str(server[0]))
    return address is not None and address.is_loopback


class LoopbackOnlyMiddleware:
    """ASGI middleware applying `settings.SERVE_LOOPBACK_ONLY`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if (
            scope["type"] not in {"http", "websocket"}
            or not settings.SERVE_LOOPBACK_ONLY
            or reached_on_loopback(scope)
        ):
            return await self.app(scope, receive, send)
        logger.warning("refused a connection to %s: development defaults", scope.get("server"))
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return None
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": REFUSAL})
        return None
