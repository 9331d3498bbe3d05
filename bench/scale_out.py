"""Throughput at saturation: 1 Daphne + 1 worker against 2 Daphne + 2 workers behind HAProxy.

    .venv/bin/python bench/scale_out.py [--visitors 40] [--seconds 30] [--layouts 1 2 1 2]
                                        [--json out.json]

The scripted OpenAI-compatible server of bench/ttft.py (200 ms before the first token, then
100 tokens/s, 50-token replies) answers every reply. Each layout runs behind the same loopback
HAProxy (Debian's; installed with apt-get when missing and this runs as root, else the script
stops and says how to install it), so both pay for the load balancer alike.

For each layout: a fresh set of processes (Daphne `N`, Celery worker `N`: threads pool,
concurrency 64, prefetch 1), one untimed round, then `--visitors` websocket visitors in a closed
loop for `--seconds`: each sends a message, waits for the complete reply, and sends the next.
Reported: replies completed per second, TTFT (message sent -> first `reply.delta`) median and
p95, the complete-reply time, replies with every token delivered, the CPU seconds per reply of the
Daphne and worker processes, and the Redis commands per reply (`INFO commandstats` before and
after the timed window, divided by the replies completed in it; every client of that Redis
server counts, so give the bench a Redis of its own: leave REDIS_URL unset for an embedded one).
DATABASE_URL names the Postgres server (a database is created and dropped); unset, an embedded
one is started under var/bench/.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    LOG_DIR,
    PYTHON,
    Child,
    Children,
    exit_on_sigterm,
    free_port,
    fresh_database,
    http_ok,
    last_json_line,
    machine_summary,
    manage,
    median,
    ms,
    percentile,
    process_cpu_seconds,
    say,
    servers_from_env_or_embedded,
    start_llm_server,
    wait_until,
)
from bench.ttft import (
    FIRST_TOKEN_DELAY,
    ORIGIN,
    REPLY_TEXT,
    TOKENS_PER_SECOND,
    Sample,
    converse,
    open_visitor,
    stack_env,
)

HAPROXY_INSTALL = "apt-get install -y haproxy"
WORKER_CONCURRENCY = 64


def ensure_haproxy() -> str:
    """The haproxy binary; Debian's package is installed first when missing and we are root."""
    found = shutil.which("haproxy")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"bench/scale_out.py needs HAProxy: install it ({HAPROXY_INSTALL})")
    say("installing Debian's HAProxy (apt-get; once)")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "haproxy"]):
        if subprocess.run(command, check=False).returncode != 0:
            raise SystemExit(f"`{' '.join(command)}` failed; install HAProxy ({HAPROXY_INSTALL})")
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


def haproxy_config(port: int, daphne_ports: list[int]) -> str:
    servers = "\n".join(f"  server web{i} 127.0.0.1:{p}" for i, p in enumerate(daphne_ports, 1))
    return f"""global
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout tunnel 1h
frontend widget
  bind 127.0.0.1:{port}
  default_backend daphnes
backend daphnes
  balance leastconn
{servers}
"""


@dataclass
class Layout:
    processes: int
    ws_url: str
    webs: list[Child] = field(default_factory=list)
    workers: list[Child] = field(default_factory=list)

    def pids(self) -> list[int]:
        return [child.process.pid for child in (*self.webs, *self.workers)]


