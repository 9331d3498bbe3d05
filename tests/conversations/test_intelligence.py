"""The reply path's intelligence, against the scripted provider: language, knowledge and
citations, the tool loop, handoff, and the degradation chain."""

import json
from typing import Any

import pytest

from conversations.models import Conversation, Message, ReplyJob, ToolInvocation
from conversations.reply.answer import MAX_TOOL_STEPS
from conversations.reply.generate import reply_generate
from conversations.services import message_post_from_visitor, visitor_session_open
from knowledge.ingestion import document_ingest, source_get_or_create
from tests.support.llm_server import Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _jobs_run_by_hand(monkeypatch: Any) -> None:
    monkeypatch.setattr("conversations.jobs.reply_job_enqueue", lambda job_id: None)


def ask(tenant: Any, text: str, client_id: str = "c1", conversation: Any = None) -> Message:
    if conversation is None:
        conversation = visitor_session_open(
            tenant=tenant, visitor_token=None, conversation_id=None
        ).conversation
    return message_post_from_visitor(
        conversation=conversation, client_id=client_id, text=text
    ).message


def answer(message: Message) -> Message:
    reply_generate(job_id=ReplyJob.objects.get(trigger=message).pk)
    return (
        Message.objects.filter(conversation=message.conversation, seq__gt=message.seq)
        .exclude(role="user")
        .order_by("seq")
        .first()
    )


def add_article(tenant: Any, key: str, text: str, *, title: str, url: str, language: str) -> None:
    source = source_get_or_create(tenant=tenant, name="Help centre")
    document_ingest(
        tenant=tenant,
        source=source,
        key=key,
        filename=f"{key}.md",
        content=text.encode(),
        title=title,
        url=url,
        language=language,
    )


def system_prompt(llm: Any, n: int = -1) -> str:
    return llm.chat_requests()[n].json["messages"][0]["content"]


def reference_data(llm: Any, n: int = -1) -> str:
    """The <reference_data> block at the start of the newest visitor turn ("" if none)."""
    turns = [m for m in llm.chat_requests()[n].json["messages"] if m["role"] == "user"]
    content = turns[-1]["content"]
    if not content.startswith("<reference_data>"):
        return ""
    return content[: content.index("</reference_data>") + len("</reference_data>")]


@pytest.mark.parametrize(
    ("question", "instruction", "language"),
    [
        ("Hola, ¿cómo puedo cambiar la contraseña de mi cuenta?", "Reply in Spanish.", "es"),
        (
            "Bonjour, comment puis-je changer le mot de passe de mon compte ?",
            "Reply in French.",
            "fr",
        ),
        ("Hallo, wie kann ich das Passwort für mein Konto ändern?", "Reply in German.", "de"),
        ("Olá, como posso alterar a palavra-passe da minha conta?", "Reply in Portuguese.", "pt"),
        ("Hello, how can I change the password of my account?", "Reply in English.", "en"),
    ],
)
def test_the_model_is_told_the_visitors_language(
    make_tenant: Any, llm: Any, question: str, instruction: str, language: str
) -> None:
    tenant, _ = make_tenant()
    reply = answer(ask(tenant, question))
    assert instruction in system_prompt(llm)
    assert reply.language == language
    assert Conversation.objects.get(pk=reply.conversation_id).language == language


def test_unsupported_language_gets_the_tenants_fallback(make_tenant: Any, llm: Any) -> None:
    tenant, _ = make_tenant(supported_languages=["en", "es"], fallback_language="es")
    answer(ask(tenant, "Hallo, wie kann ich das Passwort für mein Konto ändern?"))
    assert "Reply in Spanish." in system_prompt(llm)


def test_answers_are_grounded_in_the_tenants_own_articles_and_cite_them(
    make_tenant: Any, llm: Any
) -> None:
    acme, _ = make_tenant(name="Acme")
    globex, _ = make_tenant(name="Globex")
    add_article(
        acme,
        "returns",
        "# Returns\n\nYou can return any product within 30 days of delivery.",
        title="Acme returns",
        url="https://acme.example/returns",
        language="en",
    )
    add_article(
        globex,
        "returns",
        "# Returns\n\nYou can return any product within 90 days of delivery.",
        title="Globex returns",
        url="https://globex.example/returns",
        language="en",
    )

    llm.enqueue(Reply(text="You have 30 days to return a product [1]."))
    reply = answer(ask(acme, "How many days do I have to return a product?"))
    assert "30 days" not in system_prompt(llm)  # untrusted text is never in the system role
    prompt = reference_data(llm)
    assert "30 days" in prompt
    assert "90 days" not in prompt
    assert "[1] Acme returns" in prompt
    assert reply.sources == [{"title": "Acme returns", "url": "https://acme.example/returns"}]

    llm.enqueue(Reply(text="You have 90 days [1]."))
    reply = answer(ask(globex, "How many days do I have to return a product?"))
    prompt = reference_data(llm)
    assert "90 days" in prompt
    assert "30 days" not in prompt
    assert reply.sources == [{"title": "Globex returns", "url": "https://globex.example/returns"}]


