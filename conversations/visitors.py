"""Visitor tokens: a signed, tenant-bound handle on a Contact, kept by the widget."""

from uuid import UUID

from django.core import signing

_SALT = "supportbot.visitor-token.v1"


def visitor_token_for(*, tenant_id: int, contact_id: UUID) -> str:
    return signing.dumps({"t": tenant_id, "c": str(contact_id)}, salt=_SALT, compress=False)


def contact_id_from_token(token: str, *, tenant_id: int) -> UUID | None:
    """The contact id in `token` when it is genuine and was issued for `tenant_id`."""
    try:
        data = signing.loads(token, salt=_SALT)
        if data.get("t") != tenant_id:
            return None
        return UUID(data["c"])
    except (signing.BadSignature, KeyError, ValueError, TypeError, AttributeError):
        return None
