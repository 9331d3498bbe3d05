"""Moving stored values to their tenant's newest data key (`manage.py reencrypt`).

Every `EncryptedTextField`/`EncryptedJSONField` of every installed model is found by itself;
a column encrypted by hand with `encrypt_secret` is registered by its app
(`register_secret_column`, from `AppConfig.ready`), so this module imports no app.

The work goes in primary-key order, one transaction per batch; a value already under its
tenant's newest key is left alone, so an interrupted run simply runs again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.apps import apps
from django.db import models, transaction

from supportbot.compliance.encryption import (
    decrypt_bytes,
    encrypt_bytes,
    is_token,
    newest_data_key_id,
    token_key_id,
)
from supportbot.compliance.fields import Sealed, encrypted_fields


@dataclass(frozen=True)
class EncryptedColumn:
    """One column of encrypted values: the model, the attribute, the tenant attribute and the
    label the values are bound to."""

    model: type[models.Model]
    attname: str
    tenant_attname: str
    label: str
    sealed: bool  # loaded as `Sealed` (an encrypted field) rather than the token string

    @property
    def name(self) -> str:
        return f"{self.model._meta.label_lower}.{self.attname}"


_secret_columns: list[tuple[str, str, str, str]] = []


def register_secret_column(
    model_label: str, attname: str, *, tenant_attname: str, label: str
) -> None:
    """Declare a text column holding `encrypt_secret` tokens of the row's tenant under `label`."""
    entry = (model_label, attname, tenant_attname, label)
    if entry not in _secret_columns:
        _secret_columns.append(entry)


def encrypted_columns() -> list[EncryptedColumn]:
    columns = [
        EncryptedColumn(model, field.attname, field.tenant_attname, field.label, True)
        for model in apps.get_models()
        for field in encrypted_fields(model)
    ]
    for model_label, attname, tenant_attname, label in _secret_columns:
        model = apps.get_model(model_label)
        columns.append(EncryptedColumn(model, attname, tenant_attname, label, False))
    return columns


@dataclass
class ColumnProgress:
    column: str
    scanned: int = 0
    moved: int = 0
    batches: int = 0


def _batches(column: EncryptedColumn, batch_size: int) -> Iterator[list[tuple[object, ...]]]:
    last_pk: object = None
    while True:
        rows = column.model._default_manager.order_by("pk")
        if last_pk is not None:
            rows = rows.filter(pk__gt=last_pk)
        batch = list(rows.values_list("pk", column.tenant_attname, column.attname)[:batch_size])
        if not batch:
            return
        last_pk = batch[-1][0]
        yield batch


def _token(value: object) -> str:
    if isinstance(value, Sealed):
        return value.token
    return value if isinstance(value, str) else ""


def reencrypt_column(
    column: EncryptedColumn,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    max_batches: int | None = None,
    on_batch: Callable[[ColumnProgress], None] | None = None,
) -> ColumnProgress:
    """Move every value of `column` not under its tenant's newest data key to it."""
    progress = ColumnProgress(column.name)
    newest: dict[int | None, uuid.UUID] = {}
    for batch in _batches(column, batch_size):
        if max_batches is not None and progress.batches >= max_batches:
            break
        with transaction.atomic():
            for pk, tenant, value in batch:
                tenant_id = None if tenant is None else int(str(tenant))
                progress.scanned += 1
                token = _token(value)
                if not is_token(token):
                    continue
                if tenant_id not in newest:
                    newest[tenant_id] = newest_data_key_id(tenant_id)
                if token_key_id(token) == newest[tenant_id]:
                    continue
                progress.moved += 1
                if dry_run:
                    continue
                plaintext = decrypt_bytes(token, tenant_id=tenant_id, label=column.label)
                moved = encrypt_bytes(plaintext, tenant_id=tenant_id, label=column.label)
                stored: object = Sealed(moved) if column.sealed else moved
                # Only if the row still holds the value read (a concurrent write wins).
                column.model._default_manager.filter(
                    pk=pk, **{column.attname: Sealed(token) if column.sealed else token}
                ).update(**{column.attname: stored})
        progress.batches += 1
        if on_batch is not None:
            on_batch(progress)
    return progress
