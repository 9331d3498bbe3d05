"""`manage.py audit_verify [--tenant SLUG]`: verify the audit chains; non-zero when broken."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from supportbot.compliance.audit_chain import ChainReport, chain_tenant_ids, verify_chain
from supportbot.tenants.models import Tenant


def _chain_name(tenant_id: int | None) -> str:
    return "platform" if tenant_id is None else f"tenant {tenant_id}"


class Command(BaseCommand):
    help = "Verify every audit chain (or one tenant's); exit 1 naming the first broken event."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="only this tenant's chain")

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["tenant"]
        if slug:
            tenant = Tenant.objects.filter(slug=slug).first()
            if tenant is None:
                raise CommandError(f"no tenant with slug {slug!r}")
            chains: list[int | None] = [tenant.pk]
        else:
            chains = chain_tenant_ids()
        broken = [report for report in map(self._verify, chains) if not report.intact]
        if broken:
            first = broken[0]
            raise CommandError(
                f"audit chain broken: event id={first.broken_event_id} seq={first.broken_seq} "
                f"{_chain_name(first.tenant_id)}: {first.problem}",
                returncode=1,
            )

    def _verify(self, tenant_id: int | None) -> ChainReport:
        name = _chain_name(tenant_id)

        def progress(count: int) -> None:
            self.stderr.write(f"{name}: {count} events verified…")

        report = verify_chain(tenant_id, progress=progress)
        if report.intact:
            self.stdout.write(
                f"{name}: intact, {report.events} events, head seq {report.head_seq} "
                f"hash {report.head_hash or '-'}"
            )
        else:
            self.stdout.write(
                f"{name}: BROKEN at event id={report.broken_event_id} seq={report.broken_seq} "
                f"({report.problem}); {report.events} events verified before it"
            )
        return report
