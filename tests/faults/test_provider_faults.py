"""The model provider failing under real processes (Daphne and a Celery worker, `live_stack`):
a stream that stalls right after its headers, and a connection reset in the middle of a stream.

Each case checks that the visitor's acknowledged message ends with exactly one reply: the
model's complete answer, or the product's honest ending (the offer of a person and an
`unavailable` error); that the conversation's transcript is the same on a reconnecting widget
as in the database; and that the next question is answered. The stack's read timeout is
LLM_READ_TIMEOUT=5 with one retry (LLM_MAX_RETRIES=1); a stalled stream of the scripted
provider would hold its connection for minutes, so a reply that ends at all ended by the
read timeout.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from conversations.models import LLMCall, Message, ReplyJob
from conversations.notices import notice
from tests.support.llm_server import Reply
from tests.support.stack import LiveStack
from tests.support.widget_client import (
    CUSTOMER,
    final_assistant,
    open_socket,
    recv,
    recv_until,
    say_hello,
    send,
)

pytestmark = pytest.mark.faults

REPLY_DEADLINE = 90.0  # two read timeouts, a backoff and a loaded machine


def _ask(ws: ClientConnection, text: str) -> tuple[str, list[dict[str, Any]]]:
    """Send a question; its client id and the frames up to the assistant's final message."""
    client_id = str(uuid.uuid4())
    send(ws, {"type": "message", "client_id": client_id, "text": text})
    ack = recv(ws, timeout=30)
    assert ack["type"] == "ack", ack
    assert ack["client_id"] == client_id
    return client_id, recv_until(ws, final_assistant, timeout=REPLY_DEADLINE)


def _no_second_reply(ws: ClientConnection) -> list[dict[str, Any]]:
    """What else arrives within a couple of seconds: never another assistant message."""
    extra: list[dict[str, Any]] = []
    while True:
        try:
            extra.append(recv(ws, timeout=2))
        except TimeoutError:
            break
    assert not [f for f in extra if final_assistant(f)], extra
    return extra


def _unavailable(frames: list[dict[str, Any]], client_id: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == "error" and f.get("client_id") == client_id]


def _transcript(stack: LiveStack, conversation_id: str) -> list[tuple[str, str, str]]:
    with stack.orm():
        rows = Message.objects.filter(conversation_id=conversation_id).order_by("seq")
        return [(m.role, m.status, m.text) for m in rows]


