"""Visitors who stop reading: what K stalled tabs cost one Daphne process during long replies.

    .venv/bin/python bench/slow_reader.py [--stalled 8] [--tokens 3000] [--token-chars 100]
                                          [--json out.json]

Postgres and Redis (DATABASE_URL / REDIS_URL, else embedded ones under var/bench/), a fresh
database, a tenant, ONE Daphne process and one Celery worker, and the scripted LLM server
streaming replies of `--tokens` tokens of `--token-chars` characters. Two rounds in the same run:

- baseline: `--stalled` visitors each ask with one tab that reads everything;
- stalled: the same, and each visitor also has a second tab of its conversation that stops
  reading after its `welcome` (a 4 KiB kernel receive buffer, one frame read ahead), then reads
  again once the reading tab has the final `message` (reconnecting if Daphne dropped it).

Measured on Daphne (/proc/<pid>/status VmRSS, sampled while the replies stream): its RSS before
the round and the peak during it; whether every reading tab and every stalled tab ended with the
whole reply.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    Children,
    exit_on_sigterm,
    fresh_database,
    last_json_line,
    machine_summary,
    manage,
    process_rss_bytes,
    say,
    servers_from_env_or_embedded,
    start_llm_server,
    start_stack,
)
from bench.ttft import ORIGIN, stack_env
from tests.support.widget_async import Visitor

MB = 2**20


def ended(visitor: Visitor) -> bool:
    return any(final["status"] != "streaming" for final in visitor.finals())


async def one_visitor(ws_url: str, key: str, n: int, stalled: bool) -> tuple[bool, bool]:
    """(the reading tab got the whole reply, the stalled tab did) for one visitor."""
    address = f"10.9.{n // 250}.{n % 250 + 1}"
    reader = Visitor(ws_url=ws_url, key=key, origin=ORIGIN, forwarded_for=address)
    await reader.connect()
    tab = None
    if stalled:
        tab = Visitor(
            ws_url=ws_url,
            key=key,
            origin=ORIGIN,
            forwarded_for=address,
            max_queue=1,
            receive_buffer=4096,
            visitor_token=reader.visitor_token,
            conversation_id=reader.conversation_id,
        )
        await tab.connect()
    await reader.ask("Tell me everything, at length.")
    await reader.recv_until(lambda _: ended(reader), timeout=600)
    whole = [view.final["text"] for view in reader.replies.values() if view.final]
    tab_whole = True
    if tab is not None:
        try:
            await tab.recv_until(lambda _: ended(tab), timeout=600)
        except Exception:  # dropped by Daphne meanwhile: resume on a new socket
            await tab.connect()
        tab_whole = [v.final["text"] for v in tab.replies.values() if v.final] == whole
        await tab.close()
    await reader.close()
    return bool(whole), tab_whole


async def one_round(ws_url: str, key: str, pid: int, k: int, stalled: bool) -> dict[str, Any]:
    before = peak = process_rss_bytes(pid)
    visitors = asyncio.gather(*(one_visitor(ws_url, key, n, stalled) for n in range(k)))
    while not visitors.done():
        peak = max(peak, process_rss_bytes(pid))
        await asyncio.sleep(0.2)
    outcomes = await visitors
    return {
        "stalled": stalled,
        "visitors": k,
        "rss_before_mb": before / MB,
        "rss_peak_mb": peak / MB,
        "growth_mb": (peak - before) / MB,
        "readers_whole": sum(1 for got, _ in outcomes if got),
        "stalled_whole": sum(1 for _, got in outcomes if got) if stalled else None,
    }


def run(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    started_on = machine_summary()
    servers = servers_from_env_or_embedded()
    word = "x" * (args.token_chars - 1)  # and a space: `--token-chars` characters a token
    try:
        database = f"supportbot_bench_slow_{os.getpid()}"
        with fresh_database(servers.postgres_url, database) as database_url:
            llm = start_llm_server(
                children,
                first_token_delay=0.0,
                tokens_per_second=0.0,
                text=word,
                tokens=args.tokens,
            )
            env = stack_env(database_url, servers.redis_url, llm)
            manage(["migrate", "--noinput", "--verbosity", "0"], env)
            tenant_args = ["--name", f"Bench {database}", "--allowed-origin", ORIGIN]
            key = str(
                last_json_line(manage(["tenant_create", *tenant_args, "--json"], env))["widget_key"]
            )
            stack = start_stack(children, env, worker_concurrency=max(4, args.stalled))
            pid = stack.web.process.pid
            rounds = [
                asyncio.run(one_round(stack.ws_url, key, pid, args.stalled, stalled))
                for stalled in (False, True)
            ]
            children.stop_all()
    finally:
        servers.stop()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine_at_start": started_on,
        "machine_at_end": machine_summary(),
        "config": {"tokens": args.tokens, "token_chars": args.token_chars},
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stalled", type=int, default=8, help="visitors (K)")
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--token-chars", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    children = Children()
    try:
        report = run(args, children)
    finally:
        children.stop_all()
    for r in report["rounds"]:
        say(
            f"{'stalled' if r['stalled'] else 'baseline'}: {r['visitors']} visitors, Daphne RSS "
            f"{r['rss_before_mb']:.1f} -> peak {r['rss_peak_mb']:.1f} MB "
            f"(+{r['growth_mb']:.1f}); readers whole {r['readers_whole']}, "
            f"stalled tabs whole {r['stalled_whole']}"
        )
    say(f"{report['date']}; start: {report['machine_at_start']}; end: {report['machine_at_end']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
