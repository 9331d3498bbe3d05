"""The Slack channel: a Slack app's Events API webhook in, the Web API out.

Inbound: every request Slack sends is signed with the app's signing secret
(`X-Slack-Signature` over `v0:<timestamp>:<raw body>`); a request without a valid signature, or
whose `X-Slack-Request-Timestamp` is more than five minutes away, is refused with 401 and
nothing is stored, the `url_verification` challenge included (it is answered only once its
signature holds). A person's message to the bot (a direct message, `channel_type: im`) and a
mention of the bot in a channel (`app_mention`) become messages keyed by the envelope's
`event_id`, so Slack's redeliveries (`X-Slack-Retry-Num`) are stored once. The conversation is
the Slack thread (`<channel>:<thread ts>`), and every reply goes into that thread. The bot's own
messages, edits and deletions are ignored. In a channel, the bot answers a mention (its own
`app_mention` event) and, in a thread it is answering in, the person's follow-ups without a
mention (`message` events, when the app subscribes to `message.channels`); other channel
messages are ignored.

Outbound: `chat.postMessage` in the thread, split at 4,000 characters; a reply that was shown
as it formed (`stream_ref`) has that message updated (`chat.update`) with its first part.
Slack answers most errors with HTTP 200 and `{"ok": false, "error": ...}`, and rate limits
with 429 and `Retry-After`: both become `DeliveryFailed` for the outbox to retry or give up.

Slack bots have no typing indicator in the Events API, so `typing` does nothing; the reply
shown as it forms (one message, edited about every 1.2 s: `chat.update` allows about 50 calls
a minute) tells the person an answer is coming.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from typing import Any

import httpx
from django.conf import settings
from slack_sdk.signature import SignatureVerifier

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
    config_value,
    credential,
    register_adapter,
)
from conversations.channels.splitting import split_text
from conversations.models import ChannelAccount, Conversation
from supportbot.compliance.encryption import blind_index_lookup

logger = logging.getLogger(__name__)

MAX_TIMESTAMP_SKEW_SECONDS = 5 * 60
MAX_CHARS = 4000
STREAM_EDIT_INTERVAL_SECONDS = 1.2
# A later part of a split reply that is rate limited is waited for here (when Slack asks for
# no more than this), so the parts already posted are not posted again by the outbox's retry.
MAX_INLINE_WAIT_SECONDS = 5.0
DEFAULT_RETRY_AFTER_SECONDS = 1.0

# Slack's `error` codes worth trying again; every other one is the request's own fault
# (invalid_auth, channel_not_found, not_in_channel, is_archived, msg_too_long...).
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)
# The streamed message to update is gone: the reply is posted afresh instead.
UPDATE_TARGET_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
# Message subtypes that are a person writing (everything else: the bot, edits, joins...).
PERSON_SUBTYPES = frozenset({"", "file_share", "thread_broadcast"})
IGNORED_SUBTYPES = frozenset({"bot_message", "message_changed", "message_deleted"})
DIRECT_CHANNEL_TYPES = frozenset({"im"})


# --- inbound ----------------------------------------------------------------------------------


def signature_check(account: ChannelAccount, request: WebhookRequest) -> None:
    """Refuse (401) a request Slack did not sign with this account's signing secret, or signed
    more than five minutes ago (a replay)."""
    secret = credential(account, "signing_secret")
    timestamp = request.header("X-Slack-Request-Timestamp")
    signature = request.header("X-Slack-Signature")
    if not secret:
        raise WebhookRefused(401, "channel has no signing secret")
    if not timestamp or not signature:
        raise WebhookRefused(401, "unsigned request")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRefused(401, "bad timestamp") from None
    if abs(time.time() - sent_at) > MAX_TIMESTAMP_SKEW_SECONDS:
        raise WebhookRefused(401, "stale timestamp")
    try:
        valid = SignatureVerifier(secret).is_valid(request.body, timestamp, signature)
    except (UnicodeDecodeError, ValueError):
        valid = False
    if not valid:
        raise WebhookRefused(401, "bad signature")


def _envelope(request: WebhookRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise WebhookRefused(400, "not JSON") from None
    if not isinstance(data, dict):
        raise WebhookRefused(400, "not a JSON object")
    return data


def _is_url_verification(request: WebhookRequest) -> bool:
    if request.method != "POST":
        return False
    try:
        data = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("type") == "url_verification"


def _attachment(file: dict[str, Any]) -> InboundAttachment:
    mimetype = str(file.get("mimetype") or "")
    major = mimetype.split("/", 1)[0]
    kind = major if major in ("image", "audio", "video") else "file"
    size = file.get("size")
    return InboundAttachment(
        kind=kind,
        content_type=mimetype,
        filename=str(file.get("name") or file.get("title") or ""),
        size=size if isinstance(size, int) else None,
        provider_ref=str(file.get("url_private") or file.get("id") or ""),
    )


def inbound_text(text: str, bot_user_id: str) -> str:
    """A Slack message's text as the person meant it: the bot's mention removed, Slack's
    escaping of &, < and > undone."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", "", text)
    return html.unescape(text).strip()


