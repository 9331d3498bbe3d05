"""Who answers first (assistant first, person first, visitor decides) and the AI disclosure,
through the real widget socket, channel layer (Redis), a real Celery worker and the scripted
provider, which records every request: a conversation waiting for a person makes none."""

from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from conversations.agents import conversation_hand_back, conversation_take_over
from conversations.assistant_modes import (
    PERSON_FIRST_REASON,
    person_first_release,
    person_first_waits_release,
)
from conversations.handoff import conversation_request_agent
from conversations.models import Conversation, Message, ReplyJob
from supportbot.celery import app as celery_app
from supportbot.tenants.business_hours import WEEKDAYS
from supportbot.tenants.disclosure import DEFAULT_AI_DISCLOSURES
from tests.conversations.test_agents import receive_each
from tests.conversations.test_consumer import (
    SHOP,
    connect,
    hello,
    is_final_assistant,
    receive_until,
)
from tests.support.llm_server import Reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_idle")]


def is_notice(frame: dict[str, Any]) -> bool:
    return frame["type"] == "message" and frame["message"]["role"] == "system"


def is_answer(frame: dict[str, Any]) -> bool:
    return frame["type"] in ("ack", "error")


def answer_of(frames: list[dict[str, Any]]) -> dict[str, Any]:
    return next(f for f in frames if is_answer(f))


def is_status(status: str) -> Any:
    return lambda f: f["type"] == "conversation.updated" and f["conversation"]["status"] == status


