"""`manage.py seed_demo [--json]`: the demo tenant, its widget key, its help centre
(knowledge/demo_articles) and an admin user (idempotent).

Development only: the admin password is generated once and kept in var/demo-admin.json.
It lives in the knowledge app, which sits above tenants: it uses both.
"""

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from knowledge.ingestion import document_ingest, source_get_or_create
from supportbot.tenants.models import Tenant, WidgetKey
from supportbot.tenants.origins import normalize_origins
from supportbot.tenants.services import tenant_create

DEMO_SLUG = "demo"
DEMO_ARTICLES = Path(__file__).resolve().parents[2] / "demo_articles"
DEMO_NAME = "Alder & Finch Outdoor"
DEMO_PERSONA = (
    "You are the support assistant of Alder & Finch Outdoor, an online shop for tents, packs "
    "and trail gear. Be friendly and brief: two or three sentences. Facts: delivery takes two "
    "to four working days in mainland Europe, and orders placed before 14:00 ship the same "
    "day. Unused gear can be returned within 60 days with a free return label in the EU; a "
    "tent pitched once can be returned if clean and dry. Seams and zips have a lifetime "
    "warranty; repairs are booked online. If you don't know something, say so and offer to "
    "connect the visitor with a person."
)


class Command(BaseCommand):
    help = "Create or refresh the demo tenant, its widget key and the demo admin user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON line.")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("seed_demo is for development only.")
        origins = normalize_origins(
            [o for o in os.environ.get("DEMO_SITE_ORIGINS", "").split(",") if o.strip()]
        )
        with transaction.atomic():
            tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
            if tenant is None:
                tenant, key = tenant_create(
                    name=DEMO_NAME,
                    slug=DEMO_SLUG,
                    allowed_origins=origins,
                    persona=DEMO_PERSONA,
                )
            else:
                tenant.allowed_origins = normalize_origins([*tenant.allowed_origins, *origins])
                tenant.save(update_fields=["allowed_origins", "updated_at"])
                key = WidgetKey.objects.filter(
                    tenant=tenant, is_active=True
                ).first() or WidgetKey.objects.create(tenant=tenant, label="default")
            articles = self._help_centre(tenant)
            username, password = self._admin_user()
        result = {
            "tenant": tenant.slug,
            "widget_key": key.public_key,
            "admin_user": username,
            "admin_password": password,
            "articles": articles,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            for name, value in result.items():
                self.stdout.write(f"{name}: {value}")

    def _help_centre(self, tenant: Tenant) -> int:
        """The demo shop's help-centre articles (updated in place on every run)."""
        source = source_get_or_create(tenant=tenant, name="Help centre")
        count = 0
        for path in sorted(DEMO_ARTICLES.glob("*.md")):
            document_ingest(
                tenant=tenant,
                source=source,
                key=path.name,
                filename=path.name,
                content=path.read_bytes(),
                url=f"https://help.alder-finch.example/{path.stem}",
                language="en",
            )
            count += 1
        return count

    def _admin_user(self) -> tuple[str, str]:
        path = settings.VAR_DIR / "demo-admin.json"
        username = "admin"
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = {}
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        password = saved.get("password")
        if user is not None and password and user.check_password(password):
            return username, password
        password = secrets.token_urlsafe(12)
        if user is None:
            user_model.objects.create_superuser(username=username, email="", password=password)
        else:
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"username": username, "password": password}))
        path.chmod(0o600)
        return username, password
