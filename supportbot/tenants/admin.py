"""Admin of tenants, their widget keys and members, scoped by role (supportbot.tenants.roles).

Operators (superusers) add and delete tenants and edit every field; a tenant admin edits their
own tenants' settings in `TENANT_ADMIN_FIELDS` (the rest are shown read-only), their widget keys
and their members. Users and groups are the operators' alone.
"""

from typing import Any

from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from supportbot.tenants.admin_audit import AuditedAdmin, user_actor
from supportbot.tenants.models import (
    ConsentText,
    ModelPrice,
    Tenant,
    TenantLimits,
    TenantMembership,
    WidgetKey,
)
from supportbot.tenants.moderation import moderation_warning, tenant_moderation_key_after_edit
from supportbot.tenants.prices import prices_reload
from supportbot.tenants.roles import Capability, is_operator, tenant_ids_for_user, user_can
from supportbot.tenants.scoped_admin import OperatorOnlyAdmin, TenantListFilter, TenantScopedAdmin
from supportbot.tenants.services import tenant_llm_key_after_edit, tenant_rotate_identity_secret
from supportbot.tenants.usage import today, usage_days, usage_now
from supportbot.tenants.usage_chart import day_summaries, usage_chart_svg

# What a tenant admin may edit of their tenant; every other field (the slug, the active flag,
# the provider, model and key, the token budgets: what costs the operator or sends requests
# elsewhere) is the operator's. A field not named here is read-only for tenant admins.
TENANT_ADMIN_FIELDS = frozenset(
    {
        "name",
        "allowed_origins",
        "persona",
        "supported_languages",
        "fallback_language",
        "message_max_chars",
        "knowledge_passages",
        "handoff_after_failures",
        "temperature",
        "top_p",
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
        "conversation_retention_days",
        "llm_call_retention_days",
        "audit_retention_days",
        "lawful_basis",
        "privacy_url",
        "redact_pii",
        "phone_region",
        "moderation_source",
        "moderation_fail_closed",
        "sensitive_topics",
    }
)
_KEY_FIELDS = (
    "llm_api_key",
    "clear_llm_api_key",
    "moderation_api_key",
    "clear_moderation_api_key",
)


class WidgetKeyInline(admin.TabularInline):
    model = WidgetKey
    extra = 0
    fields = ("public_key", "label", "is_active", "allowed_origins", "created_at")
    readonly_fields = ("public_key", "created_at")

    def _allows(self, request: HttpRequest, obj: Tenant | None) -> bool:
        if obj is None:
            return is_operator(request.user)
        return user_can(request.user, obj, Capability.WIDGET_KEYS)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allows(request, obj)


class ConsentTextInline(admin.TabularInline):
    """The consent or privacy notice texts, per language. A stored version is never edited (a
    consent record names the version that was accepted): a new text is a new version, and the
    newest version of a language is the one the widget shows."""

    model = ConsentText
    extra = 0
    fields = ("language", "version", "text", "created_at")
    readonly_fields = ("version", "created_at")
    verbose_name = "consent text"
    verbose_name_plural = "Consent texts (the newest version of a language is shown)"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is not None and user_can(request.user, obj, Capability.SETTINGS)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# The tenant page, section by section: the one list of the fields an operator sees.
TENANT_FIELDSETS: Any = (
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
        "Data protection",
        {"fields": ("lawful_basis", "privacy_url")},
    ),
    (
        "Visitor identity",
        {"fields": ("identity_required", "identity_secret_status")},
    ),
    (
        "Retention (days; empty: kept)",
        {
            "fields": (
                "conversation_retention_days",
                "llm_call_retention_days",
                "audit_retention_days",
            )
        },
    ),
    ("Personal data sent to the model", {"fields": ("redact_pii", "phone_region")}),
    (
        "Moderation and sensitive topics",
        {
            "fields": (
                "moderation_status",
                "moderation_source",
                "moderation_url",
                "moderation_model",
                "moderation_api_key",
                "clear_moderation_api_key",
                "moderation_fail_closed",
                "sensitive_topics",
            )
        },
    ),
)
_TENANT_FORM_FIELDS = tuple(
    name
    for name in flatten_fieldsets(TENANT_FIELDSETS)
    if name not in {"usage_link", "identity_secret_status", "moderation_status", *_KEY_FIELDS}
)


