"""What moderation adds to the time to first token, through the whole stack.

    .venv/bin/python bench/moderation.py [--conversations 1 20] [--rounds N]
                                         [--moderation-delay 0.0] [--json out.json]

The stack of bench/ttft.py (Postgres + Redis, a fresh database, one Daphne process, one Celery
worker, the scripted OpenAI-compatible server as its own process: 200 ms before the first
token, then 100 tokens/s) with two tenants: one with moderation on (the default: the provider's
`/moderations` endpoint, which the scripted server answers after `--moderation-delay` seconds)
and one with `moderation_source = none`. Their rounds alternate, in alternating order, so a
shared machine's load hits both alike. TTFT = message sent -> first `reply.delta`; the visitor's
message is checked before the chat request goes out (in parallel with the language detection
and the help-centre search), and the reply's sentences are checked in the background, so the
difference is what the input check costs.
"""

from __future__ import annotations

import argparse
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
    median,
    ms,
    percentile,
    say,
    servers_from_env_or_embedded,
    signed_ms,
    start_llm_server,
    start_stack,
)
from bench.ttft import (
    FIRST_TOKEN_DELAY,
    ORIGIN,
    REPLY_TEXT,
    TOKENS_PER_SECOND,
    Sample,
    stack_env,
    stack_round,
)


def create_tenant(env: dict[str, str], name: str, moderation_source: str) -> str:
    """A tenant with this moderation source; its widget key."""
    created = last_json_line(
        manage(["tenant_create", "--name", name, "--allowed-origin", ORIGIN, "--json"], env)
    )
    code = (
        "from supportbot.tenants.models import Tenant; "
        f"Tenant.objects.filter(slug={created['tenant']!r})"
        f".update(moderation_source={moderation_source!r})"
    )
    manage(["shell", "-c", code], env)
    return str(created["widget_key"])


def side(samples: list[Sample]) -> dict[str, Any]:
    ttfts = [s.ttft for s in samples if s.ttft is not None]
    totals = [s.total for s in samples if s.total is not None]
    return {
        "samples": len(samples),
        "complete": sum(1 for s in samples if s.complete),
        "ttft_median": median(ttfts) if ttfts else None,
        "ttft_p95": percentile(ttfts, 95) if ttfts else None,
        "total_median": median(totals) if totals else None,
    }


def measure(ws_url: str, keys: dict[str, str], n: int, rounds: int) -> dict[str, Any]:
    samples: dict[str, list[Sample]] = {name: [] for name in keys}
    stack_round(ws_url, keys["on"], n)  # untimed: pools and connections at this level
    stack_round(ws_url, keys["off"], n)
    for r in range(rounds):
        order = ["on", "off"] if r % 2 == 0 else ["off", "on"]
        for name in order:
            samples[name] += stack_round(ws_url, keys[name], n)
        say(
            f"{n} conversations, round {r + 1}/{rounds}: TTFT median on "
            f"{ms(median([s.ttft for s in samples['on'] if s.ttft is not None]))} ms, off "
            f"{ms(median([s.ttft for s in samples['off'] if s.ttft is not None]))} ms"
        )
    on, off = side(samples["on"]), side(samples["off"])
    return {
        "conversations": n,
        "moderation_on": on,
        "moderation_off": off,
        "added_median": on["ttft_median"] - off["ttft_median"],
        "added_p95": on["ttft_p95"] - off["ttft_p95"],
        "added_total_median": on["total_median"] - off["total_median"],
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        (
            "| conversations | samples | TTFT off median / p95 (ms) | TTFT on median / p95 (ms) "
            "| added median / p95 (ms) | complete reply added median (ms) | complete |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        on, off = r["moderation_on"], r["moderation_off"]
        lines.append(
            f"| {r['conversations']} | {off['samples']} + {on['samples']} "
            f"| {ms(off['ttft_median'])} / {ms(off['ttft_p95'])} "
            f"| {ms(on['ttft_median'])} / {ms(on['ttft_p95'])} "
            f"| {signed_ms(r['added_median'])} / {signed_ms(r['added_p95'])} "
            f"| {signed_ms(r['added_total_median'])} "
            f"| {on['complete'] + off['complete']}/{on['samples'] + off['samples']} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    started_on = machine_summary()
    llm_url = start_llm_server(
        children,
        first_token_delay=FIRST_TOKEN_DELAY,
        tokens_per_second=TOKENS_PER_SECOND,
        text=REPLY_TEXT,
        moderation_delay=args.moderation_delay,
    )
    servers = servers_from_env_or_embedded()
    results = []
    try:
        database = f"supportbot_bench_{os.getpid()}"
        with fresh_database(servers.postgres_url, database) as database_url:
            try:
                env = stack_env(database_url, servers.redis_url, llm_url)
                manage(["migrate", "--noinput", "--verbosity", "0"], env)
                keys = {
                    "on": create_tenant(env, f"Moderated {database}", "provider"),
                    "off": create_tenant(env, f"Unmoderated {database}", "none"),
                }
                stack = start_stack(children, env, worker_concurrency=args.worker_concurrency)
                say(f"stack up at {stack.base_url}")
                for _ in range(args.warmup):
                    stack_round(stack.ws_url, keys["on"], 1)
                    stack_round(stack.ws_url, keys["off"], 1)
                for n in args.conversations:
                    rounds = args.rounds or max(5, 30 // n)
                    results.append(measure(stack.ws_url, keys, n, rounds))
            finally:
                children.stop_all()
    finally:
        servers.stop()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine_at_start": started_on,
        "machine_at_end": machine_summary(),
        "moderation_delay_s": args.moderation_delay,
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--rounds", type=int, default=None, help="default: 30 samples, >= 5")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--worker-concurrency", type=int, default=64)
    parser.add_argument(
        "--moderation-delay", type=float, default=0.0, help="seconds per moderation answer"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    children = Children()
    try:
        report = run(args, children)
    finally:
        children.stop_all()
    print()
    print(
        f"Moderation on vs off, {report['date']}; scripted moderation answers after "
        f"{args.moderation_delay * 1000:.0f} ms"
    )
    print(f"at start: {report['machine_at_start']}; at end: {report['machine_at_end']}")
    print()
    print(markdown(report["results"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
