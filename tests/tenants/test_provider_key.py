"""A tenant's provider key goes only to the provider it was given for."""

from typing import Any

import pytest

from supportbot.compliance.encryption import decrypt_secret
from supportbot.tenants.models import LLM_API_KEY_LABEL
from supportbot.tenants.services import tenant_llm_key_after_edit, tenant_set_llm_api_key
from tests.support.admin_forms import tenant_change_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant_with_key(make_tenant: Any) -> Any:
    tenant, _ = make_tenant(llm_provider="openai", llm_base_url="https://api.example.com/v1")
    tenant_set_llm_api_key(tenant=tenant, api_key="sk-tenant-secret")
    return tenant


@pytest.mark.parametrize("field", ["llm_provider", "llm_base_url"])
def test_changing_where_the_key_goes_removes_it(tenant_with_key: Any, field: str) -> None:
    tenant_with_key.llm_base_url = "https://attacker.example/v1"
    tenant_with_key.save()
    assert tenant_llm_key_after_edit(tenant=tenant_with_key, changed_fields={field})
    tenant_with_key.refresh_from_db()
    assert tenant_with_key.llm_api_key_encrypted == ""


def test_a_new_key_given_with_the_change_is_kept(tenant_with_key: Any) -> None:
    removed = tenant_llm_key_after_edit(
        tenant=tenant_with_key, changed_fields={"llm_base_url"}, new_api_key="sk-new"
    )
    assert not removed
    tenant_with_key.refresh_from_db()
    assert (
        decrypt_secret(
            tenant_with_key.llm_api_key_encrypted,
            tenant_id=tenant_with_key.pk,
            field=LLM_API_KEY_LABEL,
        )
        == "sk-new"
    )


def test_other_edits_keep_the_key(tenant_with_key: Any) -> None:
    assert not tenant_llm_key_after_edit(
        tenant=tenant_with_key, changed_fields={"persona", "temperature"}
    )
    tenant_with_key.refresh_from_db()
    assert (
        decrypt_secret(
            tenant_with_key.llm_api_key_encrypted,
            tenant_id=tenant_with_key.pk,
            field=LLM_API_KEY_LABEL,
        )
        == "sk-tenant-secret"
    )


def test_the_admin_removes_the_key_when_the_base_url_changes(
    tenant_with_key: Any, admin_client: Any
) -> None:
    from django.urls import reverse

    url = reverse("admin:tenants_tenant_change", args=[tenant_with_key.pk])
    page = admin_client.get(url)
    form = page.context["adminform"].form
    data = tenant_change_data(form)
    data.update(
        {
            "llm_base_url": "https://attacker.example/v1",
            "allowed_origins": '["https://shop.example.com"]',
        }
    )
    response = admin_client.post(url, data)
    errors = response.context["adminform"].form.errors if response.status_code == 200 else None
    assert response.status_code == 302, errors
    tenant_with_key.refresh_from_db()
    assert tenant_with_key.llm_base_url == "https://attacker.example/v1"
    assert tenant_with_key.llm_api_key_encrypted == ""
