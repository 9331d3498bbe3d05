"""Builds (and caches) the SDK client for a ProviderConfig."""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore2
import httpx2
import openai

from .config import AddressGuard, ProviderConfig
from .errors import CONFIG, PermanentLLMError

LOCAL_API_KEY = "local"
_WRITE_TIMEOUT = 10.0
# The SDK's own connection limits, for the guarded client that replaces its default one.
_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)


class AddressRefused(PermanentLLMError, openai.OpenAIError):
    """The provider's host resolved to an address its config's guard refuses.

    An OpenAIError too, so that the SDK passes it on as it is (not as a connection error to
    retry)."""

    def __init__(self, detail: str) -> None:
        super().__init__(CONFIG, detail)


class _GuardedBackend(httpcore2.NetworkBackend):
    """Resolves each connection's host itself and connects only to addresses the guard accepts
    (all of them must be accepted), so the address checked is the address connected to."""

    def __init__(self, guard: AddressGuard, inner: httpcore2.NetworkBackend) -> None:
        self._guard = guard
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            refusal = self._guard(host, address)
            if refusal is not None:
                raise AddressRefused(f"provider address refused: {refusal}")
        failure: Exception = httpcore2.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        raise failure

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _guarded_http_client(config: ProviderConfig, guard: AddressGuard) -> httpx2.Client:
    transport = httpx2.HTTPTransport(limits=_LIMITS)
    # httpx2 takes no network backend of its own: its pool's is wrapped (httpcore2's documented
    # extension point, reached through the transport's pool).
    pool = transport._pool
    assert isinstance(pool, httpcore2.ConnectionPool)
    pool._network_backend = _GuardedBackend(guard, pool._network_backend)
    return openai.DefaultHttpxClient(transport=transport, timeout=timeouts(config))


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
            base_url=config.base_url,
            api_key=api_key,
            timeout=timeouts(config),
            max_retries=0,
            http_client=_http_client(config),
        )
    except openai.OpenAIError as exc:
        # e.g. no api key given and none in the environment; the SDK message names no secret.
        raise PermanentLLMError(
            CONFIG, f"cannot build the {config.provider} client: {exc}"
        ) from None


def _http_client(config: ProviderConfig) -> httpx2.Client | None:
    """The guarded HTTP client when the config has an address guard, else None (the SDK's)."""
    if config.address_guard is None:
        return None
    return _guarded_http_client(config, config.address_guard)


def _azure_client(config: ProviderConfig) -> openai.OpenAI:
    base = (config.base_url or "").rstrip("/")
    path = urlsplit(base).path
    timeout = timeouts(config)
    http_client = _http_client(config)
    if config.api_version:
        if "/deployments/" in path:  # a full deployment URL
            return openai.AzureOpenAI(
                base_url=base,
                api_version=config.api_version,
                api_key=config.api_key,
                timeout=timeout,
                max_retries=0,
                http_client=http_client,
            )
        return openai.AzureOpenAI(
            azure_endpoint=_resource_endpoint(base),
            api_version=config.api_version,
            api_key=config.api_key,
            timeout=timeout,
            max_retries=0,
            http_client=http_client,
        )
    v1_url = base if path.endswith("/openai/v1") else f"{_resource_endpoint(base)}/openai/v1"
    return openai.OpenAI(
        base_url=v1_url + "/",
        api_key=config.api_key,
        timeout=timeout,
        max_retries=0,
        http_client=http_client,
    )


def _resource_endpoint(url: str) -> str:
    """https://x.openai.azure.com[/openai[/v1]] -> https://x.openai.azure.com"""
    for suffix in ("/openai/v1", "/openai"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url
