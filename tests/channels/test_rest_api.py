"""The REST API (/api/v1/) in process: keys, conversations, messages answered by the assistant
through a real Celery worker and the scripted provider, consent, limits, errors, the schema."""

import json
import uuid
from typing import Any

import pytest
from django.test import Client

from conversations.channels.api_keys import api_key_create, api_key_revoke
from conversations.models import (
    ApiKey,
    ChannelAccount,
    ConsentRecord,
    Contact,
    Conversation,
    Message,
    ReplyJob,
)
from supportbot.compliance.encryption import blind_index
from supportbot.tenants.models import Tenant
from tests.support.llm_server import Reply
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]


def api_channel(tenant: Tenant, name: str = "Mobile app") -> tuple[ChannelAccount, str]:
    account = ChannelAccount.objects.create(tenant=tenant, kind="api", name=name)
    return account, api_key_create(account=account, name="test").key


def call(method: str, path: str, key: str | None, body: Any = None, **headers: str) -> Any:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes | str) or body is None else json.dumps(body)
    return getattr(Client(), method)(
        f"/api/v1{path}", data=data, content_type="application/json", headers=headers
    )


def create(key: str, **fields: Any) -> dict[str, Any]:
    response = call("post", "/conversations", key, fields)
    assert response.status_code == 201, response.content
    return response.json()


def post(key: str, conversation_id: str, text: str, client_id: str | None = None) -> Any:
    body = {"client_id": client_id or str(uuid.uuid4()), "text": text}
    return call("post", f"/conversations/{conversation_id}/messages", key, body)


def messages(key: str, conversation_id: str, after_seq: int = 0, **query: Any) -> list[Any]:
    params = "&".join(f"{k}={v}" for k, v in {"after_seq": after_seq, **query}.items())
    response = call("get", f"/conversations/{conversation_id}/messages?{params}", key)
    assert response.status_code == 200, response.content
    return list(response.json()["messages"])


def assistant_reply(key: str, conversation_id: str) -> dict[str, Any]:
    def answered() -> Any:
        found = [m for m in messages(key, conversation_id) if m["role"] == "assistant"]
        return found[0] if found and found[0]["status"] == "complete" else None

    return dict(wait_until(answered, timeout=20, message="the assistant's reply"))


def error_of(response: Any) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json"), response.content
    return dict(response.json()["error"])


@pytest.fixture
def shop(make_tenant: Any) -> tuple[Tenant, ChannelAccount, str]:
    tenant, _ = make_tenant("Shop")
    account, key = api_channel(tenant)
    return tenant, account, key


def test_conversation_answered_by_the_assistant(shop: Any, llm: Any) -> None:
    _tenant, account, key = shop
    llm.enqueue(Reply(text="Returns are free for 30 days."))
    created = create(key, external_user_id="user-42", name="Ada", email="ada@example.com")
    assert set(created) == {"id", "status", "created_at", "consent"}
    assert created["status"] == "bot"

    response = post(key, created["id"], "How do returns work?", client_id="c-1")
    assert response.status_code == 202, response.content
    posted = response.json()
    assert posted["created"] is True
    assert posted["message"]["seq"] == 1
    assert posted["message"]["role"] == "user"
    assert posted["message"]["client_id"] == "c-1"

    reply = assistant_reply(key, created["id"])
    assert reply["text"] == "Returns are free for 30 days."
    assert reply["seq"] == 2
    assert [m["seq"] for m in messages(key, created["id"])] == [1, 2]
    assert [m["seq"] for m in messages(key, created["id"], after_seq=1)] == [2]
    first_page = call("get", f"/conversations/{created['id']}/messages?limit=1", key).json()
    assert ([m["seq"] for m in first_page["messages"]], first_page["has_more"]) == ([1], True)

    conversation = Conversation.objects.get(pk=created["id"])
    assert (conversation.channel, conversation.channel_account_id) == ("api", account.pk)
    contact = conversation.contact
    assert (contact.channel, contact.channel_user_id) == ("api", "user-42")
    assert (contact.name, contact.email) == ("Ada", "ada@example.com")
    notice = ConsentRecord.objects.get(contact=contact)
    assert (notice.decision, notice.channel) == ("notice", "api")
    assert ApiKey.objects.get(channel_account=account).last_used_at is not None


