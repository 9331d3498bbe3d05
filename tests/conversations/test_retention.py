"""Retention: with time moved past a tenant's periods, exactly its expired rows go.

Rows are aged by moving their timestamps back through SQL (`update` writes them as given), and
each run is given its own `now`: the same rows, one tenant's limits, nothing else touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import DatabaseError
from django.urls import reverse
from django.utils import timezone

from conversations import retention as retention_module
from conversations.messages import message_append
from conversations.models import Contact, Conversation, LLMCall, Message, ReplyJob, ToolInvocation
from conversations.retention import CLASSES, retention_run
from conversations.stream_state import snapshot_read, snapshot_write
from supportbot.celery import app as celery_app
from supportbot.redis_store import get_redis, redis_key
from supportbot.tenants.models import Tenant, TenantUsageDay
from tests.support.admin_forms import tenant_change_data

pytestmark = pytest.mark.django_db

NOW = timezone.now()
OLD = NOW - timedelta(days=40)  # past a 30-day limit
RECENT = NOW - timedelta(days=5)


@dataclass
class Chat:
    conversation: Conversation
    contact: Contact
    messages: list[Message]


def _conversation(
    tenant: Tenant, *, at: datetime, contact: Contact | None = None, **fields: Any
) -> Chat:
    """A conversation of a visitor's question and its reply (with its job, a tool call and an
    LLM call record), its last activity at `at`."""
    contact = contact or Contact.objects.create(tenant=tenant)
    conversation = Conversation.objects.create(tenant=tenant, contact=contact)
    question = message_append(conversation=conversation, role="user", text="Where is my order?")
    reply = message_append(
        conversation=conversation, role="assistant", text="It ships today.", broadcast=False
    )
    ReplyJob.objects.create(
        tenant=tenant,
        conversation=conversation,
        trigger=question,
        reply=reply,
        state=fields.pop("job_state", ReplyJob.State.DONE),
    )
    ToolInvocation.objects.create(
        tenant=tenant, conversation=conversation, message=reply, name="search_knowledge",
        arguments='{"query": "order"}', status="ok",
    )  # fmt: skip
    LLMCall.objects.create(
        tenant=tenant, conversation=conversation, message=reply, provider="openai",
        model="m", outcome="ok", latency_ms=10, created_at=at,
    )  # fmt: skip
    Conversation.objects.filter(pk=conversation.pk).update(
        created_at=at, updated_at=at, last_message_at=at, **fields
    )
    Message.objects.filter(conversation=conversation).update(created_at=at)
    LLMCall.objects.filter(conversation=conversation).update(created_at=at)
    Contact.objects.filter(pk=contact.pk).update(created_at=at, last_seen_at=at)
    conversation.refresh_from_db()
    contact.refresh_from_db()
    return Chat(conversation, contact, [question, reply])


@pytest.fixture
def tenants(make_tenant: Any) -> tuple[Tenant, Tenant]:
    limits = {"conversation_retention_days": 30, "llm_call_retention_days": 30}
    alpha, _ = make_tenant(name="Alpha", **limits)
    beta, _ = make_tenant(name="Beta", **limits)
    return alpha, beta


def _exists(model: Any, pk: Any) -> bool:
    return bool(model.objects.filter(pk=pk).exists())


def test_the_expired_rows_of_one_tenant_go_and_nothing_else(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, beta = tenants
    expired = _conversation(alpha, at=OLD)
    fresh = _conversation(alpha, at=RECENT)
    # The same visitor: an old conversation and a fresh one (their contact stays).
    returning = _conversation(alpha, at=RECENT)
    returning_old = _conversation(alpha, at=OLD, contact=returning.contact)
    with_agent = _conversation(alpha, at=OLD, status=Conversation.Status.WITH_AGENT)
    replying = _conversation(alpha, at=OLD, job_state=ReplyJob.State.RUNNING)
    # A contact stored at hello that never wrote, long ago; and one seen recently.
    silent_old = Contact.objects.create(tenant=alpha)
    Contact.objects.filter(pk=silent_old.pk).update(last_seen_at=OLD)
    silent_new = Contact.objects.create(tenant=alpha)
    other = _conversation(beta, at=OLD)
    old_call = LLMCall.objects.create(
        tenant=alpha, provider="openai", model="m", outcome="ok", latency_ms=5
    )
    LLMCall.objects.filter(pk=old_call.pk).update(created_at=OLD)
    usage = TenantUsageDay.objects.create(
        tenant=alpha, day=OLD.date(), model="m", requests=3, cost=Decimal("0.5")
    )

    result = retention_run(tenant=alpha, now=NOW)

    assert result.counts == {
        "conversations": 2,
        "messages": 4,
        "tool_invocations": 2,
        "reply_jobs": 2,
        "contacts": 2,  # the expired conversation's visitor, and the silent old one
        # The four old conversations' calls (kept ones' too: records expire on their own) and
        # one without a conversation.
        "llm_calls": 4 + 1,
        "audit_events": 0,
    }
    for chat in (expired, returning_old):
        assert not _exists(Conversation, chat.conversation.pk)
        assert not Message.objects.filter(conversation_id=chat.conversation.pk).exists()
        assert not ToolInvocation.objects.filter(conversation_id=chat.conversation.pk).exists()
        assert not ReplyJob.objects.filter(conversation_id=chat.conversation.pk).exists()
    assert not _exists(Contact, expired.contact.pk)
    assert not _exists(Contact, silent_old.pk)
    assert _exists(Contact, silent_new.pk)
    assert _exists(Contact, returning.contact.pk)
    for chat in (fresh, returning, with_agent, replying, other):
        assert _exists(Conversation, chat.conversation.pk)
        assert Message.objects.filter(conversation_id=chat.conversation.pk).count() == 2
        assert _exists(Contact, chat.contact.pk)
    # Call records: the old ones of Alpha went, whatever their conversation; Beta's and the
    # fresh ones stay, and so do the daily totals.
    assert not LLMCall.objects.filter(tenant=alpha, created_at__lt=NOW - timedelta(days=30))
    assert LLMCall.objects.filter(tenant=alpha).count() == 2
    assert LLMCall.objects.filter(tenant=beta).count() == 1
    assert _exists(TenantUsageDay, usage.pk)


def test_a_dry_run_counts_and_deletes_nothing(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = tenants
    _conversation(alpha, at=OLD)
    _conversation(alpha, at=RECENT)
    before = {m: m.objects.count() for m in (Conversation, Message, Contact, LLMCall, ReplyJob)}

    dry = retention_run(tenant=alpha, now=NOW, dry_run=True)

    assert dry.dry_run
    assert {m: m.objects.count() for m in before} == before
    real = retention_run(tenant=alpha, now=NOW)
    assert dry.counts == real.counts
    assert real.counts["conversations"] == 1
    assert real.counts["messages"] == 2
    assert real.counts["contacts"] == 1


def test_a_class_without_a_period_is_kept(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = tenants
    alpha.conversation_retention_days = None
    alpha.llm_call_retention_days = None
    alpha.audit_retention_days = None
    alpha.save()
    chat = _conversation(alpha, at=NOW - timedelta(days=4000))

    result = retention_run(tenant=alpha, now=NOW)

    assert result.counts == dict.fromkeys(CLASSES)
    assert _exists(Conversation, chat.conversation.pk)
    assert LLMCall.objects.filter(tenant=alpha).count() == 1


def test_time_moved_forward_expires_what_was_fresh(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = tenants
    chat = _conversation(alpha, at=RECENT)
    other = _conversation(beta, at=RECENT)
    assert retention_run(tenant=alpha, now=NOW).counts["conversations"] == 0
    assert retention_run(tenant=alpha, now=NOW + timedelta(days=26)).counts["conversations"] == 1
    assert not _exists(Conversation, chat.conversation.pk)
    assert _exists(Conversation, other.conversation.pk)


def test_the_run_is_audited_and_expires_the_audit_log(
    tenants: tuple[Tenant, Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, _ = tenants
    _conversation(alpha, at=OLD)
    events: list[dict[str, Any]] = []
    expiries: list[dict[str, Any]] = []

    def expire_events(**kwargs: Any) -> int:
        expiries.append(kwargs)
        return 7

    monkeypatch.setattr(retention_module, "record_event", lambda **kw: events.append(kw))
    monkeypatch.setattr(retention_module, "expire_events", expire_events)

    result = retention_run(tenant=alpha, now=NOW)

    assert expiries == [
        {"tenant_id": alpha.pk, "before": NOW - timedelta(days=alpha.audit_retention_days or 0)}
    ]
    assert result.counts["audit_events"] == 7
    assert events == [
        {
            "tenant_id": alpha.pk,
            "action": "retention.run",
            "target": f"tenant:{alpha.pk}",
            "details": {"dry_run": False, "counts": result.counts},
        }
    ]


def test_the_removed_conversations_redis_state_goes(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = tenants
    expired = _conversation(alpha, at=OLD)
    fresh = _conversation(alpha, at=RECENT)
    reply, fresh_reply = expired.messages[1], fresh.messages[1]
    snapshot_write(reply.pk, text="It ships", index=1)
    snapshot_write(fresh_reply.pk, text="It ships", index=1)
    pending = redis_key("summary-pending", expired.conversation.pk)
    get_redis().set(pending, "1", ex=300)

    with pytest.MonkeyPatch.context() as patch:
        # Commit hooks run at once: the test's transaction never commits.
        patch.setattr(retention_module.transaction, "on_commit", lambda func, *a, **k: func())
        retention_run(tenant=alpha, now=NOW)

    assert snapshot_read(reply.pk) is None
    assert not get_redis().exists(pending)
    assert snapshot_read(fresh_reply.pk) is not None


def test_the_command_prints_per_tenant_and_class(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = tenants
    _conversation(alpha, at=OLD)
    other = _conversation(beta, at=OLD)
    out = StringIO()

    call_command("retention_run", "--tenant", alpha.slug, "--dry-run", stdout=out)

    text = out.getvalue()
    assert f"{alpha.slug} (dry run: nothing removed)" in text
    assert "conversations     1 would go" in text
    assert "messages          2 would go" in text
    assert beta.slug not in text
    assert Conversation.objects.filter(tenant=alpha).count() == 1

    out = StringIO()
    call_command("retention_run", "--tenant", alpha.slug, stdout=out)
    assert "conversations     1 removed" in out.getvalue()
    assert not Conversation.objects.filter(tenant=alpha).exists()
    # Another tenant's rows are not touched by a run named for this one.
    assert _exists(Conversation, other.conversation.pk)


def test_the_command_runs_every_tenant_and_names_kept_classes(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, beta = tenants
    beta.audit_retention_days = None
    beta.save()
    out = StringIO()
    call_command("retention_run", "--dry-run", stdout=out)
    text = out.getvalue()
    assert alpha.slug in text
    assert beta.slug in text
    assert "audit_events      kept (no retention period)" in text


def test_the_command_refuses_an_unknown_tenant(tenants: tuple[Tenant, Tenant]) -> None:
    with pytest.raises(CommandError, match="No tenant with the slug 'nobody'"):
        call_command("retention_run", "--tenant", "nobody")


def test_the_nightly_task_is_scheduled_and_runs_every_tenant(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, beta = tenants
    entry = settings.CELERY_BEAT_SCHEDULE["enforce-retention"]
    assert entry["task"] == "conversations.enforce_retention"
    assert isinstance(entry["schedule"], crontab)
    celery_app.loader.import_default_modules()  # what a worker does at start: autodiscovery
    assert entry["task"] in celery_app.tasks
    a = _conversation(alpha, at=OLD)
    b = _conversation(beta, at=OLD)
    fresh = _conversation(beta, at=RECENT)

    assert celery_app.tasks[entry["task"]].apply().get() >= 2

    assert not _exists(Conversation, a.conversation.pk)
    assert not _exists(Conversation, b.conversation.pk)
    assert _exists(Conversation, fresh.conversation.pk)


# --- the tenant's periods ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("conversation_retention_days", 0),
        ("conversation_retention_days", 4000),
        ("llm_call_retention_days", 0),
        ("audit_retention_days", 29),
        ("audit_retention_days", 4000),
    ],
)
def test_periods_are_bounded(make_tenant: Any, field: str, value: int) -> None:
    tenant, _ = make_tenant()
    setattr(tenant, field, value)
    with pytest.raises(ValidationError) as raised:
        tenant.full_clean()
    assert field in raised.value.message_dict


def test_a_new_tenant_has_the_documented_defaults(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    assert tenant.conversation_retention_days == 365
    assert tenant.llm_call_retention_days == 90
    assert tenant.audit_retention_days == 3 * 365


def test_the_admin_edits_the_periods(make_tenant: Any, admin_client: Any) -> None:
    tenant, _ = make_tenant()
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    page = admin_client.get(url)
    assert "Retention" in page.content.decode()
    data = tenant_change_data(page.context["adminform"].form)
    data.update(conversation_retention_days="60", llm_call_retention_days="")
    response = admin_client.post(url, data)
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.conversation_retention_days == 60
    assert tenant.llm_call_retention_days is None

    data.update(audit_retention_days="1")
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "audit_retention_days" in response.context["adminform"].form.errors


def test_a_failing_tenant_does_not_stop_the_others(
    tenants: tuple[Tenant, Tenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta = tenants
    b = _conversation(beta, at=OLD)
    real_expire = retention_module._conversations_expire

    def expire(tenant: Tenant, *args: Any, **kwargs: Any) -> Any:
        if tenant.pk == alpha.pk:
            raise DatabaseError("lost the connection")
        return real_expire(tenant, *args, **kwargs)

    monkeypatch.setattr(retention_module, "_conversations_expire", expire)

    results = retention_module.retention_run_all(tenants=[alpha, beta], now=NOW)

    assert [r.tenant_id for r in results] == [beta.pk]
    assert not _exists(Conversation, b.conversation.pk)
