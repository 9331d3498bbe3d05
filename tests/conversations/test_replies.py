"""Reply jobs called directly: idempotency, leases, the claim and its row lock, persisted usage,
recovery of stalled jobs, trace points."""

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from conversations.handoff import conversation_request_agent
from conversations.models import LLMCall, Message, ReplyJob
from conversations.reply.claim import LeaseHeld
from conversations.reply.generate import reply_generate, reply_jobs_requeue_stalled
from conversations.services import message_post_from_visitor, visitor_session_open
from supportbot.trace import trace_callback_add, trace_callback_remove
from tests.support.llm_server import Reply
from tests.support.locks import row_locked

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def posted(make_tenant: Any, llm: Any, monkeypatch: Any) -> Message:
    # Jobs are run by hand here, not by a worker.
    monkeypatch.setattr("conversations.jobs.reply_job_enqueue", lambda job_id: None)
    tenant, _ = make_tenant(
        persona="You are Acme's assistant.", max_tokens=64, temperature=0.2, seed=7
    )
    session = visitor_session_open(tenant=tenant, visitor_token=None, conversation_id=None)
    return message_post_from_visitor(
        conversation=session.conversation, client_id="c1", text="Where is my parcel?"
    ).message


def test_reply_is_generated_once_even_when_the_job_runs_twice(posted: Message, llm: Any) -> None:
    llm.enqueue(
        Reply(
            text="It left our warehouse today.",
            usage={"prompt_tokens": 31, "completion_tokens": 6, "total_tokens": 37},
        )
    )
    job = ReplyJob.objects.get(trigger=posted)
    reply_generate(job_id=job.pk)
    reply_generate(job_id=job.pk)  # a redelivered job
    replies = Message.objects.filter(conversation=posted.conversation, role="assistant")
    assert [(m.text, m.status, m.seq) for m in replies] == [
        ("It left our warehouse today.", "complete", 2)
    ]
    reply = replies[0]
    assert (reply.prompt_tokens, reply.completion_tokens, reply.finish_reason) == (31, 6, "stop")
    assert len(llm.chat_requests()) == 1
    body = llm.chat_requests()[0].json
    assert body["model"] == "scripted-model"
    assert (body["max_tokens"] if "max_tokens" in body else body.get("max_completion_tokens")) == 64
    assert body["temperature"] == 0.2
    assert body["seed"] == 7
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are Acme's assistant.")
    assert "Reply in English." in system["content"]
    assert [t["function"]["name"] for t in body["tools"]] == [
        "search_knowledge",
        "handoff_to_human",
    ]
    call = LLMCall.objects.get()
    assert (call.outcome, call.prompt_tokens, call.completion_tokens, call.tenant_id) == (
        "ok",
        31,
        6,
        posted.tenant_id,
    )
    job.refresh_from_db()
    assert job.state == "done"
    assert job.attempts == 1


def test_running_job_with_live_lease_is_left_alone(posted: Message) -> None:
    job = ReplyJob.objects.get(trigger=posted)
    job.state = "running"
    job.lease_expires_at = timezone.now() + timedelta(seconds=30)
    job.save()
    with pytest.raises(LeaseHeld) as held:
        reply_generate(job_id=job.pk)
    assert 25 < held.value.seconds <= 30


def test_lapsed_lease_is_taken_over_under_the_same_message(posted: Message, llm: Any) -> None:
    llm.enqueue(Reply(text="Second try."))
    job = ReplyJob.objects.get(trigger=posted)
    stale = Message.objects.create(
        tenant_id=posted.tenant_id,
        conversation=posted.conversation,
        seq=2,
        role="assistant",
        text="half a rep",
        status="streaming",
    )
    posted.conversation.last_seq = 2
    posted.conversation.save()
    job.state, job.attempts, job.reply = "running", 1, stale
    job.lease_expires_at = timezone.now() - timedelta(seconds=1)
    job.save()
    assert reply_jobs_requeue_stalled() == [job.pk]
    reply_generate(job_id=job.pk)
    stale.refresh_from_db()
    assert (stale.text, stale.status) == ("Second try.", "complete")
    job.refresh_from_db()
    assert (job.state, job.attempts) == ("done", 2)
    assert reply_jobs_requeue_stalled() == []


