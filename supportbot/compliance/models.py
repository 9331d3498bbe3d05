"""The compliance layer's rows. Tenants, users and contacts are named by id (this layer imports
no app)."""

from __future__ import annotations

from django.db import models

from supportbot.compliance.audit_events import AuditDetail, AuditEvent

__all__ = ["AuditDetail", "AuditEvent", "DataRequest"]


class DataRequest(models.Model):
    """One data subject request (GDPR Art. 15/20 export or Art. 17 erasure) and how it went."""

    class Kind(models.TextChoices):
        EXPORT = "export", "Export"
        ERASE = "erase", "Erasure"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class SelectorKind(models.TextChoices):
        CONTACT = "contact_id", "Contact id"
        EMAIL = "email", "Email"
        IDENTITY = "identity_sub", "Verified identity (sub)"
        CONVERSATION = "conversation_id", "Conversation id"

    reference = models.CharField(max_length=32, unique=True)
    tenant_id = models.BigIntegerField(db_index=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # How the person was named. The value is personal data: cleared once an erasure is done.
    selector_kind = models.CharField(max_length=20, choices=SelectorKind.choices)
    selector_value = models.CharField(max_length=255, blank=True, default="")
    # The contacts the request found (an erasure of them removes this request's export too).
    contact_ids = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    current_store = models.CharField(max_length=64, blank=True, default="")
    error = models.CharField(max_length=200, blank=True, default="")
    requested_by = models.BigIntegerField(null=True, blank=True)  # a user id; None: a command
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Erasure: the certificate (counts per store, no personal data).
    certificate = models.JSONField(default=dict, blank=True)
    # Export: the zip's file name under DATA_EXPORT_DIR, and when it is removed.
    export_file = models.CharField(max_length=200, blank=True, default="")
    export_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant_id", "-created_at"], name="datarequest_tenant")]

    def __str__(self) -> str:
        return f"{self.reference} ({self.get_kind_display()})"
