"""Generating an assistant reply: claim the job, stream from the model, persist once.

A reply job may be delivered more than once (a worker died, Redis redelivered it). The
`ReplyJob` row decides: a finished job is a no-op; a running job whose lease is still being
renewed is left to its worker; a running job whose lease lapsed is taken over and the reply
is generated again from the start under the same message id.
"""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations import frames
from conversations.broadcast import broadcast_frame
from conversations.models import Conversation, LLMCall, Message, ReplyJob
from conversations.prompts import build_reply_prompt
from conversations.services import message_append
from conversations.stream_state import snapshot_clear, snapshot_write
from supportbot.llm import CallRecord, Finished, LLMError, StreamInterrupted, TextDelta, stream_chat
from supportbot.tenants.selectors import tenant_chat_params, tenant_provider_config

logger = logging.getLogger(__name__)

HISTORY_LIMIT = 200

NOTICE_LENGTH = "This answer was cut short because it reached its length limit."
NOTICE_CONTENT_FILTER = "Part of this answer was withheld by the content filter."
NOTICE_UNAVAILABLE = (
    "Sorry, the assistant can't answer right now. Your message is saved and a person from "
    "our team can see it."
)
NOTICE_INTERRUPTED = (
    "Sorry, this answer was interrupted before it was complete. Your message is saved and a "
    "person from our team can see it."
)


