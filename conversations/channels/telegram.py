"""Telegram: a bot's webhook in, the Bot API out.

Inbound, Telegram posts each Update to the channel's webhook with the `secret_token` given to
`setWebhook` in `X-Telegram-Bot-Api-Secret-Token`; anything else is refused with 401 and nothing
is stored. A person's message (text, a caption, a photo, a voice note, a file, a sticker)
becomes an `InboundMessage` keyed by the Update's id; edits, channel posts, other bots'
messages and service messages are recorded as ignored. `/start`, the first thing a person
sends a bot, is a greeting.

Outbound, a reply is sent with `sendMessage` in parts of at most 4096 characters; a reply that
was shown as it formed (`stream_open`, `stream_edit`) has its first part edited into the
message it was streamed into. The bot's token is part of every API URL, so no URL (nor an
httpx error, which may name it) ever reaches a reason or a log line.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

import httpx
from django.conf import settings

from conversations.channels.base import (
    DeliveryFailed,
    Ignored,
    InboundAttachment,
    InboundItem,
    InboundMessage,
    Outgoing,
    Sent,
    WebhookAnswer,
    WebhookRefused,
    WebhookRequest,
    credential,
    register_adapter,
)
from conversations.channels.splitting import split_text
from conversations.models import ChannelAccount, Conversation

logger = logging.getLogger(__name__)

MAX_CHARS = 4096
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
START_GREETING = "Hello"
# A streaming edit is worth less than the reply's own progress: it gives up sooner.
STREAM_CALL_TIMEOUT = 5.0
NOT_MODIFIED = "message is not modified"
_REASON_CHARS = 200

# Message fields holding a file, and the attachment kind each becomes.
_FILE_FIELDS = (
    ("photo", "image"),
    ("voice", "voice"),
    ("audio", "audio"),
    ("video", "video"),
    ("video_note", "video"),
    ("animation", "video"),
    ("document", "file"),
    ("sticker", "sticker"),
)
_DEFAULT_TYPES = {"photo": "image/jpeg", "voice": "audio/ogg", "video_note": "video/mp4"}


# --- the Bot API ------------------------------------------------------------------------------


def bot_call(
    account: ChannelAccount, method: str, payload: dict[str, Any], *, timeout: float | None = None
) -> Any:
    """Call a Bot API method with the account's token: its `result`, or DeliveryFailed (429
    with the `retry_after` Telegram gives, 5xx and network failures retried, the rest
    permanent)."""
    token = credential(account, "bot_token")
    if not token:
        raise DeliveryFailed(f"{method}: the channel has no bot token", permanent=True)
    url = f"{settings.TELEGRAM_API_BASE}/bot{token}/{method}"
    try:
        response = httpx.post(url, json=payload, timeout=timeout or settings.CHANNEL_HTTP_TIMEOUT)
    except httpx.HTTPError as error:
        # The error's text can hold the URL, and so the token: only its type is kept.
        raise DeliveryFailed(f"{method} failed: {type(error).__name__}") from None
    body = _json_body(response)
    status = response.status_code
    if status == 200 and body.get("ok"):
        return body.get("result")
    reason = f"{method} answered {status}: {str(body.get('description', ''))[:_REASON_CHARS]}"
    if status == 429:
        raise DeliveryFailed(reason, status=status, retry_after=_retry_after(response, body))
    if status >= 500:
        raise DeliveryFailed(reason, status=status)
    raise DeliveryFailed(reason, status=status, permanent=True)


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: httpx.Response, body: dict[str, Any]) -> float | None:
    """Telegram says how long to wait in `parameters.retry_after` (and sometimes a header)."""
    parameters = body.get("parameters")
    value = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    try:
        return max(float(response.headers.get("retry-after", "")), 0.0)
    except ValueError:
        return None


def _message_id(result: Any, method: str) -> str:
    if isinstance(result, dict) and result.get("message_id") is not None:
        return str(result["message_id"])
    raise DeliveryFailed(f"{method} answered without a message id")


def _not_modified(failed: DeliveryFailed) -> bool:
    """Telegram refuses an edit that changes nothing; for us the message says what it should."""
    return failed.status == 400 and NOT_MODIFIED in failed.reason


# --- inbound ----------------------------------------------------------------------------------


def _user_name(sender: dict[str, Any]) -> str:
    full = " ".join(str(sender.get(k) or "") for k in ("first_name", "last_name")).strip()
    return full or str(sender.get("username") or "")


def _file_attachment(field_name: str, kind: str, value: Any) -> InboundAttachment | None:
    if isinstance(value, list):  # a photo comes in several sizes: the largest is last
        value = value[-1] if value else None
    if not isinstance(value, dict) or not value.get("file_id"):
        return None
    size = value.get("file_size")
    return InboundAttachment(
        kind=kind,
        content_type=str(value.get("mime_type") or _DEFAULT_TYPES.get(field_name, "")),
        filename=str(value.get("file_name") or ""),
        size=size if isinstance(size, int) else None,
        provider_ref=str(value["file_id"]),
    )


def message_attachments(message: dict[str, Any]) -> tuple[InboundAttachment, ...]:
    """What a message carries that the assistant cannot read: files by their `file_id`, a
    shared location or contact by its kind."""
    found = [
        attachment
        for field_name, kind in _FILE_FIELDS
        if (attachment := _file_attachment(field_name, kind, message.get(field_name)))
    ]
    found.extend(
        InboundAttachment(kind=kind)
        for kind in ("location", "contact")
        if isinstance(message.get(kind), dict)
    )
    return tuple(found)


def _text(message: dict[str, Any]) -> str:
    text = str(message.get("text") or message.get("caption") or "")
    words = text.split()
    if words and words[0].split("@")[0] == "/start":  # "/start" or "/start@bot payload"
        return START_GREETING
    return text


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def update_item(update: dict[str, Any]) -> InboundItem:
    """One Update as an item: a person's message, or what needs no answer (ignored)."""
    event_id = str(update["update_id"])
    message = update.get("message")
    if not isinstance(message, dict):
        kind = next((key for key in update if key != "update_id"), "empty update")
        return Ignored(event_id, f"{kind} needs no answer")
    sender, chat = _object(message.get("from")), _object(message.get("chat"))
    if sender.get("is_bot"):
        return Ignored(event_id, "a bot's message")
    if chat.get("id") is None or chat.get("type") == "channel" or not sender:
        return Ignored(event_id, "not a person's message")
    text, attachments = _text(message), message_attachments(message)
    if not text.strip() and not attachments:
        return Ignored(event_id, "a service message")
    chat_id = str(chat["id"])
    private = chat.get("type", "private") == "private"
    return InboundMessage(
        event_id=event_id,
        # In a private chat the chat is the person; in a group the person is its sender.
        user_id=chat_id if private else str(sender.get("id", chat_id)),
        thread=chat_id,
        text=text,
        user_name=_user_name(sender),
        attachments=attachments,
    )


