"""The admin of channels beyond the widget: channels (write-only credentials), the outbox
(failures, retry) and API keys.

For the platform's operators and the tenants' admins (the `settings` capability of
`supportbot.tenants.roles`); agents see none of it. A channel's form is built from its kind's
spec (`conversations/channels/specs.py`): settings as inputs, secrets as password inputs that
are never rendered back (blank keeps the current one). The secrets Supportbot makes, and a new
API key, are shown once, in the message after saving. Another tenant's row is not found (404).
"""

from typing import Any, ClassVar, NoReturn

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from conversations.audit_trail import user_actor
from conversations.channels.api_keys import api_key_create, api_key_revoke
from conversations.channels.outbox_send import delivery_retry
from conversations.channels.setup import (
    ChannelSetup,
    ChannelSetupError,
    channel_settings_split,
    channel_setup,
    channel_update,
    channel_webhook_url,
)
from conversations.channels.specs import SPECS, ChannelSpec, Setting
from conversations.models import ApiKey, ChannelAccount, InboundEvent, OutboundDelivery
from supportbot.compliance.audit import record_event
from supportbot.tenants.roles import Capability, rows_for_user
from supportbot.tenants.scoped_admin import TenantListFilter, TenantScopedAdmin

GENERATED_ON_SAVE = "generated-on-save"


class NotFoundScopedAdmin(TenantScopedAdmin):
    """A scoped admin where another tenant's row (or no row) answers 404."""

    capability = Capability.SETTINGS

    def _get_obj_does_not_exist_redirect(
        self, request: HttpRequest, opts: Any, object_id: str
    ) -> NoReturn:
        raise Http404(f"No {opts.verbose_name} with this id.")


