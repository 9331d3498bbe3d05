"""Provider configuration and per-call generation parameters (plain data, no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

PROVIDERS = frozenset({"openai", "azure", "local"})
DEFAULT_PROVIDER = "openai"
DEFAULT_CHAT_MODEL = "gpt-4o-mini"

# Given the host a connection is for and an address it resolved to: why that address may not be
# reached, or None when it may. Hashable (a ProviderConfig is a cache key).
AddressGuard = Callable[[str, str], str | None]


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
    address_guard: when set, every connection (redirects included) resolves the host itself and
        goes only to addresses the guard accepts; a refused one fails the call with a permanent
        `config` error. None: no check (the server's own provider).

    The config is frozen and hashable: it is the cache key of the SDK client. `api_key` is left
    out of repr().
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
    address_guard: AddressGuard | None = None

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
        found.extend(
            f"{name} must be > 0"
            for name in ("connect_timeout", "read_timeout", "deadline")
            if not getattr(self, name) > 0
        )
        if self.max_retries < 0:
            found.append("max_retries must be >= 0")
        return found


def provider_config_from_settings(
    settings: object,
    *,
    model: str | None = None,
    deadline: float | None = None,
    max_retries: int | None = None,
) -> ProviderConfig:
    """The server's provider, from the LLM_* values of `settings` (django.conf.settings, or any
    object with those attributes).

    LLM_PROVIDER (default "openai"), LLM_BASE_URL, LLM_API_KEY, LLM_API_VERSION (empty: not
    set), LLM_CONNECT_TIMEOUT, LLM_READ_TIMEOUT, LLM_DEADLINE, LLM_MAX_RETRIES (missing:
    ProviderConfig's defaults). `model` is the model to call (embeddings name theirs); by
    default LLM_MODEL, else "gpt-4o-mini". `deadline` and `max_retries` override the settings.
    """

    def value(name: str) -> Any:
        return getattr(settings, name, None)

    def text(name: str) -> str | None:
        return str(value(name) or "") or None

    numbers: dict[str, Any] = {}
    for name, convert in (
        ("connect_timeout", float),
        ("read_timeout", float),
        ("deadline", float),
        ("max_retries", int),
    ):
        raw = value(f"LLM_{name.upper()}")
        if raw is not None and raw != "":
            numbers[name] = convert(raw)
    if deadline is not None:
        numbers["deadline"] = float(deadline)
    if max_retries is not None:
        numbers["max_retries"] = int(max_retries)
    return ProviderConfig(
        provider=text("LLM_PROVIDER") or DEFAULT_PROVIDER,
        model=(text("LLM_MODEL") or DEFAULT_CHAT_MODEL) if model is None else model,
        base_url=text("LLM_BASE_URL"),
        api_key=text("LLM_API_KEY"),
        api_version=text("LLM_API_VERSION"),
        **numbers,
    )


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
