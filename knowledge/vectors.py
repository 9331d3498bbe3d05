"""The optional embedding column (pgvector) of knowledge chunks: install, detect, write, search.

Postgres servers without the `vector` extension (or a role that may not create it) run the
knowledge base on full-text search alone: migration 0002 calls `install()`, which adds the column
`knowledge_chunk.embedding vector` (no fixed size: any model's vectors fit) only when
`CREATE EXTENSION IF NOT EXISTS vector` succeeds. HNSW indexes (cosine distance) are partial
indexes per vector size, on `(embedding::vector(N))` where `vector_dims(embedding) = N`, for the
common sizes in INDEXED_DIMENSIONS; vectors of another size are searched exactly (no index).
Everything here is raw SQL: the column is not a model field.

Embeddings are computed only when LLM_EMBEDDING_MODEL is set (see knowledge.conf); each chunk
records the model that made its vector, and a search compares only vectors of the current model.
Every embeddings call passes the tenant's limits first (`CallBudget.reserve_embedding`) and
adds its tokens and cost to the tenant's usage; one over budget is refused
(`UsageLimitReached`, an LLMError): a search goes on with full-text results, an import indexes
its document for full-text search only.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from knowledge import conf
from supportbot.llm import CallRecord, LLMError, ProviderConfig, embed_texts
from supportbot.redis_store import get_redis, redis_key
from supportbot.tenants.limits import CallBudget, tenant_limits_by_id
from supportbot.tenants.usage import usage_day_add

log = logging.getLogger("supportbot.knowledge")

TABLE = "knowledge_chunk"
# Sizes of common embedding models: 256 (shortened text-embedding-3), 384 (MiniLM, bge-small),
# 512, 768 (nomic, bge-base), 1024 (bge-large, mxbai), 1536 (text-embedding-3-small, ada-002).
INDEXED_DIMENSIONS = (256, 384, 512, 768, 1024, 1536)
_MAX_INDEXED = 2000  # pgvector's HNSW limit for the vector type


@dataclass(frozen=True)
class VectorSupport:
    column: bool  # knowledge_chunk.embedding exists
    iterative_scan: bool  # pgvector >= 0.8: filtered HNSW scans keep going until enough rows


_cache: dict[str, VectorSupport] = {}
_cache_lock = threading.Lock()


def _cache_key(using: str) -> str:
    return f"{using}:{connections[using].settings_dict.get('NAME')}"


def reset_cache() -> None:
    with _cache_lock:
        _cache.clear()


def support(using: str = "default") -> VectorSupport:
    """What this database offers (read once per database and process)."""
    key = _cache_key(using)
    with _cache_lock:
        found = _cache.get(key)
    if found is not None:
        return found
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s"
            " AND column_name = 'embedding')",
            [TABLE],
        )
        column = bool(cursor.fetchone()[0])
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    found = VectorSupport(column=column, iterative_scan=_version(row[0] if row else "") >= (0, 8))
    with _cache_lock:
        _cache[key] = found
    return found


def has_vector_column(using: str = "default") -> bool:
    return support(using).column


def embeddings_enabled(using: str = "default") -> bool:
    """Both an embedding model configured and a database that can store vectors."""
    return bool(conf.embedding_model()) and has_vector_column(using)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


# -- installation (migration 0002) -----------------------------------------------------------------


def install(schema_editor: BaseDatabaseSchemaEditor) -> bool:
    """Create the extension, the column and its indexes where the server allows; True if it did.

    Run inside the migration's transaction: a refused CREATE EXTENSION is rolled back to a
    savepoint and the knowledge base goes on with full-text search only.
    """
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return False
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except DatabaseError as exc:
        reason = (str(exc).strip().splitlines() or ["refused"])[0]
        log.info("pgvector is not available (%s): knowledge search is full-text only", reason)
        reset_cache()
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS embedding vector")
        for dims in INDEXED_DIMENSIONS:
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {TABLE}_embedding_{dims}_hnsw ON {TABLE}"
                f" USING hnsw ((embedding::vector({dims})) vector_cosine_ops)"
                f" WHERE vector_dims(embedding) = {dims}"
            )
    reset_cache()
    return True


def uninstall(schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Drop the column and its indexes (the extension stays: other databases may use it)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} DROP COLUMN IF EXISTS embedding")
    reset_cache()


# -- reading and writing ---------------------------------------------------------------------------


def to_literal(vector: Sequence[float]) -> str:
    """pgvector's text form: '[0.1,0.2,...]'. Refuses non-finite values."""
    if not vector or not all(math.isfinite(x) for x in vector):
        raise ValueError("an embedding must be a non-empty list of finite numbers")
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def store_embeddings(
    chunk_ids: Sequence[int],
    vectors: Sequence[Sequence[float]],
    *,
    model: str,
    using: str = "default",
) -> int:
    """Write each chunk's vector and the model that made it; returns the rows updated."""
    if len(chunk_ids) != len(vectors):
        raise ValueError("one vector per chunk")
    if not chunk_ids:
        return 0
    with connections[using].cursor() as cursor:
        cursor.execute(
            "UPDATE knowledge_chunk AS c SET embedding = v.embedding::vector, embedding_model = %s"
            " FROM unnest(%s::bigint[], %s::text[]) AS v(id, embedding) WHERE c.id = v.id",
            [model, list(chunk_ids), [to_literal(v) for v in vectors]],
        )
        return int(cursor.rowcount)


