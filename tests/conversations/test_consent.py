"""Consent and disclosure before storage, withdrawal and the `erased` frame, over the real
consumer, channel layer (Redis) and Celery worker."""

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from channels.db import database_sync_to_async

from conversations import consent as consent_module
from conversations.models import ConsentRecord, Contact, Conversation, ErasedVisitor, Message
from conversations.refusals import CloseCode
from supportbot.tenants.consent_texts import DEFAULT_CONSENT_TEXTS
from supportbot.tenants.models import ConsentText, Tenant
from tests.conversations.test_consumer import (
    SHOP,
    assert_closed_with,
    connect,
    hello,
    is_final_assistant,
    receive_until,
)
from tests.conversations.test_identity import sign
from tests.support.llm_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]

PRIVACY = "https://shop.example.com/privacy"


@pytest.fixture
def consent_shop(make_tenant: Any, llm: Any) -> Any:
    return make_tenant(
        allowed_origins=[SHOP], lawful_basis=Tenant.LawfulBasis.CONSENT, privacy_url=PRIVACY
    )


@pytest.fixture
def notice_shop(make_tenant: Any, llm: Any) -> Any:
    return make_tenant(allowed_origins=[SHOP])


@pytest.fixture
def audit() -> Iterator[list[dict[str, Any]]]:
    """The audit events the consent decisions record."""
    events: list[dict[str, Any]] = []
    with mock.patch(
        "conversations.consent_records.record_event", side_effect=lambda **kw: events.append(kw)
    ):
        yield events


def _counts(tenant: Tenant) -> tuple[int, int, int, int]:
    return (
        Contact.objects.filter(tenant=tenant).count(),
        Conversation.objects.filter(tenant=tenant).count(),
        Message.objects.filter(tenant=tenant).count(),
        ConsentRecord.objects.filter(tenant=tenant).count(),
    )


counts = database_sync_to_async(_counts)


async def _consent(ws: Any, decision: str, version: Any) -> dict[str, Any]:
    await ws.send_json_to({"type": "consent", "decision": decision, "version": version})
    answer: dict[str, Any] = await ws.receive_json_from(timeout=5)
    return answer


async def test_a_message_before_required_consent_stores_nothing(consent_shop: Any) -> None:
    tenant, key = consent_shop
    ws = await connect()
    welcome = await hello(ws, key.public_key, locale="en-GB")
    assert welcome["consent"] == {
        "required": True,
        "basis": "consent",
        "version": 0,
        "language": "en",
        "text": DEFAULT_CONSENT_TEXTS["en"],
        "privacy_url": PRIVACY,
        "accepted": False,
    }
    before = await counts(tenant)
    assert before == (0, 0, 0, 0)
    await ws.send_json_to({"type": "message", "client_id": "m1", "text": "My email is a@b.c"})
    error = await ws.receive_json_from(timeout=5)
    assert (error["type"], error["code"], error["client_id"]) == ("error", "consent_required", "m1")
    await ws.send_json_to({"type": "handoff.request"})
    error = await ws.receive_json_from(timeout=5)
    assert error["code"] == "consent_required"
    assert await counts(tenant) == before
    await ws.disconnect()


async def test_accept_stores_the_exact_version_then_chat_works_and_a_reload_keeps_it(
    consent_shop: Any, llm: Any, audit: list[dict[str, Any]]
) -> None:
    tenant, key = consent_shop
    await database_sync_to_async(ConsentText.objects.create)(
        tenant=tenant, language="es", text="Guardamos esta conversación (v1)."
    )
    newest = await database_sync_to_async(ConsentText.objects.create)(
        tenant=tenant, language="es", text="Guardamos esta conversación y tus datos (v2)."
    )
    assert newest.version == 2
    ws = await connect()
    welcome = await hello(ws, key.public_key, locale="es-ES")
    consent = welcome["consent"]
    assert (consent["version"], consent["language"], consent["text"]) == (2, "es", newest.text)

    answer = await _consent(ws, "accept", 2)
    assert answer["type"] == "consent.recorded"
    assert (answer["decision"], answer["version"]) == ("accept", 2)
    assert answer["conversation_id"] == welcome["conversation_id"]
    record = await database_sync_to_async(ConsentRecord.objects.get)(tenant=tenant)
    assert (record.decision, record.version, record.language) == ("accept", 2, "es")
    assert record.text_sha256 == hashlib.sha256(newest.text.encode()).hexdigest()
    assert (record.lawful_basis, record.channel) == ("consent", "widget")
    # The contact is stored with its consent; the conversation with the first message.
    assert await counts(tenant) == (1, 0, 0, 1)
    assert [event["action"] for event in audit] == ["consent.accept"]
    assert audit[0]["contact_id"] == str(record.contact_id)
    assert "text" not in audit[0]["details"]

    llm.enqueue(Reply(text="¡Hola!"))
    await ws.send_json_to({"type": "message", "client_id": "m1", "text": "Hola"})
    frames = await receive_until(ws, is_final_assistant)
    assert frames[0]["type"] == "ack"
    await ws.disconnect()

    # A reload with the token the answer carried: consent already given, the chat resumes.
    again = await connect()
    resumed = await hello(
        again,
        key.public_key,
        locale="es-ES",
        visitor_token=answer["visitor_token"],
        conversation_id=answer["conversation_id"],
    )
    assert resumed["consent"]["accepted"] is True
    assert [m["text"] for m in resumed["messages"]] == ["Hola", "¡Hola!"]
    await again.disconnect()


