"""Websocket routes of every app."""

from conversations.routing import websocket_urlpatterns as conversation_routes

websocket_urlpatterns = [*conversation_routes]
