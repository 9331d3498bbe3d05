"""The channel outbox while the provider's API is down for a minute (real processes: Daphne, a
Celery worker and a Celery beat; Twilio's Messages API at the HTTP boundary): its server stopped
(connection refused) for the first half of the outage, then answering 503 for the second.

Customers keep writing by SMS during the outage: their webhooks are accepted and answered, and
every reply waits in the outbox, tried again with a backoff capped by OUTBOX_RETRY_MAX_SECONDS.
Once the API is back, every reply is delivered exactly once, in the order it was written, per
conversation, and no delivery is left failed.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from conversations.models import Conversation, InboundEvent, Message, OutboundDelivery
from tests.support.channel_stack import (
    ChannelStack,
    channel_processes_start,
    channel_stack_env,
    database_flush,
)
from tests.support.fake_twilio import incoming_message, twilio_ok
from tests.support.provider_server import ProviderServer, Recorded
from tests.support.stack import free_port, wait_until

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = 60.0
REFUSED_SECONDS = 30.0  # the first part of the outage: nothing listens on the API's port
RETRY_MAX_SECONDS = 4  # the stack's OUTBOX_RETRY_MAX_SECONDS: the API's return is seen quickly
ACCOUNT_SID = "AC" + "f4" * 16
AUTH_TOKEN = "twilio-auth-token-of-the-outage-shop"
OUR_NUMBER = "+15017122662"
CUSTOMERS = ("+15558670001", "+15558670002")
QUESTIONS = 3  # per customer, written while the API is down


class TwilioOutage:
    """Twilio's Messages API, down while `down` is set: its server stopped (`stop`: connection
    refused), or answering 503 as Twilio does when it is unavailable. `delivered` lists the
    messages it accepted, (to, body), in the order it got them."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.refused = 0
        self.delivered: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.server = ProviderServer(default=self).__enter__()

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        """Nothing listens on the API's port until `start`."""
        self.server.__exit__(None, None, None)

    def start(self) -> None:
        """The API's server back on its port."""
        port = int(self.url.rsplit(":", 1)[1])
        self.server = ProviderServer(default=self, port=port).__enter__()

    def __call__(self, request: Recorded) -> tuple[int, Any, dict[str, str]]:
        if self.down.is_set():
            with self._lock:
                self.refused += 1
            return 503, {"code": 20503, "message": "Service Unavailable", "status": 503}, {}
        status, body, headers = twilio_ok(request)
        if status == 201:
            with self._lock:
                self.delivered.append((request.form.get("To", ""), request.form.get("Body", "")))
        return status, body, headers

    def bodies_to(self, phone: str) -> list[str]:
        with self._lock:
            return [body for to, body in self.delivered if to == phone]


@pytest.fixture(scope="module")
def outage_stack(
    django_db_setup: None, django_db_blocker: Any, llm_server: Any
) -> Iterator[tuple[ChannelStack, TwilioOutage]]:
    twilio_api = TwilioOutage()
    with ExitStack() as exits:
        exits.callback(lambda: twilio_api.server.__exit__(None, None, None))
        beat_dir = exits.enter_context(tempfile.TemporaryDirectory(prefix="supportbot-beat-"))
        port = free_port()
        with django_db_blocker.unblock():
            env = channel_stack_env(port, llm_server.base_url, {"TWILIO_API_BASE": twilio_api.url})
        env.update(
            {
                "OUTBOX_RETRY_MAX_SECONDS": str(RETRY_MAX_SECONDS),
                "OUTBOX_MAX_ATTEMPTS": "40",  # a minute of tries every 4 s, and a margin
                "CELERY_KEY_PREFIX": f"outbox-faults-{port}:",
            }
        )
        stack = ChannelStack(
            base_url=f"http://127.0.0.1:{port}",
            env=env,
            providers=twilio_api,
            blocker=django_db_blocker,
        )
        try:
            channel_processes_start(stack, port, beat_dir)
            tenant = stack.tenant_create("Outage shop")
            stack.channels["sms"] = stack.channel_add(
                tenant,
                "sms",
                account_sid=ACCOUNT_SID,
                from_number=OUR_NUMBER,
                auth_token=AUTH_TOKEN,
            )
            yield stack, twilio_api
        finally:
            for process in reversed(stack.processes):
                process.stop()
            database_flush(django_db_blocker)


