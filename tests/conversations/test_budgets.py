"""Per-tenant limits enforced by the workers: every provider call of a reply, a summary or an
embedding passes the tenant's choke point (supportbot/tenants/limits.py) first.

Real Postgres and Redis, reply jobs run by hand (many at once on threads), and the scripted
OpenAI-compatible server, which counts the requests it is answering at once.
"""

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections

from conversations.messages import message_append
from conversations.models import Conversation, LLMCall, Message, ReplyJob
from conversations.notices import notice
from conversations.reply.claim import _job
from conversations.reply.context import reply_context_build
from conversations.reply.generate import reply_generate
from conversations.services import (
    message_post_from_visitor,
    visitor_conversation_store,
    visitor_session_open,
)
from conversations.summaries import conversation_summarize
from knowledge import vectors
from supportbot.llm import count_message_tokens, count_tokens
from supportbot.tenants.limits import tenant_limits_set
from supportbot.tenants.models import ModelPrice, Tenant, TenantUsageDay
from supportbot.tenants.prices import prices_reload
from supportbot.tenants.usage import today
from tests.support.llm_server import Reply
from tests.support.stack import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "Where is my parcel?"
MAX_TOKENS = 64


@pytest.fixture(autouse=True)
def _no_worker(monkeypatch: Any, settings: Any) -> None:
    # Jobs are run by hand here, on threads of the test, not by a worker.
    monkeypatch.setattr("conversations.jobs.reply_job_enqueue", lambda job_id: None)
    monkeypatch.setattr("conversations.jobs.summary_enqueue", lambda conversation_id: None)
    settings.LIMIT_WAIT_SECONDS = 20.0


@pytest.fixture
def tenant(make_tenant: Any) -> Tenant:
    tenant, _ = make_tenant(persona="You are Acme's assistant.", max_tokens=MAX_TOKENS)
    return tenant


@pytest.fixture
def priced(db: None) -> ModelPrice:
    price = ModelPrice.objects.create(
        model="scripted-model",
        prompt_per_million=Decimal("2.00"),
        completion_per_million=Decimal("8.00"),
        prices_as_of=today(),
    )
    prices_reload()
    return price


def _post(tenant: Tenant, n: int) -> list[ReplyJob]:
    """`n` visitors of `tenant`, each asking QUESTION: their reply jobs."""
    jobs = []
    for i in range(n):
        session = visitor_session_open(tenant=tenant, visitor_token=None, conversation_id=None)
        posted = message_post_from_visitor(
            conversation=session.conversation, client_id=f"c{i}", text=QUESTION
        )
        jobs.append(ReplyJob.objects.get(trigger=posted.message))
    return jobs


def _generate_all(jobs: list[ReplyJob]) -> None:
    """Run every job at once, each on a thread of its own (as many worker threads would)."""

    def run(job_id: int) -> None:
        try:
            reply_generate(job_id=job_id)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for future in [pool.submit(run, job.pk) for job in jobs]:
            future.result(timeout=120)


def _reservation_tokens(job: ReplyJob) -> int:
    """What one reply's request reserves: its prompt estimate, tools and max_tokens."""
    context = reply_context_build(_job(job.pk))  # type: ignore[arg-type]
    tools = count_tokens(json.dumps(context.params.tools))
    return count_message_tokens(context.messages) + tools + MAX_TOKENS


def _replies(tenant: Tenant) -> list[Message]:
    return list(Message.objects.filter(tenant=tenant, role=Message.Role.ASSISTANT))


def _used_tokens(tenant: Tenant) -> int:
    rows = TenantUsageDay.objects.filter(tenant=tenant)
    return sum(r.prompt_tokens + r.completion_tokens for r in rows)


