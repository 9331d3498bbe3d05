"""Uploaded files are ingested by the `knowledge` worker: stored pending, routed to the
`knowledge` queue, processed once, and failed with a clear reason when refused or out of time."""

from __future__ import annotations

from typing import Any

import pytest
from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from django.conf import settings

from knowledge import tasks
from knowledge.ingestion import IngestError, source_get_or_create
from knowledge.models import Document, DocumentUpload
from knowledge.tasks import ingest_upload
from knowledge.uploads import (
    INGEST_TASK,
    MAX_ATTEMPTS,
    document_upload_create,
    document_upload_process,
)
from tests.support.stack import wait_until

FAQ = b"# FAQ\n\nWe answer every email within one working day.\n"


def upload(tenant: Any, filename: str = "faq.md", content: bytes = FAQ) -> DocumentUpload:
    source = source_get_or_create(tenant=tenant, name="Uploads")
    return document_upload_create(tenant=tenant, source=source, filename=filename, content=content)


def test_the_ingestion_task_goes_to_the_knowledge_queue() -> None:
    route = current_app.amqp.router.route({}, INGEST_TASK, args=(1,), kwargs={})
    assert route["queue"].name == "knowledge"
    assert INGEST_TASK in current_app.tasks


def test_the_task_has_the_soft_time_limit_of_the_setting() -> None:
    assert ingest_upload.soft_time_limit == settings.KNOWLEDGE_INGEST_SOFT_TIME_LIMIT
    assert ingest_upload.time_limit > ingest_upload.soft_time_limit
    assert (ingest_upload.acks_late, ingest_upload.reject_on_worker_lost) == (True, True)


@pytest.mark.django_db
def test_an_upload_waits_pending_then_is_processed_once(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    queued = upload(tenant)
    assert (queued.state, queued.size_bytes) == ("pending", len(FAQ))
    assert not Document.objects.filter(tenant=tenant).exists()

    done = document_upload_process(upload_id=queued.id)
    assert done is not None
    assert (done.state, done.detail) == ("ready", "Created (1 chunk, language en)")
    assert done.document is not None
    assert done.document.tenant_id == tenant.id
    assert bytes(DocumentUpload.objects.get(id=queued.id).content) == b""
    # a redelivered task finds the upload finished and does nothing
    assert document_upload_process(upload_id=queued.id) is None


@pytest.mark.django_db
def test_an_upload_interrupted_while_processing_is_processed_again(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    queued = upload(tenant)
    DocumentUpload.objects.filter(id=queued.id).update(state="processing", attempts=1)  # died
    ingest_upload(queued.id)
    done = DocumentUpload.objects.get(id=queued.id)
    assert (done.state, done.attempts) == ("ready", 2)


@pytest.mark.django_db
def test_a_file_that_keeps_killing_its_worker_is_given_up_on(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    queued = upload(tenant)
    DocumentUpload.objects.filter(id=queued.id).update(state="processing", attempts=MAX_ATTEMPTS)
    ingest_upload(queued.id)  # redelivered once more
    failed = DocumentUpload.objects.get(id=queued.id)
    assert (failed.state, failed.attempts) == ("failed", MAX_ATTEMPTS + 1)
    assert failed.detail.startswith(f"the worker processing this file stopped {MAX_ATTEMPTS} times")
    assert not Document.objects.filter(tenant=tenant).exists()


@pytest.mark.django_db
def test_a_file_type_or_size_refused_is_refused_at_once(make_tenant: Any, settings: Any) -> None:
    tenant, _ = make_tenant()
    with pytest.raises(IngestError, match="unsupported file type"):
        upload(tenant, filename="tool.exe", content=b"MZ")
    settings.KNOWLEDGE_MAX_FILE_BYTES = 10
    with pytest.raises(IngestError, match="larger than"):
        upload(tenant)
    assert not DocumentUpload.objects.exists()


@pytest.mark.django_db
def test_an_upload_cannot_go_to_another_tenants_source(make_tenant: Any) -> None:
    alpha, _ = make_tenant()
    beta, _ = make_tenant()
    beta_source = source_get_or_create(tenant=beta, name="Uploads")
    with pytest.raises(ValueError, match="another tenant"):
        document_upload_create(tenant=alpha, source=beta_source, filename="x.md", content=FAQ)
    assert not DocumentUpload.objects.exists()


@pytest.mark.django_db
def test_the_soft_time_limit_marks_the_upload_failed(make_tenant: Any, monkeypatch: Any) -> None:
    """The worker's soft limit arrives as SoftTimeLimitExceeded in the middle of parsing."""

    def parse(*args: Any, **kwargs: Any) -> Any:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr("knowledge.ingestion.parse_document", parse)
    tenant, _ = make_tenant()
    queued = upload(tenant)
    ingest_upload(queued.id)
    failed = DocumentUpload.objects.get(id=queued.id)
    assert failed.state == "failed"
    seconds = f"{settings.KNOWLEDGE_INGEST_SOFT_TIME_LIMIT:g}"
    assert failed.detail.startswith(
        f"processing took longer than {seconds} seconds (KNOWLEDGE_INGEST_SOFT_TIME_LIMIT)"
    )
    assert bytes(failed.content) == b""
    assert not Document.objects.filter(tenant=tenant).exists()


@pytest.mark.django_db
def test_the_hard_time_limit_marks_the_upload_failed(make_tenant: Any) -> None:
    """A worker killed at the hard limit: Celery's parent process calls on_failure."""
    tenant, _ = make_tenant()
    queued = upload(tenant)
    DocumentUpload.objects.filter(id=queued.id).update(state="processing")
    exc = TimeLimitExceeded(tasks.HARD_TIME_LIMIT)
    ingest_upload.on_failure(exc, "task-id", (queued.id,), {}, None)
    failed = DocumentUpload.objects.get(id=queued.id)
    assert failed.state == "failed"
    assert f"longer than {tasks.HARD_TIME_LIMIT:g} seconds" in failed.detail
    # a finished upload keeps its outcome
    ingest_upload.on_failure(RuntimeError("late"), "task-id", (queued.id,), {}, None)
    assert DocumentUpload.objects.get(id=queued.id).detail == failed.detail


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_idle")
def test_a_real_worker_consumes_the_knowledge_queue(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    queued = upload(tenant)  # committed: the task is sent after commit

    def finished() -> DocumentUpload | None:
        row = DocumentUpload.objects.get(id=queued.id)
        return row if row.state in ("ready", "failed") else None

    done = wait_until(finished, timeout=30, message="the knowledge worker to ingest the upload")
    assert (done.state, done.detail) == ("ready", "Created (1 chunk, language en)")
    assert Document.objects.get(tenant=tenant, key="faq.md").chunks.count() == 1
