"""Two Daphne processes on one channel layer: a visitor on one and an agent on the other see
each other's messages (what a load balancer in front of several Daphnes relies on)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from conversations.models import Conversation
from supportbot.devstack.__main__ import DAPHNE_OPTIONS
from tests.conversations.test_agents import make_user, session_cookie
from tests.e2e.test_stack import CUSTOMER, final_assistant, open_socket, recv_until, say_hello, send
from tests.support.stack import LOG_DIR, ChildProcess, LiveStack, free_port, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def second_daphne(live_stack: LiveStack) -> Iterator[str]:
    """Another Daphne process with the same settings (database, Redis): its base URL."""
    port = free_port()
    web = ChildProcess(
        name="web-b",
        args=[
            *(sys.executable, "-m", "daphne", *DAPHNE_OPTIONS),
            *("-b", "127.0.0.1", "-p", str(port), "supportbot.asgi:application"),
        ],
        env=live_stack.env,
        log_path=LOG_DIR / f"web-b-{os.getpid()}.log",
    ).start()
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert web.alive(), web.log_text()[-3000:]
        try:
            return httpx.get(base_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=60, message="the second Daphne to answer /healthz")
        yield base_url
    finally:
        web.stop()


def _agent_socket(live_stack: LiveStack, base_url: str, conversation_id: str) -> ClientConnection:
    def signed_in_agent() -> str:
        tenant = Conversation.objects.select_related("tenant").get(pk=conversation_id).tenant
        agent = make_user(f"ana-{uuid.uuid4().hex[:8]}", tenant=tenant, display_name="Ana")
        return str(session_cookie(agent))

    cookie = live_stack.in_thread(signed_in_agent)
    ws_base = base_url.replace("http://", "ws://")
    return connect(
        f"{ws_base}/ws/agent/conversations/{conversation_id}/",
        origin=Origin(base_url),
        additional_headers={"Cookie": f"sessionid={cookie}"},
        open_timeout=30,
    )


def _message(role: str, text: str) -> Any:
    def matches(frame: dict[str, Any]) -> bool:
        return (
            frame["type"] == "message"
            and frame["message"]["role"] == role
            and text in frame["message"]["text"]
        )

    return matches


def test_a_visitor_and_an_agent_on_different_daphnes_see_each_other(
    live_stack: LiveStack, second_daphne: str
) -> None:
    _slug, key = live_stack.create_tenant(allowed_origins=[CUSTOMER])
    with open_socket(live_stack) as visitor:  # on the first Daphne
        conversation_id = say_hello(visitor, key)["conversation_id"]
        send(visitor, {"type": "message", "client_id": str(uuid.uuid4()), "text": "Hello"})
        recv_until(visitor, final_assistant, timeout=60)

        with _agent_socket(live_stack, second_daphne, conversation_id) as agent:
            welcome = json.loads(agent.recv(timeout=30))
            assert welcome["type"] == "welcome", welcome
            agent.send(json.dumps({"type": "take_over"}))
            agent.send(json.dumps({"type": "reply", "text": "Hi, Ana here from the other side."}))
            recv_until(visitor, _message("agent", "Ana here from the other side"), timeout=30)

            visitor_text = f"Thanks Ana {uuid.uuid4().hex[:6]}"
            send(visitor, {"type": "message", "client_id": str(uuid.uuid4()), "text": visitor_text})
            seen = []
            while not any(_message("user", visitor_text)(frame) for frame in seen):
                seen.append(json.loads(agent.recv(timeout=30)))
