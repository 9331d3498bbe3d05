"""Remove a staff user's two-factor devices (a lost or replaced phone)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from supportbot.admin_security.otp import devices_reset


class Command(BaseCommand):
    help = (
        "Remove every two-factor (TOTP) device of a user; their next admin login enrols a new "
        "one. Check who is asking before you run it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        try:
            removed = devices_reset(username=username)
        except LookupError as exc:
            raise CommandError(f"No user named {username!r}.") from exc
        self.stdout.write(f"Removed {removed} device(s) of {username}; the next login enrols anew.")
