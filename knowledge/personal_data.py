"""What the knowledge base holds that was derived from a visitor's words, registered with the
compliance layer: the cached vectors of search queries (a visitor's message is a query). No
chunk or document is ever built from visitor text."""

from __future__ import annotations

from knowledge.vectors import query_cache_erase
from supportbot.compliance.registry import DataSubject


class QueryEmbeddingCache:
    """Query vectors cached per process, keyed by the query's text. The cache cannot tell whose
    words a key holds, so erasing anyone empties it in every process (before its next search)."""

    name = "knowledge.query_embeddings"

    def export(self, subject: DataSubject) -> dict[str, list[dict[str, object]]]:
        return {}

    def erase(self, subject: DataSubject) -> dict[str, int]:
        return {"query_embeddings": query_cache_erase()}
