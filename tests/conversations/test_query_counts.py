"""How many SQL statements each stage of a reply runs: the widget's `hello`, its `message`, the
worker's claim of the reply job, the storing of the reply. A statement added to any of them
fails here, so the cost of a reply does not creep up unnoticed."""

from typing import Any

import pytest

from conversations.channels.widget import widget_hello, widget_message
from conversations.models import ReplyJob
from conversations.reply.generate import reply_generate
from supportbot.tenants.config_cache import tenant_config_changed
from supportbot.tenants.models import WidgetKey
from supportbot.tenants.selectors import access_widget_key_by_public_key
from tests.support.llm_server import Reply
from tests.support.query_counts import queries_captured, stage_counted, statements

pytestmark = pytest.mark.django_db(transaction=True)

SHOP = "https://shop.example.com"

# A new visitor's first message: the contact and the conversation (each INSERTed under a
# savepoint), its consent notice and two audit events (4 statements each: lock, chain head,
# event, detail) besides the message and its job. The claim: job, history, knowledge, then
# one transaction (lock, reply, language, job). The reply's storage: one transaction with its
# usage and audit event.
EXPECTED = {"hello": 0, "message": 20, "claim": 11, "finish": 11}


def test_statements_per_stage_of_a_reply(make_tenant: Any, llm: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("conversations.jobs.reply_job_enqueue", lambda job_id: None)
    _, key = make_tenant()
    counts: dict[str, list[str]] = {}
    stage_counted(monkeypatch, "conversations.reply.generate.reply_job_claim", counts, "claim")
    stage_counted(monkeypatch, "conversations.reply.generate.reply_finish", counts, "finish")
    first_hello: list[str] = []
    for round_ in range(2):  # the second round's hello finds the tenant's configuration cached
        counts.clear()
        llm.enqueue(Reply(text="It left our warehouse today."))
        with queries_captured() as captured:
            session = widget_hello(
                frame={"type": "hello", "key": key.public_key}, origin=SHOP, host=None
            )
        counts["hello"] = statements(captured)
        first_hello = first_hello or counts["hello"]
        frame = {"type": "message", "client_id": f"c{round_}", "text": "Where is my parcel?"}
        with queries_captured() as captured:
            ack = widget_message(session=session, frame=frame)
        counts["message"] = statements(captured)
        assert ack["type"] == "ack"
        reply_generate(job_id=ReplyJob.objects.get(trigger_id=ack["message"]["id"]).pk)
    assert len(first_hello) == 2  # the widget key with its tenant, the consent texts
    assert {stage: len(sqls) for stage, sqls in counts.items()} == EXPECTED, counts
    assert not [sql for sql in counts["claim"] if "SAVEPOINT" in sql]


def test_a_key_changed_elsewhere_is_read_again_once_announced(make_tenant: Any) -> None:
    tenant, key = make_tenant()
    assert access_widget_key_by_public_key(key.public_key) == key
    # Another process's change: the row, then the new version its signal sets.
    WidgetKey.objects.filter(pk=key.pk).update(is_active=False)
    with queries_captured() as captured:
        assert access_widget_key_by_public_key(key.public_key) == key  # the copy, no query
    assert statements(captured) == []
    tenant_config_changed(tenant.pk)
    assert access_widget_key_by_public_key(key.public_key) is None


def test_a_key_disabled_through_the_model_is_refused_at_once(make_tenant: Any) -> None:
    _, key = make_tenant()
    assert access_widget_key_by_public_key(key.public_key) == key
    key.is_active = False
    key.save()
    assert access_widget_key_by_public_key(key.public_key) is None
    key.is_active = True
    key.save()
    assert access_widget_key_by_public_key(key.public_key) == key
    key.tenant.is_active = False
    key.tenant.save()
    assert access_widget_key_by_public_key(key.public_key) is None
