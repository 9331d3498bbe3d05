"""The small rules of inbound processing, without a database: the answers to the consent
question in every supported language, how a channel user id may be written in a data request,
and how attachments show in the transcript."""

from __future__ import annotations

import pytest

from conversations.channels.attachments import transcript_text
from conversations.channels.base import InboundAttachment
from conversations.channels.channel_consent import consent_answer
from conversations.channels.channel_personal_data import user_id_forms
from conversations.notices import NOTICES


@pytest.mark.parametrize(
    "text",
    ["YES", "yes.", " Yes! ", "Sí", "si", "OUI", "d\u2019accord", "Ja", "einverstanden", "Sim"],
)
def test_yes_in_every_language_accepts(text: str) -> None:
    assert consent_answer(text) == "accept"


@pytest.mark.parametrize("text", ["NO", "no!", "Non", "NEIN", "Não", "nao", "recuso"])
def test_no_in_every_language_declines(text: str) -> None:
    assert consent_answer(text) == "decline"


@pytest.mark.parametrize("text", ["", "yes but what is this?", "maybe", "nobody", "yesterday"])
def test_anything_else_is_no_answer(text: str) -> None:
    assert consent_answer(text) is None


def test_a_phone_number_is_found_however_it_is_written() -> None:
    forms = user_id_forms("+1 (555) 010-2030")
    assert {"15550102030", "+15550102030", "whatsapp:+15550102030"} <= forms
    assert "+15550102030" in user_id_forms("whatsapp:+15550102030")
    assert user_id_forms(" Ann@Example.com ") == {"Ann@Example.com", "ann@example.com"}
    assert user_id_forms("U024BE7LH") == {"U024BE7LH", "u024be7lh"}


def test_attachments_are_named_in_the_transcript() -> None:
    attachments = (
        InboundAttachment(kind="image", filename="box.jpg"),
        InboundAttachment(kind="sticker"),
    )
    assert transcript_text(" Look ", attachments) == "Look\n[image: box.jpg]\n[sticker]"
    assert transcript_text("", attachments[1:]) == "[sticker]"


def test_the_channel_notices_exist_in_every_language() -> None:
    languages = set(NOTICES["length"])
    for key in (
        "unreadable",
        "channel_consent_question",
        "channel_privacy_link",
        "channel_consent_declined",
        "channel_rate_limited",
        "channel_too_long",
    ):
        assert set(NOTICES[key]) == languages, key
