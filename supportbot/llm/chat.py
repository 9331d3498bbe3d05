"""stream_chat / complete_chat: one reply from the model, with retries, timeouts and a record.

Both retry through `Call.attempt` (calls.py). A stream is retried only while nothing has been
yielded to the caller: its attempt is "open the stream and read it up to its first text". Once
text has been yielded, any failure is a StreamInterrupted carrying that text: never a silent,
truncated Finished.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from .calls import Call, Cancelled, Recorder
from .client import get_client
from .config import ChatParams, ProviderConfig
from .errors import (
    CANCELLED,
    CONNECTION,
    SERVER_ERROR,
    LLMError,
    StreamInterrupted,
    TransientLLMError,
    from_sdk_error,
)
from .events import (
    OUTCOME_ERROR,
    OUTCOME_INTERRUPTED,
    OUTCOME_OK,
    Finished,
    TextDelta,
    ToolCall,
    Usage,
)
from .tokens import estimate_usage


def _request_kwargs(
    config: ProviderConfig, messages: list[dict[str, Any]], params: ChatParams | None
) -> dict[str, Any]:
    kwargs = (params or ChatParams()).request_kwargs()
    kwargs["model"] = config.model
    kwargs["messages"] = messages
    return kwargs


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class _ReplyStream:
    """One attempt's stream, read chunk by chunk: the text comes out piece by piece; tool-call
    pieces, usage, model and finish reason are gathered on the way.

    The chunks are the SDK's decoded server-sent events as plain JSON objects (`_open_reply`):
    building an SDK model for every chunk costs more than everything done here."""

    def __init__(self, stream: openai.Stream[dict[str, Any]], call: Call) -> None:
        self._stream = stream
        self._chunks = iter(stream)
        self._call = call
        self.tools: dict[int, _ToolCallParts] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.first_content_at: float | None = None

    def next_text(self) -> str | None:
        """The next piece of text; None when the stream has ended with a finish reason."""
        call = self._call
        for chunk in self._chunks:
            call.check_cancelled()
            if time.monotonic() >= call.deadline_at:
                call.check_deadline()
            if not isinstance(chunk, dict):
                raise TransientLLMError(SERVER_ERROR, "the provider sent a malformed response")
            if self.model is None and chunk.get("model"):
                self.model = chunk["model"]
            u = chunk.get("usage")
            if isinstance(u, dict):
                self.usage = Usage(
                    int(u.get("prompt_tokens") or 0),
                    int(u.get("completion_tokens") or 0),
                    int(u.get("total_tokens") or 0),
                )
            choices = chunk.get("choices")
            if not choices or not isinstance(choices[0], dict):
                continue
            choice = choices[0]
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            content, tool_calls = delta.get("content"), delta.get("tool_calls")
            if (content or tool_calls) and self.first_content_at is None:
                self.first_content_at = time.monotonic()
            if tool_calls:
                self._add_tool_deltas(tool_calls)
            if content:
                return str(content)
        if self.finish_reason is None:
            raise TransientLLMError(CONNECTION, "the stream ended without a finish reason")
        return None

    def _add_tool_deltas(self, deltas: list[dict[str, Any]]) -> None:
        for position, tc in enumerate(deltas):
            index = tc.get("index")
            parts = self.tools.setdefault(position if index is None else index, _ToolCallParts())
            if tc.get("id") and not parts.id:
                parts.id = tc["id"]
            fn = tc.get("function")
            if isinstance(fn, dict):
                if fn.get("name") and not parts.name:
                    parts.name = fn["name"]
                if fn.get("arguments"):
                    parts.arguments.append(fn["arguments"])

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=parts.id, name=parts.name, arguments="".join(parts.arguments))
            for _, parts in sorted(self.tools.items())
        )

    def close(self) -> None:
        self._stream.close()


def _open_reply(
    client: openai.OpenAI, call: Call, kwargs: dict[str, Any]
) -> tuple[_ReplyStream, str | None]:
    """One attempt of a stream: the request, read up to its first text (None: it had none).

    The SDK's own request for `chat.completions.create` (same path, body, retries, errors and
    server-sent event decoding), with the chunks left as JSON objects (`cast_to=object`)."""
    body = dict(kwargs)
    body.update(body.pop("extra_body", None) or {})
    options: openai.RequestOptions = {"timeout": call.timeouts(call.config.read_timeout)}
    headers = body.pop("extra_headers", None)
    if headers:
        options["headers"] = headers
    stream = client.post(
        "/chat/completions",
        body=body,
        cast_to=object,
        stream=True,
        stream_cls=openai.Stream[dict[str, Any]],
        options=options,
    )
    reply = _ReplyStream(stream, call)
    try:
        return reply, reply.next_text()
    except BaseException:
        reply.close()
        raise


def _read_on(reply: _ReplyStream, shown: list[str], api_key: str | None) -> str | None:
    """The next text of a stream that has shown text: a failure now interrupts the reply."""
    try:
        return reply.next_text()
    except Exception as exc:
        err = from_sdk_error(exc, api_key)
        if err is None:
            raise
        if err.code == CANCELLED:
            raise err from None
        raise StreamInterrupted("".join(shown), err) from None


def _finished(
    call: Call,
    *,
    finish_reason: str,
    text: str,
    tool_calls: tuple[ToolCall, ...],
    usage: Usage,
    model: str | None,
) -> Finished:
    """The Finished of a reply that arrived whole, recorded (outcome "ok")."""
    result = Finished(
        finish_reason=finish_reason,
        text=text,
        tool_calls=tool_calls,
        usage=usage,
        model=model or call.config.model,
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
    return result


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
    call = Call(config, on_record, cancelled=cancelled)
    kwargs = _request_kwargs(config, messages, params)
    kwargs["stream"] = True
    kwargs["stream_options"] = {"include_usage": True}
    parts: list[str] = []  # text yielded so far
    reply: _ReplyStream | None = None
    try:
        client = get_client(config)
        reply, text = call.attempt(lambda: _open_reply(client, call, kwargs))
        call.first_token_at = reply.first_content_at
        while text is not None:
            parts.append(text)
            yield TextDelta(text)
            text = _read_on(reply, parts, config.api_key)
        reply.close()
        text = "".join(parts)
        yield _finished(
            call,
            finish_reason=reply.finish_reason or "stop",
            text=text,
            tool_calls=reply.tool_calls(),
            usage=reply.usage or estimate_usage(messages, text),
            model=reply.model,
        )
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
    finally:
        if reply is not None:
            reply.close()


def _complete(client: openai.OpenAI, call: Call, kwargs: dict[str, Any]) -> ChatCompletion:
    """One attempt of a non-streaming reply, bounded by the time left before the deadline."""
    response = client.chat.completions.create(**kwargs, timeout=call.timeouts())
    if not response.choices:
        raise TransientLLMError(CONNECTION, "the provider returned no choices")
    return response


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
    call = Call(config, on_record)
    kwargs = _request_kwargs(config, messages, params)
    try:
        client = get_client(config)
        response = call.attempt(lambda: _complete(client, call, kwargs))
        choice = response.choices[0]
        message = choice.message
        u = response.usage
        usage = (
            Usage(u.prompt_tokens, u.completion_tokens, u.total_tokens)
            if u
            else estimate_usage(messages, message.content or "")
        )
        tool_calls = tuple(
            ToolCall(id=tc.id, name=fn.name, arguments=fn.arguments or "")
            for tc in (message.tool_calls or ())
            if (fn := getattr(tc, "function", None)) is not None
        )
        return _finished(
            call,
            finish_reason=choice.finish_reason or "stop",
            text=message.content or "",
            tool_calls=tool_calls,
            usage=usage,
            model=response.model,
        )
    except LLMError as err:
        call.record(OUTCOME_ERROR, error_code=err.code)
        err.__context__ = None  # the SDK exception holds the request and its credentials
        raise err from None
    except BaseException:
        call.record(OUTCOME_ERROR, error_code="internal")
        raise
