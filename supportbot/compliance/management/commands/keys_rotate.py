"""`manage.py keys_rotate [--new-data-keys]`: re-wrap every data key under the newest master key
(the first of FIELD_ENCRYPTION_KEYS); with --new-data-keys, also give every tenant a fresh data
key (then run `reencrypt` to move the stored values to it)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from supportbot.compliance.encryption import create_data_keys, key_ring, rewrap_data_keys


class Command(BaseCommand):
    help = "Re-wrap the tenants' data keys under the newest master key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--new-data-keys",
            action="store_true",
            help="Also create a fresh data key per tenant (new values are encrypted with it).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        newest = key_ring()[0]
        rewrapped, current = rewrap_data_keys()
        self.stdout.write(
            f"master key {newest.id}: {rewrapped} data keys re-wrapped, {current} already current"
        )
        if options["new_data_keys"]:
            created = create_data_keys()
            self.stdout.write(
                f"{created} new data keys; run `manage.py reencrypt` to move the stored values"
            )