def test_mid_stream_failure_degrades_to_an_honest_offer(posted: Message, llm: Any) -> None:
    llm.enqueue(Reply(tokens=["Your ", "parcel ", "is ", "in "], fail_after_tokens=2))
    job = ReplyJob.objects.get(trigger=posted)
    reply_generate(job_id=job.pk)
    reply = Message.objects.get(conversation=posted.conversation, role="assistant")
    assert reply.status == "complete"
    assert "person from our team" in reply.text
    job.refresh_from_db()
    assert job.state == "done"
    assert job.error_code == "degraded:interrupted"
    # Not retried after text was shown: one request only.
    assert len(llm.chat_requests()) == 1


def test_content_filter_gives_an_honest_notice(posted: Message, llm: Any) -> None:
    llm.enqueue(Reply(text="I can", finish_reason="content_filter"))
    reply_generate(job_id=ReplyJob.objects.get(trigger=posted).pk)
    notice = Message.objects.get(conversation=posted.conversation, role="system")
    assert "content filter" in notice.text


def test_history_from_another_conversation_is_never_sent(
    make_tenant: Any, posted: Message, llm: Any
) -> None:
    other_tenant, _ = make_tenant()
    other = visitor_session_open(tenant=other_tenant, visitor_token=None, conversation_id=None)
    message_post_from_visitor(
        conversation=other.conversation, client_id="x", text="OTHER TENANT SECRET"
    )
    reply_generate(job_id=ReplyJob.objects.get(trigger=posted).pk)
    sent = llm.chat_requests()[-1].json["messages"]
    assert all("OTHER TENANT SECRET" not in m["content"] for m in sent)


def test_the_knowledge_search_runs_without_the_job_row_lock(
    posted: Message, llm: Any, monkeypatch: Any
) -> None:
    # A takeover locks the job row: it must never wait behind a search (seconds when hybrid).
    job = ReplyJob.objects.get(trigger=posted)
    locked_during_search: list[bool] = []

    def search(*args: Any, **kwargs: Any) -> list[Any]:
        locked_during_search.append(row_locked(ReplyJob, job.pk))
        return []

    monkeypatch.setattr("conversations.reply.context.knowledge_search", search)
    llm.enqueue(Reply(text="It ships tomorrow."))
    reply_generate(job_id=job.pk)
    assert locked_during_search == [False]
    job.refresh_from_db()
    assert (job.state, job.attempts, job.reply.text) == ("done", 1, "It ships tomorrow.")


def test_a_job_cancelled_while_its_context_is_built_is_not_claimed(
    posted: Message, llm: Any, monkeypatch: Any
) -> None:
    job = ReplyJob.objects.get(trigger=posted)

    def search_while_an_agent_takes_over(*args: Any, **kwargs: Any) -> list[Any]:
        conversation_request_agent(conversation_id=posted.conversation_id, reason="Takeover.")
        return []

    monkeypatch.setattr(
        "conversations.reply.context.knowledge_search", search_while_an_agent_takes_over
    )
    llm.enqueue(Reply(tokens=["Too "] * 40, token_interval=0.1))
    reply_generate(job_id=job.pk)
    job.refresh_from_db()
    assert (job.state, job.attempts, job.reply_id) == ("cancelled", 0, None)
    assert not Message.objects.filter(conversation=posted.conversation, role="assistant").exists()
    # The request started early for it is given up at once, not streamed for 4 seconds.
    deadline = time.monotonic() + 2
    while any(t.name == f"reply-{job.pk}" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the provider request of an unclaimed job still runs"
        time.sleep(0.05)
    reply_generate(job_id=job.pk)  # redelivered: still nothing
    assert not Message.objects.filter(conversation=posted.conversation, role="assistant").exists()


def test_the_reply_path_reports_its_stages_to_trace_callbacks(posted: Message, llm: Any) -> None:
    llm.enqueue(Reply(text="On its way."))
    job = ReplyJob.objects.get(trigger=posted)
    seen: dict[str, str] = {}
    lock = threading.Lock()

    def callback(stage: str, key: str) -> None:
        with lock:
            seen.setdefault(stage, key)

    trace_callback_add(callback)
    try:
        reply_generate(job_id=job.pk)
    finally:
        trace_callback_remove(callback)
    reply = Message.objects.get(conversation=posted.conversation, role="assistant")
    # (the broadcaster's `worker.published` may come on its own thread, later)
    assert {stage: key for stage, key in seen.items() if stage.startswith("reply.")} == {
        "reply.task_start": str(job.pk),
        "reply.claimed": f"{job.pk}:{posted.conversation_id}:{reply.pk}",
        "reply.llm_request": str(job.pk),
        "reply.first_token": str(job.pk),
        "reply.first_delta": str(reply.pk),
    }
