"""Erasure (GDPR Art. 17) over every registered store.

(The certificate, its audit event and the request's progress are built on this signature.)
"""

from __future__ import annotations

from typing import Any

from supportbot.compliance.registry import DataSubject, registered_stores


def erase_subject(subject: DataSubject, *, actor: str, reference: str = "") -> dict[str, Any]:
    """Erase `subject` from every registered store; returns the erasure certificate (JSON)."""
    counts: dict[str, int] = {}
    for store in registered_stores():
        for name, count in store.erase(subject).items():
            counts[name] = counts.get(name, 0) + count
    return {
        "tenant_id": subject.tenant_id,
        "actor": actor,
        "reference": reference,
        "counts": counts,
    }
