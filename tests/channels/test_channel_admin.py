"""The channels' admin, through real logins and the real admin URLs: channels (secrets
write-only, generated ones shown once), API keys, the outbox (retry), inbound events, and the
conversation list's channel. Two tenants, Alpha and Beta: nothing of one reaches the other."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from conversations.channels.api_keys import api_key_authenticate
from conversations.channels.setup import ChannelSetup, channel_setup
from conversations.messages import message_append
from conversations.models import (
    ApiKey,
    ChannelAccount,
    Contact,
    Conversation,
    InboundEvent,
    MessageAttachment,
    OutboundDelivery,
)
from supportbot.compliance.models import AuditEvent
from supportbot.tenants.models import Tenant, TenantMembership

pytestmark = pytest.mark.django_db
PASSWORD = "pw-channel-admin-1"
Role = TenantMembership.Role
CHANNELS = "/admin/conversations/channelaccount/"
KEYS = "/admin/conversations/apikey/"
DELIVERIES = "/admin/conversations/outbounddelivery/"
EVENTS = "/admin/conversations/inboundevent/"
CONVERSATIONS = "/admin/conversations/conversation/"
SMS_SETTINGS = {"account_sid": "AC1", "from_number": "+15550100", "auth_token": "twilio-token"}


@dataclass
class Side:
    tenant: Tenant
    admin: User
    telegram: ChannelSetup
    api: ChannelSetup
    conversation: Conversation
    delivery: OutboundDelivery
    event: InboundEvent
    bot_token: str


@dataclass
class World:
    alpha: Side
    beta: Side
    agent: User  # Alpha's agent


def _user(username: str) -> User:
    return User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)


def _side(make_tenant: Any, name: str, mark: str) -> Side:
    tenant, _ = make_tenant(name=name)
    bot_token = f"999:{mark}-bot-token"
    telegram = channel_setup(
        tenant=tenant,
        kind="telegram",
        settings={"bot_token": bot_token, "bot_username": f"{mark}_bot"},
        name=f"{mark} bot",
    )
    api = channel_setup(tenant=tenant, kind="api", settings={}, name=f"{mark} api")
    contact = Contact.objects.create(tenant=tenant, channel="telegram", channel_user_id="42")
    conversation = Conversation.objects.create(
        tenant=tenant, contact=contact, channel="telegram", channel_account=telegram.account
    )
    message = message_append(conversation=conversation, role="user", text=f"{mark} photo")
    MessageAttachment.objects.create(
        tenant=tenant, message=message, kind="image", filename=f"{mark}-receipt.jpg", size=2048
    )
    delivery = OutboundDelivery.objects.create(
        tenant=tenant,
        channel_account=telegram.account,
        conversation=conversation,
        message=message,
        state=OutboundDelivery.State.FAILED,
        attempts=5,
        last_status=403,
        last_error=f"{mark}: bot was blocked by the user",
    )
    event = InboundEvent.objects.create(
        tenant=tenant,
        channel_account=telegram.account,
        provider_event_id=f"{mark}-update-1",
        payload={"text": f"{mark}-payload-text"},
        state=InboundEvent.State.PROCESSED,
    )
    admin = _user(f"{mark}-admin")
    TenantMembership.objects.create(tenant=tenant, user=admin, role=Role.ADMIN)
    return Side(tenant, admin, telegram, api, conversation, delivery, event, bot_token)


@pytest.fixture
def world(make_tenant: Any, settings: Any) -> World:
    settings.PUBLIC_URL = "https://support.example.com"
    alpha = _side(make_tenant, "Alpha Shop", "alphamark")
    beta = _side(make_tenant, "Beta Shop", "betamark")
    agent = _user("alpha-agent")
    TenantMembership.objects.create(tenant=alpha.tenant, user=agent, role=Role.AGENT)
    return World(alpha, beta, agent)


def login(user: User) -> Client:
    client = Client()
    response = client.post("/admin/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.status_code
    return client


def _secrets(side: Side) -> list[str]:
    return [side.bot_token, side.telegram.generated["webhook_secret"], side.api.api_key]


def _assert_no_secret(body: str, *sides: Side) -> None:
    for side in sides:
        for secret in _secrets(side):
            assert secret not in body


# --- pages render, secrets never do ------------------------------------------------------------


def test_a_tenant_admin_sees_the_channel_pages_without_any_secret(world: World) -> None:
    client = login(world.alpha.admin)
    alpha = world.alpha
    pages = [
        CHANNELS,
        f"{CHANNELS}{alpha.telegram.account.pk}/change/",
        f"{CHANNELS}{alpha.api.account.pk}/change/",
        f"{CHANNELS}add/",  # the choice of kind
        f"{CHANNELS}add/?kind=telegram",
        f"{CHANNELS}add/?kind=email",
        KEYS,
        f"{KEYS}add/",
        f"{KEYS}{alpha.api.account.api_keys.get().pk}/change/",
        DELIVERIES,
        f"{DELIVERIES}{alpha.delivery.pk}/change/",
        EVENTS,
        f"{EVENTS}{alpha.event.pk}/change/",
    ]
    bodies = {}
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        bodies[url] = response.content.decode()
        _assert_no_secret(bodies[url], world.alpha, world.beta)
        assert "betamark" not in bodies[url], url
        assert "Beta Shop" not in bodies[url], url
    assert alpha.telegram.webhook_url in bodies[CHANNELS]
    assert "alphamark bot" in bodies[CHANNELS]
    change = bodies[f"{CHANNELS}{alpha.telegram.account.pk}/change/"]
    assert 'name="bot_token"' in change
    assert 'type="password"' in change
    assert "Set; leave blank to keep it." in change
    assert 'value="alphamark_bot"' in change  # a setting is shown, a secret never
    assert 'href="?kind=whatsapp"' in bodies[f"{CHANNELS}add/"]
    assert 'name="smtp_host"' in bodies[f"{CHANNELS}add/?kind=email"]
    assert "bot was blocked by the user" in bodies[DELIVERIES]
    assert "alphamark-payload-text" not in bodies[f"{EVENTS}{alpha.event.pk}/change/"]
    assert "alphamark-update-1" in bodies[f"{EVENTS}{alpha.event.pk}/change/"]


def test_an_agent_sees_no_channel_page(world: World) -> None:
    client = login(world.agent)
    for url in (CHANNELS, KEYS, DELIVERIES, EVENTS, f"{CHANNELS}add/?kind=telegram"):
        assert client.get(url).status_code == 403, url
    index = client.get("/admin/").content.decode()
    assert CHANNELS not in index
    assert DELIVERIES not in index


def test_another_tenants_rows_are_not_found(world: World) -> None:
    client = login(world.beta.admin)
    alpha = world.alpha
    for url in (
        f"{CHANNELS}{alpha.telegram.account.pk}/change/",
        f"{CHANNELS}{alpha.telegram.account.pk}/delete/",
        f"{CHANNELS}{alpha.telegram.account.pk}/history/",
        f"{KEYS}{alpha.api.account.api_keys.get().pk}/change/",
        f"{DELIVERIES}{alpha.delivery.pk}/change/",
        f"{EVENTS}{alpha.event.pk}/change/",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        _assert_no_secret(response.content.decode(), alpha)
    # Posting to Alpha's channel changes nothing.
    response = client.post(
        f"{CHANNELS}{alpha.telegram.account.pk}/change/",
        {"name": "taken", "bot_token": "999:stolen"},
    )
    assert response.status_code == 404
    account = ChannelAccount.objects.get(pk=alpha.telegram.account.pk)
    assert account.name == "alphamark bot"
    assert account.credentials["bot_token"] == alpha.bot_token


# --- adding and changing a channel -------------------------------------------------------------


def _message_texts(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_adding_a_channel_shows_its_generated_secret_once(world: World) -> None:
    client = login(world.alpha.admin)
    data = {"tenant": world.alpha.tenant.pk, "name": "Second bot", "bot_token": "777:new-token"}
    response = client.post(f"{CHANNELS}add/?kind=telegram", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    account = ChannelAccount.objects.get(name="Second bot")
    assert account.tenant_id == world.alpha.tenant.pk
    assert account.kind == "telegram"
    secret = account.credentials["webhook_secret"]
    assert account.credentials["bot_token"] == "777:new-token"
    shown = client.get(response["Location"])
    body = shown.content.decode()
    assert secret in body  # this once
    assert f"/channels/{account.pk}/webhook/" in body
    assert "777:new-token" not in body
    for url in (CHANNELS, f"{CHANNELS}{account.pk}/change/"):
        again = client.get(url).content.decode()
        assert secret not in again
        assert "777:new-token" not in again


def test_adding_an_api_channel_shows_its_first_key_once(world: World) -> None:
    client = login(world.alpha.admin)
    data = {"tenant": world.alpha.tenant.pk, "name": "CRM"}
    response = client.post(f"{CHANNELS}add/?kind=api", data)
    assert response.status_code == 302
    shown = " ".join(_message_texts(client.get(response["Location"])))
    assert "https://support.example.com/api/v1/" in shown
    key = re.search(r"sbk_[0-9a-f]{8}_[\w-]+", shown)
    assert key is not None
    found = api_key_authenticate(key.group(0))
    assert found is not None
    assert found.channel_account.name == "CRM"
    assert key.group(0) not in client.get(CHANNELS).content.decode()


def test_adding_refuses_what_the_kind_needs_and_another_tenant(world: World) -> None:
    client = login(world.alpha.admin)
    missing = client.post(f"{CHANNELS}add/?kind=telegram", {"tenant": world.alpha.tenant.pk})
    assert missing.status_code == 200
    assert "bot_token" in str(missing.context["adminform"].form.errors)
    foreign = client.post(
        f"{CHANNELS}add/?kind=telegram",
        {"tenant": world.beta.tenant.pk, "name": "Sneaky", "bot_token": "1:x"},
    )
    assert foreign.status_code == 200
    assert "tenant" in foreign.context["adminform"].form.errors
    assert not ChannelAccount.objects.filter(name="Sneaky").exists()


def test_a_blank_secret_keeps_the_current_one(world: World) -> None:
    client = login(world.alpha.admin)
    account = world.alpha.telegram.account
    url = f"{CHANNELS}{account.pk}/change/"
    data = {"name": "Renamed", "is_active": "on", "bot_username": "renamed_bot", "bot_token": ""}
    assert client.post(url, data).status_code == 302
    account.refresh_from_db()
    assert account.name == "Renamed"
    assert account.config["bot_username"] == "renamed_bot"
    assert account.credentials["bot_token"] == world.alpha.bot_token
    assert account.credentials["webhook_secret"] == world.alpha.telegram.generated["webhook_secret"]
    assert client.post(url, {**data, "bot_token": "888:rotated"}).status_code == 302
    account.refresh_from_db()
    assert account.credentials["bot_token"] == "888:rotated"
    assert "888:rotated" not in client.get(url).content.decode()


def test_a_channel_without_history_can_be_deleted(world: World) -> None:
    spare = channel_setup(
        tenant=world.alpha.tenant, kind="sms", settings=SMS_SETTINGS, name="Spare number"
    ).account
    client = login(world.alpha.admin)
    assert client.get(f"{CHANNELS}{spare.pk}/delete/").status_code == 200
    assert client.post(f"{CHANNELS}{spare.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not ChannelAccount.objects.filter(pk=spare.pk).exists()
    event = AuditEvent.objects.get(tenant_id=world.alpha.tenant.pk, action="channel.delete")
    assert event.target == f"channel:{spare.pk}"
    # Beta's admin cannot delete Alpha's.
    beta = login(world.beta.admin)
    url = f"{CHANNELS}{world.alpha.telegram.account.pk}/delete/"
    assert beta.post(url, {"post": "yes"}).status_code == 404
    assert ChannelAccount.objects.filter(pk=world.alpha.telegram.account.pk).exists()


# --- API keys ----------------------------------------------------------------------------------


def test_an_api_key_is_shown_once_and_can_be_revoked(world: World) -> None:
    client = login(world.alpha.admin)
    account = world.alpha.api.account
    response = client.post(f"{KEYS}add/", {"channel_account": account.pk, "name": "Zapier"})
    assert response.status_code == 302
    shown = " ".join(_message_texts(client.get(response["Location"])))
    key = re.search(r"sbk_[0-9a-f]{8}_[\w-]+", shown)
    assert key is not None
    found = api_key_authenticate(key.group(0))
    assert found is not None
    assert found.name == "Zapier"
    assert key.group(0) not in client.get(KEYS).content.decode()
    revoke = {"action": "revoke", "_selected_action": [found.pk]}
    assert client.post(KEYS, revoke).status_code == 302
    assert api_key_authenticate(key.group(0)) is None
    # Beta's admin cannot revoke Alpha's key, nor add one to Alpha's channel.
    beta = login(world.beta.admin)
    alpha_key = ApiKey.objects.get(channel_account=account, name="alphamark api")
    beta.post(KEYS, {"action": "revoke", "_selected_action": [alpha_key.pk]})
    assert ApiKey.objects.get(pk=alpha_key.pk).revoked_at is None
    refused = beta.post(f"{KEYS}add/", {"channel_account": account.pk, "name": "stolen"})
    assert refused.status_code == 200
    assert not ApiKey.objects.filter(name="stolen").exists()


# --- the outbox --------------------------------------------------------------------------------


def test_retry_delivery_puts_a_failed_delivery_back_to_pending(world: World) -> None:
    alpha, beta = world.alpha, world.beta
    client = login(alpha.admin)
    failed = client.get(DELIVERIES, {"state__exact": "failed"})
    assert f"{DELIVERIES}{alpha.delivery.pk}/change/" in failed.content.decode()
    action = {"action": "retry", "_selected_action": [alpha.delivery.pk, beta.delivery.pk]}
    response = client.post(DELIVERIES, action)
    assert response.status_code == 302
    alpha.delivery.refresh_from_db()
    assert alpha.delivery.state == OutboundDelivery.State.PENDING
    assert alpha.delivery.attempts == 0
    beta.delivery.refresh_from_db()
    assert beta.delivery.state == OutboundDelivery.State.FAILED  # not Alpha's to retry
    assert "1 delivery(ies) queued again." in " ".join(
        _message_texts(client.get(response["Location"]))
    )
    pending = client.get(DELIVERIES, {"state__exact": "failed"}).content.decode()
    assert f"{DELIVERIES}{alpha.delivery.pk}/change/" not in pending


# --- conversations show their channel ----------------------------------------------------------


def test_conversations_show_their_channel_and_attachments(world: World) -> None:
    client = login(world.agent)
    listed = client.get(CONVERSATIONS, {"channel__exact": "telegram"}).content.decode()
    assert str(world.alpha.conversation.pk)[:8] in listed
    assert "Telegram" in listed
    assert (
        str(world.alpha.conversation.pk)[:8]
        not in client.get(CONVERSATIONS, {"channel__exact": "widget"}).content.decode()
    )
    page = client.get(f"{CONVERSATIONS}{world.alpha.conversation.pk}/change/").content.decode()
    assert "alphamark-receipt.jpg" in page
    assert "alphamark bot" in page  # the channel it came through
    _assert_no_secret(page, world.alpha)
