"""WhatsApp (Meta's Cloud API): a customer's WhatsApp messages become a conversation, and the
assistant's and agents' answers go back as WhatsApp text messages.

Inbound, on the channel's webhook URL:

- Meta checks the URL once with a GET (`hub.mode=subscribe`, `hub.verify_token`,
  `hub.challenge`): the challenge is echoed when the token is the channel's `verify_token`,
  else 403.
- Every POST is signed: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body under the
  app secret>`. Anything else is refused with 401 (Meta wants a non-2xx) and nothing is stored.
- The payload (`entry[].changes[].value`) carries `messages[]` (each one is the customer's
  message, keyed by its `wamid`) and `statuses[]` (sent, delivered, read, failed reports on our
  messages: recorded under `<wamid>:<status>`, never answered). Changes for another phone
  number of the same Meta app are ignored.

Outbound: `POST <WHATSAPP_API_BASE>/<phone_number_id>/messages` with the access token, one text
message per part of at most 4096 characters. A customer who last wrote more than 24 hours ago
may only be sent template messages (error 131047): that delivery fails for good with a clear
reason, and agents are stopped earlier (`conversations.channel_windows`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import httpx
from django.conf import settings

from conversations.channel_windows import WINDOW_CLOSED_MESSAGE
from conversations.channels.base import (
    DeliveryFailed,
    Ignored,
    InboundAttachment,
    InboundItem,
    InboundMessage,
    InboundStatus,
    Outgoing,
    Sent,
    WebhookAnswer,
    WebhookRefused,
    WebhookRequest,
    config_value,
    credential,
    register_adapter,
)
from conversations.channels.splitting import split_text
from conversations.models import ChannelAccount, Conversation

logger = logging.getLogger(__name__)

MAX_CHARS = 4096
SIGNATURE_HEADER = "X-Hub-Signature-256"
# The Cloud API's "re-engagement message" error: the 24-hour customer service window is closed.
OUTSIDE_WINDOW_CODE = 131047
# Throughput and pair rate limits the Cloud API answers with a 400: worth another try later.
RATE_LIMIT_CODES = frozenset({4, 80007, 130429, 131048, 131056})
# The media kinds a message can carry, and what an attachment of each is called here.
MEDIA_KINDS = {
    "image": "image",
    "audio": "audio",
    "video": "video",
    "document": "file",
    "sticker": "sticker",
}


def signature_of(body: bytes, app_secret: str) -> str:
    """The `X-Hub-Signature-256` value Meta sends with `body`."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _contact_names(value: dict[str, Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    for contact in value.get("contacts") or []:
        if isinstance(contact, dict):
            name = (contact.get("profile") or {}).get("name") or ""
            names[str(contact.get("wa_id", ""))] = str(name)
    return names


def _media(message: dict[str, Any], kind: str) -> tuple[str, InboundAttachment]:
    """(caption, attachment) of an image, audio, video, document or sticker message."""
    media = message.get(kind) or {}
    attachment_kind = MEDIA_KINDS[kind]
    if kind == "audio" and media.get("voice"):
        attachment_kind = "voice"
    return str(media.get("caption") or ""), InboundAttachment(
        kind=attachment_kind,
        content_type=str(media.get("mime_type") or ""),
        filename=str(media.get("filename") or ""),
        provider_ref=str(media.get("id") or ""),
    )


def _location(message: dict[str, Any]) -> tuple[str, InboundAttachment]:
    place = message.get("location") or {}
    label = ", ".join(str(place[k]) for k in ("name", "address") if place.get(k))
    coordinates = f"{place.get('latitude', '')},{place.get('longitude', '')}"
    return label, InboundAttachment(kind="location", provider_ref=coordinates)


def _interactive_text(message: dict[str, Any]) -> str:
    """The words of a button the customer tapped (a quick reply, a list choice)."""
    if message.get("type") == "button":
        return str((message.get("button") or {}).get("text") or "")
    interactive = message.get("interactive") or {}
    reply = interactive.get("button_reply") or interactive.get("list_reply") or {}
    return str(reply.get("title") or "")


def _message_item(message: dict[str, Any], names: dict[str, str]) -> InboundItem:
    wamid = str(message.get("id") or "")
    phone = str(message.get("from") or "")
    kind = str(message.get("type") or "")
    text = ""
    attachments: tuple[InboundAttachment, ...] = ()
    if kind == "text":
        text = str((message.get("text") or {}).get("body") or "")
    elif kind in MEDIA_KINDS:
        text, attachment = _media(message, kind)
        attachments = (attachment,)
    elif kind == "location":
        text, attachment = _location(message)
        attachments = (attachment,)
    elif kind in ("button", "interactive"):
        text = _interactive_text(message)
    else:  # reactions, system notices, unsupported content: nothing to answer
        return Ignored(event_id=wamid, reason=f"whatsapp {kind or 'unknown'} message")
    return InboundMessage(
        event_id=wamid,
        user_id=phone,
        thread=phone,
        user_name=names.get(phone) or next(iter(names.values()), ""),
        text=text,
        provider_ref=wamid,
        attachments=attachments,
    )


