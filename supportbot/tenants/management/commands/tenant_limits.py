"""`manage.py tenant_limits SLUG [--requests-per-minute N] [--tokens-per-day N]
[--tokens-per-month N] [--spend-per-month AMOUNT] [--max-concurrent-replies N] [--json]`."""

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from supportbot.tenants.limits import tenant_limits_set
from supportbot.tenants.models import Tenant
from supportbot.tenants.usage import UsageNow, usage_now

_INTEGER_LIMITS = (
    "requests_per_minute",
    "tokens_per_day",
    "tokens_per_month",
    "max_concurrent_replies",
)


def _integer(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise CommandError(
            f"--{name.replace('_', '-')} must be a whole number, not {raw!r}"
        ) from None
    if value < 0:
        raise CommandError(f"--{name.replace('_', '-')} must be 0 (no limit) or more")
    return value


def _amount(raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise CommandError(
            f"--spend-per-month must be an amount such as 250.00, not {raw!r}"
        ) from None
    if not value.is_finite() or value < 0:
        raise CommandError("--spend-per-month must be 0 (no limit) or more")
    if value != value.quantize(Decimal("0.01")) or value >= Decimal("1e10"):
        raise CommandError("--spend-per-month takes at most 2 decimals and 10 digits")
    return value


def _text(slug: str, now: UsageNow) -> str:
    data = now.as_dict()
    limits, usage = data["limits"], data["usage"]
    percents = now.percentages()

    def shown(value: Any) -> str:
        return "no limit" if str(value) in ("0", "0.00") else str(value)

    def share(name: str) -> str:
        return f" ({percents[name]:.1f}%)" if name in percents else ""

    rows = [
        ("requests per minute", limits["requests_per_minute"], usage["requests_this_minute"], ""),
        ("tokens per day", limits["tokens_per_day"], usage["tokens_today"], "tokens_per_day"),
        (
            "tokens per month",
            limits["tokens_per_month"],
            usage["tokens_this_month"],
            "tokens_per_month",
        ),
        (
            "spend per month",
            limits["spend_per_month"],
            usage["spend_this_month"],
            "spend_per_month",
        ),
        (
            "concurrent replies",
            limits["max_concurrent_replies"],
            usage["replies_in_flight"],
            "",
        ),
    ]
    lines = [f"Limits and usage of tenant {slug} (UTC days and months):"]
    lines += [
        f"  {label:<20} limit {shown(limit):<14} used {used}{share(key) if key else ''}"
        for label, limit, used, key in rows
    ]
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Set a tenant's usage limits (0: no limit) and print all its limits and current usage."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The tenant's slug.")
        for name in _INTEGER_LIMITS:
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar="N")
        parser.add_argument(
            "--spend-per-month", dest="spend_per_month", metavar="AMOUNT", help="In USD."
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["slug"]).first()
        if tenant is None:
            raise CommandError(f"No tenant with the slug {options['slug']!r}.")
        values: dict[str, int | Decimal] = {
            name: _integer(name, options[name])
            for name in _INTEGER_LIMITS
            if options[name] is not None
        }
        if options["spend_per_month"] is not None:
            values["spend_per_month"] = _amount(options["spend_per_month"])
        if values:
            try:
                tenant_limits_set(tenant=tenant, actor="command:tenant_limits", **values)
            except (ValidationError, ValueError) as exc:
                raise CommandError(str(exc)) from exc
        now = usage_now(tenant)
        if options["json"]:
            self.stdout.write(json.dumps({"tenant": tenant.slug, **now.as_dict()}))
        else:
            self.stdout.write(_text(tenant.slug, now))
