"""Verified visitor identity: a JWT the customer's backend signs with the tenant's secret.

HS256 only; `sub` (the customer's id for the person) and `exp` (at most 24 hours ahead) are
required, `email` and `name` optional. Anything else about a token that is offered and does not
verify is a refusal (IdentityRefused, with a reason for the log): an identity is never quietly
dropped for an anonymous visit. Neither the token nor the secret ever goes into a reason.
"""

import math
import secrets
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

import jwt
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from supportbot.compliance.encryption import decrypt_secret
from supportbot.tenants.models import IDENTITY_SECRET_LABEL, Tenant

ALGORITHM = "HS256"
MAX_TOKEN_CHARS = 4096
MAX_LIFETIME_SECONDS = 24 * 60 * 60
MAX_SUB_CHARS = 255
MAX_EMAIL_CHARS = 254
MAX_NAME_CHARS = 200


class IdentityRefused(Exception):
    """The identity offered does not verify; the message says why (for the log only)."""


@dataclass(frozen=True)
class VerifiedIdentity:
    external_id: str  # the token's `sub`
    email: str = ""  # "" when the token holds no usable `email`
    name: str = ""


def new_identity_secret() -> str:
    """A new HS256 secret (256 random bits), shown to the tenant's operators once."""
    return "ids_" + secrets.token_urlsafe(32)


def _is_clean(text: str) -> bool:
    """No control characters, NUL or lone surrogates (which the database cannot store)."""
    return not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def _optional_text(value: object, *, limit: int) -> str:
    if not isinstance(value, str):
        return ""
    value = "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cs")).strip()
    return value[:limit]


def _email(value: object) -> str:
    email = _optional_text(value, limit=MAX_EMAIL_CHARS + 1)
    if not email or len(email) > MAX_EMAIL_CHARS:
        return ""
    try:
        validate_email(email)
    except ValidationError:
        return ""
    return email


def _decode(token: str, secret: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise IdentityRefused(f"identity algorithm {str(header.get('alg'))[:20]!r} refused")
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"], "verify_aud": False, "verify_iss": False},
        )
    except jwt.ExpiredSignatureError as exc:
        raise IdentityRefused("identity expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise IdentityRefused("identity signature refused") from exc
    except jwt.PyJWTError as exc:
        raise IdentityRefused(f"identity refused: {type(exc).__name__}") from exc
    return claims


def verify_visitor_identity(tenant: Tenant, token: object) -> VerifiedIdentity:
    """The identity in `token`, signed with `tenant`'s identity secret; IdentityRefused if not."""
    if not isinstance(token, str) or not token:
        raise IdentityRefused("identity must be a compact JWT string")
    if len(token) > MAX_TOKEN_CHARS:
        raise IdentityRefused("identity token too long")
    secret = decrypt_secret(
        tenant.identity_secret_encrypted, tenant_id=tenant.pk, field=IDENTITY_SECRET_LABEL
    )
    if not secret:
        raise IdentityRefused("the tenant has no identity secret")
    claims = _decode(token, secret)
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        raise IdentityRefused("identity exp must be a number")
    if exp - time.time() > MAX_LIFETIME_SECONDS:
        raise IdentityRefused("identity exp more than 24 hours ahead")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUB_CHARS or not sub.strip():
        raise IdentityRefused("identity sub must be a string of 1 to 255 characters")
    if not _is_clean(sub):
        raise IdentityRefused("identity sub holds control characters")
    return VerifiedIdentity(
        external_id=sub,
        email=_email(claims.get("email")),
        name=_optional_text(claims.get("name"), limit=MAX_NAME_CHARS),
    )
