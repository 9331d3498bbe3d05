"""Language detection, the tenant's language policy, and the prompt instruction."""

import time
from typing import Any

import pytest
from django.db import connection
from langdetect import DetectorFactory

from conversations import language
from conversations.language import (
    LANGUAGE_NAMES,
    MAX_DETECT_CHARS,
    conversation_language_store,
    detect_language,
    language_instruction,
    language_name,
    reply_language_decide,
    resolve_reply_language,
)
from conversations.messages import message_append
from conversations.models import Conversation, Message, ReplyJob
from conversations.reply.generate import reply_generate
from conversations.services import (
    message_post_from_visitor,
    visitor_conversation_store,
    visitor_session_open,
)
from tests.support.llm_server import Reply
from tests.support.locks import row_locked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hola, ¿dónde está mi pedido? Lo compré hace una semana.", "es"),
        ("No puedo iniciar sesión en mi cuenta", "es"),
        ("Bonjour, je n'ai toujours pas reçu ma commande.", "fr"),
        ("Je veux annuler mon abonnement", "fr"),
        ("Guten Tag, meine Bestellung ist noch nicht angekommen.", "de"),
        ("Ich möchte mein Passwort ändern", "de"),
        ("Olá, a minha encomenda ainda não chegou.", "pt"),
        ("Quero cancelar a minha assinatura", "pt"),
        ("Where is my parcel? I ordered it a week ago.", "en"),
        ("I was charged twice this month", "en"),
        ("Dov'è il mio pacco? L'ho ordinato una settimana fa.", "it"),
        ("Где мой заказ? Я заказал его неделю назад.", "ru"),  # noqa: RUF001
        ("我的包裹在哪里？", "zh"),  # noqa: RUF001 (langdetect says zh-cn)
        ("注文した商品がまだ届いていません", "ja"),
    ],
)
def test_sentences_are_detected(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Hello, my order has not arrived yet.",  # langdetect alone: Norwegian
        "My password reset link does not work",  # langdetect alone: Afrikaans, 99.99%
        "How do I cancel my subscription?",  # langdetect alone: en 57% / es 43%
    ],
)
def test_short_english_that_langdetect_gets_wrong_is_english(text: str) -> None:
    assert detect_language(text) == "en"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "ok",
        "OK!",
        "👍",
        "👍👍 🙏",
        "1234",
        "#4411-2231",
        "Merci beaucoup",  # two words
        "Gracias",
        "https://shop.example.com/orders/1234",
        "ana@example.com",
        "?!...",
    ],
)
def test_short_or_languageless_text_is_not_detected(text: str) -> None:
    assert detect_language(text) is None


def test_links_and_addresses_do_not_count_as_words() -> None:
    assert detect_language("see https://example.com/a/b/c ana@example.com") is None


def test_detection_is_deterministic() -> None:
    texts = [
        "Do you ship to Canada?",  # ambiguous for langdetect
        "Hola, the app does not work",
        "Wo ist mein Paket?",
        "Necesito ayuda con mi pedido número 4567, por favor",
    ]
    for text in texts:
        answers = {detect_language(text) for _ in range(20)}
        assert len(answers) == 1, (text, answers)


def test_detected_supported_language_is_used() -> None:
    assert (
        resolve_reply_language(detected="es", current="en", supported=["en", "es"], fallback="en")
        == "es"
    )


def test_short_message_keeps_the_current_language() -> None:
    assert (
        resolve_reply_language(detected=None, current="fr", supported=["en", "fr"], fallback="en")
        == "fr"
    )
    assert resolve_reply_language(detected=None, current="de", supported=[], fallback="en") == "de"


def test_new_conversation_with_a_short_message_uses_the_fallback() -> None:
    assert resolve_reply_language(detected=None, current="", supported=[], fallback="es") == "es"


def test_unsupported_language_gets_the_fallback() -> None:
    assert (
        resolve_reply_language(detected="ru", current="es", supported=["en", "es"], fallback="en")
        == "en"
    )
    # A current language the tenant no longer supports is not kept either.
    assert (
        resolve_reply_language(detected=None, current="ru", supported=["en", "es"], fallback="es")
        == "es"
    )