def start_layout(children: Children, env: dict[str, str], n: int, haproxy: str) -> Layout:
    """`n` Daphne processes and `n` Celery workers, behind one HAProxy; waits until ready."""
    ports = [free_port() for _ in range(n)]
    webs, workers = [], []
    for i, port in enumerate(ports, 1):
        webs.append(
            children.start(
                f"scale-web{i}-of-{n}",
                [
                    *(PYTHON, "-m", "daphne", "--access-log", "/dev/null"),
                    *("-b", "127.0.0.1", "-p", str(port), "supportbot.asgi:application"),
                ],
                env,
            )
        )
        workers.append(
            children.start(
                f"scale-worker{i}-of-{n}",
                [
                    *(PYTHON, "-m", "celery", "-A", "supportbot", "worker"),
                    *("-Q", "replies,default,summaries", "--pool", "threads"),
                    *("--concurrency", str(WORKER_CONCURRENCY), "--prefetch-multiplier", "1"),
                    *("-n", f"scale-{os.getpid()}-{n}-{i}@%h", "--loglevel", "INFO"),
                    *("--without-gossip", "--without-mingle", "--without-heartbeat"),
                ],
                env,
            )
        )
    lb_port = free_port()
    config = LOG_DIR / f"haproxy-{n}.cfg"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(haproxy_config(lb_port, ports))
    balancer = children.start(f"scale-haproxy-{n}", [haproxy, "-db", "-f", str(config)], env)
    for child, port in zip(webs, ports, strict=True):
        wait_until(
            lambda c=child, p=port: _alive(c) and http_ok(f"http://127.0.0.1:{p}/healthz"),
            timeout=120,
            what=f"{child.name} to answer /healthz",
            interval=0.25,
        )
    for child in workers:
        wait_until(
            lambda c=child: _alive(c) and "ready." in c.log_tail(20000),
            timeout=120,
            what=f"{child.name} to be ready",
            interval=0.25,
        )
    wait_until(
        lambda: _alive(balancer) and http_ok(f"http://127.0.0.1:{lb_port}/healthz"),
        timeout=30,
        what="HAProxy",
    )
    return Layout(n, f"ws://127.0.0.1:{lb_port}/ws/widget/", webs, workers)


def _alive(child: Child) -> bool:
    if not child.alive():
        raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
    return True


