"""Encryption at rest for secrets kept in the database (provider API keys).

Fernet (AES-128-CBC + HMAC-SHA256) with a key ring: the first key of
`FIELD_ENCRYPTION_KEYS` encrypts, every key decrypts, so keys can be rotated by putting a new
key first and re-saving. In development the ring is derived from SECRET_KEY.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """The stored value cannot be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _key_ring(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = hashlib.sha256(("field-encryption:" + secret_key).encode()).digest()
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    return MultiFernet([Fernet(key.encode()) for key in keys])


def _ring() -> MultiFernet:
    return _key_ring(tuple(settings.FIELD_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt_secret(plaintext: str) -> str:
    """Encrypt `plaintext`; the empty string stays empty (no secret stored)."""
    if not plaintext:
        return ""
    return _ring().encrypt(plaintext.encode()).decode()


def decrypt_secret(token: str) -> str:
    if not token:
        return ""
    try:
        return _ring().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("stored secret cannot be decrypted with the configured keys") from exc
