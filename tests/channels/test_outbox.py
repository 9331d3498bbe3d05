"""The outbox: a message for a channel conversation is delivered through its adapter by the real
Celery worker, over real HTTP to a loopback provider that answers 429, 500 and 400 when told.

The adapter here is a test one (registered per test, the registry restored after): it posts the
outgoing text to `<provider>/send/<kind>` with `provider_call`, like every real adapter.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from conversations.channels import base
from conversations.channels.base import (
    Outgoing,
    Sent,
    WebhookAnswer,
    WebhookRequest,
    credential,
)
from conversations.channels.http import provider_call
from conversations.channels.outbox_send import (
    CHANNEL_DISABLED,
    backoff_seconds,
    delivery_retry,
    outbound_deliver,
    outbox_sweep,
)
from conversations.messages import message_append
from conversations.models import (
    ChannelAccount,
    ChannelMessageRef,
    Contact,
    Conversation,
    Message,
    OutboundDelivery,
)
from conversations.services import message_post_from_visitor
from supportbot.tenants.models import Tenant
from tests.support.provider_server import ProviderServer, Recorded
from tests.support.stack import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]

OUTBOX_KINDS = ("email", "telegram", "whatsapp", "slack", "sms")


class HttpTestAdapter:
    """A channel adapter whose provider is the loopback server: `send` posts the text."""

    max_chars = 4096
    streams_by_edit = False

    def __init__(self, kind: str, base_url: str) -> None:
        self.kind = kind
        self.base_url = base_url
        self.sent_at: list[float] = []  # when each send began (time.monotonic)

    def send(self, outgoing: Outgoing) -> Sent:
        self.sent_at.append(time.monotonic())
        response = provider_call(
            "POST",
            f"{self.base_url}/send/{self.kind}",
            json={
                "to": outgoing.conversation.channel_thread,
                "text": outgoing.text,
                "message": str(outgoing.message.pk),
                "stream_ref": outgoing.stream_ref,
            },
            headers={"Authorization": f"Bearer {credential(outgoing.account, 'token')}"},
        )
        return Sent(provider_message_ids=[response.json()["id"]])

    def handshake(self, account: ChannelAccount, request: WebhookRequest) -> None:
        return None

    def verify(self, account: ChannelAccount, request: WebhookRequest) -> None:
        return None

    def parse(self, account: ChannelAccount, request: WebhookRequest) -> list[Any]:
        return []

    def acknowledge(self, account: ChannelAccount) -> WebhookAnswer:
        return WebhookAnswer()

    def typing(self, account: ChannelAccount, conversation: Conversation) -> None:
        return None

    def stream_open(self, account: ChannelAccount, conversation: Conversation, text: str) -> str:
        raise NotImplementedError

    def stream_edit(
        self, account: ChannelAccount, conversation: Conversation, ref: str, text: str
    ) -> None:
        raise NotImplementedError


@pytest.fixture
def provider() -> Iterator[ProviderServer]:
    """The channels' provider: every send accepted with a fresh message id."""
    ids = itertools.count(1)

    def accepted(_request: Recorded) -> tuple[int, Any, dict[str, str]]:
        return 200, {"id": f"pm-{next(ids)}"}, {}

    with ProviderServer(default=accepted) as server:
        yield server


@pytest.fixture
def adapters(provider: ProviderServer) -> Iterator[dict[str, HttpTestAdapter]]:
    """A test adapter for every outbox kind, registered for this test only."""
    saved = dict(base._ADAPTERS)
    made = {kind: HttpTestAdapter(kind, provider.url) for kind in OUTBOX_KINDS}
    base._ADAPTERS.update(made)
    try:
        yield made
    finally:
        base._ADAPTERS.clear()
        base._ADAPTERS.update(saved)


