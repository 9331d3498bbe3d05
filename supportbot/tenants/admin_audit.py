"""Changes made in the tenants' admin pages, recorded in the tenant's audit chain.

An event names what changed (the model and its id) and which fields, never their values
(settings hold secrets and the persona's text). The admin saves inside a transaction, so an
event exists exactly when its change does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from django.contrib import admin
from django.db import models, transaction
from django.db.models import QuerySet
from django.forms import BaseFormSet, ModelForm
from django.http import HttpRequest

from supportbot.compliance.audit import record_event


def user_actor(request: HttpRequest) -> str:
    user_id = getattr(request.user, "pk", None)
    return f"user:{user_id}" if user_id is not None else "system"


def _tenant_id(obj: models.Model) -> int | None:
    tenant_id = getattr(obj, "tenant_id", None)
    if tenant_id is None and obj._meta.model_name == "tenant":
        tenant_id = obj.pk
    return int(tenant_id) if tenant_id is not None else None


def admin_change_record(
    request: HttpRequest, obj: models.Model, *, verb: str, fields: Iterable[str] = ()
) -> None:
    """Record `verb` ("create", "change", "delete") of `obj` by the request's user."""
    noun = obj._meta.model_name or "object"
    details = {"fields": sorted(fields)} if fields else None
    record_event(
        tenant_id=_tenant_id(obj),
        action=f"{noun}.{verb}",
        actor=user_actor(request),
        target=f"{noun}:{obj.pk}",
        details=details,
    )


class AuditedAdmin(admin.ModelAdmin):
    """Records every save and delete of the admin's rows, and of its inlines' rows
    (`audited_inlines`: the inline models whose changes count, e.g. widget keys)."""

    audited_inlines: ClassVar[bool] = True

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change or form.changed_data:
            verb = "change" if change else "create"
            admin_change_record(request, obj, verb=verb, fields=form.changed_data)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            admin_change_record(request, obj, verb="delete")
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset:
                admin_change_record(request, obj, verb="delete")
            super().delete_queryset(request, queryset)

    def save_formset(
        self, request: HttpRequest, form: ModelForm, formset: BaseFormSet, change: bool
    ) -> None:
        super().save_formset(request, form, formset, change)
        if not self.audited_inlines:
            return
        for obj in getattr(formset, "new_objects", []):
            admin_change_record(request, obj, verb="create")
        for obj, fields in getattr(formset, "changed_objects", []):
            admin_change_record(request, obj, verb="change", fields=fields)
        for obj in getattr(formset, "deleted_objects", []):
            admin_change_record(request, obj, verb="delete")
