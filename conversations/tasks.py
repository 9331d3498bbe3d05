"""Celery entry points for conversations: ids in, one service called."""

import logging
from typing import Any

import redis
from celery import shared_task
from django.db import OperationalError

from conversations.assistant_modes import person_first_waits_release
from conversations.channels.email_imap import MailboxUnavailable, mailbox_poll, mailboxes_to_poll
from conversations.channels.inbound import inbound_event_process
from conversations.channels.outbox_send import outbound_deliver, outbox_sweep
from conversations.channels.streaming import reply_stream_follow_run
from conversations.reply.claim import LeaseHeld
from conversations.reply.generate import reply_generate, reply_jobs_requeue_stalled
from conversations.retention import retention_run_all
from conversations.summaries import conversation_summarize
from supportbot.llm import TransientLLMError

logger = logging.getLogger(__name__)


@shared_task(
    name="conversations.generate_reply",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=5,
)
def generate_reply(self: Any, job_id: int) -> None:
    try:
        reply_generate(job_id=job_id)
    except LeaseHeld as held:
        # Another worker is on it; come back when its lease may have lapsed.
        raise self.retry(countdown=held.seconds + 0.5, max_retries=100) from None
    except (OperationalError, redis.ConnectionError) as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 30)) from exc


@shared_task(name="conversations.requeue_stalled_replies", ignore_result=True)
def requeue_stalled_replies() -> int:
    """Re-enqueue replies whose worker died or whose queue message was lost."""
    job_ids = reply_jobs_requeue_stalled()
    for job_id in job_ids:
        generate_reply.delay(job_id)
    if job_ids:
        logger.info("requeued %d stalled reply jobs", len(job_ids))
    return len(job_ids)


@shared_task(
    name="conversations.summarize_conversation",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=3,
)
def summarize_conversation(self: Any, conversation_id: str) -> None:
    """Replace a long conversation's rolling summary (a no-op when none is needed)."""
    try:
        conversation_summarize(conversation_id=conversation_id)
    except (TransientLLMError, OperationalError, redis.ConnectionError) as exc:
        raise self.retry(exc=exc, countdown=min(10 * 2**self.request.retries, 120)) from exc


@shared_task(name="conversations.release_person_first_waits", ignore_result=True, expires=25)
def release_person_first_waits() -> int:
    """Hand person-first conversations no agent took within the tenant's wait to the assistant."""
    released = person_first_waits_release()
    if released:
        logger.info("released %d person-first conversations to the assistant", released)
    return released


@shared_task(name="conversations.enforce_retention", ignore_result=True)
def enforce_retention() -> int:
    """Remove every tenant's rows past their retention periods (nightly); the number of
    tenants run."""
    results = retention_run_all()
    for result in results:
        removed = ", ".join(f"{name} {count}" for name, count in result.counts.items() if count)
        logger.info("retention: tenant %s: %s", result.tenant_id, removed or "nothing removed")
    return len(results)


@shared_task(
    name="conversations.channel_inbound_process",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=10,
)
def channel_inbound_process(self: Any, event_id: int) -> None:
    """Turn a stored webhook item (a message, a status) into its effect, once."""
    try:
        inbound_event_process(event_id=event_id)
    except (OperationalError, redis.ConnectionError) as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc


@shared_task(
    name="conversations.channel_deliver",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def channel_deliver(self: Any, delivery_id: int) -> None:
    """Send one outbox row; tried again after the provider's Retry-After or a backoff."""
    try:
        attempt = outbound_deliver(delivery_id=delivery_id)
    except (OperationalError, redis.ConnectionError) as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60)) from exc
    if attempt.retry_in is not None:
        raise self.retry(countdown=attempt.retry_in)


@shared_task(name="conversations.channel_stream_follow", ignore_result=True)
def channel_stream_follow(job_id: int) -> None:
    """Show a reply as it forms on Telegram or Slack (throttled edits of one message)."""
    reply_stream_follow_run(job_id=job_id)


# --- Email channel: support mailboxes read over IMAP ------------------------------------------


@shared_task(name="conversations.email_poll", ignore_result=True, expires=25)
def email_poll() -> int:
    """Queue a read of every email channel's mailbox (the beat, every EMAIL_POLL_SECONDS)."""
    account_ids = mailboxes_to_poll()
    for account_id in account_ids:
        email_poll_mailbox.delay(account_id)
    return len(account_ids)


@shared_task(name="conversations.email_poll_mailbox", ignore_result=True, expires=120)
def email_poll_mailbox(account_id: str) -> int:
    """Store one mailbox's unread emails, then mark them read (one poll per mailbox at once)."""
    try:
        return mailbox_poll(account_id=account_id)
    except MailboxUnavailable as error:
        logger.warning("email channel %s: mailbox not read: %s", account_id, error)
        return 0


# --- The outbox's sweep -------------------------------------------------------------------------


@shared_task(name="conversations.outbox_sweep", ignore_result=True, expires=25)
def outbox_sweep_task() -> int:
    """Queue again the outbox rows whose send job was lost (beat, every 30 s)."""
    return outbox_sweep()
