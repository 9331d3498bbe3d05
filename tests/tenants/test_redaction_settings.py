"""The tenant's redaction settings: on by default, edited by the tenant's admin only."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from supportbot.tenants.models import TenantMembership
from tests.support.admin_forms import tenant_change_data

pytestmark = pytest.mark.django_db


def _admin_of(tenant: Any) -> Client:
    user = get_user_model().objects.create_user(username="ana", password="pw", is_staff=True)
    TenantMembership.objects.create(tenant=tenant, user=user, role=TenantMembership.Role.ADMIN)
    client = Client()
    client.force_login(user)
    return client


def test_a_new_tenant_redacts(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    assert tenant.redact_pii is True
    assert tenant.phone_region == ""


def test_the_tenants_admin_edits_the_redaction_settings(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    client = _admin_of(tenant)
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    page = client.get(url)
    assert "Personal data sent to the model" in page.content.decode()
    data = tenant_change_data(page.context["adminform"].form, phone_region="ES")
    data.pop("redact_pii")  # an unticked box is not posted
    response = client.post(url, data)
    errors = response.context["adminform"].form.errors if response.status_code == 200 else None
    assert response.status_code == 302, errors
    tenant.refresh_from_db()
    assert (tenant.redact_pii, tenant.phone_region) == (False, "ES")

    data["phone_region"] = "Spain"
    response = client.post(url, data)
    assert response.status_code == 200
    assert "phone_region" in response.context["adminform"].form.errors


def test_another_tenants_admin_cannot_turn_redaction_off(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    other, _ = make_tenant()
    client = _admin_of(other)
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    assert client.get(url).status_code in (302, 403, 404)
    response = client.post(url, {"name": tenant.name, "phone_region": "ES"})
    assert response.status_code in (302, 403, 404)
    tenant.refresh_from_db()
    assert (tenant.redact_pii, tenant.phone_region) == (True, "")
