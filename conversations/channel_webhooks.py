"""The one webhook endpoint of every message channel: `/channels/<account id>/webhook/`.

Thin: the channel's adapter answers a setup challenge, verifies the request on its raw bytes
(refused with the status its provider expects, storing nothing), parses it; the items are
stored once each (`inbound_items_store`) and the provider is answered at once, the work queued.
"""

import logging
import uuid
from urllib.parse import parse_qsl

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from conversations.channels.base import WebhookRefused, WebhookRequest, adapter_for
from conversations.channels.inbound import inbound_items_store
from conversations.models import ChannelAccount

logger = logging.getLogger(__name__)


def _webhook_request(request: HttpRequest, body: bytes) -> WebhookRequest:
    form: dict[str, str] = {}
    if request.content_type == "application/x-www-form-urlencoded":
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return WebhookRequest(
        method=request.method or "GET",
        url=request.build_absolute_uri(),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
        query={key: request.GET.get(key, "") for key in request.GET},
        form=form,
    )


def _body_within_limit(request: HttpRequest) -> bytes | None:
    """The raw body, or None when it is over CHANNEL_WEBHOOK_MAX_BYTES: by its declared length
    first (then it is not read at all), else by what was read (a body sent without a length).

    Read here rather than through `request.body`, whose own limit (Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE, for forms) is not the one a provider's webhook answers to."""
    limit = settings.CHANNEL_WEBHOOK_MAX_BYTES
    declared = request.headers.get("Content-Length") or "0"
    if not declared.isdigit() or int(declared) > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def _not_allowed() -> HttpResponse:
    response = HttpResponse(status=405)
    response["Allow"] = "GET, POST"
    return response


@csrf_exempt
def channel_webhook(request: HttpRequest, account_id: uuid.UUID) -> HttpResponse:
    if request.method not in ("GET", "POST"):
        return _not_allowed()
    body = _body_within_limit(request)
    if body is None:
        return HttpResponse("too large", status=413, content_type="text/plain")
    account = (
        ChannelAccount.objects.select_related("tenant")
        .filter(pk=account_id, is_active=True, tenant__is_active=True)
        .first()
    )
    if account is None:
        return HttpResponse("not found", status=404, content_type="text/plain")
    try:
        adapter = adapter_for(account.kind)
    except KeyError:
        return HttpResponse("not found", status=404, content_type="text/plain")
    webhook = _webhook_request(request, body)
    try:
        answer = adapter.handshake(account, webhook)
        if answer is None:
            if request.method != "POST":
                return _not_allowed()
            adapter.verify(account, webhook)
            inbound_items_store(account=account, items=adapter.parse(account, webhook))
            answer = adapter.acknowledge(account)
    except WebhookRefused as refused:
        # Logged, not audited: anyone can post here, and the log says nothing secret.
        logger.info("webhook refused for channel %s: %s", account.pk, refused.reason)
        return HttpResponse(refused.reason, status=refused.status, content_type="text/plain")
    return HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)
