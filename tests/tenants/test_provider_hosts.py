"""A tenant's own provider base URL may not reach the server's network: loopback, private,
link-local (cloud metadata) and unspecified hosts are refused when the tenant is saved and again
for every connection, unless the operator allows them."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from supportbot.llm import ChatParams, PermanentLLMError, complete_chat
from supportbot.tenants.models import Tenant
from supportbot.tenants.selectors import tenant_provider_config
from supportbot.tenants.services import tenant_set_llm_api_key
from tests.support.admin_forms import tenant_change_data
from tests.support.llm_server import Reply

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Hello?"}]

REFUSED = [
    ("http://127.0.0.1:8080/v1", "loopback"),
    ("http://localhost:11434/v1", "loopback"),  # a name that resolves to one
    ("http://[::1]/v1", "loopback"),
    ("http://10.1.2.3/v1", "private network"),
    ("http://172.16.0.9/v1", "private network"),
    ("http://192.168.1.10/v1", "private network"),
    ("http://[fd12:3456::1]/v1", "private network"),
    ("http://169.254.169.254/latest/meta-data/", "link-local (cloud metadata)"),
    ("http://[fe80::1]/v1", "link-local (cloud metadata)"),
    ("http://0.0.0.0:8000/v1", "unspecified"),
    ("http://[::ffff:127.0.0.1]/v1", "loopback"),
    ("http://100.64.0.1/v1", "not a public address"),
]


def tenant_with(make_tenant: Any, url: str) -> Tenant:
    tenant, _ = make_tenant()
    tenant.llm_provider = "openai"
    tenant.llm_base_url = url
    tenant.llm_model = "scripted-model"
    return tenant


@pytest.mark.parametrize(("url", "kind"), REFUSED)
def test_full_clean_refuses_a_non_public_host(make_tenant: Any, url: str, kind: str) -> None:
    tenant = tenant_with(make_tenant, url)
    with pytest.raises(ValidationError) as caught:
        tenant.full_clean()
    (message,) = caught.value.message_dict["llm_base_url"]
    assert f"is a {kind} address" in message
    assert "LLM_ALLOWED_PRIVATE_HOSTS" in message


def test_a_public_address_is_accepted(make_tenant: Any) -> None:
    tenant_with(make_tenant, "https://8.8.8.8/v1").full_clean()


def test_a_name_resolving_to_a_private_address_is_refused(
    make_tenant: Any, monkeypatch: Any
) -> None:
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "llm.internal.test":
            return real("10.0.0.7", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    tenant = tenant_with(make_tenant, "https://llm.internal.test/v1")
    with pytest.raises(ValidationError) as caught:
        tenant.full_clean()
    assert "llm.internal.test (10.0.0.7) is a private network address" in str(caught.value)


def test_the_operator_allows_networks_names_or_everything(make_tenant: Any, settings: Any) -> None:
    settings.LLM_ALLOWED_PRIVATE_HOSTS = ["10.0.0.0/8", "localhost"]
    tenant_with(make_tenant, "http://10.1.2.3/v1").full_clean()
    tenant_with(make_tenant, "http://localhost:11434/v1").full_clean()
    with pytest.raises(ValidationError):
        tenant_with(make_tenant, "http://192.168.1.10/v1").full_clean()
    with pytest.raises(ValidationError):
        tenant_with(make_tenant, "http://169.254.169.254/").full_clean()
    settings.LLM_ALLOW_PRIVATE_BASE_URLS = True
    tenant_with(make_tenant, "http://169.254.169.254/").full_clean()


def test_the_admin_form_refuses_the_metadata_address(make_tenant: Any, admin_client: Any) -> None:
    tenant, _ = make_tenant()
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    form = admin_client.get(url).context["adminform"].form
    data = tenant_change_data(form)
    data.update(
        {
            "llm_provider": "openai",
            "llm_base_url": "http://169.254.169.254/latest/meta-data/",
            "allowed_origins": '["https://shop.example.com"]',
        }
    )
    response = admin_client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["llm_base_url"]
    assert "link-local (cloud metadata)" in errors[0]
    tenant.refresh_from_db()
    assert tenant.llm_base_url == ""


def test_the_server_base_url_is_the_operators_and_not_checked(llm: Any, make_tenant: Any) -> None:
    """The `llm` fixture's server is on loopback and is the server's own LLM_BASE_URL."""
    own_provider, _ = make_tenant(llm_provider="openai")  # a provider of its own, no URL
    assert tenant_provider_config(own_provider).address_guard is None
    tenant, _ = make_tenant()
    assert tenant_provider_config(tenant).address_guard is None
    llm.enqueue(Reply(text="From the server's provider."))
    done = complete_chat(tenant_provider_config(tenant), MESSAGES, ChatParams())
    assert done.text == "From the server's provider."


def test_every_connection_is_checked_again(llm: Any, make_tenant: Any, settings: Any) -> None:
    """Allowed when saved, refused once the operator withdraws it: nothing reaches the host."""
    settings.LLM_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1/32"]
    tenant = tenant_with(make_tenant, llm.base_url)
    tenant.full_clean()
    tenant.save()
    tenant_set_llm_api_key(tenant=tenant, api_key="sk-tenant-key")
    llm.enqueue(Reply(text="Allowed."))
    assert complete_chat(tenant_provider_config(tenant), MESSAGES, ChatParams()).text == "Allowed."

    settings.LLM_ALLOWED_PRIVATE_HOSTS = []
    llm.reset()
    with pytest.raises(PermanentLLMError) as caught:
        complete_chat(tenant_provider_config(tenant), MESSAGES, ChatParams())
    assert caught.value.code == "config"
    assert "127.0.0.1 is a loopback address" in str(caught.value)
    assert llm.requests == []


def test_a_name_that_resolves_elsewhere_later_is_refused_at_call_time(
    llm: Any, make_tenant: Any, monkeypatch: Any
) -> None:
    """DNS rebinding: public when the tenant is saved, loopback when the worker connects."""
    real = socket.getaddrinfo
    answer = {"address": "8.8.8.8"}

    def resolve(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "rebind.test":
            return real(answer["address"], port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    port = llm.base_url.split(":")[2].split("/")[0]
    tenant = tenant_with(make_tenant, f"http://rebind.test:{port}/v1")
    tenant.full_clean()  # 8.8.8.8: accepted
    tenant.save()
    tenant_set_llm_api_key(tenant=tenant, api_key="sk-tenant-key")

    answer["address"] = "127.0.0.1"
    with pytest.raises(PermanentLLMError) as caught:
        complete_chat(tenant_provider_config(tenant), MESSAGES, ChatParams())
    assert "rebind.test (127.0.0.1) is a loopback address" in str(caught.value)
    assert llm.requests == []