def test_one_contact_per_external_user_id(shop: Any) -> None:
    tenant, _, key = shop
    first = create(key, external_user_id="user-7")
    second = create(key, external_user_id="user-7", locale="de")
    anonymous = create(key)
    contacts = {Conversation.objects.get(pk=c["id"]).contact_id for c in (first, second, anonymous)}
    assert len(contacts) == 2
    index = blind_index(tenant.pk, "user-7", kind="channel_user")
    contact = Contact.objects.get(tenant=tenant, channel="api", channel_user_index=index)
    assert (contact.channel_user_id, contact.locale) == ("user-7", "de")


def test_client_id_makes_a_resend_idempotent(shop: Any, llm: Any) -> None:
    _, _, key = shop
    llm.enqueue(Reply(text="Only once."))
    conversation_id = create(key)["id"]
    first = post(key, conversation_id, "Hello?", client_id="same")
    again = post(key, conversation_id, "Hello?", client_id="same")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["created"] is False
    assert again.json()["message"]["id"] == first.json()["message"]["id"]
    assert assistant_reply(key, conversation_id)["text"] == "Only once."
    assert Message.objects.filter(conversation_id=conversation_id, role="user").count() == 1
    assert ReplyJob.objects.filter(conversation_id=conversation_id).count() == 1
    assert Message.objects.filter(conversation_id=conversation_id, role="assistant").count() == 1


def test_another_tenants_key_finds_nothing(shop: Any, make_tenant: Any) -> None:
    tenant, _, key = shop
    conversation_id = create(key)["id"]
    other_tenant, _ = make_tenant("Other")
    _, other_key = api_channel(other_tenant)
    _, sibling_key = api_channel(tenant, name="Back office")  # the same tenant, another channel

    for stranger in (other_key, sibling_key):
        for response in (
            post(stranger, conversation_id, "Let me in"),
            call("get", f"/conversations/{conversation_id}/messages", stranger),
            call("get", f"/conversations/{conversation_id}/events", stranger),
            call(
                "post",
                f"/conversations/{conversation_id}/consent",
                stranger,
                {"decision": "accept", "version": 0},
            ),
        ):
            assert response.status_code == 404, response.content
            assert error_of(response)["code"] == "not_found"
    assert not Message.objects.filter(conversation_id=conversation_id).exists()
    assert not ConsentRecord.objects.exists()
    unknown = call("get", f"/conversations/{uuid.uuid4()}/messages", key)
    assert (unknown.status_code, error_of(unknown)["code"]) == (404, "not_found")
    not_an_id = call("get", "/conversations/not-a-uuid/messages", key)
    assert (not_an_id.status_code, error_of(not_an_id)["code"]) == (404, "not_found")


def test_revoked_unknown_or_missing_key_is_unauthorized(shop: Any) -> None:
    _, account, key = shop
    conversation_id = create(key)["id"]
    api_key_revoke(api_key_id=ApiKey.objects.get(channel_account=account).pk)
    for response in (
        call("post", "/conversations", key, {}),
        post(key, conversation_id, "Hello"),
        call("get", f"/conversations/{conversation_id}/events", key),
        call("post", "/conversations", "sbk_0000_not-a-key", {}),
        call("post", "/conversations", None, {}),
    ):
        assert response.status_code == 401, response.content
        assert error_of(response)["code"] == "unauthorized"
        assert response["WWW-Authenticate"] == "Bearer"
    assert Conversation.objects.count() == 1
    assert not Message.objects.exists()


