"""The admin's tenant scoping, shared by every admin of tenant-owned rows.

Every list, object page, action, filter, autocomplete and foreign-key choice of a scoped admin
shows only the tenants where the user's role gives the admin's capability
(`supportbot.tenants.roles`); Django's model permissions neither add to nor take from that.
An object of another tenant is not found (the admin redirects to its index), exactly like
an id that does not exist.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from supportbot.tenants.roles import (
    Capability,
    is_operator,
    rows_for_user,
    tenants_for_user,
    user_can,
    user_can_anywhere,
)


class TenantListFilter(admin.SimpleListFilter):
    """Filter by tenant, offering only the tenants the user may see in this admin (a plain
    `list_filter = ("tenant",)` would list every tenant's name)."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        capability = getattr(model_admin, "capability", None)
        if capability is None:
            return []
        return [(str(t.pk), t.name) for t in tenants_for_user(request.user, capability)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(tenant_id=int(value))
        return queryset


def _tenant_id(obj: Any, tenant_field: str) -> int | None:
    if tenant_field == "pk":
        return int(obj.pk) if obj.pk is not None else None
    value = getattr(obj, f"{tenant_field}_id", None)
    return int(value) if value is not None else None


class TenantScopedAdmin(admin.ModelAdmin):
    """An admin of rows of one tenant each, for the users whose role gives `capability`.

    `rows_addable`, `rows_editable` and `rows_deletable` say what the capability allows here
    (a read-only admin sets them False); operators may do whatever the admin allows at all.
    """

    capability: ClassVar[Capability]
    tenant_field: ClassVar[str] = "tenant"
    rows_addable: ClassVar[bool] = True
    rows_editable: ClassVar[bool] = True
    rows_deletable: ClassVar[bool] = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return rows_for_user(
            super().get_queryset(request),
            user=request.user,
            capability=self.capability,
            tenant_field=self.tenant_field,
        )

    def allows(self, request: HttpRequest, obj: Any = None) -> bool:
        """The user has the capability for `obj`'s tenant (without `obj`: for some tenant)."""
        tenant_id = _tenant_id(obj, self.tenant_field) if obj is not None else None
        if tenant_id is None:
            return user_can_anywhere(request.user, self.capability)
        return user_can(request.user, tenant_id, self.capability)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.allows(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.allows(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.rows_addable and self.allows(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.rows_editable and self.allows(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.rows_deletable and self.allows(request, obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "tenant":
            kwargs["queryset"] = tenants_for_user(request.user, self.capability)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class OperatorOnlyAdmin(admin.ModelAdmin):
    """An admin only the platform's operators (active superusers) reach: users and groups."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_operator(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_operator(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request.user)
