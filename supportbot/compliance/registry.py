"""Where each app registers the personal data it holds, the way apps register with the admin.

The compliance layer imports no app: an app hands it, at start-up (`AppConfig.ready`), a
`PersonalDataStore` (export and erase for one store of its data) and, for the app that knows
people (conversations), a `SubjectFinder` that turns a selector (contact id, email, verified
identity `sub`, conversation id) into a `DataSubject`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class DataSubject:
    """A person within one tenant: every contact and conversation that is theirs."""

    tenant_id: int
    contact_ids: frozenset[str] = field(default_factory=frozenset)
    conversation_ids: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class SubjectSelector:
    """How a data request names the person: exactly one field is set."""

    contact_id: str = ""
    email: str = ""
    identity_sub: str = ""
    conversation_id: str = ""


class PersonalDataStore(Protocol):
    """One store of personal data (a table family, a Redis key family...)."""

    name: str

    def export(self, subject: DataSubject) -> dict[str, list[dict[str, Any]]]:
        """Section name -> JSON-able records about `subject`."""
        ...

    def erase(self, subject: DataSubject) -> dict[str, int]:
        """Remove everything about `subject`; store/section name -> how many items went."""
        ...


class SubjectFinder(Protocol):
    def __call__(self, tenant_id: int, selector: SubjectSelector) -> DataSubject | None: ...


_stores: dict[str, PersonalDataStore] = {}
_finders: list[SubjectFinder] = []


def register_store(store: PersonalDataStore) -> None:
    """Register `store` (idempotent by name: a second registration replaces the first)."""
    _stores[store.name] = store


def registered_stores() -> list[PersonalDataStore]:
    return list(_stores.values())


def register_subject_finder(finder: SubjectFinder) -> None:
    if finder not in _finders:
        _finders.append(finder)


def find_subject(tenant_id: int, selector: SubjectSelector) -> DataSubject | None:
    """The person `selector` names in `tenant_id`, or None when no registered finder knows them."""
    for finder in _finders:
        subject = finder(tenant_id, selector)
        if subject is not None:
            return subject
    return None
