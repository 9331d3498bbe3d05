"""The tenant's limits themselves: the reservation script, expiry of a crashed worker's
reservation, prices, alerts, the `tenant_limits` command, the usage page and the banner."""

import json
import logging
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.urls import reverse

from supportbot.llm import CallRecord, ProviderConfig
from supportbot.redis_store import get_redis
from supportbot.tenants import limits
from supportbot.tenants.limits import (
    CallBudget,
    Limits,
    UsageLimitReached,
    tenant_limits_by_id,
    tenant_limits_set,
)
from supportbot.tenants.models import ModelPrice, Tenant, TenantMembership, TenantUsageDay
from supportbot.tenants.prices import model_price, prices_reload
from supportbot.tenants.usage import today
from tests.support.stack import wait_until

pytestmark = pytest.mark.django_db

CONFIG = ProviderConfig(provider="openai", model="gpt-4o-mini", deadline=0.3)
MESSAGES = [{"role": "user", "content": "Where is my parcel?"}]


def _record(prompt: int, completion: int, model: str = "gpt-4o-mini") -> CallRecord:
    return CallRecord("openai", model, "ok", None, prompt, completion, 10, 5, 1, "stop")


@pytest.fixture
def tenant(make_tenant: Any) -> Tenant:
    tenant, _ = make_tenant()
    return tenant


def test_a_crashed_workers_reservation_expires(tenant: Tenant, monkeypatch: Any) -> None:
    monkeypatch.setattr(limits, "RESERVATION_MARGIN_SECONDS", 0.0)
    budget = CallBudget(tenant.pk, Limits(max_concurrent_replies=1, tokens_per_day=10_000))
    budget.reserve_chat(CONFIG, MESSAGES, None, reply=True)  # never settled: the worker died
    with pytest.raises(UsageLimitReached) as refused:
        budget.reserve_chat(CONFIG, MESSAGES, None, reply=True)
    assert refused.value.code == "limit_concurrency"

    def reserved_again() -> bool:
        try:
            budget.reserve_chat(CONFIG, MESSAGES, None, reply=True)
        except UsageLimitReached:
            return False
        return True

    wait_until(reserved_again, timeout=5, message="the dead reservation to expire")
    # The dead reservation's tokens were given back too: only the live one is counted.
    day = get_redis().hgetall(limits.day_key(tenant.pk, limits.Periods.now().day))
    assert 0 < int(day["reserved"]) < 2 * 2048


def test_settling_replaces_the_reservation_with_the_real_usage(tenant: Tenant) -> None:
    budget = CallBudget(tenant.pk, Limits(tokens_per_month=5000))
    reservation = budget.reserve_chat(CONFIG, MESSAGES, None, reply=False)
    month = limits.month_key(tenant.pk, limits.Periods.now().month)
    assert int(get_redis().hget(month, "reserved")) > 2048  # prompt estimate + 2048 max tokens
    cost = reservation.settle(_record(100, 50))
    assert cost == Decimal("0.000045")  # gpt-4o-mini: 100 x 0.15 + 50 x 0.60, per million
    state = get_redis().hgetall(month)
    assert (state["reserved"], state["used"], state["rspent"]) == ("0", "150", "0")
    reservation.settle(_record(100, 50))  # settled once only
    assert get_redis().hget(month, "used") == "150"


def test_a_budget_crossing_is_logged_once(tenant: Tenant, caplog: Any) -> None:
    budget = CallBudget(tenant.pk, Limits(tokens_per_day=1000))
    with caplog.at_level(logging.WARNING, logger="supportbot.tenants.limits"):
        for tokens in (850, 50, 50, 49, 1):  # 85%, 90%, 95%, 99.9%, 100%
            budget.reserve_embedding(CONFIG, ["x"], model="gpt-4o-mini").settle(_record(tokens, 0))
    crossings = [r.getMessage() for r in caplog.records if "has used" in r.getMessage()]
    assert len(crossings) == 2
    assert "has used 85% of its tokens per day" in crossings[0]
    assert "has used 100% of its tokens per day" in crossings[1]


