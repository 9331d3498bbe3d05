"""Data migration steps that encrypt columns in place, for the apps' migrations.

They read and write with SQL (not the models of the migration's state) in batches of one
transaction each, so a migration using them is `atomic = False` and can run again after an
interruption: a value already encrypted is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from supportbot.compliance.encryption import (
    IndexKind,
    blind_index,
    encrypt_bytes,
    encrypt_secret,
    is_token,
)
from supportbot.compliance.legacy_fernet import fernet_decrypt, is_fernet_token

BATCH_SIZE = 1000


def _json_bytes(raw: str) -> bytes | None:
    value = json.loads(raw)
    if value in ({}, [], "", None):
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _text_bytes(raw: str) -> bytes | None:
    return raw.encode() if raw else None


def _rows(
    schema_editor: BaseDatabaseSchemaEditor, sql: str, params: list[Any]
) -> list[tuple[Any, ...]]:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def encrypt_column(
    schema_editor: BaseDatabaseSchemaEditor,
    *,
    table: str,
    column: str,
    label: str,
    tenant_column: str = "tenant_id",
    json_value: bool = False,
    index_column: str = "",
    index_kind: IndexKind = "email",
    batch_size: int = BATCH_SIZE,
) -> int:
    """Encrypt every plaintext value of `table.column` for its row's tenant, bound to `label`
    (filling `index_column` with its blind index). Returns the number of rows encrypted."""
    qn = schema_editor.quote_name
    to_bytes: Callable[[str], bytes | None] = _json_bytes if json_value else _text_bytes
    # Identifiers come from the migrations' own code, quoted; values are parameters.
    plaintext = f"{qn(column)} <> '' AND {qn(column)} NOT LIKE 'enc1:%%'"
    first = f"SELECT id, {qn(tenant_column)}, {qn(column)} FROM {qn(table)} WHERE {plaintext}"  # noqa: S608
    sets = f"{qn(column)} = %s" + (f", {qn(index_column)} = %s" if index_column else "")
    update = f"UPDATE {qn(table)} SET {sets} WHERE id = %s"  # noqa: S608
    done, last = 0, None
    while True:
        with transaction.atomic(using=schema_editor.connection.alias):
            if last is None:
                rows = _rows(schema_editor, f"{first} ORDER BY id LIMIT %s", [batch_size])
            else:
                rows = _rows(
                    schema_editor, f"{first} AND id > %s ORDER BY id LIMIT %s", [last, batch_size]
                )
            if not rows:
                return done
            with schema_editor.connection.cursor() as cursor:
                for pk, tenant_id, raw in rows:
                    last = pk
                    if is_token(raw):
                        continue
                    data = to_bytes(raw)
                    token = encrypt_bytes(data, tenant_id=tenant_id, label=label) if data else ""
                    params: list[Any] = [token]
                    if index_column:
                        params.append(blind_index(tenant_id, raw, kind=index_kind))
                    cursor.execute(update, [*params, pk])
                    done += 1


def fernet_to_aes(
    schema_editor: BaseDatabaseSchemaEditor, *, table: str, column: str, label: str
) -> int:
    """Re-encrypt the Fernet secrets of `table.column` (a tenant's own row: `id` is the tenant)
    with AES-256-GCM under the tenant's data key. Returns the number re-encrypted."""
    qn = schema_editor.quote_name
    done = 0
    select = f"SELECT id, {qn(column)} FROM {qn(table)} ORDER BY id"  # noqa: S608
    rows = _rows(schema_editor, select, [])
    for tenant_id, raw in rows:
        if not raw or not is_fernet_token(raw):
            continue
        with transaction.atomic(using=schema_editor.connection.alias):
            token = encrypt_secret(fernet_decrypt(raw), tenant_id=tenant_id, field=label)
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {qn(table)} SET {qn(column)} = %s WHERE id = %s AND {qn(column)} = %s",  # noqa: S608
                    [token, tenant_id, raw],
                )
        done += 1
    return done