def test_invalid_requests_get_json_errors(shop: Any) -> None:
    tenant, _, key = shop
    tenant.message_max_chars = 10
    tenant.save()
    conversation_id = create(key)["id"]
    path = f"/conversations/{conversation_id}/messages"
    cases = [
        (call("post", path, key, {"client_id": "a"}), 400, "bad_request"),
        (call("post", path, key, {"client_id": "", "text": "hi"}), 400, "bad_request"),
        (call("post", path, key, {"client_id": "x" * 65, "text": "hi"}), 400, "bad_request"),
        (call("post", path, key, {"client_id": "a", "text": "   "}), 400, "bad_request"),
        (call("post", path, key, {"client_id": "a", "text": "nul\u0000"}), 400, "bad_request"),
        (call("post", path, key, {"client_id": "a", "text": "x" * 11}), 400, "too_long"),
        (call("post", path, key, b"{not json"), 400, "bad_request"),
        (call("get", f"{path}?limit=0", key), 400, "bad_request"),
        (call("post", "/conversations", key, {"email": 5}), 400, "bad_request"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.content
        error = error_of(response)
        assert error["code"] == code, error
        assert error["detail"]
    missing = call("post", path, key, {"client_id": "a"})
    assert "text" in error_of(missing)["detail"]
    assert not Message.objects.exists()


def post_until_refused(key: str, conversation_ids: list[str]) -> tuple[Any, int]:
    """Post (round the conversations) until one is refused: with a limit of one a minute, the
    second or, across a minute's turn, the third is. The refusal and how many were accepted."""
    for attempt in range(3):
        response = post(key, conversation_ids[attempt % len(conversation_ids)], f"No. {attempt}")
        if response.status_code != 202:
            return response, attempt
    raise AssertionError("three messages in a row were accepted")


def assert_rate_limited(refused: Any) -> None:
    assert refused.status_code == 429, refused.content
    error = error_of(refused)
    assert error["code"] == "rate_limited"
    assert error["retry_after"] >= 1
    assert refused["Retry-After"] == str(error["retry_after"])


def test_over_the_persons_limit_nothing_is_stored(shop: Any, llm: Any, settings: Any) -> None:
    _, _, key = shop
    settings.WIDGET_MESSAGES_PER_MINUTE = 1
    conversation_id = create(key)["id"]
    refused, accepted = post_until_refused(key, [conversation_id])
    assert_rate_limited(refused)
    stored = Message.objects.filter(conversation_id=conversation_id, role="user").count()
    assert stored == accepted
    assistant_reply(key, conversation_id)


def test_over_the_keys_limit_nothing_is_stored(shop: Any, llm: Any, settings: Any) -> None:
    _, _, key = shop
    settings.WIDGET_KEY_MESSAGES_PER_MINUTE = 1
    conversation_ids = [create(key, external_user_id=f"person-{n}")["id"] for n in range(3)]
    refused, accepted = post_until_refused(key, conversation_ids)
    assert_rate_limited(refused)
    assert Message.objects.filter(role="user").count() == accepted


def test_consent_tenant_stores_nothing_before_acceptance(make_tenant: Any, llm: Any) -> None:
    tenant, _ = make_tenant("Careful", lawful_basis=Tenant.LawfulBasis.CONSENT)
    _, key = api_channel(tenant)
    refused = call("post", "/conversations", key, {"external_user_id": "u1", "name": "Bo"})
    assert refused.status_code == 409
    error = error_of(refused)
    assert error["code"] == "consent_required"
    assert error["consent"]["required"] is True
    assert error["consent"]["text"]
    version = error["consent"]["version"]
    stale = call("post", "/conversations", key, {"consent_version": version + 1})
    assert (stale.status_code, error_of(stale)["code"]) == (409, "consent_stale")
    assert not Contact.objects.filter(tenant=tenant).exists()
    assert not ConsentRecord.objects.exists()

    llm.enqueue(Reply(text="Glad to help."))
    created = create(key, external_user_id="u1", consent_version=version)
    assert created["consent"]["accepted"] is True
    record = ConsentRecord.objects.get()
    assert (record.decision, record.channel, record.version) == ("accept", "api", version)
    assert post(key, created["id"], "Hi").status_code == 202
    assistant_reply(key, created["id"])

    consent_path = f"/conversations/{created['id']}/consent"
    declined = call("post", consent_path, key, {"decision": "decline", "version": version})
    assert declined.status_code == 200, declined.content
    after_decline = post(key, created["id"], "Still there?")
    assert after_decline.status_code == 409
    assert error_of(after_decline)["code"] == "consent_required"
    assert Message.objects.filter(conversation_id=created["id"], role="user").count() == 1


def test_openapi_schema_and_offline_docs(shop: Any) -> None:
    schema = Client().get("/api/v1/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert set(paths) >= {
        "/api/v1/conversations",
        "/api/v1/conversations/{conversation_id}/messages",
        "/api/v1/conversations/{conversation_id}/events",
        "/api/v1/conversations/{conversation_id}/consent",
    }
    assert "post" in paths["/api/v1/conversations/{conversation_id}/messages"]
    assert "get" in paths["/api/v1/conversations/{conversation_id}/messages"]
    docs = Client().get("/api/v1/docs")
    assert docs.status_code == 200
    page = docs.content.decode()
    policy = docs.get("Content-Security-Policy", "")
    assert not policy or "script-src 'self'" in policy  # the admin's CSP is not in the way
    assert "cdn" not in page.lower()
    assets = [
        part.split('"')[0] for marker in ('src="', 'href="') for part in page.split(marker)[1:]
    ]
    assert {"/static/ninja/swagger-ui-bundle.js", "/static/ninja/swagger-ui.css"} <= set(assets)
    for asset in assets:  # everything the page loads comes from this server
        assert asset.startswith("/static/"), asset
        assert Client().get(asset).status_code == 200, asset
