"""`manage.py tenant_create --name NAME --allowed-origin URL [...] [--json]`."""

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from supportbot.tenants.models import Tenant
from supportbot.tenants.selectors import tenant_identity_secret
from supportbot.tenants.services import tenant_create


class Command(BaseCommand):
    help = (
        "Create a tenant with one widget key; prints the tenant's slug, the public key and the "
        "identity secret (the tenant's backend signs visitor identities with it)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="The company's name.")
        parser.add_argument(
            "--allowed-origin",
            action="append",
            default=[],
            dest="allowed_origins",
            metavar="URL",
            help="A website allowed to embed the widget (repeat for several).",
        )
        parser.add_argument("--slug", default=None, help="Slug (default: from the name).")
        parser.add_argument(
            "--lawful-basis",
            choices=[choice.value for choice in Tenant.LawfulBasis],
            default=None,
            help="consent: visitors accept the consent text before anything is stored; "
            "legitimate_interest (the default): the text is shown as a notice.",
        )
        parser.add_argument(
            "--privacy-url", default="", help="The privacy policy the widget links to."
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON line.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant, key = tenant_create(
                name=options["name"],
                allowed_origins=options["allowed_origins"],
                slug=options["slug"],
                lawful_basis=options["lawful_basis"],
                privacy_url=options["privacy_url"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        secret = tenant_identity_secret(tenant)
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {"tenant": tenant.slug, "widget_key": key.public_key, "identity_secret": secret}
                )
            )
        else:
            self.stdout.write(f"Created tenant {tenant.slug} with widget key {key.public_key}")
            self.stdout.write(f"Identity secret (keep it on your backend only): {secret}")
