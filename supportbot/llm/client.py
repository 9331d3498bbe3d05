"""Builds (and caches) the SDK client for a ProviderConfig."""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

import openai

from .config import ProviderConfig
from .errors import CONFIG, PermanentLLMError

LOCAL_API_KEY = "local"
_WRITE_TIMEOUT = 10.0


def timeouts(
    config: ProviderConfig, *, read: float | None = None, connect: float | None = None
) -> openai.Timeout:
    """SDK timeouts for the config; `read` and `connect` override it for one attempt."""
    connect = config.connect_timeout if connect is None else connect
    return openai.Timeout(
        connect=connect,
        read=config.read_timeout if read is None else read,
        write=max(_WRITE_TIMEOUT, config.connect_timeout),
        pool=connect,
    )


@functools.lru_cache(maxsize=64)
def get_client(config: ProviderConfig) -> openai.OpenAI:
    """One SDK client per config (thread-safe, holds the connection pool).

    SDK retries are off: chat.py retries itself to honour Retry-After and the deadline.
    Raises PermanentLLMError(code="config") when the config is unusable.
    """
    problems = config.problems()
    if problems:
        raise PermanentLLMError(CONFIG, "; ".join(problems))
    try:
        if config.provider == "azure":
            return _azure_client(config)
        api_key = config.api_key
        if config.provider == "local" and not api_key:
            api_key = LOCAL_API_KEY
        return openai.OpenAI(
            base_url=config.base_url, api_key=api_key, timeout=timeouts(config), max_retries=0
        )
    except openai.OpenAIError as exc:
        # e.g. no api key given and none in the environment; the SDK message names no secret.
        raise PermanentLLMError(
            CONFIG, f"cannot build the {config.provider} client: {exc}"
        ) from None


def _azure_client(config: ProviderConfig) -> openai.OpenAI:
    base = (config.base_url or "").rstrip("/")
    path = urlsplit(base).path
    timeout = timeouts(config)
    if config.api_version:
        if "/deployments/" in path:  # a full deployment URL
            return openai.AzureOpenAI(
                base_url=base,
                api_version=config.api_version,
                api_key=config.api_key,
                timeout=timeout,
                max_retries=0,
            )
        return openai.AzureOpenAI(
            azure_endpoint=_resource_endpoint(base),
            api_version=config.api_version,
            api_key=config.api_key,
            timeout=timeout,
            max_retries=0,
        )
    v1_url = base if path.endswith("/openai/v1") else f"{_resource_endpoint(base)}/openai/v1"
    return openai.OpenAI(
        base_url=v1_url + "/", api_key=config.api_key, timeout=timeout, max_retries=0
    )


def _resource_endpoint(url: str) -> str:
    """https://x.openai.azure.com[/openai[/v1]] -> https://x.openai.azure.com"""
    for suffix in ("/openai/v1", "/openai"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url
