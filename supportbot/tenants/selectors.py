"""Reads for tenants: widget key lookup, the provider settings a tenant's replies use, and the
names visitors see for agents. Who may do what is decided in `supportbot.tenants.roles`."""

from collections.abc import Iterable
from dataclasses import replace

from django.conf import settings

from supportbot.compliance.encryption import decrypt_secret
from supportbot.llm import ChatParams, ProviderConfig, provider_config_from_settings
from supportbot.tenants.config_cache import cached_consent_texts, cached_widget_key
from supportbot.tenants.consent_texts import ConsentNotice, consent_notice_pick
from supportbot.tenants.models import (
    IDENTITY_SECRET_LABEL,
    LLM_API_KEY_LABEL,
    Tenant,
    TenantMembership,
    WidgetKey,
)
from supportbot.tenants.provider_hosts import policy_from_settings


def access_widget_key_by_public_key(public_key: object) -> WidgetKey | None:
    """The active key (of an active tenant) for `public_key`, or None."""
    if not isinstance(public_key, str) or not 0 < len(public_key) <= 64:
        return None
    return cached_widget_key(public_key)


def tenant_provider_config(tenant: Tenant) -> ProviderConfig:
    """The provider a tenant's replies go to: its own override, else the server's settings.

    With its own provider, the tenant's blank fields take the server's values, except the API
    key (the server's key is never sent to a provider the tenant chose). A base URL of the
    tenant's own is reached only at addresses the provider host policy accepts, checked for
    every connection (`provider_hosts`).
    """
    server = provider_config_from_settings(settings)
    if not tenant.llm_provider:
        return server
    return replace(
        server,
        provider=tenant.llm_provider,
        model=tenant.llm_model or server.model,
        base_url=tenant.llm_base_url or server.base_url,
        api_key=decrypt_secret(
            tenant.llm_api_key_encrypted, tenant_id=tenant.pk, field=LLM_API_KEY_LABEL
        )
        or None,
        api_version=tenant.llm_api_version or server.api_version,
        address_guard=policy_from_settings() if tenant.llm_base_url else None,
    )


def tenant_identity_secret(tenant: Tenant) -> str:
    """The tenant's identity secret in clear ("" when it has none), for its operators only."""
    return decrypt_secret(
        tenant.identity_secret_encrypted, tenant_id=tenant.pk, field=IDENTITY_SECRET_LABEL
    )


def tenant_chat_params(tenant: Tenant) -> ChatParams:
    return ChatParams(
        temperature=tenant.temperature,
        top_p=tenant.top_p,
        max_tokens=tenant.max_tokens,
        presence_penalty=tenant.presence_penalty,
        frequency_penalty=tenant.frequency_penalty,
        seed=tenant.seed,
        stop=list(tenant.stop) or None,
    )


def agent_display_names(*, tenant_id: int, user_ids: Iterable[int]) -> dict[int, str]:
    """The names visitors see for these users in this tenant: their memberships' display
    names; a user without one is left out (the caller shows a neutral name, never a login name,
    an email or a full name)."""
    rows = TenantMembership.objects.filter(tenant_id=tenant_id, user_id__in=set(user_ids))
    return dict(rows.exclude(display_name="").values_list("user_id", "display_name"))


def agent_display_name(*, tenant_id: int, user_id: int) -> str:
    """The name visitors see for this user in this tenant; "" when they have none."""
    return agent_display_names(tenant_id=tenant_id, user_ids=[user_id]).get(user_id, "")


def widget_key_is_active(widget_key_id: int) -> bool:
    """True while the key and its tenant are both active."""
    return WidgetKey.objects.filter(
        pk=widget_key_id, is_active=True, tenant__is_active=True
    ).exists()


def tenant_consent_notice(tenant: Tenant, language: str) -> ConsentNotice:
    """The consent or privacy notice a visitor speaking `language` is shown now: the tenant's
    newest text of that language (or of its fallbacks), else the built-in default."""
    return consent_notice_pick(tenant, language, cached_consent_texts(tenant))
