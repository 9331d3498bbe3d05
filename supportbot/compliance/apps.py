from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "supportbot.compliance"
    label = "compliance"
    verbose_name = "Compliance"
