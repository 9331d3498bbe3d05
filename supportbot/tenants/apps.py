from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "supportbot.tenants"
    label = "tenants"
    verbose_name = "Tenants"
