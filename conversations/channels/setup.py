"""Setting up a tenant's channel: the one service behind the admin's channel form and
`manage.py channel_add`.

The settings given are checked against the kind's spec (`channels/specs.py`), split into the
channel's `config` (shown) and its encrypted `credentials` (never shown again); the secrets
Supportbot makes (a webhook secret, a verify token, an `api` channel's key) are returned once,
to paste on the provider's side. The audit log names which settings were set, never a value.
"""

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.conf import settings as django_settings
from django.db import transaction
from django.urls import reverse

from conversations.channels.api_keys import api_key_create
from conversations.channels.specs import SPECS, ChannelSpec
from conversations.models import ChannelAccount
from supportbot.compliance.audit import record_event
from supportbot.tenants.models import Tenant

API_BASE_PATH = "/api/v1/"


class ChannelSetupError(ValueError):
    """Settings a channel cannot be set up with. The message names the kinds or settings
    concerned and the valid ones, never a value (a value may be a secret)."""


@dataclass(frozen=True)
class ChannelSetup:
    """A channel just set up: where the provider posts to, and what is shown this once."""

    account: ChannelAccount
    webhook_url: str
    generated: dict[str, str] = field(default_factory=dict)  # secret name -> value
    api_key: str = ""


def channel_spec(kind: str) -> ChannelSpec:
    """The spec of `kind`, or an error listing the kinds there are."""
    spec = SPECS.get(kind)
    if spec is None:
        raise ChannelSetupError(f"Unknown channel kind {kind!r}; valid kinds: {', '.join(SPECS)}.")
    return spec


def channel_webhook_url(account: ChannelAccount) -> str:
    """Where the provider sends this channel's updates (for `api`: the REST API's base)."""
    base = django_settings.PUBLIC_URL.rstrip("/")
    if account.kind == ChannelAccount.Kind.API:
        return f"{base}{API_BASE_PATH}"
    return f"{base}{reverse('channel-webhook', args=[account.pk])}"


def _unknown_check(spec: ChannelSpec, values: Mapping[str, str]) -> None:
    valid = [s.name for s in spec.settings]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ChannelSetupError(
            f"Unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} for a "
            f"{spec.kind} channel; valid settings: {', '.join(valid) or '(none)'}."
        )


def channel_settings_split(
    spec: ChannelSpec,
    values: Mapping[str, str],
    *,
    config: Mapping[str, str] | None = None,
    credentials: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """`values` over a channel's current `config` and `credentials` (none: a new channel): a
    config value given replaces the current one (empty: back to the default), a blank secret
    keeps the current one. Unknown names and missing required settings are refused."""
    _unknown_check(spec, values)
    new_config: dict[str, str] = {}
    new_credentials: dict[str, str] = {}
    for setting in spec.settings:
        given = str(values.get(setting.name, "") or "").strip()
        if setting.secret:
            value = given or str((credentials or {}).get(setting.name, ""))
            if value:
                new_credentials[setting.name] = value
        else:
            value = given if setting.name in values else str((config or {}).get(setting.name, ""))
            value = value or setting.default
            if value:
                new_config[setting.name] = value
    merged = new_config | new_credentials
    missing = [s.name for s in spec.settings if s.required and not merged.get(s.name)]
    if missing:
        raise ChannelSetupError(
            f"A {spec.kind} channel needs {', '.join(missing)} "
            f"(set {' '.join(f'{name}=...' for name in missing)})."
        )
    return new_config, new_credentials


def _generated_secrets(spec: ChannelSpec, values: Mapping[str, str]) -> dict[str, str]:
    return {
        s.name: secrets.token_urlsafe(32)
        for s in spec.credential_settings
        if s.generated and not str(values.get(s.name, "") or "").strip()
    }


def channel_setup(
    *,
    tenant: Tenant,
    kind: str,
    settings: Mapping[str, str],
    name: str = "",
    actor: str = "system",
) -> ChannelSetup:
    """Create a channel of `tenant`: its settings checked and split, the secrets Supportbot
    makes generated (and for `api`, its first key), audited as "channel.create"."""
    spec = channel_spec(kind)
    _unknown_check(spec, settings)
    generated = _generated_secrets(spec, settings)
    config, credentials = channel_settings_split(spec, {**settings, **generated})
    with transaction.atomic():
        account = ChannelAccount(tenant=tenant, kind=kind, name=name.strip()[:100], config=config)
        account.credentials = credentials
        account.save()
        api_key = api_key_create(account=account, name=name).key if kind == "api" else ""
        record_event(
            tenant_id=tenant.pk,
            action="channel.create",
            actor=actor,
            target=f"channel:{account.pk}",
            details={
                "kind": kind,
                "config": sorted(config),
                "credentials": sorted(credentials),
                "generated": sorted(generated),
                "api_key": bool(api_key),
            },
        )
    return ChannelSetup(
        account=account,
        webhook_url=channel_webhook_url(account),
        generated=generated,
        api_key=api_key,
    )


def channel_update(
    *,
    account: ChannelAccount,
    settings: Mapping[str, str],
    actor: str = "system",
) -> list[str]:
    """Save a channel's edited settings (and its name and active flag, as set on `account`):
    config values replace the current ones, a blank secret keeps the current one. Audited as
    "channel.change" with the names of what changed; returns those names."""
    spec = channel_spec(account.kind)
    before_config = dict(account.config or {})
    before_credentials = dict(account.credentials or {})
    config, credentials = channel_settings_split(
        spec, settings, config=before_config, credentials=before_credentials
    )
    changed = sorted(
        name
        for name in {*config, *credentials, *before_config, *before_credentials}
        if (config | credentials).get(name) != (before_config | before_credentials).get(name)
    )
    with transaction.atomic():
        account.config = config
        account.credentials = credentials
        account.save()
        record_event(
            tenant_id=account.tenant_id,
            action="channel.change",
            actor=actor,
            target=f"channel:{account.pk}",
            details={"kind": account.kind, "settings": changed, "active": account.is_active},
        )
    return changed