async def test_a_stale_or_unknown_version_is_refused_and_nothing_is_recorded(
    consent_shop: Any,
) -> None:
    tenant, key = consent_shop
    ws = await connect()
    await hello(ws, key.public_key)
    # The tenant publishes a new text after this socket was shown version 0.
    await database_sync_to_async(ConsentText.objects.create)(
        tenant=tenant, language="en", text="New text."
    )
    for version in (1, 99, "0", None, True):
        error = await _consent(ws, "accept", version)
        assert (error["type"], error["code"], error["version"]) == ("error", "consent_stale", 0)
    error = await _consent(ws, "maybe", 0)
    assert error["code"] == "bad_request"
    assert await counts(tenant) == (0, 0, 0, 0)
    await ws.disconnect()

    fresh = await connect()
    welcome = await hello(fresh, key.public_key)
    assert welcome["consent"]["version"] == 1
    answer = await _consent(fresh, "accept", 1)
    assert answer["type"] == "consent.recorded"
    await fresh.disconnect()


async def test_decline_stores_nothing_and_messages_stay_refused(
    consent_shop: Any, audit: list[dict[str, Any]]
) -> None:
    tenant, key = consent_shop
    ws = await connect()
    await hello(ws, key.public_key)
    answer = await _consent(ws, "decline", 0)
    assert answer == {"type": "consent.recorded", "decision": "decline", "version": 0}
    await ws.send_json_to({"type": "message", "client_id": "m1", "text": "Hi"})
    assert (await ws.receive_json_from(timeout=5))["code"] == "consent_required"
    assert await counts(tenant) == (0, 0, 0, 0)
    assert [(e["action"], e["contact_id"]) for e in audit] == [("consent.decline", None)]
    await ws.disconnect()


async def test_legitimate_interest_shows_a_notice_recorded_with_the_first_message(
    notice_shop: Any, llm: Any
) -> None:
    tenant, key = notice_shop
    ws = await connect()
    welcome = await hello(ws, key.public_key, locale="fr-FR")
    consent = welcome["consent"]
    assert (consent["required"], consent["basis"]) == (False, "legitimate_interest")
    assert consent["text"] == DEFAULT_CONSENT_TEXTS["fr"]
    assert consent["privacy_url"] == ""
    assert await counts(tenant) == (0, 0, 0, 0)
    for n, text in enumerate(["Bonjour", "Encore"]):
        llm.enqueue(Reply(text="Oui."))
        await ws.send_json_to({"type": "message", "client_id": f"m{n}", "text": text})
        await receive_until(ws, is_final_assistant)
    records = await database_sync_to_async(list)(ConsentRecord.objects.filter(tenant=tenant))
    assert [(r.decision, r.version, r.language) for r in records] == [("notice", 0, "fr")]
    assert records[0].text_sha256 == hashlib.sha256(consent["text"].encode()).hexdigest()
    await ws.disconnect()


@pytest.fixture
def erasures() -> Iterator[mock.MagicMock]:
    with mock.patch.object(
        consent_module, "erase_subject", wraps=consent_module.erase_subject
    ) as spy:
        yield spy


async def _accepted_visitor(key: Any, llm: Any) -> tuple[Any, dict[str, Any]]:
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    answer = await _consent(ws, "accept", welcome["consent"]["version"])
    llm.enqueue(Reply(text="Hello!"))
    await ws.send_json_to({"type": "message", "client_id": "m1", "text": "Hi there"})
    await receive_until(ws, is_final_assistant)
    return ws, answer


