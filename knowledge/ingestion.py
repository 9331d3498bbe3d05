"""Writes of the knowledge base: sources, and documents ingested from files (parse, chunk, index).

`document_ingest` is the one way a document gets in, from the admin upload and from the
`knowledge_import` command alike. The same (tenant, source, key) again updates that document in
place (its chunks replaced); the same content again is a no-op. Parsing, chunking and embedding
happen before the transaction, so no transaction waits on the provider.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction

from knowledge import conf, vectors
from knowledge.chunking import ChunkDraft, chunk_blocks
from knowledge.languages import detect_language, normalize_language, search_config_for
from knowledge.models import Chunk, Document, KnowledgeSource
from knowledge.parsers import EXTENSIONS, ParseError, content_type_for, parse_document
from supportbot.llm import LLMError
from supportbot.tenants.models import Tenant

log = logging.getLogger("supportbot.knowledge")

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"

_MAX_KEY = 500
_MAX_HEADING = 500
_MAX_URL = 1000


class IngestError(ValueError):
    """The file was refused: unsupported, too large, over a parsing cap, unreadable or without
    text."""


@dataclass(frozen=True)
class IngestResult:
    document: Document
    status: str  # "created" | "updated" | "unchanged"
    chunks: int  # chunks the document has now
    embedded: int  # chunks given an embedding by this call


def source_get_or_create(
    *, tenant: Tenant, name: str, kind: str = KnowledgeSource.Kind.UPLOAD
) -> KnowledgeSource:
    """The tenant's source called `name`, created (with `kind`) if it does not exist."""
    name = " ".join(name.split())[:200]
    if not name:
        raise ValueError("A source needs a name.")
    if kind not in KnowledgeSource.Kind.values:
        raise ValueError(f"unknown source kind {kind!r}")
    source, _ = KnowledgeSource.objects.get_or_create(
        tenant=tenant, name=name, defaults={"kind": kind}
    )
    return source


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def document_ingest(
    *,
    tenant: Tenant,
    source: KnowledgeSource,
    key: str,
    filename: str,
    content: bytes,
    title: str | None = None,
    url: str | None = None,
    language: str | None = None,
) -> IngestResult:
    """Create or update the document `key` of `source` from a file's bytes.

    `filename` decides the parser (.md/.markdown/.html/.htm/.txt/.pdf). `title` defaults to the
    file's own (front matter, <title>, first heading, PDF metadata, else the file name); `language`
    (ISO 639-1) is detected when not given. Raises IngestError for a refused file.
    """
    if source.tenant_id != tenant.id:
        raise ValueError("the source belongs to another tenant")
    key, url = checked_upload(key=key, filename=filename, content=content, url=url)
    digest = content_hash(content)
    wanted_language = normalize_language(language) if language else ""

    existing = Document.objects.filter(tenant=tenant, source=source, key=key).first()
    if existing is not None and _unchanged(existing, digest, title, url, wanted_language):
        embedded = _embed_missing(existing) if vectors.embeddings_enabled() else 0
        return IngestResult(existing, UNCHANGED, existing.chunks.count(), embedded)

    try:
        parsed = parse_document(filename, content, conf.parse_limits())
    except ParseError as exc:
        raise IngestError(str(exc)) from None
    drafts = chunk_blocks(parsed.blocks)
    doc_title = (title or "").strip()[:300] or parsed.title
    doc_language = wanted_language or detect_language(f"{doc_title}\n\n{parsed.text}")
    if not doc_language:
        doc_language = normalize_language(tenant.fallback_language)
    config = search_config_for(doc_language)
    embeddings = _embed_drafts(tenant.pk, doc_title, drafts)

    for attempt in (1, 2):
        try:
            return _write(
                tenant=tenant,
                source=source,
                key=key,
                digest=digest,
                size=len(content),
                title=doc_title,
                url=url,
                language=doc_language,
                content_type=parsed.content_type,
                search_config=config,
                drafts=drafts,
                embeddings=embeddings,
            )
        except IntegrityError:
            # Another import created the same key between our read and our insert: update it.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def checked_upload(
    *, key: str, filename: str, content: bytes, url: str | None
) -> tuple[str, str | None]:
    """(key, url) stripped, or IngestError for a key, file type, size or URL refused."""
    key = key.strip()
    if not key or len(key) > _MAX_KEY:
        raise IngestError(f"the document key must be 1 to {_MAX_KEY} characters")
    if content_type_for(filename) is None:
        supported = ", ".join(sorted(EXTENSIONS))
        raise IngestError(f"unsupported file type (supported: {supported})")
    if len(content) > conf.max_file_bytes():
        raise IngestError(f"the file is larger than {conf.max_file_bytes() // (1024 * 1024)} MiB")
    url = url.strip() if url is not None else None  # None: keep the document's URL
    if url and len(url) > _MAX_URL:
        raise IngestError(f"the URL is longer than {_MAX_URL} characters")
    return key, url


