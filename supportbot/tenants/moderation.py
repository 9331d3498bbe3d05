"""Where a tenant's moderation checks go, and its moderation key (stored encrypted).

`moderation_source`: "provider" (the tenant's model provider, when it has a moderation
endpoint: OpenAI does, Azure OpenAI and local models do not), "url" (an OpenAI-compatible
moderation service of the tenant's choice, reached only at addresses the provider host policy
accepts) or "none".
"""

from dataclasses import replace

from django.conf import settings

from supportbot.compliance.encryption import decrypt_secret, encrypt_secret
from supportbot.llm import DEFAULT_MODERATION_MODEL, ProviderConfig, has_moderation_endpoint
from supportbot.tenants.models import MODERATION_API_KEY_LABEL, Tenant
from supportbot.tenants.provider_hosts import policy_from_settings
from supportbot.tenants.selectors import tenant_provider_config
from supportbot.tenants.sensitive_topics import MODERATION_NONE, MODERATION_URL

MODERATION_URL_FIELDS = frozenset({"moderation_source", "moderation_url"})


def _bounded(config: ProviderConfig) -> ProviderConfig:
    """A moderation check's own (short) deadline and retries."""
    deadline = float(settings.MODERATION_DEADLINE)
    return replace(
        config,
        deadline=deadline,
        read_timeout=min(config.read_timeout, deadline),
        max_retries=int(settings.MODERATION_MAX_RETRIES),
    )


def tenant_moderation_config(tenant: Tenant) -> ProviderConfig | None:
    """The moderation endpoint of `tenant`'s checks; None when it has none."""
    model = tenant.moderation_model or DEFAULT_MODERATION_MODEL
    if tenant.moderation_source == MODERATION_NONE:
        return None
    if tenant.moderation_source == MODERATION_URL:
        if not tenant.moderation_url:
            return None
        server = tenant_provider_config(tenant)
        return _bounded(
            ProviderConfig(
                provider="openai",
                model=model,
                base_url=tenant.moderation_url,
                api_key=decrypt_secret(
                    tenant.moderation_api_key_encrypted,
                    tenant_id=tenant.pk,
                    field=MODERATION_API_KEY_LABEL,
                )
                or None,
                connect_timeout=server.connect_timeout,
                read_timeout=server.read_timeout,
                address_guard=policy_from_settings(),
            )
        )
    provider = tenant_provider_config(tenant)
    if not has_moderation_endpoint(provider.provider):
        return None
    return _bounded(replace(provider, model=model))


def moderation_warning(tenant: Tenant) -> str:
    """Why `tenant`'s messages are not moderated ("" when they are)."""
    if tenant.moderation_source == MODERATION_NONE:
        return "Moderation is off: visitor messages and replies are not checked."
    if tenant_moderation_config(tenant) is None:
        provider = tenant_provider_config(tenant).provider
        if tenant.moderation_source == MODERATION_URL:
            return "Moderation is off: no moderation URL is set."
        return (
            f"Moderation is off: the model provider ({provider}) has no moderation endpoint. "
            "Set a moderation URL."
        )
    return ""


def tenant_moderation_key_after_edit(
    *, tenant: Tenant, changed_fields: set[str], new_api_key: str = "", clear: bool = False
) -> bool:
    """Keep the stored moderation key with the service it was given for: a new key replaces it;
    a changed source or URL without a new key removes it. True when a key was removed."""
    if new_api_key:
        tenant.moderation_api_key_encrypted = encrypt_secret(
            new_api_key, tenant_id=tenant.pk, field=MODERATION_API_KEY_LABEL
        )
        tenant.save(update_fields=["moderation_api_key_encrypted", "updated_at"])
        return False
    if (clear or MODERATION_URL_FIELDS & changed_fields) and tenant.moderation_api_key_encrypted:
        tenant.moderation_api_key_encrypted = ""
        tenant.save(update_fields=["moderation_api_key_encrypted", "updated_at"])
        return True
    return False
