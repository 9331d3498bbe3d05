"""Admin: upload several files (ingested by the `knowledge` worker: here its task is run
directly), read-only chunks, and tenant scoping for staff with memberships."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from knowledge.models import Chunk, Document, DocumentUpload, KnowledgeSource
from knowledge.tasks import ingest_upload
from supportbot.tenants.models import TenantMembership
from tests.knowledge.pdf import make_pdf

UPLOAD_URL = "admin:knowledge_document_upload"


def files(*items: tuple[str, bytes]) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(name, content) for name, content in items]


def run_queued_uploads() -> dict[str, tuple[str, str]]:
    """Run the ingestion task of every pending upload, as the `knowledge` worker would; then
    {filename: (state, detail)} of every upload."""
    for upload_id in DocumentUpload.objects.filter(state="pending").values_list("id", flat=True):
        ingest_upload(upload_id)
    return {u.filename: (u.state, u.detail) for u in DocumentUpload.objects.all()}


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def shops(make_tenant, ingest):
    a, _ = make_tenant(name="Alpha Shop")
    b, _ = make_tenant(name="Beta Shop")
    doc_a = ingest(a, "returns.md", "# Alpha returns\n\nReturns within 30 days at Alpha.\n")
    doc_b = ingest(b, "returns.md", "# Beta returns\n\nReturns within 90 days at Beta.\n")
    return a, b, doc_a.document, doc_b.document


@pytest.fixture
def beta_staff(shops) -> User:
    """A staff user (not superuser) who works for Beta Shop only."""
    _, b, _, _ = shops
    user = User.objects.create_user("agent", "agent@example.com", "pw", is_staff=True)
    codenames = [
        f"{action}_{model}"
        for action in ("view", "add", "change", "delete")
        for model in ("document", "knowledgesource")
    ]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="knowledge", codename__in=codenames)
    )
    TenantMembership.objects.create(tenant=b, user=user, role=TenantMembership.Role.ADMIN)
    return user


def test_upload_several_files_at_once(client, superuser, make_tenant):
    tenant, _ = make_tenant(name="Gamma")
    client.force_login(superuser)
    page = client.get(reverse(UPLOAD_URL))
    assert page.status_code == 200
    assert b'type="file"' in page.content
    assert b"multiple" in page.content
    response = client.post(
        reverse(UPLOAD_URL),
        {
            "tenant": tenant.id,
            "source": "Help centre",
            "language": "",
            "uploads": files(
                ("faq.md", b"# FAQ\n\nWe answer every email within one working day.\n"),
                ("terms.pdf", make_pdf([["Orders are binding once payment is confirmed."]])),
                ("page.html", b"<h1>Contact</h1><p>Call us from nine to five.</p>"),
                ("bad.pdf", b"%PDF-1.4 nope"),
            ),
        },
        follow=True,
    )
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == (
        reverse("admin:knowledge_documentupload_changelist") + f"?tenant={tenant.id}"
    )
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [f"Queued: {name}" for name in ("faq.md", "terms.pdf", "page.html", "bad.pdf")]
    assert not Document.objects.filter(tenant=tenant).exists()  # nothing parsed in the request
    assert b"Pending" in response.content

    outcome = run_queued_uploads()
    assert outcome["faq.md"] == ("ready", "Created (1 chunk, language en)")
    assert outcome["bad.pdf"][0] == "failed"
    assert outcome["bad.pdf"][1].startswith("cannot read the PDF")
    assert not DocumentUpload.objects.exclude(content=b"").exists()  # the bytes are dropped
    listing = client.get(reverse("admin:knowledge_documentupload_changelist"))
    assert b"Ready" in listing.content
    assert b"Failed" in listing.content
    assert b"cannot read the PDF" in listing.content
    docs = Document.objects.filter(tenant=tenant).order_by("key")
    assert [d.key for d in docs] == ["faq.md", "page.html", "terms.pdf"]
    assert {d.source.name for d in docs} == {"Help centre"}
    assert KnowledgeSource.objects.get(tenant=tenant).kind == "upload"

    # the same file again replaces that document
    client.post(
        reverse(UPLOAD_URL),
        {
            "tenant": tenant.id,
            "source": "Help centre",
            "uploads": files(("faq.md", b"# FAQ\n\nWe answer within two working days.\n")),
        },
    )
    run_queued_uploads()
    faq = Document.objects.get(tenant=tenant, key="faq.md")
    assert "two working days" in Chunk.objects.get(document=faq).text
    assert Document.objects.filter(tenant=tenant).count() == 3


def test_an_upload_over_a_parsing_cap_is_refused_with_the_cap(
    client, superuser, make_tenant, settings
):
    settings.KNOWLEDGE_MAX_LINE_CHARS = 1000
    tenant, _ = make_tenant(name="Epsilon")
    client.force_login(superuser)
    response = client.post(
        reverse(UPLOAD_URL),
        {
            "tenant": tenant.id,
            "source": "Help centre",
            "uploads": files(
                ("minified.md", b"# Minified\n\n" + b"x" * 1001),
                ("faq.md", b"# FAQ\n\nWe answer every email within one working day.\n"),
            ),
        },
        follow=True,
    )
    assert response.status_code == 200
    outcome = run_queued_uploads()
    assert outcome["minified.md"] == (
        "failed",
        (
            "line 3 is longer than 1,000 characters, the most accepted "
            "(KNOWLEDGE_MAX_LINE_CHARS): is this really a Markdown or text file?"
        ),
    )
    assert outcome["faq.md"] == ("ready", "Created (1 chunk, language en)")
    assert [d.key for d in Document.objects.filter(tenant=tenant)] == ["faq.md"]


def test_each_file_of_an_upload_gets_its_own_language(client, superuser, make_tenant):
    tenant, _ = make_tenant(name="Delta")
    client.force_login(superuser)
    spanish = (
        "# Devoluciones\n\nPuede devolver cualquier producto durante los treinta días "
        "siguientes a la entrega. El reembolso llega a su cuenta en una semana.\n"
    )
    english = (
        "# Returns\n\nYou can return any product within thirty days of delivery. The refund "
        "reaches your account within a week.\n"
    )
    response = client.post(
        reverse(UPLOAD_URL),
        {
            "tenant": tenant.id,
            "source": "Help centre",
            "language": "",
            "uploads": files(
                ("devoluciones.md", spanish.encode()), ("returns.md", english.encode())
            ),
        },
        follow=True,
    )
    assert response.status_code == 200
    outcome = run_queued_uploads()
    languages = dict(Document.objects.filter(tenant=tenant).values_list("key", "language"))
    assert languages == {"devoluciones.md": "es", "returns.md": "en"}
    assert outcome["devoluciones.md"] == ("ready", "Created (1 chunk, language es)")
    assert outcome["returns.md"] == ("ready", "Created (1 chunk, language en)")


def test_document_page_shows_chunks_read_only(client, superuser, shops):
    _, _, doc_a, _ = shops
    client.force_login(superuser)
    page = client.get(reverse("admin:knowledge_document_change", args=[doc_a.id]))
    assert page.status_code == 200
    assert b"Returns within 30 days at Alpha." in page.content
    assert b'name="chunks-0-text"' not in page.content  # nothing editable
    assert b'name="title"' not in page.content
    assert client.get(reverse("admin:knowledge_document_add")).url == reverse(UPLOAD_URL)


def test_staff_lists_and_filters_show_only_their_tenants(client, shops, beta_staff):
    client.force_login(beta_staff)
    listing = client.get(reverse("admin:knowledge_document_changelist"))
    assert listing.status_code == 200
    assert b"Beta returns" in listing.content
    assert b"Alpha returns" not in listing.content
    assert b"Alpha Shop" not in listing.content  # not even in the tenant filter
    sources = client.get(reverse("admin:knowledge_knowledgesource_changelist"))
    assert sources.status_code == 200
    assert b"Alpha Shop" not in sources.content


def test_staff_cannot_open_or_delete_another_tenants_document(client, shops, beta_staff):
    _, _, doc_a, doc_b = shops
    client.force_login(beta_staff)
    change = client.get(reverse("admin:knowledge_document_change", args=[doc_a.id]))
    assert change.status_code == 302  # "doesn't exist": redirected to the admin index
    assert b"Alpha" not in client.get(change.url, follow=True).content.split(b"<main")[-1]
    delete = client.post(
        reverse("admin:knowledge_document_delete", args=[doc_a.id]), {"post": "yes"}
    )
    assert delete.status_code == 302
    assert Document.objects.filter(id=doc_a.id).exists()
    # the bulk action too
    client.post(
        reverse("admin:knowledge_document_changelist"),
        {"action": "delete_selected", "_selected_action": [doc_a.id, doc_b.id], "post": "yes"},
    )
    assert Document.objects.filter(id=doc_a.id).exists()
    assert not Document.objects.filter(id=doc_b.id).exists()


def test_staff_cannot_upload_into_another_tenant(client, shops, beta_staff):
    a, b, _, _ = shops
    client.force_login(beta_staff)
    page = client.get(reverse(UPLOAD_URL))
    assert b"Beta Shop" in page.content
    assert b"Alpha Shop" not in page.content
    response = client.post(
        reverse(UPLOAD_URL),
        {"tenant": a.id, "source": "Uploads", "uploads": files(("x.md", b"# Evil\n\nInjected."))},
    )
    assert response.status_code == 200
    assert "tenant" in response.context["form"].errors
    assert not Document.objects.filter(tenant=a, key="x.md").exists()
    assert not KnowledgeSource.objects.filter(tenant=a, name="Uploads").exists()
    assert not DocumentUpload.objects.exists()
    # into their own tenant it works
    client.post(
        reverse(UPLOAD_URL),
        {"tenant": b.id, "source": "Uploads", "uploads": files(("x.md", b"# Fine\n\nAllowed."))},
    )
    run_queued_uploads()
    assert Document.objects.filter(tenant=b, key="x.md").exists()


def test_staff_see_and_open_only_their_tenants_uploads(client, shops, beta_staff, superuser):
    a, b, _, _ = shops
    operator = Client()  # messages of its uploads stay in its own cookies
    operator.force_login(superuser)
    for tenant, name in ((a, "alpha-secret.md"), (b, "beta-notes.md")):
        operator.post(
            reverse(UPLOAD_URL),
            {"tenant": tenant.id, "source": "Uploads", "uploads": files((name, b"# T\n\nText."))},
        )
    run_queued_uploads()
    alpha_upload = DocumentUpload.objects.get(tenant=a)
    client.force_login(beta_staff)
    listing = client.get(reverse("admin:knowledge_documentupload_changelist"))
    assert listing.status_code == 200
    assert b"beta-notes.md" in listing.content
    assert b"alpha-secret.md" not in listing.content
    change = client.get(reverse("admin:knowledge_documentupload_change", args=[alpha_upload.id]))
    assert change.status_code == 302  # "doesn't exist"
    client.post(
        reverse("admin:knowledge_documentupload_delete", args=[alpha_upload.id]), {"post": "yes"}
    )
    assert DocumentUpload.objects.filter(id=alpha_upload.id).exists()


def test_staff_cannot_create_a_source_for_another_tenant(client, shops, beta_staff):
    a, _, _, _ = shops
    client.force_login(beta_staff)
    response = client.post(
        reverse("admin:knowledge_knowledgesource_add"),
        {"tenant": a.id, "name": "Sneaky", "kind": "upload"},
    )
    assert response.status_code == 200
    assert "tenant" in response.context["adminform"].form.errors
    assert not KnowledgeSource.objects.filter(name="Sneaky").exists()


def test_staff_without_membership_sees_nothing_and_without_permission_cannot_upload(client, shops):
    lonely = User.objects.create_user("lonely", "l@example.com", "pw", is_staff=True)
    lonely.user_permissions.set(
        Permission.objects.filter(codename__in=["view_document", "add_document"])
    )
    client.force_login(lonely)
    listing = client.get(reverse("admin:knowledge_document_changelist"))
    assert b"Alpha returns" not in listing.content
    assert b"Beta returns" not in listing.content
    upload = client.get(reverse(UPLOAD_URL))
    assert b"Alpha Shop" not in upload.content
    assert b"Beta Shop" not in upload.content

    viewer = User.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_document"))
    client.force_login(viewer)
    assert client.get(reverse(UPLOAD_URL)).status_code == 403
