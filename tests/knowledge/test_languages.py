"""A document's language: its own rules (first 5000 characters, 20 letters, 60% sure, 7 trials)."""

from __future__ import annotations

from knowledge.languages import DETECT_CHARS, detect_language

# langdetect: Spanish 86% in 7 trials (a visitor's message, 3 trials and 80%, gives nothing).
MIXED = "Obrigado pela ajuda, muchas gracias por todo"


def test_documents_keep_their_rules() -> None:
    assert detect_language(MIXED) == "es"
    assert detect_language("Hola, ¿qué tal?") == ""  # fewer than 20 letters
    assert detect_language("1234 5678 " * 100) == ""


def test_only_the_start_of_a_long_document_counts() -> None:
    start = "Bonjour, je n'ai toujours pas reçu ma commande. " * 200
    assert len(start) > DETECT_CHARS
    assert detect_language(start + "Where is my parcel? I ordered it a week ago. " * 500) == "fr"


CHINESE = "我的包裹在哪里？我上周订购的，但是还没有收到。请帮我查一下物流信息。"  # noqa: RUF001


def test_regional_codes_become_iso_639_1() -> None:
    assert detect_language(CHINESE) == "zh"  # langdetect says zh-cn
