"""embed_texts: embedding vectors for a list of texts, in batches, with retries and a record.

Same rules as the chat calls: SDK errors mapped to TransientLLMError / PermanentLLMError,
timeouts on every attempt, retries (backoff with full jitter, Retry-After honoured) bounded by
`max_retries` per batch and by the config's wall-clock deadline for the whole call, one
CallRecord per call (not per batch). Vectors are requested as floats (`encoding_format=float`),
which every OpenAI-compatible server understands.
"""

from __future__ import annotations

import math
from typing import Any

import openai
from openai.types import CreateEmbeddingResponse

from .calls import Call, Recorder
from .client import get_client
from .config import ProviderConfig
from .errors import (
    CONFIG,
    SERVER_ERROR,
    LLMError,
    PermanentLLMError,
    TransientLLMError,
)
from .events import OUTCOME_ERROR, OUTCOME_OK, Usage
from .tokens import count_tokens

DEFAULT_BATCH_SIZE = 64  # inputs per request (OpenAI accepts up to 2048)


def embed_texts(
    config: ProviderConfig,
    texts: list[str],
    *,
    model: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dimensions: int | None = None,
    on_record: Recorder | None = None,
) -> list[list[float]]:
    """One vector per text, in order, from the embeddings endpoint of `config`'s provider.

    `model` is the embedding model (the Azure deployment name on Azure); `config.model` is not
    used. `dimensions` is sent only when given (text-embedding-3 models can shorten vectors).
    Raises ValueError for an empty text, PermanentLLMError (400/401/403/404, bad config) or
    TransientLLMError (429/5xx/connection/timeout or a malformed response, once the retries or
    the deadline are exhausted). An empty list costs no request.
    """
    if not texts:
        return []
    if any(not text or not text.strip() for text in texts):
        raise ValueError("cannot embed an empty text")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    call = Call(config, on_record)
    vectors: list[list[float]] = []
    prompt_tokens = 0
    reported_model: str | None = None
    try:
        if not model:
            raise PermanentLLMError(CONFIG, "the embedding model is empty")
        client = get_client(config)
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            batch_vectors, tokens, reported = _embed_batch(
                client, call, batch, model=model, dimensions=dimensions
            )
            vectors.extend(batch_vectors)
            prompt_tokens += tokens
            reported_model = reported_model or reported
    except LLMError as err:
        call.record(OUTCOME_ERROR, error_code=err.code, model=model or None)
        err.__context__ = None  # the SDK exception holds the request and its credentials
        raise err from None
    except BaseException:
        call.record(OUTCOME_ERROR, error_code="internal", model=model or None)
        raise
    call.record(
        OUTCOME_OK,
        usage=Usage(prompt_tokens, 0, prompt_tokens),
        model=reported_model or model,
    )
    return vectors


def _embed_batch(
    client: openai.OpenAI,
    call: Call,
    batch: list[str],
    *,
    model: str,
    dimensions: int | None,
) -> tuple[list[list[float]], int, str | None]:
    """(vectors, prompt tokens, model the provider named) for one request's worth of texts."""
    kwargs: dict[str, Any] = {"model": model, "input": batch, "encoding_format": "float"}
    if dimensions is not None:
        kwargs["dimensions"] = dimensions

    def request() -> tuple[CreateEmbeddingResponse, list[list[float]]]:
        response = client.embeddings.create(**kwargs, timeout=call.timeouts())
        return response, _vectors(response, len(batch))

    response, vectors = call.attempt(request, model=model)
    usage = getattr(response, "usage", None)
    tokens = getattr(usage, "prompt_tokens", None)
    if not isinstance(tokens, int):
        tokens = sum(count_tokens(text) for text in batch)
    return vectors, tokens, getattr(response, "model", None) or None


def _vectors(response: Any, expected: int) -> list[list[float]]:
    """The vectors of a response in input order; a malformed response is a transient error."""
    data = list(getattr(response, "data", None) or [])
    if len(data) != expected:
        raise TransientLLMError(
            SERVER_ERROR, f"the provider returned {len(data)} embeddings for {expected} inputs"
        )
    ordered = sorted(data, key=lambda item: getattr(item, "index", 0) or 0)
    vectors: list[list[float]] = []
    dims: int | None = None
    for item in ordered:
        raw = getattr(item, "embedding", None)
        if not isinstance(raw, list) or not raw:
            raise TransientLLMError(SERVER_ERROR, "the provider returned a malformed embedding")
        vector = [float(x) for x in raw]
        if not all(math.isfinite(x) for x in vector):
            raise TransientLLMError(SERVER_ERROR, "the provider returned a non-finite embedding")
        if dims is None:
            dims = len(vector)
        elif len(vector) != dims:
            raise TransientLLMError(
                SERVER_ERROR, "the provider returned embeddings of different sizes"
            )
        vectors.append(vector)
    return vectors
