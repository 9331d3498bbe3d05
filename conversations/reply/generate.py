"""The entry points of reply generation, called by the Celery tasks.

A reply job may be delivered more than once (a worker died, Redis redelivered it): the claim
decides (see `claim.py`). When the provider fails, the reply degrades instead of failing: the
tenant's fallback model, else the help centre quoted, else the offer of a person.
"""

import logging
from dataclasses import replace
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from conversations.models import ReplyJob
from conversations.reply.answer import reply_answer
from conversations.reply.claim import (
    Claim,
    LeaseLost,
    claim_release,
    connection_release,
    limit_wait_seconds,
    reply_job_claim,
)
from conversations.reply.degrade import reply_degrade
from conversations.reply.delivery import ReplyDelivery
from conversations.reply.finish import reply_finish
from conversations.reply.provider_stream import ProviderStream
from conversations.reply.safety import input_refusal
from conversations.reply.screening import InputBlocked
from conversations.summaries import summary_enqueue_if_needed
from supportbot.llm import LLMError, ProviderConfig, StreamInterrupted
from supportbot.tenants.limits import UsageLimitReached
from supportbot.trace import trace

logger = logging.getLogger(__name__)


class _Cancelled(Exception):
    """The reply was cancelled (an agent took over); whoever cancelled it has finalised it."""


def _models(claim: Claim) -> list[ProviderConfig]:
    """The tenant's model, then its fallback model if it has another."""
    config = claim.context.config
    fallback = claim.tenant.fallback_llm_model
    if fallback and fallback != config.model:
        return [config, replace(config, model=fallback)]
    return [config]


def _reply_write(claim: Claim) -> None:
    """Answer with the first model that can; degrade when none could."""
    delivery = ReplyDelivery(
        conversation_id=claim.conversation.pk,
        message_id=str(claim.reply.pk),
        flush_interval=float(settings.REPLY_FLUSH_INTERVAL),
        placeholders=claim.context.placeholders,
        on_sealed=claim.cancel.set,
    )
    delivery.start()
    first: ProviderStream | None = claim.provider_stream
    error: LLMError | None = None
    for config in _models(claim):
        if first is None:
            delivery.start()  # the fallback answers from the start under the same id
        # After a refusal by the tenant's limits, the fallback model is tried only if it fits
        # at once (a cheaper model may fit the money left): no second wait.
        wait = 0.0 if isinstance(error, UsageLimitReached) else limit_wait_seconds()
        try:
            outcome = reply_answer(claim, delivery, config, first, wait=wait)
        except InputBlocked as exc:
            reply_finish(claim, input_refusal(claim, exc.result))  # no chat request was made
            return
        except StreamInterrupted as exc:
            error = exc
        except LLMError as exc:
            if exc.code == "cancelled":
                raise _Cancelled() from None
            error = exc
        else:
            reply_finish(claim, outcome)
            return
        finally:
            first = None
        logger.warning("reply %s: %s failed (%s)", claim.reply.pk, config.model, error.code)
    assert error is not None
    reply_degrade(claim, error)


def reply_generate(*, job_id: int) -> None:
    """Produce the assistant's reply for a reply job, streaming it to the conversation."""
    trace("reply.task_start", job_id)
    claim = reply_job_claim(job_id)
    if claim is None:
        return
    try:
        # While the model thinks: a long conversation asks for a new summary, then the
        # database connection goes back to the pool until the reply is stored.
        summary_enqueue_if_needed(
            conversation=claim.conversation,
            history=claim.context.history,
            token_budget=claim.tenant.history_token_budget,
        )
        connection_release()
        _reply_write(claim)
    except (_Cancelled, LeaseLost):
        logger.info("reply %s stopped: cancelled or taken over", claim.reply.pk)
    except Exception:
        claim_release(claim)
        raise
    finally:
        claim.provider_stream.stop(timeout=1)


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