def channel_conversation(
    tenant: Tenant,
    kind: str,
    *,
    thread: str = "chat-1",
    language: str = "en",
    active: bool = True,
) -> Conversation:
    account = ChannelAccount.objects.create(
        tenant=tenant, kind=kind, name=f"{kind} test", is_active=active
    )
    account.credentials = {"token": "tok-secret"}
    account.save(update_fields=["credentials"])
    contact = Contact.objects.create(tenant=tenant, channel=kind, channel_user_id=thread)
    return Conversation.objects.create(
        tenant=tenant,
        contact=contact,
        channel=kind,
        channel_account=account,
        channel_thread=thread,
        language=language,
    )


def post(conversation: Conversation, text: str, *, role: str = Message.Role.ASSISTANT) -> Message:
    """A message the visitor should see, appended as the reply path does (outbox included)."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        return message_append(conversation=locked, role=role, text=text)


def delivery_of(message: Message) -> OutboundDelivery:
    return OutboundDelivery.objects.get(message=message)


def wait_for_state(message: Message, state: str, timeout: float = 20) -> OutboundDelivery:
    wait_until(
        lambda: OutboundDelivery.objects.filter(message=message, state=state).exists(),
        timeout=timeout,
        message=f"the delivery of {message.pk} to be {state}",
    )
    return delivery_of(message)


@pytest.fixture
def tenant(make_tenant: Any) -> Tenant:
    """A tenant whose channels add no privacy notice (consent is asked on the inbound side)."""
    made, _key = make_tenant(lawful_basis=Tenant.LawfulBasis.CONSENT)
    return made


# --- sent ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("celery_idle")
def test_a_message_is_delivered_with_the_provider_id_kept(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    conversation = channel_conversation(tenant, "sms", thread="+15550001")
    message = post(conversation, "Your order ships tomorrow.")

    delivery = wait_for_state(message, OutboundDelivery.State.SENT)

    (request,) = provider.received("/send/sms")
    assert request.json["to"] == "+15550001"
    assert request.json["text"] == "Your order ships tomorrow."
    assert request.headers["authorization"] == "Bearer tok-secret"
    assert delivery.attempts == 1
    assert delivery.next_attempt_at is None
    assert delivery.provider_message_ids == ["pm-1"]
    ref = ChannelMessageRef.objects.get(message=message)
    assert (ref.direction, ref.provider_ref) == (ChannelMessageRef.Direction.OUTBOUND, "pm-1")


@pytest.mark.usefixtures("celery_idle")
def test_an_assistant_reply_reaches_the_channel(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer, llm: Any
) -> None:
    """The whole reply path: a visitor's message on SMS, the model's reply, the outbox."""
    conversation = channel_conversation(tenant, "sms", thread="+15550002")
    message_post_from_visitor(
        conversation=conversation, client_id="sms-1", text="Hi [[reply: Hello from the shop.]]"
    )

    requests = provider.wait_for(lambda reqs: len(reqs) >= 1, timeout=30)

    assert requests[0].json["text"] == "Hello from the shop."
    reply = Message.objects.get(conversation=conversation, role=Message.Role.ASSISTANT)
    assert requests[0].json["message"] == str(reply.pk)
    wait_for_state(reply, OutboundDelivery.State.SENT)


def test_widget_conversations_have_no_outbox(tenant: Tenant) -> None:
    contact = Contact.objects.create(tenant=tenant)
    conversation = Conversation.objects.create(tenant=tenant, contact=contact)
    post(conversation, "Hello on the widget.")
    assert not OutboundDelivery.objects.exists()


# --- retried ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("celery_idle")
def test_429_waits_for_retry_after_and_500_backs_off_then_sent(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    # The backoff after a first attempt would be 1 s: Retry-After says 2.
    provider.fail_next("/send/sms", status=429, headers={"Retry-After": "2"})
    provider.fail_next("/send/sms", status=500, body={"message": "upstream down"})
    conversation = channel_conversation(tenant, "sms")
    message = post(conversation, "Retried until it arrives.")

    delivery = wait_for_state(message, OutboundDelivery.State.SENT, timeout=30)

    assert len(provider.received("/send/sms")) == 3
    first, second, third = adapters["sms"].sent_at
    assert second - first >= 1.95, "Retry-After: 2 was not honoured"
    assert third - second >= 1.95, "the backoff after a second attempt is 2 s"
    assert delivery.attempts == 3
    assert delivery.last_status == 500
    assert delivery.last_error == ""
    assert delivery.provider_message_ids == ["pm-1"]


@pytest.mark.usefixtures("celery_idle")
def test_a_permanent_400_fails_the_row_and_delivery_retry_sends_it(
    tenant: Tenant,
    make_tenant: Any,
    adapters: dict[str, HttpTestAdapter],
    provider: ProviderServer,
) -> None:
    provider.fail_next(
        "/send/telegram",
        status=400,
        body={"ok": False, "description": "Bad Request: chat not found"},
    )
    conversation = channel_conversation(tenant, "telegram")
    message = post(conversation, "This one is refused first.")

    failed = wait_for_state(message, OutboundDelivery.State.FAILED)

    assert failed.attempts == 1
    assert failed.last_status == 400
    assert "chat not found" in failed.last_error
    assert failed.next_attempt_at is None
    assert len(provider.received("/send/telegram")) == 1

    other, _key = make_tenant()
    assert delivery_retry(delivery_id=failed.pk, tenant_id=other.pk) is False
    assert delivery_of(message).state == OutboundDelivery.State.FAILED

    assert delivery_retry(delivery_id=failed.pk, tenant_id=tenant.pk) is True
    sent = wait_for_state(message, OutboundDelivery.State.SENT)
    assert len(provider.received("/send/telegram")) == 2
    assert sent.provider_message_ids == ["pm-1"]
    assert delivery_retry(delivery_id=failed.pk, tenant_id=tenant.pk) is False


@pytest.mark.usefixtures("celery_idle")
def test_the_last_attempt_fails_the_row(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer, settings: Any
) -> None:
    settings.OUTBOX_MAX_ATTEMPTS = 2
    provider.fail_next("/send/whatsapp", status=503, times=5)
    conversation = channel_conversation(tenant, "whatsapp")
    message = post(conversation, "The provider is down.")

    failed = wait_for_state(message, OutboundDelivery.State.FAILED)

    assert failed.attempts == 2
    assert failed.last_status == 503
    assert "503" in failed.last_error
    assert len(provider.received("/send/whatsapp")) == 2


@pytest.mark.usefixtures("celery_idle")
def test_a_disabled_channel_fails_its_deliveries_without_a_call(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    conversation = channel_conversation(tenant, "sms", active=False)
    message = post(conversation, "Nobody will get this.")

    failed = wait_for_state(message, OutboundDelivery.State.FAILED)

    assert failed.last_error == CHANNEL_DISABLED
    assert provider.received() == []


class FlakyAdapter(HttpTestAdapter):
    """An adapter with a bug that shows once: its first send raises something unexpected."""

    def send(self, outgoing: Outgoing) -> Sent:
        if not self.sent_at:
            self.sent_at.append(time.monotonic())
            raise RuntimeError("an adapter's bug")
        return super().send(outgoing)


@pytest.mark.usefixtures("celery_idle")
def test_an_adapter_error_counts_as_an_attempt_and_is_retried(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    base._ADAPTERS["sms"] = FlakyAdapter("sms", provider.url)
    conversation = channel_conversation(tenant, "sms")
    message = post(conversation, "Sent on the second try.")

    delivery = wait_for_state(message, OutboundDelivery.State.SENT)

    assert delivery.attempts == 2
    assert sent_texts(provider, "sms") == ["Sent on the second try."]


def test_a_kind_without_an_adapter_fails_for_good(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    del base._ADAPTERS["slack"]
    conversation = channel_conversation(tenant, "slack")
    message = _queued_without_a_job(conversation, "No adapter.")

    assert outbound_deliver(delivery_id=delivery_of(message).pk).state == "failed"
    failed = delivery_of(message)
    assert failed.last_error == "no adapter for slack"
    assert provider.received() == []


def test_a_row_removed_with_its_channel_is_gone(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    conversation = channel_conversation(tenant, "sms")
    message = _queued_without_a_job(conversation, "Channel deleted.")
    delivery_id = delivery_of(message).pk
    ChannelAccount.objects.filter(pk=conversation.channel_account_id).delete()

    assert outbound_deliver(delivery_id=delivery_id).state == "gone"
    assert provider.received() == []


# --- in order -----------------------------------------------------------------------------------


def post_all(conversation: Conversation, *texts: str) -> list[Message]:
    """Messages appended in one transaction (a reply and its notices, a takeover's notice and
    the agent's first words)."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        return [
            message_append(conversation=locked, role=Message.Role.SYSTEM, text=text)
            for text in texts
        ]


