"""Knowledge-base search latency: `search_knowledge` at 10k and 100k chunks for one tenant.

    .venv/bin/python bench/retrieval.py [--sizes 10000 100000] [--queries 300] [--json out.json]

A scratch database (`supportbot_bench_retrieval_<pid>`, created, migrated and dropped) on the
Postgres of DATABASE_URL, else on an embedded Postgres (18, with pgvector) under var/bench/.
Noise tenants (4 x 5,000 chunks by default) share the vocabulary of the measured tenant, so
their rows sit in the same GIN and HNSW indexes. The measured tenant is grown to each size in
turn. Chunks are 150-300 words of a synthetic vocabulary of 20,000 words with Zipf-Mandelbrot
frequencies (1 / (rank + 60)), plus English stop words (30% of the words), 10 chunks per
document, 10% of the documents Spanish. They are written straight into the tables with COPY
(search vectors built by the same SQL as ingestion; vectors from the scripted server's
`hashed_embedding`, 256 dimensions, of each chunk's title, heading and first 60 words), and
the GIN and HNSW indexes are rebuilt after each load, then VACUUM ANALYZE.

Each query goes through `search_knowledge(tenant_id=..., query=..., limit=4)` in this process,
as the reply worker calls it. Three modes, each over the same queries:

full-text      LLM_EMBEDDING_MODEL unset: the per-language OR of websearch_to_tsquery branches,
               and the any-word fallback when nothing has every word.
hybrid (db)    the query vector given (`query_embedding=`): full text + nearest chunks by cosine
               distance (HNSW, iterative scan), fused by RRF. The database's share of hybrid.
hybrid (http)  LLM_EMBEDDING_MODEL set: the query is also embedded by the scripted
               OpenAI-compatible server (its own process on loopback) through embed_texts.

Queries are question-like: 50% use 2-3 words of one of the tenant's chunks (every word found),
30% add a word from elsewhere (the any-word fallback runs), 20% pair one of the 50 most frequent
words with a rarer one. The modes take turns query by query (rotating which goes first), so a
shared machine's background load falls on all of them alike; 30 untimed warm-up queries in
every mode come first. The 1-minute load average before and after each size is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import itertools
import json
import logging
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    VAR_BENCH,
    Children,
    exit_on_sigterm,
    fresh_database,
    machine_summary,
    manage,
    percentile,
    say,
    start_llm_server,
)
from tests.support.llm_server import hashed_embedding

SEED = 20261121
CHUNKS_PER_DOCUMENT = 10
SPANISH_SHARE = 0.1
VOCABULARY = 20_000
ZIPF_S = 1.0
ZIPF_Q = 60  # Zipf-Mandelbrot offset: the commonest content word is in about a third of chunks
EMBED_WORDS = 60
EMBEDDING_MODEL = "scripted-embedding"
WARMUP = 30
TARGET_P95_MS = 30.0
STOP_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "for",
    "on",
    "that",
    "with",
    "as",
    "you",
    "your",
    "it",
    "be",
    "are",
    "or",
    "by",
    "this",
    "can",
    "we",
    "our",
    "from",
    "at",
    "an",
    "if",
    "not",
    "will",
    "have",
    "all",
    "when",
    "any",
    "has",
    "more",
    "its",
    "may",
    "do",
]
SYLLABLES = [
    "ba",
    "be",
    "bi",
    "bo",
    "bu",
    "ca",
    "ce",
    "ci",
    "co",
    "cu",
    "da",
    "de",
    "di",
    "do",
    "du",
    "fa",
    "fe",
    "fi",
    "fo",
    "fu",
    "ga",
    "ge",
    "gi",
    "go",
    "gu",
    "la",
    "le",
    "li",
    "lo",
    "lu",
    "ma",
    "me",
    "mi",
    "mo",
    "mu",
    "na",
    "ne",
    "ni",
    "no",
    "nu",
    "pa",
    "pe",
    "pi",
    "po",
    "pu",
    "ra",
    "re",
    "ri",
    "ro",
    "ru",
    "sa",
    "se",
    "si",
    "so",
    "su",
    "ta",
    "te",
    "ti",
    "to",
    "tu",
    "va",
    "ve",
    "vi",
    "vo",
    "vu",
    "za",
    "ze",
    "zi",
    "zo",
    "zu",
    "bra",
    "cre",
    "dri",
    "flo",
    "gru",
    "pla",
    "pre",
    "tri",
    "stro",
    "spe",
]
TEMPLATES = (
    "{}",
    "how do I {}?",
    "what about {}",
    "can you tell me about {}",
    "{} please",
    "is there {} for me?",
)


# -- synthetic corpus ------------------------------------------------------------------------------


class Corpus:
    """A deterministic vocabulary with Zipf-distributed word frequencies."""

    def __init__(self, rng: random.Random) -> None:
        words: list[str] = []
        seen: set[str] = set()
        while len(words) < VOCABULARY:
            word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
            if word not in seen:
                seen.add(word)
                words.append(word)
        self.words = words
        weights = [1.0 / ((rank + ZIPF_Q) ** ZIPF_S) for rank in range(1, len(words) + 1)]
        total = sum(weights)
        self.cumulative: list[float] = []
        acc = 0.0
        for weight in weights:
            acc += weight / total
            self.cumulative.append(acc)
        self.rng = rng

    def word(self) -> str:
        import bisect

        if self.rng.random() < 0.3:
            return self.rng.choice(STOP_WORDS)
        index = bisect.bisect_left(self.cumulative, self.rng.random())
        return self.words[min(index, len(self.words) - 1)]

    def content_word(self) -> str:
        while True:
            word = self.word()
            if word not in STOP_WORDS:
                return word

    def phrase(self, n: int) -> str:
        return " ".join(self.content_word() for _ in range(n)).capitalize()

    def paragraph(self, n: int) -> str:
        words = [self.word() for _ in range(n)]
        sentences, out = [], []
        for i, word in enumerate(words, start=1):
            out.append(word)
            if i % self.rng.randint(9, 18) == 0 or i == len(words):
                sentences.append(" ".join(out).capitalize() + ".")
                out = []
        return " ".join(sentences)


@dataclass
class Loaded:
    documents: int = 0
    chunks: int = 0
    samples: list[str] = field(default_factory=list)  # some texts of the measured tenant


def load_tenant(
    cursor: Any,
    corpus: Corpus,
    *,
    tenant_id: int,
    source_id: int,
    chunks: int,
    key_prefix: str,
    loaded: Loaded | None = None,
) -> Loaded:
    """COPY `chunks` chunks (in documents of 10) for a tenant, with search vectors and vectors."""
    rng = corpus.rng
    loaded = loaded or Loaded()
    documents = (chunks + CHUNKS_PER_DOCUMENT - 1) // CHUNKS_PER_DOCUMENT
    now = dt.datetime.now(dt.UTC)
    doc_rows = []
    doc_meta = []
    for n in range(documents):
        key = f"{key_prefix}/{loaded.documents + n:07d}.md"
        title = corpus.phrase(rng.randint(3, 5))
        language = "es" if rng.random() < SPANISH_SHARE else "en"
        doc_rows.append(
            (
                tenant_id,
                source_id,
                key,
                title,
                f"https://help.example/{key}",
                language,
                "markdown",
                hashlib.sha256(key.encode()).hexdigest(),
                0,
                now,
                now,
            )
        )
        doc_meta.append((title, language))
    with cursor.copy(
        "COPY knowledge_document (tenant_id, source_id, key, title, url, language, content_type,"
        " content_hash, size_bytes, created_at, updated_at) FROM STDIN"
    ) as copy:
        for row in doc_rows:
            copy.write_row(row)
    cursor.execute(
        "SELECT id, key FROM knowledge_document WHERE tenant_id = %s AND key LIKE %s",
        [tenant_id, f"{key_prefix}/%"],
    )
    ids = {key: doc_id for doc_id, key in cursor.fetchall()}
    cursor.execute(
        "CREATE TEMP TABLE IF NOT EXISTS bench_chunk (tenant_id bigint, document_id bigint,"
        " ordinal int, heading text, text text, word_count int, search_config text,"
        " embedding text)"
    )
    cursor.execute("TRUNCATE bench_chunk")
    made = 0
    with cursor.copy(
        "COPY bench_chunk (tenant_id, document_id, ordinal, heading, text, word_count,"
        " search_config, embedding) FROM STDIN"
    ) as copy:
        for n, row in enumerate(doc_rows):
            title, language = doc_meta[n]
            document_id = ids[row[2]]
            for ordinal in range(CHUNKS_PER_DOCUMENT):
                if made >= chunks:
                    break
                heading = f"{title} > {corpus.phrase(rng.randint(2, 4))}"
                words = rng.randint(150, 300)
                text = "\n\n".join(
                    corpus.paragraph(part) for part in _split(words, rng.randint(1, 4), rng)
                )
                head = " ".join(text.split()[:EMBED_WORDS])
                vector = hashed_embedding(f"{title} — {heading}\n\n{head}")
                literal = "[" + ",".join(f"{x:.6g}" for x in vector) + "]"
                config = "spanish" if language == "es" else "english"
                copy.write_row(
                    (tenant_id, document_id, ordinal, heading, text, words, config, literal)
                )
                if len(loaded.samples) < 5000 and rng.random() < 0.05:
                    loaded.samples.append(text)
                made += 1
    vector_column = has_vector_column(cursor)
    cursor.execute(
        "INSERT INTO knowledge_chunk (tenant_id, document_id, ordinal, heading, text, word_count,"
        " search_config, search_vector, embedding_model"
        + (", embedding" if vector_column else "")
        + ") SELECT b.tenant_id, b.document_id, b.ordinal, b.heading, b.text, b.word_count,"
        " b.search_config,"
        " setweight(to_tsvector(b.search_config::regconfig, d.title || ' ' || b.heading), 'A')"
        " || setweight(to_tsvector(b.search_config::regconfig, b.text), 'B'),"
        + (" %s, b.embedding::vector" if vector_column else " ''")
        + " FROM bench_chunk b JOIN knowledge_document d ON d.id = b.document_id",
        [EMBEDDING_MODEL] if vector_column else [],
    )
    loaded.documents += documents
    loaded.chunks += made
    return loaded


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    cuts = sorted(rng.sample(range(20, total - 20), parts - 1)) if parts > 1 else []
    points = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(points) if b > a]


def has_vector_column(cursor: Any) -> bool:
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema ="
        " current_schema() AND table_name = 'knowledge_chunk' AND column_name = 'embedding')"
    )
    return bool(cursor.fetchone()[0])


@contextlib.contextmanager
def indexes_dropped(cursor: Any) -> Iterator[None]:
    """Drop the GIN and 256-dimension HNSW indexes for a bulk load; rebuild them after."""
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'knowledge_chunk'"
        " AND indexname IN ('chunk_search_vector_gin', 'knowledge_chunk_embedding_256_hnsw')"
    )
    found = cursor.fetchall()
    for name, _ in found:
        cursor.execute(f'DROP INDEX "{name}"')
    yield
    cursor.execute("SET maintenance_work_mem = '1GB'")
    for name, definition in found:
        started = time.monotonic()
        cursor.execute(definition)
        say(f"  rebuilt {name} in {time.monotonic() - started:.1f}s")


# -- queries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    text: str
    kind: str  # "in-chunk" | "mixed" | "common+rare"


def make_queries(corpus: Corpus, samples: list[str], n: int, rng: random.Random) -> list[Query]:
    common = corpus.words[:50]
    queries: list[Query] = []
    while len(queries) < n:
        roll = rng.random()
        sample = rng.choice(samples)
        words = [w.strip(".").lower() for w in sample.split()]
        content = [w for w in words if w not in STOP_WORDS]
        if roll < 0.5:
            start = rng.randrange(0, max(1, len(content) - 3))
            picked, kind = content[start : start + rng.randint(2, 3)], "in-chunk"
        elif roll < 0.8:
            start = rng.randrange(0, max(1, len(content) - 2))
            picked = [*content[start : start + 2], corpus.content_word()]
            kind = "mixed"
        else:
            rare = corpus.words[rng.randrange(2000, len(corpus.words))]
            picked, kind = [rng.choice(common), rare], "common+rare"
        queries.append(Query(rng.choice(TEMPLATES).format(" ".join(picked)), kind))
    return queries


@dataclass
class ModeResult:
    size: int
    mode: str
    latencies: list[float]
    by_kind: dict[str, list[float]]
    results: int  # passages returned in all
    empty: int  # queries with no passage

    def row(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "mode": self.mode,
            "queries": len(self.latencies),
            "p50_ms": percentile(self.latencies, 50) * 1000,
            "p95_ms": percentile(self.latencies, 95) * 1000,
            "p99_ms": percentile(self.latencies, 99) * 1000,
            "max_ms": max(self.latencies) * 1000,
            "p95_by_kind_ms": {
                kind: percentile(values, 95) * 1000 for kind, values in self.by_kind.items()
            },
            "mean_passages": self.results / len(self.latencies),
            "empty": self.empty,
        }


def measure(
    size: int, modes: list[str], tenant_id: int, queries: list[Query], warmup: list[Query]
) -> list[ModeResult]:
    """Every query in every mode, the modes taking turns query by query (in a rotating order),
    so the background load of a shared machine falls on all of them alike."""
    from django.conf import settings

    from knowledge import vectors
    from knowledge.retrieval import search_knowledge

    def one(mode: str, query: Query) -> list[Any]:
        settings.LLM_EMBEDDING_MODEL = "" if mode == "full-text" else EMBEDDING_MODEL
        given = mode == "hybrid (db)"
        return search_knowledge(
            tenant_id=tenant_id,
            query=query.text,
            limit=4,
            query_embedding=hashed_embedding(query.text) if given else None,
        )

    for query in warmup:
        for mode in modes:
            one(mode, query)
    vectors._embed_query_cached.cache_clear()  # every timed query is embedded afresh
    results = {mode: ModeResult(size, mode, [], {}, 0, 0) for mode in modes}
    for n, query in enumerate(queries):
        for mode in modes[n % len(modes) :] + modes[: n % len(modes)]:
            started = time.perf_counter()
            found = one(mode, query)
            elapsed = time.perf_counter() - started
            result = results[mode]
            result.latencies.append(elapsed)
            result.by_kind.setdefault(query.kind, []).append(elapsed)
            result.results += len(found)
            result.empty += not found
    return [results[mode] for mode in modes]


def markdown(rows: list[dict[str, Any]]) -> str:
    kinds = ["in-chunk", "mixed", "common+rare"]
    lines = [
        "| chunks (tenant) | mode | queries | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | "
        + " | ".join(f"p95 {k} (ms)" for k in kinds)
        + " | passages / query | no passage | load 1 min before / after |",
        "|---:|---|---:|---:|---:|---:|---:|" + "---:|" * len(kinds) + "---:|---:|---:|",
    ]
    for row in rows:
        by_kind = row["p95_by_kind_ms"]
        lines.append(
            f"| {row['size']:,} | {row['mode']} | {row['queries']} | {row['p50_ms']:.1f} | "
            f"{row['p95_ms']:.1f} | {row['p99_ms']:.1f} | {row['max_ms']:.1f} | "
            + " | ".join(f"{by_kind[k]:.1f}" if k in by_kind else "n/a" for k in kinds)
            + f" | {row['mean_passages']:.2f} | {row['empty']} | "
            + " / ".join(f"{x:.1f}" for x in row.get("load_1min", []))
            + " |"
        )
    return "\n".join(lines)


# -- the run ---------------------------------------------------------------------------------------


def postgres_server(children_embedded: list[Any]) -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    from supportbot.devstack.postgres import EmbeddedPostgres

    say("starting embedded Postgres under var/bench/postgres")
    postgres = EmbeddedPostgres(VAR_BENCH / "postgres")
    url = postgres.start()
    children_embedded.append(postgres)
    return url


def run(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    say(f"machine: {machine_summary()}")
    llm_url = start_llm_server(children, first_token_delay=0.0, tokens_per_second=0.0, text="ok")
    embedded: list[Any] = []
    rows: list[dict[str, Any]] = []
    build: dict[str, float] = {}
    info: dict[str, Any] = {}
    try:
        server_url = postgres_server(embedded)
        database = f"supportbot_bench_retrieval_{os.getpid()}"
        with fresh_database(server_url, database, keep=args.keep) as database_url:
            env = {
                **os.environ,
                "DATABASE_URL": database_url,
                "REDIS_URL": os.environ.get("REDIS_URL") or "redis://127.0.0.1:1/0",  # unused
                "SUPPORTBOT_ENV": "development",
                "DEBUG": "false",
                "LLM_PROVIDER": "openai",
                "LLM_BASE_URL": llm_url,
                "LLM_API_KEY": "sk-bench-not-a-secret",
                "LLM_MODEL": "scripted-model",
            }
            say("migrating a fresh database")
            manage(["migrate", "--noinput", "--verbosity", "0"], env)
            os.environ.update(env)
            os.environ["DJANGO_SETTINGS_MODULE"] = "supportbot.settings"
            import django

            django.setup()
            rows, build, info = measure_all(args)
    finally:
        for server in reversed(embedded):
            with contextlib.suppress(Exception):
                server.stop()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine_at_end": machine_summary(),
        "settings": {
            "sizes": args.sizes,
            "queries": args.queries,
            "noise_tenants": args.noise_tenants,
            "noise_chunks": args.noise_chunks,
            "postgres": "DATABASE_URL" if os.environ.get("DATABASE_URL_GIVEN") else "embedded",
        },
        "build_seconds": build,
        "info": info,
        "results": rows,
    }


def measure_all(
    args: argparse.Namespace,
) -> tuple[list[dict[str, Any]], dict[str, float], dict[str, Any]]:
    from django.db import connection

    from knowledge import vectors
    from knowledge.ingestion import source_get_or_create
    from supportbot.tenants.services import tenant_create

    rng = random.Random(SEED)
    corpus = Corpus(rng)
    vectors.reset_cache()
    hybrid = vectors.has_vector_column()
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        info: dict[str, Any] = {"postgres": cursor.fetchone()[0], "pgvector": hybrid}
        if hybrid:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            info["pgvector_version"] = cursor.fetchone()[0]
    if not hybrid:
        say("this Postgres has no pgvector: full-text only")
    target, _ = tenant_create(name="Bench target", allowed_origins=[])
    target_source = source_get_or_create(tenant=target, name="Help centre", kind="import")
    build: dict[str, float] = {}
    started = time.monotonic()
    with connection.cursor() as cursor, indexes_dropped(cursor):
        for n in range(args.noise_tenants):
            noise, _ = tenant_create(name=f"Bench noise {n}", allowed_origins=[])
            source = source_get_or_create(tenant=noise, name="Help centre", kind="import")
            load_tenant(
                cursor,
                corpus,
                tenant_id=noise.id,
                source_id=source.id,
                chunks=args.noise_chunks,
                key_prefix=f"noise{n}",
            )
        say(f"loaded {args.noise_tenants} noise tenants x {args.noise_chunks:,} chunks")
    build["noise"] = time.monotonic() - started
    loaded = Loaded()
    rows: list[dict[str, Any]] = []
    modes = ["full-text", "hybrid (db)", "hybrid (http)"] if hybrid else ["full-text"]
    for size in sorted(args.sizes):
        started = time.monotonic()
        with connection.cursor() as cursor, indexes_dropped(cursor):
            load_tenant(
                cursor,
                corpus,
                tenant_id=target.id,
                source_id=target_source.id,
                chunks=size - loaded.chunks,
                key_prefix=f"t{size}",
                loaded=loaded,
            )
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE knowledge_chunk")
            cursor.execute("VACUUM ANALYZE knowledge_document")
        build[str(size)] = time.monotonic() - started
        say(f"measured tenant at {loaded.chunks:,} chunks (built in {build[str(size)]:.0f}s)")
        qrng = random.Random(SEED + size)
        queries = make_queries(corpus, loaded.samples, args.queries, qrng)
        warmup = make_queries(corpus, loaded.samples, WARMUP, qrng)
        load_before = os.getloadavg()[0]
        measured = measure(size, modes, target.id, queries, warmup)
        load_after = os.getloadavg()[0]
        for result in measured:
            row = result.row()
            row["load_1min"] = [round(load_before, 2), round(load_after, 2)]
            rows.append(row)
            say(
                f"  {result.mode:<14} p50 {row['p50_ms']:.1f} ms  p95 {row['p95_ms']:.1f} ms  "
                f"max {row['max_ms']:.1f} ms"
            )
    sample_sets = [{w.strip(".").lower() for w in text.split()} for text in loaded.samples]
    info["chunks_with_word_of_rank"] = {
        rank: round(sum(corpus.words[rank - 1] in s for s in sample_sets) / len(sample_sets), 3)
        for rank in (1, 10, 100, 1000, 10000)
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('knowledge_chunk'))")
        info["knowledge_chunk_size"] = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM knowledge_chunk")
        info["chunks_in_table"] = cursor.fetchone()[0]
    return rows, build, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300, help="timed queries per mode")
    parser.add_argument("--noise-tenants", type=int, default=4)
    parser.add_argument("--noise-chunks", type=int, default=5_000, help="chunks per noise tenant")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL_GIVEN"] = "1"

    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    exit_on_sigterm()
    children = Children()
    started = time.monotonic()
    try:
        report = run(args, children)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        children.stop_all()
    report["total_seconds"] = round(time.monotonic() - started, 1)

    out = io.StringIO()
    print(file=out)
    print(
        f"search_knowledge latency, limit 4; {report['date']}; "
        f"Postgres {report['info']['postgres']}"
        + (
            f", pgvector {report['info']['pgvector_version']}"
            if report["info"].get("pgvector")
            else ", no pgvector"
        ),
        file=out,
    )
    print(f"at end: {report['machine_at_end']}; whole run {report['total_seconds']:.0f}s", file=out)
    shares = ", ".join(
        f"{rank}: {share:.0%}" for rank, share in report["info"]["chunks_with_word_of_rank"].items()
    )
    print(f"chunks containing the content word of rank ... {shares}", file=out)
    print(
        f"build (s): {', '.join(f'{k} {v:.0f}' for k, v in report['build_seconds'].items())}; "
        f"knowledge_chunk {report['info']['knowledge_chunk_size']}, "
        f"{report['info']['chunks_in_table']:,} rows",
        file=out,
    )
    print(file=out)
    print(markdown(report["results"]), file=out)
    print(file=out)
    worst = max((r["p95_ms"] for r in report["results"] if r["size"] >= 100_000), default=None)
    if worst is not None:
        verdict = "met" if worst < TARGET_P95_MS else "NOT met"
        print(
            f"Target p95 < {TARGET_P95_MS:g} ms at 100k chunks: {verdict} "
            f"(worst p95 {worst:.1f} ms)",
            file=out,
        )
    print(out.getvalue())
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