class TenantAdminForm(forms.ModelForm):
    llm_api_key = forms.CharField(
        label="LLM API key",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current key.",
    )
    clear_llm_api_key = forms.BooleanField(label="Remove the stored API key", required=False)
    moderation_api_key = forms.CharField(
        label="Moderation API key",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="For the moderation URL. Stored encrypted. Leave empty to keep the current key.",
    )
    clear_moderation_api_key = forms.BooleanField(
        label="Remove the stored moderation key", required=False
    )

    class Meta:
        model = Tenant
        # The model fields the fieldsets show (the admin narrows them further by role).
        fields = _TENANT_FORM_FIELDS


class TenantSettingsForm(TenantAdminForm):
    """A tenant admin's form: no provider key fields (the provider is the operator's)."""

    llm_api_key = None  # type: ignore[assignment]
    clear_llm_api_key = None  # type: ignore[assignment]
    moderation_api_key = None  # type: ignore[assignment]
    clear_moderation_api_key = None  # type: ignore[assignment]


@admin.register(Tenant)
class TenantAdmin(AuditedAdmin, TenantScopedAdmin):
    capability = Capability.SETTINGS
    tenant_field = "pk"
    form = TenantAdminForm
    list_display = ("name", "slug", "is_active", "llm_provider", "llm_model", "created_at")
    list_filter = ("is_active", "llm_provider")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [WidgetKeyInline, ConsentTextInline]
    readonly_fields = ("identity_secret_status", "usage_link", "moderation_status")
    change_form_template = "admin/tenants/tenant/change_form.html"
    fieldsets = TENANT_FIELDSETS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_operator(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_operator(request.user)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if is_operator(request.user):
            return fieldsets
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f not in _KEY_FIELDS]})
            for name, options in fieldsets
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = tuple(super().get_readonly_fields(request, obj))
        if is_operator(request.user):
            return readonly
        shown = flatten_fieldsets(self.get_fieldsets(request, obj))
        return readonly + tuple(f for f in shown if f not in TENANT_ADMIN_FIELDS)

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Any]:
        return super().get_prepopulated_fields(request, obj) if is_operator(request.user) else {}

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if not is_operator(request.user):
            kwargs["form"] = TenantSettingsForm
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="Identity secret")
    def identity_secret_status(self, obj: Tenant | None) -> str:
        # Never the secret itself: it is shown once, when rotated.
        if obj is None or not obj.identity_secret_encrypted:
            return "Not set"
        return "Set (shown only when created or rotated)"

    @admin.display(description="Moderation")
    def moderation_status(self, obj: Tenant | None) -> str:
        if obj is None:
            return "-"
        warning = moderation_warning(obj)
        if warning:
            return format_html('<strong class="moderation-off">⚠ {}</strong>', warning)
        return "On: visitor messages and replies are checked."

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        tenant = self.get_object(request, unquote(object_id))
        if request.method == "GET" and tenant is not None:
            warning = moderation_warning(tenant)
            if warning:
                messages.warning(request, warning)
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[URLPattern]:
        rotate = path(
            "<path:object_id>/rotate-identity-secret/",
            self.admin_site.admin_view(self.rotate_identity_secret_view),
            name="tenants_tenant_rotate_identity_secret",
        )
        usage = path(
            "<int:tenant_id>/usage/",
            self.admin_site.admin_view(self.usage_view),
            name="tenants_tenant_usage",
        )
        return [rotate, usage, *super().get_urls()]

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
            secret = tenant_rotate_identity_secret(tenant=tenant, actor=user_actor(request))
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

    @admin.display(description="Usage")
    def usage_link(self, obj: Tenant) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:tenants_tenant_usage", args=[obj.pk])
        return format_html('<a href="{}">Tokens, cost and replies, last 30 days</a>', url)

    def usage_view(self, request: HttpRequest, tenant_id: int) -> HttpResponse:
        """The tenant's usage: superusers and the tenant's own admins only (404 for anyone
        else, so another tenant's id reveals nothing)."""
        allowed = tenant_ids_for_user(request.user, Capability.USAGE)
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
        removed = tenant_moderation_key_after_edit(
            tenant=obj,
            changed_fields=set(form.changed_data) if change else set(),
            new_api_key=form.cleaned_data.get("moderation_api_key") or "",
            clear=bool(form.cleaned_data.get("clear_moderation_api_key")),
        )
        if removed and not form.cleaned_data.get("clear_moderation_api_key"):
            messages.warning(
                request,
                "The stored moderation key was removed because the moderation source or URL "
                "changed: enter the key for the new service.",
            )


