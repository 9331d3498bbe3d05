"""Claiming a reply job, and the lease that keeps it ours while the reply streams.

The `ReplyJob` row decides who generates a reply: a finished job is a no-op; a running job
whose lease is still renewed is left to its worker (`LeaseHeld`); a running job whose lease
lapsed is taken over, and its reply is generated again from the start under the same message.

Nothing slow runs under the job's row lock. A claim reads the job, decides the language, reads
the history, searches the help centre and writes the prompt without a lock (`context.py`),
starts the provider request, and only then locks the job row to check its state again and make
the writes: the reply message, the language, state "running" with a new lease. A job cancelled
(an agent took over) or claimed by another worker meanwhile is not claimed, and its request is
cancelled. Locks are taken jobs first, then the conversation, like every other writer.
"""

import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from conversations.language import conversation_language_store
from conversations.messages import conversation_changed, message_append
from conversations.models import Conversation, Message, ReplyJob
from conversations.redaction import mask
from conversations.reply.context import ReplyContext, reply_context_build
from conversations.reply.provider_stream import CancelFlag, ProviderStream
from conversations.reply.screening import InputScreen, TopicCheck
from supportbot.database_retry import or_when_database_down
from supportbot.tenants.limits import CallBudget, tenant_limits
from supportbot.tenants.models import Tenant
from supportbot.tenants.moderation import tenant_moderation_config
from supportbot.trace import trace

FINAL_STATES = (ReplyJob.State.DONE, ReplyJob.State.FAILED, ReplyJob.State.CANCELLED)


class LeaseHeld(Exception):
    """Another worker is generating this reply; try again when its lease may have lapsed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"reply lease held for {seconds:.1f}s more")
        self.seconds = seconds


class LeaseLost(Exception):
    """Another worker took the job over."""


def lease_seconds() -> float:
    return float(settings.REPLY_LEASE_SECONDS)


def limit_wait_seconds() -> float:
    """How long a request over its tenant's rate or concurrency limit waits for a turn."""
    return float(settings.LIMIT_WAIT_SECONDS)


@dataclass
class Claim:
    """A reply job this worker holds, and what its reply is generated from."""

    job_id: int
    attempt: int  # the job's `attempts` once claimed: only this attempt may write the reply
    conversation: Conversation
    reply: Message
    trigger: Message
    context: ReplyContext
    cancel: CancelFlag
    provider_stream: ProviderStream  # the first request, started before the claim's writes
    budget: CallBudget  # the tenant's limits, which every request of the reply passes
    screen: InputScreen  # the moderation of the visitor's message
    topics: TopicCheck | None  # the sensitive-topic classification (tenants with topics)

    @property
    def tenant(self) -> Tenant:
        return self.conversation.tenant

    @property
    def language(self) -> str:
        return self.context.language


def _job(job_id: int) -> ReplyJob | None:
    """The job with all a claim reads: conversation, tenant, contact, trigger, reply (no
    lock)."""
    return (
        ReplyJob.objects.select_related(
            "conversation__tenant__limits", "conversation__contact", "trigger", "reply"
        )
        .filter(pk=job_id)
        .first()
    )


def _claimable(job: ReplyJob | None, now: datetime) -> ReplyJob | None:
    """`job` when it may be claimed now; None when it is finished (or gone). Raises LeaseHeld
    while another worker holds it."""
    if job is None or job.state in FINAL_STATES:
        return None
    if job.state == ReplyJob.State.RUNNING and job.lease_expires_at and job.lease_expires_at > now:
        raise LeaseHeld((job.lease_expires_at - now).total_seconds())
    return job


def _job_lock(job: ReplyJob) -> bool:
    """Lock the row of `job` (read without a lock) and check it is still ours to claim, inside
    a transaction. `job` is refreshed with what the lock saw.

    False when it finished or was cancelled meanwhile, or when its conversation is no longer
    with the bot (the job is cancelled then). A job claimed by another worker since it was read
    is theirs (LeaseHeld). Only the state is read again: a lean query, as the provider request
    is starting on another thread meanwhile.
    """
    now = timezone.now()
    row = (
        ReplyJob.objects.select_for_update(of=("self",))
        .filter(pk=job.pk)
        .values_list("state", "attempts", "lease_expires_at", "conversation__status")
        .first()
    )
    if row is None:
        return False
    job.state, attempts, job.lease_expires_at, job.conversation.status = row
    if _claimable(job, now) is None:
        return False
    if attempts != job.attempts:
        raise LeaseHeld(0.0)  # claimed and given back meanwhile: start again
    if job.conversation.status != Conversation.Status.BOT:
        job.state = ReplyJob.State.CANCELLED
        job.save(update_fields=["state", "updated_at"])
        return False
    return True


