"""Idle widget sockets: what 10,000 connected visitors cost one Daphne process.

    .venv/bin/python bench/idle_sockets.py [--sockets 10000] [--clients 4] [--idle 30]
                                           [--json out.json]

Postgres and Redis (DATABASE_URL / REDIS_URL, else embedded ones under var/bench/), a fresh
database, a tenant from `manage.py tenant_create`, and ONE Daphne process (no worker: nothing
here queues a job). `--clients` client processes (asyncio, the `websockets` package) open
`--sockets` widget sockets between them, each saying `hello` as a new visitor of the one tenant
and waiting for its `welcome` (at most `--at-once` hellos in flight per client process); then
every socket stays open and silent for `--idle` seconds.

Measured on the Daphne process (/proc): its RSS after a warm-up of 20 visitors (connected and
closed), once every socket has had its welcome, at the end of the idle period, and after every
socket closed; its CPU time (user + system) from the first connection to the last welcome,
divided by the sockets (CPU per connect + hello + welcome), and over the idle period. RLIMIT_NOFILE
is raised for the script and its children.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    PYTHON,
    REPO,
    Child,
    Children,
    exit_on_sigterm,
    fresh_database,
    last_json_line,
    load_average,
    machine_summary,
    manage,
    process_cpu_seconds,
    process_rss_bytes,
    raise_open_files_limit,
    say,
    servers_from_env_or_embedded,
    start_web,
)
from bench.ttft import ORIGIN, open_visitor, stack_env

TARGET_MB = 600.0
WARMUP_VISITORS = 20


# -- a client process: opens its share of the sockets, then holds them ----------------------------


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def hold_sockets(ws_url: str, key: str, count: int, at_once: int) -> None:
    gate = asyncio.Semaphore(at_once)
    sockets: list[Any] = []
    failures: list[str] = []

    async def one() -> None:
        async with gate:
            try:
                ws, _conversation = await open_visitor(ws_url, key)
            except Exception as exc:
                failures.append(repr(exc))
                return
        sockets.append(ws)
        if len(sockets) % 500 == 0:
            emit(opened=len(sockets))

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    emit(
        done=len(sockets),
        failed=len(failures),
        errors=failures[:5],
        seconds=time.monotonic() - started,
        cpu=sum(os.times()[:2]),
    )
    # Hold them until the parent closes our stdin; count the sockets the server closed.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    closed_by_server = sum(1 for ws in sockets if ws.close_code is not None)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    emit(closed_by_server=closed_by_server)


def client_main(args: argparse.Namespace) -> int:
    raise_open_files_limit()
    asyncio.run(hold_sockets(args.ws_url, args.key, args.sockets, args.at_once))
    return 0


# -- the measuring process -------------------------------------------------------------------------


def start_client(
    children: Children, index: int, ws_url: str, key: str, count: int, at_once: int
) -> Child:
    process = subprocess.Popen(
        [
            PYTHON,
            str(Path(__file__).resolve()),
            "--client",
            "--ws-url",
            ws_url,
            "--key",
            key,
            "--sockets",
            str(count),
            "--at-once",
            str(at_once),
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    child = Child(f"client-{index}", process, None)
    children.started.append(child)
    return child


def read_until(child: Child, field: str) -> dict[str, Any]:
    assert child.process.stdout is not None
    while True:
        line = child.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{child.name} exited before reporting {field!r}")
        message = json.loads(line)
        if field in message:
            return dict(message)
        say(f"{child.name}: {message}")


def warm_up(ws_url: str, key: str) -> None:
    async def go() -> None:
        visitors = [await open_visitor(ws_url, key) for _ in range(WARMUP_VISITORS)]
        await asyncio.gather(*(ws.close() for ws, _ in visitors))

    asyncio.run(go())


def measure(
    args: argparse.Namespace, children: Children, web: Child, port: int, key: str
) -> dict[str, Any]:
    pid = web.process.pid
    ws_url = f"ws://127.0.0.1:{port}/ws/widget/"
    say(f"warm-up: {WARMUP_VISITORS} visitors")
    warm_up(ws_url, key)
    time.sleep(2.0)
    rss_start = process_rss_bytes(pid)
    cpu_start = process_cpu_seconds(pid)
    load_start = load_average()
    per_client = [args.sockets // args.clients] * args.clients
    per_client[0] += args.sockets - sum(per_client)
    say(f"opening {args.sockets} sockets from {args.clients} client processes")
    started = time.monotonic()
    clients = [
        start_client(children, i, ws_url, key, count, args.at_once)
        for i, count in enumerate(per_client)
    ]
    reports = [read_until(client, "done") for client in clients]
    connect_seconds = time.monotonic() - started
    cpu_connected = process_cpu_seconds(pid)
    rss_connected = process_rss_bytes(pid)
    opened = sum(r["done"] for r in reports)
    failed = sum(r["failed"] for r in reports)
    say(f"{opened} sockets open ({failed} failed) in {connect_seconds:.1f} s; idle {args.idle:g} s")
    time.sleep(args.idle)
    cpu_idle_end = process_cpu_seconds(pid)
    rss_idle_end = process_rss_bytes(pid)
    load_end = load_average()
    closed_by_server = 0
    for client in clients:
        assert client.process.stdin is not None
        client.process.stdin.close()
    for client in clients:
        closed_by_server += read_until(client, "closed_by_server")["closed_by_server"]
        client.process.wait(60)
    time.sleep(3.0)
    rss_closed = process_rss_bytes(pid)
    mb = 1024 * 1024
    return {
        "sockets": args.sockets,
        "opened": opened,
        "failed": failed,
        "errors": [e for r in reports for e in r["errors"]][:10],
        "closed_by_server_while_idle": closed_by_server,
        "connect_seconds": connect_seconds,
        "rss_start_mb": rss_start / mb,
        "rss_connected_mb": rss_connected / mb,
        "rss_idle_end_mb": rss_idle_end / mb,
        "rss_closed_mb": rss_closed / mb,
        "rss_per_socket_kb": (rss_idle_end - rss_start) / max(opened, 1) / 1024,
        "cpu_per_hello_ms": (cpu_connected - cpu_start) / max(opened, 1) * 1000,
        "cpu_idle_s": cpu_idle_end - cpu_connected,
        "cpu_idle_percent": (cpu_idle_end - cpu_connected) / args.idle * 100,
        "client_cpu_per_socket_ms": sum(r["cpu"] for r in reports) / max(opened, 1) * 1000,
        "load_start": load_start,
        "load_end": load_end,
        "passed": opened == args.sockets and rss_idle_end / mb < TARGET_MB,
    }


def run(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    started_on = machine_summary()
    say(f"machine: {started_on}; open files limit {raise_open_files_limit()}")
    servers = servers_from_env_or_embedded()
    try:
        database = f"supportbot_bench_idle_{os.getpid()}"
        with fresh_database(servers.postgres_url, database) as database_url:
            try:
                if servers.redis_embedded:
                    import redis

                    redis.Redis.from_url(servers.redis_url).flushdb()
                # No reply is asked for: the provider URL is never called.
                env = stack_env(database_url, servers.redis_url, "http://127.0.0.1:9/v1")
                env["WIDGET_MAX_CONNECTIONS_PER_CLIENT"] = str(args.sockets * 2)
                say("migrating a fresh database")
                manage(["migrate", "--noinput", "--verbosity", "0"], env)
                tenant_args = ["--name", f"Bench {database}", "--allowed-origin", ORIGIN]
                key = str(
                    last_json_line(manage(["tenant_create", *tenant_args, "--json"], env))[
                        "widget_key"
                    ]
                )
                say("starting Daphne")
                web, port = start_web(children, env)
                result = measure(args, children, web, port, key)
            finally:
                children.stop_all()
    finally:
        servers.stop()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine_at_start": started_on,
        "machine_at_end": machine_summary(),
        "config": {
            "clients": args.clients,
            "at_once": args.at_once,
            "idle_s": args.idle,
            "target_mb": TARGET_MB,
            "postgres": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded",
            "redis": "REDIS_URL" if os.environ.get("REDIS_URL") else "embedded",
        },
        "result": result,
    }


def markdown(r: dict[str, Any]) -> str:
    def f(value: float, digits: int = 1) -> str:
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"

    return "\n".join(
        [
            (
                "| sockets open | Daphne RSS: warm / all welcomed / after idle / all closed (MB) "
                "| per socket (KB) | CPU per hello (ms) | CPU while idle | closed by the server "
                "| load avg start / end |"
            ),
            "|---:|---|---:|---:|---|---:|---|",
            (
                f"| {r['opened']} / {r['sockets']} | {f(r['rss_start_mb'])} / "
                f"{f(r['rss_connected_mb'])} / {f(r['rss_idle_end_mb'])} / {f(r['rss_closed_mb'])} "
                f"| {f(r['rss_per_socket_kb'])} | {f(r['cpu_per_hello_ms'], 2)} "
                f"| {f(r['cpu_idle_s'], 2)} s ({f(r['cpu_idle_percent'])}% of a core) "
                f"| {r['closed_by_server_while_idle']} "
                f"| {f(r['load_start'], 2)} / {f(r['load_end'], 2)} |"
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--at-once", type=int, default=4, help="hellos in flight per client")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds all sockets stay idle")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ws-url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        return client_main(args)

    exit_on_sigterm()
    children = Children()
    try:
        report = run(args, children)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        children.stop_all()

    r = report["result"]
    print()
    print(
        f"Idle widget sockets on one Daphne process: {r['sockets']} new visitors of one tenant, "
        f"each connected, `hello`, `welcome`, then silent for {args.idle:g} s."
    )
    print(f"{report['date']}; at start: {report['machine_at_start']}")
    print(f"at end: {report['machine_at_end']}")
    print()
    print(markdown(r))
    print()
    if r["errors"]:
        print(f"errors (first {len(r['errors'])}): {r['errors']}")
    print(
        f"Target: every socket open and Daphne under {TARGET_MB:g} MB: "
        f"{'met' if r['passed'] else 'MISSED'} ({r['rss_idle_end_mb']:.0f} MB)"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
