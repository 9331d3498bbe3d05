"""The webhook endpoint's edges, without a worker: what is refused stores nothing, a tenant's
secret opens only its own channel, and the provider is answered before anything is processed
(the items wait, stored, for the worker)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from django.test import Client

from conversations.channels import base
from conversations.channels.inbound import inbound_event_process
from conversations.models import ChannelAccount, Contact, Conversation, InboundEvent, Message
from supportbot.tenants.models import Tenant
from tests.channels.inbound_kit import (
    SIGNATURE_HEADER,
    KitAdapter,
    kit_account,
    kit_adapters_fixture,  # noqa: F401  (the fixture `kit_adapters`)
    message,
    post_webhook,
    signed,
    webhook_url,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

Adapters = dict[str, KitAdapter]


def _nothing_stored() -> None:
    assert not InboundEvent.objects.exists()
    assert not Contact.objects.exclude(channel="").exists()
    assert not Conversation.objects.exists()


def test_tenant_a_secret_cannot_post_into_tenant_b_channel(
    make_tenant: Any, kit_adapters: Adapters, caplog: Any
) -> None:
    tenant_a, _ = make_tenant()
    tenant_b, _ = make_tenant()
    secret_a, secret_b = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    account_a = kit_account(tenant_a, secret=secret_a)
    account_b = kit_account(tenant_b, secret=secret_b)
    payload = message("wamid.cross", "15550001111", "Let me into B")

    with caplog.at_level(logging.INFO, logger="conversations.channel_webhooks"):
        refused = post_webhook(account_b, payload, secret=secret_a)

    assert refused.status_code == 401
    _nothing_stored()
    assert "refused" in caplog.text
    assert secret_a not in caplog.text
    assert secret_b not in caplog.text
    assert secret_a not in refused.content.decode()

    accepted = post_webhook(account_a, payload, secret=secret_a)

    assert accepted.status_code == 200
    event = InboundEvent.objects.get()
    assert (event.tenant_id, event.channel_account_id) == (tenant_a.pk, account_a.pk)
    assert not InboundEvent.objects.filter(tenant=tenant_b).exists()
    assert not InboundEvent.objects.filter(channel_account=account_b).exists()


def test_the_provider_is_answered_before_anything_is_processed(
    make_tenant: Any, kit_adapters: Adapters
) -> None:
    tenant, _ = make_tenant()
    account = kit_account(tenant)
    payload = message("wamid.fast", "15550002222", "Hello")
    payload["echo"] = ["wamid.own-reply"]

    response = post_webhook(account, payload)

    assert (response.status_code, response.content) == (200, b"ok")
    events = {e.provider_event_id: e for e in InboundEvent.objects.all()}
    assert events["wamid.fast"].state == InboundEvent.State.RECEIVED
    assert events["wamid.fast"].payload["text"] == "Hello"
    assert events["wamid.own-reply"].state == InboundEvent.State.IGNORED
    assert events["wamid.own-reply"].payload == {}
    assert not Message.objects.exists()  # the worker does that


def test_a_body_over_the_limit_is_refused_unread(
    make_tenant: Any, kit_adapters: Adapters, settings: Any
) -> None:
    settings.CHANNEL_WEBHOOK_MAX_BYTES = 200
    tenant, _ = make_tenant()
    account = kit_account(tenant)

    response = post_webhook(account, message("wamid.big", "15550003333", "x" * 500))

    assert response.status_code == 413
    _nothing_stored()


def test_a_length_that_is_not_a_number_is_refused(make_tenant: Any, kit_adapters: Adapters) -> None:
    tenant, _ = make_tenant()
    account = kit_account(tenant)
    response = Client().generic(
        "POST",
        webhook_url(account),
        data=b"{}",
        content_type="application/json",
        headers={"Content-Length": "abc"},
    )
    assert response.status_code == 413
    _nothing_stored()


@pytest.mark.parametrize("what", ["channel", "tenant", "unknown", "no adapter"])
def test_an_inactive_or_unknown_channel_is_not_found(
    make_tenant: Any, kit_adapters: Adapters, what: str
) -> None:
    tenant, _ = make_tenant()
    account = kit_account(tenant, kind="telegram" if what == "no adapter" else "whatsapp")
    if what == "channel":
        ChannelAccount.objects.filter(pk=account.pk).update(is_active=False)
    if what == "tenant":
        Tenant.objects.filter(pk=tenant.pk).update(is_active=False)
    if what == "unknown":
        account.pk = uuid.uuid4()
    if what == "no adapter":
        base._ADAPTERS.pop("telegram", None)  # the registry is restored by kit_adapters

    response = post_webhook(account, message("wamid.gone", "15550004444", "Hello"))

    assert response.status_code == 404
    _nothing_stored()


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_not_allowed(
    make_tenant: Any, kit_adapters: Adapters, method: str
) -> None:
    tenant, _ = make_tenant()
    account = kit_account(tenant)
    response = getattr(Client(), method)(webhook_url(account))
    assert response.status_code == 405
    assert response["Allow"] == "GET, POST"
    _nothing_stored()


def test_a_get_is_only_a_handshake(make_tenant: Any, kit_adapters: Adapters) -> None:
    tenant, _ = make_tenant()
    account = kit_account(tenant)

    challenge = Client().get(webhook_url(account), {"challenge": "12345"})
    plain = Client().get(webhook_url(account))

    assert (challenge.status_code, challenge.content) == (200, b"12345")
    assert plain.status_code == 405
    _nothing_stored()


def test_a_malformed_body_is_refused_and_nothing_is_stored(
    make_tenant: Any, kit_adapters: Adapters
) -> None:
    tenant, _ = make_tenant()
    account = kit_account(tenant)
    body = b"{not json"
    response = Client().post(
        webhook_url(account),
        data=body,
        content_type="application/json",
        headers={SIGNATURE_HEADER: signed(body, str(account.credentials["signing_secret"]))},
    )
    assert response.status_code == 400
    _nothing_stored()


def test_an_unsigned_or_tampered_body_is_refused(make_tenant: Any, kit_adapters: Adapters) -> None:
    tenant, _ = make_tenant()
    account = kit_account(tenant)
    body = json.dumps(message("wamid.t", "15550005555", "Hello")).encode()
    secret = str(account.credentials["signing_secret"])
    unsigned = Client().post(webhook_url(account), data=body, content_type="application/json")
    tampered = Client().post(
        webhook_url(account),
        data=body.replace(b"Hello", b"Hallo"),
        content_type="application/json",
        headers={SIGNATURE_HEADER: signed(body, secret)},
    )
    assert (unsigned.status_code, tampered.status_code) == (401, 401)
    _nothing_stored()


def test_the_same_person_and_event_id_in_two_tenants_stay_apart(
    make_tenant: Any, kit_adapters: Adapters
) -> None:
    tenant_a, _ = make_tenant()
    tenant_b, _ = make_tenant()
    account_a, account_b = kit_account(tenant_a), kit_account(tenant_b)
    payload = message("wamid.same", "15550006666", "Where is my order?")

    assert post_webhook(account_a, payload).status_code == 200
    assert post_webhook(account_b, payload).status_code == 200
    for event in InboundEvent.objects.all():
        inbound_event_process(event_id=event.pk)

    for tenant, account in ((tenant_a, account_a), (tenant_b, account_b)):
        event = InboundEvent.objects.get(channel_account=account)
        contact = Contact.objects.get(tenant=tenant, channel="whatsapp")
        conversation = Conversation.objects.get(tenant=tenant)
        assert (event.tenant_id, event.contact_id) == (tenant.pk, contact.pk)
        assert (conversation.contact_id, conversation.channel_account_id) == (
            contact.pk,
            account.pk,
        )
        assert Message.objects.filter(conversation=conversation, role="user").count() == 1


def test_a_body_within_the_channel_limit_is_taken_whatever_the_form_limit(
    make_tenant: Any, kit_adapters: Adapters, settings: Any
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.CHANNEL_WEBHOOK_MAX_BYTES = 100_000
    tenant, _ = make_tenant()
    account = kit_account(tenant)

    response = post_webhook(account, message("wamid.long", "15550007777", "x" * 5000))

    assert response.status_code == 200
    assert InboundEvent.objects.get().payload["text"] == "x" * 5000


def test_a_form_body_reaches_the_adapter_parsed(make_tenant: Any, kit_adapters: Adapters) -> None:
    tenant, _ = make_tenant()
    account = kit_account(tenant)
    seen: list[dict[str, str]] = []
    adapter = kit_adapters["whatsapp"]
    adapter.parse = lambda account, request: seen.append(request.form) or []  # type: ignore[method-assign]
    body = b"From=%2B15550008888&Body=Hello+there&Empty="

    response = Client().post(
        webhook_url(account),
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers={SIGNATURE_HEADER: signed(body, str(account.credentials["signing_secret"]))},
    )

    assert response.status_code == 200
    assert seen == [{"From": "+15550008888", "Body": "Hello there", "Empty": ""}]
