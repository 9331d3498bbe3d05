"""Writes for tenants and widget keys."""

from django.db import transaction
from django.utils.text import slugify

from supportbot.compliance.encryption import encrypt_secret
from supportbot.tenants.models import Tenant, WidgetKey
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
    *, name: str, allowed_origins: list[str], slug: str | None = None, persona: str | None = None
) -> tuple[Tenant, WidgetKey]:
    """Create a tenant with one active widget key. Origins are validated and normalised."""
    name = name.strip()
    if not name:
        raise ValueError("A tenant needs a name.")
    tenant = Tenant(name=name, slug=slug or _unique_slug(name))
    tenant.allowed_origins = normalize_origins(allowed_origins)
    if persona:
        tenant.persona = persona
    tenant.full_clean()
    tenant.save()
    key = WidgetKey.objects.create(tenant=tenant, label="default")
    return tenant, key


def tenant_set_llm_api_key(*, tenant: Tenant, api_key: str) -> None:
    """Store (encrypted) the tenant's own provider key; the empty string removes it."""
    tenant.llm_api_key_encrypted = encrypt_secret(api_key)
    tenant.save(update_fields=["llm_api_key_encrypted", "updated_at"])