@database_sync_to_async
def _tenant_set(tenant: Any, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(tenant, name, value)
    tenant.full_clean(validate_unique=False)
    tenant.save()


@database_sync_to_async
def _conversation(conversation_id: str) -> Conversation:
    return Conversation.objects.get(pk=conversation_id)


@database_sync_to_async
def _reply_jobs(conversation_id: str) -> int:
    return ReplyJob.objects.filter(conversation_id=conversation_id).count()


@database_sync_to_async
def _release(**kwargs: Any) -> int:
    return person_first_waits_release(**kwargs)


def _later(minutes: float) -> Any:
    return timezone.now() + timedelta(minutes=minutes)


async def _visitor(key: Any, locale: str = "en-GB") -> tuple[WebsocketCommunicator, dict[str, Any]]:
    ws = await connect()
    return ws, await hello(ws, key.public_key, locale=locale)


async def _send(
    ws: WebsocketCommunicator, client_id: str, text: str, *expected: Any, **fields: Any
) -> list[dict[str, Any]]:
    """Send a message; the frames received until its ack (or error) and one frame matching each
    of `expected` have arrived, in whatever order they came."""
    await ws.send_json_to({"type": "message", "client_id": client_id, "text": text, **fields})
    return await receive_each(ws, is_answer, *expected)


async def _wait_begins(ws: WebsocketCommunicator, client_id: str, text: str, **fields: Any) -> str:
    """Send the first message of a person-first conversation; the text of the notice it gets."""
    frames = await _send(ws, client_id, text, is_status("waiting_for_agent"), is_notice, **fields)
    assert answer_of(frames)["type"] == "ack", frames
    return str(next(f for f in frames if is_notice(f))["message"]["text"])


@pytest.fixture
def tenant_and_key(make_tenant: Any, llm: Any) -> Any:
    return make_tenant(allowed_origins=[SHOP])


# --- assistant first (the default) -------------------------------------------------------------


async def test_assistant_first_answers_at_once_and_welcome_discloses_the_assistant(
    tenant_and_key: Any, llm: Any
) -> None:
    _, key = tenant_and_key
    llm.enqueue(Reply(text="We ship in two days."))
    ws, welcome = await _visitor(key)
    assistant = welcome["assistant"]
    assert assistant["mode"] == "assistant_first"
    assert assistant["disclosure"] == DEFAULT_AI_DISCLOSURES["en"]
    assert set(DEFAULT_AI_DISCLOSURES) <= set(assistant["disclosures"])
    assert assistant["team_available"] is True

    # A route sent anyway does not change the tenant's mode.
    frames = await _send(ws, "a1", "When do you ship?", is_final_assistant, route="person")
    assert answer_of(frames)["type"] == "ack"
    assert frames[-1]["message"]["text"] == "We ship in two days."
    assert not any(is_notice(f) for f in frames)
    assert len(llm.chat_requests()) == 1
    await ws.disconnect()


async def test_the_disclosure_is_the_tenants_own_in_the_visitors_language(
    tenant_and_key: Any, llm: Any
) -> None:
    tenant, key = tenant_and_key
    await _tenant_set(tenant, ai_disclosure={"es": "Hablas con el asistente de IA de la tienda."})
    ws, welcome = await _visitor(key, locale="es-ES")
    assert welcome["assistant"]["disclosure"] == "Hablas con el asistente de IA de la tienda."
    assert welcome["assistant"]["disclosures"]["fr"] == DEFAULT_AI_DISCLOSURES["fr"]
    await ws.disconnect()


# --- person first ---------------------------------------------------------------------------------


async def test_person_first_waits_then_the_assistant_answers_the_waiting_messages(
    tenant_and_key: Any, llm: Any
) -> None:
    tenant, key = tenant_and_key
    await _tenant_set(tenant, conversation_mode="person_first", person_first_wait_minutes=5)
    llm.enqueue(Reply(text="Your parcel left our warehouse on Monday."))
    ws, welcome = await _visitor(key)
    assert welcome["assistant"]["mode"] == "person_first"
    assert welcome["assistant"]["wait_minutes"] == 5
    conversation_id = welcome["conversation_id"]

    notice = await _wait_begins(ws, "p1", "Where is my parcel?")
    assert notice == (
        "A person from our team will be with you shortly. If no one is free within 5 minutes, "
        "our assistant will answer."
    )
    assert answer_of(await _send(ws, "p2", "It was due on Monday."))["type"] == "ack"
    conversation = await _conversation(conversation_id)
    assert conversation.status == "waiting_for_agent"
    assert conversation.handoff_reason == PERSON_FIRST_REASON
    assert conversation.assistant_fallback_at is not None
    assert _later(4.9) < conversation.assistant_fallback_at < _later(5.1)
    # Nothing was queued, so nothing can reach the provider.
    assert await _reply_jobs(conversation_id) == 0
    assert llm.chat_requests() == []

    # Before the wait is over, the release leaves it waiting.
    assert await _release(now=_later(4)) == 0
    assert (await _conversation(conversation_id)).status == "waiting_for_agent"

    # The wait is over: the beat task (through the worker) hands it to the assistant.
    await database_sync_to_async(Conversation.objects.filter(pk=conversation_id).update)(
        assistant_fallback_at=timezone.now() - timedelta(seconds=1)
    )
    celery_app.send_task("conversations.release_person_first_waits")
    frames = await receive_until(ws, is_final_assistant)
    assert any(is_status("bot")(f) for f in frames), frames
    released = next(f for f in frames if is_notice(f))["message"]["text"]
    assert released.startswith("No one from our team was free, so our assistant will answer now.")
    assert frames[-1]["message"]["text"] == "Your parcel left our warehouse on Monday."

    requests = llm.chat_requests()
    assert len(requests) == 1
    contents = [m["content"] for m in requests[0].json["messages"] if m["role"] == "user"]
    assert any("Where is my parcel?" in c for c in contents)
    assert contents[-1].endswith("It was due on Monday.")
    conversation = await _conversation(conversation_id)
    assert (conversation.status, conversation.assistant_fallback_at) == ("bot", None)
    await ws.disconnect()


async def test_an_agent_who_takes_over_first_keeps_the_conversation(
    tenant_and_key: Any, llm: Any
) -> None:
    tenant, key = tenant_and_key
    await _tenant_set(tenant, conversation_mode="person_first")
    agent = await database_sync_to_async(get_user_model().objects.create_user)(
        username="ana", password="pw-not-used", is_staff=True
    )
    ws, welcome = await _visitor(key)
    conversation_id = welcome["conversation_id"]
    await _wait_begins(ws, "t1", "Can someone call me back?")

    conversation = await _conversation(conversation_id)
    assert await database_sync_to_async(conversation_take_over)(
        conversation=conversation, agent=agent
    )
    assert await _release(now=_later(10)) == 0
    conversation = await _conversation(conversation_id)
    assert (conversation.status, conversation.assistant_fallback_at) == ("with_agent", None)

    # Handed back and asked for again, it waits for an ordinary handoff: never released.
    await database_sync_to_async(conversation_hand_back)(conversation=conversation, agent=agent)
    await database_sync_to_async(Conversation.objects.filter(pk=conversation_id).update)(
        assistant_fallback_at=timezone.now()
    )
    assert await database_sync_to_async(conversation_request_agent)(
        conversation_id=conversation_id, reason="The visitor asked for a person."
    )
    assert await _release(now=_later(10)) == 0
    assert (await _conversation(conversation_id)).status == "waiting_for_agent"
    assert llm.chat_requests() == []
    assert await _reply_jobs(conversation_id) == 0
    await ws.disconnect()


async def test_outside_business_hours_the_assistant_answers_at_once(
    tenant_and_key: Any, llm: Any
) -> None:
    tenant, key = tenant_and_key
    another_day = WEEKDAYS[(timezone.now().weekday() + 3) % 7]
    await _tenant_set(
        tenant,
        conversation_mode="person_first",
        business_hours_timezone="UTC",
        business_hours={another_day: ["00:00-24:00"]},
    )
    llm.enqueue(Reply(text="Here is how returns work."))
    ws, welcome = await _visitor(key)
    assert welcome["assistant"]["team_available"] is False

    frames = await _send(ws, "o1", "How do returns work?", is_notice, is_final_assistant)
    assert answer_of(frames)["type"] == "ack"
    notice = next(f for f in frames if is_notice(f))["message"]["text"]
    assert notice.startswith("Our team isn't available right now, so our assistant will answer.")
    assert frames[-1]["message"]["text"] == "Here is how returns work."
    assert not any(is_status("waiting_for_agent")(f) for f in frames)
    assert len(llm.chat_requests()) == 1
    assert (await _conversation(welcome["conversation_id"])).status == "bot"
    await ws.disconnect()


async def test_a_one_minute_wait_is_said_in_the_visitors_language(
    tenant_and_key: Any, llm: Any
) -> None:
    tenant, key = tenant_and_key
    await _tenant_set(tenant, conversation_mode="person_first", person_first_wait_minutes=1)
    ws, _ = await _visitor(key, locale="es-ES")
    notice = await _wait_begins(ws, "s1", "¿Dónde está mi pedido?")
    assert "en un minuto" in notice
    assert notice.startswith("Una persona de nuestro equipo")
    await ws.disconnect()


# --- visitor decides ------------------------------------------------------------------------------


async def test_visitor_decides_by_the_first_messages_route(tenant_and_key: Any, llm: Any) -> None:
    tenant, key = tenant_and_key
    await _tenant_set(tenant, conversation_mode="visitor_decides")
    llm.enqueue(Reply(text="The assistant here."), Reply(text="Still the assistant."))

    person, welcome = await _visitor(key)
    assert welcome["assistant"]["mode"] == "visitor_decides"
    await _wait_begins(person, "v1", "I'd like to discuss an invoice.", route="person")
    assert await _reply_jobs(welcome["conversation_id"]) == 0

    chooser, chooser_welcome = await _visitor(key)
    frames = await _send(
        chooser, "v2", "What are your hours?", is_final_assistant, route="assistant"
    )
    assert answer_of(frames)["type"] == "ack"
    assert next(f for f in frames if is_final_assistant(f))["message"]["text"] == (
        "The assistant here."
    )
    # Only the first message's route counts: a later one does not start a wait.
    frames = await _send(chooser, "v3", "And on Sunday?", is_final_assistant, route="person")
    assert answer_of(frames)["type"] == "ack"
    assert not any(is_status("waiting_for_agent")(f) for f in frames)
    assert (await _conversation(chooser_welcome["conversation_id"])).status == "bot"
    assert len(llm.chat_requests()) == 2
    await person.disconnect()
    await chooser.disconnect()


async def test_visitor_decides_without_a_route_is_answered_by_the_assistant(
    tenant_and_key: Any, llm: Any
) -> None:
    tenant, key = tenant_and_key
    await _tenant_set(tenant, conversation_mode="visitor_decides")
    llm.enqueue(Reply(text="Hello from the assistant."))
    ws, _ = await _visitor(key)
    frames = await _send(ws, "n1", "Hello?", is_final_assistant)
    assert answer_of(frames)["type"] == "ack"
    assert next(f for f in frames if is_final_assistant(f))["message"]["text"] == (
        "Hello from the assistant."
    )
    await ws.disconnect()


@pytest.mark.parametrize("route", ["robot", 1, "", ["person"]])
async def test_an_unknown_route_is_refused_and_nothing_is_stored(
    tenant_and_key: Any, llm: Any, route: Any
) -> None:
    tenant, key = tenant_and_key
    await _tenant_set(tenant, conversation_mode="visitor_decides")
    ws, welcome = await _visitor(key)
    error = answer_of(await _send(ws, "r1", "Hi", route=route))
    assert error["type"] == "error"
    assert (error["code"], error["client_id"]) == ("bad_request", "r1")
    stored = await database_sync_to_async(
        Message.objects.filter(conversation_id=welcome["conversation_id"]).count
    )()
    assert stored == 0
    await ws.disconnect()


# --- tenants apart --------------------------------------------------------------------------------


@pytest.fixture
def two_tenants(make_tenant: Any, llm: Any) -> Any:
    return make_tenant(allowed_origins=[SHOP]), make_tenant(allowed_origins=[SHOP])


async def test_modes_disclosures_and_releases_belong_to_their_own_tenant(
    two_tenants: Any, llm: Any
) -> None:
    (tenant_a, key_a), (tenant_b, key_b) = two_tenants
    await _tenant_set(tenant_a, conversation_mode="person_first")
    await _tenant_set(tenant_b, ai_disclosure={"en": "Globex's own wording."})
    llm.enqueue(Reply(text="Globex's assistant answers."), Reply(text="Acme's assistant answers."))

    visitor_a, welcome_a = await _visitor(key_a)
    visitor_b, welcome_b = await _visitor(key_b)
    assert welcome_a["assistant"]["disclosure"] == DEFAULT_AI_DISCLOSURES["en"]
    assert "Globex's own wording." not in str(welcome_a)
    assert welcome_b["assistant"]["disclosure"] == "Globex's own wording."

    # B's visitor asking for a person by route does not get A's person-first wait.
    await _wait_begins(visitor_a, "a1", "Hello Acme")
    frames = await _send(visitor_b, "b1", "Hello Globex", is_final_assistant, route="person")
    assert answer_of(frames)["type"] == "ack"

    # B's conversation waits for an ordinary handoff; the release only touches A's wait.
    assert await database_sync_to_async(conversation_request_agent)(
        conversation_id=welcome_b["conversation_id"], reason="The visitor asked for a person."
    )
    assert await _release(now=_later(10)) == 1
    await receive_until(visitor_a, is_final_assistant)
    assert (await _conversation(welcome_a["conversation_id"])).status == "bot"
    assert (await _conversation(welcome_b["conversation_id"])).status == "waiting_for_agent"
    # Releasing B's conversation by id does nothing either: it is not a person-first wait.
    assert not await database_sync_to_async(person_first_release)(
        conversation_id=welcome_b["conversation_id"], now=_later(10)
    )
    assert len(llm.chat_requests()) == 2
    await visitor_a.disconnect()
    await visitor_b.disconnect()


def test_beat_releases_person_first_waits_twice_a_minute() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["release-person-first-waits"]
    assert entry == {"task": "conversations.release_person_first_waits", "schedule": 30.0}
    assert "conversations.release_person_first_waits" in celery_app.tasks