def test_spanish_question_finds_the_spanish_article(make_tenant: Any, llm: Any) -> None:
    tenant, _ = make_tenant()
    add_article(
        tenant,
        "devoluciones",
        "# Devoluciones\n\nLa devolución es gratuita durante 60 días.",
        title="Devoluciones",
        url="https://shop.example/es/devoluciones",
        language="es",
    )
    llm.enqueue(Reply(text="Tienes 60 días [1]."))
    reply = answer(ask(tenant, "¿Cuántos días tengo para hacer devoluciones de un pedido?"))
    assert "Reply in Spanish." in system_prompt(llm)
    assert "60 días" in reference_data(llm)
    assert reply.sources[0]["title"] == "Devoluciones"


def test_tool_search_with_malformed_arguments_is_refused_then_answered(
    make_tenant: Any, llm: Any
) -> None:
    tenant, _ = make_tenant(knowledge_passages=0)
    add_article(
        tenant,
        "warranty",
        "# Warranty\n\nZips are covered for life.",
        title="Warranty",
        url="https://shop.example/warranty",
        language="en",
    )
    llm.enqueue(
        Reply(
            text="",
            tool_calls=[{"name": "search_knowledge", "arguments": '{"q": 1}'}],
            finish_reason="tool_calls",
        ),
        Reply(
            text="",
            tool_calls=[{"name": "search_knowledge", "arguments": '{"query": "zip warranty"}'}],
            finish_reason="tool_calls",
        ),
        Reply(text="Zips are covered for life [1]."),
    )
    reply = answer(ask(tenant, "My zip broke, is it covered?"))
    assert reply.text == "Zips are covered for life [1]."
    assert reply.sources == [{"title": "Warranty", "url": "https://shop.example/warranty"}]
    calls = list(ToolInvocation.objects.filter(conversation=reply.conversation).order_by("step"))
    assert [(c.name, c.status) for c in calls] == [
        ("search_knowledge", "invalid_arguments"),
        ("search_knowledge", "ok"),
    ]
    second, third = llm.chat_requests()[1].json, llm.chat_requests()[2].json
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool"
    assert "Invalid arguments" in tool_message["content"]
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "search_knowledge"
    assert "Zips are covered for life." in third["messages"][-1]["content"]


def test_tool_loop_is_bounded(make_tenant: Any, llm: Any) -> None:
    tenant, _ = make_tenant()
    looping = Reply(
        text="",
        tool_calls=[{"name": "search_knowledge", "arguments": '{"query": "x"}'}],
        finish_reason="tool_calls",
    )
    llm.enqueue(*[looping] * MAX_TOOL_STEPS, Reply(text="Here is what I know."))
    reply = answer(ask(tenant, "Tell me everything"))
    requests = llm.chat_requests()
    assert len(requests) == MAX_TOOL_STEPS + 1
    assert requests[-1].json["tool_choice"] == "none"
    assert reply.text == "Here is what I know."


def test_unknown_tool_is_recorded_and_answered(make_tenant: Any, llm: Any) -> None:
    tenant, _ = make_tenant()
    llm.enqueue(
        Reply(
            text="",
            tool_calls=[{"name": "delete_database", "arguments": "{}"}],
            finish_reason="tool_calls",
        ),
        Reply(text="I can't do that."),
    )
    reply = answer(ask(tenant, "Please wipe everything"))
    assert reply.text == "I can't do that."
    assert ToolInvocation.objects.get().status == "unknown_tool"


def test_model_handoff_moves_the_conversation_to_a_person_and_the_bot_stays_quiet(
    make_tenant: Any, llm: Any
) -> None:
    tenant, _ = make_tenant()
    llm.enqueue(
        Reply(
            text="",
            tool_calls=[
                {"name": "handoff_to_human", "arguments": json.dumps({"reason": "refund dispute"})}
            ],
            finish_reason="tool_calls",
        )
    )
    message = ask(tenant, "I was charged twice and I'm angry")
    notice = answer(message)
    conversation = Conversation.objects.get(pk=message.conversation_id)
    assert conversation.status == "waiting_for_agent"
    assert conversation.handoff_reason == "refund dispute"
    assert notice.role == "system"
    assert "person from our team" in notice.text
    assert len(llm.chat_requests()) == 1
    # The bot stays quiet afterwards: no reply job for the next message.
    later = ask(tenant, "Hello?", client_id="c2", conversation=conversation)
    assert not ReplyJob.objects.filter(trigger=later).exists()


