"""Provider-neutral LLM layer over the openai SDK (OpenAI, Azure OpenAI, OpenAI-compatible servers).

The only package of the project that talks to the SDK. No Django here.
"""

from .chat import complete_chat, stream_chat
from .config import ChatParams, ProviderConfig, provider_config_from_settings
from .embeddings import embed_texts
from .errors import (
    LLMError,
    PermanentLLMError,
    StreamInterrupted,
    TransientLLMError,
)
from .events import CallRecord, Finished, TextDelta, ToolCall, Usage
from .moderation import (
    DEFAULT_MODERATION_MODEL,
    ModerationVerdict,
    has_moderation_endpoint,
    moderate,
)
from .tokens import count_message_tokens, count_tokens

__all__ = [
    "DEFAULT_MODERATION_MODEL",
    "CallRecord",
    "ChatParams",
    "Finished",
    "LLMError",
    "ModerationVerdict",
    "PermanentLLMError",
    "ProviderConfig",
    "StreamInterrupted",
    "TextDelta",
    "ToolCall",
    "TransientLLMError",
    "Usage",
    "complete_chat",
    "count_message_tokens",
    "count_tokens",
    "embed_texts",
    "has_moderation_endpoint",
    "moderate",
    "provider_config_from_settings",
    "stream_chat",
]