def _sms(stack: ChannelStack, phone: str, text: str) -> int:
    """A customer's SMS, posted to the channel's webhook as Twilio would; the HTTP status."""
    url = stack.webhook("sms")
    fields = incoming_message(account_sid=ACCOUNT_SID, to=OUR_NUMBER, phone=phone, body=text)
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, fields)
    response = stack.post(
        url,
        urlencode(fields).encode(),
        "application/x-www-form-urlencoded",
        **{"X-Twilio-Signature": signature},
    )
    return response.status_code


def _answer(phone: str, n: int) -> str:
    return f"Answer {n} for {phone[-4:]}."


def _deliveries(stack: ChannelStack, phone: str) -> list[tuple[str, str, int]]:
    """The conversation's assistant outbox rows, oldest first: (text, state, attempts)."""
    with stack.orm():
        conversation = next(
            (
                c
                for c in Conversation.objects.filter(channel_account_id=stack.channels["sms"]["id"])
                if c.channel_thread == phone
            ),
            None,
        )
        if conversation is None:
            return []
        rows = OutboundDelivery.objects.filter(
            conversation=conversation, message__role=Message.Role.ASSISTANT
        ).order_by("pk")
        return [(row.message.text, row.state, row.attempts) for row in rows]


def _tried(stack: ChannelStack, phone: str, count: int) -> bool:
    """`count` replies of the customer are in the outbox, the first one tried at least once."""
    rows = _deliveries(stack, phone)
    return len(rows) >= count and rows[0][2] >= 1


# The stack's start (three processes, `channel_add`) and a whole minute of outage: more than
# the suite's default timeout on a loaded machine.
@pytest.mark.timeout(900)
def test_replies_queued_while_the_provider_is_down_are_delivered_once_in_order(
    outage_stack: tuple[ChannelStack, TwilioOutage],
) -> None:
    stack, twilio = outage_stack
    twilio.down.set()
    twilio.stop()
    outage_started = time.monotonic()
    for n in range(1, QUESTIONS + 1):
        for phone in CUSTOMERS:
            text = f"Question {n}, please. [[reply: {_answer(phone, n)}]]"
            assert _sms(stack, phone, text) == 200  # the inbound side is not affected
        for phone in CUSTOMERS:
            # Each reply is stored (and queued) before the customer writes again.
            stack.wait(lambda p=phone, k=n: _tried(stack, p, k), f"reply {n} to {phone} queued")
    with stack.orm():
        assert InboundEvent.objects.filter(
            channel_account_id=stack.channels["sms"]["id"]
        ).count() == QUESTIONS * len(CUSTOMERS)
    # Down for a minute, refusing connections, then answering 503: the deliveries keep being
    # tried and refused, none sent, none failed.
    wait_until(
        lambda: time.monotonic() - outage_started >= REFUSED_SECONDS,
        timeout=REFUSED_SECONDS + 5,
        message="the end of the outage's first part",
        interval=0.5,
    )
    with stack.orm():
        refused = OutboundDelivery.objects.filter(last_error__icontains="ConnectError")
        assert refused.exists()  # tried while nothing listened
    twilio.start()
    wait_until(
        lambda: time.monotonic() - outage_started >= OUTAGE_SECONDS,
        timeout=OUTAGE_SECONDS + 5,
        message="the end of the outage",
        interval=0.5,
    )
    stack.alive_check()
    assert twilio.delivered == []
    assert twilio.refused >= len(CUSTOMERS)
    for phone in CUSTOMERS:
        rows = _deliveries(stack, phone)
        assert [state for _text, state, _attempts in rows] == ["pending"] * QUESTIONS
        assert rows[0][2] >= 5  # tried all along, the waits capped

    twilio.down.clear()
    for phone in CUSTOMERS:
        stack.wait(
            lambda p=phone: len(twilio.bodies_to(p)) >= QUESTIONS,
            f"every reply to {phone} delivered",
            timeout=30 + 2 * RETRY_MAX_SECONDS,
        )
    for phone in CUSTOMERS:
        stack.wait(
            lambda p=phone: all(state == "sent" for _t, state, _a in _deliveries(stack, p)),
            f"every delivery to {phone} recorded as sent",
        )
    for phone in CUSTOMERS:
        bodies = twilio.bodies_to(phone)
        expected = [_answer(phone, n) for n in range(1, QUESTIONS + 1)]
        # Exactly once each, in the order written (the first carries the privacy notice).
        assert len(bodies) == QUESTIONS, bodies
        assert all(answer in body for answer, body in zip(expected, bodies, strict=True)), bodies
        assert [text for text, _s, _a in _deliveries(stack, phone)] == expected
    with stack.orm():
        assert not OutboundDelivery.objects.filter(state=OutboundDelivery.State.FAILED).exists()
