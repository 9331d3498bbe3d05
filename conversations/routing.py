from channels.auth import AuthMiddlewareStack
from django.urls import path

from conversations.agent_consumer import AgentConsumer
from conversations.consumers import WidgetConsumer

websocket_urlpatterns = [
    path("ws/widget/", WidgetConsumer.as_asgi()),
    # Session-authenticated; the consumer admits only the service's own origin. Only this
    # route resolves the session and user: a widget socket's handshake waits on no database.
    path(
        "ws/agent/conversations/<uuid:conversation_id>/",
        AuthMiddlewareStack(AgentConsumer.as_asgi()),
    ),
]
