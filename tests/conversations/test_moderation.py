"""Moderation and sensitive topics on the reply path, with reply jobs run by hand against the
scripted provider (its /moderations endpoint flags `[[flag]]`; its topic classification
answers the `[[topic: T]]` marker)."""

from typing import Any

import pytest

from conversations.models import Conversation, LLMCall, Message, ReplyJob
from conversations.notices import notice
from conversations.reply.generate import reply_generate
from conversations.services import message_post_from_visitor, visitor_session_open
from supportbot.compliance.encryption import encrypt_secret
from supportbot.tenants.models import MODERATION_API_KEY_LABEL, Tenant
from tests.support.llm_server import Reply, ScriptedLLMServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def audit(monkeypatch: Any) -> list[dict[str, Any]]:
    """The audit events recorded (the audit log's storage is not what is tested here)."""
    events: list[dict[str, Any]] = []
    monkeypatch.setattr("conversations.review.record_event", lambda **kw: events.append(kw))
    return events


@pytest.fixture
def ask(llm: Any, monkeypatch: Any) -> Any:
    """Post a visitor message to `tenant` and run its reply job here; the conversation."""
    monkeypatch.setattr("conversations.jobs.reply_job_enqueue", lambda job_id: None)

    def post(tenant: Tenant, text: str) -> Conversation:
        session = visitor_session_open(tenant=tenant, visitor_token=None, conversation_id=None)
        message = message_post_from_visitor(
            conversation=session.conversation, client_id="c1", text=text
        ).message
        reply_generate(job_id=ReplyJob.objects.get(trigger=message).pk)
        return Conversation.objects.get(pk=session.conversation.pk)

    return post


def _reply(conversation: Conversation) -> Message:
    return Message.objects.get(conversation=conversation, role="assistant")


def test_flagged_input_makes_no_chat_call_and_is_refused_marked_and_audited(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any, audit: list[dict[str, Any]]
) -> None:
    tenant, _ = make_tenant()
    conversation = ask(tenant, "Bonjour, vous êtes [[flag]] tous des incapables, répondez-moi")
    assert len(llm.moderation_requests()) == 1
    assert llm.chat_requests() == []  # no chat request reached the provider
    reply = _reply(conversation)
    assert reply.text == notice("moderated_input", "fr")
    assert (reply.status, reply.finish_reason) == ("complete", "moderated")
    assert conversation.review_reason == "input_flagged"
    assert conversation.review_flagged_at is not None
    (event,) = audit
    assert event["action"] == "moderation.input_flagged"
    assert event["tenant_id"] == tenant.pk
    assert event["target"] == f"conversation:{conversation.pk}"
    assert event["details"]["categories"] == ["harassment"]
    assert "flag" not in repr(event["details"])  # never the text
    assert LLMCall.objects.count() == 0


def test_clean_input_and_reply_are_checked_and_answered(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any, audit: list[dict[str, Any]]
) -> None:
    tenant, _ = make_tenant()
    llm.enqueue(Reply(text="It left our warehouse today. It arrives tomorrow."))
    conversation = ask(tenant, "Where is my parcel?")
    assert _reply(conversation).text == "It left our warehouse today. It arrives tomorrow."
    checked = [r.json["input"] for r in llm.moderation_requests()]
    assert checked[0] == ["Where is my parcel?"]
    assert "".join(text for batch in checked[1:] for text in batch) == (
        "It left our warehouse today. It arrives tomorrow."
    )
    # The chat request went out only after the input's verdict.
    assert llm.moderation_requests()[0].at <= llm.chat_requests()[0].at
    assert conversation.review_reason == ""
    assert audit == []


def test_flagged_output_stops_the_stream_and_never_reaches_the_final_message(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any, audit: list[dict[str, Any]]
) -> None:
    tenant, _ = make_tenant()
    planted = "Here is how to [[flag]] do something awful."
    tail = " And more words." * 100
    llm.enqueue(Reply(text=f"Sure thing. {planted}{tail}", token_interval=0.01))
    conversation = ask(tenant, "Tell me something")
    reply = _reply(conversation)
    assert "[[flag]]" not in reply.text
    assert "awful" not in reply.text
    assert reply.text == notice("moderated_reply", "en")
    assert reply.finish_reason == "moderated"
    assert conversation.review_reason == "output_flagged"
    assert [e["action"] for e in audit] == ["moderation.output_flagged"]
    assert audit[0]["details"]["stage"] == "output"
    call = LLMCall.objects.get()
    assert call.outcome != "ok"  # the provider stream was cancelled before its end
    assert Message.objects.filter(conversation=conversation, text__contains="[[flag]]").count() == 0


def test_moderation_none_sends_no_moderation_request(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any
) -> None:
    tenant, _ = make_tenant(moderation_source="none")
    llm.enqueue(Reply(text="Plain answer [[flag]]."))
    conversation = ask(tenant, "Question [[flag]]")
    assert _reply(conversation).text == "Plain answer [[flag]]."
    assert llm.moderation_requests() == []


def test_a_provider_without_a_moderation_endpoint_is_not_moderated(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any, settings: Any
) -> None:
    settings.LLM_PROVIDER = "local"
    tenant, _ = make_tenant()
    conversation = ask(tenant, "Hello")
    assert _reply(conversation).text
    assert llm.moderation_requests() == []


def test_a_failing_check_fails_open_with_an_audit_event(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any, audit: list[dict[str, Any]]
) -> None:
    tenant, _ = make_tenant()
    llm.enqueue_moderations(Reply(status=500), Reply(status=500))
    llm.enqueue(Reply(text="Answer"))
    conversation = ask(tenant, "Hello")
    assert _reply(conversation).text == "Answer"
    assert [e["action"] for e in audit] == ["moderation.unchecked"]
    assert audit[0]["details"] == {"stage": "input", "error": "server_error"}
    assert conversation.review_reason == ""


