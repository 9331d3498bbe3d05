"""The personal data the conversations app holds, registered with the compliance layer
(`supportbot.compliance.registry`) at start-up: who a selector names, and one store per kind of
row or Redis key, each able to export and erase what it holds about a person.

A person within a tenant is every contact that shares their email or verified identity `sub`
(`Contact.external_id`), and every conversation of those contacts. What survives an erasure is
the tenant's aggregate usage (`TenantUsageDay`), which names no conversation or person.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet

from conversations.handoff import reply_cancel_key
from conversations.models import Contact, Conversation, LLMCall, Message, ReplyJob, ToolInvocation
from conversations.stream_state import snapshot_key
from conversations.summaries import summary_lock_key, summary_pending_key
from supportbot.compliance.encryption import blind_index_lookup
from supportbot.compliance.registry import (
    DataSubject,
    SubjectSelector,
    register_store,
    register_subject_finder,
)
from supportbot.redis_store import get_redis, redis_key

Records = dict[str, list[dict[str, Any]]]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def contacts_by_email_or_sub(tenant_id: int, *, email: str = "", sub: str = "") -> Q:
    """The tenant's contacts with this email or verified `sub`: the one lookup by either, through
    the blind indexes (the fields themselves are encrypted)."""
    condition = Q(pk__in=[])
    email_index = blind_index_lookup(tenant_id, email) if email.strip() else None
    if email_index:
        condition |= Q(email_index=email_index)
    sub_index = blind_index_lookup(tenant_id, sub, kind="external_id") if sub.strip() else None
    if sub_index:
        condition |= Q(external_id_index=sub_index)
    return condition & Q(tenant_id=tenant_id)


def _first_contacts(tenant_id: int, selector: SubjectSelector) -> list[Contact]:
    contacts = Contact.objects.filter(tenant_id=tenant_id)
    if selector.contact_id:
        contact_id = _uuid(selector.contact_id)
        return list(contacts.filter(pk=contact_id)) if contact_id else []
    if selector.conversation_id:
        conversation_id = _uuid(selector.conversation_id)
        if conversation_id is None:
            return []
        return list(contacts.filter(conversations__pk=conversation_id, tenant_id=tenant_id))
    if selector.email or selector.identity_sub:
        return list(
            Contact.objects.filter(
                contacts_by_email_or_sub(tenant_id, email=selector.email, sub=selector.identity_sub)
            )
        )
    return []


def subject_find(tenant_id: int, selector: SubjectSelector) -> DataSubject | None:
    """The person `selector` names in the tenant: the contacts found, every other contact with
    their email or `sub`, and all those contacts' conversations."""
    found = _first_contacts(tenant_id, selector)
    if not found:
        return None
    contact_ids = {contact.pk for contact in found}
    for contact in found:
        if contact.email or contact.external_id:
            same_person = contacts_by_email_or_sub(
                tenant_id, email=contact.email, sub=contact.external_id
            )
            contact_ids |= set(Contact.objects.filter(same_person).values_list("pk", flat=True))
    conversation_ids = Conversation.objects.filter(
        tenant_id=tenant_id, contact_id__in=contact_ids
    ).values_list("pk", flat=True)
    return DataSubject(
        tenant_id=tenant_id,
        contact_ids=frozenset(str(pk) for pk in contact_ids),
        conversation_ids=frozenset(str(pk) for pk in conversation_ids),
    )


def _conversations(subject: DataSubject) -> QuerySet[Conversation]:
    return Conversation.objects.filter(
        tenant_id=subject.tenant_id, pk__in=list(subject.conversation_ids)
    )


def _of_conversations(model: Any, subject: DataSubject) -> QuerySet[Any]:
    return model.objects.filter(
        tenant_id=subject.tenant_id, conversation_id__in=list(subject.conversation_ids)
    )


def _delete(rows: QuerySet[Any]) -> int:
    with transaction.atomic():
        count = rows.count()
        rows.delete()
    return count


