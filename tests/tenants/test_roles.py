"""Roles and the scoped admin: real logins against the real admin URLs.

Two tenants, Alpha and Beta. Every admin page, action, filter and autocomplete is tried by
Alpha's people on Beta's rows (and by roles that must not reach a page at all); nothing of
Beta's is shown or changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from conversations.messages import message_append
from conversations.models import Contact, Conversation, LLMCall
from knowledge.ingestion import document_ingest, source_get_or_create
from knowledge.models import Document, KnowledgeSource
from supportbot.tenants.models import Tenant, TenantMembership, WidgetKey
from supportbot.tenants.roles import Capability, tenant_ids_for_user, user_can

pytestmark = pytest.mark.django_db
PASSWORD = "pw-roles-tests-1"
Role = TenantMembership.Role


@dataclass
class Side:
    tenant: Tenant
    key: WidgetKey
    conversation: Conversation
    contact: Contact
    call: LLMCall
    document: Document
    source: KnowledgeSource
    admin: User
    membership: TenantMembership  # the admin's


@dataclass
class World:
    alpha: Side
    beta: Side
    agent: User  # Alpha's agent
    officer: User  # Alpha's compliance officer
    loner: User  # staff with every model permission and no membership
    root: User


def _user(username: str, **fields: Any) -> User:
    fields.setdefault("is_staff", True)
    return User.objects.create_user(username, f"{username}@example.com", PASSWORD, **fields)


def _side(make_tenant: Any, name: str, secret: str) -> Side:
    tenant, key = make_tenant(name=name)
    contact = Contact.objects.create(tenant=tenant)
    conversation = Conversation.objects.create(tenant=tenant, contact=contact)
    message_append(conversation=conversation, role="user", text=f"{secret} order question")
    call = LLMCall.objects.create(
        tenant=tenant,
        conversation=conversation,
        model=f"{secret}-model",
        outcome="ok",
        provider="openai",
        latency_ms=5,
    )
    source = source_get_or_create(tenant=tenant, name=f"{secret} source", kind="upload")
    document = document_ingest(
        tenant=tenant,
        source=source,
        key=f"{secret}.md",
        filename=f"{secret}.md",
        content=f"# {secret} returns\n\nReturns within 30 days.\n".encode(),
        language="en",
    ).document
    admin = _user(f"{secret}-admin")
    membership = TenantMembership.objects.create(tenant=tenant, user=admin, role=Role.ADMIN)
    return Side(tenant, key, conversation, contact, call, document, source, admin, membership)


@pytest.fixture
def world(make_tenant: Any) -> World:
    alpha = _side(make_tenant, "Alpha Shop", "alphasecret")
    beta = _side(make_tenant, "Beta Secret", "betasecret")
    agent = _user("alpha-agent")
    TenantMembership.objects.create(tenant=alpha.tenant, user=agent, role=Role.AGENT)
    officer = _user("alpha-officer")
    TenantMembership.objects.create(tenant=alpha.tenant, user=officer, role=Role.COMPLIANCE)
    loner = _user("loner")
    loner.user_permissions.set(Permission.objects.all())
    root = User.objects.create_superuser("root", "root@example.com", PASSWORD)
    return World(alpha, beta, agent, officer, loner, root)


def login(user: User) -> Client:
    """A browser that signed in through the admin's own login page (no second factor is
    required outside production)."""
    client = Client()
    response = client.post("/admin/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.status_code
    assert client.session.get("_auth_user_id") == str(user.pk)
    return client


def changelist(model: str) -> str:
    return f"/admin/{model}/"


MODELS = {
    "tenant": "tenants/tenant",
    "key": "tenants/widgetkey",
    "membership": "tenants/tenantmembership",
    "conversation": "conversations/conversation",
    "contact": "conversations/contact",
    "call": "conversations/llmcall",
    "source": "knowledge/knowledgesource",
    "document": "knowledge/document",
    "user": "auth/user",
    "group": "auth/group",
}
# Which changelists each role reaches (for its own tenant).
REACHES = {
    "agent": {"conversation", "contact"},
    "admin": {
        "tenant",
        "key",
        "membership",
        "conversation",
        "contact",
        "call",
        "source",
        "document",
    },
    "officer": set(),
    "loner": set(),
    "root": set(MODELS),
}


def _who(world: World, role: str) -> User:
    return {
        "agent": world.agent,
        "admin": world.alpha.admin,
        "officer": world.officer,
        "loner": world.loner,
        "root": world.root,
    }[role]


# --- the one place that decides ---------------------------------------------------------------


def test_roles_give_capabilities_per_tenant(world: World) -> None:
    alpha, beta = world.alpha.tenant, world.beta.tenant
    assert tenant_ids_for_user(world.agent, Capability.CONVERSATIONS) == {alpha.pk}
    assert tenant_ids_for_user(world.agent, Capability.SETTINGS) == set()
    assert tenant_ids_for_user(world.alpha.admin, Capability.MEMBERS) == {alpha.pk}
    officer_caps = {Capability.AUDIT, Capability.DATA_REQUESTS}
    for capability in Capability:
        expected = {alpha.pk} if capability in officer_caps else set()
        assert tenant_ids_for_user(world.officer, capability) == expected
        assert tenant_ids_for_user(world.loner, capability) == set()
        assert tenant_ids_for_user(world.root, capability) is None
        assert not user_can(world.alpha.admin, beta, capability)
    # A member who is no longer staff, or no longer active, has nothing.
    world.alpha.admin.is_staff = False
    assert not user_can(world.alpha.admin, alpha, Capability.CONVERSATIONS)
    world.root.is_active = False
    assert tenant_ids_for_user(world.root, Capability.SETTINGS) == set()


# --- which pages each role reaches ------------------------------------------------------------


@pytest.mark.parametrize("role", list(REACHES))
def test_each_role_reaches_only_its_pages(world: World, role: str) -> None:
    client = login(_who(world, role))
    index = client.get("/admin/").content.decode()
    for name, model in MODELS.items():
        response = client.get(changelist(model))
        expected = 200 if name in REACHES[role] else 403
        assert response.status_code == expected, (role, name)
        assert (f'href="/admin/{model}/"' in index) == (name in REACHES[role]), (role, name)


def test_a_compliance_officer_reads_no_transcript(world: World) -> None:
    client = login(world.officer)
    conversation = world.alpha.conversation
    page = client.get(f"/admin/conversations/conversation/{conversation.pk}/change/")
    assert page.status_code in (302, 403)
    assert b"alphasecret order question" not in page.content
    assert client.get("/admin/conversations/message/").status_code == 404  # not registered


# --- lists, filters and searches show one tenant ----------------------------------------------


@pytest.mark.parametrize(
    "name", ["tenant", "key", "membership", "conversation", "contact", "call", "source", "document"]
)
def test_lists_and_filters_show_only_the_users_tenants(world: World, name: str) -> None:
    client = login(world.alpha.admin)
    url = changelist(MODELS[name])
    body = client.get(url).content.decode()
    assert "Beta Secret" not in body  # neither a row nor a filter choice
    assert "betasecret" not in body
    assert world.beta.key.public_key not in body
    assert str(world.beta.conversation.pk)[:8] not in body
    if name != "tenant":
        assert "Alpha Shop" in body
        # Asking the filter for Beta's rows gives none of them.
        filtered = client.get(url, {"tenant": world.beta.tenant.pk}).content.decode()
        assert "betasecret" not in filtered
        assert world.beta.key.public_key not in filtered
        assert str(world.beta.conversation.pk)[:8] not in filtered
    searched = client.get(url, {"q": "betasecret"}).content.decode()  # the box echoes it
    for beta_only in ("betasecret-", "betasecret source", "betasecret returns", "Beta Secret"):
        assert beta_only not in searched


def test_the_agents_filters_show_only_their_tenant(world: World) -> None:
    client = login(world.agent)
    for url in ("/admin/conversations/conversation/", "/admin/conversations/contact/"):
        body = client.get(url).content.decode()
        assert "Alpha Shop" in body
        assert "Beta Secret" not in body


# --- another tenant's objects are not found ---------------------------------------------------


def _object_urls(side: Side) -> list[str]:
    rows = [
        ("tenants/tenant", side.tenant.pk),
        ("tenants/widgetkey", side.key.pk),
        ("tenants/tenantmembership", side.membership.pk),
        ("conversations/conversation", side.conversation.pk),
        ("conversations/contact", side.contact.pk),
        ("conversations/llmcall", side.call.pk),
        ("knowledge/knowledgesource", side.source.pk),
        ("knowledge/document", side.document.pk),
    ]
    return [
        f"/admin/{model}/{pk}/{view}/"
        for model, pk in rows
        for view in ("change", "delete", "history")
    ]


def test_another_tenants_object_pages_are_not_found(world: World) -> None:
    client = login(world.alpha.admin)
    for url in _object_urls(world.beta):
        response = client.get(url)
        # Not found (redirected to the index), or refused before the lookup (a read-only
        # admin's delete page): never the row.
        assert response.status_code in (302, 403), url
        if response.status_code == 302:
            assert response["Location"] == "/admin/", url
        assert b"betasecret" not in response.content
    # The same pages of Alpha's own rows open (the test can fail).
    for url in _object_urls(world.alpha):
        assert client.get(url).status_code in (200, 403), url
    assert client.get(f"/admin/tenants/tenant/{world.alpha.tenant.pk}/change/").status_code == 200


def test_another_tenants_rows_cannot_be_changed_or_deleted(world: World) -> None:
    client = login(world.alpha.admin)
    beta = world.beta
    client.post(
        f"/admin/tenants/tenant/{beta.tenant.pk}/change/",
        {"name": "Taken over", "persona": "x", "fallback_language": "en"},
    )
    client.post(f"/admin/tenants/widgetkey/{beta.key.pk}/change/", {"label": "taken", "tenant": 1})
    client.post(
        f"/admin/tenants/tenantmembership/{beta.membership.pk}/change/",
        {"role": "agent", "display_name": "x"},
    )
    for model, pk in (
        ("tenants/tenant", beta.tenant.pk),
        ("tenants/widgetkey", beta.key.pk),
        ("tenants/tenantmembership", beta.membership.pk),
        ("knowledge/document", beta.document.pk),
        ("knowledge/knowledgesource", beta.source.pk),
    ):
        response = client.post(f"/admin/{model}/{pk}/delete/", {"post": "yes"})
        assert response.status_code in (302, 403)  # not found, or no deleting here at all
    # Bulk actions with Beta's ids picked by hand.
    for model, pk in (
        ("tenants/widgetkey", beta.key.pk),
        ("tenants/tenantmembership", beta.membership.pk),
        ("knowledge/document", beta.document.pk),
        ("knowledge/knowledgesource", beta.source.pk),
    ):
        client.post(
            f"/admin/{model}/",
            {"action": "delete_selected", "_selected_action": [pk], "post": "yes"},
        )
    beta.tenant.refresh_from_db()
    beta.key.refresh_from_db()
    beta.membership.refresh_from_db()
    assert beta.tenant.name == "Beta Secret"
    assert beta.key.label == "default"
    assert beta.membership.role == Role.ADMIN
    assert Document.objects.filter(pk=beta.document.pk).exists()
    assert KnowledgeSource.objects.filter(pk=beta.source.pk).exists()
    assert Tenant.objects.filter(pk=beta.tenant.pk).exists()


# --- autocomplete ----------------------------------------------------------------------------


def _autocomplete(client: Client, app: str, model: str, field: str, term: str = "") -> Any:
    return client.get(
        "/admin/autocomplete/",
        {"app_label": app, "model_name": model, "field_name": field, "term": term},
    )


def test_autocomplete_offers_only_the_users_tenants(world: World) -> None:
    client = login(world.alpha.admin)
    tenants = _autocomplete(client, "conversations", "conversation", "tenant")
    assert tenants.status_code == 200
    assert [r["text"] for r in tenants.json()["results"]] == ["Alpha Shop"]
    conversations = _autocomplete(client, "conversations", "llmcall", "conversation")
    ids = {r["id"] for r in conversations.json()["results"]}
    assert ids == {str(world.alpha.conversation.pk)}
    documents = _autocomplete(client, "knowledge", "chunk", "document", "returns")
    assert {r["id"] for r in documents.json()["results"]} == {str(world.alpha.document.pk)}
    # Users are the operators' alone: no list of anyone's people.
    for field in (
        ("conversations", "conversation", "assigned_agent"),
        ("tenants", "tenantmembership", "user"),
    ):
        assert _autocomplete(client, *field).status_code == 403
    # An agent may not list tenants either (no settings right), nor a compliance officer
    # conversations.
    assert (
        _autocomplete(login(world.agent), "conversations", "llmcall", "tenant").status_code == 403
    )
    officer = login(world.officer)
    assert _autocomplete(officer, "conversations", "llmcall", "conversation").status_code == 403


# --- the tenant admin's own tenant ------------------------------------------------------------


def _tenant_form(tenant: Tenant, **changes: Any) -> dict[str, Any]:
    data = {
        "name": tenant.name,
        "slug": tenant.slug,
        "is_active": "on",
        "allowed_origins": '["https://shop.example.com"]',
        "persona": tenant.persona,
        "supported_languages": "[]",
        "fallback_language": "en",
        "message_max_chars": tenant.message_max_chars,
        "history_token_budget": tenant.history_token_budget,
        "knowledge_passages": tenant.knowledge_passages,
        "handoff_after_failures": tenant.handoff_after_failures,
        "llm_provider": "",
        "llm_base_url": "",
        "llm_model": "",
        "fallback_llm_model": "",
        "llm_api_version": "",
        "max_tokens": tenant.max_tokens,
        "stop": "[]",
        "conversation_mode": tenant.conversation_mode,
        "person_first_wait_minutes": tenant.person_first_wait_minutes,
        "business_hours_timezone": tenant.business_hours_timezone,
        "business_hours": "{}",
        "ai_disclosure": "{}",
        "lawful_basis": tenant.lawful_basis,
        "privacy_url": tenant.privacy_url,
        "moderation_source": tenant.moderation_source,
        "sensitive_topics": "{}",
        "widget_keys-TOTAL_FORMS": "0",
        "widget_keys-INITIAL_FORMS": "0",
        "consent_texts-TOTAL_FORMS": "0",
        "consent_texts-INITIAL_FORMS": "0",
    }
    data.update(changes)
    return data


def test_a_tenant_admin_edits_their_settings_but_not_the_operators(world: World) -> None:
    tenant = world.alpha.tenant
    client = login(world.alpha.admin)
    url = f"/admin/tenants/tenant/{tenant.pk}/change/"
    page = client.get(url).content.decode()
    assert 'name="persona"' in page
    assert 'name="slug"' not in page
    assert 'name="llm_base_url"' not in page
    assert 'name="llm_api_key"' not in page
    response = client.post(
        url,
        _tenant_form(
            tenant,
            persona="You help Alpha's customers.",
            slug="stolen-slug",
            is_active="",
            llm_provider="openai",
            llm_base_url="http://169.254.169.254/",
            llm_api_key="sk-attacker",
            history_token_budget=999999,
            moderation_url="http://169.254.169.254/",
            moderation_api_key="sk-attacker",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    tenant.refresh_from_db()
    assert tenant.persona == "You help Alpha's customers."
    assert tenant.slug != "stolen-slug"
    assert tenant.is_active
    assert tenant.llm_provider == ""
    assert tenant.llm_base_url == ""
    assert tenant.llm_api_key_encrypted == ""
    assert tenant.history_token_budget != 999999
    assert tenant.moderation_url == ""
    assert tenant.moderation_api_key_encrypted == ""
    # Only operators add or delete tenants.
    assert client.get("/admin/tenants/tenant/add/").status_code == 403
    assert (
        client.post(f"/admin/tenants/tenant/{tenant.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert Tenant.objects.filter(pk=tenant.pk).exists()


def test_an_agent_cannot_edit_settings_keys_knowledge_or_members(world: World) -> None:
    client = login(world.agent)
    alpha = world.alpha
    assert client.get(f"/admin/tenants/tenant/{alpha.tenant.pk}/change/").status_code in (302, 403)
    client.post(
        f"/admin/tenants/tenant/{alpha.tenant.pk}/change/",
        _tenant_form(alpha.tenant, persona="agent was here"),
    )
    assert (
        client.post("/admin/tenants/widgetkey/add/", {"tenant": alpha.tenant.pk}).status_code == 403
    )
    assert client.get("/admin/knowledge/document/upload/").status_code == 403
    response = client.post(
        "/admin/tenants/tenantmembership/add/",
        {"tenant": alpha.tenant.pk, "username": "alpha-agent", "role": "admin"},
    )
    assert response.status_code == 403
    client.post(f"/admin/tenants/tenantmembership/{alpha.membership.pk}/delete/", {"post": "yes"})
    alpha.tenant.refresh_from_db()
    assert alpha.tenant.persona != "agent was here"
    assert WidgetKey.objects.filter(tenant=alpha.tenant).count() == 1
    assert TenantMembership.objects.get(user=world.agent).role == Role.AGENT
    assert TenantMembership.objects.filter(pk=alpha.membership.pk).exists()


def test_widget_keys_go_to_the_users_tenant_only(world: World) -> None:
    client = login(world.alpha.admin)
    refused = client.post(
        "/admin/tenants/widgetkey/add/",
        {
            "tenant": world.beta.tenant.pk,
            "label": "mine now",
            "is_active": "on",
            "allowed_origins": "[]",
        },
    )
    assert refused.status_code == 200  # the form again, with an error
    assert not WidgetKey.objects.filter(label="mine now").exists()
    added = client.post(
        "/admin/tenants/widgetkey/add/",
        {
            "tenant": world.alpha.tenant.pk,
            "label": "second",
            "is_active": "on",
            "allowed_origins": "[]",
        },
    )
    assert added.status_code == 302
    assert WidgetKey.objects.get(label="second").tenant == world.alpha.tenant
    # A key never moves to another tenant.
    key = WidgetKey.objects.get(label="second")
    client.post(
        f"/admin/tenants/widgetkey/{key.pk}/change/",
        {"tenant": world.beta.tenant.pk, "label": "moved", "allowed_origins": "[]"},
    )
    key.refresh_from_db()
    assert key.tenant == world.alpha.tenant


# --- members ---------------------------------------------------------------------------------


def test_a_tenant_admin_manages_their_members_only(world: World) -> None:
    client = login(world.alpha.admin)
    newcomer = _user("newcomer")
    added = client.post(
        "/admin/tenants/tenantmembership/add/",
        {
            "tenant": world.alpha.tenant.pk,
            "username": "newcomer",
            "role": "agent",
            "display_name": "Nia",
        },
    )
    assert added.status_code == 302
    membership = TenantMembership.objects.get(user=newcomer)
    assert (membership.tenant, membership.display_name) == (world.alpha.tenant, "Nia")
    # Not into another tenant: neither someone else nor themselves.
    for username in ("newcomer", world.alpha.admin.username):
        refused = client.post(
            "/admin/tenants/tenantmembership/add/",
            {"tenant": world.beta.tenant.pk, "username": username, "role": "admin"},
        )
        assert refused.status_code == 200
    assert (
        not TenantMembership.objects.filter(tenant=world.beta.tenant)
        .exclude(pk=world.beta.membership.pk)
        .exists()
    )
    # An unknown username gets an error, and no one is listed to pick from.
    unknown = client.post(
        "/admin/tenants/tenantmembership/add/",
        {"tenant": world.alpha.tenant.pk, "username": "nobody", "role": "agent"},
    )
    assert "No active user has this username." in unknown.content.decode()
    add_page = client.get("/admin/tenants/tenantmembership/add/").content.decode()
    assert "betasecret-admin" not in add_page
    assert 'name="user"' not in add_page  # a username box, not a list of users
    # They cannot change their own role, nor remove themselves.
    own = world.alpha.membership
    client.post(
        f"/admin/tenants/tenantmembership/{own.pk}/change/",
        {"role": "compliance", "display_name": "Alex"},
    )
    own.refresh_from_db()
    assert (own.role, own.display_name) == (Role.ADMIN, "Alex")
    assert (
        client.post(
            f"/admin/tenants/tenantmembership/{own.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    client.post(
        "/admin/tenants/tenantmembership/",
        {"action": "delete_selected", "_selected_action": [own.pk], "post": "yes"},
    )
    assert TenantMembership.objects.filter(pk=own.pk).exists()
    # A display name is one line.
    bad = client.post(
        f"/admin/tenants/tenantmembership/{membership.pk}/change/",
        {"role": "agent", "display_name": "Nia\nfrom <b>IT</b>"},
    )
    assert bad.status_code == 200
    membership.refresh_from_db()
    assert membership.display_name == "Nia"


def test_users_and_groups_are_the_operators_alone(world: World) -> None:
    client = login(world.alpha.admin)
    for url in (
        "/admin/auth/user/",
        f"/admin/auth/user/{world.alpha.admin.pk}/change/",
        f"/admin/auth/user/{world.alpha.admin.pk}/password/",
        "/admin/auth/user/add/",
        "/admin/auth/group/",
    ):
        assert client.get(url).status_code == 403, url
    client.post(
        f"/admin/auth/user/{world.alpha.admin.pk}/change/",
        {
            "username": world.alpha.admin.username,
            "is_staff": "on",
            "is_superuser": "on",
            "is_active": "on",
        },
    )
    world.alpha.admin.refresh_from_db()
    assert not world.alpha.admin.is_superuser
    assert login(world.root).get("/admin/auth/user/").status_code == 200


def test_login_attempts_and_devices_are_the_operators_alone(world: World) -> None:
    """They name every tenant's staff: not even a user given every Django permission sees
    them."""
    pages = (
        "/admin/axes/accessattempt/",
        "/admin/axes/accesslog/",
        "/admin/axes/accessfailurelog/",
        "/admin/otp_totp/totpdevice/",
    )
    for user in (world.alpha.admin, world.loner):
        client = login(user)
        for url in pages:
            assert client.get(url).status_code == 403, (user.username, url)
    root = login(world.root)
    for url in pages:
        assert root.get(url).status_code == 200, url


# --- knowledge and usage ----------------------------------------------------------------------


def test_knowledge_uploads_go_to_the_users_tenant_only(world: World) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = login(world.alpha.admin)
    response = client.post(
        "/admin/knowledge/document/upload/",
        {
            "tenant": world.beta.tenant.pk,
            "source": "Uploads",
            "uploads": [SimpleUploadedFile("planted.md", b"# Planted\n\nText.\n")],
        },
    )
    assert response.status_code == 200
    assert not Document.objects.filter(key="planted.md").exists()
    assert "Beta Secret" not in client.get("/admin/knowledge/document/upload/").content.decode()


def test_model_calls_are_shown_to_tenant_admins_not_agents(world: World) -> None:
    url = f"/admin/conversations/conversation/{world.alpha.conversation.pk}/change/"
    as_agent = login(world.agent).get(url).content.decode()
    assert "alphasecret order question" in as_agent
    assert "alphasecret-model" not in as_agent
    as_admin = login(world.alpha.admin).get(url).content.decode()
    assert "alphasecret-model" in as_admin
