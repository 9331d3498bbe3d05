"""Our error types, and the mapping from SDK exceptions to them.

Transient errors may succeed later (429, 5xx, connection, timeout, stall, deadline); permanent
errors never will (400, 401, 403, 404, 422, bad config). Messages are scrubbed of the api key and
the SDK exception is not chained (its request carries the credentials).
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping

import openai

# Error codes (LLMError.code).
AUTH = "auth"
BAD_REQUEST = "bad_request"
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
CONNECTION = "connection"
TIMEOUT = "timeout"
INTERRUPTED = "interrupted"
CANCELLED = "cancelled"
CONFIG = "config"

_MAX_DETAIL = 500
_KEYLIKE = re.compile(r"\b(sk-[A-Za-z0-9_*\-]{4})[A-Za-z0-9_*\-]+")


class LLMError(Exception):
    """A call to the model failed. `code` says why; `retryable` whether trying later may help."""

    retryable: bool = False

    def __init__(
        self,
        code: str,
        detail: str = "",
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        provider_code: str | None = None,
    ) -> None:
        self.code = code
        self.detail = detail
        self.status_code = status_code
        self.retry_after = retry_after  # seconds the provider asked us to wait, if it said
        # the provider's own error code, e.g. "context_length_exceeded", "content_filter"
        self.provider_code = provider_code
        if retryable is not None:
            self.retryable = retryable
        super().__init__(self.__str__())

    def __str__(self) -> str:
        status = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        return f"{self.code}{status}: {self.detail}" if self.detail else f"{self.code}{status}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status_code={self.status_code!r})"


class TransientLLMError(LLMError):
    """429, 5xx, connection, timeout, stall, deadline: may succeed later."""

    retryable = True


class PermanentLLMError(LLMError):
    """400, 401, 403, 404, 422, bad config: never retried."""

    retryable = False


class StreamInterrupted(TransientLLMError):
    """The stream broke after some text had been produced (and yielded).

    `partial_text` holds that text; `cause` is the code of what broke it ("connection", "timeout",
    "server_error", ...). It is never retried by this layer: the caller decides what to do with
    the text already shown.
    """

    def __init__(self, partial_text: str, cause: LLMError) -> None:
        self.partial_text = partial_text
        self.cause = cause.code
        super().__init__(
            INTERRUPTED,
            f"stream broke after {len(partial_text)} characters: {cause}",
            status_code=cause.status_code,
        )


def scrub(text: str, secret: str | None) -> str:
    """Remove the api key (and anything shaped like an OpenAI key) from a message."""
    if secret:
        text = text.replace(secret, "***")
    text = _KEYLIKE.sub(r"\1***", text)
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + "..."
    return text


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` (seconds or HTTP date); else None."""
    if not headers:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if _looks_like_date(raw) else None
        if parsed is None:
            return None
        value = parsed.timestamp() - (time.time() if now is None else now)
        return max(value, 0.0)
    return value if value >= 0 else None


def _looks_like_date(raw: str) -> bool:
    try:
        return email.utils.parsedate_tz(raw) is not None
    except (TypeError, ValueError):
        return False


def _status_error(status: int, detail: str, retry_after: float | None, body: object) -> LLMError:
    code = _error_code(body)
    if status in (401, 403):
        return PermanentLLMError(AUTH, detail, status_code=status, provider_code=code)
    if status == 429 and code == "insufficient_quota":
        # Quota exhausted (billing): retrying will not help.
        return PermanentLLMError(RATE_LIMITED, detail, status_code=status, provider_code=code)
    transient = {429: RATE_LIMITED, 408: TIMEOUT, 409: SERVER_ERROR}.get(status)
    if transient is None and status >= 500:
        transient = SERVER_ERROR
    if transient is not None:
        return TransientLLMError(
            transient, detail, status_code=status, retry_after=retry_after, provider_code=code
        )
    return PermanentLLMError(BAD_REQUEST, detail, status_code=status, provider_code=code)


def _error_code(body: object) -> str | None:
    """The provider's error code (or type) from an error body, if it is a short identifier."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            code = inner.get("code") or inner.get("type")
            if isinstance(code, (str, int)) and re.fullmatch(r"[\w.\-]{1,64}", str(code)):
                return str(code)
    return None


def from_sdk_error(exc: BaseException, api_key: str | None) -> LLMError | None:
    """Map an SDK (or transport) exception to our error; None when it is not one of theirs.

    Raise the result `from None`: the SDK exception holds the request and its credentials.
    """
    if isinstance(exc, LLMError):
        return exc
    message = scrub(_provider_message(exc), api_key)
    if isinstance(exc, openai.APITimeoutError):
        return TransientLLMError(TIMEOUT, "the provider did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return TransientLLMError(CONNECTION, _connection_detail(exc, api_key))
    if isinstance(exc, openai.APIStatusError):
        retry_after = parse_retry_after(exc.response.headers)
        return _status_error(exc.status_code, message, retry_after, exc.body)
    if isinstance(exc, openai.APIResponseValidationError):
        return TransientLLMError(SERVER_ERROR, "the provider sent a malformed response")
    if isinstance(exc, openai.APIError):
        # An error event inside an otherwise successful stream.
        return TransientLLMError(SERVER_ERROR, message, provider_code=_error_code(exc.body))
    if isinstance(exc, openai.OpenAIError):
        return PermanentLLMError(CONFIG, message)
    if isinstance(exc, TimeoutError):
        return TransientLLMError(TIMEOUT, type(exc).__name__)
    if isinstance(exc, OSError):
        return TransientLLMError(CONNECTION, type(exc).__name__)
    # Transport errors the SDK did not wrap (httpx2 raises its own hierarchy).
    name = type(exc).__name__
    if "Timeout" in name:
        return TransientLLMError(TIMEOUT, name)
    if any(word in name for word in ("Connect", "Protocol", "Network", "Read", "Write")):
        return TransientLLMError(CONNECTION, name)
    return None


def _provider_message(exc: BaseException) -> str:
    """The provider's own error message when the body has one, else the SDK's."""
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(getattr(exc, "message", None) or exc)


def _connection_detail(exc: BaseException, api_key: str | None) -> str:
    cause = exc.__cause__
    if cause is None:
        return "could not reach the provider"
    return scrub(f"{type(cause).__name__}: {cause}", api_key)
