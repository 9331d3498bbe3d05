"""Background jobs, enqueued by task name: services never import `conversations.tasks`
(only Celery does), so the use cases sit below their entry points.

Routing (which queue) is Celery's `task_routes` in settings; the names here are the tasks'
registered names.
"""

from celery import current_app
from django.db import transaction

from conversations.models import Conversation, Message, ReplyJob
from conversations.outbox import reply_stream_follow

REPLY_TASK = "conversations.generate_reply"
SUMMARY_TASK = "conversations.summarize_conversation"


def _send(task_name: str, *args: object) -> None:
    current_app.send_task(task_name, args=list(args))


def reply_job_enqueue(job_id: int) -> None:
    """Queue the generation of a reply job's reply (call after commit)."""
    _send(REPLY_TASK, job_id)


def summary_enqueue(conversation_id: str) -> None:
    """Queue a new rolling summary of a conversation (call after commit)."""
    _send(SUMMARY_TASK, conversation_id)


def reply_job_queue(*, conversation: Conversation, trigger: Message) -> ReplyJob:
    """Create the state row of a reply to `trigger` and enqueue its job after commit."""
    job = ReplyJob.objects.create(
        tenant_id=conversation.tenant_id, conversation=conversation, trigger=trigger
    )
    transaction.on_commit(lambda: reply_job_enqueue(job.pk))
    reply_stream_follow(conversation=conversation, job_id=job.pk)
    return job