def _ignore_reason(event: dict[str, Any], bot_user_id: str) -> str:
    """Why an event needs no answer ("" when it is a person writing to the bot)."""
    kind = event.get("type")
    subtype = str(event.get("subtype") or "")
    if kind not in ("message", "app_mention"):
        return f"event {kind}"
    if event.get("bot_id") or subtype in IGNORED_SUBTYPES:
        return "the bot's own message or an edit"
    if subtype not in PERSON_SUBTYPES:
        return f"message subtype {subtype}"
    if not event.get("user") or (bot_user_id and event.get("user") == bot_user_id):
        return "the bot's own message"
    return ""


def thread_follow_up(account: ChannelAccount, event: dict[str, Any], bot_user_id: str) -> bool:
    """Whether a channel message (not a direct one) is a person's follow-up in a thread the
    bot is answering in: it belongs to an open conversation of this channel, and does not
    mention the bot (a mention comes as its own `app_mention` event, answered once)."""
    thread_ts = str(event.get("thread_ts") or "")
    if not thread_ts or thread_ts == event.get("ts"):
        return False
    if bot_user_id and f"<@{bot_user_id}" in str(event.get("text") or ""):
        return False
    thread = f"{event.get('channel') or ''}:{thread_ts}"
    index = blind_index_lookup(account.tenant_id, thread, kind="channel_user")
    if not index:
        return False
    return (
        Conversation.objects.filter(
            tenant_id=account.tenant_id, channel_account=account, channel_thread_index=index
        )
        .exclude(status=Conversation.Status.CLOSED)
        .exists()
    )


def event_items(account: ChannelAccount, envelope: dict[str, Any]) -> list[InboundItem]:
    """The item of one `event_callback`: a person's message, or why it is ignored."""
    event_id = str(envelope.get("event_id") or "")
    event = envelope.get("event")
    if not event_id or not isinstance(event, dict):
        raise WebhookRefused(400, "event_callback without event_id or event")
    team_id = str(config_value(account, "team_id") or "")
    if team_id and envelope.get("team_id") not in (None, team_id):
        return [Ignored(event_id=event_id, reason="another workspace")]
    bot_user_id = str(config_value(account, "bot_user_id") or "")
    reason = _ignore_reason(event, bot_user_id)
    if not reason and event.get("type") == "message":
        direct = event.get("channel_type") in DIRECT_CHANNEL_TYPES
        if not direct and not thread_follow_up(account, event, bot_user_id):
            reason = "channel message outside the bot's threads (mentions come as app_mention)"
    if reason:
        return [Ignored(event_id=event_id, reason=reason)]
    channel = str(event.get("channel") or "")
    ts = str(event.get("ts") or "")
    files = event.get("files")
    if not isinstance(files, list):
        files = []
    text = inbound_text(str(event.get("text") or ""), bot_user_id)
    if not text and not files:
        return [Ignored(event_id=event_id, reason="empty message")]
    return [
        InboundMessage(
            event_id=event_id,
            user_id=str(event["user"]),
            text=text,
            thread=_thread_key(event, channel, ts),
            provider_ref=f"{channel}:{ts}" if ts else "",
            attachments=tuple(_attachment(f) for f in files if isinstance(f, dict)),
        )
    ]


