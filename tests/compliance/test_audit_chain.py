"""The audit chain: appends, verification, the append-only trigger, retention, erasure."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from supportbot.compliance.audit import expire_events, keyed_digest, record_event
from supportbot.compliance.audit_chain import verify_chain
from supportbot.compliance.erasure import erase_subject
from supportbot.compliance.models import AuditDetail, AuditEvent
from supportbot.compliance.registry import DataSubject, registered_stores


def _verify(*args: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def tamper(sql: str, params: list[Any]) -> None:
    """Change the table behind the trigger's back, as someone with the database could."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "ALTER TABLE compliance_auditevent DISABLE TRIGGER compliance_audit_event_append_only"
        )
        cursor.execute(sql, params)
        cursor.execute(
            "ALTER TABLE compliance_auditevent ENABLE TRIGGER compliance_audit_event_append_only"
        )


def _record_some(tenant_id: int | None, n: int, **fields: Any) -> None:
    for i in range(n):
        record_event(
            tenant_id=tenant_id,
            action="message.visitor",
            actor=f"visitor:c{i}",
            target=f"conversation:conv{i}",
            contact_id=fields.get("contact_id", f"c{i}"),
            details={"chars": i, "cost": "0.01"},
        )


@pytest.mark.django_db
def test_chains_are_per_tenant_and_verify(make_tenant: Any) -> None:
    alpha, _ = make_tenant(name="Alpha")
    beta, _ = make_tenant(name="Beta")
    _record_some(alpha.pk, 3)
    _record_some(beta.pk, 2)
    record_event(tenant_id=None, action="login", actor="user:1")

    seqs = list(
        AuditEvent.objects.filter(tenant_id=alpha.pk)
        .order_by("seq")
        .values_list("seq", "prev_hash", "hash")
    )
    assert [s for s, _, _ in seqs] == [1, 2, 3]
    assert seqs[0][1] == ""
    assert seqs[1][1] == seqs[0][2]
    assert seqs[2][1] == seqs[1][2]
    assert AuditEvent.objects.get(tenant_id=None).seq == 1
    assert verify_chain(alpha.pk).intact
    assert verify_chain(alpha.pk).events == 3

    code, out = _verify()
    assert code == 0, out
    assert "platform: intact, 1 events" in out
    assert f"tenant {alpha.pk}: intact, 3 events" in out
    code, out = _verify("--tenant", beta.slug)
    assert code == 0
    assert f"tenant {beta.pk}: intact, 2 events" in out
    assert "platform" not in out


