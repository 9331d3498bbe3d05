"""Content of a channel contact's message that the assistant cannot read (images, voice notes,
files, stickers): kept as `MessageAttachment` rows for agents, and named in the stored message's
text ("[image: photo.jpg]") so the transcript shows what arrived.

An email's parts arrive as bytes (kept base64, encrypted); other providers send a reference to
fetch the file by (kept encrypted too), never fetched here.
"""

import base64

from conversations.channels.base import InboundAttachment
from conversations.models import Message, MessageAttachment

MAX_NAME_CHARS = 200


def attachment_label(attachment: InboundAttachment) -> str:
    """How the transcript names one attachment: its kind and, when it has one, its file name."""
    name = attachment.filename.strip()[:MAX_NAME_CHARS]
    return f"[{attachment.kind}: {name}]" if name else f"[{attachment.kind}]"


def transcript_text(text: str, attachments: tuple[InboundAttachment, ...]) -> str:
    """The visitor message as stored: what they wrote, then a line per attachment."""
    labels = [attachment_label(attachment) for attachment in attachments]
    return "\n".join(part for part in (text.strip(), *labels) if part)


def attachments_store(
    *, message: Message, attachments: tuple[InboundAttachment, ...]
) -> list[MessageAttachment]:
    """One row per attachment of the stored visitor `message` (inside the caller's
    transaction)."""
    return [
        MessageAttachment.objects.create(
            tenant_id=message.tenant_id,
            message=message,
            kind=attachment.kind[:20] or "file",
            content_type=attachment.content_type[:100],
            filename=attachment.filename[:MAX_NAME_CHARS],
            size=attachment.size
            if attachment.size is not None
            else (len(attachment.content) or None),
            provider_ref=attachment.provider_ref,
            content_b64=base64.b64encode(attachment.content).decode("ascii")
            if attachment.content
            else "",
        )
        for attachment in attachments
    ]
