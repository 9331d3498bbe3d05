"""stream_chat / complete_chat: one reply from the model, with retries, timeouts and a record.

Retries (backoff with full jitter, Retry-After honoured, bounded by max_retries and the deadline)
happen only while nothing has been yielded to the caller. Once text has been yielded, any failure
is a StreamInterrupted carrying that text: never a silent, truncated Finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai

from .client import get_client, timeouts
from .config import ChatParams, ProviderConfig
from .errors import (
    CANCELLED,
    CONNECTION,
    TIMEOUT,
    LLMError,
    StreamInterrupted,
    TransientLLMError,
    from_sdk_error,
)
from .events import (
    OUTCOME_ERROR,
    OUTCOME_INTERRUPTED,
    OUTCOME_OK,
    CallRecord,
    Finished,
    TextDelta,
    ToolCall,
    Usage,
)
from .retry import next_delay
from .tokens import estimate_usage

log = logging.getLogger("supportbot.llm")

Recorder = Callable[[CallRecord], None]
Cancelled = Callable[[], bool]

_SLEEP_SLICE = 0.1  # how often a backoff wait looks at cancelled()


class _Call:
    """Book-keeping shared by stream_chat and complete_chat: clock, attempts, the one record."""

    def __init__(self, config: ProviderConfig, on_record: Recorder | None) -> None:
        self.config = config
        self.on_record = on_record
        self.started = time.monotonic()
        self.deadline_at = self.started + config.deadline
        self.attempts = 0
        self.first_token_at: float | None = None
        self.recorded = False

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()

    def elapsed_ms(self, at: float | None = None) -> int:
        return int(((time.monotonic() if at is None else at) - self.started) * 1000)

    def first_token_ms(self) -> int | None:
        return None if self.first_token_at is None else self.elapsed_ms(self.first_token_at)

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

    def wait_before_retry(self, err: LLMError, cancelled: Cancelled | None) -> None:
        """Sleep before the next attempt, or raise `err` when there must be none."""
        delay = next_delay(
            self.attempts,
            self.config.max_retries,
            retryable=err.retryable,
            retry_after=err.retry_after,
            remaining=self.remaining(),
        )
        if delay is None:
            raise err
        log.info(
            "llm retry: provider=%s model=%s attempt=%d code=%s status=%s wait=%.2fs",
            self.config.provider,
            self.config.model,
            self.attempts,
            err.code,
            err.status_code,
            delay,
        )
        _sleep(delay, cancelled)

    def check_deadline(self) -> None:
        if time.monotonic() >= self.deadline_at:
            raise TransientLLMError(
                TIMEOUT, f"deadline of {self.config.deadline:g}s exceeded for this reply"
            )


def _sleep(seconds: float, cancelled: Cancelled | None) -> None:
    if cancelled is None:
        time.sleep(seconds)
        return
    end = time.monotonic() + seconds
    while True:
        _check_cancelled(cancelled)
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, _SLEEP_SLICE))


def _check_cancelled(cancelled: Cancelled | None) -> None:
    if cancelled is not None and cancelled():
        raise LLMError(CANCELLED, "the caller cancelled the reply")


def _request_kwargs(
    config: ProviderConfig, messages: list[dict[str, Any]], params: ChatParams | None
) -> dict[str, Any]:
    kwargs = (params or ChatParams()).request_kwargs()
    kwargs["model"] = config.model
    kwargs["messages"] = messages
    return kwargs


def _attempt_timeouts(config: ProviderConfig, call: _Call, read: float) -> openai.Timeout:
    remaining = max(call.remaining(), 0.001)
    return timeouts(
        config,
        read=min(read, remaining),
        connect=min(config.connect_timeout, remaining),
    )


def stream_chat(
    config: ProviderConfig,
    messages: list[dict[str, Any]],
    params: ChatParams | None = None,
    *,
    on_record: Recorder | None = None,
    cancelled: Cancelled | None = None,
) -> Iterator[TextDelta | Finished]:
    """Stream one reply: TextDelta events as tokens arrive, then exactly one Finished.

    The clock (deadline, latency) starts at the first next(). Raises LLMError subclasses:
    PermanentLLMError (never retried), TransientLLMError (retries exhausted, stall, deadline),
    StreamInterrupted (failure after text was yielded: `.partial_text`), LLMError("cancelled").
    on_record is called exactly once, before Finished is yielded or the error is raised (also
    when the caller closes the generator early: outcome "interrupted"/"error", code "cancelled").
    """
    call = _Call(config, on_record)
    kwargs = _request_kwargs(config, messages, params)
    kwargs["stream"] = True
    kwargs["stream_options"] = {"include_usage": True}
    api_key = config.api_key
    parts: list[str] = []  # text yielded so far
    try:
        client = get_client(config)
        while True:
            call.attempts += 1
            tools: dict[int, list[Any]] = {}  # index -> [id, name, [argument pieces]]
            finish_reason: str | None = None
            usage: Usage | None = None
            model: str | None = None
            try:
                _check_cancelled(cancelled)
                call.check_deadline()
                stream = client.chat.completions.create(
                    **kwargs, timeout=_attempt_timeouts(config, call, config.read_timeout)
                )
                with stream:
                    for chunk in stream:
                        if cancelled is not None and cancelled():
                            raise LLMError(CANCELLED, "the caller cancelled the reply")
                        if time.monotonic() >= call.deadline_at:
                            call.check_deadline()
                        if model is None and chunk.model:
                            model = chunk.model
                        if chunk.usage is not None:
                            u = chunk.usage
                            usage = Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens)
                        if not chunk.choices:
                            continue
                        choice = chunk.choices[0]
                        delta = choice.delta
                        if delta is not None:
                            text = delta.content
                            if text:
                                if call.first_token_at is None:
                                    call.first_token_at = time.monotonic()
                                parts.append(text)
                                yield TextDelta(text)
                            if delta.tool_calls:
                                if call.first_token_at is None:
                                    call.first_token_at = time.monotonic()
                                _add_tool_deltas(tools, delta.tool_calls)
                        if choice.finish_reason:
                            finish_reason = choice.finish_reason
                if finish_reason is None:
                    raise TransientLLMError(CONNECTION, "the stream ended without a finish reason")
            except Exception as exc:
                err = from_sdk_error(exc, api_key)
                if err is None:
                    raise
                if err.code == CANCELLED:
                    raise err from None
                if parts:
                    raise StreamInterrupted("".join(parts), err) from None
                call.first_token_at = None  # nothing was shown: the next attempt starts afresh
                call.wait_before_retry(err, cancelled)
                continue
            text = "".join(parts)
            usage = usage or estimate_usage(messages, text)
            result = Finished(
                finish_reason=finish_reason,
                text=text,
                tool_calls=_tool_calls(tools),
                usage=usage,
                model=model or config.model,
                latency_ms=call.elapsed_ms(),
                first_token_ms=call.first_token_ms(),
            )
            call.record(
                OUTCOME_OK,
                usage=usage,
                finish_reason=finish_reason,
                model=result.model,
                latency_ms=result.latency_ms,
            )
            yield result
            return
    except LLMError as err:
        call.record(OUTCOME_INTERRUPTED if parts else OUTCOME_ERROR, error_code=err.code)
        err.__context__ = None  # the SDK exception holds the request and its credentials
        raise err from None
    except GeneratorExit:
        call.record(OUTCOME_INTERRUPTED if parts else OUTCOME_ERROR, error_code=CANCELLED)
        raise
    except BaseException:
        call.record(OUTCOME_INTERRUPTED if parts else OUTCOME_ERROR, error_code="internal")
        raise


def _add_tool_deltas(tools: dict[int, list[Any]], deltas: list[Any]) -> None:
    for position, tc in enumerate(deltas):
        index = tc.index if tc.index is not None else position
        slot = tools.get(index)
        if slot is None:
            slot = tools[index] = ["", "", []]
        if tc.id and not slot[0]:
            slot[0] = tc.id
        fn = tc.function
        if fn is not None:
            if fn.name and not slot[1]:
                slot[1] = fn.name
            if fn.arguments:
                slot[2].append(fn.arguments)


def _tool_calls(tools: dict[int, list[Any]]) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(id=slot[0], name=slot[1], arguments="".join(slot[2]))
        for _, slot in sorted(tools.items())
    )


def complete_chat(
    config: ProviderConfig,
    messages: list[dict[str, Any]],
    params: ChatParams | None = None,
    *,
    on_record: Recorder | None = None,
) -> Finished:
    """One non-streaming reply, with the same retries, errors and record as stream_chat.

    The whole reply must arrive within the time left before the deadline (read_timeout, which is
    about gaps between stream chunks, does not apply). first_token_ms is None.
    """
    call = _Call(config, on_record)
    kwargs = _request_kwargs(config, messages, params)
    try:
        client = get_client(config)
        while True:
            call.attempts += 1
            try:
                call.check_deadline()
                response = client.chat.completions.create(
                    **kwargs, timeout=_attempt_timeouts(config, call, call.remaining())
                )
                if not response.choices:
                    raise TransientLLMError(CONNECTION, "the provider returned no choices")
            except Exception as exc:
                err = from_sdk_error(exc, config.api_key)
                if err is None:
                    raise
                call.wait_before_retry(err, None)
                continue
            break
        choice = response.choices[0]
        message = choice.message
        u = response.usage
        usage = (
            Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens)
            if u
            else estimate_usage(messages, message.content or "")
        )
        tool_calls = tuple(
            ToolCall(id=tc.id, name=tc.function.name, arguments=tc.function.arguments or "")
            for tc in (message.tool_calls or ())
            if getattr(tc, "function", None) is not None
        )
        result = Finished(
            finish_reason=choice.finish_reason or "stop",
            text=message.content or "",
            tool_calls=tool_calls,
            usage=usage,
            model=response.model or config.model,
            latency_ms=call.elapsed_ms(),
            first_token_ms=None,
        )
        call.record(
            OUTCOME_OK,
            usage=usage,
            finish_reason=result.finish_reason,
            model=result.model,
            latency_ms=result.latency_ms,
        )
        return result
    except LLMError as err:
        call.record(OUTCOME_ERROR, error_code=err.code)
        err.__context__ = None  # the SDK exception holds the request and its credentials
        raise err from None
    except BaseException:
        call.record(OUTCOME_ERROR, error_code="internal")
        raise