def nearest_chunks(
    *,
    tenant_id: int,
    vector: Sequence[float],
    model: str,
    limit: int,
    max_distance: float | None = None,
    using: str = "default",
) -> list[tuple[int, float]]:
    """(chunk id, cosine distance) of the tenant's chunks nearest to `vector`, nearest first;
    none farther than `max_distance` when it is given."""
    dims = len(vector)
    if not 0 < dims <= 16000:
        raise ValueError("bad vector size")
    literal = to_literal(vector)
    # The size is an int from len(): safe to write into the statement, and it must be literal
    # there for the planner to match the partial index of that size.
    cast = f"::vector({dims})"
    sql = (
        "WITH nearest AS MATERIALIZED ("  # noqa: S608 (only the int size is formatted in)
        f" SELECT c.id, c.embedding{cast} <=> %s{cast} AS distance FROM {TABLE} c"
        f" WHERE c.tenant_id = %s AND c.embedding_model = %s AND vector_dims(c.embedding) = {dims}"
        f" ORDER BY c.embedding{cast} <=> %s{cast} LIMIT %s"
        ") SELECT id, distance FROM nearest WHERE distance <= %s ORDER BY distance, id"
    )
    cut = 2.0 if max_distance is None else max_distance  # cosine distances lie in [0, 2]
    params: list[str | int | float] = [literal, tenant_id, model, literal, limit, cut]
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        if support(using).iterative_scan and dims <= _MAX_INDEXED:
            # Other tenants' chunks are filtered out after the index: keep scanning until
            # `limit` rows of this tenant were found (pgvector >= 0.8), for this transaction.
            cursor.execute(
                "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
                " set_config('hnsw.ef_search', %s, true)",
                [str(max(40, 2 * limit))],
            )
        cursor.execute(sql, params)
        return [(int(row[0]), float(row[1])) for row in cursor.fetchall()]


# -- embeddings through the provider ---------------------------------------------------------------


def chunk_embedding_text(title: str, heading: str, text: str) -> str:
    """What is embedded for a chunk: its document's title and its headings give it context."""
    head = " — ".join(part for part in (title.strip(), heading.strip()) if part)
    return f"{head}\n\n{text}" if head else text


def _embed_for_tenant(
    tenant_id: int, config: ProviderConfig, texts: list[str], model: str
) -> list[list[float]]:
    """embed_texts through the tenant's limits; the call's usage is added to the tenant's."""
    reservation = CallBudget(tenant_id, tenant_limits_by_id(tenant_id)).reserve_embedding(
        config, texts, model=model
    )
    records: list[CallRecord] = []
    try:
        return embed_texts(config, texts, model=model, on_record=records.append)
    finally:
        for record in records:
            cost = reservation.settle(record)
            usage_day_add(
                tenant_id=tenant_id,
                model=record.model,
                requests=record.attempts,
                prompt_tokens=record.prompt_tokens or 0,
                cost=cost,
            )
        reservation.release()


def embed_passages(texts: list[str], *, tenant_id: int) -> list[list[float]]:
    """Vectors for chunks of tenant `tenant_id` (ingestion): the configured model, the server's
    retries and deadline. Raises LLMError (UsageLimitReached when over the tenant's budget)."""
    model = conf.embedding_model()
    return _embed_for_tenant(tenant_id, conf.embedding_provider_config(), texts, model)


def embed_query(query: str, *, tenant_id: int) -> list[float] | None:
    """The vector of a search query of tenant `tenant_id`, or None when the provider fails, is
    slow or the tenant is over budget (logged).

    A search must not wait long: one attempt bounded by KNOWLEDGE_QUERY_EMBEDDING_TIMEOUT.
    Recent queries are cached in the process (a cached vector costs no call).
    """
    query = " ".join(query.split())
    model = conf.embedding_model()
    if not query or not model:
        return None
    config = conf.embedding_provider_config(deadline=conf.query_embedding_timeout(), max_retries=0)
    query_cache_forget_if_erased()
    try:
        return list(_embed_query_cached(tenant_id, config, model, query))
    except LLMError as exc:
        log.warning("query embedding failed (%s): full-text results only", exc.code)
        return None


_ERASURES_KEY = redis_key("query-embeddings", "erasures")
_erasures_seen: list[int] = [0]


def query_cache_forget_if_erased() -> None:
    """Empty this process's cache of query vectors (a visitor's words are its keys) when a
    person was erased since it was last emptied, in any process: the count is in Redis."""
    try:
        erasures = int(get_redis().get(_ERASURES_KEY) or 0)
    except redis.RedisError:
        log.warning("query cache: erasure count unavailable; cache emptied")
        erasures = -1
    if erasures != _erasures_seen[0] or erasures < 0:
        _embed_query_cached.cache_clear()
        _erasures_seen[0] = erasures


def query_cache_erase() -> int:
    """Tell every process to empty its query-vector cache before its next search, and empty
    this one's now; returns how many cached queries this process dropped."""
    get_redis().incr(_ERASURES_KEY)
    dropped = _embed_query_cached.cache_info().currsize
    query_cache_forget_if_erased()
    return dropped


@functools.lru_cache(maxsize=512)
def _embed_query_cached(
    tenant_id: int, config: ProviderConfig, model: str, query: str
) -> tuple[float, ...]:
    (vector,) = _embed_for_tenant(tenant_id, config, [query], model)
    return tuple(vector)
