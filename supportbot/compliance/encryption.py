"""Encryption at rest: envelope encryption with AES-256-GCM.

The key ring `FIELD_ENCRYPTION_KEYS` (comma-separated base64 32-byte keys; derived from
SECRET_KEY in development) holds the master keys: the first wraps, every one unwraps. Each
tenant has random 256-bit data keys (`DataKey`), stored wrapped by a master key; its newest
data key encrypts, any of its data keys decrypts. A value is stored as

    enc1:<base64(data key id (16 bytes) | nonce (12 bytes) | ciphertext and tag)>

and its associated data binds the tenant and the field (a value moved to another tenant's row
or another column does not decrypt). Unwrapped keys are cached per process (bounded).

Blind indexes (`blind_index`) are HMAC-SHA256 under a per-tenant index key that rotation
re-wraps but never replaces, so an index stays valid across rotations.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, Literal, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction

from supportbot.compliance.models import DataKey

PREFIX = "enc1:"
NONCE_BYTES = 12
KEY_ID_BYTES = 16
# The tenant -> newest data key mapping is re-read this often, so a key made by
# `keys_rotate --new-data-keys` is taken up by every process within this many seconds.
NEWEST_KEY_TTL_SECONDS = 60.0
KEY_CACHE_SIZE = 4096

IndexKind = Literal["email", "external_id", "channel_user"]


class DecryptionError(Exception):
    """The stored value cannot be decrypted (wrong tenant or field, tampered, or key missing)."""


@dataclass(frozen=True)
class MasterKey:
    id: str
    aead: AESGCM


# --- the key ring ---------------------------------------------------------------------------


def decode_ring_entry(entry: str) -> bytes:
    entry = entry.strip()
    for decode in (base64.urlsafe_b64decode, base64.standard_b64decode):
        try:
            raw = decode(entry + "=" * (-len(entry) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    raise ImproperlyConfigured("Each FIELD_ENCRYPTION_KEYS entry must be a base64 32-byte key.")


def master_key_id(raw: bytes) -> str:
    """The short public id of a ring entry (a hash: it reveals nothing of the key)."""
    return hashlib.sha256(b"supportbot master key id|" + raw).hexdigest()[:12]


@lru_cache(maxsize=4)
def _key_ring(entries: tuple[str, ...], secret_key: str) -> tuple[MasterKey, ...]:
    if entries:
        raws = [decode_ring_entry(entry) for entry in entries if entry.strip()]
    else:
        raws = [hashlib.sha256(("field-encryption:" + secret_key).encode()).digest()]
    ring = []
    for raw in raws:
        derived = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=b"supportbot field encryption master key",
        ).derive(raw)
        ring.append(MasterKey(id=master_key_id(raw), aead=AESGCM(derived)))
    return tuple(ring)


def key_ring() -> tuple[MasterKey, ...]:
    """The configured master keys, newest (wrapping) first."""
    return _key_ring(tuple(settings.FIELD_ENCRYPTION_KEYS), settings.SECRET_KEY)


def _master(key_id: str) -> MasterKey:
    for key in key_ring():
        if key.id == key_id:
            return key
    raise DecryptionError(f"master key {key_id} is not in FIELD_ENCRYPTION_KEYS")


# --- wrapping data keys -------------------------------------------------------------------------


def _wrap_aad(key_id: uuid.UUID, tenant_id: int | None, purpose: str) -> bytes:
    return b"supportbot data key|" + key_id.bytes + f"|{tenant_id}|{purpose}".encode()


def _wrap(material: bytes, row: DataKey, master: MasterKey) -> None:
    nonce = os.urandom(NONCE_BYTES)
    sealed = master.aead.encrypt(nonce, material, _wrap_aad(row.id, row.tenant_id, row.purpose))
    row.wrapped_key = base64.b64encode(nonce + sealed).decode()
    row.master_key_id = master.id


def _unwrap(row: DataKey) -> bytes:
    master = _master(row.master_key_id)
    blob = base64.b64decode(row.wrapped_key)
    try:
        return master.aead.decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], _wrap_aad(row.id, row.tenant_id, row.purpose)
        )
    except InvalidTag as exc:
        raise DecryptionError(f"data key {row.id} does not unwrap") from exc


# --- per-process caches ---------------------------------------------------------------------


K = TypeVar("K")
V = TypeVar("V")


class _BoundedCache(Generic[K, V]):
    """A thread-safe LRU mapping of at most `size` entries."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def discard(self, key: K) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# Unwrapped key material by data key id (ids are random UUIDs: never reused).
