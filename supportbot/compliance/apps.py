from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _forget_keys(**kwargs: Any) -> None:
    # A flushed or migrated database may no longer hold the keys this process cached.
    from supportbot.compliance.encryption import clear_caches

    clear_caches()


class ComplianceConfig(AppConfig):
    name = "supportbot.compliance"
    label = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        from supportbot.compliance.audit_store import AuditStore
        from supportbot.compliance.data_requests import DataRequestStore
        from supportbot.compliance.registry import register_store

        register_store(AuditStore())
        register_store(DataRequestStore())

        post_migrate.connect(_forget_keys, dispatch_uid="compliance-forget-keys")
