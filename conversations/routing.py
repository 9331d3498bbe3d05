from django.urls import path

from conversations.agent_consumer import AgentConsumer
from conversations.consumers import WidgetConsumer

websocket_urlpatterns = [
    path("ws/widget/", WidgetConsumer.as_asgi()),
    # Session-authenticated; the consumer admits only the service's own origin.
    path("ws/agent/conversations/<uuid:conversation_id>/", AgentConsumer.as_asgi()),
]
