"""`manage.py retention_run [--tenant SLUG] [--dry-run]`: remove (or, dry, count) the rows past
each tenant's retention periods, and print per tenant and data class what went."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.retention import RetentionResult, retention_run_all
from supportbot.tenants.models import Tenant


def _lines(result: RetentionResult) -> list[str]:
    verb = "would go" if result.dry_run else "removed"
    header = f"{result.tenant_slug}" + (" (dry run: nothing removed)" if result.dry_run else "")
    rows = [header]
    for name, count in result.counts.items():
        shown = "kept (no retention period)" if count is None else f"{count} {verb}"
        rows.append(f"  {name:<17} {shown}")
    return rows


class Command(BaseCommand):
    help = "Remove the rows past each tenant's retention periods (--dry-run: only count them)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="Only this tenant (default: all).")
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would go; delete nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenants = None
        if options["tenant"] is not None:
            tenants = list(Tenant.objects.filter(slug=options["tenant"]))
            if not tenants:
                raise CommandError(f"No tenant with the slug {options['tenant']!r}.")
        for result in retention_run_all(tenants=tenants, dry_run=options["dry_run"]):
            self.stdout.write("\n".join(_lines(result)))
