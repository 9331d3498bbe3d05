"""A small provider of our own for the channel layer's inbound tests: JSON webhooks signed with
HMAC-SHA256 of the raw body (`X-Kit-Signature`, the account's `signing_secret`), registered
under real channel kinds only for the duration of a test (`kit_adapters`), and an outbound side
that records what it was asked to send and names each part it accepts."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.test.client import Client as ClientType

from conversations.channels import base
from conversations.channels.base import (
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
    credential,
)
from conversations.models import ChannelAccount
from supportbot.tenants.models import Tenant

SIGNATURE_HEADER = "X-Kit-Signature"


class KitAdapter:
    max_chars = 4000
    streams_by_edit = False

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.sent: list[tuple[str, str, str]] = []  # (conversation id, text, provider id)
        self._lock = threading.Lock()

    def handshake(self, account: ChannelAccount, request: WebhookRequest) -> WebhookAnswer | None:
        if request.method == "GET" and "challenge" in request.query:
            return WebhookAnswer(body=request.query["challenge"])
        return None

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        secret = credential(account, "signing_secret")
        expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        if not secret or not hmac.compare_digest(expected, request.header(SIGNATURE_HEADER)):
            raise WebhookRefused(401, "signature does not match")

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[InboundItem]:
        try:
            data = json.loads(request.body)
        except ValueError as exc:
            raise WebhookRefused(400, "malformed body") from exc
        items: list[InboundItem] = [
            InboundMessage(
                event_id=m["id"],
                user_id=m["from"],
                text=m.get("text", ""),
                thread=m.get("thread", ""),
                email=m.get("email", ""),
                provider_ref=m.get("ref", ""),
                attachments=tuple(InboundAttachment(**a) for a in m.get("attachments", [])),
            )
            for m in data.get("messages", [])
        ]
        items += [
            InboundStatus(
                event_id=s["id"],
                provider_message_id=s["message_id"],
                status=s["status"],
                error=s.get("error", ""),
            )
            for s in data.get("statuses", [])
        ]
        items += [Ignored(event_id=i, reason="the bot's own message") for i in data.get("echo", [])]
        return items

    def acknowledge(self, account: ChannelAccount) -> WebhookAnswer:
        return WebhookAnswer(body="ok")

    def send(self, outgoing: Outgoing) -> Sent:
        provider_id = f"kit-{uuid.uuid4().hex[:12]}"
        with self._lock:
            self.sent.append((str(outgoing.conversation.pk), outgoing.text, provider_id))
        return Sent([provider_id])

    def sent_to(self, conversation_id: object) -> list[str]:
        with self._lock:
            return [text for cid, text, _ in self.sent if cid == str(conversation_id)]

    def typing(self, account: ChannelAccount, conversation: Any) -> None:
        return None

    def stream_open(self, account: ChannelAccount, conversation: Any, text: str) -> str:
        raise NotImplementedError

    def stream_edit(self, account: ChannelAccount, conversation: Any, ref: str, text: str) -> None:
        raise NotImplementedError


@pytest.fixture(name="kit_adapters")
def kit_adapters_fixture() -> Iterator[dict[str, KitAdapter]]:
    """The kit adapter under the email, WhatsApp and SMS kinds for one test; the registry is
    restored afterwards."""
    saved = dict(base._ADAPTERS)
    adapters = {kind: KitAdapter(kind) for kind in ("email", "whatsapp", "sms")}
    for adapter in adapters.values():
        base.register_adapter(adapter)
    try:
        yield adapters
    finally:
        base._ADAPTERS.clear()
        base._ADAPTERS.update(saved)


def kit_account(tenant: Tenant, kind: str = "whatsapp", secret: str = "") -> ChannelAccount:
    return ChannelAccount.objects.create(
        tenant=tenant,
        kind=kind,
        name=f"{kind} test",
        credentials={"signing_secret": secret or f"secret-{uuid.uuid4().hex}"},
    )


def signed(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_url(account: ChannelAccount) -> str:
    return f"/channels/{account.pk}/webhook/"


def post_webhook(
    account: ChannelAccount,
    payload: dict[str, Any],
    *,
    secret: str | None = None,
    client: ClientType | None = None,
) -> Any:
    """POST `payload` to the account's webhook, signed with `secret` (the account's own by
    default)."""
    body = json.dumps(payload).encode()
    key = secret if secret is not None else credential(account, "signing_secret")
    return (client or Client()).post(
        webhook_url(account),
        data=body,
        content_type="application/json",
        headers={SIGNATURE_HEADER: signed(body, key)},
    )


def message(
    event_id: str, user: str, text: str = "", *, attachments: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "messages": [{"id": event_id, "from": user, "text": text, "attachments": attachments or []}]
    }
