"""The one way an adapter calls its provider's API: httpx with `CHANNEL_HTTP_TIMEOUT`, and the
provider's refusals turned into `DeliveryFailed` the outbox understands.

- 429 (rate limited): retried after the provider's `Retry-After` header (seconds or an HTTP
  date), or its JSON `parameters.retry_after` (Telegram's way);
- 5xx, a timeout or a network failure: retried with the outbox's exponential backoff;
- any other 4xx (a bad token, a blocked user, a malformed request): permanent.

A reason never holds the URL (a Telegram bot token is part of it) or a credential: only the
method, the status and the provider's own short description of the error.
"""

from __future__ import annotations

import logging
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from conversations.channels.base import DeliveryFailed

logger = logging.getLogger(__name__)

_DESCRIPTION_KEYS = ("description", "error", "message", "error_message")
_REASON_CHARS = 200


def provider_call(
    method: str,
    url: str,
    *,
    json: Any = None,
    data: Any = None,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> httpx.Response:
    """Call a provider's API and return its 2xx answer; raise `DeliveryFailed` (retryable for
    429, 5xx and network failures, permanent for other 4xx) otherwise."""
    try:
        response = httpx.request(
            method,
            url,
            json=json,
            data=data,
            headers=headers,
            auth=auth,
            timeout=settings.CHANNEL_HTTP_TIMEOUT,
        )
    except httpx.TransportError as error:
        # The error's text can name the URL (and so a token): only its type is kept.
        raise DeliveryFailed(f"{method} failed: {type(error).__name__}") from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    reason = f"{method} answered {status}{_description(response)}"
    if status == 429:
        raise DeliveryFailed(reason, status=status, retry_after=retry_after_seconds(response))
    if status >= 500 or status == 408:
        raise DeliveryFailed(reason, status=status)
    raise DeliveryFailed(reason, status=status, permanent=True)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """How long the provider asked us to wait: its `Retry-After` header (seconds or an HTTP
    date), else a JSON body's `parameters.retry_after` or `retry_after`; None when it did not
    say."""
    header = response.headers.get("retry-after", "").strip()
    if header:
        seconds = _header_seconds(header)
        if seconds is not None:
            return seconds
    body = _json_body(response)
    if isinstance(body, dict):
        parameters = body.get("parameters")
        for source in (parameters if isinstance(parameters, dict) else {}, body):
            value = source.get("retry_after")
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
    return None


def _header_seconds(header: str) -> float | None:
    try:
        return max(float(header), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - timezone.now()).total_seconds(), 0.0)


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _description(response: httpx.Response) -> str:
    """The provider's own words for the error (Telegram's `description`, Slack's `error`,
    Graph's `error.message`, Twilio's `message`), shortened."""
    body = _json_body(response)
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        body = error
    for key in _DESCRIPTION_KEYS:
        value = body.get(key)
        if isinstance(value, str) and value:
            return f": {value[:_REASON_CHARS]}"
    return ""
