"""Writes for tenants and widget keys."""

from django.db import transaction
from django.utils.text import slugify

from supportbot.compliance.audit import record_event
from supportbot.compliance.encryption import encrypt_secret
from supportbot.tenants.identity import new_identity_secret
from supportbot.tenants.models import IDENTITY_SECRET_LABEL, LLM_API_KEY_LABEL, Tenant, WidgetKey
from supportbot.tenants.origins import normalize_origins


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "tenant"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def tenant_create(
    *,
    name: str,
    allowed_origins: list[str],
    slug: str | None = None,
    persona: str | None = None,
    lawful_basis: str | None = None,
    privacy_url: str = "",
) -> tuple[Tenant, WidgetKey]:
    """Create a tenant with one active widget key and an identity secret.

    Origins are validated and normalised.
    """
    name = name.strip()
    if not name:
        raise ValueError("A tenant needs a name.")
    tenant = Tenant(name=name, slug=slug or _unique_slug(name))
    tenant.allowed_origins = normalize_origins(allowed_origins)
    if persona:
        tenant.persona = persona
    if lawful_basis:
        tenant.lawful_basis = lawful_basis
    tenant.privacy_url = privacy_url
    tenant.full_clean()
    tenant.save()
    # Encrypted for this tenant, so it needs the tenant's id first.
    tenant.identity_secret_encrypted = encrypt_secret(
        new_identity_secret(), tenant_id=tenant.pk, field=IDENTITY_SECRET_LABEL
    )
    tenant.save(update_fields=["identity_secret_encrypted"])
    key = WidgetKey.objects.create(tenant=tenant, label="default")
    return tenant, key


PROVIDER_FIELDS = frozenset({"llm_provider", "llm_base_url"})


def tenant_llm_key_after_edit(
    *, tenant: Tenant, changed_fields: set[str], new_api_key: str = "", clear: bool = False
) -> bool:
    """Keep the tenant's stored provider key consistent with an edit of its settings.

    A new key replaces the stored one. A changed provider or base URL without a new key removes
    the stored key: a key is only ever sent to the provider it was given for (whoever edits a
    tenant must not redirect its key to a server of their own). True when a key was removed.
    """
    if new_api_key:
        tenant_set_llm_api_key(tenant=tenant, api_key=new_api_key)
        return False
    if (clear or PROVIDER_FIELDS & changed_fields) and tenant.llm_api_key_encrypted:
        tenant_set_llm_api_key(tenant=tenant, api_key="")
        return True
    return False


def tenant_set_llm_api_key(*, tenant: Tenant, api_key: str) -> None:
    """Store (encrypted) the tenant's own provider key; the empty string removes it."""
    tenant.llm_api_key_encrypted = encrypt_secret(
        api_key, tenant_id=tenant.pk, field=LLM_API_KEY_LABEL
    )
    tenant.save(update_fields=["llm_api_key_encrypted", "updated_at"])


def tenant_rotate_identity_secret(*, tenant: Tenant, actor: str = "system") -> str:
    """Replace the tenant's identity secret; returns the new one (to be shown once, never kept).

    Identities signed with the old secret are refused from now on.
    """
    secret = new_identity_secret()
    with transaction.atomic():
        tenant.identity_secret_encrypted = encrypt_secret(
            secret, tenant_id=tenant.pk, field=IDENTITY_SECRET_LABEL
        )
        tenant.save(update_fields=["identity_secret_encrypted", "updated_at"])
        record_event(
            tenant_id=tenant.pk,
            action="tenant.identity_secret.rotate",
            actor=actor,
            target=f"tenant:{tenant.pk}",
        )
    return secret
