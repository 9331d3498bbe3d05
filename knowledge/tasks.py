"""Celery entry points of the knowledge base: ids in, one service called.

`knowledge.ingest_upload` runs on the `knowledge` queue, on a prefork worker of its own (time
limits need one): parsing a large file never holds a reply's worker, and a file that takes
longer than KNOWLEDGE_INGEST_SOFT_TIME_LIMIT seconds is stopped and its upload marked failed.
A worker stuck past the hard limit (the soft one + 30 s) is killed; `on_failure` (run by the
parent process then) marks the upload failed too.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from django.conf import settings
from django.db import OperationalError

from knowledge.uploads import INGEST_TASK, document_upload_fail, document_upload_process

logger = logging.getLogger(__name__)

SOFT_TIME_LIMIT = float(getattr(settings, "KNOWLEDGE_INGEST_SOFT_TIME_LIMIT", 120.0))
HARD_TIME_LIMIT = SOFT_TIME_LIMIT + 30.0


def time_limit_message(seconds: float) -> str:
    return (
        f"processing took longer than {seconds:g} seconds (KNOWLEDGE_INGEST_SOFT_TIME_LIMIT) and "
        "was stopped: split the file into smaller ones"
    )


class _IngestTask(Task):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        upload_id = (list(args) or [kwargs.get("upload_id")])[0]
        if upload_id is None:
            return
        if isinstance(exc, TimeLimitExceeded):
            reason = time_limit_message(HARD_TIME_LIMIT)
        else:
            reason = f"could not be processed ({type(exc).__name__}): try again later"
        document_upload_fail(upload_id=int(upload_id), reason=reason)


@shared_task(
    name=INGEST_TASK,
    base=_IngestTask,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=3,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=HARD_TIME_LIMIT,
)
def ingest_upload(self: Any, upload_id: int) -> None:
    """Parse, chunk and index an uploaded file (a no-op for an upload already finished)."""
    try:
        document_upload_process(upload_id=upload_id)
    except SoftTimeLimitExceeded:
        logger.warning("upload %s stopped after %ss", upload_id, SOFT_TIME_LIMIT)
        document_upload_fail(upload_id=upload_id, reason=time_limit_message(SOFT_TIME_LIMIT))
    except (OperationalError, redis.ConnectionError) as exc:
        raise self.retry(exc=exc, countdown=min(10 * 2**self.request.retries, 60)) from exc
