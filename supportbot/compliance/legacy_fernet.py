"""Reading the secrets stored before AES-256-GCM (Fernet, AES-128), for the data migration
that re-encrypts them. Same key ring: `FIELD_ENCRYPTION_KEYS`, or SECRET_KEY in development."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from supportbot.compliance.encryption import DecryptionError, decode_ring_entry


def _fernet_ring() -> MultiFernet:
    entries = [entry for entry in settings.FIELD_ENCRYPTION_KEYS if entry.strip()]
    if entries:
        raws = [decode_ring_entry(entry) for entry in entries]
    else:
        raws = [hashlib.sha256(("field-encryption:" + settings.SECRET_KEY).encode()).digest()]
    return MultiFernet([Fernet(base64.urlsafe_b64encode(raw)) for raw in raws])


def is_fernet_token(value: str) -> bool:
    return value.startswith("gAAAAA")


def fernet_decrypt(token: str) -> str:
    """The plaintext of a Fernet token made with a key of the ring."""
    try:
        return _fernet_ring().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("stored Fernet secret cannot be decrypted with the ring") from exc


def fernet_encrypt(plaintext: str) -> str:
    """A Fernet token as the secrets were stored before (for tests of the migration)."""
    return _fernet_ring().encrypt(plaintext.encode()).decode()