_materials: _BoundedCache[uuid.UUID, bytes] = _BoundedCache(KEY_CACHE_SIZE)
# The cipher of each data key (made once: building one costs as much as a decryption).
_ciphers: _BoundedCache[uuid.UUID, AESGCM] = _BoundedCache(KEY_CACHE_SIZE)
# (tenant, purpose) -> (newest key id, monotonic time it was read).
_newest: _BoundedCache[tuple[int | None, str], tuple[uuid.UUID, float]] = _BoundedCache(
    KEY_CACHE_SIZE
)
# Keys this process created in a transaction that has not committed yet: never cached as the
# newest (the transaction may roll back).
_uncommitted: set[uuid.UUID] = set()
_uncommitted_lock = threading.Lock()


def clear_caches() -> None:
    """Forget every unwrapped key (after a change of the ring, or a flushed database)."""
    _materials.clear()
    _ciphers.clear()
    _newest.clear()
    _key_ring.cache_clear()


def _material(row: DataKey) -> bytes:
    cached = _materials.get(row.id)
    if cached is None:
        cached = _unwrap(row)
        _materials.put(row.id, cached)
    return cached


def _material_by_id(key_id: uuid.UUID) -> bytes:
    cached = _materials.get(key_id)
    if cached is not None:
        return cached
    row = DataKey.objects.filter(pk=key_id).first()
    if row is None:
        raise DecryptionError(f"data key {key_id} does not exist")
    return _material(row)


def _cipher(key_id: uuid.UUID, material: bytes) -> AESGCM:
    cipher = _ciphers.get(key_id)
    if cipher is None:
        cipher = AESGCM(material)
        _ciphers.put(key_id, cipher)
    return cipher


def _newest_row(tenant_id: int | None, purpose: str) -> DataKey | None:
    return (
        DataKey.objects.filter(tenant_id=tenant_id, purpose=purpose)
        .order_by("-created_at", "-id")
        .first()
    )


def _create_key(tenant_id: int | None, purpose: str) -> DataKey:
    """A new random key for `tenant_id`, wrapped by the ring's first key; in the caller's
    transaction (the caller holds the tenant's key lock)."""
    material = os.urandom(32)
    row = DataKey(id=uuid.uuid4(), tenant_id=tenant_id, purpose=purpose)
    _wrap(material, row, key_ring()[0])
    row.save(force_insert=True)
    _materials.put(row.id, material)
    with _uncommitted_lock:
        _uncommitted.add(row.id)

    def committed() -> None:
        with _uncommitted_lock:
            _uncommitted.discard(row.id)

    transaction.on_commit(committed)
    return row


def _lock_tenant_keys(tenant_id: int | None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            [f"supportbot-data-keys:{tenant_id}"],
        )


def _newest_key(tenant_id: int | None, purpose: str) -> tuple[uuid.UUID, bytes]:
    """The id and material of the tenant's newest key of `purpose`, created when it has none."""
    found = _newest_key_if_any(tenant_id, purpose, create=True)
    assert found is not None
    return found


