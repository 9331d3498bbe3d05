"""Handing a conversation to a person, and stopping the assistant's replies when that happens."""

import re
from collections.abc import Iterable
from functools import partial
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from conversations import frames
from conversations.audit_trail import conversation_event
from conversations.broadcast import broadcast_on_commit
from conversations.messages import conversation_changed, message_append
from conversations.models import Conversation, Message, ReplyJob
from conversations.notices import notice
from conversations.stream_state import snapshot_seal
from supportbot.redis_store import get_redis, redis_key

_CANCEL_TTL_SECONDS = 600

# A visitor asking for a person, in the languages the widget speaks.
_ASKS_FOR_PERSON = re.compile(
    r"\b("
    r"(talk|speak|chat)\s+(to|with)\s+(a\s+|an\s+|the\s+)?(human|person|agent|someone|operator|representative)"
    r"|real\s+(person|human)|human\s+agent|customer\s+service\s+agent"
    r"|hablar\s+con\s+(una\s+persona|un\s+humano|un\s+agente|alguien)|agente\s+humano"
    r"|parler\s+(à|a)\s+(une\s+personne|un\s+humain|un\s+conseiller|quelqu'un)|conseiller\s+humain"
    r"|mit\s+(einem|einer)\s+(menschen|mitarbeiter|mitarbeiterin|person)\s+sprechen"
    r"|falar\s+com\s+(uma\s+pessoa|um\s+humano|um\s+atendente|algu[eé]m)|atendente\s+humano"
    r")\b",
    re.IGNORECASE,
)


def asks_for_a_person(text: str) -> bool:
    """True when the visitor's words ask for a human."""
    return bool(_ASKS_FOR_PERSON.search(text))


def _cancel_key(job_id: int) -> str:
    return redis_key("reply-cancel", job_id)


def reply_cancel_key(job_id: int) -> str:
    """The Redis key of a reply job's cancellation flag (erased with the person's data)."""
    return _cancel_key(job_id)


def reply_cancel_requested(job_id: int) -> bool:
    return bool(get_redis().exists(_cancel_key(job_id)))


def reply_cancel_flags_clear(job_ids: Iterable[int]) -> None:
    """Remove the cancel flags of `job_ids` (removed reply jobs), if any is left."""
    keys = [_cancel_key(job_id) for job_id in job_ids]
    if keys:
        get_redis().delete(*keys)


def _open_jobs_locked(conversation_id: UUID | str, *, except_job: int | None) -> list[ReplyJob]:
    jobs = (
        ReplyJob.objects.select_for_update(of=("self",))
        .filter(
            conversation_id=conversation_id,
            state__in=[ReplyJob.State.QUEUED, ReplyJob.State.RUNNING],
        )
        .select_related("reply")
        .order_by("pk")
    )
    if except_job is not None:
        jobs = jobs.exclude(pk=except_job)
    return list(jobs)


def conversation_lock(
    conversation_id: UUID | str, *, except_job: int | None = None
) -> Conversation:
    """Lock the conversation's unfinished reply jobs, then the conversation itself (inside the
    caller's transaction), and return the conversation as stored now.

    Reply workers lock their job before they touch the conversation row (a new `seq`); every
    state change of a conversation takes the locks in this same order, so a handoff or a
    takeover never deadlocks with a reply in progress. `except_job` is the caller's own job
    (the reply asking for a handoff), which it already holds.
    """
    _open_jobs_locked(conversation_id, except_job=except_job)
    return (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("assigned_agent")
        .get(pk=conversation_id)
    )


def _cancel_running_replies(conversation: Conversation, *, except_job: int | None) -> None:
    """Cancel the conversation's queued and streaming replies (inside the caller's transaction).

    A streaming reply keeps the text the visitor already saw and ends as `failed`.
    """
    for job in _open_jobs_locked(conversation.pk, except_job=except_job):
        job.state = ReplyJob.State.CANCELLED
        job.save(update_fields=["state", "updated_at"])
        transaction.on_commit(partial(_flag_cancelled, job.pk))
        reply = job.reply
        if reply is not None and reply.status == Message.Status.STREAMING:
            # Sealed: the worker publishes no delta past this text (see stream_state).
            reply.text = snapshot_seal(reply.pk).text
            reply.status = Message.Status.FAILED
            reply.completed_at = timezone.now()
            reply.save(update_fields=["text", "status", "completed_at"])
            broadcast_on_commit(conversation.pk, frames.message_frame(reply))


def _flag_cancelled(job_id: int) -> None:
    get_redis().set(_cancel_key(job_id), "1", ex=_CANCEL_TTL_SECONDS)


def conversation_request_agent(
    *, conversation_id: UUID | str, reason: str, from_job: int | None = None, notify: bool = True
) -> bool:
    """Move a conversation to "waiting for an agent": the bot stops answering.

    Cancels replies in flight (except `from_job`, the reply that asked for the handoff) and tells
    the visitor in their language (unless `notify` is False: the caller says it itself).
    False when the conversation was not with the bot.
    """
    with transaction.atomic():
        conversation = conversation_lock(conversation_id, except_job=from_job)
        if conversation.status != Conversation.Status.BOT:
            return False
        conversation.status = Conversation.Status.WAITING_FOR_AGENT
        conversation.handoff_reason = reason[:300]
        conversation.save(update_fields=["status", "handoff_reason", "updated_at"])
        conversation_changed(conversation)
        _cancel_running_replies(conversation, except_job=from_job)
        if notify:
            message_append(
                conversation=conversation,
                role=Message.Role.SYSTEM,
                text=notice("handoff", conversation.language),
            )
        conversation_event(
            conversation,
            action="handoff",
            actor="assistant" if from_job is not None else "system",
            details={"reason": conversation.handoff_reason},
        )
    return True


def conversation_cancel_replies(*, conversation: Conversation) -> None:
    """Stop every reply of the conversation at once (an agent took it over)."""
    with transaction.atomic():
        _cancel_running_replies(conversation, except_job=None)
