"""Personal data kept from the provider: the detectors, stable placeholders, what the loopback
provider records of replies, tool calls and summaries, and the placeholders the model writes
back restored for the visitor (deltas and the final message)."""

import json
import re
import time
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async

from conversations.messages import message_append
from conversations.models import Conversation, Message, ReplyJob, ToolInvocation
from conversations.redaction import (
    Placeholders,
    find_personal_data,
    iban_valid,
    luhn_valid,
    mask,
    phone_region,
)
from conversations.reply.generate import reply_generate
from conversations.services import message_post_from_visitor, visitor_session_open
from conversations.summaries import conversation_summarize
from knowledge.ingestion import document_ingest, source_get_or_create
from tests.conversations.test_consumer import connect, hello, is_final_assistant, receive_until
from tests.support.llm_server import Reply

EMAIL = "jane.roe@example.org"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
IBAN = "GB82 WEST 1234 5698 7654 32"
PLANTED = f"Hi, I'm {EMAIL}, phone {PHONE}, card {CARD}, IBAN {IBAN}."
# Values that look like personal data and are not: they reach the model as written.
NOT_PERSONAL = "Order #100234, ref ORD-55501234, and the code 4111 1111 1111 1112."


def _forms(value: str) -> list[str]:
    """How a planted value might appear in a request: as written, compact, lower case."""
    compact = re.sub(r"[\s-]", "", value)
    return [value, compact, value.lower(), compact.lower(), compact.lstrip("+")]


def assert_nothing_planted(bodies: list[dict[str, Any]]) -> None:
    assert bodies, "no request was recorded"
    for body in bodies:
        sent = json.dumps(body, ensure_ascii=False)
        for value in (EMAIL, PHONE, CARD, IBAN):
            for form in _forms(value):
                assert form not in sent, f"{value!r} reached the provider"


# -- the detectors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "DE89 3704 0044 0532 0130 00",
        "FR14 2004 1010 0505 0001 3M02 606",
        "es91 2100 0418 4502 0005 1332",
    ],
)
def test_valid_ibans_are_found_with_or_without_spaces(iban: str) -> None:
    text = f"My IBAN is {iban} thanks"
    [finding] = find_personal_data(text)
    assert finding.kind == "IBAN"
    assert text[finding.start : finding.end] == iban
    assert finding.key == re.sub(" ", "", iban).upper()


@pytest.mark.parametrize(
    "text",
    [
        "GB82 WEST 1234 5698 7654 33",  # one digit off: mod 97 fails
        "GB00WEST12345698765432",
        "XX12 ABCD",  # too short
    ],
)
def test_invalid_ibans_are_not_found(text: str) -> None:
    assert [f.kind for f in find_personal_data(f"IBAN {text}.")] == []
    assert not iban_valid(re.sub(" ", "", text).upper())


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5500 0000 0000 0004",
        "3782 822463 10005",  # American Express, 15 digits
        "4222222222222",  # 13 digits
    ],
)
def test_luhn_valid_cards_are_found(card: str) -> None:
    [finding] = find_personal_data(f"card: {card}, expires 12/29")
    assert (finding.kind, finding.key) == ("CARD", re.sub(r"[ -]", "", card))


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn-invalid, 16 digits
        "4111111111111112",
        "order #100234",
        "order ORD-55501234",
        "1234567890123456789012",  # too long for a card
        "tracking 1Z999AA10123456784",
    ],
)
def test_numbers_that_are_not_personal_data_are_left(text: str) -> None:
    assert find_personal_data(text, region="DK") == []  # Danish numbers have 8 digits
    assert Placeholders(region="GB").redact(text) == text


def test_an_iban_next_to_a_card_keeps_its_digits() -> None:
    text = "IBAN DE89 3704 0044 0532 0130 00 4111 1111 1111 1111 thanks"
    assert Placeholders().redact(text) == "IBAN [IBAN_1] [CARD_1] thanks"


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


