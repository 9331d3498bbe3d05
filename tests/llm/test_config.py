"""ProviderConfig (repr, from settings), client construction and caching, error mapping helpers."""

from __future__ import annotations

import email.utils
from types import SimpleNamespace

import pytest

from supportbot.llm import (
    LLMError,
    PermanentLLMError,
    ProviderConfig,
    StreamInterrupted,
    TransientLLMError,
    provider_config_from_settings,
)
from supportbot.llm.client import get_client
from supportbot.llm.errors import parse_retry_after, scrub

from .conftest import API_KEY


def test_repr_never_shows_the_key():
    config = ProviderConfig(
        provider="openai",
        model="gpt-4o-mini",
        base_url="https://example.test/v1",
        api_key=API_KEY,
    )
    assert API_KEY not in repr(config)
    assert API_KEY not in str(config)


def test_provider_config_from_settings_reads_every_llm_setting():
    settings = SimpleNamespace(
        LLM_PROVIDER="azure",
        LLM_BASE_URL="https://acme.openai.azure.com",
        LLM_API_KEY=API_KEY,
        LLM_MODEL="acme-gpt4o",
        LLM_API_VERSION="2024-10-21",
        LLM_CONNECT_TIMEOUT=2.5,
        LLM_READ_TIMEOUT=12.0,
        LLM_DEADLINE=60.0,
        LLM_MAX_RETRIES=1,
    )
    assert provider_config_from_settings(settings) == ProviderConfig(
        provider="azure",
        model="acme-gpt4o",
        base_url="https://acme.openai.azure.com",
        api_key=API_KEY,
        api_version="2024-10-21",
        connect_timeout=2.5,
        read_timeout=12.0,
        deadline=60.0,
        max_retries=1,
    )


def test_provider_config_from_settings_defaults():
    blank = SimpleNamespace(
        LLM_PROVIDER="", LLM_BASE_URL="", LLM_API_KEY="", LLM_MODEL="", LLM_API_VERSION=""
    )
    for settings in (blank, SimpleNamespace()):
        config = provider_config_from_settings(settings)
        assert config == ProviderConfig(provider="openai", model="gpt-4o-mini")
        assert (config.base_url, config.api_key, config.api_version) == (None, None, None)


def test_provider_config_from_settings_overrides():
    settings = SimpleNamespace(LLM_MODEL="chat-model", LLM_DEADLINE=90.0, LLM_MAX_RETRIES=4)
    config = provider_config_from_settings(
        settings, model="embedding-model", deadline=3.0, max_retries=0
    )
    assert (config.model, config.deadline, config.max_retries) == ("embedding-model", 3.0, 0)
    # An empty model is kept (the embedding model is off), never replaced by the chat model.
    assert provider_config_from_settings(settings, model="").model == ""


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
    assert transient.retryable
    assert isinstance(transient, LLMError)
    assert not PermanentLLMError("auth").retryable
    interrupted = StreamInterrupted("partial", TransientLLMError("timeout"))
    assert isinstance(interrupted, TransientLLMError)
    assert (interrupted.code, interrupted.cause, interrupted.partial_text) == (
        "interrupted",
        "timeout",
        "partial",
    )
    assert str(transient) == "rate_limited (HTTP 429): slow down"


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
