"""Admin for the knowledge base: sources, documents with their chunks (read-only), and an upload
form for several files at once. Tenant admins see and change only their tenants' rows
(superusers: all); agents and compliance officers do not reach it (supportbot.tenants.roles)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from knowledge import conf
from knowledge.ingestion import IngestError, document_delete, source_get_or_create
from knowledge.languages import normalize_language
from knowledge.models import Chunk, Document, DocumentUpload, KnowledgeSource
from knowledge.uploads import document_upload_create
from supportbot.tenants.models import Tenant
from supportbot.tenants.roles import Capability, tenants_for_user, user_can, user_can_anywhere
from supportbot.tenants.scoped_admin import TenantListFilter, TenantScopedAdmin

DEFAULT_UPLOAD_SOURCE = "Uploads"


class KnowledgeAdmin(TenantScopedAdmin):
    capability = Capability.KNOWLEDGE


@admin.register(KnowledgeSource)
class KnowledgeSourceAdmin(KnowledgeAdmin):
    list_display = ("name", "tenant", "kind", "document_count", "created_at")
    list_filter = (TenantListFilter, "kind")
    search_fields = ("name",)
    list_select_related = ("tenant",)
    fields = ("tenant", "name", "kind", "created_at")
    readonly_fields = ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).annotate(_documents=Count("documents"))

    def get_readonly_fields(
        self, request: HttpRequest, obj: KnowledgeSource | None = None
    ) -> tuple[str, ...]:
        # A source never moves to another tenant.
        return ("tenant", "created_at") if obj is not None else ("created_at",)

    @admin.display(description="Documents", ordering="_documents")
    def document_count(self, obj: KnowledgeSource) -> int:
        return int(getattr(obj, "_documents", 0))


class ChunkInline(admin.TabularInline):
    model = Chunk
    extra = 0
    can_delete = False
    fields = ("ordinal", "heading", "text_html", "word_count", "search_config", "embedding_model")
    readonly_fields = fields
    ordering = ("ordinal",)
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Document | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Document | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Document | None = None) -> bool:
        # The role decides (not Django's model permissions), for the document's tenant.
        if obj is None:
            return user_can_anywhere(request.user, Capability.KNOWLEDGE)
        return user_can(request.user, obj.tenant_id, Capability.KNOWLEDGE)

    @admin.display(description="Text")
    def text_html(self, obj: Chunk) -> str:
        paragraphs = [p for p in obj.text.split("\n\n") if p.strip()]
        return format_html_join(
            "", '<p style="white-space: pre-line">{}</p>', ((p,) for p in paragraphs)
        )


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault(
            "widget", MultipleFileInput(attrs={"accept": ".md,.markdown,.html,.htm,.txt,.pdf"})
        )
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> Any:
        single = super().clean
        if isinstance(data, (list, tuple)):
            return [single(item, initial) for item in data]
        return [single(data, initial)]


class DocumentUploadForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.none())
    source = forms.CharField(
        max_length=200,
        initial=DEFAULT_UPLOAD_SOURCE,
        help_text="The knowledge source the files go to (created if it does not exist). A file "
        "with the name of a document already in that source replaces it.",
    )
    language = forms.CharField(
        max_length=12,
        required=False,
        help_text="ISO 639-1 code (e.g. en, es) of the files' language. Empty: detected per file.",
    )
    uploads = MultipleFileField(
        label="Files", help_text="Markdown, HTML, text or PDF files; several at once."
    )

    def __init__(self, *args: Any, tenants: QuerySet[Tenant], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["tenant"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = tenants
        if tenants.count() == 1:
            field.initial = tenants.first()

    def clean_language(self) -> str:
        raw = self.cleaned_data.get("language") or ""
        code = normalize_language(raw)
        if raw.strip() and not code:
            raise forms.ValidationError("Enter an ISO 639-1 code such as en or es.")
        return code


@admin.register(Document)
class DocumentAdmin(KnowledgeAdmin):
    list_display = ("title", "tenant", "source", "language", "chunk_count", "updated_at")
    list_filter = (TenantListFilter, "language", "content_type")
    search_fields = ("title", "key", "url")
    list_select_related = ("tenant", "source")
    date_hierarchy = "updated_at"
    fields = (
        "title",
        "tenant",
        "source",
        "key",
        "url",
        "language",
        "content_type",
        "size_bytes",
        "content_hash",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    inlines = [ChunkInline]
    change_list_template = "admin/knowledge/document/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).annotate(_chunks=Count("chunks"))

    @admin.display(description="Chunks", ordering="_chunks")
    def chunk_count(self, obj: Document) -> int:
        return int(getattr(obj, "_chunks", 0))

    rows_editable = False  # documents change by uploading the file again

    # -- deleting goes through the service
    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        document_delete(tenant=obj.tenant, document_id=obj.id)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset.select_related("tenant"):
            document_delete(tenant=document.tenant, document_id=document.id)

    # -- adding is uploading
    def get_urls(self) -> list[URLPattern]:
        upload = path(
            "upload/",
            self.admin_site.admin_view(self.upload_view),
            name="knowledge_document_upload",
        )
        return [upload, *super().get_urls()]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> Any:
        return HttpResponseRedirect(reverse("admin:knowledge_document_upload"))

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        tenants = tenants_for_user(request.user, self.capability)
        if request.method == "POST":
            form = DocumentUploadForm(request.POST, request.FILES, tenants=tenants)
            if form.is_valid():
                tenant = form.cleaned_data["tenant"]
                self._queue_uploads(request, form, tenant)
                changelist = reverse("admin:knowledge_documentupload_changelist")
                return HttpResponseRedirect(f"{changelist}?tenant={tenant.id}")
        else:
            form = DocumentUploadForm(tenants=tenants)
        context = {
            **self.admin_site.each_context(request),
            "title": "Upload documents",
            "form": form,
            "opts": self.model._meta,
            "max_mib": conf.max_file_bytes() // (1024 * 1024),
        }
        return TemplateResponse(request, "admin/knowledge/document/upload.html", context)

    def _queue_uploads(
        self, request: HttpRequest, form: DocumentUploadForm, tenant: Tenant
    ) -> None:
        """Store each file for the `knowledge` worker; the uploads list shows how each went."""
        source = source_get_or_create(
            tenant=tenant, name=form.cleaned_data["source"], kind=KnowledgeSource.Kind.UPLOAD
        )
        for upload in form.cleaned_data["uploads"]:
            name = upload.name or "upload"
            try:
                if upload.size and upload.size > conf.max_file_bytes():
                    raise IngestError(f"larger than {conf.max_file_bytes() // (1024 * 1024)} MiB")
                document_upload_create(
                    tenant=tenant,
                    source=source,
                    filename=name,
                    content=upload.read(),
                    language=form.cleaned_data["language"],
                )
            except IngestError as exc:
                messages.error(request, format_html("Not imported: {} ({})", name, str(exc)))
                continue
            messages.success(request, format_html("Queued: {}", name))


@admin.register(DocumentUpload)
class DocumentUploadAdmin(KnowledgeAdmin):
    """Uploaded files and how their ingestion went (pending, processing, ready or failed).
    Read-only: the role that manages the tenant's knowledge sees them (rows_* below)."""

    rows_addable = False  # uploading goes through the documents' upload page
    rows_editable = False

    list_display = ("filename", "tenant", "source", "state_label", "detail", "created_at")
    list_filter = (TenantListFilter, "state")
    search_fields = ("filename",)
    list_select_related = ("tenant", "source")
    fields = (
        "filename",
        "tenant",
        "source",
        "language",
        "size_bytes",
        "state",
        "detail",
        "attempts",
        "document",
        "created_at",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields

    @admin.display(description="State", ordering="state")
    def state_label(self, obj: DocumentUpload) -> str:
        return format_html(
            '<span class="upload-state upload-{}">{}</span>', obj.state, obj.get_state_display()
        )
