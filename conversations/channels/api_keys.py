"""REST API keys: made here, shown once, kept only as their SHA-256, revocable.

A key reads `sbk_<prefix>_<secret>`; the prefix tells keys apart in the admin.
"""

import hashlib
import secrets
from dataclasses import dataclass

from django.utils import timezone

from conversations.models import ApiKey, ChannelAccount

KEY_PREFIX = "sbk_"


@dataclass(frozen=True)
class NewApiKey:
    api_key: ApiKey
    key: str  # the only time the key is seen


def api_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_create(*, account: ChannelAccount, name: str = "") -> NewApiKey:
    """A new key of an `api` channel."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        tenant_id=account.tenant_id,
        channel_account=account,
        name=name[:100],
        prefix=f"{KEY_PREFIX}{prefix}",
        key_hash=api_key_hash(key),
    )
    return NewApiKey(api_key=api_key, key=key)


def api_key_authenticate(key: str) -> ApiKey | None:
    """The live key `key` is (its channel and tenant active), or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    return (
        ApiKey.objects.select_related("channel_account", "tenant")
        .filter(
            key_hash=api_key_hash(key),
            revoked_at__isnull=True,
            channel_account__is_active=True,
            tenant__is_active=True,
        )
        .first()
    )


def api_key_revoke(*, api_key_id: int, tenant_id: int | None = None) -> bool:
    rows = ApiKey.objects.filter(pk=api_key_id, revoked_at__isnull=True)
    if tenant_id is not None:
        rows = rows.filter(tenant_id=tenant_id)
    return bool(rows.update(revoked_at=timezone.now()))
