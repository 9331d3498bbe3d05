"""`manage.py reencrypt [--dry-run] [--batch-size N]`: move every encrypted value to its
tenant's newest data key. Resumable: values already there are skipped, and each batch is
committed on its own."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from supportbot.compliance.rotation import ColumnProgress, encrypted_columns, reencrypt_column


class Command(BaseCommand):
    help = "Re-encrypt stored values under each tenant's newest data key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count, change nothing.")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument(
            "--max-batches",
            type=int,
            default=None,
            help="Stop after this many batches per column (run again to go on).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verb = "would move" if options["dry_run"] else "moved"

        def report(progress: ColumnProgress) -> None:
            self.stdout.write(
                f"  {progress.column}: {progress.scanned} rows scanned, {progress.moved} {verb}"
            )

        total = 0
        for column in encrypted_columns():
            self.stdout.write(f"{column.name}")
            progress = reencrypt_column(
                column,
                batch_size=max(1, options["batch_size"]),
                dry_run=options["dry_run"],
                max_batches=options["max_batches"],
                on_batch=report,
            )
            total += progress.moved
        self.stdout.write(f"done: {total} values {verb}")
