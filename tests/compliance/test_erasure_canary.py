"""Export and erasure of one person, end to end: unique strings are planted through every path
that stores what a person wrote or what was derived from it; the export holds every one of
them; after erasure none is left in the database (`pg_dump`), in Redis (every key and value) or
in the log, a second export is empty, another person's data is untouched, the tenant's usage
survives, and the person's open widget gets an `erased` frame.

To cover a new path, write a planter (`Person -> planted string`) and add it to `PLANTERS`.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Sum

from conversations.agents import agent_message_post, conversation_take_over
from conversations.consent_records import Decision, consent_record_write, consent_status_for
from conversations.messages import message_append
from conversations.models import Contact, Conversation, LLMCall, Message, ToolInvocation
from conversations.stream_state import snapshot_write
from conversations.summaries import conversation_summarize
from supportbot.compliance.audit import record_event
from supportbot.compliance.audit_chain import verify_chain
from supportbot.compliance.data_requests import (
    SubjectNotFound,
    data_request_create,
    data_request_preview,
    data_request_run,
    export_file_path,
    selector_from,
)
from supportbot.compliance.export import subject_sections
from supportbot.compliance.models import AuditEvent, DataRequest
from supportbot.compliance.registry import SubjectSelector, find_subject
from supportbot.tenants.models import ConsentText, Tenant, TenantMembership, TenantUsageDay
from tests.conversations.test_consumer import (
    SHOP,
    connect,
    hello,
    receive_until,
)
from tests.support.leftovers import database_dump, redis_dump
from tests.support.llm_server import Reply
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]


def canary(path: str) -> str:
    return f"CANARY{path.upper()}{uuid.uuid4().hex[:12]}"


@dataclass
class Person:
    tenant: Tenant
    conversation_id: str
    reply_id: str
    llm: Any


# --- planters: each stores one unique string through one path, and returns it ---------------


def plant_summary(person: Person) -> str:
    """A rolling summary (the model's structured answer) naming the planted string."""
    planted = canary("summary")
    Tenant.objects.filter(pk=person.tenant.pk).update(history_token_budget=300)
    conversation = Conversation.objects.get(pk=person.conversation_id)
    for n in range(8):
        message_append(
            conversation=conversation,
            role=Message.Role.USER,
            text=f"Question {n}: my parcel still has not arrived, and the tracking page shows "
            "nothing new since last week; could you look into it please?",
            broadcast=False,
        )
    summary = {
        "summary": f"The visitor {planted} waits for a parcel.",
        "facts": [],
        "open_questions": [],
    }
    person.llm.enqueue(Reply(text=json.dumps(summary)))
    assert conversation_summarize(conversation_id=person.conversation_id)
    return planted


def plant_stream_snapshot(person: Person) -> str:
    """The text so far of a reply still streaming, kept in Redis for resuming sockets."""
    planted = canary("snapshot")
    assert snapshot_write(person.reply_id, text=f"Let me check {planted}", index=3)
    return planted


def plant_agent_reply(person: Person) -> str:
    planted = canary("agent")
    agent = get_user_model().objects.create_user(username="agent-ana", is_staff=True)
    TenantMembership.objects.create(
        tenant=person.tenant, user=agent, role=TenantMembership.Role.AGENT
    )
    conversation = Conversation.objects.get(pk=person.conversation_id)
    conversation_take_over(conversation=conversation, agent=agent)
    agent_message_post(conversation=conversation, agent=agent, text=f"Hello {planted}")
    return planted


def plant_consent_record(person: Person) -> str:
    """A consent decision on a text of the tenant's: the record keeps the SHA-256 of the exact
    text shown (the planted string), and its audit event keeps it in its details."""
    ConsentText.objects.create(
        tenant=person.tenant, language="en", text=f"We keep your chat. {canary('consent')}"
    )
    conversation = Conversation.objects.select_related("contact").get(pk=person.conversation_id)
    status = consent_status_for(tenant=person.tenant, contact=conversation.contact, language="en")
    record = consent_record_write(
        contact=conversation.contact, status=status, decision=Decision.ACCEPT
    )
    # A newer text for everyone after this person (so only their records hold this one's hash).
    ConsentText.objects.create(tenant=person.tenant, language="en", text="We keep your chat.")
    return record.text_sha256


def plant_audit_event(person: Person) -> str:
    """An audit event about the person, with the planted string in its details."""
    planted = canary("audit")
    contact_id = Conversation.objects.get(pk=person.conversation_id).contact_id
    record_event(
        tenant_id=person.tenant.pk,
        action="test.note",
        target=f"conversation:{person.conversation_id}",
        contact_id=str(contact_id),
        details={"note": planted},
    )
    return planted


PLANTERS: list[Callable[[Person], str]] = [
    plant_summary,
    plant_stream_snapshot,
    plant_agent_reply,
    plant_consent_record,
    plant_audit_event,
]


# --- the test ---------------------------------------------------------------------------------


def _zip_text(data: bytes) -> tuple[dict[str, Any], str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read("data.json")), archive.read("transcript.html").decode()


def _stored_texts(conversation_id: str) -> list[str]:
    """The message texts of a conversation as stored (encrypted), read by SQL."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT text FROM conversations_message WHERE conversation_id = %s AND text <> ''",
            [conversation_id],
        )
        return [row[0] for row in cursor.fetchall()]


def _usage(tenant_id: int) -> dict[str, Any]:
    return TenantUsageDay.objects.filter(tenant_id=tenant_id).aggregate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), cost=Sum("cost")
    )


def _export(tenant_id: int, conversation_id: str) -> bytes:
    request = data_request_create(
        tenant_id=tenant_id,
        kind=DataRequest.Kind.EXPORT,
        selector_kind=DataRequest.SelectorKind.CONVERSATION,
        selector_value=conversation_id,
        requested_by=None,
        enqueue=False,
    )
    request = data_request_run(request_id=request.pk)
    path = export_file_path(request)
    assert path is not None
    return path.read_bytes()


def _erase_through_the_worker(tenant_id: int, conversation_id: str) -> DataRequest:
    request = data_request_create(
        tenant_id=tenant_id,
        kind=DataRequest.Kind.ERASE,
        selector_kind=DataRequest.SelectorKind.CONVERSATION,
        selector_value=conversation_id,
        requested_by=None,
    )
    return wait_until(
        lambda: DataRequest.objects.filter(pk=request.pk, status=DataRequest.Status.DONE).first(),
        timeout=30,
        message="the erasure to run on the worker",
    )


async def _chat(key: str, text: str) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    ws = await connect()
    welcome = await hello(ws, key)
    await ws.send_json_to({"type": "message", "client_id": str(uuid.uuid4()), "text": text})
    frames = await receive_until(
        ws, lambda f: f["type"] == "message" and f["message"]["role"] == "assistant"
    )
    return ws, welcome, frames


async def test_erasure_leaves_nothing_of_the_person_anywhere(
    make_tenant: Any, llm: Any, caplog: pytest.LogCaptureFixture, settings: Any, tmp_path: Any
) -> None:
    caplog.set_level(logging.INFO)
    settings.DATA_EXPORT_DIR = str(tmp_path / "exports")
    tenant, key = await database_sync_to_async(make_tenant)(allowed_origins=[SHOP])

    # The person: a visitor message, and a tool argument the model derived from it.
    visitor_text, tool_query = canary("visitor"), canary("tool")
    llm.enqueue(
        Reply(
            tool_calls=[
                {"name": "search_knowledge", "arguments": json.dumps({"query": tool_query})}
            ],
            finish_reason="tool_calls",
        ),
        Reply(text="Let me look into that parcel for you."),
    )
    ws, welcome, frames = await _chat(key.public_key, f"Where is my parcel? {visitor_text}")
    conversation_id = welcome["conversation_id"]
    person = Person(tenant, conversation_id, frames[-1]["message"]["id"], llm)
    planted = [visitor_text, tool_query]
    planted += [await database_sync_to_async(planter)(person) for planter in PLANTERS]

    # Another person of the same tenant.
    llm.enqueue(Reply(text="Happy to help."))
    other_text = canary("other")
    other_ws, other_welcome, _ = await _chat(key.public_key, f"Hello {other_text}")
    await other_ws.disconnect()

    def before() -> tuple[bytes, dict[str, Any], int]:
        assert ToolInvocation.objects.filter(conversation_id=conversation_id).exists()
        assert LLMCall.objects.filter(conversation_id=conversation_id).exists()
        other = Message.objects.filter(conversation_id=other_welcome["conversation_id"]).count()
        return _export(tenant.pk, conversation_id), _usage(tenant.pk), other

    archive, usage, other_messages = await database_sync_to_async(before)()
    # Message text is encrypted at rest: the dump is searched for the stored values too.
    sealed = await database_sync_to_async(_stored_texts)(conversation_id)
    other_sealed = await database_sync_to_async(_stored_texts)(other_welcome["conversation_id"])
    assert sealed
    assert other_sealed
    assert not any(string in value for string in planted for value in sealed)
    data, transcript = _zip_text(archive)
    exported = json.dumps(data)
    for string in planted:
        assert string in exported, string
        assert string in transcript, string
    assert other_text not in exported
    assert data["stores"]["conversations.contacts"]["contacts"][0]["id"]

    subject = await database_sync_to_async(find_subject)(
        tenant.pk, SubjectSelector(conversation_id=conversation_id)
    )
    request = await database_sync_to_async(_erase_through_the_worker)(tenant.pk, conversation_id)

    # The person's open widget is told.
    erased = await receive_until(ws, lambda f: f["type"] == "erased", timeout=10)
    assert erased[-1] == {"type": "erased", "conversation_id": conversation_id}
    await ws.disconnect()
    # A widget that comes back with the erased visitor's token is told to forget it.
    again = await connect()
    await again.send_json_to(
        {
            "type": "hello",
            "key": key.public_key,
            "visitor_token": welcome["visitor_token"],
            "conversation_id": conversation_id,
            "last_seq": 4,
        }
    )
    assert await again.receive_json_from(timeout=5) == {
        "type": "erased",
        "conversation_id": conversation_id,
    }
    fresh = await again.receive_json_from(timeout=5)
    assert fresh["type"] == "welcome"
    assert fresh["conversation_id"] != conversation_id
    assert fresh["messages"] == []
    await again.disconnect()
    # Another visitor of the tenant still says hello as before.
    other_again = await connect()
    resumed = await hello(
        other_again,
        key.public_key,
        visitor_token=other_welcome["visitor_token"],
        conversation_id=other_welcome["conversation_id"],
    )
    assert resumed["conversation_id"] == other_welcome["conversation_id"]
    await other_again.disconnect()

    certificate = request.certificate
    # The earlier export's zip went with the person.
    assert certificate["stores"]["compliance.data_requests"]["export_files"] == 1
    assert not list((tmp_path / "exports").glob("*.zip"))
    assert (request.progress, request.current_store) == (100, "")
    assert certificate["reference"] == request.reference
    assert certificate["counts"]["messages"] >= 4
    assert certificate["counts"]["contacts"] == 1
    assert request.selector_value == ""
    for string in planted:
        assert string not in json.dumps(certificate)

    def after() -> tuple[str, str, dict[str, Any], dict[str, Any], int]:
        second = subject_sections(subject)
        other = Message.objects.filter(conversation_id=other_welcome["conversation_id"]).count()
        return database_dump(), redis_dump(), second, _usage(tenant.pk), other

    dump, redis_text, second, usage_after, other_after = await database_sync_to_async(after)()
    logs = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert "data request" in logs  # the log was captured
    for string in planted:
        assert string not in dump, f"{string} left in Postgres"
        assert string not in redis_text, f"{string} left in Redis"
        assert string not in logs, f"{string} logged"
    for value in sealed:
        assert value not in dump, "an encrypted message of the person left in Postgres"
    assert all(value in dump for value in other_sealed)  # the other person is untouched
    assert other_after == other_messages
    assert usage["prompt"]
    assert usage_after == usage  # aggregates survive
    # A second export holds nothing, and the person can no longer be found.
    assert all(not records for store in second.values() for records in store.values())
    with pytest.raises(SubjectNotFound):
        await database_sync_to_async(data_request_preview)(
            tenant_id=tenant.pk, selector=selector_from("conversation_id", conversation_id)
        )
    assert not await database_sync_to_async(
        Contact.objects.filter(pk__in=list(subject.contact_ids)).exists
    )()

    # The certificate is in the tenant's audit log, and the chain still verifies.
    def audit_after() -> tuple[dict[str, Any], bool]:
        event = AuditEvent.objects.select_related("detail").get(
            tenant_id=tenant.pk, action="data.erase"
        )
        return event.detail.data, verify_chain(tenant.pk).intact

    logged_certificate, intact = await database_sync_to_async(audit_after)()
    assert logged_certificate["reference"] == request.reference
    assert logged_certificate["counts"] == certificate["counts"]
    assert intact
