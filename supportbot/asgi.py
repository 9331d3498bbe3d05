"""ASGI entry point: HTTP through Django, websockets through Channels (served by Daphne)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportbot.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from supportbot.client_address import ForwardedClientMiddleware  # noqa: E402
from supportbot.development_guard import LoopbackOnlyMiddleware  # noqa: E402
from supportbot.routing import websocket_urlpatterns  # noqa: E402

# No blanket origin validator wraps the websocket router: the widget's origins are checked per
# widget key in its consumer (the key names the tenant and its allowed origins, customers'
# sites included), and the session-authenticated agent socket admits only the service's own
# origin (conversations.agent_socket.agent_origin_allowed). The session and user are resolved for
# the agent socket only (conversations.routing), which alone reads them: a widget socket's
# handshake does not wait for the database, so a storm of widget connections is accepted at once.
#
# Outermost: a development server on defaults answers loopback only; then the client address
# and scheme are resolved from forwarding headers of trusted proxies (Daphne runs without
# --proxy-headers), so every request and socket sees `scope["client"]` as the real client.
application = LoopbackOnlyMiddleware(
    ForwardedClientMiddleware(
        ProtocolTypeRouter(
            {
                "http": django_asgi_app,
                "websocket": URLRouter(websocket_urlpatterns),
            }
        )
    )
)
