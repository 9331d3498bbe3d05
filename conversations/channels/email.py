"""The email channel: customers write to the tenant's support address, the assistant (or an
agent) answers by email in the same thread.

Inbound comes two ways, both stored once per Message-ID: a forwarding service POSTs the raw
MIME to the channel's webhook, signed with the channel's `inbound_secret`
(`X-Supportbot-Signature: sha256=<hex HMAC-SHA256 of the body>`), or the mailbox is polled over
IMAP (`email_imap`). Outbound goes through the tenant's SMTP server: "Re: <subject>", threaded
with In-Reply-To and References, so the customer's answer comes back to the same conversation.
"""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

from django.conf import settings

from conversations.channels.base import (
    DeliveryFailed,
    InboundItem,
    Outgoing,
    Sent,
    WebhookAnswer,
    WebhookRefused,
    WebhookRequest,
    config_value,
    credential,
    register_adapter,
)
from conversations.channels.email_mime import inbound_item
from conversations.models import (
    ChannelAccount,
    ChannelMessageRef,
    Conversation,
    InboundEvent,
    Message,
)

SIGNATURE_HEADER = "X-Supportbot-Signature"
MIME_CONTENT_TYPES = frozenset({"message/rfc822"})
MAX_CHARS = 100_000  # one email carries the whole reply: nothing is split


def signature_of(secret: str, body: bytes) -> str:
    """The signature a forwarding service sends with raw MIME: `sha256=<hex HMAC-SHA256>`."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def own_address(account: ChannelAccount) -> str:
    return str(config_value(account, "address", "")).strip()


def reply_subject(subject: str) -> str:
    """The subject of an answer: "Re: <subject>" (once, however long the thread)."""
    subject = " ".join(subject.split())
    if subject.lower().startswith("re:"):
        return subject
    return f"Re: {subject}" if subject else "Re: your message"


def thread_subject(account: ChannelAccount, conversation: Conversation) -> str:
    """The subject of the customer's newest email in the conversation that had one (kept,
    encrypted, in its inbound event once processed)."""
    events = InboundEvent.objects.filter(
        channel_account=account, message__conversation=conversation, kind="message"
    ).order_by("-received_at", "-id")[:10]
    for event in events:
        subject = str((event.payload or {}).get("subject", "")).strip()
        if subject:
            return subject
    return ""


def last_inbound_ref(account: ChannelAccount, conversation: Conversation) -> str:
    """The Message-ID of the customer's newest email in the conversation (what we answer)."""
    ref = (
        ChannelMessageRef.objects.filter(
            channel_account=account,
            conversation=conversation,
            direction=ChannelMessageRef.Direction.INBOUND,
        )
        .order_by("-created_at", "-id")
        .first()
    )
    return ref.provider_ref if ref is not None else ""


def recipient_of(conversation: Conversation) -> str:
    contact = conversation.contact
    return (contact.channel_user_id or contact.email or "").strip()


def reply_email(outgoing: Outgoing) -> EmailMessage:
    """The email of one outgoing message: from the support address to the customer, threaded
    under the customer's last email; marked automatic unless an agent wrote it."""
    account, conversation = outgoing.account, outgoing.conversation
    address = own_address(account)
    email = EmailMessage()
    email["From"] = formataddr((account.tenant.name, address)) if account.tenant.name else address
    email["To"] = recipient_of(conversation)
    email["Subject"] = reply_subject(thread_subject(account, conversation))
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = make_msgid(domain=address.rpartition("@")[2] or None)
    in_reply_to = last_inbound_ref(account, conversation)
    if in_reply_to:
        email["In-Reply-To"] = in_reply_to
    references = [ref for ref in outgoing.thread_refs if ref.startswith("<")]
    if references:
        email["References"] = " ".join(dict.fromkeys(references))
    if outgoing.message.role != Message.Role.AGENT:
        email["Auto-Submitted"] = "auto-replied"
    email.set_content(outgoing.text)
    return email


