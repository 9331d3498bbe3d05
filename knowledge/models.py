"""The knowledge base: a tenant's sources, their documents, and the searchable chunks of each.

Chunks carry a Postgres full-text `search_vector` (built with the text-search configuration of
their document's language) and, where the server has pgvector, an `embedding` column that is not
a model field: migration 0002 adds it only when `CREATE EXTENSION vector` works, and
`knowledge.vectors` reads and writes it with SQL.
"""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models

from supportbot.tenants.models import Tenant


class KnowledgeSource(models.Model):
    """Where documents come from: files uploaded in the admin, an import from disk, ..."""

    class Kind(models.TextChoices):
        UPLOAD = "upload", "Uploaded files"
        IMPORT = "import", "Imported files"
        WEBSITE = "website", "Website pages"
        OTHER = "other", "Other"

    # Indexed by the unique (tenant, name) constraint.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="knowledge_sources", db_index=False
    )
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.UPLOAD)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="knowledge_source_unique_name")
        ]

    def __str__(self) -> str:
        return self.name


class Document(models.Model):
    """One file or page. `key` (a file's path or name) identifies it within its source."""

    # Indexed by the unique (tenant, source, key) constraint.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="documents", db_index=False
    )
    source = models.ForeignKey(KnowledgeSource, on_delete=models.CASCADE, related_name="documents")
    key = models.CharField(max_length=500)
    title = models.CharField(max_length=300)
    url = models.URLField(max_length=1000, blank=True, default="")
    language = models.CharField(
        max_length=12, blank=True, default="", help_text="ISO 639-1 code, e.g. en, es."
    )
    content_type = models.CharField(max_length=16, default="text")  # markdown/html/text/pdf
    content_hash = models.CharField(max_length=64)
    size_bytes = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "source", "key"], name="knowledge_document_unique_key"
            )
        ]
        indexes = [models.Index(fields=["tenant", "-updated_at"], name="document_tenant_recent")]

    def __str__(self) -> str:
        return self.title


class Chunk(models.Model):
    """A passage of a document: a few paragraphs under one heading path."""

    # Indexed by (tenant, search_config).
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    # Indexed by the unique (document, ordinal) constraint.
    document = models.ForeignKey(
        Document, on_delete=models.CASCADE, related_name="chunks", db_index=False
    )
    ordinal = models.PositiveIntegerField()
    heading = models.CharField(max_length=500, blank=True, default="")  # "Returns > Refunds"
    text = models.TextField()
    word_count = models.PositiveIntegerField(default=0)
    # The Postgres text-search configuration the search vector was built with ("spanish", ...).
    search_config = models.CharField(max_length=64, default="simple")
    search_vector = SearchVectorField(null=True, editable=False)
    # The model that made this chunk's embedding (in the optional `embedding` column); "" none.
    embedding_model = models.CharField(max_length=200, blank=True, default="", editable=False)

    class Meta:
        ordering = ["document", "ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_unique_ordinal")
        ]
        indexes = [
            GinIndex(fields=["search_vector"], name="chunk_search_vector_gin"),
            # The tenant's distinct configurations, read by a loose index scan.
            models.Index(fields=["tenant", "search_config"], name="chunk_tenant_config"),
        ]

    def __str__(self) -> str:
        return f"{self.document} #{self.ordinal}"


class DocumentUpload(models.Model):
    """A file uploaded in the admin, waiting for (or done with) its ingestion by the `knowledge`
    worker. The file's bytes are kept only until it is processed."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    # Indexed by (tenant, -created_at).
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="document_uploads", db_index=False
    )
    source = models.ForeignKey(KnowledgeSource, on_delete=models.CASCADE, related_name="uploads")
    filename = models.CharField(max_length=500)
    language = models.CharField(max_length=12, blank=True, default="")
    content = models.BinaryField(default=bytes, editable=False)
    size_bytes = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    # Times a worker started on it: a file that keeps killing its worker is given up on.
    attempts = models.PositiveSmallIntegerField(default=0)
    # Why it failed, or what it did ("created, 3 chunks, language en").
    detail = models.CharField(max_length=1000, blank=True, default="")
    document = models.ForeignKey(
        Document, on_delete=models.SET_NULL, null=True, blank=True, related_name="uploads"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="upload_tenant_recent")]

    def __str__(self) -> str:
        return self.filename