def test_prices_match_dated_versions_and_the_local_model_is_free(db: None) -> None:
    prices_reload()
    assert model_price("openai", "gpt-4o-mini-2024-07-18").prompt == Decimal("0.15")
    assert model_price("openai", "gpt-4o-2024-08-06").completion == Decimal("10.00")
    assert model_price("local", "gpt-4o").prompt == 0
    assert model_price("openai", "my-own-model").prompt == 0
    assert ModelPrice.objects.get(model="text-embedding-3-small").prices_as_of.year == 2025


# -- the command ------------------------------------------------------------------------------


def _command(*args: str) -> str:
    out = StringIO()
    call_command("tenant_limits", *args, stdout=out)
    return out.getvalue()


def test_tenant_limits_sets_and_prints(tenant: Tenant) -> None:
    TenantUsageDay.objects.create(
        tenant=tenant, day=today(), model="gpt-4o", prompt_tokens=700, cost=Decimal("1.25")
    )
    text = _command(tenant.slug, "--tokens-per-day", "1000", "--spend-per-month", "10.50")
    assert "tokens per day" in text
    assert "limit 1000" in text
    assert "used 700 (70.0%)" in text
    assert "spend per month" in text
    assert "limit 10.50" in text
    assert "requests per minute  limit no limit" in text
    data = json.loads(_command(tenant.slug, "--max-concurrent-replies", "4", "--json"))
    assert data["tenant"] == tenant.slug
    assert data["limits"] == {
        "requests_per_minute": 0,
        "tokens_per_day": 1000,
        "tokens_per_month": 0,
        "spend_per_month": "10.50",
        "max_concurrent_replies": 4,
    }
    assert data["usage"]["tokens_today"] == 700
    assert data["usage"]["spend_this_month"] == "1.250000"
    assert tenant_limits_by_id(tenant.pk).max_concurrent_replies == 4
    _command(tenant.slug, "--tokens-per-day", "0")  # 0: no limit
    assert tenant_limits_by_id(tenant.pk).tokens_per_day == 0


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["no-such-tenant"], "No tenant with the slug 'no-such-tenant'"),
        (["{slug}", "--tokens-per-day", "-5"], "--tokens-per-day must be 0 (no limit) or more"),
        (["{slug}", "--spend-per-month", "-1"], "--spend-per-month must be 0 (no limit) or more"),
        (["{slug}", "--spend-per-month", "ten"], "an amount such as 250.00"),
        (["{slug}", "--requests-per-minute", "1.5"], "must be a whole number"),
    ],
)
def test_tenant_limits_refuses_bad_input(tenant: Tenant, args: list[str], error: str) -> None:
    with pytest.raises(CommandError, match=error.replace("(", r"\(").replace(")", r"\)")):
        _command(*[a.format(slug=tenant.slug) for a in args])
    assert tenant_limits_by_id(tenant.pk) == Limits()


# -- the usage page and the banner ---------------------------------------------------------------


@pytest.fixture
def shops(make_tenant: Any) -> tuple[Tenant, Tenant]:
    alpha, _ = make_tenant("Alpha Shop")
    beta, _ = make_tenant("Beta Shop")
    for shop, tokens in ((alpha, 850), (beta, 1000)):
        TenantUsageDay.objects.create(
            tenant=shop, day=today(), model="gpt-4o-mini", prompt_tokens=tokens, replies=3
        )
        tenant_limits_set(tenant=shop, tokens_per_day=1000)
    return alpha, beta


def _staff(name: str, tenant: Tenant, role: str) -> User:
    user = User.objects.create_user(name, f"{name}@example.com", "pw", is_staff=True)
    TenantMembership.objects.create(tenant=tenant, user=user, role=role)
    return user


