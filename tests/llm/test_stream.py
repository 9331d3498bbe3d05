"""stream_chat against the scripted server on loopback, through the real SDK."""

from __future__ import annotations

import json
import threading
import time
import traceback

import pytest

from supportbot.llm import (
    ChatParams,
    Finished,
    LLMError,
    PermanentLLMError,
    StreamInterrupted,
    TextDelta,
    TransientLLMError,
    stream_chat,
)
from tests.support.llm_server import Reply, split_tokens

from .conftest import API_KEY

MESSAGES = [
    {"role": "system", "content": "You are a helpful support assistant."},
    {"role": "user", "content": "Where is my order?"},
]


def collect(events):
    deltas: list[str] = []
    finished: list[Finished] = []
    for event in events:
        if isinstance(event, TextDelta):
            assert not finished, "TextDelta after Finished"
            deltas.append(event.text)
        else:
            assert isinstance(event, Finished)
            finished.append(event)
    assert len(finished) == 1, "exactly one Finished"
    return deltas, finished[0]


def test_streams_text_then_one_finished_with_usage(server, make_config, records):
    text = "Your order left our warehouse yesterday and should arrive on Friday."
    server.enqueue(Reply(text=text))

    deltas, done = collect(stream_chat(make_config(), MESSAGES, on_record=records))

    assert deltas == split_tokens(text)
    assert done.text == text
    assert done.finish_reason == "stop"
    assert done.tool_calls == ()
    assert done.model == "test-model"
    assert done.usage is not None
    assert done.usage.completion_tokens == len(split_tokens(text))
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    assert done.usage.prompt_tokens > 0
    assert done.first_token_ms is not None
    assert 0 <= done.first_token_ms <= done.latency_ms

    (request,) = server.chat_requests()
    assert request.path == "/v1/chat/completions"
    assert request.json["stream"] is True
    assert request.json["stream_options"] == {"include_usage": True}
    assert request.json["model"] == "test-model"
    assert request.json["messages"] == MESSAGES
    assert request.headers["authorization"] == f"Bearer {API_KEY}"

    record = records.one()
    assert (record.outcome, record.error_code, record.attempts) == ("ok", None, 1)
    assert record.prompt_tokens == done.usage.prompt_tokens
    assert record.completion_tokens == done.usage.completion_tokens
    assert record.finish_reason == "stop"
    assert (record.provider, record.model) == ("openai", "test-model")
    assert record.latency_ms == done.latency_ms
    assert record.first_token_ms == done.first_token_ms


def test_first_token_time_reflects_the_provider_delay(server, make_config):
    server.enqueue(Reply(text="a b c", first_token_delay=0.3))
    _, done = collect(stream_chat(make_config(), MESSAGES))
    assert done.first_token_ms is not None
    assert done.first_token_ms >= 300
    assert done.latency_ms >= done.first_token_ms


def test_every_param_reaches_the_request_body_as_sent(server, make_config):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "description": "Find an order by id",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"],
                },
            },
        }
    ]
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    }
    params = ChatParams(
        temperature=0.2,
        top_p=0.9,
        max_tokens=256,
        max_completion_tokens=300,
        stop=["\nUser:", "###"],
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.25,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "lookup_order"}},
        response_format=response_format,
        user="visitor-123",
        extra_body={"top_k": 40, "repetition_penalty": 1.1},
        extra_headers={"extra-parameters": "pass-through"},
    )

    collect(stream_chat(make_config(), MESSAGES, params))

    (request,) = server.chat_requests()
    body = request.json
    expected = {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 256,
        "max_completion_tokens": 300,
        "stop": ["\nUser:", "###"],
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.25,
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "lookup_order"}},
        "response_format": response_format,
        "user": "visitor-123",
        "top_k": 40,
        "repetition_penalty": 1.1,
    }
    for key, value in expected.items():
        assert body.get(key) == value, key
    assert request.headers["extra-parameters"] == "pass-through"


