"""`manage.py channel_add`: a channel set up from the command line, its secrets encrypted and
shown once, and clear refusals of bad input (never echoing a secret)."""

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from conversations.channels.api_keys import api_key_authenticate
from conversations.models import ApiKey, ChannelAccount
from supportbot.compliance.models import AuditEvent

pytestmark = pytest.mark.django_db

BOT_TOKEN = "123456:telegram-bot-token-never-shown"


def run(*args: str) -> str:
    out = StringIO()
    call_command("channel_add", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def tenant(make_tenant: Any, settings: Any) -> Any:
    settings.PUBLIC_URL = "https://support.example.com"
    tenant, _ = make_tenant(name="Acme Shop")
    return tenant


def test_telegram_channel_is_set_up_and_its_secret_shown_once(tenant: Any) -> None:
    out = run(
        "--tenant", tenant.slug, "--kind", "telegram", "--set", f"bot_token={BOT_TOKEN}",
        "--set", "bot_username=acme_bot", "--name", "Acme bot", "--json",
    )  # fmt: skip
    shown = json.loads(out)
    account = ChannelAccount.objects.get(pk=shown["id"])
    assert account.tenant_id == tenant.pk
    assert account.kind == "telegram"
    assert account.name == "Acme bot"
    assert account.config == {"bot_username": "acme_bot"}
    assert shown["webhook_url"] == f"https://support.example.com/channels/{account.pk}/webhook/"
    webhook_secret = shown["generated"]["webhook_secret"]
    assert len(webhook_secret) >= 40
    assert account.credentials == {"bot_token": BOT_TOKEN, "webhook_secret": webhook_secret}
    assert BOT_TOKEN not in out  # a secret given is never printed back
    # Encrypted at rest: the raw column holds neither secret.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT credentials::text FROM conversations_channelaccount WHERE id = %s",
            [account.pk],
        )
        raw = cursor.fetchone()[0]
    assert BOT_TOKEN not in raw
    assert webhook_secret not in raw
    event = AuditEvent.objects.get(tenant_id=tenant.pk, action="channel.create")
    assert event.target == f"channel:{account.pk}"
    details = json.dumps(event.detail.data)
    assert "bot_token" in details
    assert BOT_TOKEN not in details
    assert webhook_secret not in details


def test_plain_output_lists_the_webhook_and_generated_secret(tenant: Any) -> None:
    out = run(
        "--tenant", tenant.slug, "--kind", "whatsapp", "--set", "phone_number_id=1099",
        "--set", "access_token=EAAG-token", "--set", "app_secret=meta-app-secret",
    )  # fmt: skip
    account = ChannelAccount.objects.get(tenant=tenant, kind="whatsapp")
    assert f"Channel {account.pk} (whatsapp) of {tenant.slug}" in out
    assert f"webhook URL: https://support.example.com/channels/{account.pk}/webhook/" in out
    assert f"verify_token: {account.credentials['verify_token']}" in out
    assert "meta-app-secret" not in out
    assert "EAAG-token" not in out


def test_a_given_secret_is_not_replaced_by_a_generated_one(tenant: Any) -> None:
    out = run(
        "--tenant", tenant.slug, "--kind", "email", "--set", "address=help@acme.test",
        "--set", "smtp_host=smtp.acme.test", "--set", "inbound_secret=chosen-secret", "--json",
    )  # fmt: skip
    shown = json.loads(out)
    account = ChannelAccount.objects.get(pk=shown["id"])
    assert shown["generated"] == {}
    assert account.credentials == {"inbound_secret": "chosen-secret"}
    # The kind's defaults are written out, so the admin shows them.
    assert account.config["smtp_port"] == "587"
    assert account.config["imap_folder"] == "INBOX"


def test_an_api_channel_gets_a_working_key(tenant: Any) -> None:
    shown = json.loads(run("--tenant", tenant.slug, "--kind", "api", "--name", "CRM", "--json"))
    assert shown["webhook_url"] == "https://support.example.com/api/v1/"
    key = api_key_authenticate(shown["api_key"])
    assert key is not None
    assert str(key.channel_account_id) == shown["id"]
    assert key.tenant_id == tenant.pk
    assert ApiKey.objects.filter(channel_account_id=shown["id"]).count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nobody", "--kind", "sms"], "No tenant with the slug 'nobody'"),
        (["--kind", "fax"], "Unknown channel kind 'fax'; valid kinds: email, telegram"),
        (
            ["--kind", "sms", "--set", "colour=blue"],
            "Unknown setting colour for a sms channel; valid settings: account_sid, from_number",
        ),
        (["--kind", "sms", "--set", "account_sid=AC1"], "needs from_number, auth_token"),
        (["--kind", "telegram", "--set", "bot_token"], "--set takes KEY=VALUE"),
    ],
)
def test_bad_input_is_refused_clearly(tenant: Any, args: list[str], message: str) -> None:
    if "--tenant" not in args:
        args = ["--tenant", tenant.slug, *args]
    with pytest.raises(CommandError) as refused:
        run(*args)
    assert message in str(refused.value)
    assert not ChannelAccount.objects.exists()


def test_a_refusal_never_echoes_a_secret_value(tenant: Any) -> None:
    with pytest.raises(CommandError) as refused:
        run("--tenant", tenant.slug, "--kind", "sms", "--set", "auth_token=twilio-secret-xyz")
    assert "account_sid" in str(refused.value)
    assert "twilio-secret-xyz" not in str(refused.value)
