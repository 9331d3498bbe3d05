"""Infrastructure faults on real processes: Redis killed and restarted, Postgres restarted, a
worker stalled or killed, each in the middle of a streaming reply.

Every case checks that the acknowledged visitor message ends with exactly one complete reply,
that the transcript's seq has no gap or duplicate, that the widget resumes across a dropped
socket, and that the stack answers the next question with the same processes.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from conversations.refusals import CloseCode
from tests.support.fault_stack import FaultStack
from tests.support.llm_server import Reply
from tests.support.stack import ChildProcess, wait_until
from tests.support.widget_client import Visitor

pytestmark = pytest.mark.faults

SLOW = [f"part{i} " for i in range(40)]
OUTAGE_SECONDS = 3  # how long a killed server stays down: the fault itself, not a wait


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
    assert turns, transcript
    for answers in turns:
        replies = [m for m in answers if m["role"] == "assistant"]
        assert len(replies) == 1, transcript
        assert replies[0]["status"] == "complete", transcript
        assert replies[0]["text"].strip(), transcript
    return transcript


def streaming_started(visitor: Visitor, stack: FaultStack, *, deltas: int = 3) -> None:
    """Wait until the visitor has seen `deltas` pieces of the reply."""
    for frame in visitor._frames(60):
        if frame["type"] == "reply.delta" and frame["index"] >= deltas:
            return


def next_question_answered(stack: FaultStack, visitor: Visitor) -> None:
    stack.llm.enqueue(Reply(text="Yes, we ship abroad.", token_interval=0.01))
    asked = visitor.ask("Do you ship abroad?")
    reply = visitor.reply_to(asked["seq"])
    assert reply["status"] == "complete", reply
    assert reply["text"], reply


def test_a_reply_streams_on_the_fault_stack(faults: FaultStack) -> None:
    faults.llm.enqueue(Reply(text="Returns are free.", token_interval=0.01))
    visitor = Visitor(faults, faults.widget_key)
    visitor.connect()
    asked = visitor.ask("Returns?")
    assert visitor.reply_to(asked["seq"])["text"] == "Returns are free."
    assert visitor.conversation_id is not None
    assert_consistent(faults, visitor.conversation_id)
    visitor.close()


def test_redis_killed_mid_stream_the_processes_reconnect(faults: FaultStack) -> None:
    pids = faults.pids()
    assert faults.web is not None
    web_log_before = len(faults.web.log_text())
    faults.llm.enqueue(
        Reply(tokens=SLOW, token_interval=0.1),
        Reply(text="Answered again after the outage.", token_interval=0.01),
    )
    visitor = Visitor(faults, faults.widget_key)
    visitor.connect()
    asked = visitor.ask("Tell me about returns")
    streaming_started(visitor, faults)

    faults.redis.kill()
    time.sleep(OUTAGE_SECONDS)
    faults.redis.start()

    reply = visitor.reply_to(asked["seq"])
    assert reply["status"] == "complete", reply
    # Daphne closed the socket once Redis was back (frames may have been lost meanwhile), and
    # the widget resumed the conversation on a new one.
    assert visitor.resumes >= 1
    # ... with the protocol's "resume" close code, not an error of the server's (1011).
    assert set(visitor.close_codes) == {CloseCode.RESUME.value}, visitor.close_codes
    assert "Exception inside application" not in faults.web.log_text()[web_log_before:]
    assert visitor.conversation_id is not None
    next_question_answered(faults, visitor)
    assert_consistent(faults, visitor.conversation_id)
    # No process was restarted: Daphne and the workers reconnected on their own.
    assert faults.crashed_workers() == []
    assert faults.pids() == pids
    visitor.close()


def test_postgres_restarted_mid_stream_the_reply_is_saved(faults: FaultStack) -> None:
    pids = faults.pids()
    faults.llm.enqueue(Reply(tokens=SLOW, token_interval=0.1))
    visitor = Visitor(faults, faults.widget_key)
    visitor.connect()
    asked = visitor.ask("Tell me about warranties")
    streaming_started(visitor, faults)

    faults.postgres.kill()
    time.sleep(OUTAGE_SECONDS)
    faults.postgres.start()

    reply = visitor.reply_to(asked["seq"])
    # The text streamed before and during the outage is the text saved: nothing generated
    # twice, nothing lost.
    assert reply["status"] == "complete", reply
    assert reply["text"] == "".join(SLOW).strip() or reply["text"] == "".join(SLOW), reply
    assert len(faults.llm.reply_requests()) == 1
    assert visitor.conversation_id is not None
    next_question_answered(faults, visitor)
    assert_consistent(faults, visitor.conversation_id)
    assert faults.crashed_workers() == []
    assert faults.pids() == pids
    visitor.close()


def worker_on_the_job(
    stack: FaultStack, visitor: Visitor, logs_before: dict[str, int]
) -> ChildProcess:
    """The worker that claimed the reply of the visitor's first message: the one that logged
    the conversation's language being set since `logs_before` (log sizes by name)."""

    def find() -> ChildProcess | None:
        for worker in stack.live_workers():
            logged = worker.log_text()[logs_before.get(worker.name, 0) :]
            if f"conversation {visitor.conversation_id} language" in logged:
                return worker
        return None

    found: ChildProcess = wait_until(find, timeout=30, message="a worker to take the job")
    return found


def log_sizes(stack: FaultStack) -> dict[str, int]:
    return {worker.name: len(worker.log_text()) for worker in stack.workers}


def test_a_stalled_worker_is_taken_over_and_writes_nothing_after(faults: FaultStack) -> None:
    faults.ensure_workers(2)
    faults.llm.enqueue(
        Reply(tokens=SLOW, token_interval=0.1),  # the stalled worker's
        Reply(tokens=["Taken ", "over ", "and ", "answered."], token_interval=0.02),
    )
    visitor = Visitor(faults, faults.widget_key)
    visitor.connect()
    before = log_sizes(faults)
    asked = visitor.ask("Long answer please")
    streaming_started(visitor, faults)
    stalled = worker_on_the_job(faults, visitor, before)
    assert stalled.process is not None
    os.killpg(stalled.process.pid, signal.SIGSTOP)
    try:
        reply = visitor.reply_to(asked["seq"])
    finally:
        resumed_at = len(stalled.log_text())
        os.killpg(stalled.process.pid, signal.SIGCONT)
    assert reply["text"] == "Taken over and answered.", reply
    # Back from the stall, the stale worker finds its lease lost and ends its task.
    wait_until(
        lambda: "succeeded" in stalled.log_text()[resumed_at:],
        timeout=60,
        message="the stalled worker to end its task",
    )
    assert visitor.conversation_id is not None
    assert_consistent(faults, visitor.conversation_id)  # one reply (text encrypted at rest)
    visitor.close()


def test_a_worker_killed_mid_reply_another_completes_it_once(faults: FaultStack) -> None:
    faults.ensure_workers(2)
    faults.llm.enqueue(
        Reply(tokens=SLOW, token_interval=0.1),  # interrupted by the crash
        Reply(tokens=["All ", "done ", "after ", "redelivery."], token_interval=0.02),
    )
    visitor = Visitor(faults, faults.widget_key)
    visitor.connect()
    before = log_sizes(faults)
    asked = visitor.ask("Another long answer please")
    streaming_started(visitor, faults)
    worker_on_the_job(faults, visitor, before).kill()

    reply = visitor.reply_to(asked["seq"])
    assert reply["text"] == "All done after redelivery.", reply
    assert visitor.conversation_id is not None
    assert_consistent(faults, visitor.conversation_id)  # one reply (text encrypted at rest)
    visitor.close()
