"""Erasing a person empties the cache of query vectors (keyed by visitors' words) in every
process: this one at once, the others before their next search."""

from __future__ import annotations

from typing import Any

import pytest

from knowledge import vectors
from knowledge.personal_data import QueryEmbeddingCache
from supportbot.compliance.registry import DataSubject, registered_stores
from supportbot.redis_store import get_redis, redis_key

pytestmark = pytest.mark.django_db


def test_erasure_empties_the_query_vector_cache(make_tenant: Any, llm: Any, settings: Any) -> None:
    settings.LLM_EMBEDDING_MODEL = "text-embedding-3-small"
    tenant, _ = make_tenant()
    store = next(s for s in registered_stores() if s.name == "knowledge.query_embeddings")
    assert isinstance(store, QueryEmbeddingCache)

    assert vectors.embed_query("where is parcel 4411", tenant_id=tenant.pk) is not None
    assert vectors.embed_query("where is parcel 4411", tenant_id=tenant.pk) is not None
    assert len(llm.embedding_requests()) == 1  # the second came from the cache

    subject = DataSubject(tenant_id=tenant.pk)
    assert store.export(subject) == {}
    assert store.erase(subject) == {"query_embeddings": 1}
    assert vectors._embed_query_cached.cache_info().currsize == 0
    assert vectors.embed_query("where is parcel 4411", tenant_id=tenant.pk) is not None
    assert len(llm.embedding_requests()) == 2

    # Another process erased someone: this one forgets its cache before the next search.
    get_redis().incr(redis_key("query-embeddings", "erasures"))
    assert vectors.embed_query("where is parcel 4411", tenant_id=tenant.pk) is not None
    assert len(llm.embedding_requests()) == 3
