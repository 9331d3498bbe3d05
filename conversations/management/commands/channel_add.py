"""`manage.py channel_add --tenant SLUG --kind KIND [--set KEY=VALUE ...] [--name NAME] [--json]`:
set up one of a tenant's channels (email, Telegram, WhatsApp, Slack, SMS, REST API) and print
its id, its webhook URL and the secrets made for it (the only time they are shown)."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.channels.setup import ChannelSetup, ChannelSetupError, channel_setup
from conversations.channels.specs import SPECS
from supportbot.tenants.models import Tenant


def _settings(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs as a dict (a value may itself hold `=`)."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--set takes KEY=VALUE; got {key.strip() or pair[:20]!r}.")
        values[key.strip()] = value
    return values


def _output(setup: ChannelSetup) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": str(setup.account.pk),
        "tenant": setup.account.tenant.slug,
        "kind": setup.account.kind,
        "name": setup.account.name,
        "webhook_url": setup.webhook_url,
        "generated": setup.generated,
    }
    if setup.api_key:
        shown["api_key"] = setup.api_key
    return shown


class Command(BaseCommand):
    help = "Set up a tenant's channel and print its id, webhook URL and generated secrets."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", required=True, help="The tenant's slug.")
        parser.add_argument("--kind", required=True, help=f"One of: {', '.join(SPECS)}.")
        parser.add_argument(
            "--set",
            metavar="KEY=VALUE",
            action="append",
            default=[],
            dest="setting_pairs",
            help="A setting or secret of the channel (repeatable).",
        )
        parser.add_argument("--name", default="", help="A name shown in the admin.")
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant with the slug {options['tenant']!r}.")
        try:
            setup = channel_setup(
                tenant=tenant,
                kind=options["kind"],
                settings=_settings(options["setting_pairs"]),
                name=options["name"],
                actor="system",
            )
        except ChannelSetupError as error:
            raise CommandError(str(error)) from error
        shown = _output(setup)
        if options["json"]:
            self.stdout.write(json.dumps(shown, indent=2))
            return
        self.stdout.write(f"Channel {shown['id']} ({shown['kind']}) of {shown['tenant']}")
        self.stdout.write(f"  webhook URL: {shown['webhook_url']}")
        for name, value in setup.generated.items():
            self.stdout.write(f"  {name}: {value}")
        if setup.api_key:
            self.stdout.write(f"  API key: {setup.api_key}")
        if setup.generated or setup.api_key:
            self.stdout.write("Copy the secrets now: they are not shown again.")
