"""The audit log's one entry point: `record_event`.

Services call it inside the transaction that makes the change, so an event exists exactly
when its change does. This module imports no app: events name their tenant, actor and target
by id and string.

(The chain, its storage and `audit_verify` are built on this signature.)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any


def record_event(
    *,
    tenant_id: int | None,
    action: str,
    actor: str = "system",
    target: str = "",
    contact_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append one event to `tenant_id`'s audit chain (None: the platform's own chain).

    - `action`: dotted, from the support domain: "message.visitor", "reply.complete",
      "handoff", "transcript.view", "consent.accept", "data.erase"...
    - `actor`: "visitor:<contact id>", "user:<user id>", "assistant", "system".
    - `target`: what the event is about: "conversation:<id>", "tenant:<id>", "user:<id>".
    - `contact_id`: the person the event is about, if any (found by export and erasure).
    - `details`: JSON-able facts (model, tokens, cost...). Never message text.
    """
    return


def expired_event_count(*, tenant_id: int | None, before: datetime) -> int:
    """How many of `tenant_id`'s events `expire_events(before=...)` would remove (a dry run)."""
    return 0


def expire_events(*, tenant_id: int | None, before: datetime) -> int:
    """Remove `tenant_id`'s events older than `before` (whole expired segments only; the only
    removal the audit table allows), record that it happened, and return how many went."""
    return 0
