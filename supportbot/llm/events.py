"""What a chat call produces: stream events, the final result, and the per-call record."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the raw JSON string from the model: NOT trusted, parse and validate it


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # True when the provider reported no usage (llama.cpp ignores include_usage) and the
    # counts were made here with tiktoken: close, not exact.
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class Finished:
    finish_reason: str  # "stop" | "length" | "content_filter" | "tool_calls" | other
    text: str  # all the text of the reply
    tool_calls: tuple[ToolCall, ...]
    usage: Usage | None
    model: str
    latency_ms: int  # from the start of the call (retries included) to the end of the reply
    first_token_ms: int | None  # from the start of the call to the first content (None: none)


OUTCOME_OK = "ok"
OUTCOME_ERROR = "error"
OUTCOME_INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One per stream_chat/complete_chat call (not per attempt), success or failure."""

    provider: str
    model: str
    outcome: str  # "ok" | "error" | "interrupted" (failed or stopped after text was yielded)
    error_code: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int
    first_token_ms: int | None
    attempts: int
    finish_reason: str | None
