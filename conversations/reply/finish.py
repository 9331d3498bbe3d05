"""Persisting a reply: once (only the job's current attempt may), with the notices it needs,
and broadcast on commit. A database restart does not lose the text: the save is tried again
until the database is back (`REPLY_SAVE_RETRY_SECONDS`)."""

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from conversations import frames
from conversations.audit_trail import conversation_event
from conversations.broadcast import broadcast_on_commit
from conversations.messages import message_append
from conversations.models import LLMCall, Message, ReplyJob, ToolInvocation
from conversations.notices import notice
from conversations.outbox import message_outbound_queue
from conversations.prompts import PROMPT_VERSION
from conversations.reply.claim import Claim
from conversations.review import conversation_mark_for_review, moderation_event_record
from conversations.stream_state import snapshot_clear
from supportbot.database_retry import when_database_returns
from supportbot.llm import Finished
from supportbot.tenants.usage import usage_day_add


@dataclass(frozen=True)
class Review:
    """What moderation decided of a reply, stored with it: an audit event `action`, and, when
    `reason` is set, the conversation marked for review. `details` never hold text."""

    action: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """How a reply ended: its text, and the model's `Finished` (None when degraded)."""

    text: str
    finished: Finished | None
    sources: list[dict[str, str]] = field(default_factory=list)
    handed_off: bool = False
    chunk_ids: list[int] | None = None  # the passages the reply was given (None: the prompt's)
    withheld: str = ""  # the finish reason of a reply moderation replaced ("moderated"...)
    review: Review | None = None


def _review_store(claim: Claim, review: Review) -> None:
    if review.reason:
        conversation_mark_for_review(
            conversation_id=claim.conversation.pk,
            reason=review.reason,
            categories=review.details.get("categories", ()),
            details={k: v for k, v in review.details.items() if k != "categories"},
        )
    else:
        moderation_event_record(
            conversation=claim.conversation, action=review.action, details=review.details
        )


def _settle(reply: Message, outcome: Outcome, language: str) -> list[str]:
    """Set the reply's text, status and sources; the notices to append after it."""
    finished = outcome.finished
    reply.text = outcome.text
    reply.status = Message.Status.COMPLETE
    reply.sources = outcome.sources
    reply.language = language
    if outcome.handed_off:
        if outcome.text.strip():
            return [notice("handoff", language)]
        # Nothing was said: the reply becomes the notice that a person was asked.
        reply.role = Message.Role.SYSTEM
        reply.text = notice("handoff", language)
        reply.sources = []
        return []
    if finished is not None and finished.finish_reason in ("length", "content_filter"):
        return [notice(finished.finish_reason, language)]
    if not outcome.text.strip():
        reply.status = Message.Status.FAILED
        return [notice("unavailable", language)]
    return []


def _record_model(reply: Message, finished: Finished | None) -> None:
    if finished is None:
        reply.finish_reason = "degraded"
        return
    reply.finish_reason = finished.finish_reason or ""
    reply.model = finished.model or ""
    if finished.usage is not None:
        reply.prompt_tokens = finished.usage.prompt_tokens
        reply.completion_tokens = finished.usage.completion_tokens
    reply.latency_ms = finished.latency_ms


def _audit(claim: Claim, outcome: Outcome, degraded: str) -> None:
    """The reply's audit event: model, tokens and cost over all its calls, why it ended, the
    passages it was given, the language, the prompt version and the tools it called."""
    reply = claim.reply
    calls = LLMCall.objects.filter(message_id=reply.pk).aggregate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), cost=Sum("cost")
    )
    tools = ToolInvocation.objects.filter(message_id=reply.pk).order_by("created_at")
    chunk_ids = outcome.chunk_ids
    if chunk_ids is None:
        chunk_ids = [passage.chunk_id for passage in claim.context.passages]
    conversation_event(
        claim.conversation,
        action="reply.complete",
        actor="assistant",
        details={
            "message_id": str(reply.pk),
            "status": reply.status,
            "model": reply.model,
            "prompt_tokens": calls["prompt"] or 0,
            "completion_tokens": calls["completion"] or 0,
            "cost": str(calls["cost"] or 0),
            "finish_reason": reply.finish_reason,
            "degraded": degraded,
            "chunk_ids": chunk_ids,
            "language": reply.language,
            "prompt_version": PROMPT_VERSION,
            "tool_calls": list(tools.values_list("name", flat=True)),
        },
    )


def own_job_done(claim: Claim, *, error_code: str) -> bool:
    """Mark the claim's job done (inside a transaction: its row stays locked until the end) if
    it is still this attempt's; False, changing nothing, when it is not."""
    return bool(
        ReplyJob.objects.filter(
            pk=claim.job_id, attempts=claim.attempt, state=ReplyJob.State.RUNNING
        ).update(state=ReplyJob.State.DONE, error_code=error_code, updated_at=timezone.now())
    )


def reply_finish(claim: Claim, outcome: Outcome, *, degraded: str = "") -> None:
    """Store the reply and end its job (error code `degraded`); a no-op when the job is no
    longer this attempt's (taken over, cancelled, finished already). While the database is
    unreachable the whole transaction is tried again, for up to REPLY_SAVE_RETRY_SECONDS."""
    when_database_returns(
        lambda: _store(claim, outcome, degraded),
        seconds=float(settings.REPLY_SAVE_RETRY_SECONDS),
        what=f"saving reply {claim.reply.pk}",
    )
    snapshot_clear(claim.reply.pk)


def _store(claim: Claim, outcome: Outcome, degraded: str) -> None:
    reply = claim.reply
    with transaction.atomic():
        # One UPDATE both checks the job is still this attempt's and ends it (and locks it).
        if not own_job_done(claim, error_code=degraded[:40]):
            return
        notices = _settle(reply, outcome, claim.language)
        _record_model(reply, outcome.finished)
        if outcome.withheld:
            reply.finish_reason = outcome.withheld[:20]
        reply.completed_at = timezone.now()
        reply.save()
        usage_day_add(
            tenant_id=claim.tenant.pk,
            model=reply.model or claim.context.config.model,
            replies=1,
            degraded_replies=1 if degraded else 0,
        )
        if outcome.review is not None:
            _review_store(claim, outcome.review)
        broadcast_on_commit(claim.conversation.pk, frames.message_frame(reply))
        message_outbound_queue(conversation=claim.conversation, message=reply)
        for text in notices:
            message_append(conversation=claim.conversation, role=Message.Role.SYSTEM, text=text)
        _audit(claim, outcome, degraded)
