"""Provider configuration and per-call generation parameters (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PROVIDERS = frozenset({"openai", "azure", "local"})


@dataclass(frozen=True)
class ProviderConfig:
    """Where and how to reach a chat model.

    provider: "openai" (OpenAI or any OpenAI-compatible base URL), "azure" or "local".
    model: the model name, or the Azure deployment name.
    base_url: for azure, the resource endpoint (https://x.openai.azure.com) or the v1 base URL
        (https://x.openai.azure.com/openai/v1/).
    api_version: azure with an api-version; None with the v1 base URL.
    read_timeout: the longest wait between two stream chunks.
    deadline: wall-clock budget for the whole reply, retries included.

    The config is frozen and hashable: it is the cache key of the SDK client. `api_key` is left
    out of repr(); use `redacted()` for logs.
    """

    provider: str
    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_version: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    deadline: float = 120.0
    max_retries: int = 3

    def problems(self) -> list[str]:
        """What is wrong with this config (empty when it is usable). Never mentions the key."""
        found: list[str] = []
        if self.provider not in PROVIDERS:
            found.append(
                f"unknown provider {self.provider!r} (expected one of {sorted(PROVIDERS)})"
            )
        if not self.model:
            found.append("model is empty")
        if self.provider == "azure" and not self.base_url:
            found.append("azure needs base_url (the resource endpoint or the v1 base URL)")
        for name in ("connect_timeout", "read_timeout", "deadline"):
            if not getattr(self, name) > 0:
                found.append(f"{name} must be > 0")
        if self.max_retries < 0:
            found.append("max_retries must be >= 0")
        return found

    def redacted(self) -> dict[str, Any]:
        """The config as a dict safe for logs: the api key is never shown."""
        data = asdict(self)
        data["api_key"] = "***" if self.api_key else None
        data["base_url"] = _strip_userinfo(self.base_url)
        return data


def _strip_userinfo(url: str | None) -> str | None:
    """Drop any user:password@ part of a URL."""
    if not url or "@" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class ChatParams:
    """Chat Completions generation parameters. Every field is optional: None means "not sent"."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    extra_body: dict[str, Any] | None = None
    extra_headers: dict[str, str] | None = None

    def request_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for `chat.completions.create`, without the unset ones."""
        kwargs: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                kwargs[f.name] = value
        return kwargs
