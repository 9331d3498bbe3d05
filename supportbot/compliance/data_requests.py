"""Data subject requests: create one, run it (export or erasure, with progress per store), and
the export files' life (kept outside static and media, expiring, removed by a beat task).

A request names its tenant and person by id and selector only; the conversations app's finder
(registered with `supportbot.compliance.registry`) turns the selector into a `DataSubject`.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from supportbot.compliance.audit import record_event
from supportbot.compliance.erasure import erase_subject
from supportbot.compliance.export import export_zip, subject_preview
from supportbot.compliance.models import DataRequest
from supportbot.compliance.registry import DataSubject, SubjectSelector, find_subject

logger = logging.getLogger(__name__)

RUN_TASK = "compliance.run_data_request"


class SubjectNotFound(Exception):
    """No person of the tenant matches the selector."""


def selector_from(kind: str, value: str) -> SubjectSelector:
    """The selector naming a person by `kind` (a `DataRequest.SelectorKind`) and `value`."""
    if kind not in DataRequest.SelectorKind.values:
        raise ValueError(f"unknown selector {kind!r}")
    return SubjectSelector(**{kind: value.strip()})


def subject_find(tenant_id: int, selector: SubjectSelector) -> DataSubject:
    subject = find_subject(tenant_id, selector)
    if subject is None:
        raise SubjectNotFound("no such person in this tenant")
    return subject


def data_request_preview(*, tenant_id: int, selector: SubjectSelector) -> dict[str, Any]:
    """What an export would hold or an erasure remove: counts per store and section."""
    return subject_preview(subject_find(tenant_id, selector))


def actor_of(user_id: int | None) -> str:
    return f"user:{user_id}" if user_id is not None else "system:command"


def data_request_create(
    *,
    tenant_id: int,
    kind: str,
    selector_kind: str,
    selector_value: str,
    requested_by: int | None,
    enqueue: bool = True,
) -> DataRequest:
    """Record a request (reference `DR-<year>-<number>`) and, after commit, queue its run."""
    selector_from(selector_kind, selector_value)
    with transaction.atomic():
        request = DataRequest.objects.create(
            reference=f"pending-{uuid.uuid4().hex[:20]}",
            tenant_id=tenant_id,
            kind=kind,
            selector_kind=selector_kind,
            selector_value=selector_value.strip(),
            requested_by=requested_by,
        )
        request.reference = f"DR-{request.created_at.year}-{request.pk:06d}"
        request.save(update_fields=["reference"])
        if enqueue:
            request_id = request.pk
            transaction.on_commit(lambda: current_app.send_task(RUN_TASK, args=[request_id]))
    return request


def _progress(request_id: int, share: tuple[int, int] = (0, 100)) -> Any:
    low, high = share

    def report(index: int, total: int, store: str) -> None:
        progress = low + (high - low) * index // max(total, 1)
        DataRequest.objects.filter(pk=request_id).update(progress=progress, current_store=store)

    return report


def _finish(request: DataRequest, **fields: Any) -> None:
    fields.update(status=DataRequest.Status.DONE, progress=100, current_store="")
    fields["finished_at"] = timezone.now()
    for name, value in fields.items():
        setattr(request, name, value)
    request.save(update_fields=list(fields))


def _run_export(request: DataRequest, subject: DataSubject) -> None:
    archive = export_zip(subject, reference=request.reference, on_store=_progress(request.pk))
    directory = Path(settings.DATA_EXPORT_DIR)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"{request.reference}-{secrets.token_hex(8)}.zip"
    path = directory / name
    path.touch(mode=0o600)
    path.write_bytes(archive)
    counts = subject_preview(subject)
    with transaction.atomic():
        _finish(
            request,
            export_file=name,
            export_expires_at=timezone.now()
            + timedelta(hours=settings.DATA_EXPORT_RETENTION_HOURS),
        )
        record_event(
            tenant_id=request.tenant_id,
            action="data.export",
            actor=actor_of(request.requested_by),
            target=f"data_request:{request.reference}",
            details={"reference": request.reference, "stores": counts},
        )


def _run_erasure(request: DataRequest, subject: DataSubject) -> None:
    certificate = erase_subject(
        subject,
        actor=actor_of(request.requested_by),
        reference=request.reference,
        on_store=_progress(request.pk),
    )
    # The selector named the person: it goes with them.
    _finish(request, certificate=certificate, selector_value="", contact_ids=[])


def data_request_run(*, request_id: int) -> DataRequest:
    """Run a queued request (a request already done is left as it is: a redelivered job is a
    no-op). Raises nothing for a person not found: the request is marked failed."""
    with transaction.atomic():
        request = DataRequest.objects.select_for_update().get(pk=request_id)
        if request.status == DataRequest.Status.DONE:
            return request
        request.status = DataRequest.Status.RUNNING
        request.started_at = timezone.now()
        request.save(update_fields=["status", "started_at"])
    selector = selector_from(request.selector_kind, request.selector_value)
    subject = find_subject(request.tenant_id, selector)
    if subject is None:
        request.status = DataRequest.Status.FAILED
        request.error = "No such person in this tenant."
        request.finished_at = timezone.now()
        request.save(update_fields=["status", "error", "finished_at"])
        return request
    request.contact_ids = sorted(subject.contact_ids)
    request.save(update_fields=["contact_ids"])
    logger.info("data request %s (%s) running", request.reference, request.kind)
    try:
        if request.kind == DataRequest.Kind.EXPORT:
            _run_export(request, subject)
        else:
            _run_erasure(request, subject)
    except Exception:
        DataRequest.objects.filter(pk=request.pk).update(
            status=DataRequest.Status.FAILED, error="The request failed; run it again."
        )
        raise
    logger.info("data request %s done", request.reference)
    return request


def export_file_path(request: DataRequest) -> Path | None:
    """The export's zip, while it has not expired."""
    if not request.export_file or request.export_expires_at is None:
        return None
    if request.export_expires_at <= timezone.now():
        return None
    path = Path(settings.DATA_EXPORT_DIR) / request.export_file
    return path if path.is_file() else None


