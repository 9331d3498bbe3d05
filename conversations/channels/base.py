"""What every message channel adapter is: the contract between a provider and the channel layer.

An adapter has two halves:

- inbound: `handshake` answers a provider's setup request (a verification challenge) without
  storing anything; `verify` checks a webhook on its raw bytes (raising `WebhookRefused` with
  the status the provider expects); `parse` turns it into items (`InboundMessage`,
  `InboundStatus`, `Ignored`), each with the provider's id, which the channel layer stores once
  (a redelivery is a no-op) and processes on a worker;
- outbound: `send` delivers one stored message's text in the channel's form (split at the
  platform's limit, threaded), raising `DeliveryFailed` for the outbox to retry or give up; an
  adapter that shows a reply as it forms (`streams_by_edit`) also has `stream_open` and
  `stream_edit`.

Adapters are registered by kind (`register_adapter`) when their module is imported; the
registry is read by the webhook view, the inbound processing and the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from conversations.models import ChannelAccount, Conversation, Message


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook as received: what signature checks need, nothing parsed yet."""

    method: str
    url: str  # the full URL the provider called (scheme, host, path and query)
    headers: dict[str, str]  # lower-cased names
    body: bytes
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)  # an urlencoded body, parsed

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class WebhookAnswer:
    """What the provider is answered: a status, a body, its content type."""

    status: int = 200
    body: str = ""
    content_type: str = "text/plain"


class WebhookRefused(Exception):
    """A webhook that does not verify (or is not for this channel): nothing is stored, and the
    provider gets `status`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class InboundAttachment:
    """Content the assistant cannot read: kept for agents."""

    kind: str  # image, audio, voice, video, file, sticker, location, contact
    content_type: str = ""
    filename: str = ""
    size: int | None = None
    provider_ref: str = ""  # the provider's file id or URL to fetch it by
    content: bytes = b""  # the bytes, when the provider sent them (email)


@dataclass(frozen=True)
class InboundMessage:
    """A person's message. `user_id` keys the contact (tenant, channel, user id); `thread`
    keys the conversation within the channel (a Telegram chat, a Slack thread, an email thread,
    a phone number); `refs` are provider ids of earlier messages this one answers (an email's
    In-Reply-To and References), `provider_ref` this message's own (its Message-ID)."""

    event_id: str
    user_id: str
    text: str = ""
    thread: str = ""
    user_name: str = ""
    email: str = ""
    refs: tuple[str, ...] = ()
    provider_ref: str = ""
    subject: str = ""
    attachments: tuple[InboundAttachment, ...] = ()


@dataclass(frozen=True)
class InboundStatus:
    """A provider's report on a message we sent (delivered, read, failed): recorded, never
    answered."""

    event_id: str
    provider_message_id: str
    status: str
    error: str = ""


@dataclass(frozen=True)
class Ignored:
    """Something the provider sent that needs no answer (the bot's own message, an auto-reply,
    a bounce, an edit): recorded under its id so a redelivery stays ignored."""

    event_id: str
    reason: str


InboundItem = InboundMessage | InboundStatus | Ignored


@dataclass(frozen=True)
class Outgoing:
    """One stored message to deliver: the conversation it belongs to, its text as the channel
    should show it (notices included), and the provider's refs of the thread so far."""

    account: ChannelAccount
    conversation: Conversation
    message: Message
    text: str
    thread_refs: tuple[str, ...] = ()  # email: the thread's Message-IDs, oldest first
    stream_ref: str = ""  # the provider's id of the message a streamed reply was shown in


@dataclass(frozen=True)
class Sent:
    """What the provider called the parts it accepted (their ids, in order)."""

    provider_message_ids: list[str]


class DeliveryFailed(Exception):
    """A delivery the provider did not accept: retried with backoff (or after `retry_after`
    seconds) unless `permanent`."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        permanent: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.permanent = permanent


class ChannelAdapter(Protocol):
    kind: str
    max_chars: int  # the platform's limit for one message's text
    streams_by_edit: bool  # shows a reply as it forms by editing one message

    def handshake(self, account: ChannelAccount, request: WebhookRequest) -> WebhookAnswer | None:
        """The answer to a setup request (a challenge), or None for an ordinary webhook."""
        ...

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        """Raise WebhookRefused unless the request is genuinely this channel's provider's."""
        ...

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[InboundItem]:
        """The items of a verified webhook (raise WebhookRefused(400) for a malformed one)."""
        ...

    def acknowledge(self, account: ChannelAccount) -> WebhookAnswer:
        """What the provider is answered once the items are stored."""
        ...

    def send(self, outgoing: Outgoing) -> Sent:
        """Deliver `outgoing.text` (split as the platform needs); raise DeliveryFailed."""
        ...

    def typing(self, account: ChannelAccount, conversation: Conversation) -> None:
        """Show that a reply is being written, where the platform can (best effort)."""
        ...

    def stream_open(self, account: ChannelAccount, conversation: Conversation, text: str) -> str:
        """Post the first text of a streaming reply; the provider's id of that message."""
        ...

    def stream_edit(
        self, account: ChannelAccount, conversation: Conversation, ref: str, text: str
    ) -> None:
        """Replace the streaming message's text with `text` (the reply so far)."""
        ...


_ADAPTERS: dict[str, ChannelAdapter] = {}


def register_adapter(adapter: ChannelAdapter) -> ChannelAdapter:
    _ADAPTERS[adapter.kind] = adapter
    return adapter


def adapter_for(kind: str) -> ChannelAdapter:
    """The adapter of a channel kind (KeyError for a kind without one)."""
    return _ADAPTERS[kind]


def registered_kinds() -> list[str]:
    return sorted(_ADAPTERS)


def config_value(account: ChannelAccount, name: str, default: Any = "") -> Any:
    return (account.config or {}).get(name, default)


def credential(account: ChannelAccount, name: str) -> str:
    return str((account.credentials or {}).get(name, ""))
