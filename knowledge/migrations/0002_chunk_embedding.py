"""The optional `embedding vector` column of chunks, where the server has pgvector.

Runs on every Postgres: when `CREATE EXTENSION IF NOT EXISTS vector` is refused (no pgvector,
or not allowed) nothing is added and the knowledge base searches by full text only.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    from knowledge import vectors

    vectors.install(schema_editor)


def backwards(apps, schema_editor):
    from knowledge import vectors

    vectors.uninstall(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
