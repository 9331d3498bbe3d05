"""Files uploaded in the admin, ingested by the `knowledge` worker instead of the web request.

`document_upload_create` checks what can be checked at once (file type, size), stores the file
in a `DocumentUpload` row (pending) and, after commit, queues `knowledge.ingest_upload` on the
`knowledge` queue. The worker calls `document_upload_process`: the row goes to processing, the
file through `document_ingest` (the same service `knowledge_import` uses), and the row to ready
or failed with the reason; the file's bytes are then dropped. A task redelivered after its
worker died processes the row again (ingestion is idempotent); a finished row is left alone.
`document_upload_fail` ends a row that ran out of time (KNOWLEDGE_INGEST_SOFT_TIME_LIMIT); a row
whose worker died MAX_ATTEMPTS times is failed instead of being tried again.
"""

from __future__ import annotations

from celery import current_app
from django.db import transaction
from django.utils import timezone

from knowledge.ingestion import IngestError, checked_upload, document_ingest
from knowledge.models import DocumentUpload, KnowledgeSource
from supportbot.tenants.models import Tenant

INGEST_TASK = "knowledge.ingest_upload"
# A file whose worker died this many times (out of memory, killed) is not tried again.
MAX_ATTEMPTS = 3
_MAX_DETAIL = 1000


def upload_enqueue(upload_id: int) -> None:
    """Queue the ingestion of an upload (call after commit); routed to the `knowledge` queue."""
    current_app.send_task(INGEST_TASK, args=[upload_id])


@transaction.atomic
def document_upload_create(
    *,
    tenant: Tenant,
    source: KnowledgeSource,
    filename: str,
    content: bytes,
    language: str = "",
) -> DocumentUpload:
    """Store an uploaded file for the worker to ingest. Raises IngestError at once for a file
    type or size that is refused; everything else is found out by the worker."""
    if source.tenant_id != tenant.id:
        raise ValueError("the source belongs to another tenant")
    filename, _ = checked_upload(key=filename, filename=filename, content=content, url=None)
    upload = DocumentUpload.objects.create(
        tenant=tenant,
        source=source,
        filename=filename,
        language=language,
        content=content,
        size_bytes=len(content),
    )
    upload_id = upload.id
    transaction.on_commit(lambda: upload_enqueue(upload_id))
    return upload


def document_upload_process(*, upload_id: int) -> DocumentUpload | None:
    """Ingest a pending (or interrupted) upload; None when there is nothing to do."""
    upload = _upload_start(upload_id)
    if upload is None:
        return None
    if upload.attempts > MAX_ATTEMPTS:
        reason = f"the worker processing this file stopped {MAX_ATTEMPTS} times: split the file"
        return _upload_finish(upload_id, DocumentUpload.State.FAILED, reason)
    try:
        result = document_ingest(
            tenant=upload.tenant,
            source=upload.source,
            key=upload.filename,
            filename=upload.filename,
            content=bytes(upload.content),
            language=upload.language or None,
        )
    except IngestError as exc:
        return _upload_finish(upload_id, DocumentUpload.State.FAILED, str(exc))
    chunks = f"{result.chunks} chunk{'' if result.chunks == 1 else 's'}"
    language = result.document.language or "unknown"
    detail = f"{result.status.capitalize()} ({chunks}, language {language})"
    return _upload_finish(upload_id, DocumentUpload.State.READY, detail, result.document.id)


def document_upload_fail(*, upload_id: int, reason: str) -> bool:
    """Mark an upload that is not finished as failed; False when it was finished already."""
    return _upload_finish(upload_id, DocumentUpload.State.FAILED, reason) is not None


@transaction.atomic
def _upload_start(upload_id: int) -> DocumentUpload | None:
    upload = (
        DocumentUpload.objects.select_for_update()
        .select_related("tenant", "source")
        .filter(id=upload_id)
        .first()
    )
    unfinished = (DocumentUpload.State.PENDING, DocumentUpload.State.PROCESSING)
    if upload is None or upload.state not in unfinished:
        return None
    upload.state = DocumentUpload.State.PROCESSING
    upload.started_at = timezone.now()
    upload.attempts += 1
    upload.save(update_fields=["state", "started_at", "attempts"])
    return upload


@transaction.atomic
def _upload_finish(
    upload_id: int, state: str, detail: str, document_id: int | None = None
) -> DocumentUpload | None:
    """Record the outcome of an unfinished upload and drop its bytes; None if it was finished."""
    upload = DocumentUpload.objects.select_for_update().filter(id=upload_id).first()
    if upload is None or upload.state in (
        DocumentUpload.State.READY,
        DocumentUpload.State.FAILED,
    ):
        return None
    upload.state = state
    upload.detail = detail[:_MAX_DETAIL]
    upload.document_id = document_id
    upload.content = b""
    upload.finished_at = timezone.now()
    upload.save(update_fields=["state", "detail", "document", "content", "finished_at"])
    return upload