def _reply_reset(job: ReplyJob) -> Message:
    """The job's reply message, empty and streaming (appended on the first attempt)."""
    if job.reply is None:
        return message_append(
            conversation=job.conversation,
            role=Message.Role.ASSISTANT,
            text="",
            status=Message.Status.STREAMING,
            broadcast=False,
        )
    job.reply.text = ""
    job.reply.status = Message.Status.STREAMING
    job.reply.save(update_fields=["text", "status"])
    return job.reply


def _claim_writes(job: ReplyJob, context: ReplyContext) -> Message | None:
    """Lock the job, check it again, and mark it ours: reply message, language, lease. The
    reply message, or None when the job is not ours to claim."""
    with transaction.atomic():
        if not _job_lock(job):
            return None
        conversation = job.conversation
        job.reply = reply = _reply_reset(job)
        if conversation_language_store(
            conversation=conversation,
            message=job.trigger,
            detected=context.detected,
            reply_language=context.language,
        ):
            conversation_changed(conversation)
        job.state = ReplyJob.State.RUNNING
        job.attempts += 1
        job.lease_expires_at = timezone.now() + timedelta(seconds=lease_seconds())
        job.save(update_fields=["state", "attempts", "lease_expires_at", "reply", "updated_at"])
    return reply


def reply_job_claim(job_id: int) -> Claim | None:
    """Claim a reply job for this worker, with its first provider request already on its way.

    None when there is nothing to do (finished, cancelled, or the conversation left the bot);
    raises LeaseHeld while another worker holds the job.
    """
    job = _claimable(_job(job_id), timezone.now())
    if job is None:
        return None
    if job.conversation.status != Conversation.Status.BOT:
        with transaction.atomic():
            if not _job_lock(job):  # cancels it, unless back with the bot meanwhile
                return None
    tenant = job.conversation.tenant
    # Moderation runs while the context is built; the request waits for its verdict. Both it
    # and the topic check see the message as the provider may (personal data masked).
    question = job.trigger.text
    if tenant.redact_pii:
        question = mask(question, region=tenant.phone_region or None)
    screen = InputScreen(
        tenant_moderation_config(tenant), question, fail_closed=tenant.moderation_fail_closed
    )
    context = reply_context_build(job)
    cancel = CancelFlag(job_id=job.pk)
    budget = CallBudget(job.tenant_id, tenant_limits(tenant))
    # The request goes out now; the claim's writes happen while the model thinks.
    stream = ProviderStream(
        config=context.config,
        messages=context.messages,
        params=context.params,
        cancel=cancel,
        budget=budget,
        wait=limit_wait_seconds(),
        gate=screen.gate,
    )
    topics = _topic_check(tenant, context, screen, question, budget)
    try:
        reply = _claim_writes(job, context)
    except BaseException:
        cancel.cancelled = True
        raise
    if reply is None:
        cancel.cancelled = True
        return None
    trace("reply.claimed", f"{job.pk}:{job.conversation_id}:{reply.pk}")
    return Claim(
        job_id=job.pk,
        attempt=job.attempts,
        conversation=job.conversation,
        reply=reply,
        trigger=job.trigger,
        context=context,
        cancel=cancel,
        provider_stream=stream,
        budget=budget,
        screen=screen,
        topics=topics,
    )


def _topic_check(
    tenant: Tenant, context: ReplyContext, screen: InputScreen, question: str, budget: CallBudget
) -> TopicCheck | None:
    """The classification of the question by the tenant's sensitive topics (None: it has none)."""
    if not tenant.sensitive_topics:
        return None
    deadline = float(settings.TOPIC_CLASSIFICATION_DEADLINE)
    config = replace(context.config, deadline=deadline, max_retries=1)
    return TopicCheck(
        config=config,
        topics=tenant.sensitive_topics,
        question=question,
        screen=screen,
        budget=budget,
    )


def lease_renew(claim: Claim) -> bool:
    """Extend our lease; False when another worker has taken the job over."""
    return bool(
        ReplyJob.objects.filter(
            pk=claim.job_id, attempts=claim.attempt, state=ReplyJob.State.RUNNING
        ).update(lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds()))
    )


class LeaseKeeper:
    """Renews a claim's lease about three times per lease while its reply streams."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.every = lease_seconds() / 3
        self.renewed_at = time.monotonic()

    def tick(self) -> None:
        """Renew when due, then release the connection; the database down, stream on."""
        now = time.monotonic()
        if now - self.renewed_at >= self.every:
            if not or_when_database_down(lambda: lease_renew(self.claim), default=True):
                raise LeaseLost()
            connection_release()
            self.renewed_at = now


def claim_release(claim: Claim) -> None:
    """Give the job back after an unexpected error, so a retry can claim it at once."""
    ReplyJob.objects.filter(
        pk=claim.job_id, attempts=claim.attempt, state=ReplyJob.State.RUNNING
    ).update(lease_expires_at=timezone.now())


def connection_release() -> None:
    """Give the pooled database connection back while the model streams (seconds with no
    query but a lease renewal): a worker thread holding it would cap concurrent replies at
    the pool's size. The next query takes one from the pool again."""
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()
