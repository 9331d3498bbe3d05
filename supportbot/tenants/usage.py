"""A tenant's usage in Postgres: per day and model (`TenantUsageDay`), written when calls settle
and replies finish; read by the usage page, the admin's budget banner and `tenant_limits`.

The rows are aggregates: no conversation, message or person is named in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.models import Sum

from supportbot.tenants.limits import (
    Limits,
    budget_percentages,
    crossed_threshold,
    tenant_limits_by_id,
    usage_live,
)
from supportbot.tenants.models import Tenant, TenantLimits, TenantUsageDay
from supportbot.tenants.roles import Capability, tenant_ids_for_user

_UPSERT = f"""
INSERT INTO {TenantUsageDay._meta.db_table}
    (tenant_id, day, model, requests, prompt_tokens, completion_tokens, cost, replies,
     degraded_replies)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (tenant_id, day, model) DO UPDATE SET
    requests = {TenantUsageDay._meta.db_table}.requests + EXCLUDED.requests,
    prompt_tokens = {TenantUsageDay._meta.db_table}.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = {TenantUsageDay._meta.db_table}.completion_tokens
        + EXCLUDED.completion_tokens,
    cost = {TenantUsageDay._meta.db_table}.cost + EXCLUDED.cost,
    replies = {TenantUsageDay._meta.db_table}.replies + EXCLUDED.replies,
    degraded_replies = {TenantUsageDay._meta.db_table}.degraded_replies
        + EXCLUDED.degraded_replies
"""  # noqa: S608 (only the model's own table name is formatted in)


def today() -> date:
    return datetime.now(UTC).date()


def usage_day_add(
    *,
    tenant_id: int,
    model: str,
    requests: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost: Decimal = Decimal(0),
    replies: int = 0,
    degraded_replies: int = 0,
    day: date | None = None,
) -> None:
    """Add to the tenant's row of `day` (default today, UTC) and `model`: one statement, safe
    under concurrency (an upsert that adds)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _UPSERT,
            [
                tenant_id,
                day or today(),
                model[:200],
                requests,
                prompt_tokens,
                completion_tokens,
                cost,
                replies,
                degraded_replies,
            ],
        )


@dataclass(frozen=True)
class UsageNow:
    """A tenant's limits and where it stands against them."""

    limits: Limits
    tokens_today: int
    tokens_this_month: int
    spend_this_month: Decimal
    requests_this_minute: int
    replies_in_flight: int

    def percentages(self) -> dict[str, float]:
        return budget_percentages(
            self.limits,
            day_tokens=self.tokens_today,
            month_tokens=self.tokens_this_month,
            month_spend=self.spend_this_month,
        )

    def as_dict(self) -> dict[str, Any]:
        limits = self.limits
        return {
            "limits": {
                "requests_per_minute": limits.requests_per_minute,
                "tokens_per_day": limits.tokens_per_day,
                "tokens_per_month": limits.tokens_per_month,
                "spend_per_month": str(limits.spend_per_month),
                "max_concurrent_replies": limits.max_concurrent_replies,
            },
            "usage": {
                "requests_this_minute": self.requests_this_minute,
                "replies_in_flight": self.replies_in_flight,
                "tokens_today": self.tokens_today,
                "tokens_this_month": self.tokens_this_month,
                "spend_this_month": str(self.spend_this_month.quantize(Decimal("0.000001"))),
            },
        }


def usage_now(tenant: Tenant) -> UsageNow:
    day = today()
    rows = TenantUsageDay.objects.filter(tenant=tenant, day__gte=day.replace(day=1), day__lte=day)
    month = rows.aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"), cost=Sum("cost"))
    on_day = rows.filter(day=day).aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
    live = usage_live(tenant.pk)
    return UsageNow(
        limits=tenant_limits_by_id(tenant.pk),
        tokens_today=(on_day["p"] or 0) + (on_day["c"] or 0),
        tokens_this_month=(month["p"] or 0) + (month["c"] or 0),
        spend_this_month=month["cost"] or Decimal(0),
        requests_this_minute=live["requests_this_minute"],
        replies_in_flight=live["replies_in_flight"],
    )


@dataclass(frozen=True)
class BudgetBanner:
    tenant_id: int
    tenant_name: str
    budget: str  # "tokens_per_day" | "tokens_per_month" | "spend_per_month"
    percent: float
    threshold: int  # 80 or 100

    @property
    def label(self) -> str:
        return {
            "tokens_per_day": "tokens for today",
            "tokens_per_month": "tokens for this month",
            "spend_per_month": "spend for this month",
        }[self.budget]


def usage_banners(user: AbstractBaseUser | AnonymousUser) -> list[BudgetBanner]:
    """The budgets at 80% or more of the tenants `user` administers (two queries)."""
    allowed = tenant_ids_for_user(user, Capability.USAGE)
    if allowed is not None and not allowed:
        return []
    limits = TenantLimits.objects.select_related("tenant").exclude(
        tokens_per_day=0, tokens_per_month=0, spend_per_month=0
    )
    if allowed is not None:
        limits = limits.filter(tenant_id__in=allowed)
    rows = {row.tenant_id: row for row in limits}
    if not rows:
        return []
    day = today()
    used = _sums_by_tenant(list(rows), day.replace(day=1), day)
    banners = []
    for tenant_id, row in sorted(rows.items(), key=lambda item: item[1].tenant.name):
        month_tokens, month_cost, day_tokens = used.get(tenant_id, (0, Decimal(0), 0))
        percents = budget_percentages(
            Limits.from_row(row),
            day_tokens=day_tokens,
            month_tokens=month_tokens,
            month_spend=month_cost,
        )
        for budget, percent in percents.items():
            threshold = crossed_threshold(percent)
            if threshold is not None:
                banners.append(BudgetBanner(tenant_id, row.tenant.name, budget, percent, threshold))
    return banners


def _sums_by_tenant(
    tenant_ids: list[int], first: date, day: date
) -> dict[int, tuple[int, Decimal, int]]:
    """tenant id -> (tokens this month, cost this month, tokens on `day`)."""
    found: dict[int, tuple[int, Decimal, int]] = {}
    month = (
        TenantUsageDay.objects.filter(tenant_id__in=tenant_ids, day__gte=first, day__lte=day)
        .values("tenant_id")
        .annotate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"), cost=Sum("cost"))
    )
    on_day = {
        tenant_id: (p or 0) + (c or 0)
        for tenant_id, p, c in TenantUsageDay.objects.filter(tenant_id__in=tenant_ids, day=day)
        .values("tenant_id")
        .annotate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"))
        .values_list("tenant_id", "p", "c")
    }
    for row in month:
        tenant_id = row["tenant_id"]
        found[tenant_id] = (
            (row["p"] or 0) + (row["c"] or 0),
            row["cost"] or Decimal(0),
            on_day.get(tenant_id, 0),
        )
    return found


@dataclass(frozen=True)
class UsageDayRow:
    day: date
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    replies: int
    degraded_replies: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def usage_days(tenant_id: int, *, days: int = 30) -> list[UsageDayRow]:
    """The tenant's rows of the last `days` days (today included), newest first, by model."""
    first = today() - timedelta(days=days - 1)
    rows = TenantUsageDay.objects.filter(tenant_id=tenant_id, day__gte=first).order_by(
        "-day", "model"
    )
    return [
        UsageDayRow(
            day=row.day,
            model=row.model,
            requests=row.requests,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            cost=row.cost,
            replies=row.replies,
            degraded_replies=row.degraded_replies,
        )
        for row in rows
    ]
