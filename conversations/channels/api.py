"""The REST API's rules: who a key is, which conversations it reaches, what it may post.

An integration (a mobile app, a back office, a custom chat front end) talks for the people it
serves through a key of one of the tenant's `api` channels. A key reaches only the
conversations of its own channel, in its own tenant: any other id is "not found", never
"forbidden", so a key learns nothing about other tenants' conversations. Messages go through
the same service, limits and consent rules as the widget's; the entry point
(`conversations/api/`) only parses and renders.

Consent: the integrator shows the tenant's text (every conversation carries it) and speaks for
the person. Under legitimate interest the notice is recorded with the first message; where
the tenant's lawful basis is consent, a conversation is created only with the `consent_version`
the person accepted (recorded as their acceptance, channel `api`), and a later decision
(accept or decline) is posted to the conversation's `consent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from conversations import frames
from conversations.channels.api_keys import api_key_authenticate
from conversations.channels.base import InboundMessage
from conversations.channels.inbound import channel_contact
from conversations.consent_records import (
    ConsentStatus,
    Decision,
    consent_record_write,
    consent_status_for,
    welcome_consent,
)
from conversations.limits import api_key_message_retry_after, visitor_message_retry_after
from conversations.models import ApiKey, ChannelAccount, Contact, Conversation, Message
from conversations.selectors import message_by_client_id
from conversations.services import message_post_from_visitor
from supportbot.compliance.encryption import blind_index
from supportbot.tenants.models import Tenant
from supportbot.tenants.selectors import agent_display_names

CHANNEL = ChannelAccount.Kind.API
MAX_CLIENT_ID_CHARS = 64
MESSAGES_PAGE_DEFAULT = 50
MESSAGES_PAGE_MAX = 200
# A key's `last_used_at` is written at most this often (not on every request).
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiError(Exception):
    """A refusal the API answers with `{"error": {"code", "detail", ...}}` and `status`; the
    codes are the widget's error codes (docs/widget-protocol.md) plus `not_found` and
    `unauthorized`."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = {k: v for k, v in extra.items() if v is not None}

    @property
    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "detail": self.detail, **self.extra}}


def not_found() -> ApiError:
    return ApiError(404, "not_found", "No such conversation.")


@dataclass(frozen=True)
class ApiClient:
    """The caller behind a key: the tenant and the `api` channel it speaks through."""

    api_key_id: int
    tenant: Tenant
    account: ChannelAccount


def api_client_for_key(key: str) -> ApiClient | None:
    """The client of a live key of an active `api` channel, or None (unknown, revoked, another
    kind of channel, or a disabled channel or tenant)."""
    api_key = api_key_authenticate(key)
    if api_key is None or api_key.channel_account.kind != CHANNEL:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return ApiClient(api_key_id=api_key.pk, tenant=api_key.tenant, account=api_key.channel_account)


