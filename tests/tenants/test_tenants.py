import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import RequestFactory

from supportbot.compliance.encryption import DecryptionError, decrypt_secret, encrypt_secret
from supportbot.tenants.models import Tenant, WidgetKey
from supportbot.tenants.selectors import access_widget_key_by_public_key, tenant_provider_config
from supportbot.tenants.services import tenant_set_llm_api_key

pytestmark = pytest.mark.django_db


def test_tenant_create_command_prints_one_json_line() -> None:
    out = StringIO()
    call_command(
        "tenant_create",
        "--name",
        "Acme Ltd",
        "--allowed-origin",
        "https://acme.example",
        "--allowed-origin",
        "https://www.acme.example/",
        "--json",
        stdout=out,
    )
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert set(data) == {"tenant", "widget_key", "identity_secret"}
    tenant = Tenant.objects.get(slug=data["tenant"])
    assert tenant.allowed_origins == ["https://acme.example", "https://www.acme.example"]
    assert WidgetKey.objects.get(public_key=data["widget_key"]).tenant == tenant


def test_tenant_create_command_refuses_bad_origin() -> None:
    with pytest.raises(CommandError, match="not an http"):
        call_command("tenant_create", "--name", "Bad", "--allowed-origin", "ftp://files.example")
    assert not Tenant.objects.exists()


def test_slugs_stay_unique(make_tenant: Any) -> None:
    a, _ = make_tenant(name="Same Name")
    b, _ = make_tenant(name="Same Name")
    assert a.slug != b.slug


def test_widget_key_lookup_ignores_disabled_keys_and_tenants(make_tenant: Any) -> None:
    tenant, key = make_tenant()
    assert access_widget_key_by_public_key(key.public_key) == key
    tenant.is_active = False
    tenant.save()
    assert access_widget_key_by_public_key(key.public_key) is None
    assert access_widget_key_by_public_key(None) is None
    assert access_widget_key_by_public_key("x" * 500) is None


@pytest.mark.django_db
def test_a_secret_is_bound_to_its_tenant_and_field(settings: Any) -> None:
    token = encrypt_secret("sk-live-123", tenant_id=1, field="tenants.tenant.llm_api_key")
    assert "sk-live-123" not in token
    assert decrypt_secret(token, tenant_id=1, field="tenants.tenant.llm_api_key") == "sk-live-123"
    with pytest.raises(DecryptionError):
        decrypt_secret(token, tenant_id=2, field="tenants.tenant.llm_api_key")
    with pytest.raises(DecryptionError):
        decrypt_secret(token, tenant_id=1, field="tenants.tenant.identity_secret")


def test_tenant_override_uses_its_encrypted_key(make_tenant: Any, settings: Any) -> None:
    settings.LLM_PROVIDER = "openai"
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    settings.LLM_API_KEY = "sk-server"
    settings.LLM_MODEL = "server-model"
    tenant, _ = make_tenant()
    assert tenant_provider_config(tenant).api_key == "sk-server"

    tenant.llm_provider = "azure"
    tenant.llm_base_url = "https://acme.openai.azure.com"
    tenant.llm_model = "acme-gpt4o"
    tenant.llm_api_version = "2024-10-21"
    tenant.save()
    tenant_set_llm_api_key(tenant=tenant, api_key="azure-secret")
    tenant.refresh_from_db()
    assert "azure-secret" not in tenant.llm_api_key_encrypted
    config = tenant_provider_config(tenant)
    assert (config.provider, config.base_url, config.model, config.api_version) == (
        "azure",
        "https://acme.openai.azure.com",
        "acme-gpt4o",
        "2024-10-21",
    )
    assert config.api_key == "azure-secret"
    assert "azure-secret" not in repr(config)
    # The server's key never goes to a tenant's own endpoint.
    tenant_set_llm_api_key(tenant=tenant, api_key="")
    assert tenant_provider_config(Tenant.objects.get(pk=tenant.pk)).api_key is None


def test_seed_demo_is_idempotent(monkeypatch: Any, settings: Any, tmp_path: Any) -> None:
    from django.contrib.auth import authenticate

    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("DEMO_SITE_ORIGINS", "http://localhost:8001,http://127.0.0.1:8001")
    first, second = StringIO(), StringIO()
    call_command("seed_demo", "--json", stdout=first)
    call_command("seed_demo", "--json", stdout=second)
    a, b = json.loads(first.getvalue()), json.loads(second.getvalue())
    assert a == b
    tenant = Tenant.objects.get(slug=a["tenant"])
    assert tenant.allowed_origins == ["http://localhost:8001", "http://127.0.0.1:8001"]
    assert WidgetKey.objects.filter(tenant=tenant).count() == 1
    login = RequestFactory().post("/admin/login/")  # the lockout needs the request
    assert authenticate(login, username=a["admin_user"], password=a["admin_password"]) is not None
    # The demo shop's help centre, loaded once and updated in place.
    from knowledge.models import Document
    from knowledge.retrieval import search_knowledge

    assert a["articles"] == 4
    assert Document.objects.filter(tenant=tenant).count() == 4
    passages = search_knowledge(tenant_id=tenant.pk, query="can I return a pitched tent", limit=2)
    assert passages
    assert passages[0].title == "Returns and refunds"


def test_seed_demo_refuses_production(settings: Any) -> None:
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="development only"):
        call_command("seed_demo")
