"""Encrypt the personal data stored before encryption at rest, in batches (resumable)."""

from django.db import migrations

from supportbot.compliance.migration_steps import encrypt_column

COLUMNS = [
    # table, column, label, options
    (
        "conversations_contact",
        "email",
        "conversations.contact.email",
        {"index_column": "email_index", "index_kind": "email"},
    ),
    (
        "conversations_contact",
        "external_id",
        "conversations.contact.external_id",
        {"index_column": "external_id_index", "index_kind": "external_id"},
    ),
    ("conversations_contact", "name", "conversations.contact.name", {}),
    (
        "conversations_conversation",
        "summary",
        "conversations.conversation.summary",
        {"json_value": True},
    ),
    ("conversations_message", "text", "conversations.message.text", {}),
    ("conversations_toolinvocation", "arguments", "conversations.toolinvocation.arguments", {}),
    ("conversations_toolinvocation", "result", "conversations.toolinvocation.result", {}),
]


def encrypt_existing(apps, schema_editor):
    for table, column, label, options in COLUMNS:
        encrypt_column(schema_editor, table=table, column=column, label=label, **options)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("compliance", "0003_data_keys"),
        ("conversations", "0006_encrypted_personal_data"),
    ]

    operations = [migrations.RunPython(encrypt_existing, migrations.RunPython.noop)]
