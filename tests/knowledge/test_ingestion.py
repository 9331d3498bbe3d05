"""document_ingest / document_delete: create, update in place, no-op, language, isolation."""

from __future__ import annotations

import pytest
from django.db import connection

from knowledge.ingestion import (
    IngestError,
    document_delete,
    document_ingest,
    source_get_or_create,
)
from knowledge.models import Chunk, Document, KnowledgeSource
from tests.knowledge.pdf import make_pdf

RETURNS_EN = """# Returns

You can return any item within 30 days of delivery. Items must be unused and in their original
packaging, with the receipt.

## Refunds

We refund the original payment method within five business days after the item arrives.
"""

RETURNS_ES = """# Devoluciones

Puedes devolver cualquier producto en un plazo de 30 días desde la entrega. El producto debe
estar sin usar y en su embalaje original.
"""


def search_vectors(document: Document) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT search_vector::text FROM knowledge_chunk WHERE document_id = %s"
            " ORDER BY ordinal",
            [document.id],
        )
        return [row[0] for row in cursor.fetchall()]


def test_create_parses_chunks_detects_language_and_indexes(make_tenant, ingest):
    tenant, _ = make_tenant()
    result = ingest(tenant, "returns.md", RETURNS_EN, url="https://shop.example/returns")
    document = result.document
    assert result.status == "created"
    assert result.chunks == 1
    assert result.embedded == 0
    assert (document.title, document.language, document.content_type) == (
        "Returns",
        "en",
        "markdown",
    )
    assert document.url == "https://shop.example/returns"
    assert document.tenant_id == tenant.id
    assert document.key == "returns.md"
    chunk = Chunk.objects.get(document=document)
    assert (chunk.tenant_id, chunk.heading) == (tenant.id, "Returns")
    assert chunk.search_config == "english"
    assert "Refunds\nWe refund" in chunk.text
    (vector,) = search_vectors(document)
    assert "'refund':" in vector
    assert "'packag':" in vector
    assert "'return':" in vector


def test_spanish_document_gets_the_spanish_configuration(make_tenant, ingest):
    tenant, _ = make_tenant()
    document = ingest(tenant, "devoluciones.md", RETURNS_ES).document
    assert document.language == "es"
    assert Chunk.objects.get(document=document).search_config == "spanish"
    assert "'devolu" in search_vectors(document)[0]


def test_explicit_language_wins_and_unknown_languages_use_simple(make_tenant, ingest):
    tenant, _ = make_tenant()
    forced = ingest(tenant, "a.txt", "Hello there, this is English text.", language="pt-BR")
    assert forced.document.language == "pt"
    assert Chunk.objects.get(document=forced.document).search_config == "portuguese"
    klingon = ingest(tenant, "b.txt", "Some text.", key="b", language="tlh")
    assert Chunk.objects.get(document=klingon.document).search_config == "simple"


def test_undetectable_language_falls_back_to_the_tenants(make_tenant, ingest):
    tenant, _ = make_tenant(fallback_language="de")
    document = ingest(tenant, "numbers.txt", "12345 67890 ---").document
    assert document.language == "de"


def test_reimport_updates_in_place_and_unchanged_is_a_no_op(make_tenant, ingest):
    tenant, _ = make_tenant()
    first = ingest(tenant, "returns.md", RETURNS_EN)
    chunk_ids = list(Chunk.objects.filter(document=first.document).values_list("id", flat=True))

    same = ingest(tenant, "returns.md", RETURNS_EN)
    assert same.status == "unchanged"
    assert same.document.id == first.document.id
    assert list(Chunk.objects.filter(document=first.document).values_list("id", flat=True)) == (
        chunk_ids
    )

    changed = ingest(tenant, "returns.md", RETURNS_EN.replace("30 days", "45 days"))
    assert changed.status == "updated"
    assert changed.document.id == first.document.id
    assert Document.objects.filter(tenant=tenant).count() == 1
    chunks = list(Chunk.objects.filter(document=first.document))
    assert len(chunks) == 1
    assert "45 days" in chunks[0].text
    assert chunks[0].id not in chunk_ids

    retitled = ingest(tenant, "returns.md", RETURNS_EN.replace("30 days", "45 days"), title="R")
    assert retitled.status == "updated"
    assert retitled.document.title == "R"


