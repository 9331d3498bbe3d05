"""Key rotation (add a key, rotate, re-encrypt, remove the old key), resumable re-encryption and
the data migrations that encrypt what was stored before."""

import base64
import io
import os
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from conversations.models import Contact, Conversation, Message
from supportbot.compliance.encryption import (
    DecryptionError,
    blind_index,
    clear_caches,
    decrypt_secret,
    key_ring,
    token_key_id,
)
from supportbot.compliance.legacy_fernet import fernet_encrypt
from supportbot.compliance.migration_steps import encrypt_column, fernet_to_aes
from supportbot.compliance.models import DataKey
from supportbot.tenants.models import IDENTITY_SECRET_LABEL, LLM_API_KEY_LABEL, Tenant
from supportbot.tenants.selectors import tenant_identity_secret
from supportbot.tenants.services import tenant_set_llm_api_key

pytestmark = pytest.mark.django_db


def _new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture
def old_key(settings: Any) -> str:
    key = _new_key()
    settings.FIELD_ENCRYPTION_KEYS = [key]
    clear_caches()
    yield key
    clear_caches()


def _raw(table: str, column: str, pk: object) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def _messages(tenant: Tenant, count: int) -> list[Message]:
    contact = Contact.objects.create(tenant=tenant, email=f"p{tenant.pk}@example.com", name="Pat")
    conversation = Conversation.objects.create(
        tenant=tenant, contact=contact, summary={"summary": "Pat asked twice"}
    )
    return [
        Message.objects.create(
            tenant=tenant, conversation=conversation, seq=i, role="user", text=f"message {i}"
        )
        for i in range(1, count + 1)
    ]


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_add_a_key_rotate_reencrypt_remove_the_old_key_and_every_row_still_reads(
    make_tenant: Any, settings: Any, old_key: str
) -> None:
    a, _ = make_tenant(llm_provider="openai", llm_base_url="https://api.example.com/v1")
    b, _ = make_tenant()
    tenant_set_llm_api_key(tenant=a, api_key="sk-rotated")
    messages = _messages(a, 3) + _messages(b, 2)
    secret_b = tenant_identity_secret(b)
    old_keys = {token_key_id(_raw("conversations_message", "text", m.pk)) for m in messages}
    email_index = Contact.objects.get(tenant=a).email_index

    new_key = _new_key()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    output = _run("keys_rotate", "--new-data-keys")
    newest = key_ring()[0].id
    assert f"master key {newest}:" in output
    assert set(DataKey.objects.values_list("master_key_id", flat=True)) == {newest}
    assert "would move" in _run("reencrypt", "--dry-run")
    # A dry run changes nothing.
    assert {token_key_id(_raw("conversations_message", "text", m.pk)) for m in messages} == old_keys
    output = _run("reencrypt", "--batch-size", "2")
    assert "conversations.message.text: 5 rows scanned, 5 moved" in output

    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    clear_caches()  # this process forgets every unwrapped key: all is read anew
    new_keys = {token_key_id(_raw("conversations_message", "text", m.pk)) for m in messages}
    assert not new_keys & old_keys
    for message in messages:
        assert Message.objects.get(pk=message.pk).text == message.text
    assert Conversation.objects.get(tenant=a).summary == {"summary": "Pat asked twice"}
    assert Contact.objects.get(tenant=b).email == f"p{b.pk}@example.com"
    a.refresh_from_db()
    b.refresh_from_db()
    token = a.llm_api_key_encrypted
    assert decrypt_secret(token, tenant_id=a.pk, field=LLM_API_KEY_LABEL) == "sk-rotated"
    assert tenant_identity_secret(b) == secret_b
    # The blind index survives rotation: the same email still finds the contact.
    assert Contact.objects.get(tenant=a).email_index == email_index
    assert Contact.objects.get(email_index=blind_index(a.pk, f"p{a.pk}@example.com")).tenant == a
    # Nothing more to move.
    assert "done: 0 values moved" in _run("reencrypt")