def _unstorable(text: str) -> bool:
    """NUL or an unpaired surrogate: what Postgres and UTF-8 refuse."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def text_check(**values: str | None) -> None:
    """ApiError 400 (`bad_request`) for a text field holding what cannot be stored."""
    for name, value in values.items():
        if value and _unstorable(value):
            raise ApiError(
                400,
                "bad_request",
                f"{name} may not contain NUL or unpaired surrogate characters.",
            )


# --- conversations ----------------------------------------------------------------------------


def api_conversation(client: ApiClient, conversation_id: UUID | str) -> Conversation:
    """The conversation `conversation_id` of the client's channel; ApiError 404 for any other
    id (unknown, another channel's, another tenant's)."""
    try:
        conversation_uuid = UUID(str(conversation_id))
    except ValueError:
        raise not_found() from None
    conversation = (
        Conversation.objects.select_related("contact", "tenant", "assigned_agent")
        .filter(pk=conversation_uuid, tenant_id=client.tenant.pk, channel_account=client.account)
        .first()
    )
    if conversation is None:
        raise not_found()
    return conversation


@dataclass(frozen=True)
class NewConversation:
    conversation: Conversation
    consent: dict[str, Any]  # the notice to show (see welcome_consent)


def api_conversation_create(
    client: ApiClient,
    *,
    external_user_id: str | None = None,
    name: str | None = None,
    email: str | None = None,
    locale: str | None = None,
    consent_version: int | None = None,
) -> NewConversation:
    """A new conversation of the client's channel for the person `external_user_id` (the
    integrator's id of them: one contact per tenant, channel and id; a new anonymous contact
    without one). Where the tenant needs consent and the person has not accepted the current
    text, nothing is stored unless `consent_version` names that text: ApiError 409."""
    text_check(external_user_id=external_user_id, name=name, email=email, locale=locale)
    user_id = (external_user_id or "").strip()
    locale = (locale or "")[:35]
    contact = _known_contact(client, user_id)
    status = consent_status_for(
        tenant=client.tenant,
        contact=contact or Contact(tenant=client.tenant),
        language=locale or (contact.locale if contact else ""),
    )
    accepting = _consent_to_accept(status, consent_version)
    with transaction.atomic():
        contact = _contact_store(client, contact, user_id, name or "", email or "", locale)
        if accepting:
            consent_record_write(
                contact=contact, status=status, decision=Decision.ACCEPT, channel=CHANNEL
            )
        conversation = Conversation.objects.create(
            tenant=client.tenant,
            contact=contact,
            channel=Conversation.Channel.API,
            channel_account=client.account,
        )
    return NewConversation(conversation=conversation, consent=welcome_consent(status))


def _known_contact(client: ApiClient, user_id: str) -> Contact | None:
    """The stored contact of the integrator's id of the person, if any (by its blind index)."""
    if not user_id:
        return None
    index = blind_index(client.tenant.pk, user_id, kind="channel_user")
    return Contact.objects.filter(
        tenant_id=client.tenant.pk, channel=CHANNEL, channel_user_index=index
    ).first()


def _consent_to_accept(status: ConsentStatus, consent_version: int | None) -> bool:
    """True when this creation records the person's acceptance; ApiError 409 when the tenant
    needs consent the request does not carry."""
    if not status.blocks_storage:
        return False
    if consent_version is None:
        raise consent_required(status)
    if consent_version != status.notice.version:
        raise ApiError(
            409,
            "consent_stale",
            f"The consent text is version {status.notice.version}: show it and accept that one.",
            version=status.notice.version,
        )
    return True


def consent_required(status: ConsentStatus) -> ApiError:
    return ApiError(
        409,
        "consent_required",
        "The person must accept the consent text first: nothing was stored.",
        consent=welcome_consent(status),
    )


def _contact_store(
    client: ApiClient, contact: Contact | None, user_id: str, name: str, email: str, locale: str
) -> Contact:
    """The person's contact, created when new; the name, email and locale given replace the
    stored ones."""
    if contact is None and not user_id:
        return Contact.objects.create(
            tenant=client.tenant, channel=CHANNEL, name=name, email=email, locale=locale
        )
    if contact is None:
        item = InboundMessage(event_id="", user_id=user_id, user_name=name, email=email)
        contact = channel_contact(account=client.account, item=item)
    changed = {
        key: value
        for key, value in (("name", name), ("email", email), ("locale", locale))
        if value and getattr(contact, key) != value
    }
    if changed:
        for key, value in changed.items():
            setattr(contact, key, value)
        contact.save(update_fields=[*changed, "last_seen_at"])
    return contact


# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostedApiMessage:
    message: dict[str, Any]  # frames.message_payload
    created: bool


def _conversation_consent(conversation: Conversation) -> ConsentStatus:
    contact = conversation.contact
    return consent_status_for(
        tenant=conversation.tenant,
        contact=contact,
        language=conversation.language or contact.locale,
    )


