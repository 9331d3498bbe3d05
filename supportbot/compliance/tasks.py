"""Celery entry points for data requests: ids in, one service called."""

import redis
from celery import shared_task
from django.db import OperationalError

from supportbot.compliance.data_requests import data_request_run, expired_exports_remove


@shared_task(
    name="compliance.run_data_request",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(OperationalError, redis.ConnectionError),
    retry_backoff=True,
    max_retries=5,
)
def run_data_request(request_id: int) -> None:
    """Run a data request (a request already done is a no-op; an erasure that failed half way
    is finished by running it again)."""
    data_request_run(request_id=request_id)


@shared_task(name="compliance.remove_expired_exports", ignore_result=True)
def remove_expired_exports() -> int:
    """Delete export files past DATA_EXPORT_RETENTION_HOURS."""
    return expired_exports_remove()