class LeaseHeld(Exception):
    """Another worker is generating this reply; try again when its lease may have lapsed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"reply lease held for {seconds:.1f}s more")
        self.seconds = seconds


@dataclass
class _Claim:
    job_id: int
    attempt: int
    conversation: Conversation
    reply: Message
    trigger: Message
    prompt: list[dict[str, str]]


def _lease_seconds() -> float:
    return float(settings.REPLY_LEASE_SECONDS)


def _claim(job_id: int) -> _Claim | None:
    with transaction.atomic():
        job = (
            ReplyJob.objects.select_for_update(of=("self",))
            .select_related("conversation__tenant", "trigger", "reply")
            .filter(pk=job_id)
            .first()
        )
        if job is None or job.state in (
            ReplyJob.State.DONE,
            ReplyJob.State.FAILED,
            ReplyJob.State.CANCELLED,
        ):
            return None
        now = timezone.now()
        if (
            job.state == ReplyJob.State.RUNNING
            and job.lease_expires_at
            and job.lease_expires_at > now
        ):
            raise LeaseHeld((job.lease_expires_at - now).total_seconds())
        conversation = job.conversation
        if conversation.status != Conversation.Status.BOT:
            job.state = ReplyJob.State.CANCELLED
            job.save(update_fields=["state", "updated_at"])
            return None
        if job.reply is None:
            job.reply = message_append(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                text="",
                status=Message.Status.STREAMING,
                broadcast=False,
            )
        else:
            job.reply.text = ""
            job.reply.status = Message.Status.STREAMING
            job.reply.save(update_fields=["text", "status"])
        job.state = ReplyJob.State.RUNNING
        job.attempts += 1
        job.lease_expires_at = now + timedelta(seconds=_lease_seconds())
        job.save(update_fields=["state", "attempts", "lease_expires_at", "reply", "updated_at"])
        history = list(
            Message.objects.filter(conversation=conversation, seq__lt=job.reply.seq).order_by(
                "-seq"
            )[:HISTORY_LIMIT]
        )
        history.reverse()
    tenant = conversation.tenant
    return _Claim(
        job_id=job.pk,
        attempt=job.attempts,
        conversation=conversation,
        reply=job.reply,
        trigger=job.trigger,
        prompt=build_reply_prompt(
            persona=tenant.persona, history=history, token_budget=tenant.history_token_budget
        ),
    )


def _renew_lease(claim: _Claim) -> bool:
    """Extend our lease; False when another worker has taken the job over."""
    return bool(
        ReplyJob.objects.filter(
            pk=claim.job_id, attempts=claim.attempt, state=ReplyJob.State.RUNNING
        ).update(lease_expires_at=timezone.now() + timedelta(seconds=_lease_seconds()))
    )


def _record_call(claim: _Claim, record: CallRecord) -> None:
    LLMCall.objects.create(
        tenant_id=claim.conversation.tenant_id,
        conversation_id=claim.conversation.pk,
        message_id=claim.reply.pk,
        purpose="reply",
        provider=record.provider,
        model=record.model,
        outcome=record.outcome,
        error_code=record.error_code or "",
        finish_reason=record.finish_reason or "",
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        latency_ms=record.latency_ms,
        first_token_ms=record.first_token_ms,
        attempts=record.attempts,
    )


def _lock_own_job(claim: _Claim) -> ReplyJob | None:
    job = ReplyJob.objects.select_for_update().filter(pk=claim.job_id).first()
    if job is None or job.attempts != claim.attempt or job.state != ReplyJob.State.RUNNING:
        return None
    return job


def _finish(claim: _Claim, finished: Finished) -> None:
    reply = claim.reply
    with transaction.atomic():
        job = _lock_own_job(claim)
        if job is None:
            return
        notice = None
        reply.text = finished.text
        reply.status = Message.Status.COMPLETE
        if finished.finish_reason == "length":
            notice = NOTICE_LENGTH
        elif finished.finish_reason == "content_filter":
            notice = NOTICE_CONTENT_FILTER
        elif not finished.text.strip():
            reply.status = Message.Status.FAILED
            notice = NOTICE_UNAVAILABLE
        reply.finish_reason = finished.finish_reason or ""
        reply.model = finished.model or ""
        if finished.usage is not None:
            reply.prompt_tokens = finished.usage.prompt_tokens
            reply.completion_tokens = finished.usage.completion_tokens
        reply.latency_ms = finished.latency_ms
        reply.completed_at = timezone.now()
        reply.save()
        job.state = ReplyJob.State.DONE
        job.save(update_fields=["state", "updated_at"])
        final = frames.message_frame(reply)
        conversation_id = claim.conversation.pk
        transaction.on_commit(lambda: broadcast_frame(conversation_id, final))
        if notice:
            message_append(conversation=claim.conversation, role=Message.Role.SYSTEM, text=notice)
    snapshot_clear(reply.pk)


def _fail(claim: _Claim, error: LLMError, partial_text: str) -> None:
    reply = claim.reply
    with transaction.atomic():
        job = _lock_own_job(claim)
        if job is None:
            return
        reply.text = partial_text
        reply.status = Message.Status.FAILED
        reply.finish_reason = ""
        reply.completed_at = timezone.now()
        reply.save()
        job.state = ReplyJob.State.FAILED
        job.error_code = error.code[:40]
        job.save(update_fields=["state", "error_code", "updated_at"])
        final = frames.message_frame(reply)
        error_frame = frames.error_frame(
            "unavailable",
            "The assistant can't answer right now; your message is kept.",
            client_id=claim.trigger.client_id,
        )
        conversation_id = claim.conversation.pk

        def send() -> None:
            broadcast_frame(conversation_id, final)
            broadcast_frame(conversation_id, error_frame)

        transaction.on_commit(send)
        message_append(
            conversation=claim.conversation,
            role=Message.Role.SYSTEM,
            text=NOTICE_INTERRUPTED if partial_text else NOTICE_UNAVAILABLE,
        )
    snapshot_clear(reply.pk)


def _release(claim: _Claim) -> None:
    """Give the job back after an unexpected error, so a retry can claim it at once."""
    ReplyJob.objects.filter(
        pk=claim.job_id, attempts=claim.attempt, state=ReplyJob.State.RUNNING
    ).update(lease_expires_at=timezone.now())


def reply_generate(*, job_id: int) -> None:
    """Produce the assistant's reply for a reply job, streaming it to the conversation."""
    claim = _claim(job_id)
    if claim is None:
        return
    conversation_id = claim.conversation.pk
    message_id = str(claim.reply.pk)
    tenant = claim.conversation.tenant
    flush_interval = float(settings.REPLY_FLUSH_INTERVAL)
    renew_every = _lease_seconds() / 3

    text = ""
    pending = ""
    index = -1
    last_flush = last_renew = time.monotonic()

    def flush() -> None:
        nonlocal text, pending, index
        index += 1
        text += pending
        snapshot_write(message_id, text=text, index=index)
        broadcast_frame(
            conversation_id,
            {"type": "reply.delta", "message_id": message_id, "index": index, "text": pending},
        )
        pending = ""

    snapshot_write(message_id, text="", index=-1)
    broadcast_frame(conversation_id, {"type": "reply.start", "message_id": message_id})
    finished: Finished | None = None
    try:
        for event in stream_chat(
            tenant_provider_config(tenant),
            claim.prompt,
            tenant_chat_params(tenant),
            on_record=lambda record: _record_call(claim, record),
        ):
            if isinstance(event, TextDelta):
                pending += event.text
                now = time.monotonic()
                if index < 0 or now - last_flush >= flush_interval:
                    flush()
                    last_flush = now
                if now - last_renew >= renew_every:
                    if not _renew_lease(claim):
                        logger.warning("reply %s taken over by another worker", message_id)
                        return
                    last_renew = now
            else:
                finished = event
        if pending:
            flush()
    except StreamInterrupted as exc:
        _fail(claim, exc, exc.partial_text or text + pending)
        return
    except LLMError as exc:
        logger.warning("reply %s failed: %s", message_id, exc.code)
        _fail(claim, exc, text + pending)
        return
    except Exception:
        _release(claim)
        raise
    assert finished is not None, "stream_chat ends with Finished"
    _finish(claim, finished)


def reply_jobs_requeue_stalled(*, older_than: timedelta = timedelta(minutes=2)) -> list[int]:
    """Ids of reply jobs that lost their worker or their queue message, to enqueue again."""
    now = timezone.now()
    queued = ReplyJob.objects.filter(
        state=ReplyJob.State.QUEUED, created_at__lt=now - older_than
    ).values_list("pk", flat=True)
    running = ReplyJob.objects.filter(
        state=ReplyJob.State.RUNNING, lease_expires_at__lt=now
    ).values_list("pk", flat=True)
    return list(queued[:500]) + list(running[:500])
