from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "supportbot.tenants"
    label = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        from supportbot.compliance.rotation import register_secret_column
        from supportbot.tenants import config_cache  # noqa: F401  (its signal receivers)
        from supportbot.tenants.models import (
            IDENTITY_SECRET_LABEL,
            LLM_API_KEY_LABEL,
            MODERATION_API_KEY_LABEL,
        )

        register_secret_column(
            "tenants.Tenant", "llm_api_key_encrypted", tenant_attname="id", label=LLM_API_KEY_LABEL
        )
        register_secret_column(
            "tenants.Tenant",
            "identity_secret_encrypted",
            tenant_attname="id",
            label=IDENTITY_SECRET_LABEL,
        )
        register_secret_column(
            "tenants.Tenant",
            "moderation_api_key_encrypted",
            tenant_attname="id",
            label=MODERATION_API_KEY_LABEL,
        )
