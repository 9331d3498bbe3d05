"""The privacy notice on a message channel's first reply.

A widget visitor sees the tenant's privacy notice before they write; on WhatsApp, SMS and
Telegram there is nothing to show it in, so under legitimate interest the first message we send
in a conversation carries it: the reply, then the notice in the conversation's language and the
tenant's privacy URL. Once that message is sent, the notice shown is recorded like the widget's
(a `notice` consent record, with the channel), unless a record of that exact text exists.

Tenants that need consent ask for it on the inbound side, before anything is answered.
"""

from __future__ import annotations

from dataclasses import dataclass

from conversations.consent_records import (
    Basis,
    ConsentStatus,
    Decision,
    consent_record_write,
    consent_status_for,
)
from conversations.models import ChannelAccount, Contact, OutboundDelivery

# Every message channel: the person sees the notice with the first reply, in the channel itself.
NOTICE_FIRST_KINDS = frozenset(
    {
        ChannelAccount.Kind.EMAIL,
        ChannelAccount.Kind.TELEGRAM,
        ChannelAccount.Kind.WHATSAPP,
        ChannelAccount.Kind.SLACK,
        ChannelAccount.Kind.SMS,
    }
)


@dataclass(frozen=True)
class OutboundText:
    """The text a delivery sends, and the notice it carries (to record once sent)."""

    text: str
    notice: ConsentStatus | None = None


def notice_appended(reply: str, status: ConsentStatus) -> str:
    """The reply followed by the notice and the privacy URL (when the tenant has one)."""
    notice = status.notice.text.strip()
    if status.privacy_url:
        notice = f"{notice}\n{status.privacy_url}"
    return f"{reply.rstrip()}\n\n{notice}"


def delivery_text(delivery: OutboundDelivery) -> OutboundText:
    """What a delivery sends: its message's text, with the privacy notice when it is the
    conversation's first message sent on a message channel under legitimate interest."""
    text = delivery.message.text
    if delivery.channel_account.kind not in NOTICE_FIRST_KINDS:
        return OutboundText(text=text)
    conversation = delivery.conversation
    tenant = conversation.tenant
    if tenant.lawful_basis != Basis.LEGITIMATE_INTEREST:
        return OutboundText(text=text)
    earlier = (
        OutboundDelivery.objects.filter(
            conversation_id=conversation.pk, state=OutboundDelivery.State.SENT
        )
        .exclude(pk=delivery.pk)
        .exists()
    )
    if earlier:
        return OutboundText(text=text)
    contact = conversation.contact
    status = consent_status_for(
        tenant=tenant, contact=contact, language=conversation.language or contact.locale
    )
    return OutboundText(text=notice_appended(text, status), notice=status)


def notice_shown_record(delivery: OutboundDelivery, status: ConsentStatus) -> None:
    """Inside the transaction recording a sent delivery: the record of the notice it carried,
    unless one of that exact text is already stored for the contact."""
    if status.notice_due:
        # The contact first, then the audit chain (written with the record): the order inbound
        # processing takes them in, so the two never wait on each other.
        Contact.objects.select_for_update().filter(pk=delivery.conversation.contact_id).exists()
        consent_record_write(
            contact=delivery.conversation.contact,
            status=status,
            decision=Decision.NOTICE,
            channel=delivery.channel_account.kind,
        )
