"""SMS through Twilio: a customer's text messages to the tenant's Twilio number become a
conversation (one per phone number), and answers go back as SMS from that number.

Inbound, on the channel's webhook URL (set as the number's "A message comes in" webhook, and
as the status callback of the messages we send):

- Twilio signs every request: `X-Twilio-Signature` is checked with Twilio's own
  `RequestValidator` under the account's auth token, over the full URL Twilio called and the
  form fields. Behind a proxy or a load balancer the URL this server sees differs from the one
  Twilio called: the public one is `PUBLIC_URL` + the path, so `PUBLIC_URL` must be the scheme
  and host Twilio is given. Anything unsigned is refused with 403, storing nothing.
- A message (`MessageSid`, `From`, `Body`, `NumMedia`, `MediaUrl<n>`, `MediaContentType<n>`)
  is stored under its `MessageSid`; a status callback (`MessageStatus`, no `Body`) under
  `<MessageSid>:<status>`, recorded, never answered. Twilio is answered with empty TwiML: the
  reply is sent later, through the API.

Outbound: `POST <TWILIO_API_BASE>/2010-04-01/Accounts/<sid>/Messages.json` (To, From, Body),
one API message per part; a part stays within a concatenated SMS of 10 segments: 1530 GSM-7
characters (153 per segment), or 670 UTF-16 units (67 per segment) for text GSM-7 cannot
carry (emoji, most scripts beyond Latin).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.http import QueryDict
from django.urls import reverse
from twilio.request_validator import RequestValidator

from conversations.channels.base import (
    DeliveryFailed,
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

SIGNATURE_HEADER = "X-Twilio-Signature"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
SEGMENTS = 10
GSM7_MAX = 153 * SEGMENTS  # septets in 10 concatenated GSM-7 segments
UCS2_MAX = 67 * SEGMENTS  # UTF-16 units in 10 concatenated UCS-2 segments
MAX_MEDIA = 10

# The GSM 03.38 default alphabet (one septet each) and its extension table (two: escape + char).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

# Twilio errors that no retry fixes, told in the support team's words.
PERMANENT_ERRORS = {
    21610: "The customer has unsubscribed from this number (replied STOP)",
    21211: "The customer's phone number is not valid",
    21614: "The customer's number cannot receive SMS",
}


def is_gsm7(text: str) -> bool:
    """Whether `text` can be sent in the GSM-7 alphabet (else the whole SMS is UCS-2)."""
    return all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text)


def gsm7_length(text: str) -> int:
    """Septets `text` takes in GSM-7: extension characters take two."""
    return sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)


def utf16_length(text: str) -> int:
    """UTF-16 units `text` takes in UCS-2 SMS: an emoji (beyond the BMP) takes two."""
    return len(text.encode("utf-16-le")) // 2


def sms_parts(text: str) -> list[str]:
    """`text` in parts that each fit one concatenated SMS of at most 10 segments.

    `split_text` counts characters; characters that take two units (GSM-7 extension
    characters, emoji) lower the limit by their number, never below half of it (a part of
    that many characters fits whatever they are).
    """
    if is_gsm7(text):
        wide = sum(1 for ch in text if ch in GSM7_EXTENSION)
        return split_text(text, max(GSM7_MAX - wide, GSM7_MAX // 2))
    wide = sum(1 for ch in text if ord(ch) > 0xFFFF)
    return split_text(text, max(UCS2_MAX - wide, UCS2_MAX // 2))


def _params(request: WebhookRequest) -> QueryDict:
    """The form fields exactly as posted (every value of a repeated field)."""
    try:
        return QueryDict(request.body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise WebhookRefused(400, "not a form") from exc


def _called_urls(request: WebhookRequest) -> list[str]:
    """The URLs Twilio may have signed: `PUBLIC_URL` + the path and query (behind a proxy),
    and the URL as this server saw it."""
    urls = []
    public = str(getattr(settings, "PUBLIC_URL", "") or "").rstrip("/")
    if public:
        seen = urlsplit(request.url)
        urls.append(public + seen.path + (f"?{seen.query}" if seen.query else ""))
    if request.url not in urls:
        urls.append(request.url)
    return urls


def _attachment_kind(content_type: str) -> str:
    major = content_type.split("/", 1)[0].lower()
    return major if major in ("image", "audio", "video") else "file"


def _attachments(params: QueryDict) -> tuple[InboundAttachment, ...]:
    try:
        count = min(int(params.get("NumMedia") or 0), MAX_MEDIA)
    except ValueError:
        count = 0
    found = []
    for n in range(count):
        url = params.get(f"MediaUrl{n}") or ""
        content_type = params.get(f"MediaContentType{n}") or ""
        if url:
            found.append(
                InboundAttachment(
                    kind=_attachment_kind(content_type), content_type=content_type, provider_ref=url
                )
            )
    return tuple(found)


def _status_item(params: QueryDict, sid: str) -> InboundStatus:
    status = params.get("MessageStatus") or ""
    code = params.get("ErrorCode") or ""
    error = PERMANENT_ERRORS.get(int(code), f"Twilio error {code}") if code.isdigit() else ""
    return InboundStatus(
        event_id=f"{sid}:{status}", provider_message_id=sid, status=status, error=error
    )


def _status_callback(account: ChannelAccount) -> str:
    """Where Twilio reports on the messages we send (empty without `PUBLIC_URL`)."""
    public = str(getattr(settings, "PUBLIC_URL", "") or "").rstrip("/")
    if not public:
        return ""
    return public + reverse("channel-webhook", kwargs={"account_id": account.pk})


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def delivery_failure(response: httpx.Response) -> DeliveryFailed:
    """429 and 5xx are tried again (after Retry-After); any other refusal is final."""
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = {}
    code = body.get("code") if isinstance(body, dict) else None
    retry_after = _retry_after(response)
    if status == 429 or status >= 500:
        return DeliveryFailed(f"Twilio answered {status}", status=status, retry_after=retry_after)
    if isinstance(code, int) and code in PERMANENT_ERRORS:
        reason = f"{PERMANENT_ERRORS[code]} (Twilio error {code})."
    else:
        message = str(body.get("message") or "")[:200] if isinstance(body, dict) else ""
        reason = f"Twilio answered {status}" + (f" (error {code}: {message})" if code else "")
    return DeliveryFailed(reason, status=status, permanent=True)


class SmsAdapter:
    """SMS through a Twilio number."""

    kind = "sms"
    max_chars = GSM7_MAX
    streams_by_edit = False

    def handshake(self, account: ChannelAccount, request: WebhookRequest) -> WebhookAnswer | None:
        return None  # Twilio has no setup check

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        token = credential(account, "auth_token")
        signature = request.header(SIGNATURE_HEADER)
        if not token or not signature:
            raise WebhookRefused(403, "signature missing")
        params = _params(request)
        validator = RequestValidator(token)
        if not any(validator.validate(url, params, signature) for url in _called_urls(request)):
            raise WebhookRefused(403, "signature does not match")
        sid = params.get("AccountSid") or ""
        if sid and sid != str(config_value(account, "account_sid")):
            raise WebhookRefused(403, "not this channel's Twilio account")

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[InboundItem]:
        params = _params(request)
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        if not sid:
            raise WebhookRefused(400, "no MessageSid")
        if "MessageStatus" in params and "Body" not in params:
            return [_status_item(params, sid)]
        phone = (params.get("From") or "").strip()
        if not phone:
            raise WebhookRefused(400, "no From")
        return [
            InboundMessage(
                event_id=sid,
                user_id=phone,
                thread=phone,
                text=params.get("Body") or "",
                provider_ref=sid,
                attachments=_attachments(params),
            )
        ]

    def acknowledge(self, account: ChannelAccount) -> WebhookAnswer:
        return WebhookAnswer(body=EMPTY_TWIML, content_type="text/xml")

    def send(self, outgoing: Outgoing) -> Sent:
        """The text as SMS from the channel's number, one API message per part, in order."""
        account = outgoing.account
        sid = str(config_value(account, "account_sid"))
        url = f"{settings.TWILIO_API_BASE}/2010-04-01/Accounts/{sid}/Messages.json"
        auth = (sid, credential(account, "auth_token"))
        phone = (
            outgoing.conversation.channel_thread or outgoing.conversation.contact.channel_user_id
        )
        if not phone:
            raise DeliveryFailed("The conversation has no phone number", permanent=True)
        fields = {"To": phone, "From": str(config_value(account, "from_number"))}
        callback = _status_callback(account)
        if callback:
            fields["StatusCallback"] = callback
        return Sent(
            [_post(url, {**fields, "Body": part}, auth) for part in sms_parts(outgoing.text)]
        )

    def typing(self, account: ChannelAccount, conversation: Conversation) -> None:
        return None  # SMS has no typing indicator

    def stream_open(self, account: ChannelAccount, conversation: Conversation, text: str) -> str:
        raise NotImplementedError("an SMS cannot be edited")

    def stream_edit(
        self, account: ChannelAccount, conversation: Conversation, ref: str, text: str
    ) -> None:
        raise NotImplementedError("an SMS cannot be edited")


def _post(url: str, fields: dict[str, str], auth: tuple[str, str]) -> str:
    """One message created: its SID."""
    try:
        response = httpx.post(url, data=fields, auth=auth, timeout=settings.CHANNEL_HTTP_TIMEOUT)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"Twilio unreachable ({type(exc).__name__})") from exc
    if response.status_code >= 400:
        raise delivery_failure(response)
    try:
        return str(response.json()["sid"])
    except (ValueError, KeyError, TypeError):
        return ""


register_adapter(SmsAdapter())