def test_empty_supported_list_means_any_language() -> None:
    assert resolve_reply_language(detected="ja", current="", supported=[], fallback="en") == "ja"


def test_codes_are_normalized_and_regional_variants_match() -> None:
    assert resolve_reply_language(detected="zh-cn", current="", supported=[], fallback="en") == "zh"
    assert (
        resolve_reply_language(detected="pt", current="", supported=["en", "pt-BR"], fallback="EN")
        == "pt-br"
    )
    assert (
        resolve_reply_language(detected="it", current="", supported=["en"], fallback="EN") == "en"
    )


def test_language_names() -> None:
    assert len(LANGUAGE_NAMES) >= 40
    assert language_name("es") == "Spanish"
    assert language_name("EN") == "English"
    assert language_name("zh") == "Chinese"
    assert language_name("pt-br") == "Brazilian Portuguese"
    assert language_name("de-AT") == "German"
    assert language_name("xx") == "xx"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("es", "Reply in Spanish."),
        ("en", "Reply in English."),
        ("fr", "Reply in French."),
        ("de", "Reply in German."),
        ("pt", "Reply in Portuguese."),
        ("ja", "Reply in Japanese."),
        ("zh-tw", "Reply in Traditional Chinese."),
        ("xx", "Reply in the language with the ISO 639-1 code 'xx'."),
        ("", "Reply in the language the visitor writes in."),
    ],
)
def test_language_instruction(code: str, expected: str) -> None:
    assert language_instruction(code) == expected


@pytest.fixture
def conversation(make_tenant: Any) -> Any:
    tenant, _ = make_tenant(supported_languages=["en", "es"], fallback_language="en")
    session = visitor_session_open(tenant=tenant, visitor_token=None, conversation_id=None)
    visitor_conversation_store(conversation=session.conversation)
    return session.conversation


def _visitor_says(conversation: Any, text: str) -> Message:
    return message_append(
        conversation=conversation, role=Message.Role.USER, text=text, broadcast=False
    )


def _language_update(*, conversation: Any, message: Message) -> str:
    """What a reply does: decide the language, store it, answer in it."""
    detected, reply_language = reply_language_decide(conversation=conversation, message=message)
    conversation_language_store(
        conversation=conversation, message=message, detected=detected, reply_language=reply_language
    )
    return reply_language


@pytest.mark.django_db
def test_conversation_language_follows_the_visitor(conversation: Any) -> None:
    spanish = _visitor_says(conversation, "Hola, ¿dónde está mi pedido? Lo compré hace una semana.")
    assert _language_update(conversation=conversation, message=spanish) == "es"
    spanish.refresh_from_db()
    conversation.refresh_from_db()
    assert (spanish.language, conversation.language) == ("es", "es")

    short = _visitor_says(conversation, "ok 👍")
    assert _language_update(conversation=conversation, message=short) == "es"
    short.refresh_from_db()
    conversation.refresh_from_db()
    assert (short.language, conversation.language) == ("", "es")

    english = _visitor_says(conversation, "Sorry, can you answer in English please?")
    assert _language_update(conversation=conversation, message=english) == "en"
    conversation.refresh_from_db()
    assert conversation.language == "en"


@pytest.mark.django_db
def test_unsupported_language_is_stored_on_the_message_and_replied_in_the_fallback(
    conversation: Any,
) -> None:
    german = _visitor_says(conversation, "Guten Tag, meine Bestellung ist nicht angekommen.")
    assert _language_update(conversation=conversation, message=german) == "en"
    german.refresh_from_db()
    conversation.refresh_from_db()
    assert (german.language, conversation.language) == ("de", "en")


@pytest.mark.django_db
def test_nothing_is_written_when_nothing_changed(
    conversation: Any, django_assert_num_queries: Any
) -> None:
    conversation.language = "es"
    conversation.save()
    short = _visitor_says(conversation, "vale")
    with django_assert_num_queries(0):
        assert _language_update(conversation=conversation, message=short) == "es"


