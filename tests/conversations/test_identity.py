"""Verified visitor identity in the widget's `hello`, over the real consumer and channel layer.

Every identity that does not verify closes the socket with 4403 (never an anonymous visit); a
verified visitor is the same contact, with the same conversation, on every device.
"""

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from channels.db import database_sync_to_async

from conversations.models import Contact, Conversation
from conversations.refusals import CloseCode
from supportbot.compliance.encryption import blind_index
from supportbot.tenants.models import Tenant
from supportbot.tenants.selectors import tenant_identity_secret
from supportbot.tenants.services import tenant_rotate_identity_secret
from tests.conversations.test_consumer import (
    assert_closed_with,
    connect,
    hello,
    is_final_assistant,
    receive_until,
)
from tests.support.llm_server import Reply

pytestmark = pytest.mark.django_db(transaction=True)

SHOP = "https://shop.example.com"
DAY = 24 * 60 * 60


def sign(
    tenant: Tenant,
    *,
    sub: object = "user-42",
    exp_in: float = 3600,
    secret: str | None = None,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {"exp": int(time.time() + exp_in), **claims}
    if sub is not None:
        payload["sub"] = sub
    key = secret if secret is not None else tenant_identity_secret(tenant)
    return jwt.encode(payload, key if algorithm != "none" else None, algorithm=algorithm)


async def refused(key: str, **fields: Any) -> None:
    ws = await connect()
    frame = {"type": "hello", "key": key, "last_seq": 0, **fields}
    await ws.send_json_to(frame)
    await assert_closed_with(ws, CloseCode.FORBIDDEN)


@pytest.fixture
def shop(make_tenant: Any) -> tuple[Tenant, Any]:
    tenant, key = make_tenant(allowed_origins=[SHOP])
    return tenant, key


def _without_exp(tenant: Tenant) -> str:
    return jwt.encode({"sub": "user-42"}, tenant_identity_secret(tenant), algorithm="HS256")


def _string_exp(tenant: Tenant) -> str:
    payload = {"sub": "user-42", "exp": str(int(time.time()) + 60)}
    return jwt.encode(payload, tenant_identity_secret(tenant), algorithm="HS256")


def _bad_signature(tenant: Tenant) -> str:
    header, payload, signature = sign(tenant).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{header}.{payload}.{flipped}"


def _forged_payload(tenant: Tenant) -> str:
    # Another person's claims under a genuine signature of other claims.
    genuine = sign(tenant, sub="user-42").split(".")
    other = sign(tenant, sub="admin").split(".")
    return f"{genuine[0]}.{other[1]}.{genuine[2]}"


REFUSED_IDENTITIES: dict[str, Callable[[Tenant], str]] = {
    "bad signature": _bad_signature,
    "claims swapped under a genuine signature": _forged_payload,
    "expired": lambda t: sign(t, exp_in=-30),
    "signed with a guessed secret": lambda t: sign(t, secret="ids_" + "x" * 43),
    "alg none": lambda t: sign(t, algorithm="none"),
    "alg HS512 with the right secret": lambda t: sign(t, algorithm="HS512"),
    "alg HS384 with the right secret": lambda t: sign(t, algorithm="HS384"),
    "sub missing": lambda t: sign(t, sub=None),
    "sub empty": lambda t: sign(t, sub=""),
    "sub oversized": lambda t: sign(t, sub="x" * 256),
    "sub a number": lambda t: sign(t, sub=42),
    "sub a list": lambda t: sign(t, sub=["user-42"]),
    "sub holding NUL": lambda t: sign(t, sub="user\u000042"),
    "exp missing": _without_exp,
    "exp a string": _string_exp,
    "exp 25 hours ahead": lambda t: sign(t, exp_in=25 * 60 * 60),
    "not a JWT": lambda t: "not-a-token",
    "empty": lambda t: "",
    "oversized": lambda t: sign(t, padding="x" * 5000),
}


@pytest.mark.parametrize("case", REFUSED_IDENTITIES)
async def test_an_identity_that_does_not_verify_is_refused_with_4403(
    shop: Any, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tenant, key = shop
    token = await database_sync_to_async(REFUSED_IDENTITIES[case])(tenant)
    await refused(key.public_key, identity=token)
    # Nothing was taken for an anonymous visit.
    assert await database_sync_to_async(Contact.objects.filter(tenant=tenant).count)() == 0
    # The refusal is logged with its reason, never with the token or the secret.
    logged = "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)
    assert "widget hello refused" in logged
    secret = await database_sync_to_async(tenant_identity_secret)(tenant)
    assert secret not in logged
    signature = token.split(".")[-1]
    if len(signature) > 8:
        assert signature not in logged


async def test_an_identity_just_inside_24_hours_is_accepted(shop: Any) -> None:
    tenant, key = shop
    token = await database_sync_to_async(sign)(tenant, exp_in=DAY - 60, name="Ann")
    ws = await connect()
    welcome = await hello(ws, key.public_key, identity=token)
    assert welcome["conversation_id"]
    # Like anyone's, a verified visitor's contact is stored only when they act.
    contacts = database_sync_to_async(Contact.objects.filter(tenant=tenant).count)
    assert await contacts() == 0
    version = welcome["consent"]["version"]
    await ws.send_json_to({"type": "consent", "decision": "accept", "version": version})
    answer = await ws.receive_json_from(timeout=5)
    assert answer["type"] == "consent.recorded", answer
    await ws.disconnect()
    contact = await database_sync_to_async(Contact.objects.get)(tenant=tenant)
    assert (contact.external_id, contact.name) == ("user-42", "Ann")


async def test_a_non_string_identity_is_a_bad_hello(shop: Any) -> None:
    _, key = shop
    ws = await connect()
    await ws.send_json_to({"type": "hello", "key": key.public_key, "identity": {"sub": "x"}})
    await assert_closed_with(ws, CloseCode.BAD_HELLO)


async def test_another_tenants_secret_is_refused(make_tenant: Any) -> None:
    tenant_a, _ = await database_sync_to_async(make_tenant)(allowed_origins=[SHOP])
    tenant_b, key_b = await database_sync_to_async(make_tenant)(allowed_origins=[SHOP])
    token_a = await database_sync_to_async(sign)(tenant_a)
    await refused(key_b.public_key, identity=token_a)
    assert await database_sync_to_async(Contact.objects.filter(tenant=tenant_b).count)() == 0


@pytest.mark.usefixtures("celery_idle")
async def test_the_same_person_on_two_devices_has_one_contact_and_conversation(
    shop: Any, llm: Any
) -> None:
    tenant, key = shop
    llm.enqueue(Reply(text="Your order ships today."))
    phone_token = await database_sync_to_async(sign)(
        tenant, email="ann@example.com", name="Ann Lee"
    )
    phone = await connect(client="10.0.0.1")
    first = await hello(phone, key.public_key, identity=phone_token)
    client_id = str(uuid.uuid4())
    await phone.send_json_to({"type": "message", "client_id": client_id, "text": "Where is it?"})
    await receive_until(phone, is_final_assistant)
    await phone.disconnect()

    # The laptop has no visitor token, only an identity of the same person (its own token).
    laptop_token = await database_sync_to_async(sign)(tenant, exp_in=600)
    laptop = await connect(client="10.0.0.2")
    second = await hello(laptop, key.public_key, identity=laptop_token)
    assert second["conversation_id"] == first["conversation_id"]
    assert [m["text"] for m in second["messages"]] == ["Where is it?", "Your order ships today."]
    await laptop.disconnect()

    contact = await database_sync_to_async(Contact.objects.get)(tenant=tenant)
    assert (contact.external_id, contact.email, contact.name) == (
        "user-42",
        "ann@example.com",
        "Ann Lee",
    )
    count = database_sync_to_async(Conversation.objects.filter(tenant=tenant).count)
    assert await count() == 1


async def test_an_identity_change_under_a_visitor_token_is_refused(shop: Any) -> None:
    tenant, key = shop
    ann = await database_sync_to_async(sign)(tenant, sub="ann")
    ws = await connect()
    welcome = await hello(ws, key.public_key, identity=ann)
    await ws.disconnect()
    bob = await database_sync_to_async(sign)(tenant, sub="bob")
    await refused(
        key.public_key,
        identity=bob,
        visitor_token=welcome["visitor_token"],
        conversation_id=welcome["conversation_id"],
    )
    # Without the conversation id too.
    await refused(key.public_key, identity=bob, visitor_token=welcome["visitor_token"])
    assert (
        await database_sync_to_async(
            Contact.objects.filter(
                tenant=tenant, external_id_index=blind_index(tenant.pk, "bob", kind="external_id")
            ).exists
        )()
        is False
    )


async def test_a_verified_visitors_token_without_the_identity_is_refused(shop: Any) -> None:
    tenant, key = shop
    ann = await database_sync_to_async(sign)(tenant, sub="ann")
    ws = await connect()
    welcome = await hello(ws, key.public_key, identity=ann)
    await ws.disconnect()
    await refused(key.public_key, visitor_token=welcome["visitor_token"])

    # With the identity again, the same token resumes the same conversation.
    ws = await connect()
    again = await hello(
        ws,
        key.public_key,
        identity=ann,
        visitor_token=welcome["visitor_token"],
        conversation_id=welcome["conversation_id"],
    )
    assert again["conversation_id"] == welcome["conversation_id"]
    await ws.disconnect()


async def _say(ws: Any, text: str) -> None:
    """Send a message and wait for its ack (the first message stores the conversation)."""
    client_id = str(uuid.uuid4())
    await ws.send_json_to({"type": "message", "client_id": client_id, "text": text})
    await receive_until(ws, lambda f: f.get("type") == "ack" and f.get("client_id") == client_id)


async def test_an_anonymous_visitor_who_signs_in_switches_to_the_verified_contact(
    shop: Any, llm: Any
) -> None:
    tenant, key = shop
    llm.enqueue(Reply(text="Hello."))
    llm.enqueue(Reply(text="Hello, Ann."))
    ws = await connect()
    anonymous = await hello(ws, key.public_key)
    await _say(ws, "Hi")
    await receive_until(ws, is_final_assistant)
    await ws.disconnect()

    ann = await database_sync_to_async(sign)(tenant, sub="ann")
    ws = await connect()
    signed_in = await hello(
        ws,
        key.public_key,
        identity=ann,
        visitor_token=anonymous["visitor_token"],
        conversation_id=anonymous["conversation_id"],
    )
    await _say(ws, "It's Ann")
    await receive_until(ws, is_final_assistant)  # the reply is done before the test ends
    await ws.disconnect()
    assert signed_in["visitor_token"] != anonymous["visitor_token"]
    assert signed_in["conversation_id"] != anonymous["conversation_id"]
    conversation = await database_sync_to_async(Conversation.objects.select_related("contact").get)(
        pk=signed_in["conversation_id"]
    )
    assert conversation.contact.external_id == "ann"
    # The anonymous conversation stays the anonymous visitor's.
    left = await database_sync_to_async(Conversation.objects.select_related("contact").get)(
        pk=anonymous["conversation_id"]
    )
    assert left.contact.external_id == ""


async def test_a_tenant_that_requires_identity_refuses_anonymous_visitors(
    make_tenant: Any,
) -> None:
    tenant, key = await database_sync_to_async(make_tenant)(
        allowed_origins=[SHOP], identity_required=True
    )
    await refused(key.public_key)
    await refused(key.public_key, identity=None)
    token = await database_sync_to_async(sign)(tenant)
    ws = await connect()
    welcome = await hello(ws, key.public_key, identity=token)
    assert welcome["type"] == "welcome"
    await ws.disconnect()


async def test_rotation_refuses_identities_signed_with_the_old_secret(shop: Any) -> None:
    tenant, key = shop
    old = await database_sync_to_async(sign)(tenant)
    new_secret = await database_sync_to_async(tenant_rotate_identity_secret)(tenant=tenant)
    await refused(key.public_key, identity=old)
    ws = await connect()
    welcome = await hello(ws, key.public_key, identity=sign(tenant, secret=new_secret))
    assert welcome["type"] == "welcome"
    await ws.disconnect()
