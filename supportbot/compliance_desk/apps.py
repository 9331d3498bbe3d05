from django.apps import AppConfig


class ComplianceDeskConfig(AppConfig):
    """The compliance officer's pages and commands (the audit log, data requests), tenant-scoped
    by `supportbot.tenants.roles`. The data itself is `supportbot.compliance`'s, which sits
    below every app."""

    name = "supportbot.compliance_desk"
    label = "compliance_desk"
    verbose_name = "Compliance"
