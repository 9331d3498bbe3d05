"""Time to first token through the whole stack, against the openai SDK called directly.

    .venv/bin/python bench/ttft.py [--conversations 1 50] [--rounds N] [--json out.json] [--trace]
                                   [--limits] [--profile DIR]

Both sides talk to the same scripted OpenAI-compatible server (tests/support/llm_server.py, its
own process on loopback): 200 ms before the first token, then 100 tokens/s, 50-token replies.

baseline  `openai.OpenAI(...).chat.completions.create(stream=True)` from N threads at once;
          TTFT = request sent -> first chunk with content; total = request sent -> end of stream.
stack     Postgres + Redis, a fresh database, one Daphne process, one Celery worker (threads
          pool, concurrency 64, prefetch 1), a tenant from `manage.py tenant_create`, and N
          websocket visitors at once (hello, then one message); TTFT = message sent -> first
          `reply.delta`; total = message sent -> the final assistant `message`. Every reply is
          checked: delta indexes without gaps, deltas joined == final text == the scripted text.

Baseline and stack rounds alternate, so a shared machine's background load hits both alike.
Untimed warm-up conversations run first on both sides. DATABASE_URL / REDIS_URL name the
servers to use (a database `supportbot_bench_<pid>` is created on that Postgres server and
dropped afterwards; give Redis a database of its own); without them embedded servers are started
under var/bench/. --trace adds per-stage timestamps inside Daphne and the worker (bench/_probe.py)
and prints where the time goes between the message and its first delta.

--profile DIR samples the stacks of Daphne and the worker during each level's rounds (py-spy,
run as root or with ptrace allowed) and prints the CPU ms per reply of each stage of each
process (bench/_profile.py).

--limits adds a third side, the cost of the per-tenant limit checks: a second tenant of the same
stack with every limit set (`manage.py tenant_limits`: requests a minute, tokens a day and a
month, spend a month, concurrent replies; all far above what the run uses, so every reply is
reserved, checked and settled, never refused). Its rounds alternate with the first tenant's
(no limits), in alternating order; the report gives the median and p95 TTFT difference.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import _profile
from bench._common import (
    LOG_DIR,
    PYTHON,
    Children,
    Stack,
    exit_on_sigterm,
    fresh_database,
    last_json_line,
    machine_summary,
    manage,
    median,
    ms,
    own_cpu_seconds,
    percentile,
    process_cpu_seconds,
    say,
    servers_from_env_or_embedded,
    signed_ms,
    start_llm_server,
    start_stack,
)
from tests.support.llm_server import split_tokens

FIRST_TOKEN_DELAY = 0.2
TOKENS_PER_SECOND = 100.0
REPLY_TEXT = (
    "To reset your password, open **Settings → Security** and choose *Reset password*. We email "
    "you a link that stays valid for 30 minutes; follow it and pick a new password of at least "
    "12 characters. If the email doesn't arrive, check your spam folder — we're always happy to "
    "help."
)
EXPECTED_TOKENS = split_tokens(REPLY_TEXT)
QUESTION = "Hi! How do I reset my password?"
PERSONA = "You are the support assistant of Example Shop. Answer briefly and kindly."
MODEL = "scripted-model"
API_KEY = "sk-bench-not-a-secret"
ORIGIN = "https://bench.example"
TARGETS_MS = {1: 10.0, 50: 100.0}  # the most the stack may add at the median
FRAME_TIMEOUT = 30.0


@dataclass
class Sample:
    ttft: float | None  # seconds: sent -> first content
    total: float | None  # seconds: sent -> reply complete
    tokens: int  # tokens of the scripted reply that arrived, in order
    complete: bool  # every token arrived, and (stack) deltas == final text == scripted text
    error: str | None = None
    sent_at: float = 0.0  # time.time() when sent (to line up with --trace events)
    conversation_id: str | None = None
    message_id: str | None = None
    deltas: int = 0


def tokens_delivered(text: str) -> int:
    """How many of the scripted reply's tokens `text` reproduces, from the start."""
    count, position = 0, 0
    for token in EXPECTED_TOKENS:
        if text.startswith(token, position):
            position += len(token)
            count += 1
        else:
            break
    return count


