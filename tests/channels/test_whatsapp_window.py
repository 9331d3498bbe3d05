"""WhatsApp's 24-hour customer service window, and how the Graph API's refusals are retried.

A customer who last wrote 24 hours ago or more can be sent only template messages: agents are
refused before anything is stored (the service, the agent socket) and warned on the admin page;
a delivery WhatsApp refuses with 131047 fails for good with a clear reason, while 429 is tried
again after its Retry-After.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from conversations.agents import AgentActionError, agent_message_post
from conversations.channel_windows import WINDOW_CLOSED_MESSAGE, free_form_window_open
from conversations.messages import message_append
from conversations.models import (
    ChannelAccount,
    Contact,
    Conversation,
    Message,
    OutboundDelivery,
)
from tests.channels.notice_text import without_notice
from tests.channels.test_whatsapp import NUMBER_ID, PHONE, post, whatsapp_account
from tests.conversations.test_agents import agent_welcome, connect_agent, make_user
from tests.support.fake_whatsapp import RE_ENGAGEMENT_ERROR, text_message, whatsapp_ok
from tests.support.provider_server import ProviderServer
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]

MESSAGES_PATH = f"/{NUMBER_ID}/messages"


@pytest.fixture
def graph(settings: Any) -> Iterator[ProviderServer]:
    with ProviderServer(default=whatsapp_ok) as server:
        settings.WHATSAPP_API_BASE = server.url
        yield server


def whatsapp_conversation(
    account: ChannelAccount, *, customer_wrote_ago: timedelta | None, status: str
) -> Conversation:
    """A WhatsApp conversation whose customer last wrote `customer_wrote_ago` ago."""
    contact = Contact.objects.create(
        tenant_id=account.tenant_id, channel="whatsapp", channel_user_id=PHONE
    )
    conversation = Conversation.objects.create(
        tenant_id=account.tenant_id,
        contact=contact,
        channel="whatsapp",
        channel_account=account,
        channel_thread=PHONE,
        status=status,
    )
    if customer_wrote_ago is not None:
        message = message_append(
            conversation=conversation, role=Message.Role.USER, text="My order is late"
        )
        Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - customer_wrote_ago)
    return conversation


# --- the rule ---------------------------------------------------------------------------------


def test_the_window_is_open_for_24_hours_after_the_customers_last_message(
    make_tenant: Any,
) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    recent = whatsapp_conversation(
        account, customer_wrote_ago=timedelta(hours=23, minutes=50), status="with_agent"
    )
    assert free_form_window_open(recent)
    Message.objects.filter(conversation=recent).update(
        created_at=timezone.now() - timedelta(hours=24, minutes=1)
    )
    assert not free_form_window_open(recent)
    # An assistant's or agent's message does not reopen it: only the customer's does.
    message_append(conversation=recent, role=Message.Role.ASSISTANT, text="Any news?")
    assert not free_form_window_open(recent)
    message_append(conversation=recent, role=Message.Role.USER, text="Still waiting")
    assert free_form_window_open(recent)

    other_tenant, _ = make_tenant()
    widget_contact = Contact.objects.create(tenant=other_tenant)
    widget = Conversation.objects.create(tenant=other_tenant, contact=widget_contact)
    assert free_form_window_open(widget)  # only WhatsApp has a window


# --- agents -----------------------------------------------------------------------------------


def test_an_agent_is_refused_outside_the_window_and_nothing_is_sent(
    make_tenant: Any, graph: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    conversation = whatsapp_conversation(
        account, customer_wrote_ago=timedelta(hours=30), status="waiting_for_agent"
    )
    agent = make_user("ana", tenant=tenant, display_name="Ana")

    with pytest.raises(AgentActionError) as refused:
        agent_message_post(conversation=conversation, agent=agent, text="Sorry for the wait!")
    assert refused.value.code == "channel_window_closed"
    assert refused.value.detail == WINDOW_CLOSED_MESSAGE
    assert "24 hours" in refused.value.detail
    conversation.refresh_from_db()
    assert conversation.status == "waiting_for_agent"  # not taken over implicitly either
    assert not Message.objects.filter(conversation=conversation, role="agent").exists()
    assert not Message.objects.filter(conversation=conversation, role="system").exists()
    assert not OutboundDelivery.objects.exists()


def test_an_agent_inside_the_window_reaches_the_customer(
    make_tenant: Any, graph: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    conversation = whatsapp_conversation(
        account, customer_wrote_ago=timedelta(hours=2), status="with_agent"
    )
    agent = make_user("ana", tenant=tenant, display_name="Ana")
    conversation.assigned_agent = agent
    conversation.save(update_fields=["assigned_agent"])

    agent_message_post(conversation=conversation, agent=agent, text="Your refund is on its way.")
    graph.wait_for(
        lambda reqs: any(
            without_notice(r.json["text"]["body"]) == "Your refund is on its way."
            for r in reqs
            if r.json
        ),
        timeout=15,
    )
    assert graph.received(MESSAGES_PATH)[-1].json["to"] == PHONE


async def test_the_agent_socket_shows_the_refusal(make_tenant: Any, graph: ProviderServer) -> None:
    def arrange() -> tuple[Conversation, Any]:
        tenant, _ = make_tenant()
        account = whatsapp_account(tenant)
        conversation = whatsapp_conversation(
            account, customer_wrote_ago=timedelta(days=3), status="waiting_for_agent"
        )
        return conversation, make_user("ana", tenant=tenant, display_name="Ana")

    conversation, agent = await database_sync_to_async(arrange)()
    ws = await connect_agent(str(conversation.pk), agent)
    await agent_welcome(ws)
    await ws.send_json_to({"type": "reply", "text": "Hello again"})
    frame = await ws.receive_json_from(timeout=5)
    assert frame["type"] == "error"
    assert frame["code"] == "channel_window_closed"
    assert frame["detail"] == WINDOW_CLOSED_MESSAGE
    await ws.disconnect()
    count = await database_sync_to_async(
        Message.objects.filter(conversation=conversation, role="agent").count
    )()
    assert count == 0


def test_the_admin_page_warns_outside_the_window_only(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    agent = make_user("ana", tenant=tenant, display_name="Ana")
    client = Client()
    client.force_login(agent)
    stale = whatsapp_conversation(
        account, customer_wrote_ago=timedelta(hours=25), status="waiting_for_agent"
    )
    page = client.get(f"/admin/conversations/conversation/{stale.pk}/change/")
    assert page.status_code == 200
    assert WINDOW_CLOSED_MESSAGE in page.content.decode()

    Message.objects.filter(conversation=stale).update(created_at=timezone.now())
    fresh = client.get(f"/admin/conversations/conversation/{stale.pk}/change/")
    assert fresh.status_code == 200
    assert WINDOW_CLOSED_MESSAGE not in fresh.content.decode()


# --- the Graph API's refusals -----------------------------------------------------------------


def test_a_re_engagement_refusal_fails_for_good_with_a_clear_reason(
    make_tenant: Any, llm: Any, graph: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    graph.fail_next(MESSAGES_PATH, status=400, body=RE_ENGAGEMENT_ERROR, times=5)
    post(account, text_message(NUMBER_ID, phone=PHONE, text="Hi [[reply: Hello!]]"))

    failed = wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.FAILED).first(),
        timeout=30,
        message="the refused delivery to fail",
    )
    assert failed.attempts == 1  # not retried
    assert failed.last_status == 400
    assert "24 hours" in failed.last_error
    assert "131047" in failed.last_error
    assert "EAAG-token" not in failed.last_error
    assert len(graph.received(MESSAGES_PATH)) == 1


def test_a_rate_limited_send_is_tried_again_after_retry_after(
    make_tenant: Any, llm: Any, graph: ProviderServer
) -> None:
    tenant, _ = make_tenant()
    account = whatsapp_account(tenant)
    graph.fail_next(
        MESSAGES_PATH,
        status=429,
        headers={"Retry-After": "1"},
        body={"error": {"message": "(#130429) Rate limit hit", "code": 130429}},
    )
    post(account, text_message(NUMBER_ID, phone=PHONE, text="Hi [[reply: Hello again!]]"))

    sent = wait_until(
        lambda: OutboundDelivery.objects.filter(state=OutboundDelivery.State.SENT).first(),
        timeout=30,
        message="the delivery to succeed on its second try",
    )
    assert sent.attempts == 2
    bodies = [without_notice(r.json["text"]["body"]) for r in graph.received(MESSAGES_PATH)]
    assert bodies == ["Hello again!", "Hello again!"]
