"""complete_chat (non-streaming) against the scripted server."""

from __future__ import annotations

import json
import time

import pytest

from supportbot.llm import ChatParams, PermanentLLMError, TransientLLMError, complete_chat
from tests.support.llm_server import Reply

MESSAGES = [{"role": "user", "content": "Hello?"}]


def test_complete_returns_text_usage_and_one_record(server, make_config, records):
    server.enqueue(
        Reply(
            text="Hi, how can I help?",
            usage={"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13},
        )
    )
    done = complete_chat(
        make_config(), MESSAGES, ChatParams(seed=7, temperature=0), on_record=records
    )
    assert done.text == "Hi, how can I help?"
    assert (done.finish_reason, done.model) == ("stop", "test-model")
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (
        7,
        6,
        13,
    )
    assert done.first_token_ms is None
    (request,) = server.chat_requests()
    assert "stream" not in request.json
    assert "stream_options" not in request.json
    assert (request.json["seed"], request.json["temperature"]) == (7, 0)
    record = records.one()
    assert (record.outcome, record.attempts, record.prompt_tokens, record.completion_tokens) == (
        "ok",
        1,
        7,
        6,
    )


def test_complete_returns_tool_calls(server, make_config):
    args = json.dumps({"order_id": "A-17"})
    server.enqueue(
        Reply(
            text="",
            tool_calls=[{"id": "call_1", "name": "lookup_order", "arguments": args}],
            finish_reason="tool_calls",
        )
    )
    done = complete_chat(make_config(), MESSAGES)
    assert done.finish_reason == "tool_calls"
    assert done.text == ""
    assert [(c.id, c.name, c.arguments) for c in done.tool_calls] == [
        ("call_1", "lookup_order", args)
    ]


@pytest.mark.parametrize("reason", ["length", "content_filter"])
def test_complete_surfaces_finish_reason(server, make_config, reason):
    server.enqueue(Reply(text="cut", finish_reason=reason))
    assert complete_chat(make_config(), MESSAGES).finish_reason == reason


def test_complete_honours_retry_after(server, make_config, records):
    server.enqueue(Reply(status=429, headers={"retry-after-ms": "300"}), Reply(text="fine"))
    assert complete_chat(make_config(), MESSAGES, on_record=records).text == "fine"
    a, b = server.chat_requests()
    assert b.at - a.at >= 0.3
    assert records.one().attempts == 2


def test_complete_401_not_retried(server, make_config, records):
    server.enqueue(Reply(status=401))
    with pytest.raises(PermanentLLMError) as info:
        complete_chat(make_config(), MESSAGES, on_record=records)
    assert info.value.code == "auth"
    assert len(server.chat_requests()) == 1
    assert (records.one().outcome, records.one().error_code) == ("error", "auth")


def test_complete_500_exhausts_retries(server, make_config, records):
    server.enqueue(*[Reply(status=502)] * 2)
    with pytest.raises(TransientLLMError) as info:
        complete_chat(make_config(max_retries=1), MESSAGES, on_record=records)
    assert info.value.code == "server_error"
    assert len(server.chat_requests()) == 2
    assert records.one().attempts == 2


def test_complete_is_bounded_by_the_deadline_not_the_read_timeout(server, make_config, records):
    # a non-streamed reply takes as long as the whole generation: read_timeout does not apply
    server.enqueue(Reply(text="slow but fine", first_token_delay=0.6))
    assert complete_chat(make_config(read_timeout=0.2), MESSAGES).text == "slow but fine"

    server.enqueue(Reply(text="too slow", first_token_delay=5))
    started = time.monotonic()
    with pytest.raises(TransientLLMError) as info:
        complete_chat(make_config(deadline=1.0), MESSAGES, on_record=records)
    assert 1.0 <= time.monotonic() - started < 2.5  # not the 5 s of the provider
    assert info.value.code == "timeout"


def test_complete_connection_drop_is_retried(server, make_config, records):
    server.enqueue(Reply(fail_after_tokens=0), Reply(text="second"))
    assert complete_chat(make_config(), MESSAGES, on_record=records).text == "second"
    assert records.one().attempts == 2
