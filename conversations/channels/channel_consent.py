"""Consent on a message channel, for tenants whose lawful basis is consent.

A channel has no consent screen, so the question is asked in the conversation: a contact who
has not accepted the current text gets it (the tenant's consent text and privacy link, in their
language, asking for YES or NO) as a SYSTEM message, and what they wrote is held, unread by the
assistant, in its event's encrypted payload (`InboundEvent.State.HELD`). Their answer decides:

- YES (in any of the supported languages) records `accept` on the channel and posts the held
  messages, which the assistant then answers;
- NO records `decline` and erases what was held (the events keep no payload), and says so;
- anything else is held too, and the question is asked again.
"""

import string
import unicodedata

from django.utils import timezone

from conversations.channels.base import InboundMessage
from conversations.channels.inbound_post import (
    channel_message_post,
    channel_notice_post,
    channel_system_post,
    message_from_payload,
    visitor_language,
)
from conversations.consent_records import ConsentStatus, Decision, consent_record_write
from conversations.models import Contact, Conversation, InboundEvent
from conversations.notices import notice

# Answers to the consent question, in the languages of conversations/notices.py (compared
# lower-cased, without accents and surrounding punctuation).
ACCEPT_WORDS = frozenset(
    {
        "yes", "y", "yes please", "ok", "okay", "i agree", "agree", "i accept", "accept",
        "si", "acepto", "de acuerdo", "vale",
        "oui", "j'accepte", "j accepte", "d'accord", "d accord", "accepte",
        "ja", "einverstanden", "ich stimme zu", "akzeptieren", "zustimmen",
        "sim", "aceito", "concordo",
    }
)  # fmt: skip
DECLINE_WORDS = frozenset(
    {
        "no", "n", "no thanks", "i decline", "decline", "i don't agree",
        "rechazo", "no acepto",
        "non", "je refuse", "refuse", "je n'accepte pas",
        "nein", "ablehnen", "ich lehne ab",
        "nao", "recuso", "nao aceito",
    }
)  # fmt: skip

_STRIP = string.punctuation.replace("'", "") + "¡¿ \t\r\n"


def consent_answer(text: str) -> str | None:
    """`accept`, `decline`, or None when `text` is neither (just YES or NO, in any supported
    language, accents and punctuation aside)."""
    folded = unicodedata.normalize("NFKD", text.strip().lower())
    plain = "".join(ch for ch in folded if not unicodedata.combining(ch)).replace("\u2019", "'")
    plain = " ".join(plain.strip(_STRIP).split())
    if plain in ACCEPT_WORDS:
        return Decision.ACCEPT
    if plain in DECLINE_WORDS:
        return Decision.DECLINE
    return None


def _held_events(contact: Contact) -> list[InboundEvent]:
    """The contact's messages waiting for their consent, oldest first (locked)."""
    return list(
        InboundEvent.objects.select_for_update()
        .filter(tenant_id=contact.tenant_id, contact=contact, state=InboundEvent.State.HELD)
        .order_by("received_at", "id")
    )


def channel_consent_handle(
    *,
    event: InboundEvent,
    conversation: Conversation,
    item: InboundMessage,
    status: ConsentStatus,
) -> None:
    """A message of a contact who has not accepted the current consent text (inside the event's
    transaction): their answer to the question, or a message to hold while it is asked."""
    contact = conversation.contact
    held = _held_events(contact)
    answer = consent_answer(item.text) if held and not item.attachments else None
    event.contact = contact
    if answer == Decision.ACCEPT:
        consent_record_write(
            contact=contact, status=status, decision=Decision.ACCEPT, channel=conversation.channel
        )
        for waiting in held:
            _held_release(waiting, conversation)
        event.detail = "consent accepted"
    elif answer == Decision.DECLINE:
        consent_record_write(
            contact=contact, status=status, decision=Decision.DECLINE, channel=conversation.channel
        )
        for waiting in held:
            _held_done(waiting, "consent declined: erased")
        channel_notice_post(
            conversation=conversation,
            key="channel_consent_declined",
            language=status.notice.language,
        )
        event.detail = "consent declined"
    else:
        _hold(event, conversation, item, status)


def _held_release(event: InboundEvent, conversation: Conversation) -> None:
    """Post a held message now that its writer accepted: the assistant answers it."""
    channel_message_post(
        event=event, conversation=conversation, item=message_from_payload(event.payload or {})
    )
    _held_done(event, "consent accepted: posted")


def _held_done(event: InboundEvent, detail: str) -> None:
    event.state = InboundEvent.State.PROCESSED
    event.processed_at = timezone.now()
    event.payload = {}
    event.detail = detail
    event.save(update_fields=["state", "processed_at", "payload", "detail", "message", "contact"])


def _hold(
    event: InboundEvent, conversation: Conversation, item: InboundMessage, status: ConsentStatus
) -> None:
    """Keep the message (its payload stays) and ask the consent question in the contact's
    language."""
    event.state = InboundEvent.State.HELD
    event.detail = "held for consent"
    language = visitor_language(conversation, item.text)
    if conversation.language != language:
        conversation.language = language
        conversation.save(update_fields=["language", "updated_at"])
    question = notice(
        "channel_consent_question",
        language,
        text=status.notice.text,
        privacy=_privacy_line(status, language),
    )
    channel_system_post(conversation=conversation, text=question)


def _privacy_line(status: ConsentStatus, language: str) -> str:
    return (
        notice("channel_privacy_link", language, url=status.privacy_url)
        if status.privacy_url
        else ""
    )
