"""manage.py knowledge_import: progress, summary, re-import, no-ops, bad files, errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from knowledge.models import Chunk, Document, KnowledgeSource
from knowledge.retrieval import search_knowledge
from tests.knowledge.pdf import make_pdf


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("knowledge_import", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "help"
    (root / "orders").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "returns.md").write_text(
        "# Returns\n\nReturns are accepted within 30 days of delivery.\n"
    )
    (root / "orders" / "envios.html").write_text(
        "<html><head><title>Envíos</title></head><body><h1>Envíos</h1><p>Enviamos a toda "
        "España en 48 horas y el envío es gratuito a partir de 50 euros.</p></body></html>"
    )
    (root / "warranty.pdf").write_bytes(
        make_pdf([["Every appliance carries a two year warranty from the purchase date."]])
    )
    (root / "notes.txt").write_text("Gift wrapping is available for two euros per parcel.\n")
    (root / "image.png").write_bytes(b"\x89PNG")  # not a document: not picked up
    (root / ".git" / "config.txt").write_text("hidden")  # hidden directories are skipped
    return root


def test_import_directory_progress_summary_and_urls(make_tenant, docs):
    tenant, _ = make_tenant()
    out, err = run("--tenant", tenant.slug, str(docs), "--url-base", "https://shop.example/help/")
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"Importing 4 files into {tenant.slug} / Imported files"
    assert lines[1:5] == [
        "[1/4] created    notes.txt (1 chunk, en)",
        "[2/4] created    orders/envios.html (1 chunk, es)",
        "[3/4] created    returns.md (1 chunk, en)",
        "[4/4] created    warranty.pdf (1 chunk, en)",
    ]
    assert lines[5].startswith("Done in ")
    assert lines[5].endswith(": 4 created, 0 updated, 0 unchanged, 0 failed.")
    source = KnowledgeSource.objects.get(tenant=tenant)
    assert (source.name, source.kind) == ("Imported files", "import")
    urls = dict(Document.objects.filter(tenant=tenant).values_list("key", "url"))
    assert urls["orders/envios.html"] == "https://shop.example/help/orders/envios.html"
    assert search_knowledge(tenant_id=tenant.id, query="warranty appliance")[0].title == "Warranty"


def test_reimport_updates_in_place_and_unchanged_is_a_no_op(make_tenant, docs):
    tenant, _ = make_tenant()
    run("--tenant", tenant.slug, str(docs))
    ids = set(Document.objects.values_list("id", flat=True))
    chunk_ids = set(Chunk.objects.values_list("id", flat=True))

    (docs / "returns.md").write_text("# Returns\n\nReturns are accepted within 60 days.\n")
    out, _ = run("--tenant", tenant.slug, str(docs))
    assert "[3/4] updated    returns.md (1 chunk, en)" in out
    assert "[1/4] unchanged  notes.txt (1 chunk, en)" in out
    assert out.rstrip().endswith(": 0 created, 1 updated, 3 unchanged, 0 failed.")
    assert set(Document.objects.values_list("id", flat=True)) == ids  # no duplicates
    assert Document.objects.count() == 4
    returns = Document.objects.get(key="returns.md")
    (chunk,) = returns.chunks.all()
    assert "60 days" in chunk.text
    assert chunk.id not in chunk_ids
    # the unchanged documents kept their chunks
    assert len(chunk_ids & set(Chunk.objects.values_list("id", flat=True))) == 3


def test_a_bad_file_is_reported_and_skipped(make_tenant, docs):
    tenant, _ = make_tenant()
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (docs / "empty.md").write_text("\n\n")
    odd = docs.parent / "manual.docx"
    odd.write_bytes(b"PK")
    out, err = run("--tenant", tenant.slug, str(docs), str(odd))
    assert "[1/7] failed     broken.pdf: cannot read the PDF" in err
    assert "[2/7] failed     empty.md: no text found in the file" in err
    assert "[7/7] failed     manual.docx: unsupported file type" in err
    assert out.rstrip().endswith(": 4 created, 0 updated, 0 unchanged, 3 failed.")
    assert Document.objects.filter(tenant=tenant).count() == 4


def test_a_file_over_a_parsing_cap_is_reported_with_the_cap(make_tenant, docs, settings):
    settings.KNOWLEDGE_MAX_PDF_PAGES = 2
    tenant, _ = make_tenant()
    (docs / "manual.pdf").write_bytes(make_pdf([["A page."]] * 3))
    _, err = run("--tenant", tenant.slug, str(docs / "manual.pdf"))
    assert (
        "[1/1] failed     manual.pdf: the PDF has 3 pages, more than the 2 accepted "
        "(KNOWLEDGE_MAX_PDF_PAGES): split it into smaller files"
    ) in err
    assert not Document.objects.filter(tenant=tenant).exists()


def test_a_single_file_and_an_explicit_language(make_tenant, docs):
    tenant, _ = make_tenant()
    out, _ = run("--tenant", tenant.slug, str(docs / "notes.txt"), "--language", "fr")
    assert "[1/1] created    notes.txt (1 chunk, fr)" in out
    assert Document.objects.get(tenant=tenant).language == "fr"


def test_unknown_tenant_and_missing_paths_are_clear_errors(make_tenant, docs):
    tenant, _ = make_tenant()
    with pytest.raises(CommandError, match="Unknown tenant 'nope'"):
        run("--tenant", "nope", str(docs))
    with pytest.raises(CommandError, match=r"No such file or directory: .*missing"):
        run("--tenant", tenant.slug, str(docs), str(docs / "missing"))
    with pytest.raises(CommandError, match="url-base"):
        run("--tenant", tenant.slug, str(docs), "--url-base", "ftp://x")
    assert not Document.objects.exists()


def test_imports_go_to_the_named_tenant_only(make_tenant, docs):
    tenant, _ = make_tenant()
    other, _ = make_tenant()
    run("--tenant", tenant.slug, str(docs))
    assert Document.objects.filter(tenant=other).count() == 0
    assert search_knowledge(tenant_id=other.id, query="returns") == []