def test_visitor_asking_for_a_person_is_handed_over(make_tenant: Any, llm: Any) -> None:
    tenant, _ = make_tenant()
    message = ask(tenant, "Can I talk to a human please?")
    conversation = Conversation.objects.get(pk=message.conversation_id)
    assert conversation.status == "waiting_for_agent"
    assert not ReplyJob.objects.filter(trigger=message).exists()
    assert Message.objects.filter(conversation=conversation, role="system").count() == 1
    assert llm.chat_requests() == []


def test_fallback_model_answers_when_the_main_one_fails(make_tenant: Any, llm: Any) -> None:
    tenant, _ = make_tenant(fallback_llm_model="backup-model")
    failing = Reply(status=500, error_body={"error": {"message": "boom", "type": "server_error"}})
    llm.enqueue(failing, failing, Reply(text="Answer from the backup."))
    reply = answer(ask(tenant, "Are you open on Sunday?"))
    assert reply.text == "Answer from the backup."
    assert reply.status == "complete"
    assert [r.json["model"] for r in llm.chat_requests()] == [
        "scripted-model",
        "scripted-model",
        "backup-model",
    ]


def test_provider_down_quotes_the_help_centre_with_its_source(make_tenant: Any, llm: Any) -> None:
    tenant, _ = make_tenant()
    add_article(
        tenant,
        "hours",
        "# Opening hours\n\nWe are open Monday to Saturday, 9:00 to 18:00.",
        title="Opening hours",
        url="https://shop.example/hours",
        language="en",
    )
    failing = Reply(status=503, error_body={"error": {"message": "down", "type": "server_error"}})
    llm.enqueue(failing, failing)
    reply = answer(ask(tenant, "What are your opening hours on Saturday?"))
    assert reply.status == "complete"
    assert reply.text.startswith("Here is what our help centre says:")
    assert "Monday to Saturday" in reply.text
    assert reply.sources == [{"title": "Opening hours", "url": "https://shop.example/hours"}]
    assert ReplyJob.objects.get(reply=reply).error_code == "degraded:server_error"


def test_repeated_failures_hand_the_conversation_to_a_person(make_tenant: Any, llm: Any) -> None:
    tenant, _ = make_tenant(handoff_after_failures=2)
    auth = Reply(status=401, error_body={"error": {"message": "bad key", "type": "auth"}})
    llm.enqueue(auth, auth)
    first = ask(tenant, "First question about my order")
    reply = answer(first)
    assert "person from our team" in reply.text
    conversation = Conversation.objects.get(pk=first.conversation_id)
    assert conversation.status == "bot"
    second = ask(
        tenant, "Second question about my order", client_id="c2", conversation=conversation
    )
    answer(second)
    conversation.refresh_from_db()
    assert conversation.status == "waiting_for_agent"


def test_summary_replaces_the_turns_it_covers_in_later_prompts(make_tenant: Any, llm: Any) -> None:
    tenant, _ = make_tenant()
    first = ask(tenant, "My tent pole snapped on the first night, order 4411")
    answer(first)
    conversation = Conversation.objects.get(pk=first.conversation_id)
    conversation.summary = {
        "summary": "The visitor's tent pole broke on its first use.",
        "facts": ["Order 4411"],
        "open_questions": ["Replacement or refund?"],
    }
    conversation.summary_seq = conversation.last_seq
    conversation.save()
    answer(ask(tenant, "Can you send a new pole?", client_id="c2", conversation=conversation))
    sent = llm.chat_requests()[-1].json["messages"]
    assert "tent pole" not in sent[0]["content"]  # the summary is not in the system role
    data = reference_data(llm)
    assert "<conversation_summary>\nSummary of the earlier conversation: The visitor's tent" in data
    assert "Order 4411" in data
    turns = [m["content"] for m in sent[1:]]
    assert turns == [f"{data}\n\nThe visitor's message:\nCan you send a new pole?"]


def test_writing_into_a_closed_conversation_reopens_it_with_the_assistant(
    make_tenant: Any, llm: Any
) -> None:
    tenant, _ = make_tenant()
    first = ask(tenant, "Thanks, that's all")
    conversation = Conversation.objects.get(pk=first.conversation_id)
    conversation.status = "closed"
    conversation.save()
    again = ask(
        tenant, "Actually, one more thing about my order", client_id="c2", conversation=conversation
    )
    conversation.refresh_from_db()
    assert conversation.status == "bot"
    assert ReplyJob.objects.filter(trigger=again).exists()
