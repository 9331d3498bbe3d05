"""Per-process copies of the tenant configuration every widget `hello` reads (the widget key
with its tenant, the tenant's consent texts), valid while the tenant's configuration version
in Redis is unchanged.

Daphne and the workers are separate processes, so a change is announced through Redis: saving
or deleting a tenant, one of its widget keys or consent texts sets a new version (at once, and
again when the transaction commits), and the next read in any process sees that its copy is
stale and reads the database. A disabled key is so refused at its next `hello`. One GET per
read instead of the queries and model instances; when Redis cannot be reached, the database
is read and nothing is cached.
"""

import logging
import uuid
from typing import Any

import redis
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from supportbot.redis_store import get_redis, redis_key
from supportbot.tenants.models import ConsentText, Tenant, WidgetKey

logger = logging.getLogger(__name__)

MAX_ENTRIES = 10_000  # per cache; past it the cache starts afresh

# public key -> (version, key with its tenant); tenant id -> (version, consent texts)
_widget_keys: dict[str, tuple[str, WidgetKey]] = {}
_consent_texts: dict[int, tuple[str, dict[str, tuple[int, str]]]] = {}


def _version_key(tenant_id: int) -> str:
    return redis_key("tenant-config", tenant_id)


def tenant_config_version(tenant_id: int) -> str | None:
    """The tenant's configuration version (set if it has none yet), or None when Redis cannot
    be reached."""
    client = get_redis()
    try:
        version = client.get(_version_key(tenant_id))
        if version is None:
            client.set(_version_key(tenant_id), uuid.uuid4().hex, nx=True)
            version = client.get(_version_key(tenant_id))
    except redis.RedisError:
        # No copies are trusted while Redis is away, nor kept for after: a change made
        # meanwhile could not be announced.
        _widget_keys.clear()
        _consent_texts.clear()
        return None
    return str(version) if version is not None else None


def tenant_config_changed(tenant_id: int) -> None:
    """Announce a change of the tenant's configuration to every process: now (a reader of the
    uncommitted rows' old values caches them under this version) and again on commit."""

    def bump() -> None:
        try:
            get_redis().set(_version_key(tenant_id), uuid.uuid4().hex)
        except redis.RedisError:
            # The save stands; other processes read the database while Redis is away.
            logger.warning("tenant %s: configuration version not announced (Redis)", tenant_id)

    bump()
    transaction.on_commit(bump)


def _bounded(cache: dict[Any, Any]) -> dict[Any, Any]:
    if len(cache) >= MAX_ENTRIES:
        cache.clear()
    return cache


def cached_widget_key(public_key: str) -> WidgetKey | None:
    """The active key (of an active tenant) for `public_key`, or None; from this process's
    copy while its tenant's version is unchanged."""
    held = _widget_keys.get(public_key)
    if held is not None and held[0] == tenant_config_version(held[1].tenant_id):
        return held[1]
    key = (
        WidgetKey.objects.select_related("tenant")
        .filter(public_key=public_key, is_active=True, tenant__is_active=True)
        .first()
    )
    if key is None:
        _widget_keys.pop(public_key, None)
        return None
    version = tenant_config_version(key.tenant_id)
    if version is not None:
        _bounded(_widget_keys)[public_key] = (version, key)
    return key


def cached_consent_texts(tenant: Tenant) -> dict[str, tuple[int, str]]:
    """The tenant's newest consent text of each language: language -> (version, text)."""
    held = _consent_texts.get(tenant.pk)
    version = tenant_config_version(tenant.pk)
    if held is not None and held[0] == version:
        return held[1]
    own: dict[str, tuple[int, str]] = {}
    for row in (
        ConsentText.objects.filter(tenant=tenant)
        .order_by("language", "-version")
        .distinct("language")
        .values("language", "version", "text")
    ):
        own[row["language"]] = (row["version"], row["text"])
    if version is not None:
        _bounded(_consent_texts)[tenant.pk] = (version, own)
    return own


@receiver(post_save, sender=Tenant)
@receiver(post_delete, sender=Tenant)
def _tenant_changed(sender: type, instance: Tenant, **kwargs: Any) -> None:
    tenant_config_changed(instance.pk)


@receiver(post_save, sender=WidgetKey)
@receiver(post_delete, sender=WidgetKey)
@receiver(post_save, sender=ConsentText)
@receiver(post_delete, sender=ConsentText)
def _tenant_part_changed(sender: type, instance: WidgetKey | ConsentText, **kwargs: Any) -> None:
    tenant_config_changed(instance.tenant_id)