def test_without_keys_rotate_a_removed_master_key_leaves_the_data_unreadable(
    make_tenant: Any, settings: Any, old_key: str
) -> None:
    tenant, _ = make_tenant()
    (message,) = _messages(tenant, 1)
    settings.FIELD_ENCRYPTION_KEYS = [_new_key()]
    clear_caches()
    with pytest.raises(DecryptionError, match="not in FIELD_ENCRYPTION_KEYS"):
        _ = Message.objects.get(pk=message.pk).text


def test_reencrypt_is_resumable_batch_by_batch(
    make_tenant: Any, settings: Any, old_key: str
) -> None:
    tenant, _ = make_tenant()
    messages = _messages(tenant, 5)
    settings.FIELD_ENCRYPTION_KEYS = [_new_key(), old_key]
    _run("keys_rotate", "--new-data-keys")
    newest = DataKey.objects.filter(tenant_id=tenant.pk, purpose="data").latest("created_at").pk

    def on_newest() -> int:
        return sum(
            token_key_id(_raw("conversations_message", "text", m.pk)) == newest for m in messages
        )

    # Interrupted after its first batch of two.
    output = _run("reencrypt", "--batch-size", "2", "--max-batches", "1")
    assert "conversations.message.text: 2 rows scanned, 2 moved" in output
    assert on_newest() == 2
    # Run again: the rows already moved are skipped, the others moved.
    output = _run("reencrypt", "--batch-size", "2")
    assert "conversations.message.text: 5 rows scanned, 3 moved" in output
    assert on_newest() == 5
    assert [Message.objects.get(pk=m.pk).text for m in messages] == [m.text for m in messages]


def test_the_data_migration_moves_a_fernet_secret_to_aes_gcm(
    make_tenant: Any, old_key: str
) -> None:
    tenant, _ = make_tenant()
    legacy = fernet_encrypt("ids_legacy-identity-secret")
    Tenant.objects.filter(pk=tenant.pk).update(identity_secret_encrypted=legacy)
    with connection.schema_editor(atomic=False) as editor:
        moved = fernet_to_aes(
            editor,
            table="tenants_tenant",
            column="identity_secret_encrypted",
            label=IDENTITY_SECRET_LABEL,
        )
        again = fernet_to_aes(
            editor,
            table="tenants_tenant",
            column="identity_secret_encrypted",
            label=IDENTITY_SECRET_LABEL,
        )
    assert (moved, again) == (1, 0)
    tenant.refresh_from_db()
    assert tenant.identity_secret_encrypted.startswith("enc1:")
    assert tenant_identity_secret(tenant) == "ids_legacy-identity-secret"


def test_the_data_migration_encrypts_plaintext_rows_and_fills_the_indexes(
    make_tenant: Any, old_key: str
) -> None:
    tenant, _ = make_tenant()
    contact = Contact.objects.create(tenant=tenant)
    conversation = Conversation.objects.create(tenant=tenant, contact=contact)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE conversations_contact SET email = %s, external_id = %s WHERE id = %s",
            ["Old@Example.com", "sub-9", contact.pk],
        )
        cursor.execute(
            "UPDATE conversations_conversation SET summary = %s WHERE id = %s",
            ['{"summary": "old summary"}', conversation.pk],
        )
    with connection.schema_editor(atomic=False) as editor:
        for column, kind in (("email", "email"), ("external_id", "external_id")):
            encrypt_column(
                editor,
                table="conversations_contact",
                column=column,
                label=f"conversations.contact.{column}",
                index_column=f"{column}_index",
                index_kind=kind,  # type: ignore[arg-type]
                batch_size=1,
            )
        encrypt_column(
            editor,
            table="conversations_conversation",
            column="summary",
            label="conversations.conversation.summary",
            json_value=True,
        )
    assert "Old@" not in _raw("conversations_contact", "email", contact.pk)
    loaded = Contact.objects.get(pk=contact.pk)
    assert (loaded.email, loaded.external_id) == ("Old@Example.com", "sub-9")
    assert loaded.email_index == blind_index(tenant.pk, "old@example.com")
    assert loaded.external_id_index == blind_index(tenant.pk, "sub-9", kind="external_id")
    assert Conversation.objects.get(pk=conversation.pk).summary == {"summary": "old summary"}