def _thread_key(event: dict[str, Any], channel: str, ts: str) -> str:
    """The conversation's key: a thread (`<channel>:<thread ts>`), or, for a direct message
    outside a thread, the direct-message channel itself (`<channel>:`), so a person writing
    to the bot goes on in one conversation, answered in the same flow."""
    thread_ts = str(event.get("thread_ts") or "")
    if not thread_ts and event.get("channel_type") in DIRECT_CHANNEL_TYPES:
        return f"{channel}:"
    return f"{channel}:{thread_ts or ts}"


# --- the Web API ------------------------------------------------------------------------------


class SlackRefused(DeliveryFailed):
    """Slack's `{"ok": false}` answer to a Web API call, with its `error` code."""

    def __init__(self, method: str, error: str, *, status: int, retry_after: float | None) -> None:
        super().__init__(
            f"slack {method}: {error}",
            status=status,
            retry_after=retry_after,
            permanent=error not in TRANSIENT_ERRORS and status < 500,
        )
        self.error = error


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(float(response.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS


def web_api_call(account: ChannelAccount, method: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Call a Slack Web API method with the bot token: its answer when `ok`, else
    DeliveryFailed (rate limits with Slack's Retry-After; auth and channel errors permanent)."""
    token = credential(account, "bot_token")
    if not token:
        raise DeliveryFailed(f"slack {method}: channel has no bot token", permanent=True)
    try:
        response = httpx.post(
            f"{settings.SLACK_API_BASE}/{method}",
            json=payload,
            headers={"Authorization": f"Bearer {token}"},
            timeout=settings.CHANNEL_HTTP_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"slack {method}: {type(exc).__name__}") from None
    if response.status_code == 429:
        raise DeliveryFailed(
            f"slack {method}: ratelimited", status=429, retry_after=_retry_after(response)
        )
    if response.status_code >= 500:
        raise DeliveryFailed(
            f"slack {method}: HTTP {response.status_code}", status=response.status_code
        )
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise DeliveryFailed(
            f"slack {method}: HTTP {response.status_code}, not JSON", status=response.status_code
        )
    if data.get("ok") is True:
        return data
    error = str(data.get("error") or "unknown_error")[:80]
    limited = error in ("ratelimited", "rate_limited")
    raise SlackRefused(
        method,
        error,
        status=response.status_code,
        retry_after=_retry_after(response) if limited else None,
    )


def thread_of(conversation: Conversation) -> tuple[str, str]:
    """(channel id, thread ts) of a conversation's Slack thread (`<channel>:<ts>`)."""
    channel, _, thread_ts = (conversation.channel_thread or "").partition(":")
    if not channel:
        raise DeliveryFailed("slack: the conversation has no Slack channel", permanent=True)
    return channel, thread_ts


def slack_text(text: str) -> str:
    """A reply in Slack's mrkdwn: &, < and > escaped (as Slack requires), Markdown bold and
    links turned into Slack's own forms."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"\*\*(.+?)\*\*", r"*\1*", text)
    return re.sub(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)", r"<\2|\1>", text)


def message_post(account: ChannelAccount, conversation: Conversation, text: str) -> str:
    """Post `text` in the conversation's thread: the new message's ts."""
    channel, thread_ts = thread_of(conversation)
    payload: dict[str, Any] = {"channel": channel, "text": text}
    if thread_ts:
        payload["thread_ts"] = thread_ts
    data = web_api_call(account, "chat.postMessage", payload)
    return str(data.get("ts") or "")


def message_update(account: ChannelAccount, conversation: Conversation, ts: str, text: str) -> None:
    """Replace the text of the bot's message `ts` in the conversation's channel."""
    channel, _ = thread_of(conversation)
    web_api_call(account, "chat.update", {"channel": channel, "ts": ts, "text": text})


def _first_part(outgoing: Outgoing, part: str) -> str:
    """The first part: into the streamed message when there is one (posted afresh when that
    message is gone)."""
    account, conversation = outgoing.account, outgoing.conversation
    if outgoing.stream_ref:
        try:
            message_update(account, conversation, outgoing.stream_ref, part)
            return outgoing.stream_ref
        except SlackRefused as refused:
            if refused.error not in UPDATE_TARGET_GONE:
                raise
            logger.info("slack: the streamed message is gone (%s), posting anew", refused.error)
    return message_post(account, conversation, part)


def _later_part(outgoing: Outgoing, part: str) -> str:
    """A later part, waiting out one short rate limit so earlier parts are not sent twice."""
    try:
        return message_post(outgoing.account, outgoing.conversation, part)
    except DeliveryFailed as failed:
        wait = failed.retry_after
        if wait is None or wait > MAX_INLINE_WAIT_SECONDS:
            raise
        logger.info("slack: rate limited within a split reply, waiting %.1f s", wait)
        time.sleep(wait)
        return message_post(outgoing.account, outgoing.conversation, part)


# --- the adapter ------------------------------------------------------------------------------


class SlackAdapter:
    kind = "slack"
    max_chars = MAX_CHARS
    streams_by_edit = True
    interval = STREAM_EDIT_INTERVAL_SECONDS  # between two edits of a streamed reply

    def handshake(self, account: ChannelAccount, request: WebhookRequest) -> WebhookAnswer | None:
        """Slack's `url_verification`: its challenge echoed, once the request's signature holds
        (Slack signs it like every event)."""
        if not _is_url_verification(request):
            return None
        signature_check(account, request)
        challenge = str(_envelope(request).get("challenge") or "")
        return WebhookAnswer(
            body=json.dumps({"challenge": challenge}), content_type="application/json"
        )

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        signature_check(account, request)

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[InboundItem]:
        envelope = _envelope(request)
        if envelope.get("type") != "event_callback":
            return []  # app_rate_limited and the like: nothing to answer
        return event_items(account, envelope)

    def acknowledge(self, account: ChannelAccount) -> WebhookAnswer:
        return WebhookAnswer(status=200)

    def send(self, outgoing: Outgoing) -> Sent:
        """The reply in its thread, split at Slack's limit; the streamed message (if any)
        updated with the first part."""
        parts = split_text(slack_text(outgoing.text), MAX_CHARS)
        if not parts:
            return Sent([])
        ids = [_first_part(outgoing, parts[0])]
        ids.extend(_later_part(outgoing, part) for part in parts[1:])
        return Sent(ids)

    def typing(self, account: ChannelAccount, conversation: Conversation) -> None:
        """Nothing: the Events API gives bots no typing indicator."""
        return

    def stream_open(self, account: ChannelAccount, conversation: Conversation, text: str) -> str:
        """Post the first text of a reply as it forms, in the thread: its ts."""
        return message_post(account, conversation, _stream_text(text))

    def stream_edit(
        self, account: ChannelAccount, conversation: Conversation, ref: str, text: str
    ) -> None:
        """Show the reply so far in the streamed message (its first part, when it is long).
        A rate limit raises DeliveryFailed with Slack's Retry-After: an edit to skip, since
        the next one (or the final send) shows the whole text anyway."""
        message_update(account, conversation, ref, _stream_text(text))


def _stream_text(text: str) -> str:
    parts = split_text(slack_text(text), MAX_CHARS)
    return parts[0] if parts else "…"


register_adapter(SlackAdapter())