def _newest_key_if_any(
    tenant_id: int | None, purpose: str, *, create: bool
) -> tuple[uuid.UUID, bytes] | None:
    slot = (tenant_id, purpose)
    cached = _newest.get(slot)
    if cached is not None and time.monotonic() - cached[1] < NEWEST_KEY_TTL_SECONDS:
        material = _materials.get(cached[0])
        if material is not None:
            return cached[0], material
    row = _newest_row(tenant_id, purpose)
    if row is None and not create:
        return None
    if row is None:
        with transaction.atomic():
            _lock_tenant_keys(tenant_id)
            row = _newest_row(tenant_id, purpose) or _create_key(tenant_id, purpose)
    material = _material(row)
    with _uncommitted_lock:
        uncommitted = row.id in _uncommitted
    if not uncommitted:
        _newest.put(slot, (row.id, time.monotonic()))
    return row.id, material


# --- values -------------------------------------------------------------------------------


def _value_aad(key_id: uuid.UUID, tenant_id: int | None, label: str) -> bytes:
    tenant = "platform" if tenant_id is None else str(tenant_id)
    return b"supportbot field|" + key_id.bytes + f"|{tenant}|{label}".encode()


def is_token(value: str) -> bool:
    """True when `value` has the shape of a value this module encrypted."""
    return value.startswith(PREFIX) and len(value) > len(PREFIX) + 40


def token_key_id(token: str) -> uuid.UUID:
    """The id of the data key that encrypted `token`."""
    return uuid.UUID(bytes=_decode_token(token)[:KEY_ID_BYTES])


def _decode_token(token: str) -> bytes:
    if not token.startswith(PREFIX):
        raise DecryptionError("not an encrypted value")
    try:
        blob = base64.urlsafe_b64decode(token[len(PREFIX) :])
    except (binascii.Error, ValueError) as exc:
        raise DecryptionError("malformed encrypted value") from exc
    if len(blob) < KEY_ID_BYTES + NONCE_BYTES + 16:
        raise DecryptionError("malformed encrypted value")
    return blob


def encrypt_bytes(plaintext: bytes, *, tenant_id: int | None, label: str) -> str:
    """`plaintext` encrypted under the tenant's newest data key, bound to the tenant and `label`
    (the field, e.g. "conversations.message.text")."""
    key_id, material = _newest_key(tenant_id, DataKey.Purpose.DATA)
    nonce = os.urandom(NONCE_BYTES)
    sealed = _cipher(key_id, material).encrypt(
        nonce, plaintext, _value_aad(key_id, tenant_id, label)
    )
    return PREFIX + base64.urlsafe_b64encode(key_id.bytes + nonce + sealed).decode()


def decrypt_bytes(token: str, *, tenant_id: int | None, label: str) -> bytes:
    """The plaintext of `token`; DecryptionError when it was not encrypted for this tenant and
    field, was altered, or its key is gone."""
    blob = _decode_token(token)
    key_id = uuid.UUID(bytes=blob[:KEY_ID_BYTES])
    cipher = _ciphers.get(key_id) or _cipher(key_id, _material_by_id(key_id))
    nonce = blob[KEY_ID_BYTES : KEY_ID_BYTES + NONCE_BYTES]
    try:
        return cipher.decrypt(
            nonce, blob[KEY_ID_BYTES + NONCE_BYTES :], _value_aad(key_id, tenant_id, label)
        )
    except InvalidTag as exc:
        raise DecryptionError("the value does not decrypt for this tenant and field") from exc


def newest_data_key_id(tenant_id: int | None) -> uuid.UUID:
    """The id of the data key that encrypts the tenant's new values."""
    return _newest_key(tenant_id, DataKey.Purpose.DATA)[0]


def encrypt_secret(plaintext: str, *, tenant_id: int | None = None, field: str = "secret") -> str:
    """Encrypt a secret (a provider key, an identity secret) of `tenant_id` (None: the
    platform's); the empty string stays empty (no secret stored)."""
    if not plaintext:
        return ""
    return encrypt_bytes(plaintext.encode(), tenant_id=tenant_id, label=field)


