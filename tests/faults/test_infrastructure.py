"""Infrastructure faults on real processes: Redis killed and restarted, Postgres restarted, a
worker killed or stalled, each in the middle of a streaming reply."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from tests.support.fault_stack import FaultStack
from tests.support.llm_server import Reply
from tests.support.stack import wait_until
from tests.support.widget_client import (
    final_assistant,
    open_socket,
    recv,
    recv_until,
    say_hello,
    send,
)

pytestmark = pytest.mark.faults

SLOW = [f"part{i} " for i in range(40)]


def ask(ws: ClientConnection, text: str) -> dict[str, Any]:
    """Send a visitor message and return its acknowledgement."""
    send(ws, {"type": "message", "client_id": f"c-{time.monotonic_ns()}", "text": text})
    ack = recv_until(ws, lambda f: f["type"] == "ack", timeout=30)[-1]
    return ack["message"]


def assert_consistent(stack: FaultStack, conversation_id: str) -> list[dict[str, Any]]:
    """Seq 1..n without gaps or duplicates; every visitor message followed by exactly one
    complete assistant reply before the next visitor message; nothing left streaming."""
    transcript = stack.transcript(conversation_id)
    assert [m["seq"] for m in transcript] == list(range(1, len(transcript) + 1)), transcript
    assert all(m["status"] != "streaming" for m in transcript), transcript
    turns: list[list[dict[str, Any]]] = []
    for message in transcript:
        if message["role"] == "user":
            turns.append([])
        elif turns:
            turns[-1].append(message)
    for answers in turns:
        replies = [m for m in answers if m["role"] == "assistant"]
        assert len(replies) == 1, transcript
        assert replies[0]["status"] == "complete", transcript
    return transcript


def test_a_reply_streams_on_the_fault_stack(faults: FaultStack) -> None:
    _, key = faults.create_tenant()
    faults.llm.enqueue(Reply(text="Returns are free.", token_interval=0.01))
    with open_socket(faults) as ws:
        welcome = say_hello(ws, key)
        ask(ws, "Returns?")
        final = recv_until(ws, final_assistant, timeout=30)[-1]["message"]
    assert final["text"] == "Returns are free."
    assert_consistent(faults, welcome["conversation_id"])
