"""Knowledge-base settings, read from django.conf.settings with defaults.

LLM_EMBEDDING_MODEL                 embedding model (Azure: deployment) for hybrid search; empty
                                    (the default): full-text search only, no embeddings computed.
                                    It is reached through the server's LLM_PROVIDER / LLM_BASE_URL /
                                    LLM_API_KEY / LLM_API_VERSION, whatever a tenant's chat uses.
KNOWLEDGE_MAX_FILE_BYTES            largest file accepted by upload and import (20 MiB).
KNOWLEDGE_MAX_LINE_CHARS            longest line of a Markdown or text file (20,000 characters).
KNOWLEDGE_MAX_PDF_PAGES             most pages of a PDF (500).
KNOWLEDGE_MAX_TEXT_CHARS            most characters of text in a file, or extracted from an HTML
                                    page or a PDF (2,000,000). A file over any of these caps is
                                    refused, with a message naming the cap; never cut short.
KNOWLEDGE_QUERY_EMBEDDING_TIMEOUT   seconds a search waits for its query's embedding before it
                                    goes on with full-text results only (3 s).
KNOWLEDGE_VECTOR_MAX_DISTANCE       nearest chunks farther than this cosine distance are left out
                                    of the vector ranking (None, the default: no cut-off). What
                                    "unrelated" means depends on the model: set it per model.
"""

from __future__ import annotations

from django.conf import settings

from knowledge.parsers import ParseLimits
from supportbot.llm import ProviderConfig, provider_config_from_settings


def embedding_model() -> str:
    return str(getattr(settings, "LLM_EMBEDDING_MODEL", "") or "").strip()


def max_file_bytes() -> int:
    return int(getattr(settings, "KNOWLEDGE_MAX_FILE_BYTES", 20 * 1024 * 1024))


def parse_limits() -> ParseLimits:
    defaults = ParseLimits()
    return ParseLimits(
        max_line_chars=int(getattr(settings, "KNOWLEDGE_MAX_LINE_CHARS", defaults.max_line_chars)),
        max_pdf_pages=int(getattr(settings, "KNOWLEDGE_MAX_PDF_PAGES", defaults.max_pdf_pages)),
        max_text_chars=int(getattr(settings, "KNOWLEDGE_MAX_TEXT_CHARS", defaults.max_text_chars)),
    )


def query_embedding_timeout() -> float:
    return float(getattr(settings, "KNOWLEDGE_QUERY_EMBEDDING_TIMEOUT", 3.0))


def vector_max_distance() -> float | None:
    value = getattr(settings, "KNOWLEDGE_VECTOR_MAX_DISTANCE", None)
    return None if value is None or value == "" else float(value)


def embedding_provider_config(
    *, deadline: float | None = None, max_retries: int | None = None
) -> ProviderConfig:
    """The server's provider, for embeddings (one vector space for every tenant)."""
    return provider_config_from_settings(
        settings, model=embedding_model(), deadline=deadline, max_retries=max_retries
    )
