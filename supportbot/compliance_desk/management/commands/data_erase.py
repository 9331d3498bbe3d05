"""`manage.py data_erase --tenant SLUG (--contact ID | --email E | --identity SUB |
--conversation ID) --yes [--json]`: erase a person's data and print the certificate."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from supportbot.compliance.models import DataRequest
from supportbot.compliance_desk.data_request_cli import add_subject_arguments, run_request


class Command(BaseCommand):
    help = "Erase everything held about one person of a tenant; prints the certificate."

    def add_arguments(self, parser: CommandParser) -> None:
        add_subject_arguments(parser)
        parser.add_argument("--yes", action="store_true", help="confirm: erasure is final")
        parser.add_argument("--json", action="store_true", help="print the certificate as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["yes"]:
            raise CommandError("erasure cannot be undone: add --yes to confirm")
        request = run_request(options, kind=DataRequest.Kind.ERASE)
        certificate = request.certificate
        if options["json"]:
            self.stdout.write(json.dumps(certificate, indent=2, sort_keys=True))
            return
        self.stdout.write(f"{request.reference}: erased at {certificate['erased_at']}")
        for name, count in sorted(certificate["counts"].items()):
            self.stdout.write(f"  {name}: {count}")
