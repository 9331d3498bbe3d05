"""What a tenant takes from the server's settings: its history budget, its LLM provider."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from knowledge import conf
from supportbot.llm import ProviderConfig
from supportbot.tenants.models import Tenant
from supportbot.tenants.selectors import tenant_provider_config

pytestmark = pytest.mark.django_db


def test_history_token_budget_setting_is_a_new_tenants_default(
    make_tenant: Any, settings: Any
) -> None:
    settings.HISTORY_TOKEN_BUDGET = 1234
    tenant, _ = make_tenant()
    assert Tenant.objects.get(pk=tenant.pk).history_token_budget == 1234

    settings.HISTORY_TOKEN_BUDGET = 800  # existing tenants keep theirs
    assert Tenant.objects.get(pk=tenant.pk).history_token_budget == 1234
    assert make_tenant()[0].history_token_budget == 800


def test_admin_offers_the_history_token_budget_setting(client: Any, settings: Any) -> None:
    settings.HISTORY_TOKEN_BUDGET = 1234
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    page = client.get(reverse("admin:tenants_tenant_add"))
    assert page.status_code == 200
    assert b'name="history_token_budget" value="1234"' in page.content


SERVER = {
    "LLM_PROVIDER": "openai",
    "LLM_BASE_URL": "http://127.0.0.1:9/v1",
    "LLM_API_KEY": "sk-server",
    "LLM_MODEL": "server-model",
    "LLM_API_VERSION": "",
    "LLM_CONNECT_TIMEOUT": 2.0,
    "LLM_READ_TIMEOUT": 9.0,
    "LLM_DEADLINE": 45.0,
    "LLM_MAX_RETRIES": 1,
    "LLM_EMBEDDING_MODEL": "server-embeddings",
}


@pytest.fixture
def server_llm(settings: Any) -> None:
    for name, value in SERVER.items():
        setattr(settings, name, value)


def test_replies_and_embeddings_reach_the_same_server_provider(
    make_tenant: Any, server_llm: None
) -> None:
    tenant, _ = make_tenant()
    chat = tenant_provider_config(tenant)
    assert chat == ProviderConfig(
        provider="openai",
        model="server-model",
        base_url="http://127.0.0.1:9/v1",
        api_key="sk-server",
        connect_timeout=2.0,
        read_timeout=9.0,
        deadline=45.0,
        max_retries=1,
    )
    embeddings = conf.embedding_provider_config()
    assert embeddings.model == "server-embeddings"
    assert (
        embeddings.provider,
        embeddings.base_url,
        embeddings.api_key,
        embeddings.connect_timeout,
        embeddings.read_timeout,
        embeddings.deadline,
        embeddings.max_retries,
    ) == ("openai", "http://127.0.0.1:9/v1", "sk-server", 2.0, 9.0, 45.0, 1)
    query = conf.embedding_provider_config(deadline=3.0, max_retries=0)
    assert (query.deadline, query.max_retries) == (3.0, 0)


def test_a_tenants_own_provider_takes_the_servers_timeouts(
    make_tenant: Any, server_llm: None
) -> None:
    tenant, _ = make_tenant(llm_provider="local", llm_model="")
    config = tenant_provider_config(tenant)
    assert (config.provider, config.model, config.api_key) == ("local", "server-model", None)
    assert (config.connect_timeout, config.read_timeout, config.deadline, config.max_retries) == (
        2.0,
        9.0,
        45.0,
        1,
    )


def test_no_model_anywhere_is_gpt_4o_mini(
    make_tenant: Any, server_llm: None, settings: Any
) -> None:
    settings.LLM_MODEL = ""
    tenant, _ = make_tenant()
    assert tenant_provider_config(tenant).model == "gpt-4o-mini"