def api_message_post(
    client: ApiClient, *, conversation_id: UUID | str, client_id: str, text: str
) -> PostedApiMessage:
    """The person's message, stored once per `client_id` (a resend returns the first one,
    `created` False), and the assistant's reply queued, exactly as from the widget.

    Over the person's or the key's messages-per-minute nothing is stored (ApiError 429 with
    `retry_after`); under consent, nothing is stored before the person accepted (409)."""
    conversation = api_conversation(client, conversation_id)
    _message_check(conversation, client_id, text)
    consent = _conversation_consent(conversation)
    if consent.blocks_storage:
        raise consent_required(consent)
    existing = message_by_client_id(conversation=conversation, client_id=client_id)
    if existing is not None:
        return PostedApiMessage(message=frames.message_payload(existing), created=False)
    retry_after = visitor_message_retry_after(
        str(conversation.contact_id)
    ) or api_key_message_retry_after(client.api_key_id)
    if retry_after is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"Too many messages. Please wait {retry_after} seconds.",
            retry_after=retry_after,
        )
    with transaction.atomic():
        if consent.notice_due:
            consent_record_write(
                contact=conversation.contact,
                status=consent,
                decision=Decision.NOTICE,
                channel=CHANNEL,
            )
        posted = message_post_from_visitor(
            conversation=conversation, client_id=client_id, text=text
        )
    return PostedApiMessage(message=frames.message_payload(posted.message), created=posted.created)


def _message_check(conversation: Conversation, client_id: str, text: str) -> None:
    if not 0 < len(client_id) <= MAX_CLIENT_ID_CHARS:
        raise ApiError(
            400,
            "bad_request",
            f"client_id must be a string of 1 to {MAX_CLIENT_ID_CHARS} characters.",
        )
    text_check(client_id=client_id, text=text)
    if not text.strip():
        raise ApiError(400, "bad_request", "text must be a non-empty string.", client_id=client_id)
    limit = conversation.tenant.message_max_chars
    if len(text) > limit:
        raise ApiError(
            400, "too_long", f"Messages are limited to {limit} characters.", client_id=client_id
        )


@dataclass(frozen=True)
class MessagePage:
    messages: list[dict[str, Any]] = field(default_factory=list)
    has_more: bool = False


def api_messages(
    client: ApiClient,
    *,
    conversation_id: UUID | str,
    after_seq: int = 0,
    limit: int = MESSAGES_PAGE_DEFAULT,
) -> MessagePage:
    """The messages after `after_seq`, oldest first, at most `limit` (capped). A page stops
    before a reply still streaming, so a client that asks again after the last `seq` it got
    never skips that reply's final text."""
    conversation = api_conversation(client, conversation_id)
    limit = min(max(limit, 1), MESSAGES_PAGE_MAX)
    rows = list(
        Message.objects.filter(conversation=conversation, seq__gt=max(after_seq, 0))
        .select_related("author")
        .order_by("seq")[: limit + 1]
    )
    has_more = len(rows) > limit
    rows = rows[:limit]
    for position, message in enumerate(rows):
        if message.status == Message.Status.STREAMING:
            rows, has_more = rows[:position], True
            break
    authors = {m.author_id for m in rows if m.role == Message.Role.AGENT and m.author_id}
    names = agent_display_names(tenant_id=client.tenant.pk, user_ids=authors)
    payloads = [frames.message_payload(m, agent_names=names) for m in rows]
    return MessagePage(messages=payloads, has_more=has_more)


# --- consent ----------------------------------------------------------------------------------


def api_consent_decide(
    client: ApiClient, *, conversation_id: UUID | str, decision: str, version: int
) -> dict[str, Any]:
    """Record the person's decision on the tenant's current text (accept or decline), said
    by the integrator on their behalf; ApiError 409 (`consent_stale`) for another version."""
    conversation = api_conversation(client, conversation_id)
    status = _conversation_consent(conversation)
    if version != status.notice.version:
        raise ApiError(
            409,
            "consent_stale",
            f"The consent text is version {status.notice.version}.",
            version=status.notice.version,
        )
    with transaction.atomic():
        consent_record_write(
            contact=conversation.contact,
            status=status,
            decision=Decision.ACCEPT if decision == "accept" else Decision.DECLINE,
            channel=CHANNEL,
        )
    return welcome_consent(status)