def decrypt_secret(token: str, *, tenant_id: int | None = None, field: str = "secret") -> str:
    if not token:
        return ""
    return decrypt_bytes(token, tenant_id=tenant_id, label=field).decode()


# --- blind indexes -------------------------------------------------------------------------


def normalise_for_index(value: str, kind: IndexKind = "email") -> str:
    """Emails are compared trimmed and lower-cased; an identity's `sub` exactly; a channel's
    user id (a chat id, a phone number, a Slack user, an email address) trimmed."""
    if kind == "email":
        return value.strip().lower()
    return value.strip() if kind == "channel_user" else value


def blind_index(tenant_id: int, value: str, *, kind: IndexKind = "email") -> str:
    """The keyed blind index (HMAC-SHA256, hex) of `value` in the tenant: equal values give equal
    indexes, and nothing else can be learnt from it without the tenant's index key. The empty
    value has the empty index."""
    found = _blind_index(tenant_id, value, kind, create=True)
    assert found is not None
    return found


def blind_index_lookup(tenant_id: int, value: str, *, kind: IndexKind = "email") -> str | None:
    """`blind_index` for a search: None when the tenant has never indexed anything (no row can
    match, and no key is created for a search)."""
    return _blind_index(tenant_id, value, kind, create=False)


def blind_index_lookups(
    tenant_ids: Iterable[int], value: str, *, kind: IndexKind = "email"
) -> dict[int, str]:
    """`blind_index_lookup` for many tenants at once (their index keys read in one query): tenant
    id -> index, for the tenants that have an index key."""
    normalised = normalise_for_index(value, kind)
    if not normalised:
        return {}
    message = kind.encode() + b"\x00" + normalised.encode()
    rows = DataKey.objects.filter(tenant_id__in=list(tenant_ids), purpose=DataKey.Purpose.INDEX)
    return {
        int(row.tenant_id): hmac.new(_material(row), message, hashlib.sha256).hexdigest()
        for row in rows
        if row.tenant_id is not None
    }


def _blind_index(tenant_id: int, value: str, kind: IndexKind, *, create: bool) -> str | None:
    normalised = normalise_for_index(value, kind)
    if not normalised:
        return ""
    found = _newest_key_if_any(tenant_id, DataKey.Purpose.INDEX, create=create)
    if found is None:
        return None
    message = kind.encode() + b"\x00" + normalised.encode()
    return hmac.new(found[1], message, hashlib.sha256).hexdigest()


# --- rotation ------------------------------------------------------------------------------


def rewrap_data_keys(*, batch_size: int = 500) -> tuple[int, int]:
    """Re-wrap every key not wrapped by the ring's first master key under it.

    Returns (re-wrapped, already current). The keys themselves do not change, so no value needs
    re-encrypting for this; one batch per transaction.
    """
    newest = key_ring()[0]
    rewrapped = 0
    current = DataKey.objects.filter(master_key_id=newest.id).count()
    while True:
        with transaction.atomic():
            rows = list(
                DataKey.objects.exclude(master_key_id=newest.id)
                .select_for_update(skip_locked=True)
                .order_by("id")[:batch_size]
            )
            if not rows:
                return rewrapped, current
            for row in rows:
                _wrap(_unwrap(row), row, newest)
                row.save(update_fields=["wrapped_key", "master_key_id", "wrapped_at"])
            rewrapped += len(rows)


def create_data_keys() -> int:
    """A fresh data key for every tenant that has one (and the platform); the old keys keep
    decrypting until `reencrypt` has moved every value. Returns the number created."""
    tenant_ids = (
        DataKey.objects.filter(purpose=DataKey.Purpose.DATA)
        .values_list("tenant_id", flat=True)
        .distinct()
    )
    created = 0
    for tenant_id in list(tenant_ids):
        with transaction.atomic():
            _lock_tenant_keys(tenant_id)
            _create_key(tenant_id, DataKey.Purpose.DATA)
        _newest.discard((tenant_id, DataKey.Purpose.DATA))
        created += 1
    return created
