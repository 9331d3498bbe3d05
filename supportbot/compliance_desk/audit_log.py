"""The audit log page: compliance officers browse, filter and export their tenants' events.

Read-only (nothing is added, changed or deleted here). Scoped by `Capability.AUDIT`: an
officer sees the chains of the tenants where they hold the compliance role; operators see
every chain, the platform's (logins) too. Tenant admins and agents do not see the page.
Exports (CSV or JSON, streamed) hold exactly the filtered list, and are themselves recorded.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, ClassVar

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Max, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponseBadRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from supportbot.compliance.audit import record_event
from supportbot.compliance.audit_store import event_record
from supportbot.compliance.models import AuditEvent
from supportbot.tenants.models import Tenant
from supportbot.tenants.roles import Capability, is_operator, tenant_ids_for_user
from supportbot.tenants.scoped_admin import TenantListFilter, TenantScopedAdmin

EXPORT_COLUMNS = (
    "id",
    "tenant_id",
    "seq",
    "created_at",
    "actor",
    "action",
    "target",
    "contact_id",
    "details",
    "hash",
)
ACTOR_KINDS = (
    ("visitor", "Visitors"),
    ("user", "Staff users"),
    ("assistant", "The assistant"),
    ("system", "The system"),
    ("anonymous", "Anonymous (failed logins)"),
    ("command", "Commands"),
)


class AuditTenantFilter(TenantListFilter):
    """The user's tenants, and for operators the platform's own chain."""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = super().lookups(request, model_admin)
        if is_operator(request.user):
            choices = [("platform", "Platform (logins)"), *choices]
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "platform":
            return queryset.filter(tenant_id__isnull=True)
        return super().queryset(request, queryset)


class ActorKindFilter(admin.SimpleListFilter):
    title = "actor"
    parameter_name = "actor_kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        return ACTOR_KINDS

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value in ("visitor", "user", "command"):
            return queryset.filter(actor__startswith=f"{value}:")
        if value:
            return queryset.filter(actor=value)
        return queryset


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(events: QuerySet[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_COLUMNS)
    for event in events.iterator(chunk_size=2000):
        record = event_record(event) | {"tenant_id": event.tenant_id}
        record["details"] = json.dumps(record["details"], sort_keys=True)
        yield writer.writerow([record[column] for column in EXPORT_COLUMNS])


def _json_rows(events: QuerySet[AuditEvent]) -> Iterator[str]:
    yield "[\n"
    separator = ""
    for event in events.iterator(chunk_size=2000):
        record = event_record(event) | {"tenant_id": event.tenant_id}
        yield separator + json.dumps({column: record[column] for column in EXPORT_COLUMNS})
        separator = ",\n"
    yield "\n]\n"


class AuditEventAdmin(TenantScopedAdmin):
    capability = Capability.AUDIT
    rows_addable = False
    rows_editable = False
    rows_deletable = False
    actions = None
    list_display = ("created_at", "tenant_name", "seq", "action", "actor", "target", "contact_id")
    list_filter = (AuditTenantFilter, "action", ActorKindFilter, "created_at")
    date_hierarchy = "created_at"
    search_fields = ("=contact_id", "=target", "=actor")
    search_help_text = "An exact contact id, target (conversation:<id>) or actor (user:<id>)."
    list_per_page = 100
    show_full_result_count = False
    fields = (
        "tenant_name",
        "seq",
        "created_at",
        "actor",
        "action",
        "target",
        "contact_id",
        "details_display",
        "details_digest",
        "anchor_seq",
        "anchor_hash",
        "prev_hash",
        "hash",
    )
    readonly_fields = fields
    change_list_template = "admin/compliance/auditevent/change_list.html"
    export_formats: ClassVar[dict[str, str]] = {"csv": "text/csv", "json": "application/json"}

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        tenant_name = Tenant.objects.filter(pk=OuterRef("tenant_id")).values("name")[:1]
        return (
            super()
            .get_queryset(request)
            .select_related("detail")
            .annotate(tenant_name=Subquery(tenant_name))
        )

    def allows(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.tenant_id is None:
            return is_operator(request.user)  # the platform's chain
        return super().allows(request, obj)

    @admin.display(description="tenant", ordering="tenant_id")
    def tenant_name(self, obj: AuditEvent) -> str:
        if obj.tenant_id is None:
            return "Platform"
        return getattr(obj, "tenant_name", None) or f"#{obj.tenant_id}"

    @admin.display(description="details")
    def details_display(self, obj: AuditEvent) -> str:
        detail = getattr(obj, "detail", None)
        if detail is None:
            return "—" if not obj.details_digest else "(erased)"
        return format_html("<pre>{}</pre>", json.dumps(detail.data, indent=2, sort_keys=True))

    def get_urls(self) -> list[URLPattern]:
        export = path(
            "export/<str:fmt>/",
            self.admin_site.admin_view(self.export_view),
            name="compliance_auditevent_export",
        )
        return [export, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        query = request.GET.urlencode()
        extra_context = (extra_context or {}) | {
            "export_links": [
                (
                    fmt.upper(),
                    f"{reverse('admin:compliance_auditevent_export', args=[fmt])}?{query}",
                )
                for fmt in self.export_formats
            ]
        }
        return super().changelist_view(request, extra_context)

    def export_view(self, request: HttpRequest, fmt: str) -> HttpResponseBase:
        """The filtered list (the changelist's own filters and search) as CSV or JSON."""
        if fmt not in self.export_formats or not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("Unknown filter.")
        # What exists now: not the export's own event, nor any written while it streams.
        newest = AuditEvent.objects.aggregate(newest=Max("pk"))["newest"] or 0
        events = changelist.get_queryset(request).filter(pk__lte=newest)
        self._export_record(request, fmt)
        events = events.order_by("tenant_id", "seq")
        rows = _csv_rows(events) if fmt == "csv" else _json_rows(events)
        response = StreamingHttpResponse(rows, content_type=self.export_formats[fmt])
        response["Content-Disposition"] = f'attachment; filename="audit-log.{fmt}"'
        return response

    def _export_record(self, request: HttpRequest, fmt: str) -> None:
        """An export is itself an event, in each chain it may read from."""
        chosen = request.GET.get(AuditTenantFilter.parameter_name, "")
        allowed = tenant_ids_for_user(request.user, Capability.AUDIT)
        if chosen.isdigit() and (allowed is None or int(chosen) in allowed):
            chains: list[int | None] = [int(chosen)]
        elif chosen == "platform" or allowed is None:
            chains = [None]
        else:
            chains = [*sorted(allowed)]
        details = {"format": fmt, "filters": sorted(request.GET.keys())}
        for tenant_id in chains:
            record_event(
                tenant_id=tenant_id,
                action="audit_log.export",
                actor=f"user:{request.user.pk}",
                details=details,
            )
