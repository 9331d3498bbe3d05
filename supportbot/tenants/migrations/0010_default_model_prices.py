"""The default price table: OpenAI's list prices (standard tier, USD per million tokens) taken
on 2025-06-10. Operators edit them in the admin (superusers); a model with no row costs 0,
and so does the local model (provider "local")."""

import datetime
from decimal import Decimal

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

TAKEN_ON = datetime.date(2025, 6, 10)
NOTE = "OpenAI list price, standard tier (Azure prices differ by region and deployment)"

PRICES = (
    ("gpt-4o", "2.50", "10.00"),
    ("gpt-4o-mini", "0.15", "0.60"),
    ("gpt-4.1", "2.00", "8.00"),
    ("gpt-4.1-mini", "0.40", "1.60"),
    ("gpt-4.1-nano", "0.10", "0.40"),
    ("o3", "2.00", "8.00"),
    ("o3-mini", "1.10", "4.40"),
    ("o4-mini", "1.10", "4.40"),
    ("gpt-3.5-turbo", "0.50", "1.50"),
    ("text-embedding-3-small", "0.02", "0"),
    ("text-embedding-3-large", "0.13", "0"),
    ("text-embedding-ada-002", "0.10", "0"),
)


def add_prices(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    ModelPrice = apps.get_model("tenants", "ModelPrice")
    for model, prompt, completion in PRICES:
        ModelPrice.objects.get_or_create(
            model=model,
            defaults={
                "prompt_per_million": Decimal(prompt),
                "completion_per_million": Decimal(completion),
                "prices_as_of": TAKEN_ON,
                "note": NOTE,
            },
        )


def remove_prices(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    ModelPrice = apps.get_model("tenants", "ModelPrice")
    ModelPrice.objects.filter(model__in=[model for model, _, _ in PRICES]).delete()


class Migration(migrations.Migration):
    dependencies = [("tenants", "0009_limits_prices_usage")]

    operations = [migrations.RunPython(add_prices, remove_prices)]
