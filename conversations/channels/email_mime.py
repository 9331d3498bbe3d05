"""A customer's email, from its raw MIME to what the channel layer stores: who wrote (the
contact), what they wrote now (quoted history and signature stripped, so the assistant answers
the new question only), the thread it belongs to (its Message-ID, In-Reply-To, References) and
its attachments (kept for agents).

Mail that must never be answered (auto-replies, bounces, mailing lists, our own mail) becomes
`Ignored`: stored under its Message-ID, so a second copy stays ignored, and never answered, so
two robots cannot write to each other for ever.
"""

from __future__ import annotations

import hashlib
import logging
import re
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.utils import getaddresses
from typing import cast

import html2text
from mailparser_reply import EmailReplyParser

from conversations.channels.base import Ignored, InboundAttachment, InboundItem, InboundMessage

logger = logging.getLogger(__name__)

ATTACHMENT_MAX_BYTES = 5 * 1024 * 1024  # bigger attachments are kept as metadata only
MAX_ATTACHMENTS = 20
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
_LOOP_SENDERS = ("mailer-daemon", "postmaster")
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})


def mime_parse(raw: bytes) -> EmailMessage:
    """The message of raw MIME bytes (the modern `policy.default` API: decoded headers)."""
    return cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(raw))


def message_ids(value: str) -> list[str]:
    """The `<id@host>` tokens of a Message-ID, In-Reply-To or References header, in order."""
    return _MESSAGE_ID.findall(value or "")


def event_id_of(message: EmailMessage, raw: bytes) -> str:
    """The id a message is stored under: its Message-ID, or a hash of the raw message."""
    ids = message_ids(str(message.get("Message-ID", "")))
    return ids[0] if ids else "sha256:" + hashlib.sha256(raw).hexdigest()


def sender_of(message: EmailMessage) -> tuple[str, str]:
    """The sender's address (lower case) and display name; empty when there is none."""
    pairs = getaddresses([str(message.get("From", ""))])
    for name, address in pairs:
        if "@" in address:
            return address.strip().lower(), name.strip()
    return "", ""


def loop_reason(message: EmailMessage, sender: str, own_address: str) -> str:
    """Why this mail must not be answered (an auto-reply, a bounce, a list, our own), or ""."""
    auto_submitted = str(message.get("Auto-Submitted", "")).strip().lower()
    if auto_submitted and auto_submitted != "no":
        return "auto-submitted"
    if str(message.get("Precedence", "")).strip().lower() in _BULK_PRECEDENCE:
        return "bulk precedence"
    if message.get("X-Autoreply") is not None or message.get("X-Autorespond") is not None:
        return "auto-reply"
    if message.get_content_type() == "multipart/report":
        return "delivery report"
    return_path = message.get("Return-Path")
    if return_path is not None and str(return_path).strip() in ("", "<>"):
        return "null return path"
    if not sender:
        return "no sender"
    if sender.split("@", 1)[0] in _LOOP_SENDERS:
        return "mailer daemon"
    if own_address and sender == own_address.strip().lower():
        return "own address"
    return ""


def body_text(message: EmailMessage) -> str:
    """The text the customer wrote: text/plain preferred, else the HTML as text."""
    part = message.get_body(preferencelist=("plain",))
    if part is not None:
        return _part_text(part)
    part = message.get_body(preferencelist=("html",))
    if part is None:
        return ""
    converter = html2text.HTML2Text()
    converter.ignore_images = True
    converter.body_width = 0
    return converter.handle(_part_text(part))


def _part_text(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset: the bytes as best we can
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def new_text(text: str) -> str:
    """Only what the customer wrote now: the quoted history and the signature removed."""
    text = text.strip()
    if not text:
        return ""
    replies = EmailReplyParser(languages=["en", "de", "fr", "es", "it", "nl"]).read(text).replies
    latest = replies[0].body.strip() if replies else ""
    return latest or (replies[0].content.strip() if replies else text)


def attachments_of(message: EmailMessage) -> tuple[InboundAttachment, ...]:
    """The files the customer attached; one bigger than ATTACHMENT_MAX_BYTES is kept without
    its bytes (its name, type and size only)."""
    found: list[InboundAttachment] = []
    for part in message.iter_attachments():
        if len(found) >= MAX_ATTACHMENTS:
            break
        part = cast(EmailMessage, part)
        payload = part.get_payload(decode=True)
        content = payload if isinstance(payload, bytes) else b""
        content_type = part.get_content_type()
        found.append(
            InboundAttachment(
                kind=_attachment_kind(content_type),
                content_type=content_type,
                filename=(part.get_filename() or "")[:200],
                size=len(content),
                content=content if len(content) <= ATTACHMENT_MAX_BYTES else b"",
            )
        )
    return tuple(found)


def _attachments_line(attachments: tuple[InboundAttachment, ...]) -> str:
    """What an email of attachments only says: their names."""
    names = ", ".join(att.filename or att.content_type for att in attachments)
    return f"(attachments: {names})" if names else ""


def _attachment_kind(content_type: str) -> str:
    main = content_type.split("/", 1)[0]
    return main if main in ("image", "audio", "video") else "file"


def inbound_item(raw: bytes, *, own_address: str, max_chars: int) -> InboundItem:
    """What a raw email is to the channel layer: a customer's message, or an Ignored one (an
    email too broken to read is ignored too, so it cannot block its mailbox for ever)."""
    try:
        return _inbound_item(raw, own_address=own_address, max_chars=max_chars)
    except (ValueError, TypeError, LookupError, AttributeError):
        logger.warning("an email that cannot be read was ignored", exc_info=True)
        return Ignored(event_id="sha256:" + hashlib.sha256(raw).hexdigest(), reason="unreadable")


def _inbound_item(raw: bytes, *, own_address: str, max_chars: int) -> InboundItem:
    message = mime_parse(raw)
    event_id = event_id_of(message, raw)
    sender, name = sender_of(message)
    reason = loop_reason(message, sender, own_address)
    if reason:
        return Ignored(event_id=event_id, reason=reason)
    own_id = message_ids(str(message.get("Message-ID", "")))
    in_reply_to = message_ids(str(message.get("In-Reply-To", "")))
    references = message_ids(str(message.get("References", "")))
    refs = tuple(dict.fromkeys([*reversed(in_reply_to), *reversed(references)]))
    subject = str(message.get("Subject", "")).strip()
    attachments = attachments_of(message)
    text = new_text(body_text(message)) or subject or _attachments_line(attachments)
    return InboundMessage(
        event_id=event_id,
        user_id=sender,
        user_name=name,
        email=sender,
        text=text[:max_chars],
        # The thread is known by its first Message-ID (this one's, for a new thread).
        thread=(references or own_id or [event_id])[0],
        refs=refs,
        provider_ref=own_id[0] if own_id else "",
        subject=subject[:300],
        attachments=attachments,
    )
