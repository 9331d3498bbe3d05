"""The provider request of a reply, on a thread of its own, started as early as possible.

The worker starts the request first and does its database writes while the model thinks,
instead of before. Events come back through a queue, and so do the call records, so only the
worker's own thread touches the database.
"""

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from conversations.handoff import reply_cancel_requested
from supportbot.llm import CallRecord, ChatParams, Finished, ProviderConfig, TextDelta, stream_chat
from supportbot.trace import trace

CANCEL_CHECK_INTERVAL = 0.1

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


class ProviderStream:
    """One streamed chat request, running on its own thread from the moment it is created.

    Iterate it for the events (`TextDelta`s, then one `Finished`); an error of the request is
    raised by the iteration. `records` holds the request's `CallRecord` once it ended.
    """

    def __init__(
        self,
        *,
        config: ProviderConfig,
        messages: list[dict[str, Any]],
        params: ChatParams,
        cancel: CancelFlag,
    ) -> None:
        self.records: list[CallRecord] = []
        self._cancel = cancel
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
        trace("reply.llm_request", job_id)
        first = True
        try:
            events = stream_chat(
                config, messages, params, on_record=self.records.append, cancelled=self._cancel
            )
            for event in events:
                if first and isinstance(event, TextDelta) and event.text:
                    first = False
                    trace("reply.first_token", job_id)
                self._events.put(event)
            self._events.put(_END)
        except BaseException as exc:  # handed to the consuming thread
            self._events.put(exc)

    def __iter__(self) -> Iterator[TextDelta | Finished]:
        while True:
            item = self._events.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self, timeout: float = 1.0) -> None:
        """Cancel the request (if it still runs) and wait a little for its thread."""
        self._cancel.cancelled = True
        self._thread.join(timeout)