def test_fifty_racing_replies_never_overrun_a_budget_of_ten(tenant: Tenant, llm: Any) -> None:
    jobs = _post(tenant, 50)
    reserved = _reservation_tokens(jobs[0])
    # Each reply uses exactly what it reserved: ten fit the day's tokens, the eleventh not.
    usage = {"prompt_tokens": reserved - MAX_TOKENS, "completion_tokens": MAX_TOKENS}
    usage["total_tokens"] = reserved
    llm.default = Reply(text="It left our warehouse today.", token_interval=0.02, usage=usage)
    tenant_limits_set(tenant=tenant, tokens_per_day=10 * reserved)

    _generate_all(jobs)

    assert _used_tokens(tenant) <= 10 * reserved + reserved  # at most one reservation over
    answered = [m for m in _replies(tenant) if m.text == "It left our warehouse today."]
    assert len(answered) == 10
    assert len(llm.chat_requests()) == 10
    degraded = ReplyJob.objects.filter(tenant=tenant, error_code="degraded:limit_tokens_day")
    assert degraded.count() == 40
    assert all(m.status == "complete" for m in _replies(tenant))
    day = TenantUsageDay.objects.get(tenant=tenant, model="scripted-model")
    assert (day.replies, day.degraded_replies, day.requests) == (50, 40, 10)


def test_a_spent_budget_degrades_at_once_with_a_notice_and_no_request(
    tenant: Tenant, llm: Any, priced: ModelPrice, settings: Any
) -> None:
    # This month's spend is already over the limit (the counters are rebuilt from Postgres).
    TenantUsageDay.objects.create(
        tenant=tenant, day=today(), model="scripted-model", prompt_tokens=10, cost=Decimal("5.01")
    )
    tenant_limits_set(tenant=tenant, spend_per_month=Decimal("5.00"))
    (job,) = _post(tenant, 1)
    started = time.monotonic()
    reply_generate(job_id=job.pk)
    assert time.monotonic() - started < settings.LIMIT_WAIT_SECONDS / 2  # no wait for money
    assert llm.chat_requests() == []
    (reply,) = _replies(tenant)
    assert reply.status == "complete"
    assert reply.text.startswith(notice("usage_limit", "en"))
    assert "person from our team" in reply.text  # then the offer of a person
    job.refresh_from_db()
    assert (job.state, job.error_code) == ("done", "degraded:limit_spend_month")
    assert LLMCall.objects.filter(tenant=tenant).count() == 0


def test_a_cheaper_fallback_model_answers_when_it_fits_the_money_left(
    make_tenant: Any, llm: Any, priced: ModelPrice
) -> None:
    tenant, _ = make_tenant(max_tokens=MAX_TOKENS, fallback_llm_model="cheap-model")
    ModelPrice.objects.create(
        model="cheap-model",
        prompt_per_million=Decimal(0),
        completion_per_million=Decimal(0),
        prices_as_of=today(),
    )
    prices_reload()
    tenant_limits_set(tenant=tenant, spend_per_month=Decimal("0.01"))
    TenantUsageDay.objects.create(
        tenant=tenant, day=today(), model="scripted-model", cost=Decimal("0.0099")
    )
    llm.enqueue(Reply(text="The cheap model answers."))
    (job,) = _post(tenant, 1)
    reply_generate(job_id=job.pk)
    assert [r.json["model"] for r in llm.chat_requests()] == ["cheap-model"]
    assert [m.text for m in _replies(tenant)] == ["The cheap model answers."]


def test_a_concurrency_cap_of_two_keeps_two_requests_in_flight_at_most(
    tenant: Tenant, llm: Any
) -> None:
    tenant_limits_set(tenant=tenant, max_concurrent_replies=2)
    llm.default = Reply(text="One two three four five six seven eight", token_interval=0.05)
    jobs = _post(tenant, 6)

    _generate_all(jobs)

    assert llm.max_in_flight == 2  # the cap was reached, never passed
    assert len(llm.chat_requests()) == 6  # every reply waited its turn and was answered
    assert {m.text for m in _replies(tenant)} == {"One two three four five six seven eight"}


