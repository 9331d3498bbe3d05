"""The "Data requests" page: a compliance officer finds a person of one of their tenants by a
selector, previews what an export holds or an erasure removes (counts per store), runs it
(progress per store, on the Celery `default` queue), downloads the export and reads the
erasure certificate. Operators see every tenant; agents and tenant admins see none of it.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from supportbot.compliance.audit import record_event
from supportbot.compliance.data_requests import (
    SubjectNotFound,
    data_request_create,
    data_request_preview,
    export_file_path,
    selector_from,
)
from supportbot.compliance.models import DataRequest
from supportbot.tenants.models import Tenant
from supportbot.tenants.roles import Capability, tenants_for_user, user_can_anywhere
from supportbot.tenants.scoped_admin import TenantListFilter, TenantScopedAdmin


class SubjectForm(forms.Form):
    """Which person, of which of the user's tenants; and, to run it, what to do."""

    tenant = forms.TypedChoiceField(coerce=int)
    selector_kind = forms.ChoiceField(label="Find by", choices=DataRequest.SelectorKind.choices)
    selector_value = forms.CharField(label="Value", max_length=255)
    kind = forms.ChoiceField(choices=DataRequest.Kind.choices, required=False)
    confirm = forms.BooleanField(
        required=False, label="I understand that erasure cannot be undone."
    )

    def __init__(self, *args: Any, tenants: list[Tenant], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tenant"].choices = [(t.pk, t.name) for t in tenants]  # type: ignore[attr-defined]


@admin.register(DataRequest)
class DataRequestAdmin(TenantScopedAdmin):
    capability = Capability.DATA_REQUESTS
    rows_editable = False
    rows_deletable = False
    list_display = ("reference", "tenant_name", "kind", "status", "progress_shown", "created_at")
    list_filter = (TenantListFilter, "kind", "status")
    search_fields = ("reference",)
    readonly_fields = (
        "reference",
        "tenant_name",
        "kind",
        "status",
        "progress_shown",
        "error",
        "created_at",
        "started_at",
        "finished_at",
        "download",
        "certificate_shown",
    )
    fields = readonly_fields
    change_form_template = "admin/compliance_desk/datarequest/change_form.html"

    @admin.display(description="Tenant")
    def tenant_name(self, obj: DataRequest) -> str:
        tenant = Tenant.objects.filter(pk=obj.tenant_id).first()
        return tenant.name if tenant else f"#{obj.tenant_id}"

    @admin.display(description="Progress")
    def progress_shown(self, obj: DataRequest) -> str:
        if obj.status == DataRequest.Status.RUNNING and obj.current_store:
            return f"{obj.progress}% ({obj.current_store})"
        return f"{obj.progress}%"

    @admin.display(description="Export")
    def download(self, obj: DataRequest) -> str:
        if obj.kind != DataRequest.Kind.EXPORT:
            return "-"
        if export_file_path(obj) is None:
            return "Not available (not built yet, or expired)"
        url = reverse("admin:compliance_datarequest_download", args=[obj.pk])
        expires = obj.export_expires_at.isoformat() if obj.export_expires_at else ""
        return format_html('<a href="{}">Download the zip</a> (until {})', url, expires)

    @admin.display(description="Erasure certificate")
    def certificate_shown(self, obj: DataRequest) -> str:
        if not obj.certificate:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(obj.certificate, indent=2, sort_keys=True))

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "new/",
                self.admin_site.admin_view(self.new_request_view),
                name="compliance_datarequest_new",
            ),
            path(
                "<int:object_id>/download/",
                self.admin_site.admin_view(self.download_view),
                name="compliance_datarequest_download",
            ),
            *super().get_urls(),
        ]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:compliance_datarequest_new"))

    def new_request_view(self, request: HttpRequest) -> HttpResponse:
        """POST `action=preview` shows counts per store; `action=run` queues the request (an
        erasure only with `confirm`). A tenant the user may not serve is not a valid choice."""
        if not user_can_anywhere(request.user, self.capability):
            raise PermissionDenied
        tenants = list(tenants_for_user(request.user, self.capability))
        form = SubjectForm(request.POST or None, tenants=tenants)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "New data request",
            "opts": self.model._meta,
            "form": form,
            "preview": None,
        }
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            selector = selector_from(data["selector_kind"], data["selector_value"])
            try:
                context["preview"] = data_request_preview(
                    tenant_id=data["tenant"], selector=selector
                )
            except SubjectNotFound:
                form.add_error("selector_value", "No such person in this tenant.")
            else:
                if request.POST.get("action") == "run":
                    response = self._run(request, form, data)
                    if response is not None:
                        return response
        response = TemplateResponse(request, "admin/compliance_desk/datarequest/new.html", context)
        add_never_cache_headers(response)
        return response

    def _run(
        self, request: HttpRequest, form: SubjectForm, data: dict[str, Any]
    ) -> HttpResponse | None:
        if data["kind"] not in DataRequest.Kind.values:
            form.add_error("kind", "Choose export or erasure.")
            return None
        if data["kind"] == DataRequest.Kind.ERASE and not data["confirm"]:
            form.add_error("confirm", "Confirm the erasure: it cannot be undone.")
            return None
        created = data_request_create(
            tenant_id=data["tenant"],
            kind=data["kind"],
            selector_kind=data["selector_kind"],
            selector_value=data["selector_value"],
            requested_by=request.user.pk,
        )
        return HttpResponseRedirect(
            reverse("admin:compliance_datarequest_change", args=[created.pk])
        )

    def download_view(self, request: HttpRequest, object_id: int) -> FileResponse:
        """The export's zip, for a user who may serve its tenant (404 for anyone else)."""
        data_request = self.get_queryset(request).filter(pk=object_id).first()
        if data_request is None or not self.has_view_permission(request, data_request):
            raise Http404("No such data request.")
        path_ = export_file_path(data_request)
        if path_ is None:
            raise Http404("The export is not available (not built yet, or expired).")
        record_event(
            tenant_id=data_request.tenant_id,
            action="data.export.download",
            actor=f"user:{request.user.pk}",
            target=f"data_request:{data_request.reference}",
        )
        response = FileResponse(
            path_.open("rb"),
            as_attachment=True,
            filename=f"{data_request.reference}.zip",
            content_type="application/zip",
        )
        add_never_cache_headers(response)
        return response
