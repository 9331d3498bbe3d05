from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from supportbot.tenants.models import Tenant, WidgetKey
from supportbot.tenants.services import tenant_llm_key_after_edit


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
        )


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantAdminForm
    list_display = ("name", "slug", "is_active", "llm_provider", "llm_model", "created_at")
    list_filter = ("is_active", "llm_provider")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [WidgetKeyInline]
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
    )

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
