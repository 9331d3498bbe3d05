"""Asking Postgres, from another connection, whether a row is locked right now."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import DatabaseError, connection, transaction


def row_locked(model: Any, pk: Any) -> bool:
    """Whether another transaction holds the row's lock (asked from a connection of its own)."""

    def try_lock() -> bool:
        try:
            with transaction.atomic():
                model.objects.select_for_update(nowait=True).filter(pk=pk).first()
        except DatabaseError:
            return True
        finally:
            connection.close()
        return False

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(try_lock).result(timeout=10)