def _adopt(obj: Any, saved: Any) -> None:
    """Make the admin's unsaved `obj` the row a service saved (for the admin's log, message and
    redirect after adding)."""
    for model_field in saved._meta.concrete_fields:
        setattr(obj, model_field.attname, getattr(saved, model_field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


# --- channels --------------------------------------------------------------------------------


class ChannelForm(forms.ModelForm):
    """The channel's own fields; `channel_form` adds the kind's settings and secrets."""

    spec: ClassVar[ChannelSpec]

    class Meta:
        model = ChannelAccount
        fields = ("tenant", "name", "is_active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        adding = self.instance._state.adding
        config = {} if adding else (self.instance.config or {})
        credentials = {} if adding else (self.instance.credentials or {})
        for setting in self.spec.settings:
            field = self.fields.get(setting.name)
            if field is None:
                continue
            if not setting.secret:
                field.initial = config.get(setting.name, setting.default)
            elif not adding:
                is_set = bool(credentials.get(setting.name))
                state = "Set; leave blank to keep it." if is_set else "Not set."
                field.help_text = f"{setting.help} {state}"

    def setting_values(self) -> dict[str, str]:
        """What was typed for the kind's settings (a blank secret: keep the current one)."""
        return {
            s.name: str(self.cleaned_data.get(s.name) or "")
            for s in self.spec.settings
            if s.name in self.fields
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        values = self.setting_values()
        try:
            if self.instance._state.adding:
                # The secrets made on saving count as given.
                given = {k: v for k, v in values.items() if v}
                made = {s.name: GENERATED_ON_SAVE for s in self.spec.settings if s.generated}
                channel_settings_split(self.spec, {**made, **given})
            else:
                channel_settings_split(
                    self.spec,
                    values,
                    config=self.instance.config or {},
                    credentials=self.instance.credentials or {},
                )
        except ChannelSetupError as error:
            raise ValidationError(str(error)) from error
        return cleaned


def _setting_field(setting: Setting, *, adding: bool) -> forms.Field:
    if not setting.secret:
        return forms.CharField(
            label=setting.name,
            required=setting.required and not setting.default,
            help_text=setting.help,
            max_length=500,
        )
    help_text = setting.help + (" Leave blank to have one made." if setting.generated else "")
    return forms.CharField(
        label=setting.name,
        required=adding and setting.required and not setting.generated,
        help_text=help_text,
        max_length=2000,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


def channel_form(spec: ChannelSpec, *, adding: bool) -> type[ChannelForm]:
    """The form of a channel of `spec`'s kind: its settings as inputs, its secrets write-only."""
    attrs: dict[str, Any] = {s.name: _setting_field(s, adding=adding) for s in spec.settings}
    attrs["spec"] = spec
    return type(f"ChannelForm_{spec.kind}", (ChannelForm,), attrs)


def _shown_once(setup: ChannelSetup) -> str:
    secrets = [f"{name}: {value}" for name, value in setup.generated.items()]
    if setup.api_key:
        secrets.append(f"API key: {setup.api_key}")
    text = f"Webhook URL: {setup.webhook_url}"
    if secrets:
        text += ". Copy now, they are not shown again: " + "; ".join(secrets)
    return text


@admin.register(ChannelAccount)
class ChannelAccountAdmin(NotFoundScopedAdmin):
    list_display = ("__str__", "tenant", "kind", "is_active", "webhook_url", "created_at")
    list_filter = (TenantListFilter, "kind", "is_active")
    search_fields = ("name",)
    list_select_related = ("tenant",)
    choose_kind_template = "admin/conversations/channelaccount/choose_kind.html"

    @admin.display(description="Webhook URL")
    def webhook_url(self, obj: ChannelAccount) -> str:
        return channel_webhook_url(obj)

    def _spec(self, request: HttpRequest, obj: ChannelAccount | None) -> ChannelSpec:
        kind = obj.kind if obj is not None else request.GET.get("kind", "")
        if kind not in SPECS:
            raise Http404("Unknown channel kind.")
        return SPECS[kind]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.GET.get("kind") in SPECS:
            return super().add_view(request, form_url, extra_context)
        if not self.has_add_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Add channel: choose its kind",
            "kinds": ChannelAccount.Kind.choices,
        }
        return TemplateResponse(request, self.choose_kind_template, context)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        spec = self._spec(request, obj)
        label = dict(ChannelAccount.Kind.choices)[spec.kind]
        if obj is None:
            main: tuple[str, ...] = ("tenant", "name")
        else:
            main = ("tenant", "kind", "name", "is_active", "webhook_url", "created_at")
        fieldsets: list[Any] = [(f"{label} channel", {"fields": main})]
        if spec.config_settings:
            names = [s.name for s in spec.config_settings]
            fieldsets.append(("Settings", {"fields": names}))
        if spec.credential_settings:
            names = [s.name for s in spec.credential_settings]
            note = "Write-only: never shown again once saved; leave blank to keep."
            fieldsets.append(("Secrets", {"fields": names, "description": note}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("tenant", "kind", "webhook_url", "created_at") if obj is not None else ()

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs["form"] = channel_form(self._spec(request, obj), adding=obj is None)
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        actor = user_actor(request.user)
        if change:
            channel_update(account=obj, settings=form.setting_values(), actor=actor)
            return
        setup = channel_setup(
            tenant=obj.tenant,
            kind=form.spec.kind,
            settings={k: v for k, v in form.setting_values().items() if v},
            name=obj.name,
            actor=actor,
        )
        _adopt(obj, setup.account)
        messages.warning(request, _shown_once(setup))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            _channel_deleted(request, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset:
                _channel_deleted(request, obj)
            super().delete_queryset(request, queryset)


def _channel_deleted(request: HttpRequest, account: ChannelAccount) -> None:
    record_event(
        tenant_id=account.tenant_id,
        action="channel.delete",
        actor=user_actor(request.user),
        target=f"channel:{account.pk}",
        details={"kind": account.kind},
    )


# --- API keys --------------------------------------------------------------------------------


@admin.register(ApiKey)
class ApiKeyAdmin(NotFoundScopedAdmin):
    rows_deletable = False  # revoked, never deleted: the list keeps who had a key
    list_display = (
        "prefix",
        "name",
        "tenant",
        "channel_account",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = (TenantListFilter, ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("prefix", "name")
    list_select_related = ("tenant", "channel_account")
    actions = ("revoke",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("channel_account", "name")
        return ("prefix", "name", *self.get_readonly_fields(request, obj)[1:])

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        return ("prefix", "tenant", "channel_account", "created_at", "last_used_at", "revoked_at")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "channel_account":
            kwargs["queryset"] = rows_for_user(
                ChannelAccount.objects.filter(kind=ChannelAccount.Kind.API),
                user=request.user,
                capability=self.capability,
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        with transaction.atomic():
            new = api_key_create(account=obj.channel_account, name=obj.name)
            record_event(
                tenant_id=new.api_key.tenant_id,
                action="api_key.create",
                actor=user_actor(request.user),
                target=f"channel:{new.api_key.channel_account_id}",
                details={"prefix": new.api_key.prefix},
            )
        _adopt(obj, new.api_key)
        messages.warning(request, f"API key: {new.key} (copy it now: it is not shown again)")

    @admin.action(description="Revoke", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            with transaction.atomic():
                if api_key_revoke(api_key_id=key.pk, tenant_id=key.tenant_id):
                    revoked += 1
                    record_event(
                        tenant_id=key.tenant_id,
                        action="api_key.revoke",
                        actor=user_actor(request.user),
                        target=f"channel:{key.channel_account_id}",
                        details={"prefix": key.prefix},
                    )
        self.message_user(request, f"{revoked} API key(s) revoked.", messages.SUCCESS)


# --- the outbox and inbound events -----------------------------------------------------------


class ReadOnlyChannelAdmin(NotFoundScopedAdmin):
    """Rows the channel layer writes: read here, never added, edited or deleted."""

    rows_addable = False
    rows_editable = False
    rows_deletable = False


@admin.register(OutboundDelivery)
class OutboundDeliveryAdmin(ReadOnlyChannelAdmin):
    list_display = (
        "id",
        "state",
        "tenant",
        "channel_account",
        "conversation_link",
        "attempts",
        "last_status",
        "last_error",
        "created_at",
        "sent_at",
    )
    list_filter = (TenantListFilter, "state", "channel_account__kind")
    list_select_related = ("tenant", "channel_account")
    fields = (
        "id",
        "state",
        "tenant",
        "channel_account",
        "conversation_link",
        "attempts",
        "next_attempt_at",
        "last_status",
        "last_error",
        "provider_message_ids",
        "created_at",
        "sent_at",
    )
    readonly_fields = fields
    actions = ("retry",)

    @admin.display(description="Conversation")
    def conversation_link(self, obj: OutboundDelivery) -> str:
        url = reverse("admin:conversations_conversation_change", args=[obj.conversation_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.conversation_id)[:8])

    @admin.action(description="Retry delivery")
    def retry(self, request: HttpRequest, queryset: QuerySet[OutboundDelivery]) -> None:
        rows = list(queryset.values_list("pk", "tenant_id"))
        retried = sum(delivery_retry(delivery_id=pk, tenant_id=tenant_id) for pk, tenant_id in rows)
        self.message_user(request, f"{retried} delivery(ies) queued again.", messages.SUCCESS)
        if retried < len(rows):
            self.message_user(
                request, f"{len(rows) - retried} not failed: left as they were.", messages.INFO
            )


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyChannelAdmin):
    """What providers sent, without its content (`payload` is never shown)."""

    list_display = (
        "received_at",
        "tenant",
        "channel_account",
        "kind",
        "state",
        "detail",
        "processed_at",
    )
    list_filter = (TenantListFilter, "state", "kind", "channel_account__kind")
    list_select_related = ("tenant", "channel_account")
    fields = (
        "id",
        "tenant",
        "channel_account",
        "provider_event_id",
        "kind",
        "state",
        "detail",
        "received_at",
        "processed_at",
    )
    readonly_fields = fields
