"""The embedded Postgres and Redis of the dev stack: start, keep data across restarts, stop.

These start their own servers in a temporary directory, whatever DATABASE_URL / REDIS_URL say:
they test the devstack code, not the project's database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from supportbot.devstack import _util
from supportbot.devstack.postgres import EmbeddedPostgres
from supportbot.devstack.redis import EmbeddedRedis


def test_postgres_and_redis_keep_data_across_restarts(stack_dir: Path) -> None:
    pg = EmbeddedPostgres(stack_dir / "postgres")
    rd = EmbeddedRedis(stack_dir / "redis")
    database_url = pg.start()
    redis_url = rd.start()
    assert pg.started_here
    assert rd.started_here
    assert database_url.startswith("postgres://postgres@127.0.0.1:")
    assert database_url.endswith("/supportbot")
    assert redis_url == f"redis://127.0.0.1:{rd.port}/0"

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE note (id serial PRIMARY KEY, body text NOT NULL)")
        conn.execute("INSERT INTO note (body) VALUES (%s)", ["café"])
        extensions = {row[0] for row in conn.execute("SELECT extname FROM pg_extension")}
        assert "vector" in extensions
        assert conn.execute("SELECT lower('ÉTÉ')").fetchone() == ("été",)
    client = redis.Redis.from_url(redis_url)
    client.rpush("celery-like-queue", "job-1", "job-2")
    client.close()

    # A second handle sees the servers running and reuses them without owning them.
    other_pg, other_rd = EmbeddedPostgres(pg.base_dir), EmbeddedRedis(rd.base_dir)
    assert other_pg.start() == database_url
    assert other_rd.start() == redis_url
    assert not other_pg.started_here
    assert not other_rd.started_here
    other_pg.stop()
    other_rd.stop()
    assert _util.port_accepts(pg.port or 0)
    assert _util.port_accepts(rd.port or 0)

    # Servers whose owner died (a killed `make run`) are adopted, and stopped by the adopter.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for server in (pg, rd):
        server.owner_file.write_text(f"{dead.pid}\n")
    pg, rd = EmbeddedPostgres(pg.base_dir), EmbeddedRedis(rd.base_dir)
    assert pg.start() == database_url
    assert rd.start() == redis_url
    assert pg.started_here
    assert rd.started_here

    first_ports = (pg.port, rd.port)
    pg.stop()
    rd.stop()
    assert not _util.port_accepts(first_ports[0] or 0)
    assert not _util.port_accepts(first_ports[1] or 0)

    # Restart: same data, same ports.
    pg2, rd2 = EmbeddedPostgres(pg.base_dir), EmbeddedRedis(rd.base_dir)
    assert pg2.start() == database_url
    assert rd2.start() == redis_url
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT body FROM note").fetchall() == [("café",)]
    client = redis.Redis.from_url(redis_url)
    assert client.lrange("celery-like-queue", 0, -1) == [b"job-1", b"job-2"]
    client.close()

    # A crash (SIGKILL) leaves a stale postmaster.pid and redis.pid; the next start copes.
    pg_pid = int((pg2.data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(pg_pid, signal.SIGKILL)
    os.kill(rd2.pid or 0, signal.SIGKILL)
    assert _util.wait_until(lambda: not _util.pid_alive(pg_pid), 10)
    assert _util.wait_until(lambda: not _util.pid_alive(rd2.pid or 0), 10)
    # Postgres children notice the postmaster is gone and exit on their own.
    pg3, rd3 = EmbeddedPostgres(pg.base_dir), EmbeddedRedis(rd.base_dir)
    assert pg3.start() == database_url
    assert rd3.start() == redis_url
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM note").fetchone() == (1,)
    client = redis.Redis.from_url(redis_url)
    assert client.llen("celery-like-queue") == 2
    client.close()
    pg3.stop()
    rd3.stop()
    assert not (pg3.data_dir / "postmaster.pid").exists()


def test_state_file_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "var" / "devstack.json"
    _util.atomic_write_json(target, {"database_url": "postgres://x", "llm_base_url": None})
    _util.atomic_write_json(target, {"database_url": "postgres://y", "llm_base_url": None})
    assert json.loads(target.read_text()) == {"database_url": "postgres://y", "llm_base_url": None}
    assert [p.name for p in target.parent.iterdir()] == ["devstack.json"]


def test_supervisor_prefixes_output_and_stops_children(capsys: pytest.CaptureFixture[str]) -> None:
    from supportbot.devstack.processes import Supervisor

    supervisor = Supervisor()
    code = "import time; print('hello', flush=True); time.sleep(60)"
    child = supervisor.start("sleeper", [sys.executable, "-c", code])
    quitter = supervisor.start("quitter", [sys.executable, "-c", "raise SystemExit(3)"])
    assert _util.wait_until(lambda: not quitter.alive(), 10)
    assert supervisor.dead_child() is quitter
    seen: list[str] = []

    def said_hello() -> bool:
        seen.append(capsys.readouterr().out)
        return "sleeper  | hello" in "".join(seen)

    assert _util.wait_until(said_hello, 10)
    supervisor.stop_all(timeout=5)
    assert not child.alive()
    assert child.process.returncode == -signal.SIGTERM


def test_demo_site_page_embeds_the_widget_loader() -> None:
    from supportbot.devstack.demo_site import render

    page = render("http://127.0.0.1:8000/", "wk_demo<&>", "http://127.0.0.1:8001")
    assert (
        '<script src="http://127.0.0.1:8000/static/widget/loader.js" '
        'data-key="wk_demo&lt;&amp;&gt;" async></script>'
    ) in page


def test_local_model_file_is_found_by_path() -> None:
    from supportbot.devstack import local_llm

    gguf = local_llm.find_gguf()
    assert gguf.suffix == ".gguf"
    assert gguf.stat().st_size > 50_000_000
    spec = local_llm.LocalLLMSpec(model_path=gguf, port=12345)
    assert spec.base_url == "http://127.0.0.1:12345/v1"
    assert spec.command[1:3] == ["-m", "llama_cpp.server"]
    assert "PORT" not in local_llm.server_env()
