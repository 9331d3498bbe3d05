"""The REST API's request and response bodies (typed: they make the OpenAPI schema)."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from ninja import Field, Schema

from conversations.channels.api import MAX_CLIENT_ID_CHARS
from supportbot.tenants.models import MAX_MESSAGE_CHARS


class ConversationIn(Schema):
    external_user_id: str | None = Field(
        None,
        max_length=255,
        description="Your id of the person: one contact per id (none: a new anonymous one).",
    )
    name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=254)
    locale: str | None = Field(None, max_length=35, description="e.g. en, de-CH")
    consent_version: int | None = Field(
        None,
        description=(
            "Where the tenant's lawful basis is consent: the version of the consent text the "
            "person accepted (the 409 consent_required answer carries the text and version)."
        ),
    )


class ConsentOut(Schema):
    required: bool
    basis: str
    version: int
    language: str
    text: str
    privacy_url: str
    accepted: bool


class ConversationOut(Schema):
    id: UUID
    status: str
    created_at: datetime
    consent: ConsentOut


class MessageIn(Schema):
    client_id: str = Field(
        ...,
        min_length=1,
        max_length=MAX_CLIENT_ID_CHARS,
        description="Your id of this message: a resend with the same id stores nothing new.",
    )
    text: str = Field(
        ...,
        min_length=1,
        max_length=MAX_MESSAGE_CHARS,
        description="At most the tenant's message limit (4000 characters by default).",
    )


class MessageOut(Schema):
    """A message as the widget's frames show it (frames.message_payload)."""

    id: UUID
    seq: int
    role: Literal["user", "assistant", "agent", "system"]
    text: str
    created_at: str | None
    client_id: str | None
    status: Literal["complete", "streaming", "failed"]
    sources: list[dict[str, Any]]
    language: str | None = None
    author_name: str | None = None


class MessagePostOut(Schema):
    message: MessageOut
    created: bool = Field(..., description="False when the client_id was seen before.")


class MessagesOut(Schema):
    messages: list[MessageOut]
    has_more: bool = Field(
        ...,
        description="More messages follow (ask again after the last seq; a reply still "
        "streaming ends a page).",
    )


class ConsentIn(Schema):
    decision: Literal["accept", "decline"]
    version: int


class ErrorBody(Schema):
    code: str
    detail: str
    retry_after: int | None = None
    version: int | None = None
    consent: ConsentOut | None = None


class ErrorOut(Schema):
    error: ErrorBody