@pytest.mark.django_db
def test_only_visitor_messages_are_detected(conversation: Any) -> None:
    conversation.language = "es"
    conversation.save()
    reply = message_append(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        text="Hello, your order has not been shipped yet, sorry about that.",
        broadcast=False,
    )
    assert _language_update(conversation=conversation, message=reply) == "es"
    reply.refresh_from_db()
    assert reply.language == ""


def test_typographic_apostrophes_count_as_english_contractions() -> None:
    assert detect_language("It doesn\u2019t work and I can\u2019t log in") == "en"


def test_no_global_langdetect_state_is_set() -> None:
    # Imported by this module: detection must not have seeded langdetect for everyone else.
    assert DetectorFactory.seed is None


def test_detection_does_not_depend_on_langdetect_global_seed(monkeypatch: Any) -> None:
    texts = [
        "Necesito ayuda con mi pedido número 4567, por favor",
        "Wo ist mein Paket? Ich warte seit Tagen.",
        "Do you ship to Canada?",
    ]
    expected = [detect_language(text) for text in texts]
    monkeypatch.setattr(DetectorFactory, "seed", 12345)
    assert [detect_language(text) for text in texts] == expected


# Text a backtracking regex can choke on: the naive email pattern r"\S+@\S+\.\S+" takes cubic
# time on a run of "@" (seconds of CPU for 2,000 characters, with the GIL held).
ADVERSARIAL = [
    "@" * 20_000,
    "a@" * 10_000,
    "@." * 10_000,
    "a@" + "b." * 10_000,
    "a@" + "b" * 19_998,
    "x " + "@" * 19_998,
    "www." * 5_000,
    "#" * 20_000,
    "a'" * 10_000,
]
# CPU seconds of this process (other processes on a busy machine do not count): the linear
# patterns need milliseconds; the cubic email pattern needed seconds for the first "@" * 2,000.
CPU_BOUND_SECONDS = 0.5


@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda text: repr(text[:6]))
def test_adversarial_text_is_detected_in_linear_time(text: str) -> None:
    started = time.process_time()
    language.detect_language(text)
    assert time.process_time() - started < CPU_BOUND_SECONDS


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("write to ana@example.com today", "write to   today"),
        ("(ana.lopez@mail.example.co.uk)", " "),
        ("ana@example.com.", " ."),
        ("a@b and @home and user@localhost", "a@b and @home and user@localhost"),
    ],
)
def test_addresses_are_still_taken_out(text: str, kept: str) -> None:
    assert language._EMAIL_RE.sub(" ", text) == kept


def test_only_the_start_of_a_long_message_is_detected() -> None:
    spanish = "Hola, ¿dónde está mi pedido? Lo compré hace una semana. "
    start = (spanish * (MAX_DETECT_CHARS // len(spanish) + 1))[:MAX_DETECT_CHARS]
    german = " Guten Tag, meine Bestellung ist noch nicht angekommen." * 2000
    assert detect_language(start + german) == "es"


@pytest.mark.django_db(transaction=True)
def test_a_reply_detects_the_language_outside_any_transaction_or_row_lock(
    make_tenant: Any, llm: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("conversations.jobs.reply_job_enqueue", lambda job_id: None)
    tenant, _ = make_tenant()
    session = visitor_session_open(tenant=tenant, visitor_token=None, conversation_id=None)
    posted = message_post_from_visitor(
        conversation=session.conversation, client_id="c1", text="Hola, ¿dónde está mi pedido?"
    ).message
    job = ReplyJob.objects.get(trigger=posted)
    seen: list[tuple[bool, bool, bool]] = []
    detect = language.detect_language

    def detect_and_look(text: str) -> str | None:
        seen.append(
            (
                connection.in_atomic_block,
                row_locked(ReplyJob, job.pk),
                row_locked(Conversation, posted.conversation_id),
            )
        )
        return detect(text)

    monkeypatch.setattr(language, "detect_language", detect_and_look)
    llm.enqueue(Reply(text="Está en camino."))
    reply_generate(job_id=job.pk)
    assert seen == [(False, False, False)]
    job.refresh_from_db()
    posted.refresh_from_db()
    conversation = Conversation.objects.get(pk=posted.conversation_id)
    assert (job.state, posted.language, conversation.language) == ("done", "es", "es")
