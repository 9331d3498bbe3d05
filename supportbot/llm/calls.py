"""One call to the provider (stream_chat, complete_chat, embed_texts): clock, retries, record.

The retry loop of the LLM layer lives here, in `Call.attempt`, and nowhere else:

- an attempt that fails with an SDK or transport error is mapped to TransientLLMError /
  PermanentLLMError (errors.from_sdk_error); a permanent one (400, 401, 403, 404, 422, bad
  config) is raised at once;
- a transient one (429, 5xx, connection, timeout) is retried after a wait: the provider's
  Retry-After when it gave one, else exponential backoff with full jitter (retry.next_delay);
- never more than `max_retries` retries, never past the config's deadline (an attempt starts
  only with time left, and its timeouts are cut to the time left);
- the caller may cancel: checked before each attempt and during the waits.

A stream is retried only until its first token has been shown: stream_chat makes "open the
stream and read it up to its first text" the attempt, and handles failures after that itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import openai

from .client import timeouts
from .config import ProviderConfig
from .errors import CANCELLED, TIMEOUT, LLMError, TransientLLMError, from_sdk_error
from .events import OUTCOME_OK, CallRecord, Usage
from .retry import next_delay

log = logging.getLogger("supportbot.llm")

Recorder = Callable[[CallRecord], None]
Cancelled = Callable[[], bool]
T = TypeVar("T")

SLEEP_SLICE = 0.1  # how often a backoff wait looks at cancelled()


class Call:
    """Book-keeping of one call: its clock and deadline, its attempts, and its one record."""

    def __init__(
        self,
        config: ProviderConfig,
        on_record: Recorder | None,
        *,
        cancelled: Cancelled | None = None,
    ) -> None:
        self.config = config
        self.on_record = on_record
        self.cancelled = cancelled
        self.started = time.monotonic()
        self.deadline_at = self.started + config.deadline
        self.attempts = 0  # every request made, over all the retried parts of the call
        self.first_token_at: float | None = None
        self.recorded = False

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()

    def elapsed_ms(self, at: float | None = None) -> int:
        return int(((time.monotonic() if at is None else at) - self.started) * 1000)

    def first_token_ms(self) -> int | None:
        return None if self.first_token_at is None else self.elapsed_ms(self.first_token_at)

    def timeouts(self, read: float | None = None) -> openai.Timeout:
        """The SDK timeouts of one attempt: `read` (default: all the time left) and connect,
        both cut to the time left before the deadline."""
        remaining = max(self.remaining(), 0.001)
        return timeouts(
            self.config,
            read=remaining if read is None else min(read, remaining),
            connect=min(self.config.connect_timeout, remaining),
        )

    def check_deadline(self) -> None:
        if time.monotonic() >= self.deadline_at:
            raise TransientLLMError(
                TIMEOUT, f"deadline of {self.config.deadline:g}s exceeded for this reply"
            )

    def check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise LLMError(CANCELLED, "the caller cancelled the reply")

    def attempt(self, request: Callable[[], T], *, model: str | None = None) -> T:
        """`request()`'s result, retried as the module docstring says; raises an LLMError when
        it cannot succeed. `model` names what is called in the logs (default: config.model).

        Retries are counted per `attempt` (embed_texts allows max_retries for each batch);
        `self.attempts` counts every request of the call, for the record.
        """
        retry = 0
        while True:
            self.attempts += 1
            try:
                self.check_cancelled()
                self.check_deadline()
                return request()
            except Exception as exc:
                err = from_sdk_error(exc, self.config.api_key)
                if err is None:
                    raise
                retry += 1
                self._wait_before_retry(retry, err, model or self.config.model)

    def _wait_before_retry(self, retry: int, err: LLMError, model: str) -> None:
        """Sleep before retry number `retry`, or raise `err` when there must be none."""
        delay = next_delay(
            retry,
            self.config.max_retries,
            retryable=err.retryable,
            retry_after=err.retry_after,
            remaining=self.remaining(),
        )
        if delay is None:
            raise err from None
        log.info(
            "llm retry: provider=%s model=%s attempt=%d code=%s status=%s wait=%.2fs",
            self.config.provider,
            model,
            retry,
            err.code,
            err.status_code,
            delay,
        )
        self._sleep(delay)

    def _sleep(self, seconds: float) -> None:
        if self.cancelled is None:
            time.sleep(seconds)
            return
        end = time.monotonic() + seconds
        while True:
            self.check_cancelled()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, SLEEP_SLICE))

    def record(
        self,
        outcome: str,
        *,
        error_code: str | None = None,
        usage: Usage | None = None,
        finish_reason: str | None = None,
        model: str | None = None,
        latency_ms: int | None = None,
    ) -> None:
        """Report the call's one CallRecord to `on_record` (only the first time it is called)."""
        if self.recorded:
            return
        self.recorded = True
        record = CallRecord(
            provider=self.config.provider,
            model=model or self.config.model,
            outcome=outcome,
            error_code=error_code,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_ms=self.elapsed_ms() if latency_ms is None else latency_ms,
            first_token_ms=self.first_token_ms(),
            attempts=self.attempts,
            finish_reason=finish_reason,
        )
        if outcome != OUTCOME_OK:
            log.warning(
                "llm call failed: provider=%s model=%s outcome=%s code=%s attempts=%d",
                record.provider,
                record.model,
                outcome,
                error_code,
                record.attempts,
            )
        if self.on_record is not None:
            try:
                self.on_record(record)
            except Exception:
                log.exception("on_record failed")