def _smtp_connection(account: ChannelAccount) -> smtplib.SMTP:
    host = str(config_value(account, "smtp_host", ""))
    port = int(config_value(account, "smtp_port", "") or 587)
    security = str(config_value(account, "smtp_security", "") or "starttls").lower()
    timeout = settings.CHANNEL_HTTP_TIMEOUT
    if security == "ssl":
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    smtp = smtplib.SMTP(host, port, timeout=timeout)
    if security == "starttls":
        try:
            smtp.starttls(context=ssl.create_default_context())
        except (smtplib.SMTPException, OSError):
            smtp.close()
            raise
    return smtp


def smtp_send(account: ChannelAccount, email: EmailMessage) -> None:
    """Hand one email to the account's SMTP server; DeliveryFailed on a refusal (5xx:
    permanent) or a temporary failure (4xx, the connection: tried again)."""
    password = credential(account, "smtp_password")
    user = str(config_value(account, "smtp_user", "") or own_address(account))
    try:
        with _smtp_connection(account) as smtp:
            if password:
                smtp.login(user, password)
            smtp.send_message(email, from_addr=own_address(account), to_addrs=[str(email["To"])])
    except smtplib.SMTPRecipientsRefused as refused:
        codes = [code for code, _text in refused.recipients.values()]
        code = max(codes) if codes else 550
        raise DeliveryFailed(
            f"SMTP refused the recipient ({code})", status=code, permanent=code >= 500
        ) from None
    except smtplib.SMTPResponseException as error:
        code = int(error.smtp_code)
        raise DeliveryFailed(
            f"SMTP answered {code}", status=code, permanent=500 <= code < 600
        ) from None
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryFailed(f"SMTP server unreachable: {type(error).__name__}") from None


class EmailAdapter:
    """The email channel's adapter (see the module's docstring)."""

    kind = "email"
    max_chars = MAX_CHARS
    streams_by_edit = False

    def handshake(self, account: ChannelAccount, request: WebhookRequest) -> WebhookAnswer | None:
        return None

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        """Only raw MIME signed with this channel's own inbound secret is taken."""
        secret = credential(account, "inbound_secret")
        given = request.header(SIGNATURE_HEADER).strip()
        if not secret or not given:
            raise WebhookRefused(401, "missing signature")
        if not hmac.compare_digest(given.encode(), signature_of(secret, request.body).encode()):
            raise WebhookRefused(401, "bad signature")

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[InboundItem]:
        content_type = request.header("content-type").split(";", 1)[0].strip().lower()
        if content_type not in MIME_CONTENT_TYPES:
            raise WebhookRefused(415, "expected message/rfc822")
        if not request.body.strip():
            raise WebhookRefused(400, "empty message")
        return [account_item(account, request.body)]

    def acknowledge(self, account: ChannelAccount) -> WebhookAnswer:
        return WebhookAnswer(status=200, body="ok")

    def send(self, outgoing: Outgoing) -> Sent:
        if not recipient_of(outgoing.conversation):
            raise DeliveryFailed("the customer has no address", permanent=True)
        email = reply_email(outgoing)
        smtp_send(outgoing.account, email)
        return Sent([str(email["Message-ID"])])

    def typing(self, account: ChannelAccount, conversation: Conversation) -> None:
        return None  # email has no typing indicator

    def stream_open(self, account: ChannelAccount, conversation: Conversation, text: str) -> str:
        raise NotImplementedError("email replies are sent whole")

    def stream_edit(
        self, account: ChannelAccount, conversation: Conversation, ref: str, text: str
    ) -> None:
        raise NotImplementedError("email replies are sent whole")


def account_item(account: ChannelAccount, raw: bytes) -> InboundItem:
    """A raw email received for this account, as the channel layer stores it."""
    return inbound_item(
        raw, own_address=own_address(account), max_chars=account.tenant.message_max_chars
    )


register_adapter(EmailAdapter())