def test_a_failing_check_fails_closed_when_the_tenant_says_so(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any, audit: list[dict[str, Any]]
) -> None:
    tenant, _ = make_tenant(moderation_fail_closed=True)
    llm.enqueue_moderations(Reply(status=500), Reply(status=500))
    conversation = ask(tenant, "Hello")
    assert llm.chat_requests() == []
    assert _reply(conversation).text == notice("unavailable", "en")
    assert conversation.review_reason == "moderation_unavailable"
    assert [e["action"] for e in audit] == ["moderation.moderation_unavailable"]


def test_refused_topic_offers_a_person_and_the_prompt_states_the_policy(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any, audit: list[dict[str, Any]]
) -> None:
    tenant, _ = make_tenant(sensitive_topics={"health": "refuse", "legal": "disclaimer"})
    llm.enqueue(Reply(text="Take two pills of this.", first_token_delay=0.3))
    conversation = ask(tenant, "[[topic: health]] What dose should I take?")
    reply = _reply(conversation)
    assert reply.text == notice("sensitive_refuse", "en", topic="health")
    assert "pills" not in reply.text
    assert reply.finish_reason == "sensitive_topic"
    (classification,) = llm.classification_requests()
    schema = classification.json["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["topic"]["enum"] == ["health", "legal", "none"]
    assert classification.json["messages"][-1]["content"].endswith("What dose should I take?")
    for request in llm.reply_requests():
        system = request.json["messages"][0]["content"]
        assert "Do not give advice on these sensitive topics: health." in system
        assert "general information only" in system
        assert "legal" in system
    assert [e["action"] for e in audit] == ["sensitive_topic.refused"]
    assert audit[0]["details"] == {"topic": "health"}
    assert LLMCall.objects.filter(purpose="classification", tenant=tenant).count() == 1


def test_disclaimer_topic_is_answered_with_a_disclaimer(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any, audit: list[dict[str, Any]]
) -> None:
    tenant, _ = make_tenant(sensitive_topics={"finance": "disclaimer"})
    llm.enqueue(Reply(text="An index fund spreads the risk."))
    conversation = ask(tenant, "[[topic: finance]] Should I buy an index fund?")
    text = _reply(conversation).text
    assert text.startswith("An index fund spreads the risk.")
    assert text.endswith(f"_{notice('sensitive_disclaimer', 'en', topic='finance')}_")
    assert [e["action"] for e in audit] == ["sensitive_topic.disclaimer"]
    calls = LLMCall.objects.filter(conversation=conversation)
    assert sorted(calls.values_list("purpose", flat=True)) == ["classification", "reply"]


def test_other_questions_of_a_topic_tenant_are_answered_plainly(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any
) -> None:
    tenant, _ = make_tenant(sensitive_topics={"health": "refuse"})
    llm.enqueue(Reply(text="Your parcel arrives tomorrow."))
    conversation = ask(tenant, "Where is my parcel?")
    assert _reply(conversation).text == "Your parcel arrives tomorrow."
    assert len(llm.classification_requests()) == 1


def test_no_topics_no_classification(make_tenant: Any, llm: ScriptedLLMServer, ask: Any) -> None:
    tenant, _ = make_tenant()
    ask(tenant, "[[topic: health]] What dose?")
    assert llm.classification_requests() == []
    assert "sensitive topics" not in llm.reply_requests()[0].json["messages"][0]["content"]


def test_a_tenants_moderation_url_and_key_are_never_used_for_another(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any, settings: Any
) -> None:
    settings.LLM_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    with ScriptedLLMServer() as own:
        tenant_a, _ = make_tenant(
            moderation_source="url",
            moderation_url=own.base_url,
            moderation_model="a-moderation-model",
        )
        tenant_a.moderation_api_key_encrypted = encrypt_secret(
            "sk-tenant-a-moderation", tenant_id=tenant_a.pk, field=MODERATION_API_KEY_LABEL
        )
        tenant_a.save(update_fields=["moderation_api_key_encrypted"])
        tenant_b, _ = make_tenant()
        ask(tenant_b, "B asks [[flag]]")
        assert own.requests == []
        (b_check,) = llm.moderation_requests()
        assert b_check.json["model"] == "omni-moderation-latest"
        assert b_check.headers["authorization"] == "Bearer sk-test-secret"

        conversation = ask(tenant_a, "A asks [[flag]]")
        (a_check,) = own.moderation_requests()
        assert a_check.json == {"input": ["A asks [[flag]]"], "model": "a-moderation-model"}
        assert a_check.headers["authorization"] == "Bearer sk-tenant-a-moderation"
        assert len(llm.moderation_requests()) == 1  # B's only
        assert conversation.review_reason == "input_flagged"


def test_a_moderation_url_on_a_private_address_is_refused_at_connection(
    make_tenant: Any, llm: ScriptedLLMServer, ask: Any, audit: list[dict[str, Any]]
) -> None:
    # Saved without the admin's check (e.g. before the server's policy changed): every
    # connection is checked again, and the refused check fails like any other.
    with ScriptedLLMServer() as own:
        tenant, _ = make_tenant(
            moderation_source="url", moderation_url=own.base_url, moderation_fail_closed=True
        )
        conversation = ask(tenant, "Hello")
        assert own.requests == []
        assert llm.chat_requests() == []
        assert conversation.review_reason == "moderation_unavailable"
        assert audit[0]["details"]["error"] == "config"
