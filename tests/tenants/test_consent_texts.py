"""A tenant's lawful basis, privacy link and versioned consent texts: the command, the admin
(tenant-scoped) and which text a visitor is shown."""

import json
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from supportbot.tenants.consent_texts import DEFAULT_CONSENT_TEXTS
from supportbot.tenants.models import ConsentText, Tenant, TenantMembership
from supportbot.tenants.selectors import tenant_consent_notice
from tests.support.admin_forms import tenant_change_data

pytestmark = pytest.mark.django_db


def test_tenant_create_sets_the_lawful_basis_and_privacy_url() -> None:
    out = StringIO()
    call_command(
        "tenant_create",
        "--name=Acme",
        "--allowed-origin=https://acme.example",
        "--lawful-basis=consent",
        "--privacy-url=https://acme.example/privacy",
        "--json",
        stdout=out,
    )
    tenant = Tenant.objects.get(slug=json.loads(out.getvalue())["tenant"])
    assert (tenant.lawful_basis, tenant.privacy_url) == ("consent", "https://acme.example/privacy")

    call_command("tenant_create", "--name=Plain", "--json", stdout=StringIO())
    assert Tenant.objects.get(slug="plain").lawful_basis == "legitimate_interest"
    with pytest.raises(CommandError):
        call_command("tenant_create", "--name=Bad", "--privacy-url=javascript:alert(1)")
    with pytest.raises(CommandError):
        call_command("tenant_create", "--name=Bad", "--lawful-basis=whatever")
    assert not Tenant.objects.filter(name="Bad").exists()


def test_texts_are_versioned_per_language_and_the_newest_is_shown(make_tenant: Any) -> None:
    tenant, _ = make_tenant(fallback_language="es")
    assert tenant_consent_notice(tenant, "de-AT").text == DEFAULT_CONSENT_TEXTS["de"]
    assert tenant_consent_notice(tenant, "de-AT").version == 0
    first = ConsentText.objects.create(tenant=tenant, language="pt", text="Primeiro.")
    second = ConsentText.objects.create(tenant=tenant, language="pt", text="Segundo.")
    spanish = ConsentText.objects.create(tenant=tenant, language="es", text="Uno.")
    assert (first.version, second.version, spanish.version) == (1, 2, 1)
    notice = tenant_consent_notice(tenant, "pt-BR")
    assert (notice.language, notice.version, notice.text) == ("pt", 2, "Segundo.")
    # A language with neither a text nor a default: the tenant's fallback language.
    assert tenant_consent_notice(tenant, "ja").text == "Uno."
    other, _ = make_tenant()
    assert tenant_consent_notice(other, "pt").text == DEFAULT_CONSENT_TEXTS["pt"]


def _admin_of(tenant: Tenant, username: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw-1", is_staff=True)
    TenantMembership.objects.create(tenant=tenant, user=user, role="admin")
    return user


def test_a_tenant_admin_sets_the_basis_and_adds_a_text_on_their_own_tenant_only(
    make_tenant: Any,
) -> None:
    alpha, _ = make_tenant(name="Alpha")
    beta, _ = make_tenant(name="Beta")
    ConsentText.objects.create(tenant=beta, language="en", text="Beta's own text.")
    client = Client()
    client.force_login(_admin_of(alpha, "alpha-admin"))
    url = reverse("admin:tenants_tenant_change", args=[alpha.pk])
    page = client.get(url)
    assert page.status_code == 200
    assert "Beta&#x27;s own text." not in page.content.decode()
    data = tenant_change_data(
        page.context["adminform"].form,
        lawful_basis="consent",
        privacy_url="javascript:alert(1)",
    )
    data.update(
        {
            "consent_texts-TOTAL_FORMS": "1",
            "consent_texts-0-language": "EN",
            "consent_texts-0-text": "We keep this chat to answer you.",
        }
    )
    refused = client.post(url, data)
    assert refused.status_code == 200
    assert "privacy_url" in refused.context["adminform"].form.errors
    data["privacy_url"] = "https://alpha.example/privacy"
    response = client.post(url, data)
    assert response.status_code == 302
    alpha.refresh_from_db()
    assert (alpha.lawful_basis, alpha.privacy_url) == ("consent", "https://alpha.example/privacy")
    text = ConsentText.objects.get(tenant=alpha)
    assert (text.language, text.version) == ("en", 1)
    # Beta's page is not theirs.
    assert client.get(reverse("admin:tenants_tenant_change", args=[beta.pk])).status_code in (
        302,
        403,
        404,
    )
    assert ConsentText.objects.filter(tenant=beta).count() == 1