def test_string_stop_and_string_tool_choice(server, make_config):
    collect(stream_chat(make_config(), MESSAGES, ChatParams(stop="END", tool_choice="none")))
    body = server.chat_requests()[0].json
    assert body["stop"] == "END"
    assert body["tool_choice"] == "none"


def test_unset_params_are_not_sent(server, make_config):
    collect(stream_chat(make_config(), MESSAGES, ChatParams()))
    body = server.chat_requests()[0].json
    assert set(body) == {"model", "messages", "stream", "stream_options"}


def test_streamed_tool_calls_are_assembled_by_index(server, make_config, records):
    args_0 = json.dumps({"order_id": "A-17", "include": ["items", "tracking"], "note": "çà €"})
    args_1 = json.dumps({"city": "Paris"})
    server.enqueue(
        Reply(
            text="",
            tool_calls=[
                {"id": "call_order", "name": "lookup_order", "arguments": args_0},
                {"id": "call_weather", "name": "get_weather", "arguments": args_1},
            ],
            finish_reason="tool_calls",
        )
    )

    deltas, done = collect(stream_chat(make_config(), MESSAGES, on_record=records))

    assert deltas == []
    assert done.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in done.tool_calls] == [
        ("call_order", "lookup_order", args_0),
        ("call_weather", "get_weather", args_1),
    ]
    assert json.loads(done.tool_calls[0].arguments)["note"] == "çà €"
    assert done.first_token_ms is not None
    assert records.one().finish_reason == "tool_calls"


def test_text_and_tool_calls_in_one_reply(server, make_config):
    server.enqueue(
        Reply(
            text="Let me check.",
            tool_calls=[{"id": "c1", "name": "lookup_order", "arguments": '{"order_id":"9"}'}],
            finish_reason="tool_calls",
        )
    )
    deltas, done = collect(stream_chat(make_config(), MESSAGES))
    assert "".join(deltas) == done.text == "Let me check."
    assert done.tool_calls[0].arguments == '{"order_id":"9"}'


@pytest.mark.parametrize("reason", ["length", "content_filter"])
def test_finish_reason_is_surfaced(server, make_config, records, reason):
    server.enqueue(Reply(text="This answer was cut", finish_reason=reason))
    _, done = collect(stream_chat(make_config(), MESSAGES, on_record=records))
    assert done.finish_reason == reason
    assert done.text == "This answer was cut"
    record = records.one()
    assert (record.outcome, record.finish_reason) == ("ok", reason)


def test_401_is_not_retried(server, make_config, records):
    server.enqueue(
        Reply(
            status=401,
            error_body={
                "error": {
                    "message": f"Incorrect API key provided: {API_KEY}.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )
    )
    with pytest.raises(PermanentLLMError) as info:
        collect(stream_chat(make_config(max_retries=5), MESSAGES, on_record=records))

    err = info.value
    assert (err.code, err.status_code, err.retryable) == ("auth", 401, False)
    assert len(server.chat_requests()) == 1
    shown = "".join(traceback.format_exception(err)) + repr(err) + err.detail
    assert API_KEY not in shown
    assert "Incorrect API key provided" in err.detail
    chained = [err.__cause__, err.__context__]
    assert not [e for e in chained if e is not None and type(e).__module__.startswith("openai")], (
        "the SDK exception (it holds the request and its headers) must not ride along"
    )
    record = records.one()
    assert (record.outcome, record.error_code, record.attempts) == ("error", "auth", 1)
    assert record.prompt_tokens is None


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "bad_request"), (403, "auth"), (404, "bad_request"), (422, "bad_request")],
)
def test_other_client_errors_are_permanent(server, make_config, records, status, code):
    server.enqueue(Reply(status=status))
    with pytest.raises(PermanentLLMError) as info:
        collect(stream_chat(make_config(), MESSAGES, on_record=records))
    assert (info.value.code, info.value.status_code) == (code, status)
    assert len(server.chat_requests()) == 1
    assert records.one().attempts == 1