def _status_item(status: dict[str, Any]) -> InboundStatus:
    wamid = str(status.get("id") or "")
    state = str(status.get("status") or "")
    errors = [e for e in status.get("errors") or [] if isinstance(e, dict)]
    error = ""
    if errors:
        error = f"{errors[0].get('code', '')} {errors[0].get('title', '')}".strip()
    return InboundStatus(
        event_id=f"{wamid}:{state}", provider_message_id=wamid, status=state, error=error
    )


def _value_items(account: ChannelAccount, value: dict[str, Any]) -> list[InboundItem]:
    own_number = str(config_value(account, "phone_number_id"))
    number = str((value.get("metadata") or {}).get("phone_number_id") or "")
    if number and own_number and number != own_number:
        return []  # another number of the same Meta app: its own channel answers it
    names = _contact_names(value)
    items: list[InboundItem] = [
        _message_item(m, names)
        for m in value.get("messages") or []
        if isinstance(m, dict) and m.get("id")
    ]
    items.extend(
        _status_item(s) for s in value.get("statuses") or [] if isinstance(s, dict) and s.get("id")
    )
    return items


def _error_of(response: httpx.Response) -> tuple[int | None, str]:
    """The Graph API error's code and message, when the body has them."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return None, ""
    if not isinstance(error, dict):
        return None, ""
    code = error.get("code")
    return (code if isinstance(code, int) else None), str(error.get("message") or "")[:200]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def delivery_failure(response: httpx.Response) -> DeliveryFailed:
    """How a refused send is retried: 429, 5xx and rate-limit codes later; 131047 (outside the
    24-hour window) and any other 4xx never."""
    status = response.status_code
    code, message = _error_of(response)
    if code == OUTSIDE_WINDOW_CODE:
        return DeliveryFailed(
            f"{WINDOW_CLOSED_MESSAGE} (WhatsApp error {code})", status=status, permanent=True
        )
    reason = f"WhatsApp answered {status}" + (f" (error {code}: {message})" if code else "")
    if status == 429 or status >= 500 or code in RATE_LIMIT_CODES:
        return DeliveryFailed(reason, status=status, retry_after=_retry_after(response))
    return DeliveryFailed(reason, status=status, permanent=True)


class WhatsAppAdapter:
    """The WhatsApp Cloud API channel."""

    kind = "whatsapp"
    max_chars = MAX_CHARS
    streams_by_edit = False

    def handshake(self, account: ChannelAccount, request: WebhookRequest) -> WebhookAnswer | None:
        """Meta's GET check of the webhook URL: the challenge echoed for the right token."""
        if request.method != "GET":
            return None
        expected = credential(account, "verify_token")
        token = request.query.get("hub.verify_token", "")
        if (
            request.query.get("hub.mode") == "subscribe"
            and expected
            and hmac.compare_digest(token.encode(), expected.encode())
        ):
            return WebhookAnswer(body=request.query.get("hub.challenge", ""))
        raise WebhookRefused(403, "verify token does not match")

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        secret = credential(account, "app_secret")
        given = request.header(SIGNATURE_HEADER)
        if not secret or not given:
            raise WebhookRefused(401, "signature missing")
        expected = signature_of(request.body, secret)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookRefused(401, "signature does not match")

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[InboundItem]:
        try:
            payload = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise WebhookRefused(400, "not JSON") from exc
        if not isinstance(payload, dict):
            raise WebhookRefused(400, "not a WhatsApp notification")
        items: list[InboundItem] = []
        for entry in payload.get("entry") or []:
            for change in (entry or {}).get("changes") or []:
                value = (change or {}).get("value")
                if isinstance(value, dict):
                    items.extend(_value_items(account, value))
        return items

    def acknowledge(self, account: ChannelAccount) -> WebhookAnswer:
        return WebhookAnswer(body="ok")

    def send(self, outgoing: Outgoing) -> Sent:
        """The text as WhatsApp text messages of at most 4096 characters, in order."""
        account = outgoing.account
        phone = (
            outgoing.conversation.channel_thread or outgoing.conversation.contact.channel_user_id
        )
        url = f"{settings.WHATSAPP_API_BASE}/{config_value(account, 'phone_number_id')}/messages"
        if not phone:
            raise DeliveryFailed("The conversation has no WhatsApp number", permanent=True)
        headers = {"Authorization": f"Bearer {credential(account, 'access_token')}"}
        ids: list[str] = []
        for part in split_text(outgoing.text, MAX_CHARS):
            body = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": phone,
                "type": "text",
                "text": {"preview_url": False, "body": part},
            }
            ids.append(_post(url, body, headers))
        return Sent(ids)

    def typing(self, account: ChannelAccount, conversation: Conversation) -> None:
        return None  # the Cloud API shows typing only while marking a message read

    def stream_open(self, account: ChannelAccount, conversation: Conversation, text: str) -> str:
        raise NotImplementedError("WhatsApp messages cannot be edited")

    def stream_edit(
        self, account: ChannelAccount, conversation: Conversation, ref: str, text: str
    ) -> None:
        raise NotImplementedError("WhatsApp messages cannot be edited")


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> str:
    """One message sent: its wamid."""
    try:
        response = httpx.post(
            url, json=body, headers=headers, timeout=settings.CHANNEL_HTTP_TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"WhatsApp unreachable ({type(exc).__name__})") from exc
    if response.status_code >= 400:
        raise delivery_failure(response)
    try:
        return str(response.json()["messages"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


register_adapter(WhatsAppAdapter())
