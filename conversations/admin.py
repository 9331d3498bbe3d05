"""Agents' view of conversations: filterable lists and a read-only transcript shown as a chat."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from conversations.models import Contact, Conversation, LLMCall, Message


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = (
        "short_id",
        "tenant",
        "status",
        "channel",
        "language",
        "last_seq",
        "last_message_at",
        "created_at",
    )
    list_filter = (
        "tenant",
        "status",
        "channel",
        "language",
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("id", "messages__text")
    date_hierarchy = "created_at"
    list_select_related = ("tenant",)
    readonly_fields = (
        "id",
        "tenant",
        "contact",
        "channel",
        "status",
        "language",
        "last_seq",
        "created_at",
        "last_message_at",
    )
    fields = readonly_fields
    change_form_template = "admin/conversations/conversation/change_form.html"
    show_full_result_count = False

    @admin.display(description="Conversation", ordering="id")
    def short_id(self, obj: Conversation) -> str:
        return str(obj.id)[:8]

    def get_search_results(self, request, queryset, search_term):
        results, _ = super().get_search_results(request, queryset, search_term)
        return results.distinct(), False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        extra_context["transcript"] = (
            Message.objects.filter(conversation_id=object_id).order_by("seq") if object_id else []
        )
        extra_context["llm_calls"] = LLMCall.objects.filter(conversation_id=object_id).order_by(
            "-created_at"
        )[:50]
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Contact)
class ContactAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "locale", "created_at", "last_seen_at")
    list_filter = ("tenant",)
    search_fields = ("id",)
    list_select_related = ("tenant",)


@admin.register(LLMCall)
class LLMCallAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "tenant",
        "purpose",
        "model",
        "outcome",
        "error_code",
        "finish_reason",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "first_token_ms",
        "attempts",
    )
    list_filter = (
        "tenant",
        "outcome",
        "purpose",
        "model",
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("conversation__id", "error_code", "model")
    list_select_related = ("tenant",)
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[LLMCall]:
        return super().get_queryset(request).select_related("tenant")
