"""Model fields stored encrypted (AES-256-GCM, the tenant's data key) and their blind indexes.

An encrypted field takes its tenant from the instance (`tenant_id`, or `tenant_attname`): it
encrypts in `pre_save` and decrypts on first attribute access, when the row's tenant is known,
so a value copied to another tenant's row or another column does not decrypt. Until read, a
loaded value stays `Sealed` (saving it unread writes the same ciphertext back).

The database never sees the plaintext, so such a column cannot be filtered, ordered or made
unique on: use a `BlindIndexField` for equality lookups. Apply `EncryptedJSONField` to any new
JSON field holding personal data the same way as `EncryptedTextField`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from django.db import models
from django.db.models.query_utils import DeferredAttribute

from supportbot.compliance.encryption import (
    IndexKind,
    blind_index,
    decrypt_bytes,
    encrypt_bytes,
)


class Sealed:
    """A stored ciphertext not decrypted yet."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "<Sealed>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)


class _SealedAttribute(DeferredAttribute):
    """Loads a deferred value, and decrypts a sealed one on first access (a data descriptor,
    so that it sees every read of the attribute)."""

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Sealed):
            field = self.field
            assert isinstance(field, EncryptedFieldMixin)
            value = field.open(value, instance)
            instance.__dict__[field.attname] = value
        return value


class EncryptedFieldMixin:
    """What the encrypted fields share; a subclass says how a value becomes bytes."""

    descriptor_class: type[DeferredAttribute] = _SealedAttribute
    attname: str
    name: str
    model: type[models.Model]

    def __init__(self, *args: Any, tenant_attname: str = "tenant_id", **kwargs: Any) -> None:
        self.tenant_attname = tenant_attname
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()  # type: ignore[misc]
        if self.tenant_attname != "tenant_id":
            kwargs["tenant_attname"] = self.tenant_attname
        return name, path, args, kwargs

    @property
    def label(self) -> str:
        """What the ciphertext is bound to besides the tenant: app.model.field."""
        return f"{self.model._meta.label_lower}.{self.name}"

    # How a value is stored; the empty value is stored as "" (not encrypted).
    def is_empty(self, value: Any) -> bool:
        raise NotImplementedError

    def empty_value(self) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        raise NotImplementedError

    def tenant_of(self, instance: models.Model) -> int:
        tenant_id = getattr(instance, self.tenant_attname)
        if tenant_id is None:
            raise ValueError(f"{self.label} is encrypted per tenant: the row has no tenant")
        return int(tenant_id)

    def seal(self, value: Any, *, tenant_id: int) -> Sealed | str:
        if self.is_empty(value):
            return ""
        return Sealed(encrypt_bytes(self.encode(value), tenant_id=tenant_id, label=self.label))

    def open(self, sealed: Sealed, instance: models.Model) -> Any:
        return self.open_token(sealed.token, tenant_id=self.tenant_of(instance))

    def open_token(self, token: str, *, tenant_id: int) -> Any:
        return self.decode(decrypt_bytes(token, tenant_id=tenant_id, label=self.label))

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if value is None:
            return None
        if value == "":
            return self.empty_value()
        return Sealed(value)

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        value = model_instance.__dict__.get(self.attname)
        if value is None or isinstance(value, Sealed):
            return value
        return self.seal(value, tenant_id=self.tenant_of(model_instance))

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.token
        if self.is_empty(value):
            return ""
        raise TypeError(
            f"{self.label} is stored encrypted: it is written through a model instance's save() "
            "and cannot be compared with a value in a query (use its blind index)"
        )

    def value_from_object(self, obj: models.Model) -> Any:
        return getattr(obj, self.attname)


class EncryptedTextField(EncryptedFieldMixin, models.TextField):
    """Text stored encrypted; "" is stored as "" (there is nothing to hide)."""

    def is_empty(self, value: Any) -> bool:
        return value == ""

    def empty_value(self) -> str:
        return ""

    def encode(self, value: Any) -> bytes:
        return str(value).encode()

    def decode(self, data: bytes) -> str:
        return data.decode()

    def to_python(self, value: Any) -> Any:
        if isinstance(value, Sealed):
            return value
        return super().to_python(value)


if TYPE_CHECKING:
    _JSONColumn = models.TextField[Any, Any]
else:
    _JSONColumn = models.TextField


class EncryptedJSONField(EncryptedFieldMixin, _JSONColumn):
    """A JSON value stored encrypted (in a text column); an empty container or None is stored as
    "" and reads back as the field's default."""

    if TYPE_CHECKING:
        _pyi_private_set_type: Any
        _pyi_private_get_type: Any

    def is_empty(self, value: Any) -> bool:
        return value in ({}, [], "")

    def empty_value(self) -> Any:
        return self.get_default()

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)

    def to_python(self, value: Any) -> Any:
        return value


class BlindIndexField(models.CharField):
    """The keyed blind index (see `encryption.blind_index`) of an encrypted field of the same
    row, kept up to date on save: equality lookups go through it.

    A save with `update_fields` naming the source field must name this one too
    (`with_blind_indexes` adds them).
    """

    def __init__(
        self, *args: Any, source: str = "", kind: IndexKind = "email", **kwargs: Any
    ) -> None:
        self.source = source
        self.kind: IndexKind = kind
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        kwargs["kind"] = self.kind
        for key in ("max_length", "blank", "default", "editable"):
            kwargs.pop(key, None)
        return name, path, args, kwargs

    def pre_save(self, model_instance: models.Model, add: bool) -> str:
        current = model_instance.__dict__.get(self.attname, "")
        source = model_instance._meta.get_field(self.source)
        value = model_instance.__dict__.get(getattr(source, "attname", self.source))
        if value is None or isinstance(value, Sealed):
            return str(current or "")  # the source is unchanged since it was loaded
        tenant_id = getattr(model_instance, getattr(source, "tenant_attname", "tenant_id"))
        index = blind_index(int(tenant_id), str(value), kind=self.kind)
        setattr(model_instance, self.attname, index)
        return index


def with_blind_indexes(model: type[models.Model], update_fields: Iterable[str]) -> list[str]:
    """`update_fields` plus the blind indexes of the encrypted fields it names."""
    fields = list(update_fields)
    for field in model._meta.concrete_fields:
        if (
            isinstance(field, BlindIndexField)
            and field.source in fields
            and field.name not in fields
        ):
            fields.append(field.name)
    return fields


def encrypted_fields(model: type[models.Model]) -> list[EncryptedFieldMixin]:
    return [
        cast(EncryptedFieldMixin, field)
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedFieldMixin)
    ]