def test_429_retry_after_is_honoured_then_success(server, make_config, records):
    server.enqueue(Reply(status=429, headers={"Retry-After": "1"}), Reply(text="ok now"))

    _, done = collect(stream_chat(make_config(), MESSAGES, on_record=records))

    assert done.text == "ok now"
    first, second = server.chat_requests()
    assert second.at - first.at >= 1.0
    record = records.one()
    assert (record.outcome, record.attempts) == ("ok", 2)
    assert record.latency_ms >= 1000


def test_429_retry_after_ms_is_honoured(server, make_config, records):
    server.enqueue(
        Reply(status=429, headers={"retry-after-ms": "400", "Retry-After": "30"}),
        Reply(status=503, headers={"retry-after-ms": "300"}),
        Reply(text="ok"),
    )
    _, done = collect(stream_chat(make_config(), MESSAGES, on_record=records))
    assert done.text == "ok"
    a, b, c = server.chat_requests()
    assert b.at - a.at >= 0.4
    assert c.at - b.at >= 0.3
    assert b.at - a.at < 5, "retry-after-ms takes precedence over Retry-After"
    assert records.one().attempts == 3


def test_retry_after_beyond_the_deadline_gives_up_at_once(server, make_config, records):
    server.enqueue(Reply(status=429, headers={"Retry-After": "60"}))
    started = time.monotonic()
    with pytest.raises(TransientLLMError) as info:
        collect(stream_chat(make_config(deadline=5), MESSAGES, on_record=records))
    assert time.monotonic() - started < 2
    assert (info.value.code, info.value.retry_after) == ("rate_limited", 60)
    assert len(server.chat_requests()) == 1
    assert records.one().error_code == "rate_limited"


