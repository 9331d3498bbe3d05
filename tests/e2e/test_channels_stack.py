"""Every channel through real processes: Daphne, a Celery worker and a Celery beat as child
processes, each channel set up with `manage.py channel_add`, and the providers replaced only at
the HTTP boundary (loopback Telegram, WhatsApp, Slack and Twilio APIs, an SMTP server, a
Dovecot mailbox). Each test speaks to Daphne over HTTP as the provider would and checks what
the provider's side received: the assistant's answer on the channel the customer wrote on.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator
from websockets.sync.client import connect
from websockets.typing import Origin

from conversations.models import Contact, Conversation, InboundEvent, OutboundDelivery
from conversations.notices import notice
from tests.conversations.test_agents import make_user, session_cookie
from tests.support import fake_slack, fake_whatsapp
from tests.support import fake_telegram as tg
from tests.support.channel_stack import (
    DEADLINE,
    ChannelStack,
    channel_processes_start,
    channel_stack_env,
    database_flush,
)
from tests.support.fake_twilio import incoming_message, twilio_ok
from tests.support.mail_servers import Dovecot, SmtpRecorder
from tests.support.provider_server import ProviderServer
from tests.support.stack import (
    free_port,
    wait_until,
)

pytestmark = pytest.mark.e2e

SUPPORT = "support@shop.example"
CUSTOMER_EMAIL = "jane.doe@customer.example"
IMAP_PASSWORD = "imap-e2e-password"
NUMBER_ID = "106540352242922"
APP_SECRET = "meta-app-secret-of-the-shop"
OTHER_APP_SECRET = "meta-app-secret-of-another-shop"
SLACK_TOKEN = "xoxb-e2e-shop-token"
SLACK_SECRET = "slack-signing-secret-of-the-shop"
ACCOUNT_SID = "AC" + "e2" * 16
AUTH_TOKEN = "twilio-auth-token-of-the-shop"
OUR_NUMBER = "+15017122661"


# --- the stack --------------------------------------------------------------------------------


@dataclass
class Providers:
    """The provider fakes, started before the stack so its settings can point at them."""

    bot: tg.FakeBotApi
    telegram: ProviderServer
    whatsapp: ProviderServer
    slack_web: fake_slack.SlackWebApi
    slack: ProviderServer
    twilio: ProviderServer
    smtp: SmtpRecorder
    dovecot: Dovecot


def _set_up_channels(stack: ChannelStack) -> None:
    """One tenant with every channel (and another tenant with a WhatsApp channel), set up as an
    operator would: `manage.py tenant_create` and `manage.py channel_add`."""
    dovecot, smtp = stack.providers.dovecot, stack.providers.smtp
    stack.tenant = stack.tenant_create("Channel shop")
    other = stack.tenant_create("Other shop")
    wanted: dict[str, tuple[str, str, dict[str, str]]] = {
        "telegram": (stack.tenant, "telegram",
                     {"bot_token": tg.BOT_TOKEN, "bot_username": "shop_help_bot"}),
        "whatsapp": (stack.tenant, "whatsapp",
                     {"phone_number_id": NUMBER_ID, "access_token": "EAAG-e2e-token",
                      "app_secret": APP_SECRET}),
        "slack": (stack.tenant, "slack",
                  {"bot_token": SLACK_TOKEN, "signing_secret": SLACK_SECRET,
                   "bot_user_id": "U0LAN0Z89", "team_id": "T0001"}),
        "sms": (stack.tenant, "sms",
                {"account_sid": ACCOUNT_SID, "from_number": OUR_NUMBER,
                 "auth_token": AUTH_TOKEN}),
        "email": (stack.tenant, "email",
                  {"address": SUPPORT, "imap_host": "127.0.0.1", "imap_port": str(dovecot.port),
                   "imap_security": "none", "imap_password": IMAP_PASSWORD,
                   "smtp_host": "127.0.0.1", "smtp_port": str(smtp.port),
                   "smtp_security": "none"}),
        "api": (stack.tenant, "api", {}),
        "other-whatsapp": (other, "whatsapp",
                           {"phone_number_id": "999000111222333",
                            "access_token": "EAAG-other-token", "app_secret": OTHER_APP_SECRET}),
    }  # fmt: skip
    # Two at a time: each command is a Python process of its own, started in parallel.
    with ThreadPoolExecutor(max_workers=2) as pool:
        added = {
            name: pool.submit(stack.channel_add, tenant, kind, **values)
            for name, (tenant, kind, values) in wanted.items()
        }
        stack.channels = {name: future.result(timeout=300) for name, future in added.items()}
    assert {name: shown["kind"] for name, shown in stack.channels.items()} == {
        name: kind for name, (_tenant, kind, _values) in wanted.items()
    }
    assert all(shown["webhook_url"].startswith(stack.base_url) for shown in stack.channels.values())


def _api_bases(providers: Providers) -> dict[str, str]:
    return {
        "TELEGRAM_API_BASE": providers.telegram.url,
        "WHATSAPP_API_BASE": providers.whatsapp.url,
        "SLACK_API_BASE": providers.slack.url + "/api",
        "TWILIO_API_BASE": providers.twilio.url,
    }


def _providers(stack: ExitStack) -> Providers:
    bot = tg.FakeBotApi()
    slack_web = fake_slack.SlackWebApi(token=SLACK_TOKEN)
    return Providers(
        bot=bot,
        telegram=stack.enter_context(ProviderServer(default=bot)),
        whatsapp=stack.enter_context(ProviderServer(default=fake_whatsapp.whatsapp_ok)),
        slack_web=slack_web,
        slack=stack.enter_context(ProviderServer(default=slack_web.respond)),
        twilio=stack.enter_context(ProviderServer(default=twilio_ok)),
        smtp=stack.enter_context(SmtpRecorder()),
        dovecot=stack.enter_context(Dovecot(user=SUPPORT, password=IMAP_PASSWORD)),
    )


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any, llm_server: Any) -> Iterator[ChannelStack]:
    with ExitStack() as exits:
        providers = _providers(exits)
        beat_dir = exits.enter_context(tempfile.TemporaryDirectory(prefix="supportbot-beat-"))
        port = free_port()
        with django_db_blocker.unblock():
            env = channel_stack_env(port, llm_server.base_url, _api_bases(providers))
        built = ChannelStack(
            base_url=f"http://127.0.0.1:{port}",
            env=env,
            providers=providers,
            blocker=django_db_blocker,
        )
        try:
            channel_processes_start(built, port, beat_dir)
            _set_up_channels(built)
            yield built
        finally:
            for process in reversed(built.processes):
                process.stop()
            database_flush(django_db_blocker)


# --- what each provider sent and received -----------------------------------------------------


def telegram_update(stack: ChannelStack, update: dict[str, Any]) -> httpx.Response:
    secret = stack.channels["telegram"]["generated"]["webhook_secret"]
    return stack.post(
        stack.webhook("telegram"),
        json.dumps(update).encode(),
        "application/json",
        **{"X-Telegram-Bot-Api-Secret-Token": secret},
    )


def bot_texts_with(bot: tg.FakeBotApi, chat: int, text: str) -> list[str]:
    return [shown for shown in bot.chat_texts(chat) if text in shown]


def wait_for_bot_text(stack: ChannelStack, chat: int, text: str) -> list[str]:
    return list(
        stack.wait(
            lambda: bot_texts_with(stack.providers.bot, chat, text),
            f"the Telegram chat {chat} to show {text!r}",
        )
    )


def whatsapp_texts(stack: ChannelStack) -> list[str]:
    requests = stack.providers.whatsapp.received(f"/{NUMBER_ID}/messages")
    return [str((r.json or {}).get("text", {}).get("body", "")) for r in requests]


def slack_texts(stack: ChannelStack) -> list[str]:
    requests = [
        *stack.providers.slack.received("/api/chat.postMessage"),
        *stack.providers.slack.received("/api/chat.update"),
    ]
    return [str(fake_slack.request_payload(r).get("text", "")) for r in requests]


def sms_bodies(stack: ChannelStack) -> list[str]:
    requests = stack.providers.twilio.received(f"/Accounts/{ACCOUNT_SID}/Messages.json")
    return [r.form.get("Body", "") for r in requests]


def wait_for_text(stack: ChannelStack, texts: Any, text: str, where: str) -> list[str]:
    return list(
        stack.wait(
            lambda: [t for t in texts(stack) if text in t],
            f"{where} to receive {text!r}",
        )
    )


def inbound_events(stack: ChannelStack, kind: str, provider_event_id: str = "") -> int:
    with stack.orm():
        events = InboundEvent.objects.filter(channel_account_id=stack.channels[kind]["id"])
        if provider_event_id:
            events = events.filter(provider_event_id=provider_event_id)
        return events.count()


# --- each channel answered on its own channel -------------------------------------------------


def test_a_telegram_update_is_answered_once_even_when_posted_again(stack: ChannelStack) -> None:
    person = {**tg.PERSON, "id": 610001, "username": "ada_e2e"}
    update = tg.message_update(
        880001, text="Where is my order? [[reply: It ships tomorrow.]]", person=person
    )
    assert telegram_update(stack, update).status_code == 200
    [answer] = wait_for_bot_text(stack, 610001, "It ships tomorrow.")
    assert answer.startswith("It ships tomorrow.")

    # Telegram delivers the same update again (it never saw our 200, say).
    assert telegram_update(stack, update).status_code == 200
    assert inbound_events(stack, "telegram", "880001") == 1
    # A later message of the same person is processed after anything the redelivery queued:
    # once it is answered, a second answer to the first would have come already.
    fence = tg.message_update(
        880002, text="And the invoice? [[reply: It is in the parcel.]]", person=person,
        message_id=2,
    )  # fmt: skip
    assert telegram_update(stack, fence).status_code == 200
    wait_for_bot_text(stack, 610001, "It is in the parcel.")
    assert len(bot_texts_with(stack.providers.bot, 610001, "It ships tomorrow.")) == 1
    assert len(stack.providers.bot.chat_texts(610001)) == 2
    sends = [
        payload
        for _at, payload in stack.providers.bot.answered("sendMessage")
        if str(payload["chat_id"]) == "610001"
    ]
    assert len(sends) == 2  # one message per answer (then edited while streamed)


def test_a_signed_whatsapp_message_is_answered_on_whatsapp(stack: ChannelStack) -> None:
    payload = fake_whatsapp.text_message(
        NUMBER_ID, phone="16505550101", text="Do you ship to Norway? [[reply: Yes, in 3 days.]]"
    )
    body = fake_whatsapp.raw(payload)
    response = stack.post(
        stack.webhook("whatsapp"),
        body,
        "application/json",
        **{"X-Hub-Signature-256": fake_whatsapp.sign(body, APP_SECRET)},
    )
    assert response.status_code == 200
    [answer] = wait_for_text(stack, whatsapp_texts, "Yes, in 3 days.", "the Graph API")
    assert answer.startswith("Yes, in 3 days.")
    [request] = [
        r
        for r in stack.providers.whatsapp.received(f"/{NUMBER_ID}/messages")
        if "Yes, in 3 days." in r.json["text"]["body"]
    ]
    assert request.json["to"] == "16505550101"
    assert request.headers["authorization"] == "Bearer EAAG-e2e-token"


def test_the_whatsapp_challenge_is_echoed_for_the_generated_verify_token(
    stack: ChannelStack,
) -> None:
    token = stack.channels["whatsapp"]["generated"]["verify_token"]
    query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    answered = httpx.get(stack.webhook("whatsapp") + "?" + urlencode(query), timeout=30)
    assert (answered.status_code, answered.text) == (200, "1158201444")
    wrong = {**query, "hub.verify_token": "not-the-token"}
    refused = httpx.get(stack.webhook("whatsapp") + "?" + urlencode(wrong), timeout=30)
    assert refused.status_code == 403


def test_a_signed_slack_event_is_answered_in_slack(stack: ChannelStack) -> None:
    event = fake_slack.direct_message(
        "Can I change my address? [[reply: Yes, until it ships.]]",
        user="U0E2E0001",
        channel="D0E2E0001",
        ts="1700000100.000100",
    )
    body = fake_slack.body_of(fake_slack.event_callback(event, event_id="Ev0E2E0001"))
    response = stack.post(
        stack.webhook("slack"),
        body,
        "application/json",
        **fake_slack.signed_headers(SLACK_SECRET, body),
    )
    assert response.status_code == 200
    wait_for_text(stack, slack_texts, "Yes, until it ships.", "the Slack Web API")
    # One message carries the answer (a notice may come before it, as its own message).
    posted = stack.providers.slack.received("/api/chat.postMessage")
    posts = [fake_slack.request_payload(r) for r in posted]
    answers = [p for p in posts if "Yes, until it ships." in p["text"]]
    assert [p["channel"] for p in answers] == ["D0E2E0001"]
    assert {p["channel"] for p in posts} == {"D0E2E0001"}
    auth = {r.headers.get("authorization") for r in stack.providers.slack.requests}
    assert auth == {f"Bearer {SLACK_TOKEN}"}


def test_a_signed_twilio_sms_is_answered_by_sms(stack: ChannelStack) -> None:
    url = stack.webhook("sms")
    fields = incoming_message(
        account_sid=ACCOUNT_SID,
        to=OUR_NUMBER,
        phone="+15558675310",
        body="Are you open on Sunday? [[reply: Yes, 10 to 4.]]",
    )
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, fields)
    response = stack.post(
        url,
        urlencode(fields).encode(),
        "application/x-www-form-urlencoded",
        **{"X-Twilio-Signature": signature},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    wait_for_text(stack, sms_bodies, "Yes, 10 to 4.", "the Twilio Messages API")
    [request] = [
        r
        for r in stack.providers.twilio.received("/Messages.json")
        if "Yes, 10 to 4." in r.form["Body"]
    ]
    assert (request.form["To"], request.form["From"]) == ("+15558675310", OUR_NUMBER)


def test_an_email_in_the_mailbox_is_polled_and_answered_by_email(stack: ChannelStack) -> None:
    mail = EmailMessage()
    mail["From"] = f"Jane Doe <{CUSTOMER_EMAIL}>"
    mail["To"] = SUPPORT
    mail["Subject"] = "Damaged parcel"
    message_id = make_msgid(domain="customer.example")
    mail["Message-ID"] = message_id
    mail.set_content("The parcel arrived damaged. [[reply: A replacement is on its way.]]\n")
    stack.providers.dovecot.append(mail.as_bytes())

    def answered() -> Any:
        stack.alive_check()
        return [m for m in stack.providers.smtp.mails if "A replacement is on its way." in m.body]

    [reply] = wait_until(answered, timeout=DEADLINE, message="the answer by email")
    assert reply.rcpt_tos == [CUSTOMER_EMAIL]
    assert reply.header("Subject") == "Re: Damaged parcel"
    assert reply.header("In-Reply-To") == message_id
    wait_until(
        lambda: stack.providers.dovecot.unseen() == 0,
        timeout=DEADLINE,
        message="the polled email marked read",
    )
    assert stack.providers.dovecot.seen() >= 1


def test_a_rest_api_conversation_gets_the_assistants_answer(stack: ChannelStack) -> None:
    api = stack.base_url + "/api/v1"
    auth = {"Authorization": f"Bearer {stack.channels['api']['api_key']}"}
    created = httpx.post(
        f"{api}/conversations", json={"external_user_id": "user-e2e"}, headers=auth, timeout=30
    )
    assert created.status_code == 201, created.text
    conversation_id = created.json()["id"]
    posted = httpx.post(
        f"{api}/conversations/{conversation_id}/messages",
        json={"client_id": "e2e-1", "text": "How do returns work? [[reply: Free for 30 days.]]"},
        headers=auth,
        timeout=30,
    )
    assert posted.status_code == 202, posted.text

    def answer() -> Any:
        stack.alive_check()
        listed = httpx.get(
            f"{api}/conversations/{conversation_id}/messages", headers=auth, timeout=30
        ).json()["messages"]
        return [m for m in listed if m["role"] == "assistant" and m["status"] == "complete"]

    [reply] = wait_until(answer, timeout=DEADLINE, message="the assistant's answer over the API")
    assert reply["text"] == "Free for 30 days."
    other = httpx.get(f"{api}/conversations/{conversation_id}/messages", timeout=30)
    assert other.status_code == 401


# --- refusals ---------------------------------------------------------------------------------


def test_forged_signatures_are_refused_and_nothing_is_stored(stack: ChannelStack) -> None:
    refused_channels = [stack.channels["whatsapp"]["id"], stack.channels["slack"]["id"]]
    with stack.orm():
        events_before = InboundEvent.objects.filter(channel_account_id__in=refused_channels).count()
        contacts_before = Contact.objects.count()
    # WhatsApp: signed with another tenant's app secret, and with none that is right.
    payload = fake_whatsapp.text_message(NUMBER_ID, phone="16505550199", text="Let me in")
    body = fake_whatsapp.raw(payload)
    for secret in (OTHER_APP_SECRET, "guessed-secret"):
        refused = stack.post(
            stack.webhook("whatsapp"),
            body,
            "application/json",
            **{"X-Hub-Signature-256": fake_whatsapp.sign(body, secret)},
        )
        assert refused.status_code == 401
        assert APP_SECRET not in refused.text
    # Slack: a body changed after it was signed.
    event = fake_slack.event_callback(
        fake_slack.direct_message("Hello", channel="D0E2E0099"), event_id="Ev0E2E0099"
    )
    signed = fake_slack.signed_headers(SLACK_SECRET, fake_slack.body_of(event))
    event["event"]["text"] = "Send me every customer's address"
    refused = stack.post(
        stack.webhook("slack"), fake_slack.body_of(event), "application/json", **signed
    )
    assert refused.status_code == 401
    with stack.orm():
        events = InboundEvent.objects.filter(channel_account_id__in=refused_channels)
        assert events.count() == events_before
        assert Contact.objects.count() == contacts_before
    assert not [t for t in whatsapp_texts(stack) if "16505550199" in t]


# --- an agent on a channel --------------------------------------------------------------------


def _agent_cookie(stack: ChannelStack, conversation_id: str) -> str:
    """A staff member of the shop, signed in: their session cookie."""
    with stack.orm():
        tenant = Conversation.objects.select_related("tenant").get(pk=conversation_id).tenant
        agent = make_user(f"ana-{uuid.uuid4().hex[:8]}", tenant=tenant, display_name="Ana")
        return str(session_cookie(agent))


def _telegram_conversation(stack: ChannelStack, chat: int) -> str:
    with stack.orm():
        conversation = Conversation.objects.filter(
            channel_account_id=stack.channels["telegram"]["id"]
        )
        return next(str(c.pk) for c in conversation if c.channel_thread == str(chat))


def _assistant_delivered(stack: ChannelStack, conversation_id: str) -> bool:
    with stack.orm():
        return OutboundDelivery.objects.filter(
            conversation_id=conversation_id, message__role="assistant", state="sent"
        ).exists()


def test_an_agents_takeover_reply_goes_out_on_telegram(stack: ChannelStack) -> None:
    chat = 610002
    person = {**tg.PERSON, "id": chat, "username": "grace_e2e", "first_name": "Grace"}
    update = tg.message_update(
        880101, text="My parcel is lost [[reply: Let me check.]]", person=person
    )
    assert telegram_update(stack, update).status_code == 200
    wait_for_bot_text(stack, chat, "Let me check.")
    conversation_id = _telegram_conversation(stack, chat)
    # The assistant's reply is delivered (not still streaming) before the agent takes over.
    stack.wait(
        lambda: _assistant_delivered(stack, conversation_id),
        "the assistant's reply delivered",
    )
    cookie = _agent_cookie(stack, conversation_id)

    ws_url = stack.base_url.replace("http://", "ws://")
    with connect(
        f"{ws_url}/ws/agent/conversations/{conversation_id}/",
        origin=Origin(stack.base_url),
        additional_headers={"Cookie": f"sessionid={cookie}"},
        open_timeout=30,
    ) as ws:
        welcome = json.loads(ws.recv(timeout=30))
        assert welcome["type"] == "welcome", welcome
        ws.send(json.dumps({"type": "take_over"}))
        ws.send(json.dumps({"type": "reply", "text": "Hi, Ana here. I found your parcel."}))
        wait_for_bot_text(stack, chat, "Hi, Ana here. I found your parcel.")

    sends = [
        payload["text"]
        for _at, payload in stack.providers.bot.answered("sendMessage")
        if str(payload["chat_id"]) == str(chat)
    ]
    agent_sends = [text for text in sends if "Hi, Ana here. I found your parcel." in text]
    assert agent_sends == ["Hi, Ana here. I found your parcel."]
    # The customer was told a person took over, before the person's reply.
    joined = notice("agent_joined", "en", name="Ana")
    assert joined in sends
    assert sends.index(joined) < sends.index("Hi, Ana here. I found your parcel.")
    with stack.orm():
        agent_delivery = wait_until(
            lambda: OutboundDelivery.objects.filter(
                conversation_id=conversation_id, message__role="agent", state="sent"
            ).first(),
            timeout=DEADLINE,
            message="the agent's reply recorded as sent",
        )
    assert agent_delivery.provider_message_ids


# --- last: what the processes logged ----------------------------------------------------------


def test_no_channel_secret_is_in_the_processes_logs(stack: ChannelStack) -> None:
    """Every secret the channels were set up with, or that `channel_add` generated, stays out
    of what Daphne, the worker and the beat logged (at DEBUG) while the tests above ran."""
    generated = [
        value for shown in stack.channels.values() for value in shown["generated"].values()
    ]
    secrets = [
        tg.BOT_TOKEN, "EAAG-e2e-token", APP_SECRET, OTHER_APP_SECRET, SLACK_TOKEN, SLACK_SECRET,
        AUTH_TOKEN, IMAP_PASSWORD, stack.channels["api"]["api_key"], *generated,
    ]  # fmt: skip
    assert len(generated) >= 4  # Telegram's webhook secret, two verify tokens, email's secret
    logs = {process.name: process.log_text() for process in stack.processes}
    # The logs are those of the work above: the worker received the channels' jobs.
    assert "Task conversations.channel_deliver[" in logs["worker"]
    assert "Sending due task email-poll" in logs["beat"]
    leaks = [
        (name, secret[:6] + "...")
        for name, text in logs.items()
        for secret in secrets
        if secret in text
    ]
    assert leaks == []
