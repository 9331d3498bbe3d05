"""`manage.py data_export --tenant SLUG (--contact ID | --email E | --identity SUB |
--conversation ID) --out PATH`: write a person's data (a zip: data.json, transcript.html)."""

import shutil
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from supportbot.compliance.data_requests import export_file_path
from supportbot.compliance.models import DataRequest
from supportbot.compliance_desk.data_request_cli import add_subject_arguments, run_request


class Command(BaseCommand):
    help = "Export everything held about one person of a tenant to a zip file."

    def add_arguments(self, parser: CommandParser) -> None:
        add_subject_arguments(parser)
        parser.add_argument("--out", required=True, metavar="PATH", help="the zip to write")

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"])
        if not out.parent.is_dir():
            raise CommandError(f"--out: no such directory {str(out.parent)!r}")
        request = run_request(options, kind=DataRequest.Kind.EXPORT)
        path = export_file_path(request)
        if path is None:
            raise CommandError(f"{request.reference}: the export file is missing")
        shutil.copyfile(path, out)
        out.chmod(0o600)
        self.stdout.write(f"{request.reference}: export written to {out}")