# --- the adapter ------------------------------------------------------------------------------


class TelegramAdapter:
    kind = ChannelAccount.Kind.TELEGRAM.value
    max_chars = MAX_CHARS
    streams_by_edit = True
    interval = 1.0  # seconds between edits of a streaming reply (about one a second per chat)

    def handshake(self, account: ChannelAccount, request: WebhookRequest) -> WebhookAnswer | None:
        return None  # setWebhook is called by the operator; Telegram sends no challenge

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        expected = credential(account, "webhook_secret").encode()
        given = request.header(SECRET_HEADER).encode()
        if not expected or not hmac.compare_digest(given, expected):
            raise WebhookRefused(401, "the secret token does not match")

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[InboundItem]:
        try:
            update = json.loads(request.body)
        except ValueError:
            raise WebhookRefused(400, "the update is not JSON") from None
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            raise WebhookRefused(400, "the update has no update_id")
        return [update_item(update)]

    def acknowledge(self, account: ChannelAccount) -> WebhookAnswer:
        return WebhookAnswer(status=200, body="{}", content_type="application/json")

    def send(self, outgoing: Outgoing) -> Sent:
        """The text in parts of at most 4096 characters; the first edited into the message the
        reply was streamed into, if any (sent anew when that message cannot be edited)."""
        account, chat_id = outgoing.account, outgoing.conversation.channel_thread
        parts = split_text(outgoing.text, MAX_CHARS)
        ids: list[str] = []
        if parts and outgoing.stream_ref and self._final_edit(outgoing, parts[0]):
            ids.append(outgoing.stream_ref)
            parts = parts[1:]
        for part in parts:
            result = bot_call(account, "sendMessage", {"chat_id": chat_id, "text": part})
            ids.append(_message_id(result, "sendMessage"))
        return Sent(ids)

    def _final_edit(self, outgoing: Outgoing, text: str) -> bool:
        """Edit the streamed message to the reply's final first part: False when Telegram
        refuses the edit for good (the message is gone or too old), so it is sent anew."""
        try:
            self._edit(outgoing.account, outgoing.conversation, outgoing.stream_ref, text)
        except DeliveryFailed as failed:
            if failed.permanent:
                logger.info("streamed message not edited, sent anew: %s", failed.reason)
                return False
            raise
        return True

    def _edit(
        self,
        account: ChannelAccount,
        conversation: Conversation,
        ref: str,
        text: str,
        timeout: float | None = None,
    ) -> None:
        if not ref.isdigit():
            raise DeliveryFailed("editMessageText: not a Telegram message id", permanent=True)
        payload = {"chat_id": conversation.channel_thread, "message_id": int(ref), "text": text}
        try:
            bot_call(account, "editMessageText", payload, timeout=timeout)
        except DeliveryFailed as failed:
            if not _not_modified(failed):
                raise

    def typing(self, account: ChannelAccount, conversation: Conversation) -> None:
        payload = {"chat_id": conversation.channel_thread, "action": "typing"}
        try:
            bot_call(account, "sendChatAction", payload, timeout=STREAM_CALL_TIMEOUT)
        except DeliveryFailed as failed:
            logger.info("typing not shown: %s", failed.reason)

    def stream_open(self, account: ChannelAccount, conversation: Conversation, text: str) -> str:
        first = split_text(text, MAX_CHARS)[:1] or ["…"]
        payload = {"chat_id": conversation.channel_thread, "text": first[0]}
        result = bot_call(account, "sendMessage", payload, timeout=STREAM_CALL_TIMEOUT)
        return _message_id(result, "sendMessage")

    def stream_edit(
        self, account: ChannelAccount, conversation: Conversation, ref: str, text: str
    ) -> None:
        first = split_text(text, MAX_CHARS)[:1]
        if first:
            self._edit(account, conversation, ref, first[0], timeout=STREAM_CALL_TIMEOUT)


register_adapter(TelegramAdapter())
