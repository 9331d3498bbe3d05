"""The real local model (llama.cpp's OpenAI-compatible server with SmolLM2) through our SDK path."""

from collections.abc import Iterator
from typing import Any

import pytest

from supportbot.devstack.local_llm import LocalLLMSpec, local_llm_server
from supportbot.llm import ChatParams, Finished, ProviderConfig, TextDelta, stream_chat

pytestmark = pytest.mark.local_llm


@pytest.fixture(scope="module")
def local_model() -> Iterator[LocalLLMSpec]:
    with local_llm_server() as spec:
        yield spec


def test_stream_from_the_real_local_model(local_model: LocalLLMSpec) -> None:
    config = ProviderConfig(
        provider="local", base_url=local_model.base_url, model=local_model.alias
    )
    records: list[Any] = []
    events = list(
        stream_chat(
            config,
            [
                {"role": "system", "content": "You are a helpful support assistant."},
                {"role": "user", "content": "Say hello in one short sentence."},
            ],
            ChatParams(max_tokens=24, temperature=0.0, seed=1),
            on_record=records.append,
        )
    )
    deltas = [e for e in events if isinstance(e, TextDelta)]
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert deltas
    assert finished.text == "".join(d.text for d in deltas)
    assert finished.text.strip()
    assert finished.finish_reason in {"stop", "length"}
    assert len(records) == 1
    assert records[0].outcome == "ok"


@pytest.mark.django_db(transaction=True)
def test_reply_job_answers_with_the_local_model(
    local_model: LocalLLMSpec, make_tenant: Any, monkeypatch: Any, settings: Any
) -> None:
    from conversations.models import Message, ReplyJob
    from conversations.reply.generate import reply_generate
    from conversations.services import message_post_from_visitor, visitor_session_open

    settings.LLM_ALLOWED_PRIVATE_HOSTS = ["127.0.0.0/8"]  # the local model is on loopback
    monkeypatch.setattr("conversations.jobs.reply_job_enqueue", lambda job_id: None)
    tenant, _ = make_tenant(
        llm_provider="local",
        llm_base_url=local_model.base_url,
        llm_model=local_model.alias,
        max_tokens=24,
        temperature=0.0,
    )
    session = visitor_session_open(tenant=tenant, visitor_token=None, conversation_id=None)
    posted = message_post_from_visitor(conversation=session.conversation, client_id="l", text="Hi!")
    reply_generate(job_id=ReplyJob.objects.get(trigger=posted.message).pk)
    reply = Message.objects.get(conversation=session.conversation, role="assistant")
    assert reply.status == "complete"
    assert reply.text.strip()
    assert reply.completion_tokens
    assert reply.completion_tokens <= 24


def test_the_local_model_answers_the_make_run_check(local_model: LocalLLMSpec) -> None:
    from supportbot.devstack.local_llm import completion_problem

    assert completion_problem(local_model.base_url, local_model.alias) is None
