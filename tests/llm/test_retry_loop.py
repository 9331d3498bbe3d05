"""One retry rule for every call of the LLM layer: stream_chat, complete_chat and embed_texts
retry the same errors, wait the same way and give up at the same point."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from supportbot.llm import (
    Finished,
    PermanentLLMError,
    StreamInterrupted,
    TransientLLMError,
    complete_chat,
    embed_texts,
    stream_chat,
)
from tests.support.llm_server import Reply

MESSAGES = [{"role": "user", "content": "Where is my order?"}]


def _stream(config, on_record) -> str:
    events = list(stream_chat(config, MESSAGES, on_record=on_record))
    assert isinstance(events[-1], Finished)
    return events[-1].text


def _complete(config, on_record) -> str:
    return complete_chat(config, MESSAGES, on_record=on_record).text


def _embed(config, on_record) -> str:
    embed_texts(config, ["where is my order"], model="embed-small", on_record=on_record)
    return "embedded"


CALLS: dict[str, tuple[Callable, str]] = {
    "stream_chat": (_stream, "chat"),
    "complete_chat": (_complete, "chat"),
    "embed_texts": (_embed, "embeddings"),
}


@pytest.fixture(params=sorted(CALLS))
def call(request, server):
    """(run(config, on_record), enqueue(*replies), requests()) for one entry point."""
    run, kind = CALLS[request.param]
    if kind == "chat":
        return run, server.enqueue, server.chat_requests
    return run, server.enqueue_embeddings, server.embedding_requests


@pytest.mark.parametrize(
    ("status", "code"), [(400, "bad_request"), (401, "auth"), (403, "auth"), (404, "bad_request")]
)
def test_client_errors_are_never_retried(call, make_config, records, status, code):
    run, enqueue, requests = call
    enqueue(Reply(status=status), Reply(text="never asked"))
    with pytest.raises(PermanentLLMError) as info:
        run(make_config(max_retries=5), records)
    assert (info.value.code, info.value.status_code) == (code, status)
    assert len(requests()) == 1
    record = records.one()
    assert (record.outcome, record.error_code, record.attempts) == ("error", code, 1)


def test_retry_after_is_honoured(call, make_config, records):
    run, enqueue, requests = call
    enqueue(Reply(status=429, headers={"retry-after-ms": "300"}), Reply(text="fine"))
    run(make_config(), records)
    first, second = requests()
    assert second.at - first.at >= 0.3
    assert (records.one().outcome, records.one().attempts) == ("ok", 2)


def test_transient_errors_are_retried_up_to_max_retries(call, make_config, records):
    run, enqueue, requests = call
    enqueue(*[Reply(status=503)] * 3, Reply(text="too late"))
    with pytest.raises(TransientLLMError) as info:
        run(make_config(max_retries=2), records)
    assert (info.value.code, info.value.status_code) == ("server_error", 503)
    assert not isinstance(info.value, StreamInterrupted)
    assert len(requests()) == 3
    assert records.one().attempts == 3


def test_a_wait_past_the_deadline_is_not_made(call, make_config, records):
    run, enqueue, requests = call
    enqueue(Reply(status=429, headers={"Retry-After": "60"}), Reply(text="never asked"))
    started = time.monotonic()
    with pytest.raises(TransientLLMError) as info:
        run(make_config(deadline=5), records)
    assert time.monotonic() - started < 2
    assert (info.value.code, info.value.retry_after) == ("rate_limited", 60)
    assert len(requests()) == 1


def test_the_deadline_bounds_a_slow_attempt(call, make_config, records):
    run, enqueue, requests = call
    enqueue(*[Reply(text="late", first_token_delay=5)] * 3)
    started = time.monotonic()
    with pytest.raises(TransientLLMError) as info:
        run(make_config(deadline=1.0, read_timeout=10), records)
    assert 1.0 <= time.monotonic() - started < 2.5
    assert info.value.code == "timeout"
    assert len(requests()) == 1


def test_a_dropped_connection_is_retried(call, make_config, records):
    run, enqueue, requests = call
    enqueue(Reply(fail_after_tokens=0), Reply(text="fine"))
    run(make_config(), records)
    assert len(requests()) == 2
    assert records.one().outcome == "ok"
