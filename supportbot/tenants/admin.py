from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from supportbot.tenants.models import ModelPrice, Tenant, TenantLimits, WidgetKey
from supportbot.tenants.prices import prices_reload
from supportbot.tenants.services import tenant_llm_key_after_edit
from supportbot.tenants.usage import (
    tenant_ids_administered,
    today,
    usage_days,
    usage_now,
)
from supportbot.tenants.usage_chart import day_summaries, usage_chart_svg


class WidgetKeyInline(admin.TabularInline):
    model = WidgetKey
    extra = 0
    fields = ("public_key", "label", "is_active", "allowed_origins", "created_at")
    readonly_fields = ("public_key", "created_at")


class SuperuserOnly:
    """Only superusers see and change these rows (operators' controls: limits, prices)."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request)


class TenantAdminForm(forms.ModelForm):
    llm_api_key = forms.CharField(
        label="LLM API key",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current key.",
    )
    clear_llm_api_key = forms.BooleanField(label="Remove the stored API key", required=False)

    class Meta:
        model = Tenant
        fields = (
            "name",
            "slug",
            "is_active",
            "allowed_origins",
            "persona",
            "supported_languages",
            "fallback_language",
            "message_max_chars",
            "history_token_budget",
            "knowledge_passages",
            "handoff_after_failures",
            "llm_provider",
            "llm_base_url",
            "llm_model",
            "fallback_llm_model",
            "llm_api_version",
            "temperature",
            "top_p",
            "max_tokens",
            "presence_penalty",
            "frequency_penalty",
            "seed",
            "stop",
        )


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantAdminForm
    list_display = ("name", "slug", "is_active", "llm_provider", "llm_model", "created_at")
    list_filter = ("is_active", "llm_provider")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [WidgetKeyInline]
    readonly_fields = ("usage_link",)
    fieldsets = (
        (None, {"fields": ("name", "slug", "is_active", "allowed_origins", "usage_link")}),
        (
            "Assistant",
            {
                "fields": (
                    "persona",
                    "supported_languages",
                    "fallback_language",
                    "message_max_chars",
                    "history_token_budget",
                    "knowledge_passages",
                    "handoff_after_failures",
                )
            },
        ),
        (
            "Model provider (blank: the server's default)",
            {
                "fields": (
                    "llm_provider",
                    "llm_base_url",
                    "llm_model",
                    "fallback_llm_model",
                    "llm_api_version",
                    "llm_api_key",
                    "clear_llm_api_key",
                )
            },
        ),
        (
            "Generation parameters",
            {
                "fields": (
                    "temperature",
                    "top_p",
                    "max_tokens",
                    "presence_penalty",
                    "frequency_penalty",
                    "seed",
                    "stop",
                )
            },
        ),
    )

    @admin.display(description="Usage")
    def usage_link(self, obj: Tenant) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:tenants_tenant_usage", args=[obj.pk])
        return format_html('<a href="{}">Tokens, cost and replies, last 30 days</a>', url)

    def get_urls(self) -> list[URLPattern]:
        usage = path(
            "<int:tenant_id>/usage/",
            self.admin_site.admin_view(self.usage_view),
            name="tenants_tenant_usage",
        )
        return [usage, *super().get_urls()]

    def usage_view(self, request: HttpRequest, tenant_id: int) -> HttpResponse:
        """The tenant's usage: superusers and the tenant's own admins only (404 for anyone
        else, so another tenant's id reveals nothing)."""
        allowed = tenant_ids_administered(request.user)
        if allowed is not None and tenant_id not in allowed:
            raise Http404("No such tenant.")
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None:
            raise Http404("No such tenant.")
        rows = usage_days(tenant.pk, days=30)
        now = usage_now(tenant)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Usage of {tenant.name}",
            "tenant": tenant,
            "opts": self.model._meta,
            "chart": usage_chart_svg(rows, last_day=today(), days=30),
            "days": day_summaries(rows),
            "rows": rows,
            "now": now,
            "percentages": now.percentages(),
        }
        return TemplateResponse(request, "admin/tenants/tenant/usage.html", context)

    def save_model(
        self, request: HttpRequest, obj: Tenant, form: forms.ModelForm, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        removed = tenant_llm_key_after_edit(
            tenant=obj,
            changed_fields=set(form.changed_data) if change else set(),
            new_api_key=form.cleaned_data.get("llm_api_key") or "",
            clear=bool(form.cleaned_data.get("clear_llm_api_key")),
        )
        if removed and not form.cleaned_data.get("clear_llm_api_key"):
            messages.warning(
                request,
                "The stored API key was removed because the provider or base URL changed: "
                "enter the key for the new provider.",
            )


@admin.register(WidgetKey)
class WidgetKeyAdmin(admin.ModelAdmin):
    list_display = ("public_key", "tenant", "label", "is_active", "created_at")
    list_filter = ("is_active", "tenant")
    search_fields = ("public_key", "label", "tenant__name")
    readonly_fields = ("public_key", "created_at")
    list_select_related = ("tenant",)


@admin.register(ModelPrice)
class ModelPriceAdmin(SuperuserOnly, admin.ModelAdmin):
    list_display = (
        "model",
        "prompt_per_million",
        "completion_per_million",
        "prices_as_of",
        "note",
    )
    search_fields = ("model",)

    def save_model(
        self, request: HttpRequest, obj: ModelPrice, form: forms.ModelForm, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        prices_reload()

    def delete_model(self, request: HttpRequest, obj: ModelPrice) -> None:
        super().delete_model(request, obj)
        prices_reload()


@admin.register(TenantLimits)
class TenantLimitsAdmin(SuperuserOnly, admin.ModelAdmin):
    """A tenant's usage limits (also `manage.py tenant_limits`); 0 is no limit."""

    list_display = (
        "tenant",
        "requests_per_minute",
        "tokens_per_day",
        "tokens_per_month",
        "spend_per_month",
        "max_concurrent_replies",
        "updated_at",
    )
    list_select_related = ("tenant",)
    search_fields = ("tenant__name", "tenant__slug")
    autocomplete_fields = ("tenant",)
