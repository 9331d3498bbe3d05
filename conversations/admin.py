"""Agents' view of conversations: filterable lists, the transcript shown as a chat, and (with
`static/admin_extras/agent.js`) the live agent panel: take over, reply, hand back, close.

Staff see the conversations and contacts of the tenants where their role lets them work on
conversations (agents, tenant admins), and the model calls of those where it lets them see usage
(tenant admins); superusers see every tenant's. The role decides (supportbot.tenants.roles): no
model permission is needed, and none gives more.
"""

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join

from conversations.agent_socket import agent_socket_path
from conversations.audit_trail import conversation_event, user_actor
from conversations.channel_windows import WINDOW_CLOSED_MESSAGE, free_form_window_open
from conversations.models import Contact, Conversation, LLMCall
from conversations.selectors import (
    contacts_matching,
    conversation_resume_seq,
    conversation_transcript_page,
)
from supportbot.tenants.roles import Capability, tenants_for_user, user_can
from supportbot.tenants.scoped_admin import TenantListFilter, TenantScopedAdmin


def contact_identity_html(contact: Contact) -> str:
    """Who the visitor is: a verified contact's name, email and id (from the identity the
    tenant's backend signed) with a "verified" badge; an anonymous visitor's short id."""
    if not contact.is_verified:
        return format_html(
            '{} <span class="identity-badge identity-anonymous">anonymous</span>', contact
        )
    return format_html(
        '<span class="contact-name">{}</span> <span class="contact-email">{}</span> '
        '<span class="identity-badge identity-verified" title="Identity signed by the '
        'tenant\'s backend">verified</span> <span class="contact-external-id">id {}</span>',
        contact.name or "(no name)",
        contact.email,
        contact.external_id,
    )


def _with_contact_matches(
    model_admin: TenantScopedAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    search_term: str,
    *,
    contact_field: str,
) -> tuple[QuerySet[Any], bool]:
    """The admin's own search results, plus the rows of the contacts whose exact email or `sub`
    is the search term (by blind index, within the tenants the user works on)."""
    results, may_have_duplicates = admin.ModelAdmin.get_search_results(
        model_admin, request, queryset, search_term
    )
    term = search_term.strip()
    if not term:
        return results, may_have_duplicates
    tenant_ids = tenants_for_user(request.user, model_admin.capability).values_list("pk", flat=True)
    contacts = Contact.objects.filter(contacts_matching(tenant_ids, term)).values("pk")
    return results | queryset.filter(**{f"{contact_field}__in": contacts}), may_have_duplicates


class ReadOnlyScopedAdmin(TenantScopedAdmin):
    """Rows written by the service itself: read, never added, edited or deleted here
    (erasure goes through the data requests of compliance)."""

    rows_addable = False
    rows_editable = False
    rows_deletable = False


