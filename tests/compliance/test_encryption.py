"""Encryption at rest: AES-256-GCM under per-tenant data keys, bound to the tenant and field."""

import base64
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from conversations.models import Contact, Conversation, Message, ToolInvocation
from supportbot.compliance.encryption import (
    DecryptionError,
    blind_index,
    clear_caches,
    decrypt_secret,
    encrypt_secret,
    token_key_id,
)
from supportbot.compliance.fields import Sealed
from supportbot.compliance.models import DataKey
from supportbot.tenants.models import Tenant, TenantMembership
from supportbot.tenants.selectors import tenant_identity_secret, tenant_provider_config
from supportbot.tenants.services import tenant_set_llm_api_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_cached_keys() -> Any:
    clear_caches()
    yield
    clear_caches()


def _raw(table: str, column: str, pk: object) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def _set_raw(table: str, column: str, pk: object, value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [value, pk])


def _conversation(tenant: Tenant, *, email: str = "ann@example.com", sub: str = "") -> Any:
    contact = Contact.objects.create(tenant=tenant, email=email, name="Ann Lee", external_id=sub)
    conversation = Conversation.objects.create(
        tenant=tenant, contact=contact, summary={"summary": "Ann wants a refund for order 88"}
    )
    message = Message.objects.create(
        tenant=tenant, conversation=conversation, seq=1, role="user", text="my card is 4111 canary"
    )
    tool = ToolInvocation.objects.create(
        tenant=tenant,
        conversation=conversation,
        message=message,
        name="order_status",
        arguments='{"email": "ann@example.com"}',
        status="ok",
        result='{"status": "shipped to Ann"}',
    )
    return contact, conversation, message, tool


def test_values_round_trip_and_the_columns_hold_no_plaintext(make_tenant: Any) -> None:
    tenant, _ = make_tenant(llm_provider="openai", llm_base_url="https://api.example.com/v1")
    tenant_set_llm_api_key(tenant=tenant, api_key="sk-canary-key")
    contact, conversation, message, tool = _conversation(tenant)

    assert Message.objects.get(pk=message.pk).text == "my card is 4111 canary"
    loaded = Contact.objects.get(pk=contact.pk)
    assert (loaded.email, loaded.name, loaded.external_id) == ("ann@example.com", "Ann Lee", "")
    assert Conversation.objects.get(pk=conversation.pk).summary == {
        "summary": "Ann wants a refund for order 88"
    }
    loaded_tool = ToolInvocation.objects.get(pk=tool.pk)
    assert loaded_tool.arguments == '{"email": "ann@example.com"}'
    assert loaded_tool.result == '{"status": "shipped to Ann"}'
    tenant.refresh_from_db()
    assert tenant_provider_config(tenant).api_key == "sk-canary-key"
    assert tenant_identity_secret(tenant).startswith("ids_")

    stored = [
        _raw("conversations_message", "text", message.pk),
        _raw("conversations_contact", "email", contact.pk),
        _raw("conversations_contact", "name", contact.pk),
        _raw("conversations_conversation", "summary", conversation.pk),
        _raw("conversations_toolinvocation", "arguments", tool.pk),
        _raw("conversations_toolinvocation", "result", tool.pk),
        _raw("tenants_tenant", "llm_api_key_encrypted", tenant.pk),
        _raw("tenants_tenant", "identity_secret_encrypted", tenant.pk),
    ]
    for value in stored:
        assert value.startswith("enc1:")
    dump = " ".join(stored)
    for plaintext in ("canary", "ann@example.com", "Ann Lee", "refund", "shipped", "ids_"):
        assert plaintext not in dump
    assert tenant_identity_secret(tenant) not in dump


def test_each_tenant_has_its_own_data_key(make_tenant: Any) -> None:
    a, _ = make_tenant()
    b, _ = make_tenant()
    _, _, message_a, _ = _conversation(a)
    _, _, message_b, _ = _conversation(b)
    key_a = token_key_id(_raw("conversations_message", "text", message_a.pk))
    key_b = token_key_id(_raw("conversations_message", "text", message_b.pk))
    assert key_a != key_b
    assert DataKey.objects.get(pk=key_a).tenant_id == a.pk
    # Stored wrapped: the row never holds the key itself.
    assert len(base64.b64decode(DataKey.objects.get(pk=key_a).wrapped_key)) == 12 + 32 + 16


def test_a_value_moved_to_another_tenants_row_or_column_does_not_decrypt(
    make_tenant: Any,
) -> None:
    a, _ = make_tenant()
    b, _ = make_tenant()
    contact_a, _, message_a, _ = _conversation(a)
    _, _, message_b, _ = _conversation(b, email="bob@example.com")

    _set_raw(
        "conversations_message",
        "text",
        message_b.pk,
        _raw("conversations_message", "text", message_a.pk),
    )
    with pytest.raises(DecryptionError):
        _ = Message.objects.get(pk=message_b.pk).text

    _set_raw(
        "conversations_contact",
        "name",
        contact_a.pk,
        _raw("conversations_contact", "email", contact_a.pk),
    )
    with pytest.raises(DecryptionError):
        _ = Contact.objects.get(pk=contact_a.pk).name
    assert Contact.objects.get(pk=contact_a.pk).email == "ann@example.com"