@pytest.mark.django_db
def test_details_are_stored_apart_with_a_salted_digest(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    record_event(tenant_id=tenant.pk, action="x", details={"model": "m", "tokens": 5})
    record_event(tenant_id=tenant.pk, action="x", details={"model": "m", "tokens": 5})
    first, second = AuditEvent.objects.filter(tenant_id=tenant.pk).order_by("seq")
    assert first.detail.data == {"model": "m", "tokens": 5}
    # The same details under two random salts: the digest alone cannot be matched to a guess.
    assert first.details_digest != second.details_digest
    assert first.detail.salt != second.detail.salt


@pytest.mark.django_db
def test_the_trigger_refuses_update_and_delete(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    _record_some(tenant.pk, 2)
    event = AuditEvent.objects.filter(tenant_id=tenant.pk).first()
    assert event is not None
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor="user:999")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM compliance_auditevent")
    assert AuditEvent.objects.filter(tenant_id=tenant.pk).count() == 2


@pytest.mark.django_db
def test_audit_verify_names_the_first_changed_event(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    _record_some(tenant.pk, 5)
    victim = AuditEvent.objects.get(tenant_id=tenant.pk, seq=3)
    tamper("UPDATE compliance_auditevent SET actor = 'user:1' WHERE id = %s", [victim.pk])

    code, out = _verify()
    assert code == 1
    assert f"event id={victim.pk} seq=3 tenant {tenant.pk}" in out
    assert verify_chain(tenant.pk).broken_event_id == victim.pk


@pytest.mark.django_db
def test_audit_verify_notices_changed_details_and_a_removed_event(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    _record_some(tenant.pk, 4)
    changed = AuditEvent.objects.get(tenant_id=tenant.pk, seq=2)
    AuditDetail.objects.filter(event=changed).update(data={"chars": 99, "cost": "0.01"})
    report = verify_chain(tenant.pk)
    assert (report.broken_event_id, report.broken_seq) == (changed.pk, 2)
    assert "details" in report.problem

    AuditDetail.objects.filter(event=changed).delete()  # erased details: the chain holds
    assert verify_chain(tenant.pk).intact
    AuditDetail.objects.filter(event__tenant_id=tenant.pk, event__seq=3).delete()
    tamper("DELETE FROM compliance_auditevent WHERE tenant_id = %s AND seq = 3", [tenant.pk])
    report = verify_chain(tenant.pk)
    assert report.broken_seq == 4
    assert "missing" in report.problem


@pytest.mark.django_db
def test_expire_events_removes_an_old_prefix_and_the_rest_still_verifies(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    other, _ = make_tenant()
    _record_some(tenant.pk, 4)
    _record_some(other.pk, 2)
    cutoff = timezone.now()
    _record_some(tenant.pk, 2)

    assert expire_events(tenant_id=tenant.pk, before=cutoff) == 4
    remaining = list(AuditEvent.objects.filter(tenant_id=tenant.pk).order_by("seq"))
    assert [e.seq for e in remaining] == [5, 6, 7]
    expiry = remaining[-1]
    assert expiry.action == "audit.expire"
    assert expiry.anchor_seq == 4
    assert expiry.detail.data["removed"] == 4
    assert verify_chain(tenant.pk).intact
    assert AuditEvent.objects.filter(tenant_id=other.pk).count() == 2  # other chains untouched
    assert verify_chain(other.pk).intact
    assert expire_events(tenant_id=tenant.pk, before=cutoff) == 0

    # Everything expired: the expiry event alone carries the chain on.
    assert expire_events(tenant_id=tenant.pk, before=timezone.now() + timedelta(days=1)) == 3
    (only,) = AuditEvent.objects.filter(tenant_id=tenant.pk)
    assert (only.seq, only.anchor_seq) == (8, 7)
    assert verify_chain(tenant.pk).intact
    record_event(tenant_id=tenant.pk, action="x")
    code, out = _verify("--tenant", tenant.slug)
    assert code == 0, out

    # A prefix removed by hand (no expiry event anchors it) is reported.
    AuditDetail.objects.filter(event__tenant_id=other.pk, event__seq=1).delete()
    tamper("DELETE FROM compliance_auditevent WHERE tenant_id = %s AND seq = 1", [other.pk])
    assert verify_chain(other.pk).broken_seq == 2


# Ids of a person no store but the audit log knows (every registered store takes part).
C1, C2, V1 = (str(uuid.uuid4()) for _ in range(3))


@pytest.mark.django_db
def test_erasing_the_audit_store_deletes_details_and_the_chain_verifies(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    other, _ = make_tenant()
    record_event(tenant_id=tenant.pk, action="message.visitor", contact_id=C1, details={"n": 1})
    record_event(tenant_id=tenant.pk, action="message.visitor", contact_id=C2, details={"n": 2})
    record_event(tenant_id=other.pk, action="message.visitor", contact_id=C1, details={"n": 3})
    record_event(
        tenant_id=tenant.pk, action="transcript.view", target=f"conversation:{V1}", details={"n": 4}
    )
    assert "audit" in {store.name for store in registered_stores()}
    subject = DataSubject(
        tenant_id=tenant.pk, contact_ids=frozenset({C1}), conversation_ids=frozenset({V1})
    )
    (store,) = [s for s in registered_stores() if s.name == "audit"]
    exported = store.export(subject)["audit_events"]
    assert [(e["contact_id"], e["details"]) for e in exported] == [
        (C1, {"n": 1}),
        ("", {"n": 4}),
    ]

    certificate = erase_subject(subject, actor="user:1", reference="REQ-1")
    assert certificate["counts"]["audit_event_details"] == 2
    # The events stay (and the certificate is one more).
    assert AuditEvent.objects.exclude(action="data.erase").count() == 4
    assert AuditEvent.objects.filter(action="data.erase", contact_id="").count() == 1
    kept = AuditDetail.objects.exclude(event__action="data.erase")
    assert sorted(detail.data["n"] for detail in kept) == [2, 3]
    assert store.export(subject)["audit_events"] == []  # what is left is no one's data
    assert verify_chain(tenant.pk).intact
    assert verify_chain(other.pk).intact


def test_keyed_digest_is_stable_and_not_the_value() -> None:
    assert keyed_digest("alice") == keyed_digest("alice")
    assert keyed_digest("alice") != keyed_digest("bob")
    assert "alice" not in keyed_digest("alice")


@pytest.mark.django_db(transaction=True)
def test_two_threads_appending_to_one_chain_keep_it_valid(make_tenant: Any) -> None:
    tenant, _ = make_tenant()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(25):
                with transaction.atomic():
                    record_event(
                        tenant_id=tenant.pk, action="x", actor=f"w{worker}", details={"i": i}
                    )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=append, args=(w,)) for w in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    seqs = list(
        AuditEvent.objects.filter(tenant_id=tenant.pk).order_by("seq").values_list("seq", flat=True)
    )
    assert seqs == list(range(1, 51))
    assert set(AuditEvent.objects.filter(tenant_id=tenant.pk).values_list("actor", flat=True)) == {
        "w1",
        "w2",
    }
    assert verify_chain(tenant.pk).intact
