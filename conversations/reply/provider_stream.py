"""The provider request of a reply, on a thread of its own, started as early as possible.

The worker starts the request first and does its database writes while the model thinks,
instead of before. Events come back through a queue, and so do the call records, so only the
worker's own thread touches the database.

Before the request, the tenant's limits reserve it (`CallBudget.reserve_chat`, the choke point
of every provider call): a rate or concurrency limit waits up to LIMIT_WAIT_SECONDS on this
thread, a spent budget refuses at once; either refusal comes out of the iteration as
`UsageLimitReached`, with no request made. The reservation is settled with the call's record
on this thread (Redis only), as soon as the call ends.

A `gate` (the moderation of the visitor's message, `screening.InputScreen.gate`) is passed
first: it waits for the verdict and raises `InputBlocked` when no request may be made.
"""

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connections

from conversations.handoff import reply_cancel_requested
from supportbot.llm import CallRecord, ChatParams, Finished, ProviderConfig, TextDelta, stream_chat
from supportbot.tenants.limits import CallBudget, Reservation
from supportbot.trace import trace

# A cancelled reply's snapshot is sealed, and the delivery tells the flag at its next flush
# (`CancelFlag.set`); Redis is asked only for the rest (before the first text, a quiet model).
CANCEL_CHECK_INTERVAL = 0.3
# While no event comes (the model thinks, or the provider stalls), `idle` is called this often:
# the worker keeps its lease on the job however long the provider keeps it waiting.
IDLE_CALL_INTERVAL = 0.5

_END = object()


@dataclass
class CancelFlag:
    """`cancelled()` for the provider stream: true once the job was cancelled (an agent took the
    conversation over; asked of Redis at most every CANCEL_CHECK_INTERVAL seconds) or once the
    worker gave the request up (`cancelled` set)."""

    job_id: int
    checked_at: float = 0.0
    cancelled: bool = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now - self.checked_at >= CANCEL_CHECK_INTERVAL:
            self.checked_at = now
            self.cancelled = reply_cancel_requested(self.job_id)
        return self.cancelled

    def set(self) -> None:
        """The job was cancelled (its reply's snapshot is sealed): stop at the next check."""
        self.cancelled = True


@dataclass(frozen=True)
class SettledCall:
    """A call's record and what it cost."""

    record: CallRecord
    cost: Decimal


class ProviderStream:
    """One streamed chat request, running on its own thread from the moment it is created.

    Iterate it for the events (`TextDelta`s, then one `Finished`); an error of the request is
    raised by the iteration. `records` holds the request's `SettledCall` once it ended. `idle`,
    when set, is called every IDLE_CALL_INTERVAL seconds without an event (an exception it
    raises ends the iteration).
    """

    def __init__(
        self,
        *,
        config: ProviderConfig,
        messages: list[dict[str, Any]],
        params: ChatParams,
        cancel: CancelFlag,
        budget: CallBudget,
        wait: float = 0.0,
        gate: Callable[[], None] | None = None,
    ) -> None:
        self.records: list[SettledCall] = []
        self.idle: Callable[[], None] | None = None
        self._gate = gate
        self._cancel = cancel
        self._budget = budget
        self._wait = wait
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run,
            args=(config, list(messages), params),
            name=f"reply-{cancel.job_id}",
            daemon=True,
        )
        self._thread.start()

    def _run(
        self, config: ProviderConfig, messages: list[dict[str, Any]], params: ChatParams
    ) -> None:
        job_id = self._cancel.job_id
        first = True
        reservation: Reservation | None = None
        try:
            if self._gate is not None:
                self._gate()
            reservation = self._budget.reserve_chat(
                config, messages, params, reply=True, wait=self._wait, cancelled=self._cancel
            )
            trace("reply.llm_request", job_id)

            def settle(record: CallRecord, reserved: Reservation = reservation) -> None:
                self.records.append(SettledCall(record, reserved.settle(record)))

            events = stream_chat(config, messages, params, on_record=settle, cancelled=self._cancel)
            for event in events:
                if first and isinstance(event, TextDelta) and event.text:
                    first = False
                    trace("reply.first_token", job_id)
                self._events.put(event)
            self._events.put(_END)
        except BaseException as exc:  # handed to the consuming thread
            self._events.put(exc)
        finally:
            if reservation is not None:
                reservation.release()  # a call that never reported: nothing was used
            # The limits may read Postgres on this thread (prices, counters rebuilt after a
            # new day): give its pooled connection back, or it stays taken for good.
            connections.close_all()

    def __iter__(self) -> Iterator[TextDelta | Finished]:
        while True:
            try:
                item = self._events.get(timeout=IDLE_CALL_INTERVAL)
            except queue.Empty:
                if self.idle is not None:
                    self.idle()
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self, timeout: float = 1.0) -> None:
        """Cancel the request (if it still runs) and wait a little for its thread."""
        self._cancel.cancelled = True
        self._thread.join(timeout)
