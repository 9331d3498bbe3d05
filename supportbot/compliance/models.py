"""The compliance layer's own tables."""

import uuid

from django.db import models


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
