"""The whole stack as real processes: Daphne, a Celery worker, Postgres, Redis, and a third-party
websocket client speaking protocol v1. Includes a worker killed in the middle of a reply."""

import uuid

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.llm_server import Reply
from tests.support.stack import LiveStack, wait_until
from tests.support.widget_client import (
    CUSTOMER,
    final_assistant,
    open_socket,
    recv,
    recv_until,
    say_hello,
    send,
)

pytestmark = pytest.mark.e2e


def test_healthz_answers_with_the_status(live_stack: LiveStack) -> None:
    body = httpx.get(live_stack.base_url + "/healthz", timeout=5).json()
    assert body == {"status": "ok"}


def test_reply_streams_through_real_processes(live_stack: LiveStack) -> None:
    _, key = live_stack.create_tenant(allowed_origins=[CUSTOMER])
    live_stack.llm.enqueue(Reply(text="Our returns are free for 30 days.", token_interval=0.02))
    with open_socket(live_stack) as ws:
        say_hello(ws, key)
        send(ws, {"type": "message", "client_id": str(uuid.uuid4()), "text": "Returns?"})
        ack = recv(ws)
        assert ack["type"] == "ack"
        assert ack["message"]["seq"] == 1
        frames = recv_until(ws, final_assistant)
    deltas = [f for f in frames if f["type"] == "reply.delta"]
    assert len(deltas) >= 2
    assert "".join(d["text"] for d in deltas) == frames[-1]["message"]["text"]
    assert frames[-1]["message"]["text"] == "Our returns are free for 30 days."


def test_origin_and_cross_tenant_refusals_over_the_network(live_stack: LiveStack) -> None:
    _, key_a = live_stack.create_tenant(allowed_origins=[CUSTOMER])
    _, key_b = live_stack.create_tenant(allowed_origins=["https://other.example"])
    with open_socket(live_stack) as ws:
        send(ws, {"type": "hello", "key": key_b})
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403
    with open_socket(live_stack) as ws:
        welcome_a = say_hello(ws, key_a)
    with open_socket(live_stack, origin="https://other.example") as ws:
        send(
            ws,
            {
                "type": "hello",
                "key": key_b,
                "visitor_token": welcome_a["visitor_token"],
                "conversation_id": welcome_a["conversation_id"],
            },
        )
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403


def test_worker_killed_mid_reply_completes_exactly_once(live_stack: LiveStack) -> None:
    from conversations.models import LLMCall, Message, ReplyJob

    _, key = live_stack.create_tenant(allowed_origins=[CUSTOMER])
    slow = [f"part{i} " for i in range(60)]
    live_stack.llm.enqueue(
        Reply(tokens=slow, token_interval=0.1),  # interrupted by the crash
        Reply(tokens=["All ", "done ", "after ", "redelivery."], token_interval=0.02),
    )
    requests_before = len(live_stack.llm.chat_requests())
    with open_socket(live_stack) as ws:
        welcome = say_hello(ws, key)
        send(ws, {"type": "message", "client_id": "crash-1", "text": "Long answer please"})
        assert recv(ws)["type"] == "ack"
        recv_until(ws, lambda f: f["type"] == "reply.delta" and f["index"] >= 3)

        victim = next(w for w in live_stack.workers if w.alive())
        victim.kill()
        live_stack.start_worker()

        frames = recv_until(ws, final_assistant, timeout=60)
        final = frames[-1]["message"]
        assert final["text"] == "All done after redelivery."
        assert final["status"] == "complete"
        # The restarted reply begins again under the same message id.
        restarts = [f for f in frames if f["type"] == "reply.start"]
        assert restarts
        assert restarts[-1]["message_id"] == final["id"]
        # Nothing more: no second final reply arrives.
        with pytest.raises(TimeoutError):
            recv(ws, timeout=2)

    with live_stack.orm():
        conversation_id = welcome["conversation_id"]
        replies = Message.objects.filter(conversation_id=conversation_id, role="assistant")
        assert [(m.text, m.status) for m in replies] == [("All done after redelivery.", "complete")]
        job = ReplyJob.objects.get(conversation_id=conversation_id)
        assert job.state == "done"
        assert job.attempts == 2
        assert LLMCall.objects.filter(conversation_id=conversation_id, outcome="ok").count() == 1
    assert len(live_stack.llm.chat_requests()) - requests_before == 2


def test_resend_after_reconnect_is_idempotent_across_processes(live_stack: LiveStack) -> None:
    from conversations.models import Message

    _, key = live_stack.create_tenant(allowed_origins=[CUSTOMER])
    live_stack.llm.enqueue(Reply(text="One answer only."))
    with open_socket(live_stack) as ws:
        welcome = say_hello(ws, key)
        send(ws, {"type": "message", "client_id": "dup", "text": "Hello?"})
        first = recv(ws)
        recv_until(ws, final_assistant)
    with open_socket(live_stack) as ws:
        resumed = say_hello(
            ws,
            key,
            visitor_token=welcome["visitor_token"],
            conversation_id=welcome["conversation_id"],
            last_seq=0,
        )
        assert [m["seq"] for m in resumed["messages"]] == [1, 2]
        send(ws, {"type": "message", "client_id": "dup", "text": "Hello?"})
        assert recv(ws) == first
    with live_stack.orm():
        wait_until(
            lambda: Message.objects.filter(conversation_id=welcome["conversation_id"]).count() == 2,
            timeout=5,
            message="two messages",
        )


def test_live_processes_use_the_test_database(live_stack: LiveStack) -> None:
    """Never the development database, even when no selected test is marked django_db."""
    database = live_stack.env["DATABASE_URL"].rsplit("/", 1)[1].split("?")[0]
    assert database.startswith("test_")
