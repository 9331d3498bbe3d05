from django.apps import AppConfig


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