@admin.register(WidgetKey)
class WidgetKeyAdmin(AuditedAdmin, TenantScopedAdmin):
    capability = Capability.WIDGET_KEYS
    list_display = ("public_key", "tenant", "label", "is_active", "created_at")
    list_filter = ("is_active", TenantListFilter)
    search_fields = ("public_key", "label", "tenant__name")
    readonly_fields = ("public_key", "created_at")
    list_select_related = ("tenant",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A key never moves to another tenant.
        readonly = tuple(super().get_readonly_fields(request, obj))
        return readonly if obj is None else ("tenant", *readonly)


class MembershipAddForm(forms.ModelForm):
    """Adding a member names an existing user by their exact username: the user list itself
    (every tenant's people) is never offered."""

    username = forms.CharField(max_length=150, help_text="The exact username of an existing user.")

    class Meta:
        model = TenantMembership
        fields = ("tenant", "username", "role", "display_name")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        username = cleaned.get("username")
        tenant = cleaned.get("tenant")
        if not username or tenant is None:
            return cleaned
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError({"username": "No active user has this username."})
        if TenantMembership.objects.filter(tenant=tenant, user=user).exists():
            raise forms.ValidationError({"username": "This user is already a member."})
        self.instance.user = user
        return cleaned


@admin.register(TenantMembership)
class MembershipAdmin(AuditedAdmin, TenantScopedAdmin):
    """A tenant admin manages their own tenants' members: roles there and display names. They
    cannot change their own role or remove themselves, nor reach another tenant."""

    capability = Capability.MEMBERS
    list_display = ("user", "tenant", "role", "display_name", "created_at")
    list_filter = (TenantListFilter, "role")
    search_fields = ("user__username", "display_name", "tenant__name")
    list_select_related = ("tenant", "user")
    fields = ("tenant", "user", "role", "display_name", "created_at")

    def _own(self, request: HttpRequest, obj: Any) -> bool:
        return obj is not None and obj.user_id == request.user.pk

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("tenant", "username", "role", "display_name")
        return self.fields

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = MembershipAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        readonly: tuple[str, ...] = ("tenant", "user", "created_at")
        if self._own(request, obj) and not is_operator(request.user):
            readonly += ("role",)
        return readonly

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if self._own(request, obj) and not is_operator(request.user):
            return False
        return super().has_delete_permission(request, obj)


UserModel = get_user_model()
for _model in (UserModel, Group, AccessAttempt, AccessLog, AccessFailureLog, TOTPDevice):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.register(UserModel)
class OperatorUserAdmin(OperatorOnlyAdmin, UserAdmin):
    """Users (and who is staff or superuser) are the operators' alone."""


@admin.register(Group)
class OperatorGroupAdmin(OperatorOnlyAdmin, GroupAdmin):
    """Groups grant Django model permissions, which the scoped admins do not read."""


# Login attempts and two-factor devices name every tenant's staff: the operators' alone, whatever
# Django model permissions a user was given.
@admin.register(AccessAttempt)
class OperatorAccessAttemptAdmin(OperatorOnlyAdmin, AccessAttemptAdmin):
    """Failed admin logins being counted (lockouts)."""


@admin.register(AccessLog)
class OperatorAccessLogAdmin(OperatorOnlyAdmin, AccessLogAdmin):
    """Admin logins and logouts."""


@admin.register(AccessFailureLog)
class OperatorAccessFailureLogAdmin(OperatorOnlyAdmin, AccessFailureLogAdmin):
    """Every failed admin login."""


@admin.register(TOTPDevice)
class OperatorTOTPDeviceAdmin(OperatorOnlyAdmin, TOTPDeviceAdmin):
    """Staff users' authenticator devices (the secret is never shown)."""


@admin.register(ModelPrice)
class ModelPriceAdmin(OperatorOnlyAdmin):
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
class TenantLimitsAdmin(AuditedAdmin, OperatorOnlyAdmin):
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