def test_the_usage_page_is_for_superusers_and_the_tenants_own_admins(
    client: Any, shops: tuple[Tenant, Tenant]
) -> None:
    alpha, beta = shops
    url = reverse("admin:tenants_tenant_usage", args=[alpha.pk])
    assert client.get(url).status_code == 302  # to the login page

    client.force_login(_staff("alpha-admin", alpha, TenantMembership.Role.ADMIN))
    page = client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "<svg" in text
    assert "850" in text
    assert "gpt-4o-mini" in text
    assert "<script" not in text.split('id="content-main"')[1]
    other = client.get(reverse("admin:tenants_tenant_usage", args=[beta.pk]))
    assert other.status_code == 404  # tenant A's admin never sees tenant B's usage

    client.force_login(_staff("alpha-agent", alpha, TenantMembership.Role.AGENT))
    assert client.get(url).status_code == 404  # an agent is not an admin

    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    assert client.get(reverse("admin:tenants_tenant_usage", args=[beta.pk])).status_code == 200
    assert client.get(reverse("admin:tenants_tenant_usage", args=[99999])).status_code == 404


def test_a_model_name_is_escaped_in_the_chart(client: Any, tenant: Tenant) -> None:
    TenantUsageDay.objects.create(
        tenant=tenant, day=today(), model="<img src=x onerror=alert(1)>", prompt_tokens=5
    )
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    text = client.get(reverse("admin:tenants_tenant_usage", args=[tenant.pk])).content.decode()
    assert "<img src=x" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_the_banner_shows_80_and_100_percent_to_that_tenants_admins(
    client: Any, shops: tuple[Tenant, Tenant]
) -> None:
    alpha, beta = shops
    client.force_login(_staff("alpha-admin", alpha, TenantMembership.Role.ADMIN))
    text = client.get(reverse("admin:index")).content.decode()
    assert "Alpha Shop has used 85% of its tokens for today" in text
    assert "Beta Shop" not in text

    client.force_login(_staff("beta-admin", beta, TenantMembership.Role.ADMIN))
    text = client.get(reverse("admin:index")).content.decode()
    assert "Beta Shop has used 100% of its tokens for today: replies now degrade" in text
    assert "Alpha Shop" not in text

    client.force_login(_staff("beta-agent", beta, TenantMembership.Role.AGENT))
    assert "has used" not in client.get(reverse("admin:index")).content.decode()

    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    text = client.get(reverse("admin:index")).content.decode()
    assert "Alpha Shop has used 85%" in text
    assert "Beta Shop has used 100%" in text


def test_below_80_percent_there_is_no_banner(client: Any, tenant: Tenant) -> None:
    TenantUsageDay.objects.create(tenant=tenant, day=today(), model="m", prompt_tokens=790)
    tenant_limits_set(tenant=tenant, tokens_per_day=1000)
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    assert "has used" not in client.get(reverse("admin:index")).content.decode()


def test_only_superusers_edit_prices_and_limits(client: Any, shops: tuple[Tenant, Tenant]) -> None:
    alpha, _ = shops
    client.force_login(_staff("alpha-admin", alpha, TenantMembership.Role.ADMIN))
    assert client.get(reverse("admin:tenants_modelprice_changelist")).status_code == 403
    assert client.get(reverse("admin:tenants_tenantlimits_changelist")).status_code == 403
    limits_row = alpha.limits
    response = client.post(
        reverse("admin:tenants_tenantlimits_change", args=[limits_row.pk]),
        {"tenant": alpha.pk, "tokens_per_day": "0"},
    )
    assert response.status_code == 403
    assert tenant_limits_by_id(alpha.pk).tokens_per_day == 1000
    price = ModelPrice.objects.get(model="gpt-4o")
    response = client.post(
        reverse("admin:tenants_modelprice_change", args=[price.pk]),
        {"model": "gpt-4o", "prompt_per_million": "0", "completion_per_million": "0"},
    )
    assert response.status_code == 403
    price.refresh_from_db()
    assert price.prompt_per_million == Decimal("2.50")

    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    response = client.post(
        reverse("admin:tenants_modelprice_change", args=[price.pk]),
        {
            "model": "gpt-4o",
            "prompt_per_million": "3.00",
            "completion_per_million": "12.00",
            "prices_as_of": "2026-01-01",
            "note": "",
        },
    )
    assert response.status_code == 302
    assert model_price("openai", "gpt-4o").prompt == Decimal("3.00")  # the cache was reloaded
