"""What the audit log records: each entry point that makes an auditable change or reads a
transcript leaves one event in its tenant's chain (logins in the platform's), with ids and
facts in its details and never message text."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from conversations.agents import agent_message_post, conversation_close, conversation_take_over
from conversations.handoff import conversation_request_agent
from conversations.models import Conversation, Message, ReplyJob
from conversations.prompts import PROMPT_VERSION
from conversations.reply.generate import reply_generate
from conversations.services import message_post_from_visitor, visitor_session_open
from knowledge.ingestion import document_ingest, source_get_or_create
from knowledge.models import Chunk
from supportbot.compliance.audit import keyed_digest
from supportbot.compliance.audit_chain import verify_chain
from supportbot.compliance.models import AuditEvent
from supportbot.tenants.models import TenantMembership
from supportbot.tenants.services import tenant_rotate_identity_secret
from tests.support.admin_forms import tenant_change_data
from tests.support.llm_server import Reply

SECRET_TEXT = "my card is 4111 1111 1111 1111"
PASSWORD = "pw-audit-tests-1"


def events(tenant_id: int | None, action: str) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(tenant_id=tenant_id, action=action)
        .select_related("detail")
        .order_by("seq")
    )


def details(event: AuditEvent) -> dict[str, Any]:
    return event.detail.data


def no_text_anywhere(tenant_id: int | None) -> None:
    for event in AuditEvent.objects.filter(tenant_id=tenant_id).select_related("detail"):
        blob = json.dumps(
            [event.actor, event.target, getattr(event, "detail", None) and event.detail.data]
        )
        assert "4111" not in blob, event.action


def staff(
    username: str, tenant: Any = None, role: str = TenantMembership.Role.AGENT, **kw: Any
) -> Any:
    user = get_user_model().objects.create_user(
        username=username, password=PASSWORD, is_staff=True, **kw
    )
    if tenant is not None:
        TenantMembership.objects.create(tenant=tenant, user=user, role=role)
    return user


@pytest.fixture
def posted(make_tenant: Any, llm: Any, monkeypatch: Any) -> Message:
    monkeypatch.setattr("conversations.jobs.reply_job_enqueue", lambda job_id: None)
    tenant, _ = make_tenant()
    session = visitor_session_open(tenant=tenant, visitor_token=None, conversation_id=None)
    return message_post_from_visitor(
        conversation=session.conversation, client_id="c1", text=SECRET_TEXT
    ).message


@pytest.mark.django_db(transaction=True)
def test_a_visitor_message_and_its_reply_are_recorded(posted: Message, llm: Any) -> None:
    conversation = posted.conversation
    (message_event,) = events(posted.tenant_id, "message.visitor")
    assert message_event.actor == f"visitor:{conversation.contact_id}"
    assert message_event.target == f"conversation:{conversation.pk}"
    assert message_event.contact_id == str(conversation.contact_id)
    assert details(message_event) == {
        "message_id": str(posted.pk),
        "seq": posted.seq,
        "chars": len(SECRET_TEXT),
    }
    # A resend of the same client_id stores nothing, so records nothing.
    message_post_from_visitor(conversation=conversation, client_id="c1", text=SECRET_TEXT)
    assert len(events(posted.tenant_id, "message.visitor")) == 1

    source = source_get_or_create(tenant=conversation.tenant, name="Help", kind="upload")
    document_ingest(
        tenant=conversation.tenant,
        source=source,
        key="cards.md",
        filename="cards.md",
        content=b"# Card payments\n\nWe never ask for your card number in the chat.\n",
        language="en",
    )
    chunk_ids = set(Chunk.objects.filter(document__source=source).values_list("pk", flat=True))
    llm.enqueue(
        Reply(
            text="",
            finish_reason="tool_calls",
            tool_calls=[{"name": "search_knowledge", "arguments": '{"query": "cards"}'}],
            usage={"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45},
        )
    )
    llm.enqueue(
        Reply(
            text="We never need your card number here.",
            usage={"prompt_tokens": 60, "completion_tokens": 8, "total_tokens": 68},
        )
    )
    reply_generate(job_id=ReplyJob.objects.get(trigger=posted).pk)
    reply = Message.objects.get(conversation=conversation, role="assistant")
    (reply_event,) = events(posted.tenant_id, "reply.complete")
    assert reply_event.actor == "assistant"
    assert reply_event.contact_id == str(conversation.contact_id)
    facts = details(reply_event)
    assert facts["message_id"] == str(reply.pk)
    assert facts["model"] == "scripted-model"
    assert (facts["prompt_tokens"], facts["completion_tokens"]) == (100, 13)
    assert "cost" in facts
    assert facts["finish_reason"] == "stop"
    assert facts["chunk_ids"]
    assert set(facts["chunk_ids"]) <= chunk_ids
    assert facts["language"] == "en"
    assert facts["prompt_version"] == PROMPT_VERSION
    assert facts["tool_calls"] == ["search_knowledge"]
    no_text_anywhere(posted.tenant_id)
    assert verify_chain(posted.tenant_id).intact


@pytest.mark.django_db(transaction=True)
def test_a_handoff_and_agent_actions_are_recorded(posted: Message) -> None:
    conversation = posted.conversation
    agent = staff("ann", conversation.tenant)
    assert conversation_request_agent(conversation_id=conversation.pk, reason="Refund dispute.")
    (handoff,) = events(posted.tenant_id, "handoff")
    assert details(handoff) == {"reason": "Refund dispute."}
    assert handoff.contact_id == str(conversation.contact_id)

    conversation = Conversation.objects.get(pk=conversation.pk)
    assert conversation_take_over(conversation=conversation, agent=agent)
    agent_message_post(conversation=conversation, agent=agent, text=SECRET_TEXT)
    assert conversation_close(conversation=conversation, agent=agent)
    for action in ("agent.take_over", "agent.reply", "agent.close"):
        (event,) = events(posted.tenant_id, action)
        assert event.actor == f"user:{agent.pk}", action
        assert event.target == f"conversation:{conversation.pk}"
    assert details(events(posted.tenant_id, "agent.take_over")[0]) == {
        "from_status": "waiting_for_agent"
    }
    no_text_anywhere(posted.tenant_id)
    assert verify_chain(posted.tenant_id).intact


@pytest.mark.django_db(transaction=True)
def test_a_transcript_view_in_the_admin_is_recorded(posted: Message, make_tenant: Any) -> None:
    conversation = posted.conversation
    agent = staff("ben", conversation.tenant)
    other, _ = make_tenant(name="Other")
    stranger = staff("cid", other)
    url = reverse("admin:conversations_conversation_change", args=[conversation.pk])

    client = Client()
    client.force_login(agent)
    assert client.get(url).status_code == 200
    (view,) = events(posted.tenant_id, "transcript.view")
    assert (view.actor, view.target) == (f"user:{agent.pk}", f"conversation:{conversation.pk}")
    assert details(view) == {"page": 1, "messages": 1}

    # Another tenant's agent is not shown the transcript, and nothing is recorded.
    client.force_login(stranger)
    assert client.get(url).status_code == 302
    assert len(events(posted.tenant_id, "transcript.view")) == 1
    assert not AuditEvent.objects.filter(tenant_id=other.pk, action="transcript.view").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_worker")
async def test_an_agent_socket_join_is_recorded(posted: Message) -> None:
    from tests.conversations.test_agents import agent_welcome, connect_agent

    conversation = posted.conversation
    agent = await database_sync_to_async(staff)("dee", conversation.tenant)
    ws = await connect_agent(str(conversation.pk), agent)
    try:
        await agent_welcome(ws)
    finally:
        await ws.disconnect()
    joins = await database_sync_to_async(events)(posted.tenant_id, "agent_socket.join")
    assert [(e.actor, e.target) for e in joins] == [
        (f"user:{agent.pk}", f"conversation:{conversation.pk}")
    ]


@pytest.mark.django_db
def test_logins_and_failed_logins_are_recorded_in_the_platform_chain() -> None:
    user = staff("erin")
    client = Client()
    response = client.post("/admin/login/", {"username": "erin", "password": "wrong-password"})
    assert response.status_code == 200
    (failed,) = events(None, "login.failed")
    assert failed.actor == "anonymous"
    assert details(failed) == {"username_digest": keyed_digest("erin"), "stage": "password"}
    blob = json.dumps(details(failed)) + failed.target
    assert "erin" not in blob
    assert "wrong-password" not in blob

    response = client.post("/admin/login/", {"username": "erin", "password": PASSWORD})
    assert response.status_code == 302
    (login,) = events(None, "login")
    assert (login.actor, login.target) == (f"user:{user.pk}", f"user:{user.pk}")
    assert verify_chain(None).intact


@pytest.mark.django_db
def test_settings_key_member_and_limit_changes_are_recorded(
    make_tenant: Any, admin_client: Client
) -> None:
    tenant, _ = make_tenant(name="Settled")
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    form = admin_client.get(url).context["adminform"].form
    data = tenant_change_data(form, persona="You are Settled's helper.", message_max_chars=900)
    assert admin_client.post(url, data).status_code == 302
    (change,) = events(tenant.pk, "tenant.change")
    assert change.target == f"tenant:{tenant.pk}"
    assert change.actor.startswith("user:")
    assert {"message_max_chars", "persona"} <= set(details(change)["fields"])  # names only
    assert "Settled's helper" not in json.dumps(details(change))

    tenant_rotate_identity_secret(tenant=tenant, actor="user:7")
    (rotation,) = events(tenant.pk, "tenant.identity_secret.rotate")
    assert rotation.actor == "user:7"
    assert rotation.details_digest == ""  # nothing of the secret

    member = staff("finn")
    add = reverse("admin:tenants_tenantmembership_add")
    response = admin_client.post(
        add, {"tenant": tenant.pk, "username": "finn", "role": "agent", "display_name": "Finn"}
    )
    assert response.status_code == 302
    membership = TenantMembership.objects.get(user=member)
    (created,) = events(tenant.pk, "tenantmembership.create")
    assert created.target == f"tenantmembership:{membership.pk}"
    delete = reverse("admin:tenants_tenantmembership_delete", args=[membership.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 302
    assert len(events(tenant.pk, "tenantmembership.delete")) == 1

    call_command("tenant_limits", tenant.slug, "--tokens-per-day", "5000", stdout=StringIO())
    (limits,) = events(tenant.pk, "tenantlimits.change")
    assert (limits.actor, details(limits)) == (
        "command:tenant_limits",
        {"fields": ["tokens_per_day"]},
    )
    assert verify_chain(tenant.pk).intact