def test_over_the_rate_a_reply_waits_a_little_then_degrades(
    tenant: Tenant, llm: Any, settings: Any
) -> None:
    settings.LIMIT_WAIT_SECONDS = 0.3
    tenant_limits_set(tenant=tenant, requests_per_minute=1)
    first, second = _post(tenant, 2)
    # Not in the last seconds of a minute: both requests must fall in the same window.
    wait_until(lambda: time.time() % 60 < 55, timeout=10, message="the start of a minute")
    reply_generate(job_id=first.pk)
    reply_generate(job_id=second.pk)
    assert len(llm.chat_requests()) == 1
    second.refresh_from_db()
    assert second.error_code == "degraded:limit_requests"
    assert second.reply is not None
    assert second.reply.text.startswith(notice("usage_limit", "en"))


def test_every_call_records_its_cost(tenant: Tenant, llm: Any, priced: ModelPrice) -> None:
    llm.enqueue(
        Reply(
            text="On its way.",
            usage={"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
        )
    )
    (job,) = _post(tenant, 1)
    reply_generate(job_id=job.pk)
    call = LLMCall.objects.get(tenant=tenant)
    expected = Decimal("0.006")  # 1000 x 2.00 / 1e6 + 500 x 8.00 / 1e6
    assert call.cost == expected
    day = TenantUsageDay.objects.get(tenant=tenant)
    assert (day.prompt_tokens, day.completion_tokens, day.cost, day.replies) == (
        1000,
        500,
        expected,
        1,
    )


def _long_conversation(tenant: Tenant) -> Conversation:
    conversation = visitor_session_open(
        tenant=tenant, visitor_token=None, conversation_id=None
    ).conversation
    visitor_conversation_store(conversation=conversation)  # a hello alone stores nothing
    for n in range(12):
        for role, text in (
            (Message.Role.USER, f"Question {n}: my parcel 4411 has still not arrived at all."),
            (Message.Role.ASSISTANT, f"Answer {n}: I have asked the carrier about parcel 4411."),
        ):
            message_append(conversation=conversation, role=role, text=text, broadcast=False)
    return conversation


def test_a_summary_over_budget_is_skipped_without_a_request(
    make_tenant: Any, llm: Any, caplog: Any
) -> None:
    tenant, _ = make_tenant(history_token_budget=200)
    conversation = _long_conversation(tenant)
    tenant_limits_set(tenant=tenant, tokens_per_month=10)
    with caplog.at_level(logging.INFO, logger="conversations.summaries"):
        assert conversation_summarize(conversation_id=conversation.pk) is False
    assert llm.chat_requests() == []
    assert "skipped: limit_tokens_month" in caplog.text


def test_a_summary_within_budget_counts_its_tokens(make_tenant: Any, llm: Any) -> None:
    tenant, _ = make_tenant(history_token_budget=200)
    conversation = _long_conversation(tenant)
    tenant_limits_set(tenant=tenant, tokens_per_month=100_000)
    summary = {"summary": "Parcel 4411 is late.", "facts": [], "open_questions": []}
    llm.enqueue(
        Reply(
            text=json.dumps(summary),
            usage={"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320},
        )
    )
    assert conversation_summarize(conversation_id=conversation.pk) is True
    day = TenantUsageDay.objects.get(tenant=tenant)
    assert (day.prompt_tokens, day.completion_tokens, day.requests) == (300, 20, 1)


def test_query_embeddings_pass_the_choke_point(make_tenant: Any, llm: Any, settings: Any) -> None:
    settings.LLM_EMBEDDING_MODEL = "text-embedding-3-small"
    vectors._embed_query_cached.cache_clear()
    spent, _ = make_tenant()
    tenant_limits_set(tenant=spent, tokens_per_day=1)
    assert vectors.embed_query("where is my parcel", tenant_id=spent.pk) is None
    assert llm.embedding_requests() == []  # full-text search only, and no request

    free, _ = make_tenant()
    vector = vectors.embed_query("where is my parcel", tenant_id=free.pk)
    assert vector is not None
    assert len(llm.embedding_requests()) == 1
    day = TenantUsageDay.objects.get(tenant=free)
    assert (day.model, day.requests, day.prompt_tokens > 0) == ("text-embedding-3-small", 1, True)
    assert not TenantUsageDay.objects.filter(tenant=spent).exists()