class NeedsReviewFilter(admin.SimpleListFilter):
    """Conversations moderation marked for review (a flagged message or reply)."""

    title = "review"
    parameter_name = "review"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("needed", "Needs review"), ("none", "Not marked")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Conversation]
    ) -> QuerySet[Conversation]:
        if self.value() == "needed":
            return queryset.filter(review_flagged_at__isnull=False)
        if self.value() == "none":
            return queryset.filter(review_flagged_at__isnull=True)
        return queryset


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyScopedAdmin):
    capability = Capability.CONVERSATIONS
    list_display = (
        "short_id",
        "tenant",
        "status_badge",
        "review_badge",
        "assigned_agent",
        "channel",
        "language",
        "last_seq",
        "last_message_at",
        "created_at",
    )
    list_filter = (
        TenantListFilter,
        "status",
        NeedsReviewFilter,
        "channel",
        "language",
        ("created_at", admin.DateFieldListFilter),
    )
    # Message text is stored encrypted: no text search. A contact's exact email or identity
    # `sub` finds their conversations through the blind indexes.
    search_fields = ("id",)
    date_hierarchy = "created_at"
    list_select_related = ("tenant", "assigned_agent", "contact")
    readonly_fields = (
        "id",
        "tenant",
        "contact_display",
        "channel",
        "channel_account",
        "status",
        "assigned_agent",
        "handoff_reason",
        "review_reason",
        "review_flagged_at",
        "language",
        "last_seq",
        "created_at",
        "last_message_at",
        "summary_display",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "tenant",
                    "contact_display",
                    "channel",
                    "channel_account",
                    "status",
                    "assigned_agent",
                    "handoff_reason",
                    "review_reason",
                    "review_flagged_at",
                    "language",
                    "last_seq",
                    "created_at",
                    "last_message_at",
                )
            },
        ),
        ("Summary", {"fields": ("summary_display",)}),
    )
    change_form_template = "admin/conversations/conversation/change_form.html"
    show_full_result_count = False

    class Media:
        css = {"all": ("admin_extras/transcript.css",)}

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        return _with_contact_matches(
            self, request, queryset, search_term, contact_field="contact_id"
        )

    @admin.display(description="Conversation", ordering="id")
    def short_id(self, obj: Conversation) -> str:
        return str(obj.id)[:8]

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Conversation) -> str:
        return format_html(
            '<span class="status-badge status-{}">{}</span>', obj.status, obj.get_status_display()
        )

    @admin.display(description="Review", ordering="review_flagged_at")
    def review_badge(self, obj: Conversation) -> str:
        if obj.review_flagged_at is None:
            return ""
        return format_html(
            '<span class="status-badge review-needed" title="{}">Needs review</span>',
            obj.review_reason.replace("_", " "),
        )

    @admin.display(description="Contact")
    def contact_display(self, obj: Conversation) -> str:
        return contact_identity_html(obj.contact)

    @admin.display(description="Summary")
    def summary_display(self, obj: Conversation) -> str:
        summary = obj.summary if isinstance(obj.summary, dict) else {}
        parts = []
        text = summary.get("summary")
        if isinstance(text, str) and text.strip():
            parts.append(format_html('<p class="summary-text">{}</p>', text))
        for key, title in (("facts", "Facts"), ("open_questions", "Open questions")):
            items = [str(i) for i in summary.get(key) or [] if isinstance(i, str | int | float)]
            if items:
                parts.append(
                    format_html(
                        '<p class="summary-heading">{}</p><ul class="summary-list">{}</ul>',
                        title,
                        format_html_join("", "<li>{}</li>", ((item,) for item in items)),
                    )
                )
        if not parts:
            return "No summary yet."
        return format_html_join("", "{}", ((part,) for part in parts))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = extra_context or {}
        conversation = self.get_object(request, unquote(object_id)) if object_id else None
        if conversation is not None and self.has_view_permission(request, conversation):
            page = conversation_transcript_page(
                conversation,
                page=request.GET.get("transcript_page"),
                per_page=settings.ADMIN_TRANSCRIPT_PAGE_SIZE,
            )
            extra_context["transcript"] = page.messages
            extra_context["transcript_page"] = page
            conversation_event(
                conversation,
                action="transcript.view",
                actor=user_actor(request.user),
                details={"page": page.number, "messages": len(page.messages)},
            )
            if user_can(request.user, conversation.tenant_id, Capability.USAGE):
                extra_context["llm_calls"] = LLMCall.objects.filter(
                    conversation=conversation
                ).order_by("-created_at")[:50]
            if conversation.status != Conversation.Status.CLOSED and not free_form_window_open(
                conversation
            ):  # WhatsApp's 24-hour window: agents cannot write freely any more
                messages.warning(request, WINDOW_CLOSED_MESSAGE)
            if page.newer is None:
                # The live panel adds to the newest page only.
                extra_context["agent_panel"] = {
                    "socket_path": agent_socket_path(conversation.pk),
                    "resume_seq": conversation_resume_seq(conversation),
                    "status": conversation.status,
                }
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Contact)
class ContactAdmin(ReadOnlyScopedAdmin):
    capability = Capability.CONVERSATIONS
    list_display = ("id", "tenant", "identity", "locale", "created_at", "last_seen_at")
    list_filter = (TenantListFilter,)
    # Email, name and `sub` are stored encrypted: an exact email or `sub` is found through the
    # blind indexes (get_search_results).
    search_fields = ("id",)
    list_select_related = ("tenant",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        return _with_contact_matches(self, request, queryset, search_term, contact_field="pk")

    class Media:
        css = {"all": ("admin_extras/transcript.css",)}

    @admin.display(description="Identity")
    def identity(self, obj: Contact) -> str:
        return contact_identity_html(obj)


@admin.register(LLMCall)
class LLMCallAdmin(ReadOnlyScopedAdmin):
    capability = Capability.USAGE
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
        "cost",
        "latency_ms",
        "first_token_ms",
        "attempts",
    )
    list_filter = (
        TenantListFilter,
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
