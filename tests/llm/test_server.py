"""The scripted server itself: control API, routes, error shape, standalone process timings."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from supportbot.llm import Finished, ProviderConfig, TextDelta, stream_chat
from tests.support.llm_server import Reply, ScriptedLLMServer

ROOT = Path(__file__).resolve().parents[2]


def http(method: str, url: str, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null"), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null"), dict(err.headers)


def test_control_api_scripts_replies_from_another_process(server):
    status, _, _ = http(
        "POST",
        server.root_url + "/_control/enqueue",
        [{"text": "scripted"}, {"status": 429, "headers": {"Retry-After": "1"}}],
    )
    assert status == 200
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    status, reply, _ = http("POST", server.base_url + "/chat/completions", body)
    assert (status, reply["choices"][0]["message"]["content"]) == (200, "scripted")
    status, error, headers = http("POST", server.base_url + "/chat/completions", body)
    assert status == 429
    assert headers["Retry-After"] == "1"
    assert set(error["error"]) >= {"message", "type", "code"}

    status, recorded, _ = http("GET", server.root_url + "/_control/requests")
    assert [r["json"]["messages"][0]["content"] for r in recorded] == ["hi", "hi"]
    assert http("POST", server.root_url + "/_control/default", {"text": "new default"})[0] == 200
    assert (
        http("POST", server.base_url + "/chat/completions", body)[1]["choices"][0]["message"][
            "content"
        ]
        == "new default"
    )

    assert http("POST", server.root_url + "/_control/reset", {})[0] == 200
    assert http("GET", server.root_url + "/_control/requests")[1] == []
    assert http("POST", server.root_url + "/_control/enqueue", [{"bogus": 1}])[0] == 400


def test_models_endpoint_and_unknown_routes(server):
    status, body, _ = http("GET", server.base_url + "/models")
    assert status == 200
    assert body["data"][0]["object"] == "model"
    assert http("POST", server.base_url + "/files", {"input": "x"})[0] == 404


def test_marker_in_the_last_user_message_scripts_the_reply(server):
    server.enqueue(Reply(text="from the queue"))
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "please [[reply: Marker text]]"}],
    }
    assert (
        http("POST", server.base_url + "/chat/completions", body)[1]["choices"][0]["message"][
            "content"
        ]
        == "Marker text"
    )
    body["messages"][0]["content"] = "no marker"
    assert (
        http("POST", server.base_url + "/chat/completions", body)[1]["choices"][0]["message"][
            "content"
        ]
        == "from the queue"
    )


def test_wait_for_requests_has_a_deadline(server):
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        server.wait_for_requests(1, timeout=0.2)
    assert time.monotonic() - started < 1


def test_stop_releases_stalled_replies():
    server = ScriptedLLMServer().start()
    server.enqueue(Reply(stall_after_tokens=0))
    config = ProviderConfig(
        provider="local", model="m", base_url=server.base_url, read_timeout=30, max_retries=0
    )
    events = stream_chat(config, [{"role": "user", "content": "x"}])
    import threading

    threading.Thread(
        target=lambda: (server.wait_for_requests(1), server.stop()), daemon=True
    ).start()
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017, PT011 - the connection is dropped; any LLMError
        list(events)
    assert time.monotonic() - started < 10


def test_standalone_process_with_benchmark_timings():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.llm_server",
            "--port",
            "0",
            "--first-token-delay",
            "0.2",
            "--tokens-per-second",
            "100",
            "--tokens",
            "50",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        config = ProviderConfig(provider="local", model="bench", base_url=base_url)
        started = time.monotonic()
        first = None
        count = 0
        for event in stream_chat(config, [{"role": "user", "content": "go"}]):
            if isinstance(event, TextDelta):
                count += 1
                first = first or time.monotonic()
            else:
                assert isinstance(event, Finished)
                done = event
        end = time.monotonic()
        assert count == 50
        assert 0.2 <= first - started < 0.8
        # 49 intervals of 10 ms after the first token (upper bound loose for a busy machine)
        assert 0.45 <= end - first < 1.5
        assert done.usage.completion_tokens == 50
    finally:
        process.terminate()
        process.wait(timeout=5)
        process.stdout.close()