def sent_texts(provider: ProviderServer, kind: str) -> list[str]:
    return [request.json["text"] for request in provider.received(f"/send/{kind}")]


@pytest.mark.usefixtures("celery_idle")
def test_a_conversations_messages_arrive_in_order(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    # The first is slow to be accepted: the others, queued at once, wait for it.
    provider.fail_next("/send/sms", status=200, body={"id": "pm-slow"}, stall=0.7)
    conversation = channel_conversation(tenant, "sms")
    messages = post_all(conversation, "One.", "Two.", "Three.")

    wait_for_state(messages[-1], OutboundDelivery.State.SENT)

    assert sent_texts(provider, "sms") == ["One.", "Two.", "Three."]
    assert all(delivery_of(m).attempts == 1 for m in messages)


@pytest.mark.usefixtures("celery_idle")
def test_a_message_being_retried_holds_back_the_next(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    provider.fail_next("/send/sms", status=429, headers={"Retry-After": "1"})
    conversation = channel_conversation(tenant, "sms")
    messages = post_all(conversation, "First.", "Second.")

    wait_for_state(messages[-1], OutboundDelivery.State.SENT)

    assert sent_texts(provider, "sms") == ["First.", "First.", "Second."]


@pytest.mark.usefixtures("celery_idle")
def test_a_message_failed_for_good_lets_the_next_go(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    provider.fail_next("/send/sms", status=400, body={"message": "refused"})
    conversation = channel_conversation(tenant, "sms")
    first, second = post_all(conversation, "Refused.", "Accepted.")

    wait_for_state(second, OutboundDelivery.State.SENT)

    assert delivery_of(first).state == OutboundDelivery.State.FAILED
    assert sent_texts(provider, "sms") == ["Refused.", "Accepted."]


def test_other_conversations_are_not_held_back(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    stuck = channel_conversation(tenant, "sms", thread="+1555000")
    _queued_without_a_job(
        stuck, "Waiting for its retry.", next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    other = Conversation.objects.create(
        tenant=tenant,
        contact=stuck.contact,
        channel="sms",
        channel_account=stuck.channel_account,
        channel_thread="+1555999",
    )
    message = _queued_without_a_job(other, "Not held back.")

    assert (
        outbound_deliver(delivery_id=delivery_of(message).pk).state == OutboundDelivery.State.SENT
    )
    assert sent_texts(provider, "sms") == ["Not held back."]


# --- at most once -------------------------------------------------------------------------------


def _queued_without_a_job(conversation: Conversation, text: str, **fields: Any) -> Message:
    """A delivery row whose send job was never queued (or was lost with Redis)."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        message = message_append(
            conversation=locked, role=Message.Role.ASSISTANT, text=text, broadcast=False
        )
        OutboundDelivery.objects.create(
            tenant_id=conversation.tenant_id,
            channel_account_id=conversation.channel_account_id,
            conversation=conversation,
            message=message,
            **fields,
        )
    return message


def test_two_sends_racing_for_a_row_call_the_provider_once(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    conversation = channel_conversation(tenant, "sms")
    message = _queued_without_a_job(conversation, "Sent exactly once.")
    delivery_id = delivery_of(message).pk
    # The provider takes a second to answer: the second send starts while the first waits.
    provider.fail_next("/send/sms", status=200, body={"id": "pm-slow"}, stall=1.0)
    start = threading.Barrier(2)
    states: list[str] = []

    def send() -> None:
        try:
            start.wait(timeout=5)
            states.append(outbound_deliver(delivery_id=delivery_id).state)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(states) == ["pending", "sent"]
    assert len(provider.received("/send/sms")) == 1
    delivery = delivery_of(message)
    assert (delivery.state, delivery.attempts) == (OutboundDelivery.State.SENT, 1)
    assert delivery.provider_message_ids == ["pm-slow"]
    # A late duplicate job finds it sent.
    assert outbound_deliver(delivery_id=delivery_id).state == OutboundDelivery.State.SENT
    assert len(provider.received("/send/sms")) == 1


def test_no_transaction_is_held_while_the_provider_is_called(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    """While the provider stalls, the row can be read and locked by others (the admin, the
    sweep): the sender holds no lock on it."""
    conversation = channel_conversation(tenant, "sms")
    message = _queued_without_a_job(conversation, "Slow provider.")
    delivery_id = delivery_of(message).pk
    provider.fail_next("/send/sms", status=200, body={"id": "pm-slow"}, stall=1.5)

    def send() -> None:
        try:
            outbound_deliver(delivery_id=delivery_id)
        finally:
            connection.close()

    thread = threading.Thread(target=send)
    thread.start()
    provider.wait_for(lambda reqs: len(reqs) == 1, timeout=10)
    with transaction.atomic():
        locked = (
            OutboundDelivery.objects.select_for_update(nowait=True).filter(pk=delivery_id).get()
        )
        assert locked.state == OutboundDelivery.State.PENDING
        assert locked.attempts == 1
        assert locked.next_attempt_at is not None
        assert locked.next_attempt_at > timezone.now()
    thread.join(timeout=30)
    assert delivery_of(message).state == OutboundDelivery.State.SENT


# --- the sweep ----------------------------------------------------------------------------------


def test_the_sweep_is_on_the_beat_schedule() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["outbox-sweep"]
    assert entry["task"] == "conversations.outbox_sweep"
    assert entry["schedule"] == 30.0
    assert "conversations.outbox_sweep" in current_app.tasks


@pytest.mark.usefixtures("celery_idle")
def test_the_sweep_queues_again_deliveries_whose_job_was_lost(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    conversation = channel_conversation(tenant, "sms")
    now = timezone.now()
    lost = _queued_without_a_job(
        conversation, "Lost with Redis.", next_attempt_at=now - timedelta(minutes=5), attempts=1
    )
    leased = _queued_without_a_job(
        conversation, "Being sent elsewhere.", next_attempt_at=now + timedelta(seconds=60)
    )
    fresh = _queued_without_a_job(conversation, "Its job is on its way.")

    current_app.send_task("conversations.outbox_sweep")

    sent = wait_for_state(lost, OutboundDelivery.State.SENT)
    assert sent.attempts == 2
    (request,) = provider.received("/send/sms")
    assert request.json["text"] == "Lost with Redis."
    assert delivery_of(leased).state == OutboundDelivery.State.PENDING
    assert delivery_of(fresh).state == OutboundDelivery.State.PENDING
    # Nothing overdue is left: a second sweep queues nothing.
    assert outbox_sweep() == 0


@pytest.mark.usefixtures("celery_idle")
def test_the_sweep_picks_up_a_row_whose_first_job_never_ran(
    tenant: Tenant, adapters: dict[str, HttpTestAdapter], provider: ProviderServer
) -> None:
    conversation = channel_conversation(tenant, "sms")
    message = _queued_without_a_job(conversation, "Created, never queued.")
    OutboundDelivery.objects.filter(message=message).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    assert outbox_sweep(grace_seconds=600) == 0
    assert outbox_sweep() == 1
    wait_for_state(message, OutboundDelivery.State.SENT)
    assert len(provider.received("/send/sms")) == 1


def test_the_backoff_doubles_up_to_its_configured_cap(settings: Any) -> None:
    settings.OUTBOX_RETRY_MAX_SECONDS = 5
    assert [backoff_seconds(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_seconds(10_000) == 5.0
    settings.OUTBOX_RETRY_MAX_SECONDS = 60
    assert [backoff_seconds(n) for n in (6, 7, 8, 40)] == [32.0, 60.0, 60.0, 60.0]