# -- baseline: the SDK called directly -------------------------------------------------------------


def baseline_one(client: Any, barrier: threading.Barrier) -> Sample:
    barrier.wait(timeout=60)
    sent_at = time.time()
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    try:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": PERSONA},
                {"role": "user", "content": QUESTION},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            for chunk in stream:
                if not chunk.choices:
                    continue
                content = chunk.choices[0].delta.content
                if content:
                    if first is None:
                        first = time.perf_counter()
                    parts.append(content)
        end = time.perf_counter()
    except Exception as exc:
        return Sample(None, None, tokens_delivered("".join(parts)), False, repr(exc), sent_at)
    text = "".join(parts)
    return Sample(
        ttft=None if first is None else first - start,
        total=end - start,
        tokens=tokens_delivered(text),
        complete=text == REPLY_TEXT,
        sent_at=sent_at,
        deltas=len(parts),
    )


def baseline_round(client: Any, n: int) -> list[Sample]:
    barrier = threading.Barrier(n)
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="baseline") as pool:
        futures = [pool.submit(baseline_one, client, barrier) for _ in range(n)]
        return [f.result() for f in futures]


# -- stack: websocket visitors through Daphne, Celery, Postgres, Redis -----------------------------


async def open_visitor(ws_url: str, key: str) -> tuple[Any, str]:
    from websockets.asyncio.client import connect

    ws = await connect(ws_url, origin=ORIGIN, open_timeout=FRAME_TIMEOUT, ping_interval=None)
    hello = {
        "type": "hello",
        "key": key,
        "visitor_token": None,
        "conversation_id": None,
        "last_seq": 0,
        "locale": "en",
    }
    await ws.send(json.dumps(hello))
    async with asyncio.timeout(FRAME_TIMEOUT):
        welcome = json.loads(await ws.recv())
    if welcome.get("type") != "welcome":
        await ws.close()
        raise RuntimeError(f"expected welcome, got {welcome}")
    return ws, welcome["conversation_id"]


async def converse(ws: Any, conversation_id: str) -> Sample:
    frame_out = json.dumps({"type": "message", "client_id": str(uuid.uuid4()), "text": QUESTION})
    sent_at = time.time()
    start = time.perf_counter()
    await ws.send(frame_out)
    first: float | None = None
    message_id: str | None = None
    parts: list[str] = []
    next_index = 0
    problems: list[str] = []
    try:
        while True:
            async with asyncio.timeout(FRAME_TIMEOUT):
                frame = json.loads(await ws.recv())
            kind = frame.get("type")
            if kind == "reply.start":
                message_id = frame["message_id"]
            elif kind == "reply.delta":
                if first is None:
                    first = time.perf_counter()
                    message_id = message_id or frame["message_id"]
                if frame["index"] != next_index:
                    problems.append(f"delta index {frame['index']}, expected {next_index}")
                next_index = frame["index"] + 1
                parts.append(frame["text"])
            elif kind == "message" and frame["message"]["role"] == "assistant":
                end = time.perf_counter()
                final = frame["message"]["text"]
                break
            elif kind == "error":
                raise RuntimeError(f"error frame: {frame}")
    except Exception as exc:
        text = "".join(parts)
        return Sample(
            None if first is None else first - start,
            None,
            tokens_delivered(text),
            False,
            repr(exc),
            sent_at,
            conversation_id,
            message_id,
            len(parts),
        )
    text = "".join(parts)
    if text != final:
        problems.append("deltas joined differ from the final text")
    if final != REPLY_TEXT:
        problems.append("the final text differs from the scripted reply")
    return Sample(
        ttft=None if first is None else first - start,
        total=end - start,
        tokens=tokens_delivered(text),
        complete=not problems and tokens_delivered(text) == len(EXPECTED_TOKENS),
        error="; ".join(problems) or None,
        sent_at=sent_at,
        conversation_id=conversation_id,
        message_id=message_id,
        deltas=len(parts),
    )


