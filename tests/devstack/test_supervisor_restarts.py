"""`make run` supervises: crashed children and embedded servers come back, with backoff.

Real child processes (small Python commands) and real embedded servers; every wait is on a
condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from supportbot.devstack import _util
from supportbot.devstack.__main__ import Services
from supportbot.devstack.postgres import EmbeddedPostgres
from supportbot.devstack.processes import RestartPolicy, Restarts, Supervisor
from supportbot.devstack.redis import EmbeddedRedis, ping

QUICK = RestartPolicy(first_delay=0.05, max_delay=0.2, stable_after=3600)


def _starts(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_the_delay_doubles_per_crash_in_a_row_up_to_the_cap() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_child_that_ran_stably_starts_a_fresh_series() -> None:
    restarts = Restarts(RestartPolicy(stable_after=60), started_at=0.0)
    assert restarts.schedule(now=1.0) == 1  # crashed after 1 s
    restarts.started(now=2.0)
    assert restarts.schedule(now=3.0) == 2
    restarts.started(now=5.0)
    assert restarts.schedule(now=6.0) == 4
    restarts.started(now=10.0)
    assert restarts.schedule(now=100.0) == 1  # ran 90 s: stable, so 1 s again
    assert restarts.total == 4


def test_a_crashing_child_is_restarted_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    starts = tmp_path / "starts"
    code = f"open({str(starts)!r}, 'a').write('start\\n'); raise SystemExit(1)"
    supervisor = Supervisor(policy=QUICK)
    steady = supervisor.start("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor.start("worker", [sys.executable, "-c", code])

    def stop_after_three_starts() -> None:
        if _util.wait_until(lambda: _starts(starts) >= 3, 30):
            supervisor.stop_requested.set()

    stopper = threading.Thread(target=stop_after_three_starts)
    stopper.start()
    try:
        assert supervisor.wait() == 0  # returns for the stop request, not for the crashes
        stopper.join()
        assert _starts(starts) >= 3
        said = capsys.readouterr().out
        assert "worker exited with code 1; restarting in 0.05 s (restart 1)" in said
        assert "worker exited with code 1; restarting in 0.1 s (restart 2)" in said
        assert "restarted worker (pid " in said
        assert steady.alive()
    finally:
        supervisor.stop_all(timeout=5)
    # Once stopping, nothing is started again.
    count = _starts(starts)
    supervisor.restart_crashed(now=10**9)
    assert not any(child.alive() for child in supervisor.children)
    assert _starts(starts) == count


def test_a_killed_child_is_reported_by_its_signal(capsys: pytest.CaptureFixture[str]) -> None:
    supervisor = Supervisor(policy=QUICK)
    web = supervisor.start("web", [sys.executable, "-c", "import time; time.sleep(60)"])
    first_pid = web.pid
    try:
        os.kill(first_pid, signal.SIGKILL)

        def replaced() -> bool:
            supervisor.restart_crashed()
            return web.alive() and web.pid != first_pid

        assert _util.wait_until(replaced, 30)
        assert "web was killed by SIGKILL; restarting in 0.05 s (restart 1)" in (
            capsys.readouterr().out
        )
    finally:
        supervisor.stop_all(timeout=5)


def test_killed_embedded_servers_come_back_on_their_ports(stack_dir: Path) -> None:
    pg = EmbeddedPostgres(stack_dir / "postgres")
    rd = EmbeddedRedis(stack_dir / "redis")
    database_url = pg.start()
    redis_url = rd.start()
    supervisor = Supervisor(policy=QUICK)
    supervisor.watch("postgres", pg.alive, pg.restart)
    supervisor.watch("redis", rd.alive, rd.restart)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE note (body text)")
        conn.execute("INSERT INTO note VALUES ('kept')")
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    redis_pid, redis_port = rd.pid or 0, rd.port or 0

    os.kill(postmaster, signal.SIGKILL)
    os.kill(redis_pid, signal.SIGKILL)
    assert _util.wait_until(lambda: not pg.alive() and not rd.alive(), 10)

    def back() -> bool:
        supervisor.restart_crashed()
        return pg.alive() and rd.alive()

    assert _util.wait_until(back, 120)
    assert rd.pid != redis_pid
    assert rd.url == redis_url
    assert ping(redis_port)
    assert pg.url == database_url
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT body FROM note").fetchall() == [("kept",)]
    assert [server.restarts.total for server in supervisor.servers] == [1, 1]
    pg.stop()
    rd.stop()


def test_make_run_watches_only_the_servers_it_started(stack_dir: Path) -> None:
    rd = EmbeddedRedis(stack_dir / "redis")
    url = rd.start()
    borrowed = EmbeddedRedis(rd.base_dir)  # a second stack finds it running: not its own
    borrowed.start()
    try:
        ours, theirs = Supervisor(), Supervisor()
        Services(database_url="postgres://elsewhere", redis_url=url, redis=rd).watch(ours)
        Services(database_url="postgres://elsewhere", redis_url=url, redis=borrowed).watch(theirs)
        assert [server.name for server in ours.servers] == ["redis"]
        assert theirs.servers == []
    finally:
        rd.stop()
