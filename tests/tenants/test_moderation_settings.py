"""A tenant's moderation settings in the admin: the warning when there is none, the URL checked
like a provider URL, the key write-only, what a tenant admin may edit, and the review filter of
the conversations list (tenant-scoped)."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from conversations.models import Contact, Conversation
from supportbot.compliance.encryption import decrypt_secret, encrypt_secret
from supportbot.tenants.models import MODERATION_API_KEY_LABEL, TenantMembership
from supportbot.tenants.moderation import (
    moderation_warning,
    tenant_moderation_config,
    tenant_moderation_key_after_edit,
)
from tests.support.admin_forms import tenant_change_data

pytestmark = pytest.mark.django_db

User = get_user_model()


def _tenant_admin(tenant: Any, username: str) -> Client:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    TenantMembership.objects.create(tenant=tenant, user=user, role=TenantMembership.Role.ADMIN)
    client = Client()
    client.force_login(user)
    return client


def _page(client: Any, tenant: Any) -> Any:
    return client.get(reverse("admin:tenants_tenant_change", args=[tenant.pk]))


def test_moderation_is_on_by_default_where_the_provider_has_an_endpoint(
    make_tenant: Any, settings: Any, admin_client: Any
) -> None:
    settings.LLM_PROVIDER = "openai"
    tenant, _ = make_tenant()
    assert tenant.moderation_source == "provider"
    config = tenant_moderation_config(tenant)
    assert config is not None
    assert config.model == "omni-moderation-latest"
    assert config.deadline == settings.MODERATION_DEADLINE
    assert moderation_warning(tenant) == ""
    assert "Moderation is off" not in _page(admin_client, tenant).content.decode()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"moderation_source": "none"}, "Moderation is off: visitor messages"),
        ({"llm_provider": "azure", "llm_base_url": "https://x.openai.azure.com"}, "(azure)"),
        ({"llm_provider": "local"}, "(local) has no moderation endpoint"),
    ],
)
def test_the_tenant_page_warns_when_there_is_no_moderation(
    make_tenant: Any, admin_client: Any, fields: dict[str, str], expected: str
) -> None:
    tenant, _ = make_tenant(**fields)
    assert tenant_moderation_config(tenant) is None
    assert expected in moderation_warning(tenant)
    page = _page(admin_client, tenant).content.decode()
    assert "moderation-off" in page
    assert expected in page


def test_a_moderation_url_on_a_private_host_is_refused(make_tenant: Any, admin_client: Any) -> None:
    tenant, _ = make_tenant()
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    data = tenant_change_data(
        _page(admin_client, tenant).context["adminform"].form,
        moderation_source="url",
        moderation_url="http://169.254.169.254/v1",
    )
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "moderation_url" in response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.moderation_url == ""


def test_the_moderation_key_is_write_only_and_follows_its_url(
    make_tenant: Any, admin_client: Any
) -> None:
    tenant, _ = make_tenant()
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    data = tenant_change_data(
        _page(admin_client, tenant).context["adminform"].form,
        moderation_source="url",
        moderation_url="https://moderation.example.com/v1",
        moderation_api_key="sk-moderation-secret",
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert (
        decrypt_secret(
            tenant.moderation_api_key_encrypted,
            tenant_id=tenant.pk,
            field=MODERATION_API_KEY_LABEL,
        )
        == "sk-moderation-secret"
    )
    assert "sk-moderation-secret" not in _page(admin_client, tenant).content.decode()
    config = tenant_moderation_config(tenant)
    assert config is not None
    assert config.base_url == "https://moderation.example.com/v1"
    assert config.address_guard is not None
    assert "sk-moderation-secret" not in repr(config)

    assert tenant_moderation_key_after_edit(tenant=tenant, changed_fields={"moderation_url"})
    tenant.refresh_from_db()
    assert tenant.moderation_api_key_encrypted == ""


def test_sensitive_topics_are_validated(make_tenant: Any, admin_client: Any) -> None:
    tenant, _ = make_tenant()
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    form = _page(admin_client, tenant).context["adminform"].form
    bad = admin_client.post(url, tenant_change_data(form, sensitive_topics='{"health": "maybe"}'))
    assert "sensitive_topics" in bad.context["adminform"].form.errors
    good = admin_client.post(
        url,
        tenant_change_data(
            form, sensitive_topics='{" Health ": "refuse", "Pet insurance": "disclaimer"}'
        ),
    )
    assert good.status_code == 302
    tenant.refresh_from_db()
    assert tenant.sensitive_topics == {"health": "refuse", "pet insurance": "disclaimer"}


def test_a_tenant_admin_sets_topics_and_source_but_not_the_url_of_their_tenant_only(
    make_tenant: Any,
) -> None:
    tenant, _ = make_tenant(name="Alpha")
    other, _ = make_tenant(name="Beta", moderation_source="url", moderation_url="https://b.example")
    client = _tenant_admin(tenant, "alpha-admin")
    page = _page(client, tenant)
    form = page.context["adminform"].form
    assert {"moderation_source", "sensitive_topics", "moderation_fail_closed"} <= set(form.fields)
    assert not {"moderation_url", "moderation_model", "moderation_api_key"} & set(form.fields)
    response = client.post(
        reverse("admin:tenants_tenant_change", args=[tenant.pk]),
        tenant_change_data(form, sensitive_topics='{"legal": "refuse"}'),
    )
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert tenant.sensitive_topics == {"legal": "refuse"}
    assert _page(client, other).status_code in (302, 404)
    assert "b.example" not in client.get("/admin/tenants/tenant/").content.decode()


def test_the_review_filter_lists_only_marked_conversations_of_the_users_tenant(
    make_tenant: Any,
) -> None:
    from django.utils import timezone

    tenant, _ = make_tenant(name="Alpha")
    other, _ = make_tenant(name="Beta")
    marked = Conversation.objects.create(
        tenant=tenant,
        contact=Contact.objects.create(tenant=tenant),
        review_reason="input_flagged",
        review_flagged_at=timezone.now(),
    )
    Conversation.objects.create(tenant=tenant, contact=Contact.objects.create(tenant=tenant))
    hidden = Conversation.objects.create(
        tenant=other,
        contact=Contact.objects.create(tenant=other),
        review_reason="output_flagged",
        review_flagged_at=timezone.now(),
    )
    client = _tenant_admin(tenant, "alpha-admin")
    page = client.get("/admin/conversations/conversation/?review=needed")
    assert page.status_code == 200
    shown = list(page.context["cl"].result_list)
    assert shown == [marked]
    assert hidden not in shown
    assert "Needs review" in page.content.decode()


def test_a_private_moderation_url_needs_the_servers_permission(
    make_tenant: Any, settings: Any
) -> None:
    settings.LLM_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    tenant, _ = make_tenant(
        moderation_source="url",
        moderation_url="http://127.0.0.1:9/v1",
    )
    tenant.moderation_api_key_encrypted = encrypt_secret(
        "k", tenant_id=tenant.pk, field=MODERATION_API_KEY_LABEL
    )
    tenant.full_clean()
    settings.LLM_ALLOWED_PRIVATE_HOSTS = []
    with pytest.raises(Exception, match="refused"):
        tenant.full_clean()
