"""HTTP views of the widget: the iframe page that holds the chat."""

import json

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET

from supportbot.public_urls import socket_origin
from supportbot.tenants.disclosure import ai_disclosures
from supportbot.tenants.selectors import access_widget_key_by_public_key


def _frame_csp(request: HttpRequest, frame_ancestors: list[str]) -> str:
    """The frame's policy: its own scripts and styles only, and a socket to this service's own
    websocket origin only (the host the frame was served from, as the frame connects)."""
    ancestors = " ".join(frame_ancestors) if frame_ancestors else "'none'"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        f"connect-src 'self' {socket_origin(request)}; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; "
        f"form-action 'none'; frame-ancestors 'self' {ancestors}"
    )


@require_GET
@xframe_options_exempt
def widget_frame(request: HttpRequest) -> HttpResponse:
    """The chat inside the iframe. Framing is limited to the key's allowed origins."""
    widget_key = access_widget_key_by_public_key(request.GET.get("key"))
    if widget_key is None:
        response = render(
            request, "widget/unavailable.html", {"title": "Chat unavailable"}, status=404
        )
        response["Content-Security-Policy"] = _frame_csp(request, [])
        return response
    locale = request.GET.get("locale", "")[:35]
    response = render(
        request,
        "widget/frame.html",
        {
            "widget_key": widget_key.public_key,
            "ws_path": "/ws/widget/",
            "tenant_name": widget_key.tenant.name,
            "locale": locale,
            "title": f"Chat with {widget_key.tenant.name}",
            "max_message_length": widget_key.tenant.message_max_chars,
            # Known before the socket is up: the AI disclosure is shown from the first paint,
            # and "visitor decides" offers its choice before anything can be sent.
            "conversation_mode": widget_key.tenant.conversation_mode,
            "ai_disclosures": json.dumps(ai_disclosures(widget_key.tenant), ensure_ascii=False),
            # Under consent, nothing can be written before the socket shows the consent text.
            "lawful_basis": widget_key.tenant.lawful_basis,
        },
    )
    response["Content-Security-Policy"] = _frame_csp(request, widget_key.effective_origins)
    response["Cache-Control"] = "no-store"
    return response