async def test_withdraw_erases_the_visitor_and_tells_every_socket(
    consent_shop: Any, llm: Any, erasures: mock.MagicMock, audit: list[dict[str, Any]]
) -> None:
    tenant, key = consent_shop
    ws, answer = await _accepted_visitor(key, llm)
    token, conversation_id = answer["visitor_token"], answer["conversation_id"]
    other_tab = await connect(client="10.0.0.2")
    await hello(other_tab, key.public_key, visitor_token=token, conversation_id=conversation_id)
    contact_id = await database_sync_to_async(lambda: str(Contact.objects.get(tenant=tenant).pk))()

    erased = await _consent(ws, "withdraw", 0)
    assert erased == {"type": "erased", "conversation_id": conversation_id}
    await assert_closed_with(ws, CloseCode.ERASED)
    told = await receive_until(other_tab, lambda f: f["type"] == "erased")
    assert told[-1]["conversation_id"] == conversation_id
    await assert_closed_with(other_tab, CloseCode.ERASED)

    (subject,), options = erasures.call_args
    assert subject.tenant_id == tenant.pk
    assert subject.contact_ids == frozenset({contact_id})
    assert conversation_id in subject.conversation_ids
    assert options["actor"] == f"visitor:{contact_id}"
    assert await database_sync_to_async(ConsentRecord.objects.filter(tenant=tenant).count)() == 0
    assert [e["action"] for e in audit] == ["consent.accept", "consent.withdraw"]

    # A later hello with the erased token: told, then a fresh start under new ids.
    back = await connect()
    await back.send_json_to(
        {
            "type": "hello",
            "key": key.public_key,
            "visitor_token": token,
            "conversation_id": conversation_id,
            "last_seq": 2,
        }
    )
    first = await back.receive_json_from(timeout=5)
    assert first == {"type": "erased", "conversation_id": conversation_id}
    welcome = await back.receive_json_from(timeout=5)
    assert welcome["type"] == "welcome"
    assert welcome["conversation_id"] != conversation_id
    assert welcome["messages"] == []
    assert welcome["consent"]["accepted"] is False
    await back.disconnect()


async def test_withdraw_leaves_no_row_of_the_visitor(consent_shop: Any, llm: Any) -> None:
    tenant, key = consent_shop
    ws, _ = await _accepted_visitor(key, llm)
    await _consent(ws, "withdraw", 0)
    await assert_closed_with(ws, CloseCode.ERASED)
    assert await counts(tenant) == (0, 0, 0, 0)


async def test_withdraw_before_anything_is_stored_just_clears_the_widget(
    consent_shop: Any,
) -> None:
    tenant, key = consent_shop
    ws = await connect()
    welcome = await hello(ws, key.public_key)
    erased = await _consent(ws, "withdraw", None)
    assert erased == {"type": "erased", "conversation_id": welcome["conversation_id"]}
    await assert_closed_with(ws, CloseCode.ERASED)
    assert await counts(tenant) == (0, 0, 0, 0)
    assert await database_sync_to_async(ErasedVisitor.objects.count)() == 0


async def test_another_tenants_token_cannot_touch_its_contact(make_tenant: Any, llm: Any) -> None:
    tenant_a, key_a = await database_sync_to_async(make_tenant)(
        allowed_origins=[SHOP], lawful_basis="consent"
    )
    tenant_b, key_b = await database_sync_to_async(make_tenant)(
        allowed_origins=[SHOP], lawful_basis="consent"
    )
    ws_a, answer = await _accepted_visitor(key_a, llm)
    await ws_a.disconnect()
    before = await counts(tenant_a)

    # Tenant A's token presented to tenant B's widget is refused before any consent frame.
    ws_b = await connect()
    await ws_b.send_json_to(
        {"type": "hello", "key": key_b.public_key, "visitor_token": answer["visitor_token"]}
    )
    await assert_closed_with(ws_b, CloseCode.FORBIDDEN)

    # A visitor of tenant B withdrawing erases only their own (nothing): A's rows stay.
    ws_b = await connect()
    await hello(ws_b, key_b.public_key)
    await _consent(ws_b, "accept", 0)
    await _consent(ws_b, "withdraw", 0)
    await assert_closed_with(ws_b, CloseCode.ERASED)
    assert await counts(tenant_a) == before
    assert await database_sync_to_async(ConsentRecord.objects.filter(tenant=tenant_b).count)() == 0

    # A's own token still resumes at A, consent kept.
    ws_a = await connect()
    welcome = await hello(ws_a, key_a.public_key, visitor_token=answer["visitor_token"])
    assert welcome["consent"]["accepted"] is True
    assert welcome["conversation_id"] == answer["conversation_id"]
    await ws_a.disconnect()


async def test_a_verified_visitor_is_stored_only_with_their_consent(
    consent_shop: Any,
) -> None:
    tenant, key = consent_shop
    identity = await database_sync_to_async(sign)(tenant, sub="ann", email="ann@example.com")
    ws = await connect()
    welcome = await hello(ws, key.public_key, identity=identity)
    assert await counts(tenant) == (0, 0, 0, 0)
    answer = await _consent(ws, "accept", welcome["consent"]["version"])
    await ws.disconnect()
    contact = await database_sync_to_async(Contact.objects.get)(tenant=tenant)
    assert (contact.external_id, contact.email) == ("ann", "ann@example.com")
    # Their token needs their identity; with it, the consent is remembered.
    ws = await connect()
    token = answer["visitor_token"]
    again = await hello(ws, key.public_key, identity=identity, visitor_token=token)
    assert again["consent"]["accepted"] is True
    await ws.disconnect()
    ws = await connect()
    await ws.send_json_to(
        {"type": "hello", "key": key.public_key, "visitor_token": answer["visitor_token"]}
    )
    await assert_closed_with(ws, CloseCode.FORBIDDEN)
    assert uuid.UUID(again["conversation_id"])
