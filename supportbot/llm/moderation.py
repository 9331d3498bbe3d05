"""moderate: ask a moderation endpoint whether texts break its content policy.

The endpoint is OpenAI's `POST /moderations` (`client.moderations.create`), at the provider's
base URL or at any OpenAI-compatible moderation service: the caller passes a `ProviderConfig`
whose `model` is the moderation model (e.g. "omni-moderation-latest") and whose base URL is the
service's. Azure OpenAI and local models have no such endpoint (`has_moderation_endpoint`).

Errors are those of the chat calls (errors.py): the one retry loop (`calls.Call.attempt`)
retries 429/5xx/connection/timeouts within the config's deadline and raises LLMError when
the check cannot be made. What happens then is the caller's policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import openai
from openai.types import ModerationCreateResponse

from .calls import Call, Cancelled, Recorder
from .client import get_client
from .config import ProviderConfig
from .errors import CONFIG, CONNECTION, LLMError, PermanentLLMError, TransientLLMError
from .events import OUTCOME_ERROR, OUTCOME_OK

DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
# Providers whose own API has a moderation endpoint.
MODERATION_PROVIDERS = frozenset({"openai"})


def has_moderation_endpoint(provider: str) -> bool:
    """True when `provider`'s own API answers `POST /moderations` (OpenAI; not Azure, not local)."""
    return provider in MODERATION_PROVIDERS


@dataclass(frozen=True, slots=True)
class ModerationVerdict:
    """The answer for a batch of texts: flagged when any of them is, and the categories (sorted
    names, e.g. "harassment", "self-harm/intent") flagged in any of them."""

    flagged: bool
    categories: tuple[str, ...] = ()
    flagged_inputs: tuple[int, ...] = ()  # indexes of the flagged texts
    model: str = ""


def _verdict(response: ModerationCreateResponse, count: int) -> ModerationVerdict:
    if len(response.results) != count:
        raise TransientLLMError(CONNECTION, "the moderation answer does not match the inputs")
    categories: set[str] = set()
    flagged: list[int] = []
    for index, result in enumerate(response.results):
        if not result.flagged:
            continue
        flagged.append(index)
        for name, value in result.categories.model_dump(by_alias=True).items():
            if value is True:
                categories.add(name)
    return ModerationVerdict(
        flagged=bool(flagged),
        categories=tuple(sorted(categories)),
        flagged_inputs=tuple(flagged),
        model=response.model or "",
    )


def _create(
    client: openai.OpenAI, call: Call, model: str, texts: list[str]
) -> ModerationCreateResponse:
    return client.moderations.create(model=model, input=texts, timeout=call.timeouts())


def moderate(
    config: ProviderConfig,
    texts: Sequence[str],
    *,
    on_record: Recorder | None = None,
    cancelled: Cancelled | None = None,
) -> ModerationVerdict:
    """The moderation verdict for `texts` (empty texts are skipped; none: not flagged).

    Raises LLMError: PermanentLLMError("config") for a provider without the endpoint, else as
    the chat calls do once retries and the deadline are spent. `on_record` gets one CallRecord.
    """
    inputs = [text for text in texts if text.strip()]
    if not inputs:
        return ModerationVerdict(flagged=False)
    call = Call(config, on_record, cancelled=cancelled)
    try:
        if not has_moderation_endpoint(config.provider):
            raise PermanentLLMError(CONFIG, f"{config.provider} has no moderation endpoint")
        client = get_client(config)
        response = call.attempt(lambda: _create(client, call, config.model, inputs))
        verdict = _verdict(response, len(inputs))
    except LLMError as err:
        call.record(OUTCOME_ERROR, error_code=err.code)
        err.__context__ = None  # the SDK exception holds the request and its credentials
        raise err from None
    except BaseException:
        call.record(OUTCOME_ERROR, error_code="internal")
        raise
    call.record(OUTCOME_OK, model=verdict.model or config.model)
    return verdict
