"""No log line holds message text or personal data: a whole conversation through the real
processes (Daphne and a Celery worker, the application's loggers at DEBUG), with canaries planted
in every place a person's data enters, and none of them in any output the processes wrote.

The conversation: a verified visitor (an email and a name in their identity) behind a proxy (their
own address), messages and a reply, a summary, a handoff, and an agent's answer.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.sync.client import connect

from tests.support.llm_server import Reply
from tests.support.stack import LiveStack, wait_until
from tests.support.widget_client import CUSTOMER, final_assistant, recv_until, say_hello, send

pytestmark = pytest.mark.e2e

EMAIL = "canary.visitor.5b1f@example.org"
NAME = "Canarina Quetzal-Obrero"
ADDRESS = "203.0.113.187"  # the visitor's, as the proxy forwards it
TEXT = "zephyr-canary-4471 my parcel never came"
REPLY = "kestrel-canary-9032 your parcel is on its way"
SUMMARY = "osprey-canary-2718 the visitor's parcel is late"
AGENT_TEXT = "heron-canary-6150 I have refunded you"
AGENT_EMAIL = "agent.canary.77d2@example.net"


def _tenant_and_secret(stack: LiveStack) -> tuple[str, str, int]:
    """A tenant whose every exchange needs a summary: (widget key, identity secret, id)."""
    from supportbot.tenants.models import Tenant
    from supportbot.tenants.services import tenant_rotate_identity_secret

    slug, key = stack.create_tenant(allowed_origins=[CUSTOMER], history_token_budget=60)

    def secret() -> tuple[str, int]:
        tenant = Tenant.objects.get(slug=slug)
        return tenant_rotate_identity_secret(tenant=tenant), tenant.pk

    identity_secret, tenant_id = stack.in_thread(secret)
    return key, identity_secret, tenant_id


def _agent_answers(stack: LiveStack, tenant_id: int, conversation_id: str) -> None:
    from django.contrib.auth import get_user_model

    from conversations.agents import agent_message_post
    from conversations.models import Conversation
    from supportbot.tenants.models import TenantMembership

    def answer() -> None:
        agent = get_user_model().objects.create_user(
            username=AGENT_EMAIL, email=AGENT_EMAIL, password=str(uuid.uuid4()), is_staff=True
        )
        TenantMembership.objects.create(tenant_id=tenant_id, user=agent)
        conversation = Conversation.objects.get(pk=conversation_id, tenant_id=tenant_id)
        agent_message_post(conversation=conversation, agent=agent, text=AGENT_TEXT)

    stack.in_thread(answer)


def _summary_of(stack: LiveStack, conversation_id: str) -> dict[str, Any]:
    from conversations.models import Conversation

    return dict(stack.in_thread(lambda: Conversation.objects.get(pk=conversation_id).summary) or {})


def _output(stack: LiveStack, offsets: dict[Path, int]) -> str:
    """What each process wrote since `offsets` were taken."""
    parts = []
    for process in (stack.web, *stack.workers):
        with process.log_path.open("rb") as log:
            log.seek(offsets.get(process.log_path, 0))
            parts.append(log.read().decode(errors="replace"))
    return "\n".join(parts)


def test_a_whole_conversation_leaves_no_personal_data_in_the_logs(
    live_stack: LiveStack, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("supportbot", "conversations", "knowledge"):
        caplog.set_level(logging.DEBUG, logger=name)
    offsets = {p.log_path: p.log_path.stat().st_size for p in (live_stack.web, *live_stack.workers)}
    key, identity_secret, tenant_id = _tenant_and_secret(live_stack)
    claims = {"sub": f"user-{uuid.uuid4()}", "email": EMAIL, "name": NAME}
    identity = jwt.encode(
        {**claims, "exp": int(time.time()) + 600}, identity_secret, algorithm="HS256"
    )
    summary = {"summary": SUMMARY, "facts": [EMAIL, REPLY], "open_questions": [TEXT]}
    live_stack.llm.reset()
    # Every model call (the replies and the summary) gets a valid summary: as a reply, it is
    # text like any other.
    live_stack.llm.default = Reply(text=json.dumps(summary))
    secrets: list[str] = []
    try:
        with connect(
            live_stack.ws_url,
            origin=CUSTOMER,  # type: ignore[arg-type]
            open_timeout=10,
            additional_headers={"X-Forwarded-For": ADDRESS},
        ) as ws:
            welcome = say_hello(ws, key, identity=identity)
            conversation_id = welcome["conversation_id"]
            for text in (f"{TEXT}, write to {EMAIL}", f"{TEXT} again, I am {NAME}"):
                send(ws, {"type": "message", "client_id": str(uuid.uuid4()), "text": text})
                recv_until(ws, final_assistant, timeout=30)
            wait_until(
                lambda: _summary_of(live_stack, conversation_id).get("summary") == SUMMARY,
                timeout=30,
                message="the conversation's summary",
            )
            send(
                ws,
                {
                    "type": "message",
                    "client_id": str(uuid.uuid4()),
                    "text": f"I want to talk to a person about {TEXT}",
                },
            )
            recv_until(
                ws,
                lambda f: (
                    f["type"] == "conversation.updated"
                    and f["conversation"]["status"] == "waiting_for_agent"
                ),
            )
            _agent_answers(live_stack, tenant_id, conversation_id)
            recv_until(
                ws,
                lambda f: f["type"] == "message" and f["message"]["text"] == AGENT_TEXT,
            )
            secrets = [welcome["visitor_token"], identity, identity_secret]
    finally:
        live_stack.llm.reset()

    output = _output(live_stack, offsets) + "\n" + caplog.text
    # The processes did log this conversation (the worker ran its reply jobs)...
    assert "conversations.generate_reply" in output
    # ...and nothing about the person.
    canaries = [EMAIL, NAME, ADDRESS, TEXT, "zephyr-canary", REPLY, "kestrel-canary", SUMMARY]
    canaries += ["osprey-canary", AGENT_TEXT, "heron-canary", AGENT_EMAIL, *secrets]
    canaries += ["sk-test-secret"]  # the provider key
    found = [canary for canary in canaries if canary in output]
    assert not found, f"personal data in the logs: {found}"
    # No access log either: its lines would name every visitor's address.
    assert "WSCONNECT" not in output
