"""The tenant's identity secret: verification, creation, rotation, and where it never shows."""

import json
import logging
import time
from io import StringIO
from typing import Any

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client

from conversations.models import Contact, Conversation
from supportbot.tenants.identity import IdentityRefused, verify_visitor_identity
from supportbot.tenants.models import Tenant, TenantMembership
from supportbot.tenants.selectors import tenant_identity_secret

pytestmark = pytest.mark.django_db


def sign(secret: str, **claims: Any) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, secret, algorithm="HS256")


def test_a_tenant_is_created_with_its_own_secret_stored_encrypted(make_tenant: Any) -> None:
    a, _ = make_tenant()
    b, _ = make_tenant()
    secret_a, secret_b = tenant_identity_secret(a), tenant_identity_secret(b)
    assert secret_a.startswith("ids_")
    assert len(secret_a) >= 40
    assert secret_a != secret_b
    assert secret_a not in a.identity_secret_encrypted


def test_verified_claims_are_capped_and_cleaned(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    secret = tenant_identity_secret(tenant)
    identity = verify_visitor_identity(
        tenant, sign(secret, sub="u-1", email="ann@example.com", name="A\u0000nn " + "x" * 300)
    )
    assert identity.external_id == "u-1"
    assert identity.email == "ann@example.com"
    assert identity.name.startswith("Ann x")
    assert len(identity.name) == 200
    for email in ("not an email", 42, "a@" + "b" * 260 + ".com"):
        assert verify_visitor_identity(tenant, sign(secret, sub="u-1", email=email)).email == ""


def test_a_tenant_without_a_secret_refuses_every_identity(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    secret = tenant_identity_secret(tenant)
    Tenant.objects.filter(pk=tenant.pk).update(identity_secret_encrypted="")
    tenant.refresh_from_db()
    with pytest.raises(IdentityRefused, match="no identity secret"):
        verify_visitor_identity(tenant, sign(secret, sub="u-1"))


def test_tenant_create_json_prints_the_identity_secret() -> None:
    out = StringIO()
    call_command(
        "tenant_create", "--name", "Acme", "--allowed-origin", "https://acme.example", "--json",
        stdout=out,
    )  # fmt: skip
    data = json.loads(out.getvalue().strip())
    tenant = Tenant.objects.get(slug=data["tenant"])
    assert data["identity_secret"] == tenant_identity_secret(tenant)
    assert verify_visitor_identity(tenant, sign(data["identity_secret"], sub="u-1"))


# --- the admin --------------------------------------------------------------------------------


def _admin_pages(tenant: Tenant, conversation: Conversation) -> list[str]:
    return [
        "/admin/",
        "/admin/tenants/tenant/",
        f"/admin/tenants/tenant/{tenant.pk}/change/",
        f"/admin/tenants/tenant/{tenant.pk}/history/",
        f"/admin/tenants/tenant/{tenant.pk}/rotate-identity-secret/",
        "/admin/tenants/widgetkey/",
        "/admin/conversations/contact/",
        "/admin/conversations/conversation/",
        f"/admin/conversations/conversation/{conversation.pk}/change/",
    ]


def test_rotation_shows_the_new_secret_once_and_never_again(
    make_tenant: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant, _ = make_tenant(name="Acme")
    old_secret = tenant_identity_secret(tenant)
    contact = Contact.objects.create(tenant=tenant)
    conversation = Conversation.objects.create(tenant=tenant, contact=contact)
    root = get_user_model().objects.create_superuser(username="root", password="pw")
    client = Client()
    client.force_login(root)

    change = client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    assert f"/admin/tenants/tenant/{tenant.pk}/rotate-identity-secret/" in change
    assert old_secret not in change
    confirm = client.get(f"/admin/tenants/tenant/{tenant.pk}/rotate-identity-secret/")
    assert confirm.status_code == 200
    tenant.refresh_from_db()
    assert tenant_identity_secret(tenant) == old_secret  # a GET changes nothing

    rotated = client.post(f"/admin/tenants/tenant/{tenant.pk}/rotate-identity-secret/")
    assert rotated.status_code == 200
    assert "no-store" in rotated["Cache-Control"]
    tenant.refresh_from_db()
    new_secret = tenant_identity_secret(tenant)
    assert new_secret != old_secret
    body = rotated.content.decode()
    assert body.count(new_secret) == 1  # in the success message
    # Kept nowhere for a later page: not in a cookie, not in the session.
    assert all(new_secret not in morsel.value for morsel in rotated.cookies.values())
    assert all(new_secret not in s.session_data for s in Session.objects.all())
    assert all(new_secret not in str(s.get_decoded()) for s in Session.objects.all())

    for url in _admin_pages(tenant, conversation):
        page = client.get(url)
        assert page.status_code == 200, url
        html = page.content.decode()
        assert new_secret not in html, url
        assert old_secret not in html, url
    assert (
        "Rotated the identity secret."
        in client.get(f"/admin/tenants/tenant/{tenant.pk}/history/").content.decode()
    )
    logged = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.__dict__!r}" for record in caplog.records
    )
    assert new_secret not in logged
    assert old_secret not in logged


def test_a_tenant_admin_of_another_tenant_cannot_rotate_the_secret(make_tenant: Any) -> None:
    tenant_a, _ = make_tenant()
    tenant_b, _ = make_tenant()
    secret_b = tenant_identity_secret(tenant_b)
    user = get_user_model().objects.create_user(username="ana", password="pw", is_staff=True)
    TenantMembership.objects.create(tenant=tenant_a, user=user, role=TenantMembership.Role.ADMIN)
    client = Client()
    client.force_login(user)
    url = f"/admin/tenants/tenant/{tenant_b.pk}/rotate-identity-secret/"
    assert client.post(url).status_code in (302, 403, 404)
    assert secret_b not in client.get(url).content.decode()
    tenant_b.refresh_from_db()
    assert tenant_identity_secret(tenant_b) == secret_b


def test_the_conversation_page_shows_a_verified_contact_with_its_badge(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    other, _ = make_tenant()
    contact = Contact.objects.create(
        tenant=tenant, external_id="u-7", email="ann@example.com", name="<b>Ann</b>"
    )
    conversation = Conversation.objects.create(tenant=tenant, contact=contact)
    theirs = Contact.objects.create(tenant=other, external_id="u-8", email="bob@example.com")
    their_conversation = Conversation.objects.create(tenant=other, contact=theirs)
    agent = get_user_model().objects.create_user(username="ana", password="pw", is_staff=True)
    TenantMembership.objects.create(tenant=tenant, user=agent)
    client = Client()
    client.force_login(agent)

    page = client.get(f"/admin/conversations/conversation/{conversation.pk}/change/")
    html = page.content.decode()
    assert 'class="identity-badge identity-verified"' in html
    assert "ann@example.com" in html
    assert "u-7" in html
    assert "&lt;b&gt;Ann&lt;/b&gt;" in html
    assert "<b>Ann</b>" not in html
    # Another tenant's verified contact stays out of sight.
    listing = client.get("/admin/conversations/conversation/").content.decode()
    assert str(conversation.pk)[:8] in listing
    assert str(their_conversation.pk)[:8] not in listing
    other_page = client.get(
        f"/admin/conversations/conversation/{their_conversation.pk}/change/", follow=True
    )
    assert "bob@example.com" not in other_page.content.decode()
    assert "u-8" not in other_page.content.decode()
