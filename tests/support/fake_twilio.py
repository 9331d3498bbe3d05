"""Twilio's Messages API at the HTTP boundary (for a `ProviderServer`): the documented
Message resource for every message created, and the form fields Twilio posts to a number's
webhook (an incoming message, a status callback), retyped from Twilio's documentation.

    with ProviderServer(default=twilio_ok) as twilio:
        settings.TWILIO_API_BASE = twilio.url
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.support.provider_server import Recorded

_ids = itertools.count(1)


def new_sid(prefix: str = "SM") -> str:
    return f"{prefix}{next(_ids):032x}"


def twilio_ok(request: Recorded) -> tuple[int, Any, dict[str, str]]:
    """`POST /2010-04-01/Accounts/<sid>/Messages.json`: 201 and the queued Message resource."""
    parts = request.path.split("/")
    if request.method != "POST" or not request.path.endswith("/Messages.json") or len(parts) < 5:
        return 404, {"code": 20404, "message": "The requested resource was not found"}, {}
    account_sid = parts[3]
    form = request.form
    sid = new_sid()
    uri = f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}"
    return (
        201,
        {
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": "Thu, 24 Aug 2023 05:01:45 +0000",
            "date_sent": None,
            "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000",
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From", ""),
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form.get("To", ""),
            "uri": f"{uri}.json",
        },
        {},
    )


def incoming_message(
    *, account_sid: str, to: str, phone: str, body: str, message_sid: str = ""
) -> dict[str, str]:
    """The fields of an incoming SMS webhook."""
    sid = message_sid or new_sid()
    return {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "US",
        "To": to,
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": phone,
        "ApiVersion": "2010-04-01",
    }


def incoming_mms(
    *, account_sid: str, to: str, phone: str, body: str, media: list[tuple[str, str]]
) -> dict[str, str]:
    """An incoming MMS: `media` as (url, content type)."""
    fields = incoming_message(account_sid=account_sid, to=to, phone=phone, body=body)
    fields["NumMedia"] = str(len(media))
    for n, (url, content_type) in enumerate(media):
        fields[f"MediaUrl{n}"] = url
        fields[f"MediaContentType{n}"] = content_type
    return fields


def status_callback(
    *, account_sid: str, message_sid: str, status: str, to: str, from_number: str
) -> dict[str, str]:
    """A status callback on a message we sent (no Body)."""
    fields = {
        "SmsSid": message_sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": to,
        "MessageSid": message_sid,
        "AccountSid": account_sid,
        "From": from_number,
        "ApiVersion": "2010-04-01",
    }
    if status in ("failed", "undelivered"):
        fields["ErrorCode"] = "30003"
    return fields
