from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.cache import add_never_cache_headers

from supportbot.tenants.models import Tenant, WidgetKey
from supportbot.tenants.services import tenant_llm_key_after_edit, tenant_rotate_identity_secret


class WidgetKeyInline(admin.TabularInline):
    model = WidgetKey
    extra = 0
    fields = ("public_key", "label", "is_active", "allowed_origins", "created_at")
    readonly_fields = ("public_key", "created_at")


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
            "conversation_mode",
            "person_first_wait_minutes",
            "business_hours_timezone",
            "business_hours",
            "ai_disclosure",
            "identity_required",
        )


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantAdminForm
    list_display = ("name", "slug", "is_active", "llm_provider", "llm_model", "created_at")
    list_filter = ("is_active", "llm_provider")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [WidgetKeyInline]
    readonly_fields = ("identity_secret_status",)
    change_form_template = "admin/tenants/tenant/change_form.html"
    fieldsets = (
        (None, {"fields": ("name", "slug", "is_active", "allowed_origins")}),
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
        (
            "Conversation mode and AI disclosure",
            {
                "fields": (
                    "conversation_mode",
                    "person_first_wait_minutes",
                    "business_hours_timezone",
                    "business_hours",
                    "ai_disclosure",
                )
            },
        ),
        (
            "Visitor identity",
            {"fields": ("identity_required", "identity_secret_status")},
        ),
    )

    @admin.display(description="Identity secret")
    def identity_secret_status(self, obj: Tenant | None) -> str:
        # Never the secret itself: it is shown once, when rotated.
        if obj is None or not obj.identity_secret_encrypted:
            return "Not set"
        return "Set (shown only when created or rotated)"

    def get_urls(self) -> list[URLPattern]:
        rotate = path(
            "<path:object_id>/rotate-identity-secret/",
            self.admin_site.admin_view(self.rotate_identity_secret_view),
            name="tenants_tenant_rotate_identity_secret",
        )
        return [rotate, *super().get_urls()]

    def rotate_identity_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET asks to confirm; POST rotates and shows the new secret once, in this response's
        message (rendered here, never stored in the session or a cookie)."""
        tenant = self.get_object(request, unquote(object_id))
        if tenant is None:
            raise Http404
        if not self.has_change_permission(request, tenant):
            raise PermissionDenied
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Rotate the identity secret",
            "opts": self.model._meta,
            "original": tenant,
            "rotated": False,
        }
        if request.method == "POST":
            secret = tenant_rotate_identity_secret(tenant=tenant)
            self.log_change(request, tenant, "Rotated the identity secret.")
            messages.success(
                request,
                f"New identity secret for {tenant.name}: {secret} — copy it to your backend now; "
                "it will not be shown again. Identities signed with the old secret are refused.",
            )
            context["rotated"] = True
        response = TemplateResponse(
            request, "admin/tenants/tenant/rotate_identity_secret.html", context
        )
        add_never_cache_headers(response)
        return response

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
