"""ProviderConfig redaction, client construction and caching, error mapping helpers."""

from __future__ import annotations

import email.utils

import pytest

from supportbot.llm import (
    LLMError,
    PermanentLLMError,
    ProviderConfig,
    StreamInterrupted,
    TransientLLMError,
)
from supportbot.llm.client import get_client
from supportbot.llm.errors import parse_retry_after, scrub

from .conftest import API_KEY


def test_redacted_and_repr_never_show_the_key():
    config = ProviderConfig(
        provider="openai",
        model="gpt-4o-mini",
        base_url="https://user:pw@example.test/v1",
        api_key=API_KEY,
    )
    redacted = config.redacted()
    assert redacted["api_key"] == "***"
    assert redacted["model"] == "gpt-4o-mini"
    assert redacted["base_url"] == "https://example.test/v1"
    assert API_KEY not in str(redacted)
    assert API_KEY not in repr(config)
    assert ProviderConfig(provider="local", model="m").redacted()["api_key"] is None


def test_client_is_cached_per_config(make_config):
    config = make_config()
    assert get_client(config) is get_client(make_config())
    assert get_client(config) is not get_client(make_config(read_timeout=1.0))


def test_client_has_no_sdk_retries_and_our_timeouts(make_config):
    client = get_client(make_config(read_timeout=7.0, connect_timeout=1.5))
    assert client.max_retries == 0
    assert client.timeout.read == 7.0
    assert client.timeout.connect == 1.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"provider": "bedrock", "model": "m"},
        {"provider": "openai", "model": ""},
        {"provider": "azure", "model": "dep"},
        {"provider": "openai", "model": "m", "deadline": 0},
        {"provider": "openai", "model": "m", "max_retries": -1},
    ],
)
def test_bad_configs_are_permanent_config_errors(kwargs):
    with pytest.raises(PermanentLLMError) as info:
        get_client(ProviderConfig(api_key=API_KEY, **kwargs))
    assert info.value.code == "config"
    assert API_KEY not in str(info.value)


def test_missing_openai_key_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(PermanentLLMError) as info:
        get_client(ProviderConfig(provider="openai", model="m", base_url="http://127.0.0.1:9/v1"))
    assert info.value.code == "config"


def test_error_hierarchy():
    transient = TransientLLMError("rate_limited", "slow down", status_code=429, retry_after=2.0)
    assert transient.retryable and isinstance(transient, LLMError)
    assert not PermanentLLMError("auth").retryable
    interrupted = StreamInterrupted("partial", TransientLLMError("timeout"))
    assert isinstance(interrupted, TransientLLMError)
    assert (interrupted.code, interrupted.cause, interrupted.partial_text) == (
        "interrupted",
        "timeout",
        "partial",
    )
    assert "rate_limited (HTTP 429): slow down" == str(transient)


def test_scrub_removes_the_key_and_key_shaped_strings():
    assert API_KEY not in scrub(f"bad key {API_KEY}!", API_KEY)
    assert "sk-proj-abcdefghijklmnop" not in scrub(
        "Incorrect API key provided: sk-proj-abcdefghijklmnop", None
    )


def test_parse_retry_after():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-3"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30, abs=1)