def _resumed(stack: LiveStack, key: str, welcome: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The transcript a widget reconnecting from scratch is given."""
    with open_socket(stack) as ws:
        again = say_hello(
            ws,
            key,
            visitor_token=welcome["visitor_token"],
            conversation_id=welcome["conversation_id"],
        )
    assert again["conversation_id"] == welcome["conversation_id"]
    return [(m["role"], m["status"], m["text"]) for m in again["messages"]]


def _reply_requests(stack: LiveStack) -> int:
    return len(stack.llm.reply_requests())


def _degraded_then_answered(
    stack: LiveStack, *failures: Reply, question: str
) -> tuple[list[dict[str, Any]], str, dict[str, Any], str]:
    """A question whose reply meets `failures` (and nothing else: one request each), then a
    question answered normally. The first question's frames, its client id, the welcome, and
    the key of the tenant."""
    _, key = stack.create_tenant(allowed_origins=[CUSTOMER])
    stack.llm.reset()
    stack.llm.enqueue(*failures)
    before = _reply_requests(stack)
    with open_socket(stack) as ws:
        welcome = say_hello(ws, key)
        client_id, frames = _ask(ws, question)
        frames += _no_second_reply(ws)
        assert _reply_requests(stack) - before == len(failures)
        stack.llm.enqueue(Reply(text="Returns are free within 30 days.", token_interval=0.01))
        _, later = _ask(ws, "And what about returns?")
        assert later[-1]["message"]["text"] == "Returns are free within 30 days."
        assert later[-1]["message"]["status"] == "complete"
    return frames, client_id, welcome, key


def _check_honest_ending(
    stack: LiveStack, frames: list[dict[str, Any]], client_id: str, error_code: str
) -> tuple[str, str]:
    """The reply ended as the offer of a person with an `unavailable` error for the question;
    the job is done, degraded with `error_code`. The conversation's id and the reply's id."""
    [final] = [f["message"] for f in frames if final_assistant(f)]
    assert final["status"] == "complete"
    assert final["text"] == notice("handoff_offer", "en")
    [error] = _unavailable(frames, client_id)
    assert error["code"] == "unavailable"
    with stack.orm():
        reply = Message.objects.get(pk=final["id"])
        job = ReplyJob.objects.get(reply=reply)
        assert (job.state, job.error_code) == ("done", f"degraded:{error_code}")
        assert reply.finish_reason == "degraded"
        return str(reply.conversation_id), str(reply.pk)


def _check_transcript(stack: LiveStack, key: str, welcome: dict[str, Any], first: str) -> None:
    """Four messages, in order: the question, its honest ending, the next question and its
    answer; the same in the database and on a reconnecting widget."""
    stored = _transcript(stack, welcome["conversation_id"])
    assert stored == [
        ("user", "complete", first),
        ("assistant", "complete", notice("handoff_offer", "en")),
        ("user", "complete", "And what about returns?"),
        ("assistant", "complete", "Returns are free within 30 days."),
    ]
    assert _resumed(stack, key, welcome) == stored


def test_a_stream_stalled_after_its_headers_ends_honestly_and_the_next_question_is_answered(
    live_stack: LiveStack,
) -> None:
    stalled = Reply(stall_after_headers=True)
    question = "Where is my parcel?"
    frames, client_id, welcome, key = _degraded_then_answered(
        live_stack, stalled, Reply(stall_after_headers=True), question=question
    )
    # Nothing of the model's was shown: the reply started, then ended as the offer.
    assert not [f for f in frames if f["type"] == "reply.delta" and f["text"]]
    conversation_id, reply_id = _check_honest_ending(live_stack, frames, client_id, "timeout")
    with live_stack.orm():
        [call] = LLMCall.objects.filter(message_id=reply_id, purpose="reply")
        assert (call.outcome, call.error_code, call.attempts) == ("error", "timeout", 2)
    assert conversation_id == welcome["conversation_id"]
    _check_transcript(live_stack, key, welcome, question)


def test_a_stall_after_headers_then_a_good_attempt_gives_the_answer_once(
    live_stack: LiveStack,
) -> None:
    _, key = live_stack.create_tenant(allowed_origins=[CUSTOMER])
    live_stack.llm.reset()
    answer = "Your parcel left our warehouse this morning."
    live_stack.llm.enqueue(Reply(stall_after_headers=True), Reply(text=answer, token_interval=0.01))
    before = _reply_requests(live_stack)
    with open_socket(live_stack) as ws:
        welcome = say_hello(ws, key)
        client_id, frames = _ask(ws, "Where is my parcel?")
        frames += _no_second_reply(ws)
    assert _reply_requests(live_stack) - before == 2
    [final] = [f["message"] for f in frames if final_assistant(f)]
    assert (final["text"], final["status"]) == (answer, "complete")
    deltas = [f["text"] for f in frames if f["type"] == "reply.delta"]
    assert "".join(deltas) == answer  # the retry's text, shown once
    assert not _unavailable(frames, client_id)
    assert _transcript(live_stack, welcome["conversation_id"]) == [
        ("user", "complete", "Where is my parcel?"),
        ("assistant", "complete", answer),
    ]


def test_a_connection_reset_mid_stream_ends_honestly_without_a_retry_repeating_text(
    live_stack: LiveStack,
) -> None:
    tokens = ["Your ", "parcel ", "is ", "on ", "its ", "way ", "to ", "you."]
    reset = Reply(tokens=tokens, token_interval=0.05, fail_after_tokens=3)
    question = "Is my parcel on its way?"
    frames, client_id, welcome, key = _degraded_then_answered(live_stack, reset, question=question)
    # The visitor saw the first tokens (never twice), then the reply ended as the offer: a
    # retry after text was shown would have repeated it, so there was none (one request).
    shown = "".join(f["text"] for f in frames if f["type"] == "reply.delta")
    assert "Your parcel is ".startswith(shown)
    _conversation_id, reply_id = _check_honest_ending(live_stack, frames, client_id, "interrupted")
    with live_stack.orm():
        [call] = LLMCall.objects.filter(message_id=reply_id, purpose="reply")
        assert (call.outcome, call.attempts) == ("interrupted", 1)
    _check_transcript(live_stack, key, welcome, question)


def test_a_connection_reset_before_any_text_is_retried_and_answered_once(
    live_stack: LiveStack,
) -> None:
    _, key = live_stack.create_tenant(allowed_origins=[CUSTOMER])
    live_stack.llm.reset()
    answer = "We ship to every country in the EU."
    live_stack.llm.enqueue(
        Reply(text="lost", fail_after_tokens=0), Reply(text=answer, token_interval=0.01)
    )
    before = _reply_requests(live_stack)
    with open_socket(live_stack) as ws:
        welcome = say_hello(ws, key)
        client_id, frames = _ask(ws, "Do you ship to Portugal?")
        frames += _no_second_reply(ws)
    assert _reply_requests(live_stack) - before == 2
    [final] = [f["message"] for f in frames if final_assistant(f)]
    assert (final["text"], final["status"]) == (answer, "complete")
    assert "".join(f["text"] for f in frames if f["type"] == "reply.delta") == answer
    assert not _unavailable(frames, client_id)
    assert _transcript(live_stack, welcome["conversation_id"]) == [
        ("user", "complete", "Do you ship to Portugal?"),
        ("assistant", "complete", answer),
    ]
