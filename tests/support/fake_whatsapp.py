"""The WhatsApp Cloud API at the HTTP boundary: the Graph API's documented answers (for a
`ProviderServer`) and the webhook payloads Meta posts, retyped from Meta's documentation, with
their `X-Hub-Signature-256`.

    with ProviderServer(default=whatsapp_ok) as graph:
        settings.WHATSAPP_API_BASE = graph.url
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from typing import Any

from tests.support.provider_server import Recorded

_ids = itertools.count(1)

# The Graph API's error when the customer last wrote more than 24 hours ago (HTTP 400).
RE_ENGAGEMENT_ERROR = {
    "error": {
        "message": "(#131047) Re-engagement message",
        "type": "OAuthException",
        "code": 131047,
        "error_data": {
            "messaging_product": "whatsapp",
            "details": "Message failed to send because more than 24 hours have passed since "
            "the customer last replied to this number.",
        },
        "fbtrace_id": "AbCdEfGhIjKlMnOp",
    }
}


def new_wamid() -> str:
    return f"wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI{next(_ids):012d}"


def whatsapp_ok(request: Recorded) -> tuple[int, Any, dict[str, str]]:
    """`POST /<phone_number_id>/messages`: the documented success, with a fresh wamid."""
    if request.method == "POST" and request.path.endswith("/messages"):
        to = str((request.json or {}).get("to", ""))
        return (
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                "messages": [{"id": new_wamid()}],
            },
            {},
        )
    return 404, {"error": {"message": "Unknown path", "code": 100}}, {}


def sign(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def notification(phone_number_id: str, value: dict[str, Any]) -> dict[str, Any]:
    """The envelope of every webhook: one entry, one `messages` change carrying `value`."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


def _contacts(phone: str, name: str) -> list[dict[str, Any]]:
    return [{"profile": {"name": name}, "wa_id": phone}]


def text_message(
    phone_number_id: str, *, phone: str, text: str, wamid: str = "", name: str = "Sheena Nelson"
) -> dict[str, Any]:
    return notification(
        phone_number_id,
        {
            "contacts": _contacts(phone, name),
            "messages": [
                {
                    "from": phone,
                    "id": wamid or new_wamid(),
                    "timestamp": "1749416383",
                    "type": "text",
                    "text": {"body": text},
                }
            ],
        },
    )


def image_message(
    phone_number_id: str, *, phone: str, caption: str, media_id: str, wamid: str = ""
) -> dict[str, Any]:
    return notification(
        phone_number_id,
        {
            "contacts": _contacts(phone, "Sheena Nelson"),
            "messages": [
                {
                    "from": phone,
                    "id": wamid or new_wamid(),
                    "timestamp": "1744344496",
                    "type": "image",
                    "image": {
                        "caption": caption,
                        "mime_type": "image/jpeg",
                        "sha256": "SfInY0gGZ4ZJQOZr1jYjRfDeMOOXcNmGV0yMKbK+cwY=",
                        "id": media_id,
                    },
                }
            ],
        },
    )


def status_update(
    phone_number_id: str, *, wamid: str, status: str, phone: str = "16505551234"
) -> dict[str, Any]:
    """A sent / delivered / read / failed report on a message we sent."""
    report: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": "1750263773",
        "recipient_id": phone,
    }
    if status == "failed":
        report["errors"] = [
            {
                "code": 131047,
                "title": "Re-engagement message",
                "message": "Re-engagement message",
                "error_data": {
                    "details": "Message failed to send because more than 24 hours have passed "
                    "since the customer last replied to this number."
                },
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
            }
        ]
    else:
        report["conversation"] = {
            "id": "4588ebd2e7a9a4a6b2c1c8a0e7e21ab5",
            "origin": {"type": "service"},
        }
        report["pricing"] = {"billable": False, "pricing_model": "PMP", "category": "service"}
    return notification(phone_number_id, {"statuses": [report]})


def raw(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
