"""Agents on a message channel: the handoff notice, the takeover notice, the agent's replies
through the agent socket and the hand-back notice all reach the conversation's channel through
the outbox; a reply cancelled mid-stream by a takeover is never delivered.

Real agent socket, real Celery worker, the scripted model, and the loopback provider behind a
test adapter (see test_outbox).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async

from conversations.handoff import conversation_request_agent
from conversations.models import Conversation, LLMCall, Message, OutboundDelivery
from conversations.notices import notice
from conversations.services import message_post_from_visitor
from supportbot.tenants.models import Tenant
from tests.channels.test_outbox import (
    HttpTestAdapter,
    adapters,
    channel_conversation,
    provider,
)
from tests.conversations.test_agents import agent_welcome, connect_agent, make_user
from tests.support.llm_server import Reply
from tests.support.provider_server import ProviderServer, Recorded
from tests.support.stack import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_idle"),
]

__all__ = ["adapters", "provider"]  # fixtures


@pytest.fixture
def tenant(make_tenant: Any, llm: Any) -> Tenant:
    made, _key = make_tenant(lawful_basis=Tenant.LawfulBasis.CONSENT)
    return made


@pytest.fixture
def agent(tenant: Tenant) -> Any:
    return make_user("ana", tenant=tenant, display_name="Ana")


def texts(requests: list[Recorded]) -> list[str]:
    return [request.json["text"] for request in requests]


async def wait_for_texts(provider: ProviderServer, count: int) -> list[str]:
    requests = await asyncio.to_thread(
        provider.wait_for, lambda reqs: len(reqs) >= count, timeout=20
    )
    return texts(requests)


async def poll(read: Callable[[], Any], *, message: str, timeout: float = 20) -> Any:
    """Read the database (on Django's thread for async code) until `read` gives something."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await database_sync_to_async(read)()):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {message}"
        await asyncio.sleep(0.05)
    return value


async def test_handoff_takeover_agent_reply_and_hand_back_reach_the_channel(
    tenant: Tenant,
    agent: Any,
    adapters: dict[str, HttpTestAdapter],
    provider: ProviderServer,
) -> None:
    conversation = await database_sync_to_async(channel_conversation)(
        tenant, "whatsapp", thread="+15550100"
    )
    # The visitor asks for a person: the handoff notice goes out on WhatsApp.
    await database_sync_to_async(message_post_from_visitor)(
        conversation=conversation, client_id="wa-1", text="I want to talk to a human"
    )
    assert await wait_for_texts(provider, 1) == [notice("handoff", "en")]

    ws = await connect_agent(str(conversation.pk), agent)
    await agent_welcome(ws)
    await ws.send_json_to({"type": "take_over"})
    await ws.send_json_to({"type": "reply", "text": "Hi, Ana here. Let me look at your order."})
    await ws.send_json_to({"type": "hand_back"})

    assert await wait_for_texts(provider, 4) == [
        notice("handoff", "en"),
        notice("agent_joined", "en", name="Ana"),
        "Hi, Ana here. Let me look at your order.",
        notice("handed_back", "en"),
    ]
    assert all(request.json["to"] == "+15550100" for request in provider.received())
    agent_message = await database_sync_to_async(Message.objects.get)(
        conversation_id=conversation.pk, role=Message.Role.AGENT
    )
    delivery = await database_sync_to_async(OutboundDelivery.objects.get)(message=agent_message)
    assert delivery.state == OutboundDelivery.State.SENT
    await ws.disconnect()


async def test_a_reply_cancelled_by_a_takeover_is_not_delivered(
    tenant: Tenant,
    agent: Any,
    llm: Any,
    adapters: dict[str, HttpTestAdapter],
    provider: ProviderServer,
) -> None:
    llm.enqueue(Reply(tokens=[f"w{i} " for i in range(60)], token_interval=0.1))
    conversation = await database_sync_to_async(channel_conversation)(tenant, "sms")
    await database_sync_to_async(message_post_from_visitor)(
        conversation=conversation, client_id="sms-1", text="Tell me a story"
    )
    streaming = await poll(
        lambda: Message.objects.filter(
            conversation_id=conversation.pk,
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
        ).first(),
        message="the reply to start streaming",
    )

    ws = await connect_agent(str(conversation.pk), agent)
    await agent_welcome(ws)
    await ws.send_json_to({"type": "take_over"})
    await ws.send_json_to({"type": "reply", "text": "Ana here instead."})

    assert await wait_for_texts(provider, 2) == [
        notice("agent_joined", "en", name="Ana"),
        "Ana here instead.",
    ]
    # Whatever the worker still does with the model's stream, the reply is never sent.
    await poll(
        LLMCall.objects.filter(conversation_id=conversation.pk).exists,
        message="the worker to finish with the model's stream",
    )
    reply = await database_sync_to_async(Message.objects.get)(pk=streaming.pk)
    assert reply.status == Message.Status.FAILED
    assert not await database_sync_to_async(
        OutboundDelivery.objects.filter(message_id=reply.pk).exists
    )()
    assert len(provider.received()) == 2
    status = await database_sync_to_async(
        lambda: Conversation.objects.get(pk=conversation.pk).status
    )()
    assert status == Conversation.Status.WITH_AGENT
    await ws.disconnect()


def test_a_handoff_notice_on_a_disabled_channel_fails_with_the_reason(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    conversation = channel_conversation(tenant, "telegram", active=False)
    assert conversation_request_agent(conversation_id=conversation.pk, reason="test")

    delivery = wait_until(
        lambda: OutboundDelivery.objects.filter(
            conversation=conversation, state=OutboundDelivery.State.FAILED
        ).first(),
        timeout=15,
        message="the notice's delivery to fail",
    )
    assert delivery.message.role == Message.Role.SYSTEM
    assert delivery.last_error == "channel disabled"
    assert provider.received() == []
