"""The tenants' provider keys and identity secrets: from Fernet (AES-128) to AES-256-GCM under
each tenant's data key."""

from django.db import migrations

from supportbot.compliance.migration_steps import fernet_to_aes

LLM_API_KEY_LABEL = "tenants.tenant.llm_api_key"
IDENTITY_SECRET_LABEL = "tenants.tenant.identity_secret"  # noqa: S105 (a label, not a secret)


def secrets_to_aes(apps, schema_editor):
    for column, label in (
        ("llm_api_key_encrypted", LLM_API_KEY_LABEL),
        ("identity_secret_encrypted", IDENTITY_SECRET_LABEL),
    ):
        fernet_to_aes(schema_editor, table="tenants_tenant", column=column, label=label)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("compliance", "0003_data_keys"),
        ("tenants", "0011_tenant_retention_periods"),
    ]

    operations = [migrations.RunPython(secrets_to_aes, migrations.RunPython.noop)]