def _unchanged(
    document: Document, digest: str, title: str | None, url: str | None, language: str
) -> bool:
    return (
        document.content_hash == digest
        and (title is None or not title.strip() or document.title == title.strip()[:300])
        and (url is None or document.url == url)
        and (not language or document.language == language)
    )


def _embed_drafts(tenant_id: int, title: str, drafts: list[ChunkDraft]) -> list[list[float]] | None:
    if not drafts or not vectors.embeddings_enabled():
        return None
    texts = [vectors.chunk_embedding_text(title, d.heading, d.text) for d in drafts]
    try:
        return vectors.embed_passages(texts, tenant_id=tenant_id)
    except LLMError as exc:
        # Full-text search still finds the document; a later import of the same file (a no-op
        # otherwise) fills the missing embeddings in.
        log.warning("embedding failed (%s): document indexed for full-text search only", exc)
        return None


@transaction.atomic
def _write(
    *,
    tenant: Tenant,
    source: KnowledgeSource,
    key: str,
    digest: str,
    size: int,
    title: str,
    url: str | None,
    language: str,
    content_type: str,
    search_config: str,
    drafts: list[ChunkDraft],
    embeddings: list[list[float]] | None,
) -> IngestResult:
    document = (
        Document.objects.select_for_update().filter(tenant=tenant, source=source, key=key).first()
    )
    status = UPDATED
    if document is None:
        status = CREATED
        document = Document(tenant=tenant, source=source, key=key)
    else:
        document.chunks.all().delete()
    document.title = title
    if url is not None:
        document.url = url
    document.language = language
    document.content_type = content_type
    document.content_hash = digest
    document.size_bytes = size
    document.save()
    chunks = Chunk.objects.bulk_create(
        [
            Chunk(
                tenant=tenant,
                document=document,
                ordinal=draft.ordinal,
                heading=draft.heading[:_MAX_HEADING],
                text=draft.text,
                word_count=draft.word_count,
                search_config=search_config,
            )
            for draft in drafts
        ]
    )
    _index_search_vectors(document.id)
    embedded = 0
    if embeddings is not None:
        embedded = vectors.store_embeddings(
            [c.id for c in chunks], embeddings, model=conf.embedding_model()
        )
    return IngestResult(document, status, len(chunks), embedded)


def _index_search_vectors(document_id: int) -> None:
    """Title and headings weigh more (A) than the text (B); each chunk with its own config."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE knowledge_chunk AS c SET search_vector ="
            " setweight(to_tsvector(c.search_config::regconfig,"
            "   coalesce(d.title, '') || ' ' || c.heading), 'A')"
            " || setweight(to_tsvector(c.search_config::regconfig, c.text), 'B')"
            " FROM knowledge_document AS d WHERE d.id = c.document_id AND c.document_id = %s",
            [document_id],
        )


def _embed_missing(document: Document) -> int:
    """Embed the chunks of `document` that have no vector of the current model."""
    model = conf.embedding_model()
    missing = list(
        document.chunks.exclude(embedding_model=model)
        .order_by("ordinal")
        .values_list("id", "heading", "text")
    )
    if not missing:
        return 0
    texts = [vectors.chunk_embedding_text(document.title, h, t) for _, h, t in missing]
    try:
        found = vectors.embed_passages(texts, tenant_id=document.tenant_id)
    except LLMError as exc:
        log.warning("embedding failed (%s): chunks stay without embeddings", exc)
        return 0
    return vectors.store_embeddings([i for i, _, _ in missing], found, model=model)


@transaction.atomic
def document_delete(*, tenant: Tenant, document_id: int) -> bool:
    """Delete a document of `tenant` (and its chunks); False when it has no such document."""
    deleted, _ = Document.objects.filter(tenant=tenant, id=document_id).delete()
    return deleted > 0
