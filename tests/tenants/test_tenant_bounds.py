"""A tenant's numbers have upper bounds: full_clean and the admin form refuse values above them
(and accept the bound itself)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from supportbot.tenants import models as tenant_models
from tests.support.admin_forms import tenant_change_data

pytestmark = pytest.mark.django_db

BOUNDS = [
    ("message_max_chars", tenant_models.MAX_MESSAGE_CHARS),
    ("history_token_budget", tenant_models.MAX_HISTORY_TOKEN_BUDGET),
    ("knowledge_passages", tenant_models.MAX_KNOWLEDGE_PASSAGES),
    ("handoff_after_failures", tenant_models.MAX_HANDOFF_AFTER_FAILURES),
    ("max_tokens", tenant_models.MAX_REPLY_TOKENS),
    ("seed", tenant_models.MAX_SEED),
]


@pytest.mark.parametrize(("field", "bound"), BOUNDS)
def test_full_clean_refuses_a_number_above_its_bound(
    make_tenant: Any, field: str, bound: int
) -> None:
    tenant, _ = make_tenant()
    setattr(tenant, field, bound)
    tenant.full_clean()
    setattr(tenant, field, bound + 1)
    with pytest.raises(ValidationError) as caught:
        tenant.full_clean()
    assert set(caught.value.message_dict) == {field}
    assert f"less than or equal to {bound}" in caught.value.message_dict[field][0]


@pytest.mark.parametrize("field", ["message_max_chars", "history_token_budget", "max_tokens"])
def test_zero_is_refused_where_it_would_break_replies(make_tenant: Any, field: str) -> None:
    tenant, _ = make_tenant()
    setattr(tenant, field, 0)
    with pytest.raises(ValidationError) as caught:
        tenant.full_clean()
    assert set(caught.value.message_dict) == {field}


def test_persona_and_stop_sequences_are_bounded(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    tenant.persona = "x" * (tenant_models.MAX_PERSONA_CHARS + 1)
    with pytest.raises(ValidationError) as caught:
        tenant.full_clean()
    assert set(caught.value.message_dict) == {"persona"}
    tenant.persona = "You help."
    tenant.stop = ["END", "y" * (tenant_models.MAX_STOP_CHARS + 1)]
    with pytest.raises(ValidationError) as caught:
        tenant.full_clean()
    assert set(caught.value.message_dict) == {"stop"}
    tenant.stop = ["END", "y" * tenant_models.MAX_STOP_CHARS]
    tenant.full_clean()


def _admin_data(form: Any) -> dict[str, Any]:
    data = tenant_change_data(form)
    data.update(
        {
            "allowed_origins": '["https://shop.example.com"]',
        }
    )
    return data


@pytest.mark.parametrize(("field", "bound"), BOUNDS)
def test_the_admin_form_refuses_a_number_above_its_bound(
    make_tenant: Any, admin_client: Any, field: str, bound: int
) -> None:
    tenant, _ = make_tenant()
    url = reverse("admin:tenants_tenant_change", args=[tenant.pk])
    data = _admin_data(admin_client.get(url).context["adminform"].form)
    before = getattr(tenant, field)
    response = admin_client.post(url, {**data, field: str(bound + 1)})
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert getattr(tenant, field) == before
    response = admin_client.post(url, {**data, field: str(bound)})
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert getattr(tenant, field) == bound
