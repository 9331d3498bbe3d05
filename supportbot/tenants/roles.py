"""Who may do what for which tenant: the one place that decides.

A staff user's memberships give them a role per tenant; a role gives capabilities. Superusers
are the platform's operators: every capability for every tenant. Anyone else who is not an
active staff member has none, whatever their memberships or Django model permissions say
(the scoped admins, the agent socket and the views ask only this module).

| role               | capabilities                                                        |
|--------------------|---------------------------------------------------------------------|
| agent              | conversations (read, take over, reply, hand back, close; contacts)  |
| tenant admin       | conversations, settings, widget keys, knowledge, members, usage     |
| compliance officer | audit log, data requests (export, erasure; consent records with     |
|                    | them); transcripts only ever through a data request                 |
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

from django.db.models import Model, QuerySet

from supportbot.tenants.models import Tenant, TenantMembership

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

    AnyUser = AbstractBaseUser | AnonymousUser | None

_Row = TypeVar("_Row", bound=Model)

Role = TenantMembership.Role


class Capability(StrEnum):
    CONVERSATIONS = "conversations"  # transcripts, the agent socket, contacts
    SETTINGS = "settings"  # the tenant's own settings (not the operator's fields)
    WIDGET_KEYS = "widget_keys"
    KNOWLEDGE = "knowledge"
    MEMBERS = "members"
    USAGE = "usage"  # model calls, tokens, cost
    AUDIT = "audit"  # the tenant's audit log: browse, filter, export
    DATA_REQUESTS = "data_requests"  # find a person, export or erase their data; consent records


ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    Role.AGENT: frozenset({Capability.CONVERSATIONS}),
    Role.ADMIN: frozenset(Capability) - {Capability.AUDIT, Capability.DATA_REQUESTS},
    Role.COMPLIANCE: frozenset({Capability.AUDIT, Capability.DATA_REQUESTS}),
}


def role_capabilities(role: str) -> frozenset[Capability]:
    """What `role` may do in its tenant (an unknown role: nothing)."""
    return ROLE_CAPABILITIES.get(role, frozenset())


def roles_with(capability: Capability) -> list[str]:
    return [role for role, caps in ROLE_CAPABILITIES.items() if capability in caps]


def is_operator(user: AnyUser) -> bool:
    """An active superuser: the platform's operators."""
    return bool(
        user is not None
        and user.is_authenticated
        and getattr(user, "is_active", False)
        and getattr(user, "is_superuser", False)
    )


def _is_active_staff(user: AnyUser) -> bool:
    return bool(
        user is not None
        and user.is_authenticated
        and getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
    )


def tenant_ids_for_user(user: AnyUser, capability: Capability) -> set[int] | None:
    """The tenants where `user` has `capability`: None means every tenant (an operator)."""
    if is_operator(user):
        return None
    user_id = getattr(user, "pk", None)
    if user_id is None or not _is_active_staff(user):
        return set()
    memberships = TenantMembership.objects.filter(user_id=user_id, role__in=roles_with(capability))
    return set(memberships.values_list("tenant_id", flat=True))


def user_can(user: AnyUser, tenant: Tenant | int, capability: Capability) -> bool:
    """True when `user` has `capability` for `tenant` (a Tenant or its id)."""
    tenant_ids = tenant_ids_for_user(user, capability)
    tenant_id = tenant.pk if isinstance(tenant, Tenant) else tenant
    return tenant_ids is None or tenant_id in tenant_ids


def user_can_anywhere(user: AnyUser, capability: Capability) -> bool:
    """True when `user` has `capability` for at least one tenant."""
    tenant_ids = tenant_ids_for_user(user, capability)
    return tenant_ids is None or bool(tenant_ids)


def tenants_for_user(user: AnyUser, capability: Capability) -> QuerySet[Tenant]:
    """The tenants where `user` has `capability`, by name."""
    return rows_for_user(
        Tenant.objects.order_by("name"), user=user, capability=capability, tenant_field="pk"
    )


def rows_for_user(
    rows: QuerySet[_Row], *, user: AnyUser, capability: Capability, tenant_field: str = "tenant"
) -> QuerySet[_Row]:
    """The rows (of a model whose `tenant_field` names its tenant, `"pk"` for Tenant itself) of
    the tenants where `user` has `capability`."""
    tenant_ids = tenant_ids_for_user(user, capability)
    if tenant_ids is None:
        return rows
    lookup = "pk__in" if tenant_field == "pk" else f"{tenant_field}_id__in"
    return rows.filter(**{lookup: tenant_ids})
