"""Sustained load: how many visitors, each writing every 20 s, one Daphne and one worker serve.

    .venv/bin/python bench/sustained.py [--visitors 25 50 100 200 300 400 500 600]
                                        [--interval 20] [--warmup 20] [--window 60]
                                        [--json out.json] [--keep-going]

The stack of bench/ttft.py (Postgres, Redis, a fresh database, one Daphne process, one Celery
worker, the scripted OpenAI-compatible server: 200 ms to the first token, 100 tokens/s,
50-token replies). At each level N, N websocket visitors (asyncio, one process) connect and say
`hello`; then each sends a `message` every `--interval` seconds, the first sends spread
uniformly over one interval so the load is steady (N / interval messages a second). After
`--warmup` seconds, the replies to the messages sent during `--window` seconds are measured;
then sending stops and the replies in flight are awaited.

Added TTFT of a reply = its TTFT through the stack (message sent -> first `reply.delta`) minus
the scripted server's own first-token delay, measured in the same run by a bare SDK client
(`openai.AsyncOpenAI`, in the same event loop) sending one request every `--baseline-every`
seconds throughout the window: the median of those is subtracted. Every reply is checked
(delta indexes without gaps, deltas joined == final text == the scripted text).

A level passes when the p95 of the added TTFT stays under `--target-ms` (100 ms) and every
reply is complete; the script reports the largest passing N and, unless `--keep-going`, stops
at the first level that fails. Tenant limits are off (a tenant with no limits); the per-client
and per-key edge limits are raised (every visitor is 127.0.0.1); RLIMIT_NOFILE is raised for
the script and its children.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    Children,
    Stack,
    exit_on_sigterm,
    fresh_database,
    last_json_line,
    load_average,
    machine_summary,
    manage,
    median,
    ms,
    own_cpu_seconds,
    percentile,
    process_cpu_seconds,
    raise_open_files_limit,
    say,
    servers_from_env_or_embedded,
    signed_ms,
    start_llm_server,
    start_stack,
)
from bench.ttft import (
    API_KEY,
    EXPECTED_TOKENS,
    FIRST_TOKEN_DELAY,
    MODEL,
    ORIGIN,
    PERSONA,
    QUESTION,
    REPLY_TEXT,
    TOKENS_PER_SECOND,
    Sample,
    converse,
    open_visitor,
    stack_env,
)

TARGET_MS = 100.0
HELLOS_AT_ONCE = 50


@dataclass
class Level:
    visitors: int
    stack: list[Sample] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)  # bare SDK TTFTs (s)
    baseline_failures: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    load_start: float = math.nan
    load_end: float = math.nan
    broken_visitors: int = 0


# -- the bare SDK client, interleaved --------------------------------------------------------------


async def baseline_once(client: Any) -> float | None:
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": PERSONA}, {"role": "user", "content": QUESTION}],
        stream=True,
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if first is None:
                first = time.perf_counter()
            parts.append(chunk.choices[0].delta.content)
    if first is None or "".join(parts) != REPLY_TEXT:
        return None
    return first - start


async def baseline_loop(client: Any, level: Level, every: float, stop_at: float) -> None:
    while time.time() < stop_at:
        try:
            ttft = await baseline_once(client)
        except Exception as exc:
            say(f"baseline request failed: {exc!r}")
            ttft = None
        if ttft is None:
            level.baseline_failures += 1
        else:
            level.baseline.append(ttft)
        await asyncio.sleep(every)


# -- the visitors ----------------------------------------------------------------------------------


async def open_visitors(ws_url: str, key: str, n: int) -> list[tuple[Any, str]]:
    gate = asyncio.Semaphore(HELLOS_AT_ONCE)

    async def one() -> tuple[Any, str]:
        async with gate:
            return await open_visitor(ws_url, key)

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def visitor_loop(
    ws: Any,
    conversation_id: str,
    *,
    first_at: float,
    interval: float,
    window: tuple[float, float],
    level: Level,
) -> None:
    """Send a message at first_at, first_at + interval, ... until the window closes; keep the
    samples of the messages sent inside the window."""
    due = first_at
    while due < window[1]:
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        sample = await converse(ws, conversation_id)
        if window[0] <= sample.sent_at < window[1]:
            level.stack.append(sample)
        if sample.total is None:  # a lost reply: this socket's later frames cannot be trusted
            level.broken_visitors += 1
            return
        due += interval


async def run_level(args: argparse.Namespace, stack: Stack, key: str, client: Any, n: int) -> Level:
    level = Level(visitors=n)
    say(f"{n} visitors: connecting and saying hello")
    visitors = await open_visitors(stack.ws_url, key, n)
    pids = {"web": stack.web.process.pid, "worker": stack.worker.process.pid}
    try:
        start = time.time() + 1.0
        window = (start + args.warmup, start + args.warmup + args.window)
        say(
            f"{n} visitors: {n / args.interval:.1f} messages/s; warm-up {args.warmup:g} s, "
            f"measured window {args.window:g} s"
        )
        loops = [
            asyncio.create_task(
                visitor_loop(
                    ws,
                    cid,
                    first_at=start + args.interval * i / n,
                    interval=args.interval,
                    window=window,
                    level=level,
                )
            )
            for i, (ws, cid) in enumerate(visitors)
        ]
        await asyncio.sleep(max(0.0, window[0] - time.time()))
        level.load_start = load_average()
        cpu_before = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
        cpu_before["client"] = own_cpu_seconds()
        baseline = asyncio.create_task(baseline_loop(client, level, args.baseline_every, window[1]))
        await asyncio.sleep(max(0.0, window[1] - time.time()))
        level.cpu = {
            name: process_cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()
        }
        level.cpu["client"] = own_cpu_seconds() - cpu_before["client"]
        level.load_end = load_average()
        await baseline
        say(f"{n} visitors: window over, waiting for the replies in flight")
        await asyncio.gather(*loops)
    finally:
        await asyncio.gather(*(ws.close() for ws, _ in visitors), return_exceptions=True)
    return level


# -- summary ---------------------------------------------------------------------------------------


def summarize(level: Level, interval: float, window: float) -> dict[str, Any]:
    samples = level.stack
    ttft = [s.ttft for s in samples if s.ttft is not None]
    base = median(level.baseline)
    added = [t - base for t in ttft]
    replies = len(samples)
    complete = sum(1 for s in samples if s.complete)
    per_reply = {name: seconds / max(replies, 1) for name, seconds in level.cpu.items()}
    passed = (
        replies > 0
        and complete == replies
        and bool(added)
        and percentile(added, 95) * 1000 < TARGET_MS
    )
    return {
        "visitors": level.visitors,
        "messages_per_second": level.visitors / interval,
        "replies": replies,
        "replies_expected": round(level.visitors * window / interval),
        "complete": complete,
        "tokens_delivered": sum(s.tokens for s in samples),
        "tokens_expected": len(EXPECTED_TOKENS) * replies,
        "baseline_samples": len(level.baseline),
        "baseline_failures": level.baseline_failures,
        "baseline_ttft_median": base,
        "baseline_ttft_p95": percentile(level.baseline, 95),
        "stack_ttft_median": median(ttft),
        "stack_ttft_p95": percentile(ttft, 95),
        "added_median": median(added),
        "added_p95": percentile(added, 95),
        "added_max": max(added) if added else math.nan,
        "total_median": median([s.total for s in samples if s.total is not None]),
        "cpu_per_reply": per_reply,
        "load_start": level.load_start,
        "load_end": level.load_end,
        "broken_visitors": level.broken_visitors,
        "errors": [s.error for s in samples if s.error][:10],
        "passed": passed,
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        (
            "| visitors | messages/s | replies / scheduled | baseline TTFT median (ms) "
            "| added TTFT median / p95 (ms) | complete reply median (ms) "
            "| tokens delivered / expected | CPU per reply: "
            "Daphne, worker, client (ms) | load avg start / end | p95 < 100 ms |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in results:
        c = r["cpu_per_reply"]
        lines.append(
            f"| {r['visitors']} | {r['messages_per_second']:.1f} "
            f"| {r['replies']} / {r['replies_expected']} ({r['complete']} complete) "
            f"| {ms(r['baseline_ttft_median'])} "
            f"| {signed_ms(r['added_median'])} / {signed_ms(r['added_p95'])} "
            f"| {ms(r['total_median'])} "
            f"| {r['tokens_delivered']} / {r['tokens_expected']} "
            f"| {ms(c.get('web', math.nan))}, {ms(c.get('worker', math.nan))}, "
            f"{ms(c.get('client', math.nan))} "
            f"| {r['load_start']:.2f} / {r['load_end']:.2f} "
            f"| {'yes' if r['passed'] else 'NO'} |"
        )
    return "\n".join(lines)


# -- the run ---------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, stack: Stack, key: str, llm_url: str) -> list[Any]:
    import openai

    client = openai.AsyncOpenAI(base_url=llm_url, api_key=API_KEY, max_retries=0, timeout=60)
    say("warm-up: 3 conversations and 3 bare requests")
    for _ in range(3):
        await baseline_once(client)
        ws, cid = await open_visitor(stack.ws_url, key)
        await converse(ws, cid)
        await ws.close()
    results = []
    for n in args.visitors:
        level = await run_level(args, stack, key, client, n)
        result = summarize(level, args.interval, args.window)
        results.append(result)
        say(
            f"{n} visitors: added TTFT median {signed_ms(result['added_median'])} / p95 "
            f"{signed_ms(result['added_p95'])} ms, {result['complete']}/{result['replies']} "
            f"complete, load {result['load_end']:.2f}"
        )
        say("\n" + markdown([result]))  # each level's row as soon as it is known
        if not result["passed"] and not args.keep_going:
            break
        await asyncio.sleep(args.pause)
    await client.close()
    return results


def run(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    started_on = machine_summary()
    say(f"machine: {started_on}; open files limit {raise_open_files_limit()}")
    llm_url = start_llm_server(
        children,
        first_token_delay=FIRST_TOKEN_DELAY,
        tokens_per_second=TOKENS_PER_SECOND,
        text=REPLY_TEXT,
    )
    servers = servers_from_env_or_embedded()
    try:
        database = f"supportbot_bench_sustained_{os.getpid()}"
        with fresh_database(servers.postgres_url, database) as database_url:
            try:
                if servers.redis_embedded:
                    import redis

                    redis.Redis.from_url(servers.redis_url).flushdb()
                env = stack_env(database_url, servers.redis_url, llm_url)
                env["WIDGET_MESSAGES_PER_MINUTE"] = "1000000"  # short --interval runs too
                say("migrating a fresh database")
                manage(["migrate", "--noinput", "--verbosity", "0"], env)
                tenant_args = ["--name", f"Bench {database}", "--allowed-origin", ORIGIN]
                key = last_json_line(manage(["tenant_create", *tenant_args, "--json"], env))[
                    "widget_key"
                ]
                say("starting Daphne and the Celery worker")
                stack = start_stack(children, env, worker_concurrency=args.worker_concurrency)
                results = asyncio.run(measure(args, stack, key, llm_url))
            finally:
                children.stop_all()
    finally:
        servers.stop()
    passing = [r["visitors"] for r in results if r["passed"]]
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine_at_start": started_on,
        "machine_at_end": machine_summary(),
        "config": {
            "interval_s": args.interval,
            "warmup_s": args.warmup,
            "window_s": args.window,
            "baseline_every_s": args.baseline_every,
            "first_token_delay_s": FIRST_TOKEN_DELAY,
            "tokens_per_second": TOKENS_PER_SECOND,
            "reply_tokens": len(EXPECTED_TOKENS),
            "worker_concurrency": args.worker_concurrency,
            "target_p95_added_ms": TARGET_MS,
            "postgres": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded",
            "redis": "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded",
        },
        "largest_passing": max(passing) if passing else None,
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--visitors",
        type=int,
        nargs="+",
        default=[25, 50, 100, 200, 300, 400, 500, 600],
        help="levels, in order",
    )
    parser.add_argument("--interval", type=float, default=20.0, help="seconds between messages")
    parser.add_argument("--warmup", type=float, default=20.0, help="untimed seconds per level")
    parser.add_argument("--window", type=float, default=60.0, help="measured seconds per level")
    parser.add_argument("--baseline-every", type=float, default=1.0, help="bare SDK requests")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between levels")
    parser.add_argument("--worker-concurrency", type=int, default=64)
    parser.add_argument("--keep-going", action="store_true", help="past a failing level")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
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
        f"Sustained load: each visitor sends a message every {args.interval:g} s; "
        f"{len(EXPECTED_TOKENS)}-token replies, the scripted model waits "
        f"{FIRST_TOKEN_DELAY * 1000:.0f} ms, then sends {TOKENS_PER_SECOND:g} tokens/s. "
        f"Added TTFT = stack TTFT - the bare SDK's median TTFT in the same window."
    )
    print(f"{report['date']}; at start: {report['machine_at_start']}")
    print(f"at end: {report['machine_at_end']}")
    print()
    print(markdown(report["results"]))
    print()
    largest = report["largest_passing"]
    print(
        f"Largest N with p95 added TTFT < {TARGET_MS:g} ms and every reply complete: "
        f"{largest if largest is not None else 'none'}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