async def stack_round_async(ws_url: str, key: str, n: int) -> list[Sample]:
    visitors = await asyncio.gather(*(open_visitor(ws_url, key) for _ in range(n)))
    try:
        return list(await asyncio.gather(*(converse(ws, cid) for ws, cid in visitors)))
    finally:
        await asyncio.gather(*(ws.close() for ws, _ in visitors), return_exceptions=True)


def stack_round(ws_url: str, key: str, n: int) -> list[Sample]:
    return asyncio.run(stack_round_async(ws_url, key, n))


# -- summary ---------------------------------------------------------------------------------------


def summarize(
    n: int,
    baseline: list[Sample],
    stack: list[Sample],
    cpu: dict[str, float],
    limited: list[Sample] | None = None,
) -> dict[str, Any]:
    def side(samples: list[Sample]) -> dict[str, Any]:
        ttft = [s.ttft for s in samples if s.ttft is not None]
        total = [s.total for s in samples if s.total is not None]
        return {
            "samples": len(samples),
            "ttft_median": median(ttft),
            "ttft_p95": percentile(ttft, 95),
            "ttft_min": min(ttft) if ttft else math.nan,
            "ttft_max": max(ttft) if ttft else math.nan,
            "total_median": median(total),
            "total_p95": percentile(total, 95),
            "tokens_delivered": sum(s.tokens for s in samples),
            "tokens_expected": len(EXPECTED_TOKENS) * len(samples),
            "complete": sum(1 for s in samples if s.complete),
            "errors": [s.error for s in samples if s.error][:10],
        }

    b, s = side(baseline), side(stack)
    limits: dict[str, Any] | None = None
    if limited is not None:
        lim = side(limited)
        limits = {
            "stack_with_limits": lim,
            "overhead_median": lim["ttft_median"] - s["ttft_median"],
            "overhead_p95": lim["ttft_p95"] - s["ttft_p95"],
            "total_overhead_median": lim["total_median"] - s["total_median"],
        }
    return {
        "conversations": n,
        "limits": limits,
        "baseline": b,
        "stack": s,
        "overhead_median": s["ttft_median"] - b["ttft_median"],
        "overhead_p95": s["ttft_p95"] - b["ttft_p95"],
        "ratio_median": s["ttft_median"] / b["ttft_median"] if b["ttft_median"] else math.nan,
        "ratio_p95": s["ttft_p95"] / b["ttft_p95"] if b["ttft_p95"] else math.nan,
        # CPU seconds per reply: the client's threads or sockets, and the stack's processes
        "cpu_per_reply": {
            "client_baseline": cpu["client_baseline"] / max(len(baseline), 1),
            "client_stack": cpu["client_stack"] / max(len(stack), 1),
            "daphne": cpu["web"] / max(len(stack), 1),
            "worker": cpu["worker"] / max(len(stack), 1),
        },
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        (
            "| conversations | samples | TTFT baseline median / p95 (ms) | TTFT stack median / p95 "
            "(ms) | overhead median / p95 (ms) | ratio median / p95 | complete reply baseline / "
            "stack median (ms) | tokens delivered / expected |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        b, s = r["baseline"], r["stack"]
        lines.append(
            f"| {r['conversations']} | {b['samples']} + {s['samples']} "
            f"| {ms(b['ttft_median'])} / {ms(b['ttft_p95'])} "
            f"| {ms(s['ttft_median'])} / {ms(s['ttft_p95'])} "
            f"| {signed_ms(r['overhead_median'])} / {signed_ms(r['overhead_p95'])} "
            f"| {r['ratio_median']:.3f} / {r['ratio_p95']:.3f} "
            f"| {ms(b['total_median'])} / {ms(s['total_median'])} "
            f"| {s['tokens_delivered']} / {s['tokens_expected']} "
            f"(baseline {b['tokens_delivered']} / {b['tokens_expected']}) |"
        )
    return "\n".join(lines)


def limits_markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        (
            "| conversations | samples | TTFT no limits median / p95 (ms) | TTFT limits set median "
            "/ p95 (ms) | added by the limit checks median / p95 (ms) | complete reply added "
            "median (ms) | complete |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        limits = r.get("limits")
        if not limits:
            continue
        s, lim = r["stack"], limits["stack_with_limits"]
        lines.append(
            f"| {r['conversations']} | {s['samples']} + {lim['samples']} "
            f"| {ms(s['ttft_median'])} / {ms(s['ttft_p95'])} "
            f"| {ms(lim['ttft_median'])} / {ms(lim['ttft_p95'])} "
            f"| {signed_ms(limits['overhead_median'])} / {signed_ms(limits['overhead_p95'])} "
            f"| {signed_ms(limits['total_overhead_median'])} "
            f"| {lim['complete']}/{lim['samples']} |"
        )
    return "\n".join(lines)


def cpu_markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| conversations | client, baseline | client, stack | Daphne | Celery worker |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        c = r["cpu_per_reply"]
        lines.append(
            f"| {r['conversations']} | {ms(c['client_baseline'])} | {ms(c['client_stack'])} "
            f"| {ms(c['daphne'])} | {ms(c['worker'])} |"
        )
    return "\n".join(lines)


def verdict(results: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in results:
        n = r["conversations"]
        all_tokens = r["stack"]["tokens_delivered"] == r["stack"]["tokens_expected"]
        complete = r["stack"]["complete"] == r["stack"]["samples"]
        target = TARGETS_MS.get(n)
        overhead = r["overhead_median"] * 1000
        if target is None:
            lines.append(f"- {n} conversations: median overhead {overhead:+.1f} ms (no target)")
        else:
            met = "met" if overhead <= target else "MISSED"
            lines.append(
                f"- {n} conversations: median overhead {overhead:+.1f} ms, target <= "
                f"{target:g} ms: {met}"
            )
        lines.append(
            f"  every token delivered: {'yes' if all_tokens and complete else 'NO'} "
            f"({r['stack']['complete']}/{r['stack']['samples']} replies complete and consistent)"
        )
    return lines


# -- the run ---------------------------------------------------------------------------------------


def default_rounds(n: int) -> int:
    """About 30 samples at 1 conversation, at least 5 rounds at any level."""
    return max(5, math.ceil(30 / n))


def stack_env(database_url: str, redis_url: str, llm_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SUPPORTBOT_ENV": "development",
        "DEBUG": "false",  # no query log in the processes
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": llm_url,
        "LLM_API_KEY": API_KEY,
        "LLM_MODEL": MODEL,
        # Every bench visitor is 127.0.0.1 and comes through one widget key: the edge limits
        # per client and per key would refuse most of them (a real audience is many clients).
        "WIDGET_MAX_CONNECTIONS_PER_CLIENT": "10000",
        "WIDGET_CONVERSATIONS_PER_CLIENT_PER_HOUR": "1000000",
        "WIDGET_KEY_MESSAGES_PER_MINUTE": "1000000",
        "PYTHONUNBUFFERED": "1",
    }


def measure_level(
    args: argparse.Namespace,
    client: Any,
    stack: Stack,
    key: str,
    n: int,
    limited_key: str | None = None,
) -> tuple[dict[str, Any], dict[str, list[Sample]]]:
    """Alternating baseline and stack rounds of `n` conversations at once (and, with
    `limited_key`, rounds of the tenant with limits, before or after the other's in turn)."""
    rounds = args.rounds or default_rounds(n)
    if n > 1:  # one untimed round at this level: threads, pools, connections
        baseline_round(client, n)
        stack_round(stack.ws_url, key, n)
        if limited_key:
            stack_round(stack.ws_url, limited_key, n)
    baseline: list[Sample] = []
    stacked: list[Sample] = []
    limited: list[Sample] = []
    cpu = dict.fromkeys(("client_baseline", "client_stack", "web", "worker"), 0.0)
    pids = {"web": stack.web.process.pid, "worker": stack.worker.process.pid}
    for r in range(rounds):
        before = own_cpu_seconds()
        baseline += baseline_round(client, n)
        cpu["client_baseline"] += own_cpu_seconds() - before
        time.sleep(args.pause)
        if limited_key and r % 2 == 0:
            limited += stack_round(stack.ws_url, limited_key, n)
            time.sleep(args.pause)
        before = own_cpu_seconds()
        before_procs = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
        stacked += stack_round(stack.ws_url, key, n)
        cpu["client_stack"] += own_cpu_seconds() - before
        for name, pid in pids.items():
            cpu[name] += process_cpu_seconds(pid) - before_procs[name]
        time.sleep(args.pause)
        if limited_key and r % 2 == 1:
            limited += stack_round(stack.ws_url, limited_key, n)
            time.sleep(args.pause)
        say(
            f"{n} conversations, round {r + 1}/{rounds}: TTFT median stack "
            f"{ms(median([s.ttft for s in stacked[-n:] if s.ttft is not None]))} ms, "
            f"baseline {ms(median([s.ttft for s in baseline[-n:] if s.ttft is not None]))} ms"
        )
    sides = {"baseline": baseline, "stack": stacked}
    if limited_key:
        sides["stack_with_limits"] = limited
        say(
            f"{n} conversations, limits set: TTFT median "
            f"{ms(median([s.ttft for s in limited if s.ttft is not None]))} ms, without "
            f"{ms(median([s.ttft for s in stacked if s.ttft is not None]))} ms"
        )
    return summarize(n, baseline, stacked, cpu, limited if limited_key else None), sides


# Limits far above what a run uses: every reply is checked, reserved and settled, none refused.
BENCH_LIMITS = [
    "--requests-per-minute",
    "1000000",
    "--tokens-per-day",
    "1000000000000",
    "--tokens-per-month",
    "1000000000000",
    "--spend-per-month",
    "1000000",
    "--max-concurrent-replies",
    "100000",
]


def create_limited_tenant(env: dict[str, str], database: str) -> str:
    """A second tenant with every limit set (`tenant_limits`): its widget key."""
    tenant_args = ["--name", f"Bench limits {database}", "--allowed-origin", ORIGIN]
    created = last_json_line(manage(["tenant_create", *tenant_args, "--json"], env))
    shown = manage(["tenant_limits", created["tenant"], *BENCH_LIMITS, "--json"], env)
    say(f"tenant with limits: {json.dumps(last_json_line(shown)['limits'])}")
    return str(created["widget_key"])


def run(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    import openai

    started_on = machine_summary()
    say(f"machine: {started_on}")
    llm_url = start_llm_server(
        children,
        first_token_delay=FIRST_TOKEN_DELAY,
        tokens_per_second=TOKENS_PER_SECOND,
        text=REPLY_TEXT,
    )
    say(f"scripted LLM server at {llm_url}")
    results: list[dict[str, Any]] = []
    raw: dict[int, dict[str, list[Sample]]] = {}
    trace = None
    profiles: dict[str, Any] = {}
    servers = servers_from_env_or_embedded()
    try:
        database = f"supportbot_bench_{os.getpid()}"
        with fresh_database(servers.postgres_url, database) as database_url:
            try:
                if servers.redis_embedded:  # ours alone: no jobs or counters of an earlier run
                    import redis

                    redis.Redis.from_url(servers.redis_url).flushdb()
                env = stack_env(database_url, servers.redis_url, llm_url)
                trace_dir: Path | None = None
                launcher: list[str] = []
                if args.trace:
                    trace_dir = LOG_DIR / "trace"
                    trace_dir.mkdir(parents=True, exist_ok=True)
                    for old in trace_dir.glob("*.jsonl"):
                        old.unlink()
                    env["BENCH_TRACE_DIR"] = str(trace_dir)
                    launcher = [PYTHON, "-m", "bench._probe"]
                say("migrating a fresh database")
                manage(["migrate", "--noinput", "--verbosity", "0"], env)
                tenant_args = ["--name", f"Bench {database}", "--allowed-origin", ORIGIN]
                created = manage(["tenant_create", *tenant_args, "--json"], env)
                key = last_json_line(created)["widget_key"]
                limited_key = create_limited_tenant(env, database) if args.limits else None
                say("starting Daphne and the Celery worker")
                stack = start_stack(
                    children, env, worker_concurrency=args.worker_concurrency, launcher=launcher
                )
                say(f"stack up at {stack.base_url}")
                client = openai.OpenAI(base_url=llm_url, api_key=API_KEY, max_retries=0, timeout=60)
                say(f"warm-up: {args.warmup} conversations on each side")
                for _ in range(args.warmup):
                    baseline_round(client, 1)
                    stack_round(stack.ws_url, key, 1)
                    if limited_key:
                        stack_round(stack.ws_url, limited_key, 1)
                for n in args.conversations:
                    recorders = []
                    if args.profile:
                        pids = {"web": stack.web.process.pid, "worker": stack.worker.process.pid}
                        recorders = _profile.start(args.profile, n, pids)
                    try:
                        summary, samples = measure_level(args, client, stack, key, n, limited_key)
                    finally:
                        _profile.stop(recorders)
                    if args.profile:
                        cpu_per_reply = summary["cpu_per_reply"]
                        profiles[str(n)] = _profile.stage_table(args.profile, n, cpu_per_reply)
                    results.append(summary)
                    raw[n] = samples
            finally:
                children.stop_all()  # before the database goes; also flushes the probes' files
            if trace_dir is not None:
                from bench._probe import breakdown

                trace = breakdown(trace_dir, raw)
    finally:
        servers.stop()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine_at_start": started_on,
        "machine_at_end": machine_summary(),
        "config": {
            "first_token_delay_s": FIRST_TOKEN_DELAY,
            "tokens_per_second": TOKENS_PER_SECOND,
            "reply_tokens": len(EXPECTED_TOKENS),
            "worker_concurrency": args.worker_concurrency,
            "warmup": args.warmup,
            "trace": bool(args.trace),
            "limits": bool(args.limits),
            "postgres": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded",
            "redis": "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded",
        },
        "results": results,
        "trace": trace,
        "profile": profiles or None,
        "samples": {
            str(n): {side: [asdict(s) for s in samples] for side, samples in sides.items()}
            for n, sides in raw.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--conversations", type=int, nargs="+", default=[1, 50], help="concurrency levels"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per level (default: 30 at 1, 5 at 50)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed conversations first")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between rounds")
    parser.add_argument("--worker-concurrency", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None, help="write every sample here")
    parser.add_argument("--trace", action="store_true", help="per-stage timestamps (see above)")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="sample Daphne's and the worker's stacks (py-spy) into DIR; CPU per stage",
    )
    parser.add_argument(
        "--limits", action="store_true", help="also a tenant with limits set (see above)"
    )
    args = parser.parse_args(argv)

    exit_on_sigterm()
    children = Children()
    try:
        report = run(args, children)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        children.stop_all()

    print()
    print(
        f"Time to first token, {len(EXPECTED_TOKENS)}-token replies; the scripted model waits "
        f"{FIRST_TOKEN_DELAY * 1000:.0f} ms, then sends {TOKENS_PER_SECOND:g} tokens/s."
    )
    print(f"{report['date']}; at start: {report['machine_at_start']}")
    print(f"at end: {report['machine_at_end']}")
    print()
    print(markdown(report["results"]))
    print()
    print("\n".join(verdict(report["results"])))
    print()
    if args.limits:
        print("The per-tenant limit checks: a tenant with every limit set against one without")
        print()
        print(limits_markdown(report["results"]))
        print()
    print("CPU time per reply (ms)")
    print()
    print(cpu_markdown(report["results"]))
    if report["trace"]:
        from bench._probe import trace_markdown

        print()
        print(trace_markdown(report["trace"]))
    if report["profile"]:
        print()
        print(f"Where a reply's CPU goes (py-spy stacks in {args.profile})")
        print(_profile.profile_markdown(report["profile"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