def command_calls(redis_url: str) -> int:
    """Commands the Redis server has run so far (all clients, all databases)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(int(entry["calls"]) for entry in stats.values())


async def closed_loop(ws_url: str, key: str, visitors: int, seconds: float, redis_url: str) -> Any:
    """`visitors` sockets, each asking again as soon as its reply is complete, for `seconds`."""
    sockets = await asyncio.gather(*(open_visitor(ws_url, key) for _ in range(visitors)))
    samples: list[Sample] = []
    calls_before = command_calls(redis_url)
    started = time.perf_counter()
    deadline = started + seconds

    async def visitor(ws: Any, conversation_id: str) -> None:
        while time.perf_counter() < deadline:
            samples.append(await converse(ws, conversation_id))

    try:
        await asyncio.gather(*(visitor(ws, cid) for ws, cid in sockets))
        elapsed = time.perf_counter() - started
        calls = command_calls(redis_url) - calls_before
    finally:
        await asyncio.gather(*(ws.close() for ws, _ in sockets), return_exceptions=True)
    return samples, elapsed, calls


def measure(layout: Layout, key: str, args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    say(f"{layout.processes} + {layout.processes}: one untimed round")
    asyncio.run(closed_loop(layout.ws_url, key, args.visitors, 1.0, redis_url))
    cpu_before = sum(process_cpu_seconds(pid) for pid in layout.pids())
    say(f"{layout.processes} + {layout.processes}: {args.visitors} visitors, {args.seconds:g} s")
    samples, elapsed, calls = asyncio.run(
        closed_loop(layout.ws_url, key, args.visitors, args.seconds, redis_url)
    )
    cpu = sum(process_cpu_seconds(pid) for pid in layout.pids()) - cpu_before
    done = [s for s in samples if s.total is not None]
    ttft = [s.ttft for s in samples if s.ttft is not None]
    total = [s.total for s in done if s.total is not None]
    result = {
        "layout": f"{layout.processes} Daphne + {layout.processes} worker",
        "processes": layout.processes,
        "visitors": args.visitors,
        "seconds": elapsed,
        "replies": len(done),
        "replies_per_second": len(done) / elapsed,
        "complete": sum(1 for s in samples if s.complete),
        "errors": [s.error for s in samples if s.error][:10],
        "ttft_median": median(ttft),
        "ttft_p95": percentile(ttft, 95),
        "total_median": median(total),
        "cpu_per_reply": cpu / max(len(done), 1),
        "redis_commands": calls,
        "redis_commands_per_reply": calls / max(len(done), 1),
        "load_after": machine_summary(),
    }
    say(
        f"{result['layout']}: {result['replies_per_second']:.1f} replies/s, TTFT median "
        f"{ms(result['ttft_median'])} ms, p95 {ms(result['ttft_p95'])} ms"
    )
    return result


def run(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    haproxy = ensure_haproxy()
    started_on = machine_summary()
    say(f"machine: {started_on}")
    llm_url = start_llm_server(
        children,
        first_token_delay=FIRST_TOKEN_DELAY,
        tokens_per_second=TOKENS_PER_SECOND,
        text=REPLY_TEXT,
    )
    servers = servers_from_env_or_embedded()
    results = []
    try:
        database = f"supportbot_scale_{os.getpid()}"
        with fresh_database(servers.postgres_url, database) as database_url:
            try:
                if servers.redis_embedded:
                    import redis

                    redis.Redis.from_url(servers.redis_url).flushdb()
                env = stack_env(database_url, servers.redis_url, llm_url)
                env["WIDGET_MESSAGES_PER_MINUTE"] = "1000000"  # each visitor asks non-stop
                say("migrating a fresh database")
                manage(["migrate", "--noinput", "--verbosity", "0"], env)
                tenant_args = ["--name", f"Scale {database}", "--allowed-origin", ORIGIN]
                key = last_json_line(manage(["tenant_create", *tenant_args, "--json"], env))[
                    "widget_key"
                ]
                for n in args.layouts:
                    layout = start_layout(children, env, n, haproxy)
                    try:
                        results.append(measure(layout, key, args, servers.redis_url))
                    finally:
                        children.stop_all()
                        # the scripted server went with them: start it again for the next one
                        llm_url = start_llm_server(
                            children,
                            first_token_delay=FIRST_TOKEN_DELAY,
                            tokens_per_second=TOKENS_PER_SECOND,
                            text=REPLY_TEXT,
                        )
                        env = {**env, "LLM_BASE_URL": llm_url}
            finally:
                children.stop_all()
    finally:
        servers.stop()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine_at_start": started_on,
        "machine_at_end": machine_summary(),
        "redis": "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded",
        "results": results,
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        (
            "| layout | visitors | replies | replies/s | TTFT median / p95 (ms) | complete reply "
            "median (ms) | all tokens | CPU per reply (ms) | Redis commands per reply |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['layout']} | {r['visitors']} | {r['replies']} | {r['replies_per_second']:.1f} "
        f"| {ms(r['ttft_median'])} / {ms(r['ttft_p95'])} | {ms(r['total_median'])} "
        f"| {r['complete']}/{r['replies']} | {r['cpu_per_reply'] * 1000:.0f} "
        f"| {r['redis_commands_per_reply']:.0f} |"
        for r in results
    ]
    by_size: dict[int, list[float]] = {}
    for r in results:
        by_size.setdefault(r["processes"], []).append(r["replies_per_second"])
    sizes = sorted(by_size)
    if len(sizes) >= 2 and median(by_size[sizes[0]]):
        ratio = median(by_size[sizes[-1]]) / median(by_size[sizes[0]])
        lines += [
            "",
            (
                f"Throughput ratio, {sizes[-1]} + {sizes[-1]} / {sizes[0]} + {sizes[0]} (medians "
                f"of {len(by_size[sizes[-1]])} and {len(by_size[sizes[0]])} runs): {ratio:.2f}"
            ),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visitors", type=int, default=40, help="sockets asking non-stop")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed window per layout")
    parser.add_argument(
        "--layouts",
        type=int,
        nargs="+",
        default=[1, 2, 1, 2],
        help="processes of each kind per run, in order (alternated against load drift)",
    )
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
    print(f"{report['date']}; at start: {report['machine_at_start']}")
    print(f"at end: {report['machine_at_end']}; Redis: {report['redis']}")
    print()
    print(markdown(report["results"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