def expired_exports_remove(*, now: datetime | None = None) -> int:
    """Delete the export files past their retention; returns how many went."""
    now = now or datetime.now(UTC)
    removed = 0
    expired = DataRequest.objects.filter(export_expires_at__lte=now).exclude(export_file="")
    for request in expired:
        (Path(settings.DATA_EXPORT_DIR) / request.export_file).unlink(missing_ok=True)
        request.export_file = ""
        request.save(update_fields=["export_file"])
        removed += 1
    return removed


class DataRequestStore:
    """The requests themselves hold personal data: the selector (an email, a `sub`) and, for
    an export, its zip. Erasing a person clears both from their earlier requests (the
    reference, kind and dates stay: what was asked and done)."""

    name = "compliance.data_requests"

    def _requests(self, subject: DataSubject) -> list[DataRequest]:
        ids = set(subject.contact_ids)
        rows = DataRequest.objects.filter(tenant_id=subject.tenant_id).exclude(contact_ids=[])
        return [row for row in rows if ids & set(row.contact_ids)]

    def export(self, subject: DataSubject) -> dict[str, list[dict[str, Any]]]:
        return {
            "data_requests": [
                {
                    "reference": row.reference,
                    "kind": row.kind,
                    "status": row.status,
                    "created_at": row.created_at.isoformat(),
                }
                for row in self._requests(subject)
            ]
        }

    def erase(self, subject: DataSubject) -> dict[str, int]:
        files = 0
        rows = self._requests(subject)
        for row in rows:
            if row.export_file:
                (Path(settings.DATA_EXPORT_DIR) / row.export_file).unlink(missing_ok=True)
                files += 1
            DataRequest.objects.filter(pk=row.pk).update(
                selector_value="", contact_ids=[], export_file="", export_expires_at=None
            )
        return {"data_request_selectors": len(rows), "export_files": files}