@pytest.mark.parametrize(
    ("text", "region", "e164"),
    [
        ("call +44 20 7946 0958 today", None, "+442079460958"),
        ("call 020 7946 0958 today", "GB", "+442079460958"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        ("mobile 06 12 34 56 78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "US", "+33612345678"),
        ("móvil 612 345 678", "ES", "+34612345678"),
        ("0049 30 12345678", "GB", "+493012345678"),
    ],
)
def test_phone_numbers_in_several_formats(text: str, region: str | None, e164: str) -> None:
    [finding] = find_personal_data(text, region=region)
    assert (finding.kind, finding.key) == ("PHONE", e164)


def test_national_numbers_need_a_region_international_ones_do_not() -> None:
    assert find_personal_data("call 020 7946 0958") == []
    assert [f.kind for f in find_personal_data("call +44 20 7946 0958")] == ["PHONE"]


def test_emails() -> None:
    text = "Write to Jane.Doe+shop@mail.example.co.uk. Or x@y, or @handle, or a@b.c."
    findings = find_personal_data(text)
    assert [text[f.start : f.end] for f in findings] == ["Jane.Doe+shop@mail.example.co.uk"]
    assert findings[0].key == "jane.doe+shop@mail.example.co.uk"


def test_phone_region_from_the_tenant_then_the_locale() -> None:
    assert phone_region(tenant_region="ES", locale="en-GB") == "ES"
    assert phone_region(tenant_region="", locale="en-GB") == "GB"
    assert phone_region(tenant_region="", locale="fr_FR") == "FR"
    assert phone_region(tenant_region="", locale="en") is None
    assert phone_region(tenant_region="", locale="") is None


def test_placeholders_are_stable_and_numbered_per_kind() -> None:
    placeholders = Placeholders(region="GB")
    first = placeholders.redact(f"{EMAIL} and {PHONE} and other@example.org")
    assert first == "[EMAIL_1] and [PHONE_1] and [EMAIL_2]"
    # The same values again, spelled differently: the same placeholders.
    again = placeholders.redact("JANE.ROE@example.org, 020 7946 0958")
    assert again == "[EMAIL_1], [PHONE_1]"
    # Stored and loaded: the numbering goes on.
    loaded = Placeholders(json.loads(json.dumps(placeholders.as_json())), region="GB")
    assert loaded.redact(f"{CARD} {EMAIL} third@example.org") == "[CARD_1] [EMAIL_1] [EMAIL_3]"
    assert list(loaded.added) == ["[CARD_1]", "[EMAIL_3]"]
    assert loaded.restore("Mail [EMAIL_1], card [CARD_1], [EMAIL_9]") == (
        f"Mail {EMAIL}, card {CARD}, [EMAIL_9]"
    )


def test_a_stored_map_of_the_wrong_shape_is_ignored() -> None:
    placeholders = Placeholders({"[EMAIL_1]": "x", "junk": {"value": "a", "key": "b"}})
    assert not placeholders
    assert placeholders.restore("[EMAIL_1]") == "[EMAIL_1]"


def test_the_stream_holds_back_a_partial_placeholder() -> None:
    placeholders = Placeholders()
    placeholders.redact(f"{EMAIL} {PHONE}")
    stream = placeholders.stream()
    pieces = ["Sure, I'll write to [", "EMA", "IL_", "1] or call [PHONE_1", "] [x] [CAR"]
    shown = [stream.feed(piece) for piece in pieces]
    assert shown == ["Sure, I'll write to ", "", "", f"{EMAIL} or call ", f"{PHONE} [x] "]
    assert stream.end() == "[CAR"  # not a placeholder after all: shown as written


def test_mask_for_a_search_query() -> None:
    assert mask(f"refund to {IBAN}?") == "refund to [IBAN]?"


def test_redaction_is_linear_on_long_runs() -> None:
    """No pattern backtracks on a long run without a match; a message of nothing but digit
    groups (the worst case for the phone matcher) costs well under a second."""
    for text in ("a" * 20000 + "@", "AB12" + " C" * 10000, "x.y-" * 5000 + "@", "1" * 20000):
        start = time.perf_counter()
        find_personal_data(text, region="GB")
        assert time.perf_counter() - start < 0.5
    start = time.perf_counter()
    assert find_personal_data("1 " * 2000, region="GB") == []
    assert time.perf_counter() - start < 1.5


# -- through the reply path ----------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def no_worker(monkeypatch: Any) -> None:
    monkeypatch.setattr("conversations.jobs.reply_job_enqueue", lambda job_id: None)
    monkeypatch.setattr("conversations.jobs.summary_enqueue", lambda conversation_id: None)


def _conversation(tenant: Any, locale: str = "en-GB") -> Conversation:
    session = visitor_session_open(
        tenant=tenant, visitor_token=None, conversation_id=None, locale=locale
    )
    return session.conversation


def _ask(conversation: Conversation, text: str) -> Message:
    return message_post_from_visitor(
        conversation=conversation, client_id=str(uuid.uuid4()), text=text
    ).message


def _answer(message: Message) -> Message:
    reply_generate(job_id=ReplyJob.objects.get(trigger=message).pk)
    return Message.objects.get(conversation=message.conversation, seq=message.seq + 1)


def _bodies(llm: Any) -> list[dict[str, Any]]:
    return [request.json for request in llm.chat_requests()]


@pytestmark_db
def test_the_provider_never_sees_the_planted_values_and_the_store_keeps_them(
    make_tenant: Any, llm: Any, no_worker: None
) -> None:
    tenant, _ = make_tenant()
    llm.enqueue(Reply(text="Thanks, noted."))
    message = _ask(_conversation(tenant), f"{PLANTED} {NOT_PERSONAL}")
    _answer(message)
    assert_nothing_planted(_bodies(llm))
    newest = _bodies(llm)[-1]["messages"][-1]["content"]
    for placeholder in ("[EMAIL_1]", "[PHONE_1]", "[CARD_1]", "[IBAN_1]"):
        assert placeholder in newest
    assert NOT_PERSONAL in newest
    message.refresh_from_db()
    assert message.text == f"{PLANTED} {NOT_PERSONAL}"  # the visitor's own words are kept


@pytestmark_db
def test_placeholders_are_stable_across_messages_and_the_summary(
    make_tenant: Any, llm: Any, no_worker: None
) -> None:
    tenant, _ = make_tenant(history_token_budget=300)
    conversation = _conversation(tenant)
    llm.enqueue(Reply(text="Thanks."), Reply(text="Got both."))
    _answer(_ask(conversation, f"My email is {EMAIL}."))
    _answer(_ask(conversation, f"Again: {EMAIL.upper()}, and my card {CARD}; also ann@example.net"))
    first, second = _bodies(llm)
    assert first["messages"][-1]["content"] == "My email is [EMAIL_1]."
    turns = [m["content"] for m in second["messages"] if m["role"] == "user"]
    assert turns[0] == "My email is [EMAIL_1]."
    assert turns[-1] == "Again: [EMAIL_1], and my card [CARD_1]; also [EMAIL_2]"

    # A long conversation is summarised from redacted text, with the same placeholders.
    for n in range(8):
        message_append(
            conversation=conversation,
            role=Message.Role.USER,
            text=f"Turn {n}: please send the invoice to {EMAIL}, paid with card {CARD}.",
            broadcast=False,
        )
        message_append(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text=f"Turn {n}: I will send it to {EMAIL} as soon as it is ready.",
            broadcast=False,
        )
    summary = {
        "summary": "The visitor wants the invoice sent to [EMAIL_1].",
        "facts": ["Paid with card [CARD_1]"],
        "open_questions": [],
    }
    llm.enqueue(Reply(text=json.dumps(summary)))
    assert conversation_summarize(conversation_id=conversation.pk)
    summary_request = _bodies(llm)[-1]
    assert summary_request.get("response_format")
    assert "[EMAIL_1]" in json.dumps(summary_request)
    assert "[CARD_1]" in json.dumps(summary_request)
    conversation.refresh_from_db()
    assert EMAIL not in json.dumps(conversation.summary)  # the summary never holds the original

    # The next reply carries the summary: placeholders still, and the same ones.
    llm.enqueue(Reply(text="It went to [EMAIL_1]."))
    reply = _answer(_ask(conversation, "Where did the invoice go?"))
    assert "[EMAIL_1]" in _bodies(llm)[-1]["messages"][-1]["content"]
    assert_nothing_planted(_bodies(llm))
    assert reply.text == f"It went to {EMAIL}."
    conversation.refresh_from_db()
    assert set(conversation.pii_placeholders) == {"[EMAIL_1]", "[EMAIL_2]", "[CARD_1]"}


@pytestmark_db
def test_redaction_off_sends_the_original(make_tenant: Any, llm: Any, no_worker: None) -> None:
    tenant, _ = make_tenant(redact_pii=False)
    llm.enqueue(Reply(text="Noted."))
    _answer(_ask(_conversation(tenant), PLANTED))
    assert _bodies(llm)[-1]["messages"][-1]["content"] == PLANTED


@pytestmark_db
def test_tool_arguments_are_restored_and_tool_results_redacted(
    make_tenant: Any, llm: Any, no_worker: None
) -> None:
    tenant, _ = make_tenant(knowledge_passages=0)
    source = source_get_or_create(tenant=tenant, name="Help centre")
    document_ingest(
        tenant=tenant,
        source=source,
        key="refunds",
        filename="refunds.md",
        content=b"# Refunds\n\nRefunds are paid to the card used, e.g. 4111 1111 1111 1111.",
        title="Refunds",
        url="https://shop.example/refunds",
        language="en",
    )
    llm.enqueue(
        Reply(
            text="",
            tool_calls=[{"name": "search_knowledge", "arguments": '{"query": "refunds card"}'}],
            finish_reason="tool_calls",
        ),
        Reply(
            text="",
            tool_calls=[
                {
                    "name": "handoff_to_human",
                    "arguments": '{"reason": "Refund to [CARD_1] for [EMAIL_1]"}',
                }
            ],
            finish_reason="tool_calls",
        ),
    )
    conversation = _conversation(tenant)
    _answer(_ask(conversation, f"Refund my order please, I'm {EMAIL}, card {CARD}."))
    bodies = _bodies(llm)
    assert_nothing_planted(bodies)
    tool_result = bodies[1]["messages"][-1]
    assert tool_result["role"] == "tool"
    assert "[CARD_1]" in tool_result["content"]  # the same card, the same placeholder
    conversation.refresh_from_db()
    # The tool acted for the visitor: the agent reads the values.
    assert conversation.handoff_reason == f"Refund to {CARD} for {EMAIL}"
    handoff = ToolInvocation.objects.get(conversation=conversation, name="handoff_to_human")
    assert EMAIL not in handoff.arguments  # recorded as the model wrote it


@pytestmark_db
def test_another_conversations_placeholders_are_not_restored(
    make_tenant: Any, llm: Any, no_worker: None
) -> None:
    tenant, _ = make_tenant()
    other_tenant, _ = make_tenant()
    llm.enqueue(Reply(text="ok"), Reply(text="ok"))
    _answer(_ask(_conversation(other_tenant), f"I'm {EMAIL} and ann@example.net"))
    # A conversation of another tenant: its placeholders mean nothing here.
    llm.enqueue(Reply(text="Your address is [EMAIL_2]."))
    conversation = _conversation(tenant)
    first = _ask(conversation, "hello")
    _answer(first)
    reply = _answer(_ask(conversation, "What is my email?"))
    assert reply.text == "Your address is [EMAIL_2]."
    assert Conversation.objects.get(pk=conversation.pk).pii_placeholders == {}


# -- through the widget ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("celery_idle")
async def test_a_placeholder_written_back_reaches_the_widget_restored(
    make_tenant: Any, llm: Any, settings: Any
) -> None:
    settings.REPLY_FLUSH_INTERVAL = 0
    _, key = await database_sync_to_async(make_tenant)()
    llm.enqueue(
        Reply(
            tokens=["I'll send it to ", "[EMA", "IL_1", "] and card [", "CARD_1] today."],
            token_interval=0.05,
        )
    )
    ws = await connect()
    await hello(ws, key.public_key)
    await ws.send_json_to({"type": "message", "client_id": str(uuid.uuid4()), "text": PLANTED})
    frames = await receive_until(ws, is_final_assistant)
    await ws.disconnect()
    expected = f"I'll send it to {EMAIL} and card {CARD} today."
    deltas = [f["text"] for f in frames if f["type"] == "reply.delta"]
    assert len(deltas) >= 3
    assert "".join(deltas) == expected
    assert not any("[" in delta for delta in deltas)
    final = frames[-1]["message"]
    assert final["text"] == expected
    stored = await database_sync_to_async(Message.objects.get)(pk=final["id"])
    assert stored.text == expected
    assert_nothing_planted(_bodies(llm))
