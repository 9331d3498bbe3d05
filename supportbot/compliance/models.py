"""The compliance layer's rows. Tenants, users and contacts are named by id (this layer imports
no app)."""

from __future__ import annotations

import uuid

from django.db import models

from supportbot.compliance.audit_events import AuditDetail, AuditEvent

__all__ = ["AuditDetail", "AuditEvent", "DataKey", "DataRequest"]


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


class DataKey(models.Model):
    """A tenant's random 256-bit key, stored wrapped (AES-256-GCM) by a master key of the ring.

    `data` keys encrypt field values; a tenant's newest one encrypts, every one decrypts. The one
    `index` key per tenant keys its blind indexes (HMAC-SHA256): it is re-wrapped on rotation,
    never replaced, so the indexes stay valid. `tenant_id` NULL is the platform's own key (no
    foreign key: the compliance layer imports no app).
    """

    class Purpose(models.TextChoices):
        DATA = "data", "Field encryption"
        INDEX = "index", "Blind index"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant_id = models.BigIntegerField(null=True, blank=True)
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.DATA)
    wrapped_key = models.TextField()
    master_key_id = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    wrapped_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant_id", "purpose", "-created_at"], name="datakey_newest")
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id"],
                condition=models.Q(purpose="index"),
                nulls_distinct=False,
                name="datakey_one_index_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.purpose} key {str(self.id)[:8]} of tenant {self.tenant_id}"
