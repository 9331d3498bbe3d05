"""Visitors whose data was erased, remembered (in Redis) while their visitor tokens could still
be presented: a widget `hello` with such a token gets an `erased` frame, and the widget clears
what it stored. The key is a keyed digest of the contact id, never the id itself."""

import hashlib
import hmac
from uuid import UUID

from django.conf import settings

from supportbot.redis_store import get_redis, redis_key


def _key(contact_id: UUID | str) -> str:
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"erased-visitor:{contact_id}".encode(), hashlib.sha256
    ).hexdigest()
    return redis_key("erased-visitor", digest)


def visitor_erased_mark(contact_id: UUID | str) -> None:
    """Remember, as long as a token of the contact may be presented, that they were erased."""
    get_redis().set(_key(contact_id), "1", ex=settings.VISITOR_TOKEN_MAX_AGE)


def visitor_was_erased(contact_id: UUID | str) -> bool:
    return bool(get_redis().exists(_key(contact_id)))
