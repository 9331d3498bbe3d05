"""Search a tenant's knowledge base: full-text (per-language stemming), plus vectors when possible.

search_knowledge(tenant_id=..., query=...) -> the best passages, always of that tenant only.

Full-text: each chunk was indexed with the text-search configuration of its document's language,
so the query is parsed with that same configuration: one OR branch per configuration the tenant
uses (`search_config = 'x' AND search_vector @@ websearch_to_tsquery('x', query)`, which the GIN
index serves), ranked with ts_rank_cd. `websearch_to_tsquery` wants every word; when that finds
nothing, any word will do (an OR of the query's words, each quoted as a lexeme).

Hybrid: where the database has the embedding column and LLM_EMBEDDING_MODEL is set, the query is
embedded too, the nearest chunks by cosine distance are taken, and both rankings are fused by
reciprocal rank fusion (score = sum of 1 / (60 + rank)). If the query cannot be embedded (provider
down or slow) the full-text results are returned alone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection

from knowledge import conf, vectors
from knowledge.languages import normalize_language

log = logging.getLogger("supportbot.knowledge")

RRF_K = 60
CANDIDATES = 20  # taken from each ranking before fusion
LANGUAGE_BOOST = 1.25  # full-text rank factor for passages in the asker's language
_MAX_QUERY_CHARS = 1000
_MAX_WORDS = 32
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    document_id: int
    title: str
    url: str
    heading: str
    text: str
    # Higher is better. Full-text only: ts_rank_cd (x LANGUAGE_BOOST in the asker's language);
    # hybrid: the reciprocal-rank-fusion score.
    score: float


def search_knowledge(
    *,
    tenant_id: int,
    query: str,
    language: str = "",
    limit: int = 4,
    query_embedding: Sequence[float] | None = None,
) -> list[Passage]:
    """The `limit` passages of tenant `tenant_id` that best answer `query`, best first.

    `language` (ISO 639-1, e.g. the conversation's) gently favours passages in that language.
    `query_embedding` skips the embedding call when the caller already has the query's vector.
    """
    query = " ".join(query.split())[:_MAX_QUERY_CHARS]
    if not query or limit <= 0:
        return []
    configs = _tenant_configs(tenant_id)
    if not configs:
        return []  # the tenant has no knowledge yet
    language = normalize_language(language)
    hybrid = vectors.embeddings_enabled()
    wanted = max(limit, CANDIDATES) if hybrid else limit

    ranked = _full_text(tenant_id, configs, query, language, wanted, any_word=False)
    if not ranked:
        ranked = _full_text(tenant_id, configs, query, language, wanted, any_word=True)
    scores = dict(ranked)

    if hybrid:
        vector = list(query_embedding) if query_embedding else vectors.embed_query(query)
        if vector:
            nearest = vectors.nearest_chunks(
                tenant_id=tenant_id,
                vector=vector,
                model=conf.embedding_model(),
                limit=wanted,
                max_distance=conf.vector_max_distance(),
            )
            scores = fuse([[i for i, _ in ranked], [i for i, _ in nearest]])
    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return _passages(tenant_id, best)


def fuse(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion: each id scores the sum over rankings of 1 / (k + its rank)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return scores


def format_context(passages: Sequence[Passage]) -> str:
    """Numbered passages for a prompt: "[1] Title — heading\\ntext", separated by blank lines."""
    blocks = []
    for number, passage in enumerate(passages, start=1):
        head = passage.title
        if passage.heading and passage.heading != passage.title:
            head = f"{head} — {passage.heading}" if head else passage.heading
        blocks.append(f"[{number}] {head}\n{passage.text.strip()}")
    return "\n\n".join(blocks)


# -- SQL -------------------------------------------------------------------------------------------


def _tenant_configs(tenant_id: int) -> list[str]:
    """The text-search configurations of the tenant's chunks (a loose scan of an index)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH RECURSIVE configs(name) AS ("
            " (SELECT search_config FROM knowledge_chunk WHERE tenant_id = %s"
            "  ORDER BY search_config LIMIT 1)"
            " UNION ALL"
            " SELECT (SELECT search_config FROM knowledge_chunk WHERE tenant_id = %s"
            "  AND search_config > configs.name ORDER BY search_config LIMIT 1)"
            " FROM configs WHERE configs.name IS NOT NULL"
            ") SELECT name FROM configs WHERE name IS NOT NULL",
            [tenant_id, tenant_id],
        )
        return [str(row[0]) for row in cursor.fetchall()]


def any_word_tsquery(query: str) -> str:
    """`'word1' | 'word2' | ...` for to_tsquery: each word of the query quoted as a lexeme."""
    words: list[str] = []
    for word in _WORD.findall(query.lower()):
        if (len(word) > 1 or word.isdigit()) and word not in words:
            words.append(word)
    quoted = ["'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in words[:_MAX_WORDS]]
    return " | ".join(quoted)


def _full_text(
    tenant_id: int,
    configs: list[str],
    query: str,
    language: str,
    limit: int,
    *,
    any_word: bool,
) -> list[tuple[int, float]]:
    """(chunk id, rank) best first. Every value goes in as a parameter; only the number of
    branches (one per configuration) shapes the statement."""
    if any_word:
        query = any_word_tsquery(query)
        if not query:
            return []
        parse = "to_tsquery(%s::regconfig, %s)"
    else:
        parse = "websearch_to_tsquery(%s::regconfig, %s)"
    branches: list[str] = []
    cases: list[str] = []
    branch_params: list[str] = []
    case_params: list[str] = []
    for name in configs:
        branches.append(f"(c.search_config = %s AND c.search_vector @@ {parse})")
        branch_params += [name, name, query]
        cases.append(f"WHEN %s THEN {parse}")
        case_params += [name, name, query]
    # Only placeholders are formatted in (one branch per configuration); values are parameters.
    sql = (
        "SELECT c.id, ts_rank_cd(c.search_vector,"  # noqa: S608
        f" CASE c.search_config {' '.join(cases)} END, 1)"
        " * CASE WHEN d.language = %s THEN %s ELSE 1.0 END AS rank"
        " FROM knowledge_chunk c JOIN knowledge_document d ON d.id = c.document_id"
        f" WHERE c.tenant_id = %s AND ({' OR '.join(branches)})"
        " ORDER BY rank DESC, c.id LIMIT %s"
    )
    boost = LANGUAGE_BOOST if language else 1.0
    params: list[str | int | float] = [
        *case_params,
        language or "-",
        boost,
        tenant_id,
        *branch_params,
        limit,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(int(row[0]), float(row[1])) for row in cursor.fetchall()]


def _passages(tenant_id: int, best: list[tuple[int, float]]) -> list[Passage]:
    if not best:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.id, c.document_id, d.title, d.url, c.heading, c.text"
            " FROM knowledge_chunk c JOIN knowledge_document d ON d.id = c.document_id"
            " WHERE c.tenant_id = %s AND c.id = ANY(%s)",
            [tenant_id, [chunk_id for chunk_id, _ in best]],
        )
        rows = {int(row[0]): row for row in cursor.fetchall()}
    passages = []
    for chunk_id, score in best:
        row = rows.get(chunk_id)
        if row is not None:
            passages.append(
                Passage(
                    chunk_id=chunk_id,
                    document_id=int(row[1]),
                    title=str(row[2]),
                    url=str(row[3]),
                    heading=str(row[4]),
                    text=str(row[5]),
                    score=score,
                )
            )
    return passages