class ContactStore:
    name = "conversations.contacts"

    def _rows(self, subject: DataSubject) -> QuerySet[Contact]:
        return Contact.objects.filter(tenant_id=subject.tenant_id, pk__in=list(subject.contact_ids))

    def export(self, subject: DataSubject) -> Records:
        return {
            "contacts": [
                {
                    "id": str(c.pk),
                    "name": c.name,
                    "email": c.email,
                    "verified_identity": c.external_id,
                    "channel": c.channel,
                    "channel_user_id": c.channel_user_id,
                    "locale": c.locale,
                    "created_at": _iso(c.created_at),
                    "last_seen_at": _iso(c.last_seen_at),
                }
                for c in self._rows(subject).order_by("created_at")
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        return {"contacts": _delete(self._rows(subject))}


class ConversationStore:
    """Conversations with their summaries. Erasing one tells its sockets (`erased`)."""

    name = "conversations.conversations"

    def export(self, subject: DataSubject) -> Records:
        return {
            "conversations": [
                {
                    "id": str(c.pk),
                    "contact_id": str(c.contact_id),
                    "channel": c.channel,
                    "status": c.status,
                    "language": c.language,
                    "handoff_reason": c.handoff_reason,
                    "summary": c.summary,
                    "created_at": _iso(c.created_at),
                    "last_message_at": _iso(c.last_message_at),
                }
                for c in _conversations(subject).order_by("created_at")
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        return {"conversations": _delete(_conversations(subject))}


class MessageStore:
    name = "conversations.messages"

    def export(self, subject: DataSubject) -> Records:
        rows = _of_conversations(Message, subject).order_by("conversation_id", "seq")
        return {
            "messages": [
                {
                    "id": str(m.pk),
                    "conversation_id": str(m.conversation_id),
                    "seq": m.seq,
                    "role": m.role,
                    "text": m.text,
                    "status": m.status,
                    "language": m.language,
                    "sources": m.sources,
                    "model": m.model,
                    "created_at": _iso(m.created_at),
                }
                for m in rows
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        return {"messages": _delete(_of_conversations(Message, subject))}


class ToolInvocationStore:
    name = "conversations.tool_invocations"

    def export(self, subject: DataSubject) -> Records:
        rows = _of_conversations(ToolInvocation, subject).order_by("created_at")
        return {
            "tool_invocations": [
                {
                    "conversation_id": str(t.conversation_id),
                    "message_id": str(t.message_id) if t.message_id else None,
                    "name": t.name,
                    "arguments": t.arguments,
                    "status": t.status,
                    "result": t.result,
                    "created_at": _iso(t.created_at),
                }
                for t in rows
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        return {"tool_invocations": _delete(_of_conversations(ToolInvocation, subject))}


class LLMCallStore:
    """The person's model calls (the tenant's per-day usage is kept apart and survives)."""

    name = "conversations.llm_calls"

    def export(self, subject: DataSubject) -> Records:
        rows = _of_conversations(LLMCall, subject).order_by("created_at")
        return {
            "llm_calls": [
                {
                    "conversation_id": str(c.conversation_id),
                    "purpose": c.purpose,
                    "provider": c.provider,
                    "model": c.model,
                    "outcome": c.outcome,
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens,
                    "cost": str(c.cost),
                    "created_at": _iso(c.created_at),
                }
                for c in rows
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        return {"llm_calls": _delete(_of_conversations(LLMCall, subject))}


class ReplyJobStore:
    name = "conversations.reply_jobs"

    def export(self, subject: DataSubject) -> Records:
        rows = _of_conversations(ReplyJob, subject).order_by("created_at")
        return {
            "reply_jobs": [
                {
                    "conversation_id": str(j.conversation_id),
                    "state": j.state,
                    "attempts": j.attempts,
                    "created_at": _iso(j.created_at),
                }
                for j in rows
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        return {"reply_jobs": _delete(_of_conversations(ReplyJob, subject))}


def _existing(keys: list[str]) -> list[str]:
    """The `keys` that exist in Redis (one round trip)."""
    if not keys:
        return []
    pipe = get_redis().pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return [key for key, found in zip(keys, pipe.execute(), strict=True) if found]


class RedisStateStore:
    """What Redis holds about the person: snapshots of streaming replies (their text), the
    per-visitor message counters, the conversations counted against their client address,
    summary and cancellation flags. (Celery keeps no results: CELERY_RESULT_BACKEND is unset.)
    """

    name = "conversations.redis"

    def _message_ids(self, subject: DataSubject) -> list[str]:
        rows = _of_conversations(Message, subject).values_list("pk", flat=True)
        return [str(pk) for pk in rows]

    def _keys(self, subject: DataSubject) -> dict[str, list[str]]:
        redis = get_redis()
        job_ids = _of_conversations(ReplyJob, subject).values_list("pk", flat=True)
        flags = [summary_pending_key(c) for c in subject.conversation_ids]
        flags += [summary_lock_key(c) for c in subject.conversation_ids]
        flags += [reply_cancel_key(job_id) for job_id in job_ids]
        counters: list[str] = []
        for contact_id in subject.contact_ids:
            counters += redis.scan_iter(match=redis_key("visitor-messages", contact_id, "*"))
        snapshots = [snapshot_key(m) for m in self._message_ids(subject)]
        return {
            "stream_snapshots": _existing(snapshots),
            "flags": _existing(flags),
            "rate_limit_counters": counters,
        }

    def _client_counts(self, subject: DataSubject) -> Iterable[str]:
        redis = get_redis()
        members = list(subject.conversation_ids)
        for key in redis.scan_iter(match=redis_key("client-conversations", "*")):
            if members and any(s is not None for s in redis.zmscore(key, members)):
                yield key

    def export(self, subject: DataSubject) -> Records:
        redis = get_redis()
        keys = self._keys(subject)
        snapshots = []
        for key in keys["stream_snapshots"]:
            data: dict[str, str] = redis.hgetall(key)  # type: ignore[assignment]
            snapshots.append({"message_id": key.rsplit(":", 1)[-1], "text": data.get("text", "")})
        return {
            "stream_snapshots": snapshots,
            "rate_limit_counters": [
                {"kind": "messages per minute"} for _ in keys["rate_limit_counters"]
            ],
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        redis = get_redis()
        keys = self._keys(subject)
        counted = 0
        for key in self._client_counts(subject):
            counted += int(redis.zrem(key, *subject.conversation_ids))
        for found in keys.values():
            if found:
                redis.delete(*found)
        return {
            "stream_snapshots": len(keys["stream_snapshots"]),
            "redis_flags": len(keys["flags"]),
            "rate_limit_counters": len(keys["rate_limit_counters"]) + counted,
        }


def personal_data_register() -> None:
    """Register the finder and the stores; the rows naming the person (contacts) go last, so an
    erasure that stopped half way still finds them when it runs again."""
    register_subject_finder(subject_find)
    for store in (
        RedisStateStore(),
        LLMCallStore(),
        ToolInvocationStore(),
        ReplyJobStore(),
        MessageStore(),
        ConversationStore(),
        ContactStore(),
    ):
        register_store(store)
