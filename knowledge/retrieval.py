"""Search a tenant's knowledge base: full-text (per-language stemming), plus vectors when possible.

search_knowledge(tenant_id=..., query=...) -> the best passages, always of that tenant only.

Full-text: each chunk was indexed with the text-search configuration of its document's language,
so the query is parsed with that same configuration: one OR branch per configuration the tenant
uses (`search_config = 'x' AND search_vector @@ websearch_to_tsquery('x', query)`, which the GIN
index serves), ranked with ts_rank_cd. `websearch_to_tsquery` wants every word; when that finds
nothing, the query's words become lexemes of each language (quoted, given as parameters) and
are tried in turn as: every lexeme but one (for 3 to 8 lexemes: "can you tell me about refunds
for damaged items" still finds what says refund, damaged and item without "tell"); any lexeme,
leaving out those that Postgres's own statistics of the column (pg_stats.most_common_elems) show
in too many chunks to narrow anything; and last the rarest of those. At most CANDIDATES_MAX
matching chunks are ranked, so a query of common words only stays fast (ranking an arbitrary
subset of its matches). Chunks in the asker's language (its configuration) rank a little higher.

Hybrid: where the database has the embedding column and LLM_EMBEDDING_MODEL is set, the query is
embedded too, the nearest chunks by cosine distance are taken, and both rankings are fused by
reciprocal rank fusion (score = sum of 1 / (60 + rank)). If the query cannot be embedded (provider
down or slow) the full-text results are returned alone.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection

from knowledge import conf, vectors
from knowledge.languages import SIMPLE, normalize_language, search_config_for
from supportbot.llm.data_blocks import data_block

log = logging.getLogger("supportbot.knowledge")

RRF_K = 60
CANDIDATES = 20  # taken from each ranking before fusion
CANDIDATES_MAX = 500  # matching chunks ranked by full text, at most
STATS_MAX_AGE = 300.0  # seconds the lexeme statistics are reused
MOST_WORDS_MAX = 8  # "every word but one" is tried for queries of 3 to this many lexemes
LANGUAGE_BOOST = 1.25  # full-text rank factor for passages in the asker's language's config
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

    ranked = _full_text(tenant_id, configs, query, language, wanted)
    scores = dict(ranked)

    if hybrid:
        vector = (
            list(query_embedding)
            if query_embedding
            else vectors.embed_query(query, tenant_id=tenant_id)
        )
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


def format_context(passages: Sequence[Passage], *, start: int = 1) -> str:
    """Numbered passages for a prompt, each a data block the passage cannot close:
    `<passage number="1">` then "[1] Title — heading" and the text, then `</passage>`.

    Passages are untrusted (anyone who can upload writes them): every data tag inside the title,
    heading or text is defused (supportbot.llm.data_blocks). The heading is left out when it only
    repeats the title. `start` is the first number: passages found later in a reply continue the
    numbering of those the model already has.
    """
    blocks = []
    for number, passage in enumerate(passages, start=start):
        head = passage.title
        if passage.heading and passage.heading != passage.title:
            head = f"{head} — {passage.heading}" if head else passage.heading
        blocks.append(
            data_block("passage", f"[{number}] {head}\n{passage.text.strip()}", number=number)
        )
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


def query_words(query: str) -> list[str]:
    """The distinct words of a query (at most 32), lower-cased: what the any-word search uses."""
    words: list[str] = []
    for word in _WORD.findall(query.lower()):
        if (len(word) > 1 or word.isdigit()) and word not in words:
            words.append(word)
    return words[:_MAX_WORDS]


def lexeme_tsquery(lexemes: Sequence[str]) -> str:
    """`'lexeme1' | 'lexeme2' | ...` in tsquery syntax, each lexeme quoted (no normalisation)."""
    return " | ".join("'" + lx.replace("\\", "\\\\").replace("'", "''") + "'" for lx in lexemes)


@dataclass(frozen=True)
class _LexemeStats:
    frequency: dict[str, float]  # fraction of all chunks that contain the lexeme
    rows: float  # chunks in the table (planner's estimate)
    read_at: float


_stats: dict[str, _LexemeStats] = {}
_stats_lock = threading.Lock()


def _lexeme_stats() -> _LexemeStats:
    """The planner's statistics of the search vectors: the most common lexemes and how common
    they are (ANALYZE keeps up to ten per unit of the column's statistics target). Read again
    after STATS_MAX_AGE seconds."""
    key = str(connection.settings_dict.get("NAME"))
    now = time.monotonic()
    with _stats_lock:
        found = _stats.get(key)
    if found is not None and now - found.read_at < STATS_MAX_AGE:
        return found
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs, c.reltuples"
            " FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema()"
            " AND s.tablename = 'knowledge_chunk' AND s.attname = 'search_vector'"
            " WHERE c.oid = 'knowledge_chunk'::regclass"
        )
        row = cursor.fetchone()
    elems, freqs, rows = row or (None, None, 0.0)
    frequency: dict[str, float] = {}
    if elems and freqs:
        # (the per-element frequencies are followed by their minimum, maximum, ...)
        frequency = dict(zip(elems, freqs[: len(elems)], strict=True))
    found = _LexemeStats(frequency, max(float(rows or 0.0), 0.0), now)
    with _stats_lock:
        _stats[key] = found
    return found


def _split_common(lexemes: list[str], stats: _LexemeStats) -> tuple[list[str], list[str]]:
    """(informative, common): common lexemes are expected in more than CANDIDATES_MAX chunks of
    the whole table; the others narrow the search. A lexeme not among the most common ones is
    rarer than all of them. Without statistics (never analysed) every lexeme is informative.
    `common` is sorted rarest first."""
    if not stats.frequency:
        return lexemes, []
    expected = {lx: stats.frequency.get(lx, 0.0) * stats.rows for lx in lexemes}
    informative = [lx for lx in lexemes if expected[lx] <= CANDIDATES_MAX]
    common = sorted(
        (lx for lx in lexemes if expected[lx] > CANDIDATES_MAX), key=lambda lx: (expected[lx], lx)
    )
    return informative, common


def most_words_tsquery(lexemes: Sequence[str]) -> str:
    """All the lexemes but any one: `('a' & 'b') | ('a' & 'c') | ('b' & 'c')` for a, b, c."""
    groups = []
    for left_out in range(len(lexemes)):
        kept = [lx for i, lx in enumerate(lexemes) if i != left_out]
        groups.append("(" + lexeme_tsquery(kept).replace(" | ", " & ") + ")")
    return " | ".join(groups)


def _fallback_queries(configs: list[str], query: str) -> list[dict[str, str]]:
    """The tries after every-word found nothing, each a tsquery per configuration:
    every lexeme but one (3 to MOST_WORDS_MAX lexemes); any informative lexeme; the rarest
    common lexeme."""
    words = query_words(query)
    if not words:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, tsvector_to_array(to_tsvector(name::regconfig, %s))"
            " FROM unnest(%s::text[]) AS name",
            [" ".join(words), configs],
        )
        rows = cursor.fetchall()
    stats = _lexeme_stats()
    most: dict[str, str] = {}
    informative_any: dict[str, str] = {}
    rarest_common: dict[str, str] = {}
    for name, found in rows:
        lexemes = sorted(found or [])
        if 3 <= len(lexemes) <= MOST_WORDS_MAX:
            most[str(name)] = most_words_tsquery(lexemes)
        informative, common = _split_common(lexemes, stats)
        if informative:
            informative_any[str(name)] = lexeme_tsquery(informative)
        if common:
            rarest_common[str(name)] = lexeme_tsquery(common[:1])
    return [tries for tries in (most, informative_any, rarest_common) if tries]


def _full_text(
    tenant_id: int, configs: list[str], query: str, language: str, limit: int
) -> list[tuple[int, float]]:
    """Every word (websearch_to_tsquery per configuration), then the fallbacks in turn."""
    ranked = _rank(
        tenant_id,
        {name: ("websearch_to_tsquery(%s::regconfig, %s)", [name, query]) for name in configs},
        language,
        limit,
    )
    if ranked:
        return ranked
    for tries in _fallback_queries(configs, query):
        ranked = _rank(
            tenant_id,
            {name: ("%s::tsquery", [tsquery]) for name, tsquery in tries.items()},
            language,
            limit,
        )
        if ranked:
            return ranked
    return []


def _rank(
    tenant_id: int,
    tsqueries: dict[str, tuple[str, list[str]]],
    language: str,
    limit: int,
) -> list[tuple[int, float]]:
    """(chunk id, rank) best first, for one tsquery (SQL and its parameters) per configuration.
    Every value goes in as a parameter; only the number of branches shapes the statement.

    At most CANDIDATES_MAX matching chunks are ranked: ranking reads each chunk's search vector,
    and a query of common words only would otherwise rank most of the tenant's chunks. The
    matches are a materialised CTE so that the planner picks the GIN index for them (a LIMIT
    in the same query block tempts it into a sequential scan that stops "early").
    """
    branches: list[str] = []
    cases: list[str] = []
    branch_params: list[str] = []
    case_params: list[str] = []
    for name, (tsquery, values) in tsqueries.items():
        branches.append(f"(c.search_config = %s AND c.search_vector @@ {tsquery})")
        branch_params += [name, *values]
        cases.append(f"WHEN %s THEN {tsquery}")
        case_params += [name, *values]
    # The asker's language: its configuration's chunks rank a little higher.
    boosted = search_config_for(language) if language else ""
    # Only placeholders are formatted in (one branch per configuration); values are parameters.
    sql = (
        "WITH matches AS MATERIALIZED ("  # noqa: S608
        " SELECT c.id, c.search_config, c.search_vector FROM knowledge_chunk c"
        f" WHERE c.tenant_id = %s AND ({' OR '.join(branches)}))"
        " SELECT m.id, ts_rank_cd(m.search_vector,"
        f" CASE m.search_config {' '.join(cases)} END, 1)"
        " * CASE WHEN m.search_config = %s THEN %s ELSE 1.0 END AS rank"
        " FROM (SELECT * FROM matches LIMIT %s) AS m"
        " ORDER BY rank DESC, m.id LIMIT %s"
    )
    params: list[str | int | float] = [
        tenant_id,
        *branch_params,
        *case_params,
        boosted if boosted and boosted != SIMPLE else "-",
        LANGUAGE_BOOST,
        CANDIDATES_MAX,
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