def test_same_key_in_another_source_or_tenant_is_another_document(make_tenant, ingest):
    tenant, _ = make_tenant()
    other_tenant, _ = make_tenant()
    ingest(tenant, "returns.md", RETURNS_EN)
    ingest(tenant, "returns.md", RETURNS_EN, source=source_get_or_create(tenant=tenant, name="B"))
    ingest(other_tenant, "returns.md", RETURNS_EN)
    assert Document.objects.filter(tenant=tenant).count() == 2
    assert Document.objects.filter(tenant=other_tenant).count() == 1


def test_a_source_of_another_tenant_is_refused(make_tenant, ingest):
    tenant, _ = make_tenant()
    other, _ = make_tenant()
    foreign = source_get_or_create(tenant=other, name="Theirs")
    with pytest.raises(ValueError, match="another tenant"):
        document_ingest(
            tenant=tenant, source=foreign, key="x", filename="x.md", content=b"# X\n\ntext"
        )
    assert not Document.objects.exists()


def test_pdf_ingest(make_tenant, ingest):
    tenant, _ = make_tenant()
    pdf = make_pdf([["Our warranty covers all electronics for two full years."]], title="Warranty")
    result = ingest(tenant, "warranty.pdf", pdf)
    assert (result.status, result.document.title, result.document.content_type) == (
        "created",
        "Warranty",
        "pdf",
    )
    assert "two full years" in Chunk.objects.get(document=result.document).text


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("x.docx", b"whatever", "unsupported file type"),
        ("x.pdf", b"%PDF-1.7 broken", "cannot read the PDF"),
        ("x.md", b"   ", "no text"),
    ],
)
def test_refused_files_raise_ingest_error_and_leave_nothing(
    make_tenant, ingest, filename, content, message
):
    tenant, _ = make_tenant()
    with pytest.raises(IngestError, match=message):
        ingest(tenant, filename, content)
    assert not Document.objects.exists()
    assert not Chunk.objects.exists()


def test_too_large_files_are_refused(make_tenant, ingest, settings):
    settings.KNOWLEDGE_MAX_FILE_BYTES = 100
    tenant, _ = make_tenant()
    with pytest.raises(IngestError, match="larger than"):
        ingest(tenant, "big.txt", "x" * 101)


@pytest.mark.parametrize(
    ("setting", "filename", "content", "message"),
    [
        (
            "KNOWLEDGE_MAX_LINE_CHARS",
            "faq.md",
            "# FAQ\n\n" + "w" * 51,
            "line 3 is longer than 50 characters",
        ),
        (
            "KNOWLEDGE_MAX_TEXT_CHARS",
            "page.html",
            "<p>" + "word " * 11 + "</p>",
            "more than 50 characters of text",
        ),
        (
            "KNOWLEDGE_MAX_PDF_PAGES",
            "manual.pdf",
            make_pdf([["Page one."]] * 51),
            "the PDF has 51 pages, more than the 50 accepted",
        ),
    ],
)
def test_files_over_a_parsing_cap_are_refused_naming_it(
    make_tenant, ingest, settings, setting, filename, content, message
):
    setattr(settings, setting, 50)
    tenant, _ = make_tenant()
    with pytest.raises(IngestError, match=f"{message}.*{setting}"):
        ingest(tenant, filename, content)
    assert not Document.objects.exists()


def test_delete_is_scoped_by_tenant(make_tenant, ingest):
    tenant, _ = make_tenant()
    other, _ = make_tenant()
    document = ingest(tenant, "returns.md", RETURNS_EN).document
    assert document_delete(tenant=other, document_id=document.id) is False
    assert Document.objects.filter(id=document.id).exists()
    assert document_delete(tenant=tenant, document_id=document.id) is True
    assert not Document.objects.exists()
    assert not Chunk.objects.exists()


def test_source_get_or_create(make_tenant):
    tenant, _ = make_tenant()
    a = source_get_or_create(tenant=tenant, name="  Help   centre ", kind="import")
    b = source_get_or_create(tenant=tenant, name="Help centre")
    assert a.id == b.id
    assert (a.name, a.kind) == ("Help centre", KnowledgeSource.Kind.IMPORT)
    with pytest.raises(ValueError, match="needs a name"):
        source_get_or_create(tenant=tenant, name="  ")
    with pytest.raises(ValueError, match="unknown source kind"):
        source_get_or_create(tenant=tenant, name="x", kind="nonsense")
