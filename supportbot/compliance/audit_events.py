"""The audit log's rows: `AuditEvent` (the chain) and `AuditDetail` (its details, apart).

Each tenant has one chain (`tenant_id` NULL: the platform's own, for logins); `seq` counts
from 1 within a chain and every event stores the hash of the one before it. The details live
in `AuditDetail` so that erasing a person's details leaves the chain intact: the event keeps
only a digest keyed with the detail row's own random salt, which reveals nothing once the row
is gone. A database trigger refuses UPDATE and DELETE of events (migration 0001); only
`audit.expire_events` may delete, whole expired prefixes of a chain.
"""

from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One link of a tenant's chain. Never updated; deleted only by retention."""

    tenant_id = models.IntegerField(null=True, blank=True)  # no FK: the log outlives tenants
    seq = models.BigIntegerField()
    created_at = models.DateTimeField()
    actor = models.CharField(max_length=100)
    action = models.CharField(max_length=60)
    target = models.CharField(max_length=200, blank=True)
    contact_id = models.CharField(max_length=64, blank=True, db_index=True)
    details_digest = models.CharField(max_length=64, blank=True)
    # Set on the event retention records: the last removed event (the chain now starts after it).
    anchor_seq = models.BigIntegerField(null=True, blank=True)
    anchor_hash = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id", "seq"],
                name="audit_event_chain_seq",
                nulls_distinct=False,
            ),
        ]
        indexes = [
            models.Index(fields=["tenant_id", "created_at"], name="audit_event_chain_time"),
            models.Index(fields=["tenant_id", "action"], name="audit_event_chain_action"),
        ]
        ordering = ["-created_at", "-seq"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor} (#{self.seq})"


class AuditDetail(models.Model):
    """The details of one event (JSON, never message text), deletable on erasure."""

    event = models.OneToOneField(AuditEvent, on_delete=models.CASCADE, related_name="detail")
    salt = models.CharField(max_length=32)
    data = models.JSONField()

    def __str__(self) -> str:
        return f"details of event {self.event_id}"