def test_a_tampered_value_is_refused(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    _, _, message, _ = _conversation(tenant)
    token = _raw("conversations_message", "text", message.pk)
    blob = bytearray(base64.urlsafe_b64decode(token[len("enc1:") :]))
    blob[-5] ^= 0x01
    _set_raw(
        "conversations_message",
        "text",
        message.pk,
        "enc1:" + base64.urlsafe_b64encode(bytes(blob)).decode(),
    )
    with pytest.raises(DecryptionError):
        _ = Message.objects.get(pk=message.pk).text
    _set_raw("conversations_message", "text", message.pk, token[:-8])
    with pytest.raises(DecryptionError):
        _ = Message.objects.get(pk=message.pk).text


def test_an_unread_value_is_saved_back_unchanged_and_an_edited_one_re_encrypted(
    make_tenant: Any,
) -> None:
    tenant, _ = make_tenant()
    _, _, message, _ = _conversation(tenant)
    token = _raw("conversations_message", "text", message.pk)
    loaded = Message.objects.get(pk=message.pk)
    assert isinstance(loaded.__dict__["text"], Sealed)
    loaded.status = Message.Status.FAILED
    loaded.save()
    assert _raw("conversations_message", "text", message.pk) == token
    loaded.text = "edited"
    loaded.save(update_fields=["text"])
    assert _raw("conversations_message", "text", message.pk) != token
    assert Message.objects.get(pk=message.pk).text == "edited"


def test_a_query_cannot_compare_an_encrypted_column_with_plaintext(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    _conversation(tenant)
    with pytest.raises(TypeError, match="stored encrypted"):
        list(Message.objects.filter(text="my card is 4111 canary"))
    assert Message.objects.filter(text="").count() == 0  # the empty value is stored as ""


def test_blind_indexes_find_an_email_or_sub_within_the_tenant_only(make_tenant: Any) -> None:
    a, _ = make_tenant()
    b, _ = make_tenant()
    contact, _, _, _ = _conversation(a, email="Ann@Example.com", sub="User-1")
    _conversation(b, email="ann@example.com", sub="User-1")
    assert (
        Contact.objects.get(tenant=a, email_index=blind_index(a.pk, " ann@EXAMPLE.com ")) == contact
    )
    assert blind_index(a.pk, "ann@example.com") != blind_index(b.pk, "ann@example.com")
    by_sub = blind_index(a.pk, "User-1", kind="external_id")
    assert Contact.objects.get(tenant=a, external_id_index=by_sub) == contact
    # A `sub` is compared exactly, and an email index never matches a `sub` one.
    assert blind_index(a.pk, "user-1", kind="external_id") != by_sub
    assert blind_index(a.pk, "User-1", kind="email") != by_sub
    assert blind_index(a.pk, "") == ""


def test_an_email_change_saved_with_update_fields_moves_its_index(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    contact, _, _, _ = _conversation(tenant)
    contact.email = "new@example.com"
    contact.save(update_fields=["email"])
    assert Contact.objects.get(email_index=blind_index(tenant.pk, "new@example.com")) == contact
    assert not Contact.objects.filter(email_index=blind_index(tenant.pk, "ann@example.com"))


def _agent_of(tenant: Tenant, username: str) -> Client:
    user = get_user_model().objects.create_user(username=username, password="pw", is_staff=True)
    TenantMembership.objects.create(tenant=tenant, user=user)
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_finds_a_contact_by_email_through_the_blind_index_in_its_tenant_only(
    make_tenant: Any,
) -> None:
    a, _ = make_tenant()
    b, _ = make_tenant()
    contact_a, conversation_a, _, _ = _conversation(a, email="ann@example.com")
    contact_b, conversation_b, _, _ = _conversation(b, email="bob@example.com", sub="bob-1")
    _conversation(a, email="someone.else@example.com")
    agent_a = _agent_of(a, "agent-a")

    contacts = agent_a.get("/admin/conversations/contact/", {"q": " ANN@example.com"})
    assert contacts.status_code == 200
    assert str(contact_a.pk) in contacts.content.decode()
    assert contacts.context["cl"].result_count == 1
    conversations = agent_a.get("/admin/conversations/conversation/", {"q": "ann@example.com"})
    assert [c.pk for c in conversations.context["cl"].result_list] == [conversation_a.pk]

    # Tenant B's contact, by email or by `sub`, is not found from tenant A.
    for term in ("bob@example.com", "bob-1"):
        theirs = agent_a.get("/admin/conversations/contact/", {"q": term})
        assert theirs.context["cl"].result_count == 0
        assert str(contact_b.pk) not in theirs.content.decode()
        theirs = agent_a.get("/admin/conversations/conversation/", {"q": term})
        assert theirs.context["cl"].result_count == 0
        assert str(conversation_b.pk)[:8] not in theirs.content.decode()
    # B's own agent finds them.
    agent_b = _agent_of(b, "agent-b")
    found = agent_b.get("/admin/conversations/contact/", {"q": "bob-1"})
    assert found.context["cl"].result_count == 1


def test_a_platform_secret_is_bound_to_the_platform(make_tenant: Any) -> None:
    token = encrypt_secret("platform-secret")
    assert decrypt_secret(token) == "platform-secret"
    with pytest.raises(DecryptionError):
        decrypt_secret(token, tenant_id=1)
