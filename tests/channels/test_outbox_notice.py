"""The privacy notice on the first reply of a WhatsApp, SMS or Telegram conversation, under
legitimate interest: what the provider receives, and the record that it was shown."""

from __future__ import annotations

from typing import Any

import pytest

from conversations.models import ConsentRecord, Conversation, OutboundDelivery
from supportbot.tenants.consent_texts import DEFAULT_CONSENT_TEXTS
from supportbot.tenants.models import Tenant
from tests.channels.test_outbox import (
    HttpTestAdapter,
    adapters,
    channel_conversation,
    post,
    provider,
    wait_for_state,
)
from tests.support.provider_server import ProviderServer

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_idle"),
]

__all__ = ["adapters", "provider"]  # fixtures

PRIVACY_URL = "https://shop.example.com/privacy"


@pytest.fixture
def notice_tenant(make_tenant: Any) -> Tenant:
    tenant, _key = make_tenant(
        lawful_basis=Tenant.LawfulBasis.LEGITIMATE_INTEREST, privacy_url=PRIVACY_URL
    )
    return tenant


def with_notice(reply: str, language: str) -> str:
    return f"{reply}\n\n{DEFAULT_CONSENT_TEXTS[language]}\n{PRIVACY_URL}"


def texts(provider: ProviderServer, kind: str) -> list[str]:
    return [request.json["text"] for request in provider.received(f"/send/{kind}")]


@pytest.mark.parametrize("kind", ["whatsapp", "sms", "telegram", "email", "slack"])
def test_the_first_reply_carries_the_notice_in_the_conversation_language(
    kind: str,
    notice_tenant: Tenant,
    adapters: dict[str, HttpTestAdapter],
    provider: ProviderServer,
) -> None:
    conversation = channel_conversation(notice_tenant, kind, language="es")
    first = post(conversation, "Hola, ¿en qué te ayudo?")
    wait_for_state(first, OutboundDelivery.State.SENT)
    second = post(conversation, "Tu pedido sale mañana.")
    wait_for_state(second, OutboundDelivery.State.SENT)

    assert texts(provider, kind) == [
        with_notice("Hola, ¿en qué te ayudo?", "es"),
        "Tu pedido sale mañana.",
    ]
    (record,) = ConsentRecord.objects.filter(contact=conversation.contact)
    assert record.decision == ConsentRecord.Decision.NOTICE
    assert record.channel == kind
    assert record.language == "es"
    assert record.lawful_basis == Tenant.LawfulBasis.LEGITIMATE_INTEREST


def test_consent_tenants_get_no_notice_on_the_reply(
    make_tenant: Any, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    tenant, _key = make_tenant(lawful_basis=Tenant.LawfulBasis.CONSENT, privacy_url=PRIVACY_URL)
    conversation = channel_conversation(tenant, "whatsapp")
    message = post(conversation, "Hello.")
    wait_for_state(message, OutboundDelivery.State.SENT)
    assert texts(provider, "whatsapp") == ["Hello."]


def test_a_refused_first_reply_leaves_the_notice_to_the_next(
    notice_tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    provider.fail_next("/send/sms", status=400, body={"message": "not a mobile number"})
    conversation = channel_conversation(notice_tenant, "sms")
    refused = post(conversation, "First.")
    wait_for_state(refused, OutboundDelivery.State.FAILED)
    assert not ConsentRecord.objects.exists()

    second = post(conversation, "Second.")
    wait_for_state(second, OutboundDelivery.State.SENT)

    assert texts(provider, "sms") == [with_notice("First.", "en"), with_notice("Second.", "en")]
    assert ConsentRecord.objects.filter(decision=ConsentRecord.Decision.NOTICE).count() == 1


def test_a_new_conversation_shows_the_notice_again_recorded_once(
    notice_tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    first = channel_conversation(notice_tenant, "telegram", language="fr")
    wait_for_state(post(first, "Bonjour."), OutboundDelivery.State.SENT)
    later = Conversation.objects.create(
        tenant=notice_tenant,
        contact=first.contact,
        channel=first.channel,
        channel_account=first.channel_account,
        channel_thread=first.channel_thread,
        language="fr",
    )
    wait_for_state(post(later, "Rebonjour."), OutboundDelivery.State.SENT)

    assert texts(provider, "telegram") == [
        with_notice("Bonjour.", "fr"),
        with_notice("Rebonjour.", "fr"),
    ]
    assert ConsentRecord.objects.filter(contact=first.contact).count() == 1