def test_insufficient_quota_429_is_permanent(server, make_config):
    server.enqueue(
        Reply(
            status=429,
            error_body={
                "error": {
                    "message": "quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
        )
    )
    with pytest.raises(PermanentLLMError) as info:
        collect(stream_chat(make_config(), MESSAGES))
    assert info.value.code == "rate_limited"
    assert len(server.chat_requests()) == 1


def test_500_is_retried_up_to_max_retries(server, make_config, records):
    server.enqueue(*[Reply(status=500)] * 3, Reply(text="too late"))

    with pytest.raises(TransientLLMError) as info:
        collect(stream_chat(make_config(max_retries=2), MESSAGES, on_record=records))

    assert (info.value.code, info.value.status_code) == ("server_error", 500)
    assert not isinstance(info.value, StreamInterrupted)
    assert len(server.chat_requests()) == 3
    record = records.one()
    assert (record.outcome, record.error_code, record.attempts) == ("error", "server_error", 3)


def test_503_then_success(server, make_config, records):
    server.enqueue(Reply(status=503), Reply(text="back"))
    _, done = collect(stream_chat(make_config(), MESSAGES, on_record=records))
    assert done.text == "back"
    assert records.one().attempts == 2


def test_mid_stream_drop_raises_interrupted_with_partial_text_and_no_retry(
    server, make_config, records
):
    server.enqueue(Reply(text="one two three four five", fail_after_tokens=2), Reply(text="retry"))
    deltas: list[str] = []

    def read_stream() -> None:
        for event in stream_chat(make_config(), MESSAGES, on_record=records):
            assert isinstance(event, TextDelta), "no Finished after a broken stream"
            deltas.append(event.text)

    with pytest.raises(StreamInterrupted) as info:
        read_stream()

    assert deltas == ["one", " two"]
    assert info.value.partial_text == "one two"
    assert (info.value.code, info.value.cause) == ("interrupted", "connection")
    assert info.value.retryable is True
    assert len(server.chat_requests()) == 1
    record = records.one()
    assert (record.outcome, record.error_code, record.attempts) == ("interrupted", "interrupted", 1)


def test_drop_before_any_text_is_retried(server, make_config, records):
    server.enqueue(Reply(text="lost", fail_after_tokens=0), Reply(text="second try"))
    deltas, done = collect(stream_chat(make_config(), MESSAGES, on_record=records))
    assert "".join(deltas) == done.text == "second try"
    assert len(server.chat_requests()) == 2
    assert records.one().attempts == 2


def test_stall_after_text_times_out_within_read_timeout(server, make_config, records):
    server.enqueue(Reply(text="one two three", stall_after_tokens=1))
    started = time.monotonic()
    with pytest.raises(StreamInterrupted) as info:
        collect(stream_chat(make_config(read_timeout=0.5), MESSAGES, on_record=records))
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.5
    assert (info.value.partial_text, info.value.cause) == ("one", "timeout")
    assert len(server.chat_requests()) == 1
    assert records.one().outcome == "interrupted"


def test_stall_before_text_is_a_timeout(server, make_config, records):
    server.enqueue(Reply(text="never", stall_after_tokens=0))
    started = time.monotonic()
    with pytest.raises(TransientLLMError) as info:
        collect(
            stream_chat(make_config(read_timeout=0.5, max_retries=0), MESSAGES, on_record=records)
        )
    assert 0.5 <= time.monotonic() - started < 2.5
    assert info.value.code == "timeout"
    assert not isinstance(info.value, StreamInterrupted)
    record = records.one()
    assert (record.outcome, record.error_code, record.attempts) == ("error", "timeout", 1)


def test_deadline_stops_a_slow_stream(server, make_config, records):
    server.enqueue(Reply(text=" ".join(["word"] * 50), token_interval=0.1))
    started = time.monotonic()
    with pytest.raises(StreamInterrupted) as info:
        collect(stream_chat(make_config(deadline=1.0), MESSAGES, on_record=records))
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 2.0  # the next chunk was due 0.1 s later; no deadline: 5 s
    assert info.value.cause == "timeout"
    assert 3 < len(split_tokens(info.value.partial_text)) < 50


def test_deadline_bounds_the_wait_for_the_first_token_and_the_retries(server, make_config, records):
    server.enqueue(*[Reply(text="late", first_token_delay=5)] * 5)
    started = time.monotonic()
    with pytest.raises(TransientLLMError) as info:
        collect(
            stream_chat(make_config(deadline=1.0, read_timeout=10), MESSAGES, on_record=records)
        )
    assert 1.0 <= time.monotonic() - started < 2.5  # not the 5 s of the provider
    assert info.value.code == "timeout"
    assert not isinstance(info.value, StreamInterrupted)
    assert len(server.chat_requests()) == 1
    assert records.one().error_code == "timeout"


def test_cancelled_stops_the_stream(server, make_config, records):
    server.enqueue(Reply(text=" ".join(f"w{i}" for i in range(100)), token_interval=0.02))
    stop = threading.Event()
    deltas: list[str] = []

    def read_until_cancelled() -> None:
        for event in stream_chat(make_config(), MESSAGES, on_record=records, cancelled=stop.is_set):
            deltas.append(event.text)
            if len(deltas) == 3:
                stop.set()

    with pytest.raises(LLMError) as info:
        read_until_cancelled()
    assert info.value.code == "cancelled"
    assert not isinstance(info.value, TransientLLMError)
    assert len(deltas) == 3
    record = records.one()
    assert (record.outcome, record.error_code) == ("interrupted", "cancelled")


def test_cancelled_during_backoff_gives_up_without_another_request(server, make_config, records):
    server.enqueue(Reply(status=429, headers={"Retry-After": "5"}), Reply(text="never asked"))
    stop = threading.Event()
    threading.Thread(target=lambda: (server.wait_for_requests(1), stop.set()), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(LLMError) as info:
        collect(stream_chat(make_config(), MESSAGES, on_record=records, cancelled=stop.is_set))
    assert info.value.code == "cancelled"
    assert time.monotonic() - started < 3
    assert len(server.chat_requests()) == 1
    assert records.one().outcome == "error"


def test_closing_the_generator_early_records_once(server, make_config, records):
    server.enqueue(Reply(text="a b c d e f", token_interval=0.01))
    events = stream_chat(make_config(), MESSAGES, on_record=records)
    assert isinstance(next(events), TextDelta)
    events.close()
    record = records.one()
    assert (record.outcome, record.error_code) == ("interrupted", "cancelled")


def test_a_failing_recorder_does_not_break_the_reply(server, make_config):
    def boom(record):
        raise RuntimeError("metrics are down")

    _, done = collect(stream_chat(make_config(), MESSAGES, on_record=boom))
    assert done.finish_reason == "stop"


def test_bad_config_is_a_permanent_error_and_is_recorded(records):
    from supportbot.llm import ProviderConfig

    config = ProviderConfig(provider="nope", model="m", api_key=API_KEY)
    with pytest.raises(PermanentLLMError) as info:
        collect(stream_chat(config, MESSAGES, on_record=records))
    assert info.value.code == "config"
    assert API_KEY not in str(info.value)
    assert records.one().error_code == "config"


def test_connection_refused_is_transient_and_retried_within_the_deadline(records):
    import socket

    from supportbot.llm import ProviderConfig

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ProviderConfig(
        provider="local", model="m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2
    )
    with pytest.raises(TransientLLMError) as info:
        collect(stream_chat(config, MESSAGES, on_record=records))
    assert info.value.code == "connection"
    assert records.one().attempts == 3


def test_concurrent_streams_share_one_client(server, make_config):
    server.default = Reply(text="alpha beta gamma delta", token_interval=0.01)
    config = make_config()
    results: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(collect(stream_chat(config, MESSAGES))[1].text)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors
    assert results == ["alpha beta gamma delta"] * 20


def test_stream_ending_without_finish_reason_is_never_a_silent_finished(
    server, make_config, records
):
    server.enqueue(Reply(text="one two three", end_after_tokens=2), Reply(text="unused"))
    with pytest.raises(StreamInterrupted) as info:
        collect(stream_chat(make_config(), MESSAGES, on_record=records))
    assert (info.value.partial_text, info.value.cause) == ("one two", "connection")
    assert len(server.chat_requests()) == 1
    assert records.one().outcome == "interrupted"


def test_truncated_stream_before_text_is_retried(server, make_config, records):
    server.enqueue(Reply(text="x", end_after_tokens=0), Reply(text="whole"))
    _, done = collect(stream_chat(make_config(), MESSAGES, on_record=records))
    assert done.text == "whole"
    assert records.one().attempts == 2


def test_error_event_inside_the_stream(server, make_config, records):
    server.enqueue(Reply(text="one two three", error_after_tokens=1))
    with pytest.raises(StreamInterrupted) as info:
        collect(stream_chat(make_config(), MESSAGES, on_record=records))
    assert (info.value.partial_text, info.value.cause) == ("one", "server_error")

    server.enqueue(Reply(text="x", error_after_tokens=0), Reply(text="recovered"))
    _, done = collect(stream_chat(make_config(), MESSAGES))
    assert done.text == "recovered"


def test_an_azure_style_key_echoed_by_the_provider_is_scrubbed(server, make_config):
    azure_key = "0123456789abcdef0123456789abcdef"
    server.enqueue(
        Reply(status=403, error_body={"error": {"message": f"key {azure_key} lacks access"}})
    )
    with pytest.raises(PermanentLLMError) as info:
        collect(stream_chat(make_config(api_key=azure_key), MESSAGES))
    assert azure_key not in "".join(traceback.format_exception(info.value))
    assert "lacks access" in info.value.detail


def test_provider_error_code_is_kept_for_callers(server, make_config):
    server.enqueue(
        Reply(
            status=400,
            error_body={
                "error": {
                    "message": "This model's maximum context length is 8192 tokens.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
        )
    )
    with pytest.raises(PermanentLLMError) as info:
        collect(stream_chat(make_config(), MESSAGES))
    assert (info.value.code, info.value.provider_code) == ("bad_request", "context_length_exceeded")
    assert "maximum context length" in info.value.detail
