"""Visitor tokens: a signed, tenant-bound handle on a Contact (and the conversation the widget
was given), kept by the widget.

A token is what lets a visitor come back, so it also carries the ids the server chose at a
`hello` before any row exists: the Contact and the Conversation are created only with the
visitor's first message, under those ids. Tokens are timestamped; one older than
`VISITOR_TOKEN_MAX_AGE` seconds is expired, and every `welcome` hands out a fresh one (a sliding
expiry: a visitor who comes back within the max age keeps their history).
"""

import hashlib
from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.core import signing

_SALT = "supportbot.visitor-token.v1"


@dataclass(frozen=True)
class VisitorClaims:
    """What a genuine token says."""

    contact_id: UUID
    conversation_id: UUID | None  # the conversation the token was handed out with, if any
    identity: str | None = None  # a verified visitor's: identity_digest of their `sub`


class TokenExpired(Exception):
    """A genuine token older than VISITOR_TOKEN_MAX_AGE: the visitor starts afresh."""


def identity_digest(tenant_id: int, external_id: str) -> str:
    """What a verified visitor's token says of their identity: a digest of its `sub`, so the
    token is theirs alone even before their contact is stored."""
    return hashlib.sha256(f"{tenant_id}:{external_id}".encode()).hexdigest()[:32]


def visitor_token_for(
    *,
    tenant_id: int,
    contact_id: UUID,
    conversation_id: UUID | None = None,
    external_id: str = "",
) -> str:
    """A freshly signed (and timestamped) token for the visitor `contact_id` of `tenant_id`
    (with `external_id`: a verified visitor's, which needs that identity to be used)."""
    data: dict[str, object] = {"t": tenant_id, "c": str(contact_id)}
    if conversation_id is not None:
        data["v"] = str(conversation_id)
    if external_id:
        data["i"] = identity_digest(tenant_id, external_id)
    return signing.dumps(data, salt=_SALT, compress=False)


def visitor_token_read(token: str, *, tenant_id: int) -> VisitorClaims | None:
    """The claims of `token` when it is genuine and was issued for `tenant_id`; None otherwise.

    Raises TokenExpired for a genuine token of this tenant older than VISITOR_TOKEN_MAX_AGE.
    """
    try:
        data = signing.loads(token, salt=_SALT, max_age=settings.VISITOR_TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        # Genuine but old: this tenant's own token expired; another tenant's is refused.
        if _claims(_loads_ignoring_age(token), tenant_id=tenant_id) is not None:
            raise TokenExpired() from None
        return None
    except (signing.BadSignature, ValueError, TypeError):
        return None
    return _claims(data, tenant_id=tenant_id)


def _loads_ignoring_age(token: str) -> object:
    try:
        return signing.loads(token, salt=_SALT)
    except (signing.BadSignature, ValueError, TypeError):
        return None


def _claims(data: object, *, tenant_id: int) -> VisitorClaims | None:
    if not isinstance(data, dict) or data.get("t") != tenant_id:
        return None
    try:
        conversation = data.get("v")
        identity = data.get("i")
        return VisitorClaims(
            contact_id=UUID(data["c"]),
            conversation_id=UUID(conversation) if conversation is not None else None,
            identity=identity if isinstance(identity, str) else None,
        )
    except (KeyError, ValueError, TypeError, AttributeError):
        return None
