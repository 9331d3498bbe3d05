"""Erasure (GDPR Art. 17) over every registered store, and its certificate.

Each store erases in its own transaction and is idempotent, so an erasure that failed half way
is finished by running it again. Stores run in registration order; the conversations app
registers the rows that name the person (its contacts) last, so a re-run still finds them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import transaction

from supportbot.compliance.audit import record_event
from supportbot.compliance.registry import DataSubject, registered_stores

# Called before each store: (index of the store, how many stores, the store's name).
StoreProgress = Callable[[int, int, str], None]


def erase_subject(
    subject: DataSubject,
    *,
    actor: str,
    reference: str = "",
    on_store: StoreProgress | None = None,
) -> dict[str, Any]:
    """Erase `subject` from every registered store; returns the erasure certificate (JSON),
    which is also recorded in the tenant's audit log (`data.erase`).

    The certificate names no person: the request's reference, the tenant, who erased, when,
    and how many items went from each store.
    """
    stores = registered_stores()
    per_store: dict[str, dict[str, int]] = {}
    for index, store in enumerate(stores):
        if on_store is not None:
            on_store(index, len(stores), store.name)
        per_store[store.name] = dict(store.erase(subject))
    counts: dict[str, int] = {}
    for erased in per_store.values():
        for name, count in erased.items():
            counts[name] = counts.get(name, 0) + count
    certificate: dict[str, Any] = {
        "type": "erasure_certificate",
        "reference": reference,
        "tenant_id": subject.tenant_id,
        "actor": actor,
        "erased_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "subject": {
            "contacts": len(subject.contact_ids),
            "conversations": len(subject.conversation_ids),
        },
        "stores": per_store,
        "counts": counts,
    }
    with transaction.atomic():
        # No contact_id: the certificate must outlive the person's own audit events.
        record_event(
            tenant_id=subject.tenant_id,
            action="data.erase",
            actor=actor,
            target=f"data_request:{reference}" if reference else "",
            details=certificate,
        )
    return certificate
