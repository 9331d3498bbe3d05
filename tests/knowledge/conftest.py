"""Fixtures of the knowledge-base tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _full_text_unless_asked(settings: Any) -> None:
    """No embedding model unless a test sets one; no query vectors cached across tests."""
    from knowledge import vectors

    settings.LLM_EMBEDDING_MODEL = ""
    vectors._embed_query_cached.cache_clear()


@pytest.fixture
def ingest(db: None) -> Any:
    """ingest(tenant, filename, text_or_bytes, key=..., source=..., **document_ingest kwargs)."""
    from knowledge.ingestion import document_ingest, source_get_or_create

    def do(tenant: Any, filename: str, content: str | bytes, **kwargs: Any) -> Any:
        source = kwargs.pop("source", None) or source_get_or_create(
            tenant=tenant, name="Help centre", kind="import"
        )
        return document_ingest(
            tenant=tenant,
            source=source,
            key=kwargs.pop("key", filename),
            filename=filename,
            content=content.encode() if isinstance(content, str) else content,
            **kwargs,
        )

    return do
